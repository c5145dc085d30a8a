/* The parameter set compiled into the firmware (in flash), written by
 * `python -m bmsfil.export_c PARAMS.json -o params.c`. */
#ifndef FW_PARAMS_H
#define FW_PARAMS_H

#include "bmsfil/capacity.h"
#include "bmsfil/cell_model.h"
#include "bmsfil/plausibility.h"
#include "bmsfil/power.h"
#include "bmsfil/resistance.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/thermal.h"

extern const bf_cell_params_t fw_params_cell;
extern const bf_soc_ekf_tuning_t fw_params_tuning;
/* The plausibility monitor's settings: the host's PlausibilityConfig defaults. */
extern const bf_plaus_config_t fw_plaus_config;
/* The capacity and R0 estimators' settings: the host's defaults for this set. */
extern const bf_capacity_tuning_t fw_capacity_tuning;
extern const bf_r0_tuning_t fw_r0_tuning;
/* The state of power's limits (the set's power section, else the cell's
 * ranges); its horizon is 0: the firmware sets each horizon's. */
extern const bf_sop_limits_t fw_sop_limits;
/* The core-temperature filter's model and settings; both NULL when the set
 * has no thermal section (no core temperature is estimated). */
extern const bf_thermal_params_t *const fw_thermal_params;
extern const bf_thermal_tuning_t *const fw_thermal_tuning;
extern const char fw_params_name[];

#endif
