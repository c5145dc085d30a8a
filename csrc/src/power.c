/* State of power: see power.h. */
#include "bmsfil/power.h"

#include "bmsfil/bf_math.h"

#define SECONDS_PER_HOUR 3600.0f

/* The model at the start of a pulse, constant over it (power.h). */
typedef struct {
    float z, i1, i2, h;             /* state */
    float dt, rn, kn, m0, m, gamma, eta_chg;    /* per temperature: held */
    float temp_C;
} pulse_t;

static float signf(float v)
{
    return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

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
        || !(lim->temp_max_C > lim->temp_min_C)) {
        return BF_E_RANGE;
    }
    return BF_OK;
}

/* One pulse of constant power P (W, >= 0) in direction dir (-1 discharge,
 * +1 charge). Returns the BF_SOP_BY_* limits it broke (0: none) and the
 * current magnitude at its end. */
static uint32_t simulate(const pulse_t *c, const bf_cell_params_t *p, const bf_sop_limits_t *lim, float dir,
                         float P, float *i_end)
{
    float z = c->z, i1 = c->i1, i2 = c->i2, h = c->h, x = 0.0f;
    const float eta = dir > 0.0f ? c->eta_chg : 1.0f;
    uint32_t k, by = 0u;
    bf_lookup_t at;

    bf_cell_locate(p, z, c->temp_C, &at);
    /* The first sub-step's current-dependent terms (Rn, the hysteresis
     * rate) start from P over the OCV rather than from rest. */
    x = P / bf_cell_ocv(p, &at, 0);
    for (k = 0u; k < BF_SOP_SUBSTEPS; ++k) {
        /* v = e0 + r i for the current i of this sub-step, as the filter
         * predicts: SOC, RC currents and hysteresis move with i first (the
         * OCV's move through its slope), the model's tables at this SOC. */
        float docv, ocv, cap_As, a1, a2, r0, r1, r2, rn, ah, dz_per_A, e0, r, disc, i, v;
        bf_cell_locate_soc(p, z, &at);
        ocv = bf_cell_ocv(p, &at, &docv);
        cap_As = bf_cell_capacity(p, &at) * SECONDS_PER_HOUR;
        a1 = bf_expf(-c->dt / bf_cell_rc_table(p, p->tau1_s, &at));
        a2 = bf_expf(-c->dt / bf_cell_rc_table(p, p->tau2_s, &at));
        r0 = bf_cell_rc_table(p, p->r0_ohm, &at);
        r1 = bf_cell_rc_table(p, p->r1_ohm, &at);
        r2 = bf_cell_rc_table(p, p->r2_ohm, &at);
        rn = c->rn / (1.0f + c->kn * x);
        dz_per_A = eta * c->dt / cap_As;
        ah = bf_expf(-bf_absf(x * dz_per_A * c->gamma));
        e0 = ocv + c->m0 * dir + c->m * (ah * h + (1.0f - ah) * dir) + r1 * a1 * i1 + r2 * a2 * i2;
        r = r0 + rn + r1 * (1.0f - a1) + r2 * (1.0f - a2) + docv * dz_per_A;
        if (dir < 0.0f) {
            /* P = x (e0 - r x): the smaller root is the cell's side. */
            disc = e0 * e0 - 4.0f * r * P;
            if (!(e0 > 0.0f) || disc < 0.0f) {
                *i_end = x;
                return by | BF_SOP_BY_POWER;
            }
            x = r > 0.0f ? (e0 - bf_sqrtf(disc)) / (2.0f * r) : P / e0;
        } else {
            /* P = x (e0 + r x). */
            disc = e0 * e0 + 4.0f * r * P;
            x = r > 0.0f ? (bf_sqrtf(disc) - e0) / (2.0f * r) : P / e0;
        }
        i = dir * x;
        v = e0 + r * i;
        ah = bf_expf(-bf_absf(i * dz_per_A * c->gamma));
        z += i * dz_per_A;
        i1 = a1 * i1 + (1.0f - a1) * i;
        i2 = a2 * i2 + (1.0f - a2) * i;
        h = ah * h + (1.0f - ah) * signf(i);
        if (dir < 0.0f) {
            if (v < lim->v_min_V) by |= BF_SOP_BY_VOLTAGE;
            if (x > lim->i_dis_max_A) by |= BF_SOP_BY_CURRENT;
            if (z < lim->soc_min) by |= BF_SOP_BY_SOC;
        } else {
            if (v > lim->v_max_V) by |= BF_SOP_BY_VOLTAGE;
            if (x > lim->i_chg_max_A) by |= BF_SOP_BY_CURRENT;
            if (z > lim->soc_max) by |= BF_SOP_BY_SOC;
        }
    }
    *i_end = x;
    return by;
}

