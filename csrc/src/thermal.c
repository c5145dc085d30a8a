/* Core temperature from the surface temperature: see thermal.h. */
#include "bmsfil/thermal.h"

#include "bmsfil/bf_math.h"

#include <float.h>

/* Below this, sinh(x)/x comes from its series: (e1 - e2) / (2 delta) would
 * lose digits to cancellation when the two eigenvalues are close in dt. */
#define SERIES_BELOW 0.5f
/* Largest correlation kept between core and surface: P stays positive
 * definite in single precision. */
#define MAX_CORRELATION 0.9999f

static int positive_finite(float v)
{
    return bf_isfinite(v) && v > 0.0f;
}

static int in_range(float v, float lo, float hi)
{
    return bf_isfinite(v) && v >= lo && v <= hi;
}

bf_status_t bf_thermal_params_check(const bf_thermal_params_t *tp)
{
    if (tp == 0) {
        return BF_E_NULL;
    }
    if (!in_range(tp->cc_J_per_K, BF_THERMAL_MIN_J_PER_K, BF_THERMAL_MAX_J_PER_K)
        || !in_range(tp->cs_J_per_K, BF_THERMAL_MIN_J_PER_K, BF_THERMAL_MAX_J_PER_K)
        || !in_range(tp->rc_K_per_W, BF_THERMAL_MIN_K_PER_W, BF_THERMAL_MAX_K_PER_W)
        || !in_range(tp->ru_K_per_W, BF_THERMAL_MIN_K_PER_W, BF_THERMAL_MAX_K_PER_W)) {
        return BF_E_PARAMS;
    }
    return BF_OK;
}

/* The accepted range of each tuning field, in bf_thermal_tuning_t's order
 * (q_heat_W2_s, q_heat_rel2_s, q_surface_K2_per_s, r_surface_K2,
 * p0_core_K2, p0_surface_K2, p_floor_K2, p_max_K2, gate_sigma, heat_max_W,
 * temp_min_C, temp_max_C, dt_max_s); the fields of TUNING_POSITIVE must
 * also be above 0; and p_max_K2 >= p_floor_K2, temp_max_C > temp_min_C. */
#define TUNING_FIELDS 13
#define TUNING_POSITIVE ((1u << 4) | (1u << 5) | (1u << 9) | (1u << 12))
static const float tuning_lo[TUNING_FIELDS] = {0.0f, 0.0f, 0.0f, 1e-8f, 0.0f, 0.0f, 1e-10f,
                                               0.0f, 1e-3f, 0.0f, -273.15f, -273.15f, 0.0f};
static const float tuning_hi[TUNING_FIELDS] = {1e6f, 1e6f, 1e6f, 1e6f, FLT_MAX, FLT_MAX, 1e6f,
                                               1e8f, 1e6f, FLT_MAX, 1e4f, 1e4f, FLT_MAX};

bf_status_t bf_thermal_tuning_check(const bf_thermal_tuning_t *t)
{
    /* The struct is TUNING_FIELDS floats: a copy in a union reads them as an array. */
    union {
        bf_thermal_tuning_t t;
        float v[TUNING_FIELDS];
    } u;
    int i;
    typedef char tuning_is_floats[sizeof(u.t) == sizeof(u.v) ? 1 : -1];
    (void)sizeof(tuning_is_floats);
    if (t == 0) {
        return BF_E_NULL;
    }
    u.t = *t;
    for (i = 0; i < TUNING_FIELDS; ++i) {
        if (!in_range(u.v[i], tuning_lo[i], tuning_hi[i]) || (u.v[i] == 0.0f && ((TUNING_POSITIVE >> i) & 1u))) {
            return BF_E_TUNING;
        }
    }
    return t->p_max_K2 >= t->p_floor_K2 && t->temp_max_C > t->temp_min_C ? BF_OK : BF_E_TUNING;
}

