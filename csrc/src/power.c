/* State of power: see power.h. */
#include "bmsfil/power.h"

#include "bmsfil/bf_math.h"

#define SECONDS_PER_HOUR 3600.0f

enum { STAGE_IDLE, STAGE_REST, STAGE_TOP, STAGE_WARM_LO, STAGE_WARM_HI, STAGE_SEARCH };
enum { KEPT_NONE, KEPT_LO, KEPT_HI };

bf_status_t bf_sop_limits_check(const bf_sop_limits_t *lim)
{
    if (lim == 0) {
        return BF_E_NULL;
    }
    if (!(lim->horizon_s > 0.0f) || !bf_isfinite(lim->horizon_s) || !bf_isfinite(lim->v_min_V)
        || !bf_isfinite(lim->v_max_V) || !(lim->v_max_V > lim->v_min_V) || !(lim->v_min_V > 0.0f)
        || !(lim->i_dis_max_A > 0.0f) || !bf_isfinite(lim->i_dis_max_A) || !(lim->i_chg_max_A > 0.0f)
        || !bf_isfinite(lim->i_chg_max_A) || !(lim->soc_min >= 0.0f) || !(lim->soc_max <= 1.0f)
        || !(lim->soc_max > lim->soc_min) || !bf_isfinite(lim->temp_min_C) || !bf_isfinite(lim->temp_max_C)
        || !(lim->temp_max_C > lim->temp_min_C) || !(lim->horizon_s <= BF_SOP_MAX_HORIZON_S)
        || !bf_isfinite(lim->v_max_V * lim->i_dis_max_A) || !bf_isfinite(lim->v_max_V * lim->i_chg_max_A)
        || !(lim->temp_min_C >= BF_TEMP_MIN_C) || !(lim->temp_max_C <= BF_TEMP_MAX_C)
        || !(lim->temp_chg_min_C >= lim->temp_min_C) || !(lim->temp_chg_max_C > lim->temp_chg_min_C)
        || !(lim->temp_chg_max_C <= lim->temp_max_C)) {
        return BF_E_RANGE;
    }
    return BF_OK;
}

bf_status_t bf_sop_limits_cell_check(const bf_sop_limits_t *lim, const bf_cell_params_t *p)
{
    const bf_status_t st = bf_sop_limits_check(lim);
    if (st != BF_OK) {
        return st;
    }
    if (p == 0) {
        return BF_E_NULL;
    }
    if (!(lim->v_max_V <= p->v_max_V + BF_VOLTAGE_MARGIN_V) || !(lim->v_min_V >= p->v_min_V - BF_VOLTAGE_MARGIN_V)
        || !(lim->i_dis_max_A <= p->i_max_A) || !(lim->i_chg_max_A <= p->i_max_A)) {
        return BF_E_RANGE;
    }
    return BF_OK;
}

