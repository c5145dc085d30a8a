/* The parameter set compiled into the firmware (in flash), written by
 * `python -m bmsfil.export_c PARAMS.json -o params.c`. */
#ifndef FW_PARAMS_H
#define FW_PARAMS_H

#include "bmsfil/cell_model.h"
#include "bmsfil/plausibility.h"
#include "bmsfil/soc_ekf.h"

extern const bf_cell_params_t fw_params_cell;
extern const bf_soc_ekf_tuning_t fw_params_tuning;
/* The plausibility monitor's settings: the host's PlausibilityConfig defaults. */
extern const bf_plaus_config_t fw_plaus_config;
extern const char fw_params_name[];

#endif
