/* Total capacity by AWTLS over SOC anchors: see capacity.h. */
#include "bmsfil/capacity.h"

#include "bmsfil/bf_math.h"

#define SECONDS_PER_HOUR 3600.0f
/* Bracket of the scaled capacity the solver searches (1/100 to 100 times rated). */
#define Q_MIN 0.01f
#define Q_MAX 100.0f
#define BISECTIONS 32u
/* 64 cells from Q_MIN to Q_MAX: 10^(4/64) each. */
#define GRID 64u
#define GRID_RATIO 1.1547820f
/* A pair is learned only if its own capacity, charge / SOC change, is
 * between these (times rated): see offer_anchor. */
#define PAIR_Q_MIN 0.25f
#define PAIR_Q_MAX 4.0f

static int positive_finite(float v)
{
    return bf_isfinite(v) && v > 0.0f;
}

bf_status_t bf_capacity_tuning_check(const bf_capacity_tuning_t *t)
{
    if (t == 0) {
        return BF_E_NULL;
    }
    if (!positive_finite(t->rated_Ah) || t->rated_Ah < BF_MIN_CAPACITY_AH || !positive_finite(t->prior_sigma_rel)
        || !positive_finite(t->memory_cycles) || !positive_finite(t->rest_current_A)
        || !positive_finite(t->rest_anchor_s) || !bf_isfinite(t->full_margin_V) || t->full_margin_V < 0.0f
        || !positive_finite(t->full_sigma) || !positive_finite(t->empty_V) || !positive_finite(t->empty_current_A)
        || !positive_finite(t->empty_sigma) || !bf_isfinite(t->empty_soc_max) || t->empty_soc_max < 0.0f || !positive_finite(t->min_dsoc) || t->min_dsoc > 1.0f
        || !bf_isfinite(t->current_sigma_A) || t->current_sigma_A < 0.0f || !bf_isfinite(t->current_bias_A)
        || t->current_bias_A < 0.0f || !positive_finite(t->gap_s)) {
        return BF_E_CONFIG;
    }
    return BF_OK;
}

/* J(Q) = N(Q) / (1 + Q^2)^2 and its first two derivatives. */
typedef struct {
    float j, dj, d2j;
} cost_t;

static cost_t awtls_cost(const float c[6], float q)
{
    float q2 = q * q;
    float n = (((c[3] * q - 2.0f * c[4]) * q + (c[0] + c[5])) * q - 2.0f * c[1]) * q + c[2];
    float dn = ((4.0f * c[3] * q - 6.0f * c[4]) * q + 2.0f * (c[0] + c[5])) * q - 2.0f * c[1];
    float d2n = (12.0f * c[3] * q - 12.0f * c[4]) * q + 2.0f * (c[0] + c[5]);
    float d = (1.0f + q2) * (1.0f + q2);
    float dd = 4.0f * q * (1.0f + q2);
    float d2d = 4.0f + 12.0f * q2;
    cost_t r;
    r.j = n / d;
    r.dj = (dn - r.j * dd) / d;
    r.d2j = (d2n - 2.0f * r.dj * dd - r.j * d2d) / d;
    return r;
}

/* The quartic dJ/dQ (times (1 + Q^2)^3 / 2, which keeps its sign). */
static float awtls_quartic(const float c[6], float q)
{
    return (((c[4] * q + (2.0f * c[3] - c[0] - c[5])) * q + 3.0f * (c[1] - c[4])) * q + (c[0] + c[5] - 2.0f * c[2]))
               * q
           - c[1];
}

/* Minimise J over [Q_MIN, Q_MAX]: the quartic's roots are bracketed on a
 * geometric grid (GRID cells, each 15.5 % wide) and refined by bisection;
 * the root (or grid end) of least cost wins. J can have two minima (the
 * prior and the data disagreeing), so the first root found is not enough. */
