#include "bmsfil/soc_ekf.h"

#include "bmsfil/bf_math.h"

#define NX BF_SOC_EKF_NX
#define SECONDS_PER_HOUR 3600.0f
/* Temperatures outside BF_TEMP_MIN_C..BF_TEMP_MAX_C are a broken sensor, not
 * a cell; a voltage beyond BF_VOLTAGE_MARGIN_V outside the cell's range a
 * sensor fault rather than an extreme operating point (cell_model.h). */
/* Variances beyond these mean the filter has lost the plot; bounding them
 * keeps the arithmetic finite. */
#define P_MAX_SOC 1.0f
#define P_MAX_HYST 4.0f
/* Smallest measurement variance, relative to the predicted one (HPH'). */
#define R_MIN_REL 1e-6f
/* Largest correlation kept between two states. */
#define CORR_MAX 0.999f
/* The 4x4 loops are worth unrolling (a third of a step's instructions on a
 * Cortex-M4 at -O2) but not everything else -O3 would: ask GCC for these. */
#if defined(__GNUC__) && !defined(__clang__) && (__GNUC__ >= 8)
#define BF_UNROLL _Pragma("GCC unroll 4")
#else
#define BF_UNROLL
#endif
/* Rare paths (a restart after a gap) are compiled for size: flash is the
 * estimator's budget, not their speed. */
#if defined(__GNUC__)
#define BF_COLD __attribute__((cold, noinline))
#else
#define BF_COLD
#endif

/* Which tuning fields (in the struct's order, bit i for the i-th) must be
 * above 0; the others must be 0 or above; all finite; gate_sigma at least
 * BF_GATE_SIGMA_MIN. Above 0: r_voltage_V2_s, r_dt_min_s, the p0_ and
 * p_floor_ variances, dt_max_s. */
#define TUNING_FIELDS 17
#define TUNING_POSITIVE 0x9fe8u

bf_status_t bf_soc_ekf_tuning_check(const bf_soc_ekf_tuning_t *t)
{
    /* The struct is TUNING_FIELDS floats: a copy in a union reads them as an array. */
    union {
        bf_soc_ekf_tuning_t t;
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
        if (!bf_isfinite(u.v[i]) || u.v[i] < 0.0f || (u.v[i] == 0.0f && ((TUNING_POSITIVE >> i) & 1u))) {
            return BF_E_TUNING;
        }
    }
    return t->gate_sigma >= BF_GATE_SIGMA_MIN ? BF_OK : BF_E_TUNING;
}

static bf_status_t check_all(const bf_soc_ekf_t *s, const bf_cell_params_t *p,
                             const bf_soc_ekf_tuning_t *t)
{
    bf_status_t st;
    if (s == 0 || p == 0 || t == 0) {
        return BF_E_NULL;
    }
    st = bf_cell_params_check(p);
    if (st != BF_OK) {
        return st;
    }
    return bf_soc_ekf_tuning_check(t);
}

/* Symmetrise P and bring each variance inside [floor, ceiling]: one below
 * its floor is raised alone (adding a positive diagonal term keeps P positive
 * semi-definite); one above its ceiling is lowered by scaling its row and
 * column together (a congruence D P D, which keeps P positive semi-definite
 * and every correlation as it was). A variance that overflowed or went NaN means "nothing known": it
 * becomes the ceiling, uncorrelated with the rest. Correlations beyond
 * CORR_MAX, which only float rounding can produce, are pulled back last.
 * Returns 1 if anything had to be changed beyond symmetry. */
/* Row and column i of a symmetric P scaled by `scale` (set to 0 when it is
 * 0: a lost row's entries may be NaN), then its variance set to `diag`.
 * Rare, so out of line: the repair's unrolled loop calls it from four places. */
static BF_COLD void rescale(float (*P)[NX], int i, float scale, float diag)
{
    int j;
    for (j = 0; j < NX; ++j) {
        P[i][j] = scale > 0.0f ? P[i][j] * scale : 0.0f;
        P[j][i] = P[i][j];
    }
    P[i][i] = diag;
}

/* A covariance that is not finite (0) or whose square exceeds lim2 (pulled
 * back to the limit; only here is the square root worth its cost). Rare,
 * so out of line, as rescale. */
static BF_COLD float clip_covariance(float c, float lim2)
{
    float lim;
    if (!bf_isfinite(c)) {
        return 0.0f;
    }
    lim = bf_sqrtf(lim2);
    return c > 0.0f ? lim : -lim;
}