/* The largest power in direction dir that breaks no limit. */
static float largest(const pulse_t *c, const bf_cell_params_t *p, const bf_sop_limits_t *lim, float dir,
                     float *amps, uint32_t *by)
{
    const float i_max = dir < 0.0f ? lim->i_dis_max_A : lim->i_chg_max_A;
    float lo = 0.0f, hi = lim->v_max_V * i_max, i_lo = 0.0f, i_hi;
    uint32_t k, f;

    f = simulate(c, p, lim, dir, 0.0f, &i_lo);
    if (f != 0u) {
        /* Already outside a limit at rest (e.g. SOC below its window). */
        *amps = 0.0f;
        *by = f;
        return 0.0f;
    }
    f = simulate(c, p, lim, dir, hi, &i_hi);
    if (f == 0u) {
        *amps = i_hi;
        *by = 0u;
        return hi;
    }
    *by = f;
    for (k = 0u; k < BF_SOP_ITERATIONS; ++k) {
        float mid = 0.5f * (lo + hi), i_mid;
        f = simulate(c, p, lim, dir, mid, &i_mid);
        if (f == 0u) {
            lo = mid;
            i_lo = i_mid;
        } else {
            hi = mid;
            *by = f;
        }
    }
    *amps = i_lo;
    return lo;
}

bf_status_t bf_sop(const bf_soc_ekf_t *s, const bf_cell_params_t *p, float temp_C,
                   const bf_sop_limits_t *lim, bf_sop_t *out)
{
    pulse_t c;
    bf_lookup_t at;
    bf_status_t st;

    if (s == 0 || p == 0 || lim == 0 || out == 0) {
        return BF_E_NULL;
    }
    st = bf_sop_limits_check(lim);
    if (st != BF_OK) {
        return st;
    }
    if (!bf_isfinite(temp_C)) {
        return BF_E_RANGE;
    }
    out->discharge_W = out->charge_W = out->discharge_A = out->charge_A = 0.0f;
    if (temp_C < lim->temp_min_C || temp_C > lim->temp_max_C) {
        out->discharge_by = out->charge_by = BF_SOP_BY_TEMP;
        return BF_OK;
    }
    bf_cell_locate(p, s->x[0], temp_C, &at);
    c.z = s->x[0];
    c.i1 = s->x[1];
    c.i2 = s->x[2];
    c.h = s->x[3];
    c.temp_C = temp_C;
    c.dt = lim->horizon_s / (float)BF_SOP_SUBSTEPS;
    c.rn = bf_cell_temp_row(p, p->rn_ohm, &at);
    c.kn = p->rn_sat_per_A;
    c.m0 = bf_cell_temp_row(p, p->hyst_m0_V, &at);
    c.m = bf_cell_temp_row(p, p->hyst_m_V, &at);
    c.gamma = bf_cell_temp_row(p, p->hyst_gamma, &at);
    c.eta_chg = p->eta_charge;
    out->discharge_W = largest(&c, p, lim, -1.0f, &out->discharge_A, &out->discharge_by);
    out->charge_W = largest(&c, p, lim, 1.0f, &out->charge_A, &out->charge_by);
    return BF_OK;
}