static float awtls_minimise(const float c[6])
{
    float best = Q_MIN, best_j = awtls_cost(c, Q_MIN).j;
    float a = Q_MIN, ga = awtls_quartic(c, a);
    uint32_t k;
    for (k = 0u; k < GRID; ++k) {
        float b = a * GRID_RATIO;
        float gb = awtls_quartic(c, b);
        float j;
        if ((ga < 0.0f) != (gb < 0.0f)) {
            float lo = a, hi = b, glo = ga, q;
            uint32_t i;
            for (i = 0u; i < BISECTIONS; ++i) {
                float mid = 0.5f * (lo + hi);
                float gm = awtls_quartic(c, mid);
                if ((gm < 0.0f) == (glo < 0.0f)) {
                    lo = mid;
                    glo = gm;
                } else {
                    hi = mid;
                }
            }
            q = 0.5f * (lo + hi);
            j = awtls_cost(c, q).j;
            if (j < best_j) {
                best = q;
                best_j = j;
            }
        }
        a = b;
        ga = gb;
    }
    if (awtls_cost(c, a).j < best_j) {
        best = a;
    }
    return best;
}

static void awtls_solve(bf_awtls_t *f)
{
    float q = awtls_minimise(f->c);
    cost_t at = awtls_cost(f->c, q);
    f->q = q;
    /* sigma = sqrt(2 / J''); a flat or concave cost leaves the estimate
     * unknown to within its own size. */
    f->q_sigma = (at.d2j > 0.0f && bf_isfinite(at.d2j)) ? bf_sqrtf(2.0f / at.d2j) : q;
}

bf_status_t bf_awtls_init(bf_awtls_t *f, float q, float q_sigma)
{
    float var, w;
    if (f == 0) {
        return BF_E_NULL;
    }
    if (!positive_finite(q) || !positive_finite(q_sigma) || q < Q_MIN || q > Q_MAX) {
        return BF_E_RANGE;
    }
    /* One pair x = 1, y = q with equal x and y errors whose TLS variance,
     * var (1 + q^2), is the prior's. */
    var = q_sigma * q_sigma / (1.0f + q * q);
    w = 1.0f / var;
    f->c[0] = w;
    f->c[1] = q * w;
    f->c[2] = q * q * w;
    f->c[3] = w;
    f->c[4] = q * w;
    f->c[5] = q * q * w;
    f->q = q;
    f->q_sigma = q_sigma;
    f->updates = 0u;
    return BF_OK;
}

bf_status_t bf_awtls_update(bf_awtls_t *f, float memory_cycles, float x, float var_x, float y, float var_y)
{
    float decay, wx, wy;
    uint32_t k;
    if (f == 0) {
        return BF_E_NULL;
    }
    if (!positive_finite(memory_cycles) || !bf_isfinite(x) || !bf_isfinite(y) || !positive_finite(var_x)
        || !positive_finite(var_y)) {
        return BF_E_RANGE;
    }
    decay = bf_expf(-bf_absf(x) / memory_cycles);
    for (k = 0u; k < 6u; ++k) {
        f->c[k] *= decay;
    }
    wx = 1.0f / var_x;
    wy = 1.0f / var_y;
    f->c[0] += x * x * wy;
    f->c[1] += x * y * wy;
    f->c[2] += y * y * wy;
    f->c[3] += x * x * wx;
    f->c[4] += x * y * wx;
    f->c[5] += y * y * wx;
    f->updates += 1u;
    awtls_solve(f);
    return BF_OK;
}

static void drop_anchor(bf_capacity_t *s)
{
    s->has_anchor = 0u;
    s->charge = 0.0f;
    s->charge_var = 0.0f;
    s->anchor_age_s = 0.0f;
}

static void set_anchor(bf_capacity_t *s, float soc, float var)
{
    s->has_anchor = 1u;
    s->anchor_soc = soc;
    s->anchor_var = var;
    s->charge = 0.0f;
    s->charge_var = 0.0f;
    s->anchor_age_s = 0.0f;
}

bf_status_t bf_capacity_init(bf_capacity_t *s, const bf_capacity_tuning_t *t)
{
    bf_status_t st;
    if (s == 0 || t == 0) {
        return BF_E_NULL;
    }
    st = bf_capacity_tuning_check(t);
    if (st != BF_OK) {
        return st;
    }
    return bf_capacity_init_from(s, t, t->rated_Ah, t->prior_sigma_rel * t->rated_Ah);
}