static int repair_covariance(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t)
{
    float (*P)[NX] = s->P;
    const float floor_[NX] = { t->p_floor_soc, t->p_floor_irc_A2, t->p_floor_irc_A2, t->p_floor_hyst };
    const float irc_max = p->i_max_A * p->i_max_A;
    const float ceiling[NX] = { P_MAX_SOC, irc_max, irc_max, P_MAX_HYST };
    int repaired = 0;
    int i, j;
    BF_UNROLL
    for (i = 0; i < NX; ++i) {
        BF_UNROLL
        for (j = i + 1; j < NX; ++j) {
            float c = 0.5f * (P[i][j] + P[j][i]);
            P[i][j] = c;
            P[j][i] = c;
        }
    }
    BF_UNROLL
    for (i = 0; i < NX; ++i) {
        float d = P[i][i];
        if (!bf_isfinite(d)) {
            rescale(P, i, 0.0f, ceiling[i]);
            repaired = 1;
            continue;
        }
        if (d < floor_[i]) {
            P[i][i] = floor_[i];
            repaired = 1;
        } else if (d > ceiling[i]) {
            rescale(P, i, bf_sqrtf(ceiling[i] / d), ceiling[i]);
            repaired = 1;
        }
    }
    BF_UNROLL
    for (i = 0; i < NX; ++i) {
        BF_UNROLL
        for (j = i + 1; j < NX; ++j) {
            float c = P[i][j];
            float lim2 = CORR_MAX * CORR_MAX * (P[i][i] * P[j][j]);
            if (!bf_isfinite(c) || c * c > lim2) {
                c = clip_covariance(c, lim2);
                repaired = 1;
            }
            P[i][j] = c;
            P[j][i] = c;
        }
    }
    return repaired;
}

static void init_common(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t, float soc,
                        float p_soc, float temp_C)
{
    int i, j;
    BF_UNROLL
    for (i = 0; i < NX; ++i) {
        s->x[i] = 0.0f;
        BF_UNROLL
        for (j = 0; j < NX; ++j) {
            s->P[i][j] = 0.0f;
        }
    }
    s->x[0] = bf_clampf(soc, 0.0f, 1.0f);
    s->P[0][0] = p_soc;
    s->P[1][1] = t->p0_irc_A2;
    s->P[2][2] = t->p0_irc_A2;
    s->P[3][3] = t->p0_hyst;
    /* Initial variances obey the same floors and ceilings as every step. */
    (void)repair_covariance(s, p, t);
    s->last_current_A = 0.0f;
    s->last_temp_C = bf_isfinite(temp_C) ? bf_clampf(temp_C, BF_TEMP_MIN_C, BF_TEMP_MAX_C) : 25.0f;
    s->hyst_sign = 0.0f;
}

bf_status_t bf_soc_ekf_init_soc(bf_soc_ekf_t *s, const bf_cell_params_t *p,
                                const bf_soc_ekf_tuning_t *t, float soc, float temp_C)
{
    bf_status_t st = check_all(s, p, t);
    if (st != BF_OK) {
        return st;
    }
    if (!bf_isfinite(soc)) {
        return BF_E_RANGE;
    }
    init_common(s, p, t, soc, t->p0_soc, temp_C);
    return BF_OK;
}

/* Range tests that NaN fails too (an ordered comparison with NaN is false;
 * the core is never built with -ffast-math). */
bf_status_t bf_soc_ekf_init_ocv(bf_soc_ekf_t *s, const bf_cell_params_t *p,
                                const bf_soc_ekf_tuning_t *t, float voltage_V, float temp_C)
{
    bf_status_t st = check_all(s, p, t);
    if (st != BF_OK) {
        return st;
    }
    /* A voltage the step would refuse (out of the cell's range, NaN) is no
     * OCV to start from: a 0.0 V first reading started the filter at SOC 0. */
    if (!bf_cell_voltage_plausible(p, voltage_V) || !bf_isfinite(temp_C)) {
        return BF_E_RANGE;
    }
    init_common(s, p, t, bf_cell_soc_from_ocv(p, voltage_V, temp_C), t->p0_soc_ocv, temp_C);
    return BF_OK;
}

BF_COLD bf_status_t bf_soc_ekf_start(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                                     float current_A, float voltage_V, float temp_C)
{
    bf_status_t st = bf_soc_ekf_init_ocv(s, p, t, voltage_V, temp_C);
    if (st != BF_OK) {
        return st;
    }
    if (!(bf_absf(current_A) <= BF_SOC_EKF_LOADED_C_RATE * p->capacity_Ah[0])) { /* NaN: not known */
        /* P is diagonal after a start: init_common's repair is this clamp. */
        s->P[0][0] = bf_clampf(t->p0_soc, t->p_floor_soc, P_MAX_SOC);
    }
    return BF_OK;
}

