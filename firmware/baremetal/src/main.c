/* Bare-metal entry point: board, parameters, app, loop. */
#include "fw/app.h"
#include "fw/board.h"
#include "fw/params.h"

static fw_app_t app;

int main(void)
{
    size_t retained_size = 0;
    void *retained;
    board_init();
    retained = board_retained(&retained_size);
    fw_app_init(&app, &fw_params_cell, &fw_params_tuning, &fw_plaus_config, &fw_capacity_tuning, &fw_r0_tuning, &fw_sop_limits,
                fw_thermal_params, fw_thermal_tuning, board_transport(), retained, retained_size);
    for (;;) {
        fw_app_poll(&app);
        board_wait_for_event();
    }
}