bf_status_t bf_capacity_init_from(bf_capacity_t *s, const bf_capacity_tuning_t *t, float capacity_Ah,
                                  float sigma_Ah)
{
    bf_status_t st;
    bf_capacity_t fresh;
    if (s == 0 || t == 0) {
        return BF_E_NULL;
    }
    st = bf_capacity_tuning_check(t);
    if (st != BF_OK) {
        return st;
    }
    st = bf_awtls_init(&fresh.fit, capacity_Ah / t->rated_Ah, sigma_Ah / t->rated_Ah);
    if (st != BF_OK) {
        return st;
    }
    drop_anchor(&fresh);
    fresh.anchor_soc = 0.0f;
    fresh.anchor_var = 0.0f;
    fresh.rest_s = 0.0f;
    fresh.rest_anchored = 0u;
    fresh.last_current_A = 0.0f;
    fresh.last_voltage_V = 0.0f;
    fresh.last_dt_s = 0.0f;
    fresh.last_valid = 0u;
    fresh.last_soc = 0.0f;
    *s = fresh;
    return BF_OK;
}

/* A moment of known SOC: open a pair, close one, or improve the open anchor. */
static uint32_t offer_anchor(bf_capacity_t *s, const bf_capacity_tuning_t *t, float soc, float var)
{
    float x, bias, var_y;
    if (!s->has_anchor) {
        set_anchor(s, soc, var);
        return 0u;
    }
    x = soc - s->anchor_soc;
    if (bf_absf(x) < t->min_dsoc) {
        if (var < s->anchor_var) {
            set_anchor(s, soc, var);
        }
        return 0u;
    }
    bias = t->current_bias_A * s->anchor_age_s / (SECONDS_PER_HOUR * t->rated_Ah);
    var_y = s->charge_var + bias * bias;
    /* A perfect sensor still counts in whole samples. */
    if (!(var_y > 1e-12f)) {
        var_y = 1e-12f;
    }
    {
        /* A pair whose own capacity (charge / SOC change) is below a quarter
         * or above four times the rating, or whose charge and SOC change
         * disagree in sign, has a wrong anchor in it, not news of the
         * capacity: learned, it drives the fit to the end of its range (seen:
         * a cut-off in the cold taken for empty, then the OCV of the warm
         * rest, half the SOC back without any charge, sent the LG HG2 to
         * 300 Ah). The new anchor is taken; the pair is not learned. */
        float q_pair = s->charge / x; /* |x| >= min_dsoc > 0 */
        uint32_t updated = q_pair >= PAIR_Q_MIN && q_pair <= PAIR_Q_MAX
                                   && bf_awtls_update(&s->fit, t->memory_cycles, x, var + s->anchor_var, s->charge,
                                                      var_y) == BF_OK
                               ? BF_CAP_UPDATED
                               : 0u;
        set_anchor(s, soc, var);
        return updated;
    }
}

/* The previous sample ended a discharge at its cut-off (the current one rests,
 * or the record breaks): an empty anchor. The cut-off fell inside the last
 * loaded interval, so that interval's charge, as SOC, is spread uniformly
 * over it. */
static uint32_t empty_anchor(bf_capacity_t *s, const bf_capacity_tuning_t *t)
{
    float spread;
    if (!(s->last_valid && s->last_current_A <= -t->empty_current_A && s->last_voltage_V <= t->empty_V
          && s->last_soc <= t->empty_soc_max)) {
        return 0u;
    }
    s->last_valid = 0u;  /* one anchor per cut-off */
    spread = -s->last_current_A * s->last_dt_s / (SECONDS_PER_HOUR * t->rated_Ah * s->fit.q);
    return BF_CAP_ANCHOR_EMPTY | offer_anchor(s, t, 0.0f, t->empty_sigma * t->empty_sigma + spread * spread / 12.0f);
}

