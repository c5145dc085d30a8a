/* libFuzzer target: arbitrary bytes on the SLCAN link of the firmware app
 * (the emulated board's path: UART bytes -> SLCAN parser -> CAN contract
 * decoding -> estimator -> retained state, with resets and power cycles
 * the input itself commands). After every frame the app's state must hold:
 * no more cells than it keeps, every cell's SOC in [0, 1], its state
 * finite, its covariance symmetric with non-negative finite variances.
 * A reset boots the app again on the same retained RAM, as a board does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fw/params.h"
#include "host_board.h"

static fw_app_t app;

static void check(const fw_app_t *a)
{
    const fw_saved_t *s = a->saved;
    if (s->body.n_cells > FW_MAX_CELLS) abort();
    for (uint32_t c = 0; c < s->body.n_cells; c++) {
        const bf_soc_ekf_t *e = &s->body.cells[c].ekf;
        if (!s->body.cells[c].initialised) continue;
        if (!(e->x[0] >= 0.0f && e->x[0] <= 1.0f)) abort();
        for (int i = 0; i < BF_SOC_EKF_NX; i++) {
            if (!isfinite(e->x[i]) || !isfinite(e->P[i][i]) || e->P[i][i] < 0.0f) abort();
            for (int j = 0; j < BF_SOC_EKF_NX; j++)
                if (e->P[i][j] != e->P[j][i]) abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    static volatile unsigned boots;
    fw_frame_t f;
    int r;
    host_board_start(data, n);
    boots = 0;
    setjmp(host.reset_jump);  /* board_reset() lands here: boot again */
    if (++boots > 32u) return 0;
    board_init();
    fw_app_init(&app, &fw_params_cell, &fw_params_tuning, &fw_plaus_config, &fw_capacity_tuning, &fw_r0_tuning, &fw_sop_limits,
                fw_thermal_params, fw_thermal_tuning, board_transport(), host.retained, sizeof host.retained);
    check(&app);
    while ((r = fw_slcan_poll(&host.slcan, &f)) != 0) {
        if (r < 0) continue;
        fw_app_on_frame(&app, &f);
        check(&app);
    }
    return 0;
}
