/* State of power: the largest constant power a cell can deliver (discharge)
 * or take (charge) for a given horizon, from the SOC filter's state and the
 * cell model, within voltage, current, SOC and temperature limits.
 *
 * Method: the pulse is simulated on the cell model of cell_model.h (the
 * filter's equations: SOC, both RC currents, dynamic hysteresis, the tables
 * looked up as the SOC moves) in BF_SOP_SUBSTEPS equal sub-steps. Within a
 * sub-step the current ramps linearly from its value at the start to the
 * one that draws exactly the power at the sub-step's end voltage (the
 * quadratic in the instantaneous resistance solved in closed form): SOC by
 * the trapezoid, the RC currents by their exact response to a ramp, so the
 * sub-step is second order and a pulse of constant power, not of constant
 * current, is simulated. Each pulse has a margin: the smallest distance,
 * relative, of the voltage, the current and the SOC to their limits over
 * the pulse (negative: a limit was broken). The largest power with a margin
 * of at least 0 is found by regula falsi with the Illinois modification on
 * the margin (the bracket's middle when two pulses did not halve it), until
 * the bracket is narrower than BF_SOP_TOLERANCE of its top or, for powers
 * near 0 such as a full cell's charge power, BF_SOP_TOLERANCE_TOP of
 * v_max i_max (at most BF_SOP_ITERATIONS pulses a direction;
 * BF_SOP_UNCONVERGED if they ran out).
 * The limits are checked at the first instant of the pulse and at the end of
 * every sub-step. The bracket comes from the
 * pulses at rest and at v_max i_max or, when the horizon has a result
 * already, from pulses BF_SOP_WARM below and above it (a warm start).
 *
 * Outside the temperature window both powers are 0 W, outside the charge
 * window (e.g. below 0 °C, where a charge plates lithium) the charge power
 * is, each with BF_SOP_BY_TEMP and without a pulse.
 *
 * Two ways to call it:
 * - bf_sop(): both directions for one horizon, now, from cold (host, tests);
 * - bf_sop_task_t: the same search cut into pieces of at most `budget`
 *   sub-steps, one piece per call, cycling through up to BF_SOP_MAX_HORIZONS
 *   horizons, so that firmware spreads its cost over many samples. A
 *   horizon's search starts from the filter's state at the call that starts
 *   it and its result is published when both directions are done. A task's
 *   first search of a horizon gives what bf_sop() gives for that state, bit
 *   for bit; later ones start warm and agree with bf_sop() to within the
 *   tolerance.
 *
 * No heap, no globals. */
#ifndef BMSFIL_POWER_H
#define BMSFIL_POWER_H

#include <stdint.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BF_SOP_SUBSTEPS 4u
#define BF_SOP_ITERATIONS 32u        /* pulses per direction at most, the bracket's included */
#define BF_SOP_TOLERANCE 1e-3f       /* relative width of the final bracket */
#define BF_SOP_TOLERANCE_TOP 1e-5f   /* ... or its width relative to v_max i_max, for powers near 0 */
#define BF_SOP_WARM 0.02f            /* a warm start brackets the previous result by +-2 % */
#define BF_SOP_MAX_HORIZON_S 86400.0f  /* longest horizon accepted, one day */
#define BF_SOP_MAX_RC_CURRENT_A 1e6f   /* RC currents of a state beyond this are refused */
#define BF_SOP_MAX_HORIZONS 4u

/* What limited a power (bitwise OR over the pulse at the limit found). */
#define BF_SOP_BY_VOLTAGE 0x01u
#define BF_SOP_BY_CURRENT 0x02u
#define BF_SOP_BY_SOC 0x04u
#define BF_SOP_BY_TEMP 0x08u     /* outside the temperature window (the charge window for a charge): 0 W */
#define BF_SOP_BY_POWER 0x10u    /* the cell cannot reach the voltage limit at any power (source limit) */
#define BF_SOP_UNCONVERGED 0x20u /* the search ran out of pulses: the power is feasible but may be low */