/* bf_thermal_discretise for inputs already checked. */
static void discretise(const bf_thermal_params_t *tp, float dt_s, float heat_W, float ambient_C, bf_thermal_disc_t *d)
{
    float a, b, c, dd, tau, half, delta, det, l1, l2, e1, e2, c0, s0;
    /* A = [[a, b], [c, dd]] */
    b = 1.0f / (tp->rc_K_per_W * tp->cc_J_per_K);
    a = -b;
    c = 1.0f / (tp->rc_K_per_W * tp->cs_J_per_K);
    dd = -c - 1.0f / (tp->ru_K_per_W * tp->cs_J_per_K);
    tau = 0.5f * (a + dd);
    half = 0.5f * (a - dd);
    /* The eigenvalues are real and negative (b c > 0, det > 0). l2, the
     * faster, without cancellation; l1 = det / l2, since l1 = tau + delta
     * would cancel when the slow mode is much slower than the fast one. */
    delta = bf_sqrtf(half * half + b * c);
    det = 1.0f / (tp->rc_K_per_W * tp->cc_J_per_K * tp->ru_K_per_W * tp->cs_J_per_K);
    l2 = tau - delta;
    l1 = det / l2;
    e1 = bf_expf(l1 * dt_s);
    e2 = bf_expf(l2 * dt_s);
    /* e^{A dt} = c0 I + s0 (A - tau I), c0 = e^{tau dt} cosh(delta dt),
     * s0 = e^{tau dt} sinh(delta dt) / delta. */
    c0 = 0.5f * (e1 + e2);
    if (delta * dt_s < SERIES_BELOW) {
        float x = delta * dt_s, x2 = x * x;
        float shc = 1.0f + x2 * (1.0f / 6.0f + x2 * (1.0f / 120.0f + x2 * (1.0f / 5040.0f + x2 * (1.0f / 362880.0f))));
        s0 = bf_expf(0.5f * (l1 + l2) * dt_s) * dt_s * shc;
    } else {
        s0 = (e1 - e2) / (l1 - l2);
    }
    d->Ad[0][0] = c0 + s0 * half;
    d->Ad[0][1] = s0 * b;
    d->Ad[1][0] = s0 * c;
    d->Ad[1][1] = c0 - s0 * half;
    d->ss[1] = ambient_C + tp->ru_K_per_W * heat_W;
    d->ss[0] = d->ss[1] + tp->rc_K_per_W * heat_W;
}

/* The model and the tuning, as bf_thermal_init and the batch calls check them. */
static bf_status_t check_model(const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t)
{
    bf_status_t st = bf_thermal_params_check(tp);
    return st == BF_OK ? bf_thermal_tuning_check(t) : st;
}

bf_status_t bf_thermal_discretise(const bf_thermal_params_t *tp, float dt_s, float heat_W, float ambient_C,
                                  bf_thermal_disc_t *d)
{
    bf_status_t st;
    if (d == 0) {
        return BF_E_NULL;
    }
    st = bf_thermal_params_check(tp);
    if (st != BF_OK) {
        return st;
    }
    if (!positive_finite(dt_s) || !bf_isfinite(heat_W) || !bf_isfinite(ambient_C)) {
        return BF_E_RANGE;
    }
    discretise(tp, dt_s, heat_W, ambient_C, d);
    return BF_OK;
}

float bf_thermal_heat_W(const bf_cell_params_t *p, float soc, float temp_C, float current_A, float voltage_V)
{
    bf_lookup_t at;
    bf_bits32_t nan;
    if (p == 0 || !bf_isfinite(soc) || !bf_isfinite(temp_C) || !bf_isfinite(current_A) || !bf_isfinite(voltage_V)) {
        nan.u = 0x7fc00000u;
        return nan.f;
    }
    bf_cell_locate(p, bf_clampf(soc, 0.0f, 1.0f), temp_C, &at);
    return current_A * (voltage_V - bf_cell_ocv(p, &at, 0));
}

/* Symmetrise P and bring each variance into [floor, max] and the
 * correlation inside MAX_CORRELATION. Returns 1 if anything beyond symmetry
 * changed. */
static int repair_covariance(bf_thermal_t *s, const bf_thermal_tuning_t *t)
{
    float (*P)[2] = s->P;
    int repaired = 0, i;
    float off = 0.5f * (P[0][1] + P[1][0]), lim;
    for (i = 0; i < 2; ++i) {
        if (!(P[i][i] >= t->p_floor_K2)) {
            P[i][i] = t->p_floor_K2;
            repaired = 1;
        } else if (P[i][i] > t->p_max_K2) {
            /* Scale the row and column together: still a covariance. */
            float k = bf_sqrtf(t->p_max_K2 / P[i][i]);
            off *= k;
            P[i][i] = t->p_max_K2;
            repaired = 1;
        }
    }
    lim = MAX_CORRELATION * bf_sqrtf(P[0][0] * P[1][1]);
    if (!bf_isfinite(off)) {
        off = 0.0f;
        repaired = 1;
    } else if (bf_absf(off) > lim) {
        off = off > 0.0f ? lim : -lim;
        repaired = 1;
    }
    P[0][1] = P[1][0] = off;
    return repaired;
}