BF_COLD bf_status_t bf_soc_ekf_restart(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                                       float rest_current_A, float current_A, float voltage_V, float temp_C,
                                       int *from_voltage)
{
    float temp;
    int rested;
    bf_status_t st;
    if (s == 0 || p == 0 || t == 0) {
        return BF_E_NULL;
    }
    if (!(rest_current_A >= 0.0f)) {
        return BF_E_RANGE;
    }
    temp = bf_temp_plausible(temp_C) ? temp_C : s->last_temp_C;
    rested = bf_absf(current_A) <= rest_current_A && bf_cell_voltage_plausible(p, voltage_V);
    /* The two starts check the parameters and leave the state as it was if
     * they fail. */
    st = rested ? bf_soc_ekf_init_ocv(s, p, t, voltage_V, temp) : bf_soc_ekf_init_soc(s, p, t, s->x[0], temp);
    if (st != BF_OK) {
        return st;
    }
    if (bf_absf(current_A) <= p->i_max_A) {
        s->last_current_A = current_A;
    }
    if (from_voltage != 0) {
        *from_voltage = rested;
    }
    return BF_OK;
}

/* The correction fields of bf_soc_ekf_out_t for a step that made none. */
static void clear_correction(bf_soc_ekf_out_t *out)
{
    out->soc_correction = 0.0f;
    out->soc_correction_var = 0.0f;
    out->innovation_V = 0.0f;
    out->innovation_var_V2 = 0.0f;
    out->capacity_Ah = 0.0f;
    out->ohmic_V = 0.0f;
    out->ohmic_R_ohm = 0.0f;
}

