/* Equivalent-circuit cell model: OCV(SOC, T), R0 and two RC pairs over
 * (SOC, T), capacity over T, hysteresis (Plett's enhanced self-correcting
 * model: instantaneous M0 and dynamic M with rate gamma), and coulombic
 * efficiency on charge.
 *
 * Sign: current is positive on charge, so the terminal voltage is
 *   v = OCV(z, T) + M0*s + M*h + R0*i + Rn*i/(1 + kn*|i|) + R1*i_R1 + R2*i_R2.
 * The Rn term is a resistance that falls with current, as charge-transfer
 * kinetics make it in the cold (a rational stand-in for Butler-Volmer's
 * asinh that needs no libm); kn = 0 makes it linear.
 *
 * Tables sit on uniform SOC grids from 0 to 1 and on an ascending list of
 * temperatures; lookups interpolate linearly and hold the end values outside
 * the grid. The struct is plain data so that firmware can keep it `const` in
 * flash. */
#ifndef BMSFIL_CELL_MODEL_H
#define BMSFIL_CELL_MODEL_H

#include <stdint.h>

#include "bmsfil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BF_MAX_TEMPS 8
#define BF_OCV_MAX_POINTS 101
#define BF_RC_MAX_POINTS 21
/* Smallest capacity and time constant accepted: below them the arithmetic of
 * a step overflows in single precision. */
#define BF_MIN_CAPACITY_AH 1e-3f
#define BF_MIN_TAU_S 1e-3f
/* The largest fall of an OCV row between two neighbouring points accepted
 * (V): the SOC from a voltage (bf_cell_soc_from_ocv) is a bisection on an OCV
 * that rises with SOC; a row that falls by more is a table reversed (100 % to
 * 0 %, as datasheets list it) or damaged, and the filter would read the
 * voltage the wrong way while reporting a small sigma. A smaller dip is
 * another tool's rounding. */
#define BF_OCV_DIP_V 1e-3f

typedef struct {
    uint32_t n_temps;                          /* 1..BF_MAX_TEMPS */
    float temp_C[BF_MAX_TEMPS];                /* strictly ascending */
    uint32_t n_ocv;                            /* 2..BF_OCV_MAX_POINTS, SOC k/(n_ocv-1) */
    float ocv_V[BF_MAX_TEMPS][BF_OCV_MAX_POINTS];
    uint32_t n_rc;                             /* 2..BF_RC_MAX_POINTS, SOC k/(n_rc-1) */
    float r0_ohm[BF_MAX_TEMPS][BF_RC_MAX_POINTS];
    float r1_ohm[BF_MAX_TEMPS][BF_RC_MAX_POINTS];
    float tau1_s[BF_MAX_TEMPS][BF_RC_MAX_POINTS];
    float r2_ohm[BF_MAX_TEMPS][BF_RC_MAX_POINTS];
    float tau2_s[BF_MAX_TEMPS][BF_RC_MAX_POINTS];
    float capacity_Ah[BF_MAX_TEMPS];
    float hyst_m0_V[BF_MAX_TEMPS];             /* instantaneous hysteresis */
    float hyst_m_V[BF_MAX_TEMPS];              /* dynamic hysteresis amplitude */
    float hyst_gamma[BF_MAX_TEMPS];            /* dynamic hysteresis rate, 1 */
    float rn_ohm[BF_MAX_TEMPS];                /* current-dependent resistance at i = 0 */
    float rn_sat_per_A;                        /* kn: how fast Rn falls with |i|, >= 0 */
    float eta_charge;                          /* coulombic efficiency on charge */
    float v_min_V;                             /* plausible terminal voltage range */
    float v_max_V;
    float i_max_A;                             /* plausible |current| */
} bf_cell_params_t;

/* Where (z, T) falls in the tables; computed once per step and shared. */
typedef struct {
    uint32_t t0;     /* lower temperature row */
    float wt;        /* weight of row t0+1 */
    uint32_t k_ocv;  /* lower OCV column */
    float w_ocv;
    uint32_t k_rc;   /* lower RC column */
    float w_rc;
} bf_lookup_t;

/* BF_OK if the tables are usable: counts in range, temperatures ascending,
 * every value finite, no OCV row falling by more than BF_OCV_DIP_V between
 * neighbouring points, capacities >= BF_MIN_CAPACITY_AH, taus >=
 * BF_MIN_TAU_S, eta positive, resistances >= 0. */
