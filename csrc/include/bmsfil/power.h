/* State of power: the largest constant power a cell can deliver (discharge)
 * or take (charge) for a given horizon, from the SOC filter's state and the
 * cell model, within voltage, current, SOC and temperature limits.
 *
 * Method: the pulse is simulated on the cell model of cell_model.h (the
 * filter's equations: SOC, both RC currents, dynamic hysteresis) in
 * BF_SOP_SUBSTEPS equal sub-steps; within a sub-step the current is the one
 * that draws exactly the power at that sub-step's voltage (the quadratic in
 * the instantaneous resistance R0 + Rn solved in closed form), so a pulse
 * of constant power is simulated, not one of constant current. The largest
 * power for which every limit holds to the end of the horizon is found by
 * bisection (BF_SOP_ITERATIONS halvings of [0, v_max i_max]). The RC time
 * constants and resistances are taken at the state's SOC for the whole
 * pulse (they change little over a 2-30 s pulse); the OCV follows the SOC.
 *
 * Cost: about 2 x ITERATIONS x SUBSTEPS model sub-steps per call; a BMS
 * calls it a few times a second, not every sample. No heap, no globals. */
#ifndef BMSFIL_POWER_H
#define BMSFIL_POWER_H

#include <stdint.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/status.h"

#define BF_SOP_SUBSTEPS 64u
#define BF_SOP_ITERATIONS 20u

/* What limited a power (bitwise OR over the pulse at the limit found). */
#define BF_SOP_BY_VOLTAGE 0x01u
#define BF_SOP_BY_CURRENT 0x02u
#define BF_SOP_BY_SOC 0x04u
#define BF_SOP_BY_TEMP 0x08u     /* outside the temperature window: 0 W */
#define BF_SOP_BY_POWER 0x10u    /* the cell cannot reach the voltage limit at any power (source limit) */

typedef struct {
    float horizon_s;           /* pulse length, > 0 */
    float v_min_V, v_max_V;    /* terminal voltage limits */
    float i_dis_max_A;         /* largest discharge current, > 0 */
    float i_chg_max_A;         /* largest charge current, > 0 */
    float soc_min, soc_max;    /* SOC window, 0 <= min < max <= 1 */
    float temp_min_C, temp_max_C;
} bf_sop_limits_t;

typedef struct {
    float discharge_W;         /* >= 0 */
    float charge_W;            /* >= 0 */
    float discharge_A;         /* magnitude of the current at the end of the discharge pulse */
    float charge_A;            /* magnitude of the current at the end of the charge pulse */
    uint32_t discharge_by;     /* BF_SOP_BY_* */
    uint32_t charge_by;
} bf_sop_t;

bf_status_t bf_sop_limits_check(const bf_sop_limits_t *lim);

/* The powers for a cell in state s (after a bf_soc_ekf_step) at temperature
 * temp_C. s is not changed. */
bf_status_t bf_sop(const bf_soc_ekf_t *s, const bf_cell_params_t *p, float temp_C,
                   const bf_sop_limits_t *lim, bf_sop_t *out);

#endif