bf_status_t bf_thermal_init(bf_thermal_t *s, const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t,
                            float surface_C, float ambient_C)
{
    bf_status_t st;
    int surface_ok, ambient_ok;
    float start;
    if (s == 0) {
        return BF_E_NULL;
    }
    st = check_model(tp, t);
    if (st != BF_OK) {
        return st;
    }
    surface_ok = in_range(surface_C, t->temp_min_C, t->temp_max_C);
    ambient_ok = in_range(ambient_C, t->temp_min_C, t->temp_max_C);
    if (!surface_ok && !ambient_ok) {
        return BF_E_RANGE;
    }
    start = surface_ok ? surface_C : ambient_C;
    s->x[0] = s->x[1] = start;
    s->P[0][0] = t->p0_core_K2;
    s->P[1][1] = t->p0_surface_K2;
    s->P[0][1] = s->P[1][0] = 0.0f;
    (void)repair_covariance(s, t);
    s->last_heat_W = 0.0f;
    s->last_ambient_C = ambient_ok ? ambient_C : surface_C;
    s->ambient_shift_C = 0.0f;
    s->gated_side = 0.0f;
    return BF_OK;
}

static void report(const bf_thermal_t *s, float heat_W, float innovation_C, uint32_t flags, bf_thermal_out_t *out)
{
    out->core_C = s->x[0];
    out->core_sigma_C = bf_sqrtf(s->P[0][0]);
    out->surface_C = s->x[1];
    out->surface_sigma_C = bf_sqrtf(s->P[1][1]);
    out->heat_W = heat_W;
    out->innovation_C = innovation_C;
    out->flags = flags;
}