bf_status_t bf_cell_params_check(const bf_cell_params_t *p);

void bf_cell_locate(const bf_cell_params_t *p, float soc, float temp_C, bf_lookup_t *at);

/* Move a located point to another SOC at the same temperature (the SOC
 * columns only): what bf_cell_locate(p, soc, temp_C, at) would give for the
 * temp_C `at` was located at. */
void bf_cell_locate_soc(const bf_cell_params_t *p, float soc, bf_lookup_t *at);

/* The interpolations below run several times a step: inline, so that a
 * caller's compiler shares their index arithmetic. */

/* Linear interpolation exact at both ends (w = 0 gives a, w = 1 gives b),
 * so that values held outside a table are the table's own. */
/* The readings the filters take as measurements: a temperature in
 * [BF_TEMP_MIN_C, BF_TEMP_MAX_C] and a voltage within BF_VOLTAGE_MARGIN_V of
 * the cell's [v_min_V, v_max_V] (NaN fails both). */
#define BF_TEMP_MIN_C (-60.0f)
#define BF_TEMP_MAX_C (120.0f)
#define BF_VOLTAGE_MARGIN_V 0.5f

static inline int bf_cell_voltage_plausible(const bf_cell_params_t *p, float voltage_V)
{
    return voltage_V >= p->v_min_V - BF_VOLTAGE_MARGIN_V && voltage_V <= p->v_max_V + BF_VOLTAGE_MARGIN_V;
}

static inline int bf_temp_plausible(float temp_C)
{
    return temp_C >= BF_TEMP_MIN_C && temp_C <= BF_TEMP_MAX_C;
}

static inline float bf_lerp(float a, float b, float w)
{
    return (1.0f - w) * a + w * b;
}

/* Upper temperature row of a located point (the lower one with one row). */
static inline uint32_t bf_cell_t1(const bf_cell_params_t *p, const bf_lookup_t *at)
{
    return p->n_temps > 1u ? at->t0 + 1u : at->t0;
}

/* Interpolate one (T x SOC) RC table, e.g. p->r0_ohm, at the located point. */
static inline float bf_cell_rc_table(const bf_cell_params_t *p, const float table[BF_MAX_TEMPS][BF_RC_MAX_POINTS],
                                     const bf_lookup_t *at)
{
    const float *a = table[at->t0];
    const float *b = table[bf_cell_t1(p, at)];
    return bf_lerp(bf_lerp(a[at->k_rc], b[at->k_rc], at->wt), bf_lerp(a[at->k_rc + 1u], b[at->k_rc + 1u], at->wt),
                   at->w_rc);
}

/* Interpolate a per-temperature row such as p->hyst_m_V. */
static inline float bf_cell_temp_row(const bf_cell_params_t *p, const float row[BF_MAX_TEMPS], const bf_lookup_t *at)
{
    return bf_lerp(row[at->t0], row[bf_cell_t1(p, at)], at->wt);
}

/* Capacity, interpolated in temperature only. */
static inline float bf_cell_capacity(const bf_cell_params_t *p, const bf_lookup_t *at)
{
    return bf_cell_temp_row(p, p->capacity_Ah, at);
}

/* OCV at the located point; *docv_dsoc receives the slope if not NULL. */
static inline float bf_cell_ocv(const bf_cell_params_t *p, const bf_lookup_t *at, float *docv_dsoc)
{
    const float *a = p->ocv_V[at->t0];
    const float *b = p->ocv_V[bf_cell_t1(p, at)];
    float lo = bf_lerp(a[at->k_ocv], b[at->k_ocv], at->wt);
    float hi = bf_lerp(a[at->k_ocv + 1u], b[at->k_ocv + 1u], at->wt);
    if (docv_dsoc != 0) *docv_dsoc = (hi - lo) * (float)(p->n_ocv - 1u);
    return bf_lerp(lo, hi, at->w_ocv);
}

/* SOC whose OCV at temp_C is ocv_V, by bisection (OCV rises with SOC);
 * 0 or 1 when outside the table. */
float bf_cell_soc_from_ocv(const bf_cell_params_t *p, float ocv_V, float temp_C);

#ifdef __cplusplus
}
#endif

#endif