static float signf(float v)
{
    return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

/* The hysteresis state h is bounded by +-1. A correction that takes it
 * beyond keeps h at its bound and gives the rest to the states correlated
 * with it, as the posterior says: x += P e (b - h) / P_hh, the estimate
 * projected onto the bound b. Clamping h alone dropped that part, and a
 * cell whose voltage the hysteresis could no longer explain never moved its
 * SOC: a rest after a 2C discharge at -20 °C, logged each minute, stayed 19
 * points low for an hour. The covariance is left as the update made it. */
static BF_COLD void project_hyst(bf_soc_ekf_t *s)
{
    float b = s->x[3] > 0.0f ? 1.0f : -1.0f;
    float u;
    int i;
    if (s->P[3][3] > 0.0f) { /* it is after an update; a guard against 0 / 0 all the same */
        u = (b - s->x[3]) / s->P[3][3];
        for (i = 0; i < NX - 1; ++i) {
            s->x[i] += s->P[i][3] * u;
        }
    }
    s->x[3] = b;
}

bf_status_t bf_soc_ekf_step(bf_soc_ekf_t *state, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                            float dt_s, float current_A, float voltage_V, float temp_C,
                            bf_soc_ekf_out_t *out)
{
    /* Work on the caller's state with a copy kept, put back if the step
     * fails, so that a failed step leaves the state as it was (copying
     * back only on failure saves a copy per step). */
    bf_soc_ekf_t backup;
    bf_soc_ekf_t *s = state;
    uint32_t flags = 0u;
    bf_lookup_t at;
    float cap_As, eta, dz, a1, a2, ah, tau1, tau2, gamma;
    float F[NX], H[NX], PH[NX], K[NX], AP[NX][NX], u, inv_S;
    float ocv, docv, r0, r1, r2, m0, m, eta_V, v_pred, innov, hph, r_meas, S, nis, gate2;
    float soc_pred, ohmic_V, rn, sat, cap_Ah;
    int i, j;

    if (state == 0 || p == 0 || t == 0 || out == 0) {
        return BF_E_NULL;
    }
    backup = *state;

    if (!(dt_s >= 0.0f && dt_s <= t->dt_max_s)) {
        /* An interval longer than dt_max_s is time the filter did not see:
         * it starts again here; one not known (NaN, negative) skips the
         * sample (soc_ekf.h). */
        if (dt_s > t->dt_max_s) {
            bf_cell_locate(p, s->x[0], s->last_temp_C, &at);
            /* It checks the parameters too, and fails with the state as it was. */
            bf_status_t st = bf_soc_ekf_restart(s, p, t, BF_SOC_EKF_REST_C_RATE * bf_cell_capacity(p, &at), current_A,
                                                voltage_V, temp_C, 0);
            if (st != BF_OK) {
                return st;
            }
        }
        flags |= BF_FLAG_DT_INVALID;
        out->soc = s->x[0];
        out->soc_sigma = bf_sqrtf(s->P[0][0]);
        out->voltage_pred_V = 0.0f;
        out->flags = flags;
        clear_correction(out);
        return BF_OK;
    }
    if (!(bf_absf(current_A) <= p->i_max_A)) { /* NaN fails it too */
        flags |= BF_FLAG_CURRENT_INVALID;
        current_A = s->last_current_A;
    } else {
        s->last_current_A = current_A;
    }
    if (!bf_temp_plausible(temp_C)) {
        flags |= BF_FLAG_TEMP_INVALID;
        temp_C = s->last_temp_C;
    } else {
        s->last_temp_C = temp_C;
    }
    if (!bf_cell_voltage_plausible(p, voltage_V)) {
        flags |= BF_FLAG_VOLTAGE_INVALID;
    }

    /* Prediction over dt with the current of this sample (zero-order hold
     * at the end of the interval, as cyclers and BMSs log). */
    bf_cell_locate(p, s->x[0], temp_C, &at);
    cap_Ah = bf_cell_capacity(p, &at);
    cap_As = cap_Ah * SECONDS_PER_HOUR;
    eta = current_A > 0.0f ? p->eta_charge : 1.0f;
    dz = eta * current_A * dt_s / cap_As;
    tau1 = bf_cell_rc_table(p, p->tau1_s, &at);
    tau2 = bf_cell_rc_table(p, p->tau2_s, &at);
    gamma = bf_cell_temp_row(p, p->hyst_gamma, &at);
    a1 = bf_expf(-dt_s / tau1);
    a2 = bf_expf(-dt_s / tau2);
    ah = bf_expf(-bf_absf(dz * gamma));

    s->x[0] += dz;
    s->x[1] = a1 * s->x[1] + (1.0f - a1) * current_A;
    s->x[2] = a2 * s->x[2] + (1.0f - a2) * current_A;
    s->x[3] = ah * s->x[3] + (1.0f - ah) * signf(current_A);
    if (bf_absf(current_A) > t->hyst_current_A) {
        s->hyst_sign = signf(current_A);
    }
    if (s->x[0] < 0.0f || s->x[0] > 1.0f) {
        s->x[0] = bf_clampf(s->x[0], 0.0f, 1.0f);
        flags |= BF_FLAG_SOC_CLAMPED;
    }

    F[0] = 1.0f;
    F[1] = a1;
    F[2] = a2;
    F[3] = ah;
    /* P is exactly symmetric here (repair_covariance ends every step with
     * it so, and F[i] F[j] = F[j] F[i] exactly): scale one triangle and
     * mirror it. */
    BF_UNROLL
    for (i = 0; i < NX; ++i) {
        BF_UNROLL
        for (j = i; j < NX; ++j) {
            s->P[i][j] *= F[i] * F[j];
            s->P[j][i] = s->P[i][j];
        }
    }
    /* The interval's charge, counted with the sample's current, is known to
     * hold_sigma_c_rate C over dt: a variance growing with dt squared. */
    u = t->hold_sigma_c_rate * dt_s * (1.0f / SECONDS_PER_HOUR);
    s->P[0][0] += t->q_soc_per_s * dt_s + u * u;
    s->P[1][1] += t->q_irc_A2_per_s * dt_s;
    s->P[2][2] += t->q_irc_A2_per_s * dt_s;
    s->P[3][3] += t->q_hyst_per_s * dt_s;

    /* Correction from the terminal voltage (same temperature, new SOC). */
    bf_cell_locate_soc(p, s->x[0], &at);
    ocv = bf_cell_ocv(p, &at, &docv);
    r0 = bf_cell_rc_table(p, p->r0_ohm, &at);
    r1 = bf_cell_rc_table(p, p->r1_ohm, &at);
    r2 = bf_cell_rc_table(p, p->r2_ohm, &at);
    m0 = bf_cell_temp_row(p, p->hyst_m0_V, &at);
    m = bf_cell_temp_row(p, p->hyst_m_V, &at);
    /* The same sum as ((r0 i + rn i/(1+k|i|)) + r1 i1) + r2 i2, its first
     * part reported on its own. */
    rn = bf_cell_temp_row(p, p->rn_ohm, &at);
    sat = 1.0f + p->rn_sat_per_A * bf_absf(current_A);
    ohmic_V = r0 * current_A + rn * current_A / sat;
    eta_V = ohmic_V + r1 * s->x[1] + r2 * s->x[2];
    v_pred = ocv + m0 * s->hyst_sign + m * s->x[3] + eta_V;
    out->voltage_pred_V = v_pred;
    clear_correction(out);
    out->ohmic_V = ohmic_V;
    out->ohmic_R_ohm = r0 + rn / sat;
    out->capacity_Ah = cap_Ah;
    soc_pred = s->x[0];

    if (!(flags & BF_FLAG_VOLTAGE_INVALID)) {
        H[0] = docv;
        H[1] = r1;
        H[2] = r2;
        H[3] = m;
        hph = 0.0f;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            PH[i] = 0.0f;
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                PH[i] += s->P[i][j] * H[j];
            }
            hph += H[i] * PH[i];
        }
        r_meas = (t->r_voltage_V2_s + t->r_overpotential_rel2_s * eta_V * eta_V)
                 / (dt_s > t->r_dt_min_s ? dt_s : t->r_dt_min_s);
        /* A measurement far more precise than the prediction would leave a
         * posterior too ill-conditioned for single precision; no voltmeter
         * is better than a millionth of what the model is unsure of. */
        if (r_meas < R_MIN_REL * hph) {
            r_meas = R_MIN_REL * hph;
        }
        S = hph + r_meas;
        innov = voltage_V - v_pred;
        out->innovation_V = innov;
        out->innovation_var_V2 = S;
        nis = innov * innov / S;
        gate2 = t->gate_sigma * t->gate_sigma;
        if (nis > gate2) {
            /* Inflate R so the innovation sits exactly on the gate. */
            S = innov * innov / gate2;
            r_meas = S - hph;
            flags |= BF_FLAG_GATED;
        }
        inv_S = 1.0f / S;
        out->soc_correction_var = PH[0] * PH[0] * inv_S;
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            K[i] = PH[i] * inv_S;
            s->x[i] += K[i] * innov;
        }
        /* Joseph form, P+ = A P A' + K R K' with A = I - K H', evaluated as
         * products (AP = P - K PH', then AP A' = AP - (AP H) K') rather than
         * expanded, which cancels badly in float when the measurement is
         * far more precise than the prior. */
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                AP[i][j] = s->P[i][j] - K[i] * PH[j];
            }
        }
        BF_UNROLL
        for (i = 0; i < NX; ++i) {
            u = 0.0f;
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                u += AP[i][j] * H[j];
            }
            BF_UNROLL
            for (j = 0; j < NX; ++j) {
                s->P[i][j] = AP[i][j] - u * K[j] + r_meas * K[i] * K[j];
            }
        }
        if (bf_absf(s->x[3]) > 1.0f) {
            project_hyst(s);
        }
        if (s->x[0] < 0.0f || s->x[0] > 1.0f) {
            s->x[0] = bf_clampf(s->x[0], 0.0f, 1.0f);
            flags |= BF_FLAG_SOC_CLAMPED;
        }
        out->soc_correction = s->x[0] - soc_pred;
    }
    /* RC currents cannot exceed the largest plausible current. */
    s->x[1] = bf_clampf(s->x[1], -p->i_max_A, p->i_max_A);
    s->x[2] = bf_clampf(s->x[2], -p->i_max_A, p->i_max_A);
    if (repair_covariance(s, p, t)) {
        flags |= BF_FLAG_COV_REPAIRED;
    }
    BF_UNROLL
    for (i = 0; i < NX; ++i) {
        if (!bf_isfinite(s->x[i])) {
            *state = backup;
            out->soc = state->x[0];
            out->soc_sigma = bf_sqrtf(state->P[0][0]);
            out->flags = flags;
            clear_correction(out);
            return BF_E_NUMERIC;
        }
    }
    out->soc = s->x[0];
    out->soc_sigma = bf_sqrtf(s->P[0][0]);
    out->flags = flags;
    return BF_OK;
}

bf_status_t bf_soc_ekf_run(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                           const float *dt_s, const float *current_A, const float *voltage_V,
                           const float *temp_C, size_t n, float *soc_out, float *sigma_out,
                           uint8_t *flags_out)
{
    size_t k;
    bf_soc_ekf_out_t out;
    bf_status_t st;
    if (dt_s == 0 || current_A == 0 || voltage_V == 0 || temp_C == 0) {
        return BF_E_NULL;
    }
    st = check_all(s, p, t);
    if (st != BF_OK) {
        return st;
    }
    for (k = 0; k < n; ++k) {
        st = bf_soc_ekf_step(s, p, t, dt_s[k], current_A[k], voltage_V[k], temp_C[k], &out);
        if (st != BF_OK) {
            return st;
        }
        if (soc_out != 0) {
            soc_out[k] = out.soc;
        }
        if (sigma_out != 0) {
            sigma_out[k] = out.soc_sigma;
        }
        if (flags_out != 0) {
            flags_out[k] = (uint8_t)out.flags;
        }
    }
    return BF_OK;
}