bf_status_t bf_capacity_step(bf_capacity_t *s, const bf_cell_params_t *p, const bf_capacity_tuning_t *t,
                             float dt_s, float current_A, float voltage_V, float temp_C,
                             const bf_soc_ekf_out_t *ekf, bf_capacity_out_t *out)
{
    uint32_t events = 0u;
    int current_ok, voltage_ok, resting;
    if (s == 0 || p == 0 || t == 0 || ekf == 0 || out == 0) {
        return BF_E_NULL;
    }
    if (bf_capacity_tuning_check(t) != BF_OK) {
        return BF_E_CONFIG;
    }
    current_ok = bf_isfinite(current_A) && !(ekf->flags & BF_FLAG_CURRENT_INVALID);
    /* A voltage outside the filter's plausible range still says where a
     * discharge stopped: only non-finite readings are unusable here. */
    voltage_ok = bf_isfinite(voltage_V) && bf_isfinite(temp_C);
    resting = current_ok && bf_absf(current_A) <= t->rest_current_A;

    if (!bf_isfinite(dt_s) || dt_s < 0.0f || dt_s > t->gap_s || !current_ok) {
        /* The record breaks: a discharge that was at its cut-off ended there;
         * the charge from here on is unknown. */
        events |= empty_anchor(s, t);
        if (s->has_anchor) {
            events |= BF_CAP_BROKEN;
        }
        drop_anchor(s);
        s->rest_s = 0.0f;
        s->rest_anchored = 0u;
    } else {
        float eta = current_A > 0.0f ? p->eta_charge : 1.0f;
        float dq = eta * current_A * dt_s / (SECONDS_PER_HOUR * t->rated_Ah);
        float sq = t->current_sigma_A * dt_s / (SECONDS_PER_HOUR * t->rated_Ah);
        s->charge += dq;
        s->charge_var += sq * sq;
        s->anchor_age_s += dt_s;
        if (resting) {
            s->rest_s += dt_s;
        } else {
            s->rest_s = 0.0f;
            s->rest_anchored = 0u;
        }
    }

    if (voltage_ok && resting) {
        bf_lookup_t at;
        float ocv_full;
        bf_cell_locate(p, 1.0f, temp_C, &at);
        ocv_full = bf_cell_ocv(p, &at, 0);
        uint32_t empty = empty_anchor(s, t);
        if (empty != 0u) {
            events |= empty;
        } else if (voltage_V >= ocv_full - t->full_margin_V) {
            events |= BF_CAP_ANCHOR_FULL | offer_anchor(s, t, 1.0f, t->full_sigma * t->full_sigma);
        } else if (s->rest_s >= t->rest_anchor_s && !s->rest_anchored && !(ekf->flags & BF_FLAG_VOLTAGE_INVALID)
                   && bf_isfinite(ekf->soc_sigma) && ekf->soc_sigma > 0.0f) {
            s->rest_anchored = 1u;
            events |= BF_CAP_ANCHOR_REST | offer_anchor(s, t, ekf->soc, ekf->soc_sigma * ekf->soc_sigma);
        }
    }

    s->last_valid = (uint32_t)(current_ok && voltage_ok && bf_isfinite(dt_s) && dt_s >= 0.0f && dt_s <= t->gap_s);
    s->last_current_A = current_ok ? current_A : 0.0f;
    /* Without the model's instantaneous drop: a cut-off reached under a
     * pulse (a drive cycle's last acceleration, a cold cell's resistance) is
     * the resistance's, not an empty cell's (empty_anchor). Read only after
     * a valid sample (last_valid); unconditional, it costs 40 bytes less
     * flash than a conditional store. */
    s->last_voltage_V = voltage_V - ekf->ohmic_V;
    s->last_dt_s = s->last_valid ? dt_s : 0.0f;
    s->last_soc = ekf->soc;

    out->capacity_Ah = s->fit.q * t->rated_Ah;
    out->capacity_sigma_Ah = s->fit.q_sigma * t->rated_Ah;
    out->soh = s->fit.q;
    out->events = events;
    return BF_OK;
}