static float signf(float v)
{
    return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

static float minf(float a, float b)
{
    return a < b ? a : b;
}

static float direction(const bf_sop_task_t *t)
{
    return t->dir == 0u ? -1.0f : 1.0f;
}

/* Weight of the end current in an RC pair's response to a current ramping
 * linearly over a sub-step of u = dt / tau time constants:
 * 1 - (1 - e^-u) / u, by its series where the difference would cancel. */
static float ramp_weight(float u, float one_minus_a)
{
    return u < 0.05f ? u * (0.5f - u * (1.0f / 6.0f - u * (1.0f / 24.0f))) : 1.0f - one_minus_a / u;
}

/* Solve P = x (e0 + dir r x) for the magnitude x of the current: the
 * smaller root on discharge (the cell's side). 0 when no current draws P.
 * In the form 2P / (e0 + sqrt(e0^2 -+ 4 r P)), which does not cancel when
 * P is small (the textbook form lost the current's sign there) and holds
 * for r = 0. */
static int solve_current(float dir, float e0, float r, float P, float *x)
{
    const float disc = dir < 0.0f ? e0 * e0 - 4.0f * r * P : e0 * e0 + 4.0f * r * P;
    float den;
    if (!(e0 > 0.0f) || disc < 0.0f) {
        return 0;
    }
    den = e0 + bf_sqrtf(disc);
    *x = 2.0f * P / den;
    return 1;
}

/* The limits at one instant of the pulse: voltage v, current magnitude x,
 * SOC z; the margin and the limits broken. */
static void note_limits(bf_sop_task_t *t, const bf_sop_limits_t *lim, float v, float x, float z)
{
    const float dir = direction(t);
    const float mv = dir < 0.0f ? (v - lim->v_min_V) / lim->v_min_V : (lim->v_max_V - v) / lim->v_max_V;
    const float i_max = dir < 0.0f ? lim->i_dis_max_A : lim->i_chg_max_A;
    const float mi = (i_max - x) / i_max;
    const float mz = dir < 0.0f ? z - lim->soc_min : lim->soc_max - z;
    if (mv < 0.0f) t->by |= BF_SOP_BY_VOLTAGE;
    if (mi < 0.0f) t->by |= BF_SOP_BY_CURRENT;
    if (mz < 0.0f) t->by |= BF_SOP_BY_SOC;
    t->margin = minf(t->margin, minf(mv, minf(mi, mz)));
}

/* Start a pulse of constant power P (W, >= 0) in the task's direction: its
 * current at the first instant, through the instantaneous resistance
 * (R0 + Rn; the RC currents and the hysteresis cannot jump), and the limits
 * there: where the RC pairs already carry current the pulse's way (after a
 * hard discharge, or regeneration), the first instant has the pulse's
 * lowest voltage and highest current. */
static void pulse_begin(bf_sop_task_t *t, const bf_cell_params_t *p, const bf_sop_limits_t *lim, float P)
{
    const float dir = direction(t);
    float ocv, x = 0.0f, e0, r0;
    t->p = P;
    t->z = t->z0;
    t->i1 = t->i10;
    t->i2 = t->i20;
    t->h = t->h0;
    t->margin = 3.0e38f;
    t->by = 0u;
    t->k = 0u;
    bf_cell_locate_soc(p, t->z0, &t->at);
    ocv = bf_cell_ocv(p, &t->at, 0);
    r0 = bf_cell_rc_table(p, p->r0_ohm, &t->at);
    e0 = ocv + t->m0 * dir + t->m * t->h + bf_cell_rc_table(p, p->r1_ohm, &t->at) * t->i1
         + bf_cell_rc_table(p, p->r2_ohm, &t->at) * t->i2;
    /* Rn depends on the current: at P / OCV first, then at the current that gives. */
    if (!solve_current(dir, e0, r0 + t->rn / (1.0f + t->kn * P / ocv), P, &x)
        || !solve_current(dir, e0, r0 + t->rn / (1.0f + t->kn * x), P, &x)) {
        t->by |= BF_SOP_BY_POWER;
        t->margin = -1.0f;
        x = P / ocv;   /* the first sub-step finds the same */
    } else {
        note_limits(t, lim, x > 0.0f ? P / x : e0, x, t->z0);
    }
    t->x = x;
}

/* One sub-step of the pulse, with the current ramping linearly from its
 * value at the sub-step's start, x0, to the one at its end, x1, which draws
 * exactly the power at the end's voltage: SOC by the trapezoid, the RC
 * currents by their exact response to the ramp (second order in the
 * sub-step, where holding x1 over the sub-step, as the filter does with a
 * sample's current, would be first order), the hysteresis's rate at x0,
 * the resistances and the OCV at the end that x0 predicts, the RC time
 * constants at the pulse's start (they change little over a pulse; their
 * decay factors are computed once per horizon). The voltage is e0 + r i1, linear in
 * the end current. Updates the margin and the limits broken; 0 when the cell
 * cannot deliver the power at all (the pulse ends there). */
static int pulse_substep(bf_sop_task_t *t, const bf_cell_params_t *p, const bf_sop_limits_t *lim)
{
    const float dir = direction(t);
    const float eta = dir > 0.0f ? t->eta_chg : 1.0f;
    const float i0 = dir * t->x;
    float docv, ocv, r0, r1, r2, rn, ah, dz_per_A, e0, r, i, v, x;

    dz_per_A = eta * t->dt / t->cap_As;
    /* Every table at the end of the sub-step that the start's current
     * predicts, zp: the voltage is the end's. The OCV linearised about it:
     * OCV(zp) + slope (z_end - zp), z_end - zp = (i - i0) dz / 2. */
    bf_cell_locate_soc(p, t->z + i0 * dz_per_A, &t->at);
    ocv = bf_cell_ocv(p, &t->at, &docv);
    r0 = bf_cell_rc_table(p, p->r0_ohm, &t->at);
    r1 = bf_cell_rc_table(p, p->r1_ohm, &t->at);
    r2 = bf_cell_rc_table(p, p->r2_ohm, &t->at);
    rn = t->rn / (1.0f + t->kn * t->x);
    ah = bf_expf(-bf_absf(t->x * dz_per_A * t->gamma));
    e0 = ocv - 0.5f * docv * dz_per_A * i0 + t->m0 * dir + t->m * (ah * t->h + (1.0f - ah) * dir)
         + r1 * (t->a1 * t->i1 + (1.0f - t->a1 - t->b1) * i0) + r2 * (t->a2 * t->i2 + (1.0f - t->a2 - t->b2) * i0);
    r = r0 + rn + r1 * t->b1 + r2 * t->b2 + 0.5f * docv * dz_per_A;
    if (!solve_current(dir, e0, r, t->p, &x)) {
        t->by |= BF_SOP_BY_POWER;
        t->margin = minf(t->margin, -1.0f);
        return 0;
    }
    i = dir * x;
    v = e0 + r * i;
    t->x = x;
    t->z += 0.5f * (i0 + i) * dz_per_A;
    t->i1 = t->a1 * t->i1 + (1.0f - t->a1 - t->b1) * i0 + t->b1 * i;
    t->i2 = t->a2 * t->i2 + (1.0f - t->a2 - t->b2) * i0 + t->b2 * i;
    t->h = ah * t->h + (1.0f - ah) * signf(i);
    note_limits(t, lim, v, x, t->z);
    return 1;
}

/* This direction's result, in the partial result. */
static void direction_done(bf_sop_task_t *t, float watts, float amps, uint32_t by)
{
    if (t->dir == 0u) {
        t->partial.discharge_W = watts;
        t->partial.discharge_A = amps;
        t->partial.discharge_by = by;
    } else {
        t->partial.charge_W = watts;
        t->partial.charge_A = amps;
        t->partial.charge_by = by;
    }
}

static float top_power(const bf_sop_task_t *t, const bf_sop_limits_t *lim)
{
    return lim->v_max_V * (t->dir == 0u ? lim->i_dis_max_A : lim->i_chg_max_A);
}

/* The next pulse of the search, or the direction's end (returns 0). The
 * trial is regula falsi's (the margin's zero on the chord), kept a little
 * inside the bracket so that both ends keep move, or the bracket's middle
 * when the last two pulses did not halve it (a margin that is flat at one
 * end, as when the cell cannot draw the power at all, makes the chord
 * creep). A search that runs out of pulses says so (BF_SOP_UNCONVERGED). */
static int search_next(bf_sop_task_t *t, const bf_cell_params_t *p, const bf_sop_limits_t *lim)
{
    const float w = t->hi - t->lo;
    float P;
    if (w <= BF_SOP_TOLERANCE * t->hi || w <= BF_SOP_TOLERANCE_TOP * top_power(t, lim)) {
        direction_done(t, t->lo, t->i_lo, t->by_hi);
        return 0;
    }
    if (t->pulses >= BF_SOP_ITERATIONS) {
        direction_done(t, t->lo, t->i_lo, t->by_hi | BF_SOP_UNCONVERGED);
        return 0;
    }
    if (t->slow >= 2u) {
        P = 0.5f * (t->lo + t->hi);
        t->slow = 0u;
    } else {
        P = (t->lo * t->g_hi - t->hi * t->g_lo) / (t->g_hi - t->g_lo);
        P = bf_clampf(P, t->lo + 0.25f * BF_SOP_TOLERANCE * t->hi, t->hi - 0.25f * BF_SOP_TOLERANCE * t->hi);
    }
    t->width = w;
    pulse_begin(t, p, lim, P);
    return 1;
}

static void set_lo(bf_sop_task_t *t)
{
    t->lo = t->p;
    t->g_lo = t->margin;
    t->i_lo = t->x;
}

static void set_hi(bf_sop_task_t *t)
{
    t->hi = t->p;
    t->g_hi = t->margin;
    t->by_hi = t->by;
}

/* A pulse has ended: move the search on. 0 when the direction is done.
 * The bracket is found from the pulses at rest (P = 0) and at the top
 * (v_max i_max), or, when this horizon has a result already, from pulses
 * BF_SOP_WARM below and above it (the state moves little between two
 * searches), falling back on rest and top where those do not bracket. */
static int pulse_end(bf_sop_task_t *t, const bf_cell_params_t *p, const bf_sop_limits_t *lim)
{
    const int feasible = t->by == 0u;
    t->pulses++;
    switch (t->stage) {
    case STAGE_WARM_LO:
        if (feasible) {
            set_lo(t);
            t->stage = STAGE_WARM_HI;
            pulse_begin(t, p, lim, t->p * (1.0f + BF_SOP_WARM) / (1.0f - BF_SOP_WARM));
        } else {
            set_hi(t);
            t->stage = STAGE_REST;
            pulse_begin(t, p, lim, 0.0f);
        }
        return 1;
    case STAGE_WARM_HI:
        if (!feasible) {
            set_hi(t);
            break;
        }
        set_lo(t);
        t->stage = STAGE_TOP;
        pulse_begin(t, p, lim, top_power(t, lim));
        return 1;
    case STAGE_REST:
        if (!feasible) {
            /* Already outside a limit at rest (e.g. SOC below its window). */
            direction_done(t, 0.0f, 0.0f, t->by);
            return 0;
        }
        set_lo(t);
        if (t->by_hi != 0u) {
            break;   /* the warm start's lower pulse is the top of the bracket */
        }
        t->stage = STAGE_TOP;
        pulse_begin(t, p, lim, top_power(t, lim));
        return 1;
    case STAGE_TOP:
        if (feasible) {
            direction_done(t, t->p, t->x, 0u);
            return 0;
        }
        set_hi(t);
        break;
    default:
        /* Illinois: an end kept twice in a row has its margin halved. */
        if (feasible) {
            set_lo(t);
            if (t->side == KEPT_HI) t->g_hi *= 0.5f;
            t->side = KEPT_HI;
        } else {
            set_hi(t);
            if (t->side == KEPT_LO) t->g_lo *= 0.5f;
            t->side = KEPT_LO;
        }
        t->slow = t->hi - t->lo > 0.5f * t->width ? t->slow + 1u : 0u;
        return search_next(t, p, lim);
    }
    t->side = KEPT_NONE;
    t->slow = 0u;
    t->stage = STAGE_SEARCH;
    return search_next(t, p, lim);
}

static void direction_begin(bf_sop_task_t *t, const bf_cell_params_t *p, const bf_sop_limits_t *lim, uint32_t dir)
{
    const bf_sop_t *prev = &t->result[t->horizon];
    const float w = dir == 0u ? prev->discharge_W : prev->charge_W;
    t->dir = dir;
    t->pulses = 0u;
    t->by_hi = 0u;
    if (BF_SOP_WARM > 0.0f && (t->published & (1u << t->horizon)) != 0u && w > 0.0f && w * (1.0f + BF_SOP_WARM) < top_power(t, lim)) {
        t->stage = STAGE_WARM_LO;
        pulse_begin(t, p, lim, w * (1.0f - BF_SOP_WARM));
    } else {
        t->stage = STAGE_REST;
        pulse_begin(t, p, lim, 0.0f);
    }
}

/* Begin the search of a horizon from state s: 0 when its result is known
 * without a pulse (outside the temperature window). Outside the charge
 * window only the discharge is searched. */
static bf_status_t horizon_begin(bf_sop_task_t *t, const bf_soc_ekf_t *s, const bf_cell_params_t *p, float temp_C,
                                 const bf_sop_limits_t *lim, int *searching)
{
    bf_lookup_t at;
    bf_status_t st = bf_sop_limits_cell_check(lim, p);
    if (st != BF_OK) {
        return st;
    }
    if (!bf_isfinite(temp_C) || !bf_isfinite(s->x[0]) || !bf_isfinite(s->x[3])
        || !(bf_absf(s->x[1]) <= BF_SOP_MAX_RC_CURRENT_A) || !(bf_absf(s->x[2]) <= BF_SOP_MAX_RC_CURRENT_A)) {
        return BF_E_RANGE;
    }
    t->partial.discharge_W = t->partial.charge_W = t->partial.discharge_A = t->partial.charge_A = 0.0f;
    t->partial.discharge_by = t->partial.charge_by = 0u;
    /* The charge window lies inside the temperature window (bf_sop_limits_check). */
    if (temp_C < lim->temp_chg_min_C || temp_C > lim->temp_chg_max_C) {
        t->partial.charge_by = BF_SOP_BY_TEMP;   /* known: bf_sop_task_step searches no charge */
        if (temp_C < lim->temp_min_C || temp_C > lim->temp_max_C) {
            t->partial.discharge_by = BF_SOP_BY_TEMP;
            *searching = 0;
            return BF_OK;
        }
    }
    bf_cell_locate(p, s->x[0], temp_C, &at);
    t->at = at;
    t->cap_As = bf_cell_capacity(p, &at) * SECONDS_PER_HOUR;
    t->z0 = s->x[0];
    t->i10 = s->x[1];
    t->i20 = s->x[2];
    t->h0 = s->x[3];
    t->temp_C = temp_C;
    t->dt = lim->horizon_s / (float)BF_SOP_SUBSTEPS;
    t->rn = bf_cell_temp_row(p, p->rn_ohm, &at);
    t->kn = p->rn_sat_per_A;
    t->m0 = bf_cell_temp_row(p, p->hyst_m0_V, &at);
    t->m = bf_cell_temp_row(p, p->hyst_m_V, &at);
    t->gamma = bf_cell_temp_row(p, p->hyst_gamma, &at);
    t->eta_chg = p->eta_charge;
    {
        const float u1 = t->dt / bf_cell_rc_table(p, p->tau1_s, &at);
        const float u2 = t->dt / bf_cell_rc_table(p, p->tau2_s, &at);
        t->a1 = bf_expf(-u1);
        t->a2 = bf_expf(-u2);
        t->b1 = ramp_weight(u1, 1.0f - t->a1);
        t->b2 = ramp_weight(u2, 1.0f - t->a2);
    }
    direction_begin(t, p, lim, 0u);
    *searching = 1;
    return BF_OK;
}

bf_status_t bf_sop_task_init(bf_sop_task_t *t)
{
    uint32_t k;
    if (t == 0) {
        return BF_E_NULL;
    }
    t->stage = STAGE_IDLE;
    t->dir = t->side = t->pulses = t->k = t->slow = 0u;
    t->width = 0.0f;
    t->horizon = 0u;
    t->published = 0u;
    t->latest = -1;
    t->substeps = 0u;
    for (k = 0u; k < BF_SOP_MAX_HORIZONS; ++k) {
        t->result[k].discharge_W = t->result[k].charge_W = 0.0f;
        t->result[k].discharge_A = t->result[k].charge_A = 0.0f;
        t->result[k].discharge_by = t->result[k].charge_by = 0u;
    }
    return BF_OK;
}

bf_status_t bf_sop_task_step(bf_sop_task_t *t, const bf_soc_ekf_t *s, const bf_cell_params_t *p, float temp_C,
                             const bf_sop_limits_t *lims, uint32_t n_lims, uint32_t budget, int32_t *finished)
{
    uint32_t done = 0u;
    if (t == 0 || s == 0 || p == 0 || lims == 0 || finished == 0) {
        return BF_E_NULL;
    }
    *finished = -1;
    if (n_lims == 0u || n_lims > BF_SOP_MAX_HORIZONS || t->stage > STAGE_SEARCH || t->dir > 1u) {
        return BF_E_RANGE;
    }
    if (t->horizon >= n_lims) {
        t->horizon = 0u;
        t->stage = STAGE_IDLE;
    }
    if (t->stage == STAGE_IDLE) {
        int searching;
        bf_status_t st = horizon_begin(t, s, p, temp_C, &lims[t->horizon], &searching);
        if (st != BF_OK) {
            return st;
        }
        if (!searching) {
            goto publish;
        }
    }
    for (;;) {
        const bf_sop_limits_t *lim = &lims[t->horizon];
        if (budget != 0u && done == budget) {
            return BF_OK;
        }
        done++;
        t->substeps++;
        if (pulse_substep(t, p, lim) && ++t->k < BF_SOP_SUBSTEPS) {
            continue;
        }
        if (pulse_end(t, p, lim)) {
            continue;
        }
        if (t->dir == 0u && t->partial.charge_by == 0u) {   /* else outside the charge window */
            direction_begin(t, p, lim, 1u);
            continue;
        }
        break;
    }
publish:
    t->result[t->horizon] = t->partial;
    t->published |= 1u << t->horizon;
    t->latest = *finished = (int32_t)t->horizon;
    t->horizon = (t->horizon + 1u) % n_lims;
    t->stage = STAGE_IDLE;
    return BF_OK;
}

bf_status_t bf_sop(const bf_soc_ekf_t *s, const bf_cell_params_t *p, float temp_C,
                   const bf_sop_limits_t *lim, bf_sop_t *out)
{
    bf_sop_task_t t;
    int32_t finished;
    bf_status_t st;

    if (s == 0 || p == 0 || lim == 0 || out == 0) {
        return BF_E_NULL;
    }
    (void)bf_sop_task_init(&t);
    st = bf_sop_task_step(&t, s, p, temp_C, lim, 1u, 0u, &finished);
    if (st != BF_OK) {
        return st;
    }
    *out = t.result[0];
    return BF_OK;
}