bf_status_t bf_thermal_step(bf_thermal_t *s, const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t,
                            float dt_s, float heat_W, float surface_C, float ambient_C, bf_thermal_out_t *out)
{
    bf_thermal_t n;
    bf_thermal_disc_t d;
    uint32_t flags = 0u;
    float x0, x1, AP[2][2], q_core, innov = 0.0f;
    int i, j;

    if (s == 0 || tp == 0 || t == 0 || out == 0) {
        return BF_E_NULL;
    }
    if (!positive_finite(dt_s) || dt_s > t->dt_max_s) {
        /* An interval longer than dt_max_s is time the filter did not see,
         * long enough for the cell to settle to its surroundings: it starts
         * again from this sample's readings (bf_thermal_init; the last
         * ambient where this one is not valid; nothing changes if neither
         * is). Any other bad interval skips the sample. */
        if (dt_s > t->dt_max_s) {
            (void)bf_thermal_init(s, tp, t, surface_C,
                                  in_range(ambient_C, t->temp_min_C, t->temp_max_C) ? ambient_C : s->last_ambient_C);
        }
        report(s, s->last_heat_W, 0.0f, BF_THERMAL_DT_INVALID, out);
        return BF_OK;
    }
    n = *s;
    if (bf_isfinite(heat_W) && bf_absf(heat_W) <= t->heat_max_W) {
        n.last_heat_W = heat_W;
    } else {
        flags |= BF_THERMAL_HEAT_INVALID;
    }
    if (in_range(ambient_C, t->temp_min_C, t->temp_max_C)) {
        n.last_ambient_C = ambient_C;
    } else {
        flags |= BF_THERMAL_AMBIENT_INVALID;
    }

    /* Predict: x = ss + Ad (x - ss), P = Ad P Ad' + Qd. */
    discretise(tp, dt_s, n.last_heat_W,
               bf_clampf(n.last_ambient_C + n.ambient_shift_C, t->temp_min_C, t->temp_max_C), &d);
    x0 = n.x[0] - d.ss[0];
    x1 = n.x[1] - d.ss[1];
    n.x[0] = d.ss[0] + d.Ad[0][0] * x0 + d.Ad[0][1] * x1;
    n.x[1] = d.ss[1] + d.Ad[1][0] * x0 + d.Ad[1][1] * x1;
    for (i = 0; i < 2; ++i) {
        for (j = 0; j < 2; ++j) {
            AP[i][j] = d.Ad[i][0] * s->P[0][j] + d.Ad[i][1] * s->P[1][j];
        }
    }
    for (i = 0; i < 2; ++i) {
        for (j = 0; j < 2; ++j) {
            n.P[i][j] = AP[i][0] * d.Ad[j][0] + AP[i][1] * d.Ad[j][1];
        }
    }
    /* The heat's error reaches the core through 1/Cc (first order in dt;
     * the ceiling bounds it across long intervals). */
    q_core = (t->q_heat_W2_s + t->q_heat_rel2_s * n.last_heat_W * n.last_heat_W) / (tp->cc_J_per_K * tp->cc_J_per_K);
    n.P[0][0] += q_core * dt_s;
    n.P[1][1] += t->q_surface_K2_per_s * dt_s;
    if (repair_covariance(&n, t)) {
        flags |= BF_THERMAL_COV_REPAIRED;
    }

    /* Correct with the surface reading: H = [0 1]. */
    if (in_range(surface_C, t->temp_min_C, t->temp_max_C)) {
        float r = t->r_surface_K2, S, k0, k1, gate2, IKH[2][2], M[2][2];
        innov = surface_C - n.x[1];
        S = n.P[1][1] + r;
        gate2 = t->gate_sigma * t->gate_sigma;
        if (innov * innov > gate2 * S) {
            /* A reading beyond the gate is either a bad one or a change the
             * model did not see: the surroundings warmed or cooled (a
             * chamber, a car leaving its garage), which moves core, surface
             * and ambient alike. A single one is down-weighted: R is
             * inflated so that the innovation sits exactly on the gate. When
             * the reading before was beyond the gate on the same side too,
             * the disagreement is taken, at a rate, as such a shift c: of the
             * variance S lacks for the innovation to sit on the gate, the
             * share dt / BF_THERMAL_GATE_TAU_S (all of it for a longer
             * interval) is c's variance, added to both temperatures fully
             * correlated, before R is inflated for the rest; the ambient
             * moves by c's estimate, var(c) innov / S. An isolated bad
             * reading thus moves nothing but its own down-weighted
             * correction, whatever the interval; a disagreement that
             * persists is followed within about BF_THERMAL_GATE_TAU_S (a
             * chamber warming 40 K while the cell rested, logged each
             * minute, kept the filter at the old temperature for hours with
             * a sigma of 0.1 K). A burst of bad readings on one side is
             * followed like a change, for as long as it lasts. */
            float side = innov > 0.0f ? 1.0f : -1.0f;
            if (n.gated_side == side) {
                float share = dt_s < BF_THERMAL_GATE_TAU_S ? dt_s / BF_THERMAL_GATE_TAU_S : 1.0f;
                float grow = (innov * innov / gate2 - S) * share;
                for (i = 0; i < 2; ++i) {
                    for (j = 0; j < 2; ++j) {
                        n.P[i][j] += grow;
                    }
                }
                S += grow;
                n.ambient_shift_C += grow * innov / (innov * innov > gate2 * S ? innov * innov / gate2 : S);
                n.ambient_shift_C = bf_clampf(n.ambient_shift_C, t->temp_min_C - t->temp_max_C,
                                              t->temp_max_C - t->temp_min_C);
            }
            n.gated_side = side;
            if (innov * innov > gate2 * S) {
                S = innov * innov / gate2;
                r = S - n.P[1][1];
            }
            flags |= BF_THERMAL_GATED;
        } else {
            n.gated_side = 0.0f;
        }
        k0 = n.P[0][1] / S;
        k1 = n.P[1][1] / S;
        n.x[0] += k0 * innov;
        n.x[1] += k1 * innov;
        /* Joseph form: P = (I - K H) P (I - K H)' + K r K'. */
        IKH[0][0] = 1.0f;
        IKH[0][1] = -k0;
        IKH[1][0] = 0.0f;
        IKH[1][1] = 1.0f - k1;
        for (i = 0; i < 2; ++i) {
            for (j = 0; j < 2; ++j) {
                M[i][j] = IKH[i][0] * n.P[0][j] + IKH[i][1] * n.P[1][j];
            }
        }
        n.P[0][0] = M[0][0] * IKH[0][0] + M[0][1] * IKH[0][1] + k0 * r * k0;
        n.P[0][1] = M[0][0] * IKH[1][0] + M[0][1] * IKH[1][1] + k0 * r * k1;
        n.P[1][0] = M[1][0] * IKH[0][0] + M[1][1] * IKH[0][1] + k1 * r * k0;
        n.P[1][1] = M[1][0] * IKH[1][0] + M[1][1] * IKH[1][1] + k1 * r * k1;
        if (repair_covariance(&n, t)) {
            flags |= BF_THERMAL_COV_REPAIRED;
        }
    } else {
        flags |= BF_THERMAL_SURFACE_INVALID;
    }

    for (i = 0; i < 2; ++i) {
        if (!bf_isfinite(n.x[i])) {
            return BF_E_NUMERIC;
        }
        if (n.x[i] < t->temp_min_C || n.x[i] > t->temp_max_C) {
            n.x[i] = bf_clampf(n.x[i], t->temp_min_C, t->temp_max_C);
            flags |= BF_THERMAL_CLAMPED;
        }
    }
    if (!bf_isfinite(n.P[0][0]) || !bf_isfinite(n.P[1][1]) || !bf_isfinite(n.P[0][1])) {
        return BF_E_NUMERIC;
    }
    *s = n;
    report(s, n.last_heat_W, innov, flags, out);
    return BF_OK;
}