typedef struct {
    float horizon_s;           /* pulse length, > 0 */
    float v_min_V, v_max_V;    /* terminal voltage limits */
    float i_dis_max_A;         /* largest discharge current, > 0 */
    float i_chg_max_A;         /* largest charge current, > 0 */
    float soc_min, soc_max;    /* SOC window, 0 <= min < max <= 1 */
    float temp_min_C, temp_max_C;          /* outside it: both powers 0 W, BF_SOP_BY_TEMP */
    float temp_chg_min_C, temp_chg_max_C;  /* charge window, inside the above: outside it only the
                                              charge power is 0 W (BF_SOP_BY_TEMP, not searched) */
} bf_sop_limits_t;

typedef struct {
    float discharge_W;         /* >= 0 */
    float charge_W;            /* >= 0 */
    float discharge_A;         /* magnitude of the current at the end of the discharge pulse */
    float charge_A;            /* magnitude of the current at the end of the charge pulse */
    uint32_t discharge_by;     /* BF_SOP_BY_* */
    uint32_t charge_by;
} bf_sop_t;

/* The limits by themselves: BF_E_RANGE for one out of order or out of
 * range (a temperature limit outside [BF_TEMP_MIN_C, BF_TEMP_MAX_C], where
 * the filter takes a reading for a sensor fault and keeps its last one; a
 * charge window not inside [temp_min_C, temp_max_C]: a cell that may not
 * discharge may not charge either; a parameter set without a charge window
 * gives the general one). */
bf_status_t bf_sop_limits_check(const bf_sop_limits_t *lim);

/* The limits for the cell p: those of bf_sop_limits_check, and BF_E_RANGE
 * for a limit that counts on readings the filter takes for sensor faults
 * (a voltage limit more than BF_VOLTAGE_MARGIN_V outside p's [v_min_V,
 * v_max_V], a current limit above p's i_max_A). bf_sop and
 * bf_sop_task_step check each search's limits with it. */
bf_status_t bf_sop_limits_cell_check(const bf_sop_limits_t *lim, const bf_cell_params_t *p);

/* The powers for a cell in state s (after a bf_soc_ekf_step) at temperature
 * temp_C. s is not changed. */
bf_status_t bf_sop(const bf_soc_ekf_t *s, const bf_cell_params_t *p, float temp_C,
                   const bf_sop_limits_t *lim, bf_sop_t *out);

/* The search in pieces (see the top of this file). Caller-owned; all fields
 * are the search's working state except `result`, `published` and the
 * counters. */
typedef struct {
    /* the pulse's start: the filter's state and the model's per-temperature values */
    float z0, i10, i20, h0, temp_C, dt, cap_As, rn, kn, m0, m, gamma, eta_chg;
    float a1, a2, b1, b2;                        /* RC decay and ramp weights over a sub-step */
    bf_lookup_t at;                              /* the tables' temperature row, and a SOC */
    /* the bracket: lo breaks no limit (margin g_lo >= 0), hi breaks one (g_hi < 0) */
    float lo, hi, g_lo, g_hi, i_lo, p;
    uint32_t by_hi;
    /* the pulse being simulated at power p */
    float z, i1, i2, h, x, margin;
    uint32_t by, k;
    uint32_t stage, dir, pulses, side, slow, horizon;
    float width;                                 /* the bracket's width before the last pulse */
    bf_sop_t partial;                            /* the direction(s) done of the current horizon */
    bf_sop_t result[BF_SOP_MAX_HORIZONS];        /* the latest result per horizon */
    uint32_t published;                          /* bit h: result[h] holds a result */
    int32_t latest;                              /* the horizon published last, -1: none yet */
    uint32_t substeps;                           /* sub-steps simulated since init */
} bf_sop_task_t;

bf_status_t bf_sop_task_init(bf_sop_task_t *t);

/* Simulate at most `budget` sub-steps (0: no limit) of the search of horizon
 * t->horizon, for the n_lims horizons of lims (1 <= n_lims <=
 * BF_SOP_MAX_HORIZONS). A search that has not begun begins from state s at
 * temperature temp_C; one that is under way goes on and does not read s.
 * *finished is the horizon whose result was published in this call, or -1.
 * Publishes at most one horizon per call; the next call begins the next. */
bf_status_t bf_sop_task_step(bf_sop_task_t *t, const bf_soc_ekf_t *s, const bf_cell_params_t *p, float temp_C,
                             const bf_sop_limits_t *lims, uint32_t n_lims, uint32_t budget, int32_t *finished);

#ifdef __cplusplus
}
#endif

#endif