bf_status_t bf_thermal_run_heat(bf_thermal_t *s, const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t,
                                const float *dt_s, const float *heat_W, const float *surface_C,
                                const float *ambient_C, size_t n, float *core_C, float *core_sigma_C,
                                float *surface_est_C, uint8_t *flags)
{
    size_t k;
    bf_bits32_t nan;
    bf_status_t checked;
    if (dt_s == 0 || heat_W == 0 || surface_C == 0) {
        return BF_E_NULL;
    }
    checked = check_model(tp, t);
    if (checked != BF_OK) {
        return checked;
    }
    nan.u = 0x7fc00000u;
    for (k = 0u; k < n; ++k) {
        bf_thermal_out_t o;
        bf_status_t st = bf_thermal_step(s, tp, t, dt_s[k], heat_W[k], surface_C[k],
                                         ambient_C != 0 ? ambient_C[k] : nan.f, &o);
        if (st != BF_OK) {
            return st;
        }
        if (core_C != 0) core_C[k] = o.core_C;
        if (core_sigma_C != 0) core_sigma_C[k] = o.core_sigma_C;
        if (surface_est_C != 0) surface_est_C[k] = o.surface_C;
        if (flags != 0) flags[k] = (uint8_t)o.flags;
    }
    return BF_OK;
}

bf_status_t bf_thermal_run(bf_soc_ekf_t *ekf, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *ft,
                           bf_thermal_t *s, const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t,
                           const float *dt_s, const float *current_A, const float *voltage_V,
                           const float *surface_C, const float *ambient_C, size_t n, float *soc,
                           float *core_C, float *core_sigma_C, float *surface_est_C, float *heat_W,
                           uint8_t *flags)
{
    size_t k;
    bf_bits32_t nan;
    bf_status_t checked;
    if (dt_s == 0 || current_A == 0 || voltage_V == 0 || surface_C == 0) {
        return BF_E_NULL;
    }
    /* The tables once per call, as bf_soc_ekf_run (the steps do not check them). */
    checked = bf_cell_params_check(p);
    if (checked == BF_OK) {
        checked = bf_soc_ekf_tuning_check(ft);
    }
    if (checked == BF_OK) {
        checked = check_model(tp, t);
    }
    if (checked != BF_OK) {
        return checked;
    }
    nan.u = 0x7fc00000u;
    for (k = 0u; k < n; ++k) {
        bf_soc_ekf_out_t eo;
        bf_thermal_out_t o;
        float q = nan.f;
        bf_status_t st = bf_soc_ekf_step(ekf, p, ft, dt_s[k], current_A[k], voltage_V[k], surface_C[k], &eo);
        if (st != BF_OK) {
            return st;
        }
        if ((eo.flags & (BF_FLAG_VOLTAGE_INVALID | BF_FLAG_CURRENT_INVALID | BF_FLAG_DT_INVALID)) == 0u) {
            q = bf_thermal_heat_W(p, eo.soc, ekf->last_temp_C, current_A[k], voltage_V[k]);
        }
        st = bf_thermal_step(s, tp, t, dt_s[k], q, surface_C[k], ambient_C != 0 ? ambient_C[k] : nan.f, &o);
        if (st != BF_OK) {
            return st;
        }
        if (soc != 0) soc[k] = eo.soc;
        if (core_C != 0) core_C[k] = o.core_C;
        if (core_sigma_C != 0) core_sigma_C[k] = o.core_sigma_C;
        if (surface_est_C != 0) surface_est_C[k] = o.surface_C;
        if (heat_W != 0) heat_W[k] = o.heat_W;
        if (flags != 0) flags[k] = (uint8_t)o.flags;
    }
    return BF_OK;
}
