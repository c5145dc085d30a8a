/* soc_ekf: initialisation, tracking, bad samples, covariance health under
 * random and absurd inputs, argument checks, run == step. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "bf_test.h"
#include "bmsfil/bf_math.h"
#include "bmsfil/soc_ekf.h"

static bf_cell_params_t cell;
static bf_soc_ekf_tuning_t tun;

static float ocv_at(const bf_cell_params_t *p, float soc, float temp_C)
{
    bf_lookup_t at;
    bf_cell_locate(p, soc, temp_C, &at);
    return bf_cell_ocv(p, &at, 0);
}

static int same_bits(const void *a, const void *b, size_t n)
{
    return memcmp(a, b, n) == 0;
}

/* ---------------------------------------------------------------------------
 * The synthetic "true" cell: the same equivalent-circuit model, integrated
 * in its own code (SOC in double) so that the filter can be compared with
 * the coulomb count. */
typedef struct {
    double z;      /* coulomb-counted SOC */
    float i1, i2;  /* RC currents */
    float h;       /* dynamic hysteresis */
    float s;       /* instantaneous hysteresis sign */
} truth_t;

static float signf_(float v)
{
    return v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
}

static float truth_step(truth_t *tr, const bf_cell_params_t *p, float dt, float i, float temp_C)
{
    bf_lookup_t at;
    float cap_As, eta, a1, a2, ah, dzf;
    double dz;
    bf_cell_locate(p, (float)tr->z, temp_C, &at);
    cap_As = bf_cell_capacity(p, &at) * 3600.0f;
    eta = i > 0.0f ? p->eta_charge : 1.0f;
    dz = (double)eta * (double)i * (double)dt / (double)cap_As;
    dzf = (float)dz;
    a1 = expf(-dt / bf_cell_rc_table(p, p->tau1_s, &at));
    a2 = expf(-dt / bf_cell_rc_table(p, p->tau2_s, &at));
    ah = expf(-fabsf(dzf * bf_cell_temp_row(p, p->hyst_gamma, &at)));
    tr->z += dz;
    tr->i1 = a1 * tr->i1 + (1.0f - a1) * i;
    tr->i2 = a2 * tr->i2 + (1.0f - a2) * i;
    tr->h = ah * tr->h + (1.0f - ah) * signf_(i);
    if (fabsf(i) > tun.hyst_current_A) {
        tr->s = signf_(i);
    }
    bf_cell_locate(p, (float)tr->z, temp_C, &at);
    return bf_cell_ocv(p, &at, 0) + bf_cell_temp_row(p, p->hyst_m0_V, &at) * tr->s
           + bf_cell_temp_row(p, p->hyst_m_V, &at) * tr->h + bf_cell_rc_table(p, p->r0_ohm, &at) * i
           + bf_cell_temp_row(p, p->rn_ohm, &at) * i / (1.0f + p->rn_sat_per_A * fabsf(i))
           + bf_cell_rc_table(p, p->r1_ohm, &at) * tr->i1 + bf_cell_rc_table(p, p->r2_ohm, &at) * tr->i2;
}

/* ------------------------------------------------------------------------- */

static void test_init(void)
{
    static const float zs[] = { 0.0f, 0.05f, 0.2f, 0.37f, 0.5f, 0.81f, 0.95f, 1.0f };
    static const float ts[] = { -10.0f, 0.0f, 25.0f, 35.0f };
    bf_soc_ekf_t s;
    uint32_t i, j;
    int k, l;
    float worst = 0.0f;
    for (i = 0; i < 8u; ++i) {
        for (j = 0; j < 4u; ++j) {
            float v = ocv_at(&cell, zs[i], ts[j]);
            CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, v, ts[j]) == BF_OK);
            worst = bf_absf(s.x[0] - zs[i]) > worst ? bf_absf(s.x[0] - zs[i]) : worst;
        }
    }
    printf("init from OCV: worst SOC error %.3g over %d points\n", (double)worst, 32);
    CHECKF(worst <= 1e-5f, "init_ocv SOC off by %.3g", (double)worst);
    /* From the formula the table samples (exact at grid SOCs and rows). */
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, fx_ocv_formula(0.35f, 10.0f), 10.0f) == BF_OK);
    CHECKF(bf_absf(s.x[0] - 0.35f) <= 1e-5f, "SOC %.7g want 0.35", (double)s.x[0]);

    /* The state starts clean. */
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, ocv_at(&cell, 0.6f, 25.0f), 25.0f) == BF_OK);
    CHECK(s.P[0][0] == tun.p0_soc_ocv && s.P[1][1] == tun.p0_irc_A2 && s.P[2][2] == tun.p0_irc_A2
          && s.P[3][3] == tun.p0_hyst);
    for (k = 0; k < BF_SOC_EKF_NX; ++k) {
        for (l = 0; l < BF_SOC_EKF_NX; ++l) {
            if (k != l && s.P[k][l] != 0.0f) {
                CHECKF(0, "P[%d][%d] = %g after init", k, l, (double)s.P[k][l]);
            }
        }
    }
    CHECK(s.x[1] == 0.0f && s.x[2] == 0.0f && s.x[3] == 0.0f && s.hyst_sign == 0.0f);
    CHECK(s.last_current_A == 0.0f && s.last_temp_C == 25.0f);

    /* Out of the table: full or empty. */
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, 4.25f, 25.0f) == BF_OK && s.x[0] >= 0.99999f && s.x[0] <= 1.0f);
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, 2.6f, 25.0f) == BF_OK && s.x[0] <= 1e-5f && s.x[0] >= 0.0f);
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, NAN, 25.0f) == BF_E_RANGE);
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, INFINITY, 25.0f) == BF_E_RANGE);
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, 3.7f, NAN) == BF_E_RANGE);
    /* a voltage the step would refuse is no OCV: 0 V, or beyond 0.5 V outside the cell's range;
     * the state is left as it was */
    {
        float soc_before = s.x[0];
        CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, 0.0f, 25.0f) == BF_E_RANGE && s.x[0] == soc_before);
        CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, cell.v_min_V - 0.51f, 25.0f) == BF_E_RANGE);
        CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, cell.v_max_V + 0.51f, 25.0f) == BF_E_RANGE);
        CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, cell.v_min_V - 0.49f, 25.0f) == BF_OK && s.x[0] <= 1e-5f);
    }

    /* From a given SOC: clamped, variance p0_soc. */
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.42f, 25.0f) == BF_OK && s.x[0] == 0.42f);
    CHECK(s.P[0][0] == tun.p0_soc);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 1.5f, 25.0f) == BF_OK && s.x[0] == 1.0f);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, -0.2f, 25.0f) == BF_OK && s.x[0] == 0.0f);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, NAN, 25.0f) == BF_E_RANGE);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, -INFINITY, 25.0f) == BF_E_RANGE);
    /* A bad temperature at init does not leak into the state. */
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.5f, NAN) == BF_OK && bf_isfinite(s.last_temp_C));
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.5f, 1e30f) == BF_OK && s.last_temp_C <= 200.0f);
}

/* Constant-current discharge of the synthetic cell with 2 mV voltage noise:
 * the filter stays on the coulomb count. */
static void test_cc_discharge(void)
{
    bf_soc_ekf_t s;
    bf_soc_ekf_out_t out;
    truth_t tr;
    fx_rng_t rng = { 12345u };
    const float temp = 25.0f, i_dis = -2.45f;
    float worst = 0.0f, worst_sigma = 0.0f;
    uint32_t all_flags = 0u;
    int k, bad_status = 0;

    memset(&tr, 0, sizeof tr);
    tr.z = 0.95;
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, &tun, ocv_at(&cell, 0.95f, temp), temp) == BF_OK);
    for (k = 0; k < 3060; ++k) {
        float i = k < 60 ? 0.0f : i_dis;
        float v = truth_step(&tr, &cell, 1.0f, i, temp) + 0.002f * fx_gauss(&rng);
        float err;
        if (bf_soc_ekf_step(&s, &cell, &tun, 1.0f, i, v, temp, &out) != BF_OK) {
            ++bad_status;
        }
        all_flags |= out.flags;
        err = bf_absf(out.soc - (float)tr.z);
        if (err > worst) {
            worst = err;
        }
        if (out.soc_sigma > worst_sigma) {
            worst_sigma = out.soc_sigma;
        }
    }
    printf("CC discharge 0.95 -> %.3f: max |SOC - coulomb count| = %.4g, final sigma %.3g, flags seen 0x%02x\n",
           tr.z, (double)worst, (double)out.soc_sigma, (unsigned)all_flags);
    CHECK(bad_status == 0);
    CHECK(tr.z < 0.15 && tr.z > 0.05);
    CHECKF(worst <= 0.01f, "SOC left the coulomb count by %.4g", (double)worst);
    CHECK(out.soc_sigma > 0.0f && out.soc_sigma < 0.05f);
    CHECK((all_flags & (BF_FLAG_VOLTAGE_INVALID | BF_FLAG_CURRENT_INVALID | BF_FLAG_TEMP_INVALID
                        | BF_FLAG_DT_INVALID)) == 0u);
}

/* Without voltage the filter is a coulomb counter, with eta on charge. */
static void test_coulomb_counting(void)
{
    bf_soc_ekf_t s;
    bf_soc_ekf_out_t out;
    bf_lookup_t at;
    double z = 0.5, cap_As;
    uint32_t flags_and = 0xffu;
    int k;
    bf_cell_locate(&cell, 0.5f, 25.0f, &at);
    cap_As = (double)bf_cell_capacity(&cell, &at) * 3600.0;
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.5f, 25.0f) == BF_OK);
    for (k = 0; k < 2000; ++k) {
        float i = (k / 500) % 2 ? 3.0f : -5.0f;
        float dt = 0.5f + 0.001f * (float)(k % 7);
        z += (i > 0.0f ? (double)cell.eta_charge : 1.0) * (double)i * (double)dt / cap_As;
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, dt, i, NAN, 25.0f, &out) == BF_OK);
        flags_and &= out.flags;
    }
    printf("coulomb counting without voltage: SOC %.7g, count %.7g\n", (double)out.soc, z);
    CHECKF(fabs((double)out.soc - z) <= 1e-4, "SOC %.7g vs count %.7g", (double)out.soc, z);
    CHECK((flags_and & BF_FLAG_VOLTAGE_INVALID) != 0u);
    CHECK(s.P[0][0] > tun.p0_soc); /* no correction: the variance only grows */
}

/* The predicted voltage is the model's equation: with dt = 0 the RC
 * currents and the dynamic hysteresis stay 0, leaving
 * OCV + M0*s + R0*i + Rn*i/(1 + kn|i|). */
static void test_voltage_equation(void)
{
    static const float currents[] = { -20.0f, -3.0f, -0.5f, 0.0f, 0.5f, 3.0f, 20.0f };
    static const float temps[] = { -10.0f, 0.0f, 25.0f, 40.0f };
    const bf_cell_params_t *c = &cell; /* const view, see test_cell_model.c */
    bf_soc_ekf_t s;
    bf_soc_ekf_out_t out;
    bf_lookup_t at;
    size_t a, b;
    for (a = 0; a < 7u; ++a) {
        for (b = 0; b < 4u; ++b) {
            float i = currents[a], tc = temps[b], sign = signf_(i), want;
            CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.5f, tc) == BF_OK);
            CHECK(bf_soc_ekf_step(&s, &cell, &tun, 0.0f, i, NAN, tc, &out) == BF_OK);
            bf_cell_locate(c, 0.5f, tc, &at);
            want = bf_cell_ocv(c, &at, 0) + bf_cell_temp_row(c, c->hyst_m0_V, &at) * sign
                   + bf_cell_rc_table(c, c->r0_ohm, &at) * i
                   + bf_cell_temp_row(c, c->rn_ohm, &at) * i / (1.0f + c->rn_sat_per_A * bf_absf(i));
            CHECKF(bf_absf(out.voltage_pred_V - want) <= 2e-6f, "i=%g T=%g: v_pred %.9g want %.9g", (double)i,
                   (double)tc, (double)out.voltage_pred_V, (double)want);
        }
    }
}

/* Started 0.3 off, the filter finds the cell from the voltage. */
static void test_converges_from_wrong_start(void)
{
    bf_soc_ekf_t s;
    bf_soc_ekf_out_t out;
    bf_soc_ekf_tuning_t t = tun;
    truth_t tr;
    fx_rng_t rng = { 777u };
    int k;
    memset(&tr, 0, sizeof tr);
    tr.z = 0.8;
    t.p0_soc = 0.09f;
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &t, 0.5f, 20.0f) == BF_OK);
    for (k = 0; k < 1800; ++k) {
        float i = (k / 30) % 3 == 0 ? 0.0f : ((k / 30) % 3 == 1 ? -3.0f : 1.0f);
        float v = truth_step(&tr, &cell, 1.0f, i, 20.0f) + 0.002f * fx_gauss(&rng);
        CHECK(bf_soc_ekf_step(&s, &cell, &t, 1.0f, i, v, 20.0f, &out) == BF_OK);
    }
    printf("from a SOC 0.3 off: after 30 min SOC %.4f, truth %.4f, sigma %.3g\n", (double)out.soc, tr.z,
           (double)out.soc_sigma);
    CHECKF(fabs((double)out.soc - tr.z) <= 0.02, "SOC %.4f truth %.4f", (double)out.soc, tr.z);
}

/* --------------------------------------------------------------------------
 * Bad samples. */

/* A filter that has seen a minute of -2 A at 20 C. */
static void warm_filter(bf_soc_ekf_t *s)
{
    bf_soc_ekf_out_t out;
    truth_t tr;
    int k;
    memset(&tr, 0, sizeof tr);
    tr.z = 0.7;
    CHECK(bf_soc_ekf_init_soc(s, &cell, &tun, 0.7f, 20.0f) == BF_OK);
    for (k = 0; k < 60; ++k) {
        float v = truth_step(&tr, &cell, 1.0f, -2.0f, 20.0f);
        CHECK(bf_soc_ekf_step(s, &cell, &tun, 1.0f, -2.0f, v, 20.0f, &out) == BF_OK);
    }
}

static int out_sane(const bf_soc_ekf_t *s, const bf_soc_ekf_out_t *o)
{
    return bf_isfinite(o->soc) && o->soc >= 0.0f && o->soc <= 1.0f && o->soc == s->x[0]
           && bf_isfinite(o->soc_sigma) && o->soc_sigma > 0.0f && bf_isfinite(o->voltage_pred_V);
}

static const float absurd_values[] = { NAN, INFINITY, -INFINITY, 1e30f, -1e30f, FLT_MAX, -FLT_MAX };
#define N_ABSURD (sizeof absurd_values / sizeof absurd_values[0])

static void test_bad_voltage(void)
{
    static const float extra[] = { 2.5f - 0.51f, 4.25f + 0.51f, -3.7f, 0.0f };
    bf_soc_ekf_t s0, s;
    bf_soc_ekf_out_t out;
    bf_lookup_t at;
    size_t j;
    warm_filter(&s0);
    for (j = 0; j < N_ABSURD + 4u; ++j) {
        float v = j < N_ABSURD ? absurd_values[j] : extra[j - N_ABSURD];
        float expect_soc;
        s = s0;
        bf_cell_locate(&cell, s.x[0], 20.0f, &at);
        expect_soc = s.x[0] - 2.0f * 1.0f / (bf_cell_capacity(&cell, &at) * 3600.0f);
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, -2.0f, v, 20.0f, &out) == BF_OK);
        CHECKF(out_sane(&s, &out), "voltage %g: soc %g sigma %g", (double)v, (double)out.soc,
               (double)out.soc_sigma);
        CHECKF((out.flags & BF_FLAG_VOLTAGE_INVALID) && !(out.flags & BF_FLAG_GATED),
               "voltage %g: flags 0x%02x", (double)v, (unsigned)out.flags);
        /* No correction: the SOC moved by the coulomb count only. */
        CHECKF(bf_absf(out.soc - expect_soc) <= 1e-6f, "voltage %g: SOC %.8g want %.8g", (double)v,
               (double)out.soc, (double)expect_soc);
    }
    /* Inside the plausible range (with its 0.5 V margin): used, maybe gated. */
    s = s0;
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, -2.0f, 4.25f + 0.49f, 20.0f, &out) == BF_OK);
    CHECK(!(out.flags & BF_FLAG_VOLTAGE_INVALID) && (out.flags & BF_FLAG_GATED) && out_sane(&s, &out));
    s = s0;
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, -2.0f, 2.5f - 0.49f, 20.0f, &out) == BF_OK);
    CHECK(!(out.flags & BF_FLAG_VOLTAGE_INVALID) && (out.flags & BF_FLAG_GATED) && out_sane(&s, &out));
    /* One wild but plausible sample cannot throw the state. */
    CHECKF(bf_absf(out.soc - s0.x[0]) < 0.05f, "one gated sample moved SOC from %g to %g",
           (double)s0.x[0], (double)out.soc);
}

/* A bad current is replaced by the last good one, a bad temperature by the
 * last good one: the result is bit for bit that of the twin filter given
 * those values, and only the flag differs. */
static void test_bad_current_and_temperature(void)
{
    static const float extra_i[] = { 30.0f * 1.01f, -30.0f * 1.01f, 1e5f };
    static const float extra_t[] = { -60.5f, 120.5f, -273.15f, 1000.0f };
    bf_soc_ekf_t s0, s, twin;
    bf_soc_ekf_out_t out, tout;
    size_t j;
    warm_filter(&s0);
    CHECK(s0.last_current_A == -2.0f && s0.last_temp_C == 20.0f);
    for (j = 0; j < N_ABSURD + 3u; ++j) {
        float i = j < N_ABSURD ? absurd_values[j] : extra_i[j - N_ABSURD];
        s = s0;
        twin = s0;
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, i, 3.6f, 20.0f, &out) == BF_OK);
        CHECK(bf_soc_ekf_step(&twin, &cell, &tun, 1.0f, -2.0f, 3.6f, 20.0f, &tout) == BF_OK);
        CHECKF(out.flags & BF_FLAG_CURRENT_INVALID, "current %g: flags 0x%02x", (double)i, (unsigned)out.flags);
        CHECKF(out_sane(&s, &out), "current %g", (double)i);
        CHECKF(same_bits(&s, &twin, sizeof s) && same_bits(&out.soc, &tout.soc, sizeof out.soc)
                   && (out.flags & ~BF_FLAG_CURRENT_INVALID) == tout.flags,
               "current %g: not the same as stepping with the last good current", (double)i);
        CHECK(s.last_current_A == -2.0f);
    }
    for (j = 0; j < N_ABSURD + 4u; ++j) {
        float tc = j < N_ABSURD ? absurd_values[j] : extra_t[j - N_ABSURD];
        s = s0;
        twin = s0;
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, -2.0f, 3.6f, tc, &out) == BF_OK);
        CHECK(bf_soc_ekf_step(&twin, &cell, &tun, 1.0f, -2.0f, 3.6f, 20.0f, &tout) == BF_OK);
        CHECKF(out.flags & BF_FLAG_TEMP_INVALID, "temperature %g: flags 0x%02x", (double)tc,
               (unsigned)out.flags);
        CHECKF(out_sane(&s, &out), "temperature %g", (double)tc);
        CHECKF(same_bits(&s, &twin, sizeof s) && (out.flags & ~BF_FLAG_TEMP_INVALID) == tout.flags,
               "temperature %g: not the same as stepping with the last good temperature", (double)tc);
        CHECK(s.last_temp_C == 20.0f);
    }
    /* Range ends are valid. */
    s = s0;
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, 30.0f, 3.6f, -60.0f, &out) == BF_OK);
    CHECK(!(out.flags & (BF_FLAG_CURRENT_INVALID | BF_FLAG_TEMP_INVALID)) && s.last_current_A == 30.0f);
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, -30.0f, 3.6f, 120.0f, &out) == BF_OK);
    CHECK(!(out.flags & (BF_FLAG_CURRENT_INVALID | BF_FLAG_TEMP_INVALID)) && s.last_temp_C == 120.0f);
    /* All three bad at once. */
    s = s0;
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, NAN, NAN, NAN, &out) == BF_OK);
    CHECK((out.flags & (BF_FLAG_VOLTAGE_INVALID | BF_FLAG_CURRENT_INVALID | BF_FLAG_TEMP_INVALID))
          == (BF_FLAG_VOLTAGE_INVALID | BF_FLAG_CURRENT_INVALID | BF_FLAG_TEMP_INVALID));
    CHECK(out_sane(&s, &out));
}

/* An interval that is not known (NaN, negative) skips the sample, the state
 * untouched. One longer than dt_max_s is time the filter did not see: it
 * starts again at that sample, from the sample's voltage if the cell rests
 * there, else from the SOC it had with the variance of an unknown start. */
static void test_bad_dt(void)
{
    static const float unknown[] = { NAN, -INFINITY, -1e30f, -FLT_MAX, -1.0f, -1e-45f, -0.5f };
    static const float long_[] = { INFINITY, 1e30f, FLT_MAX, 3600.001f, 1e5f };
    bf_soc_ekf_t s0, s, fresh;
    bf_soc_ekf_out_t out;
    size_t j;
    warm_filter(&s0);
    for (j = 0; j < sizeof unknown / sizeof unknown[0]; ++j) {
        float dt = unknown[j];
        s = s0;
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, dt, 0.0f, ocv_at(&cell, 0.95f, 20.0f), 20.0f, &out) == BF_OK);
        CHECKF(out.flags == BF_FLAG_DT_INVALID, "dt %g: flags 0x%02x", (double)dt, (unsigned)out.flags);
        CHECKF(same_bits(&s, &s0, sizeof s), "dt %g: state changed", (double)dt);
        CHECK(out.soc == s0.x[0] && out.soc_sigma == sqrtf(s0.P[0][0]));
    }
    for (j = 0; j < sizeof long_ / sizeof long_[0]; ++j) {
        float dt = long_[j];
        /* Under load (here: no usable current or voltage): the SOC kept, as
         * uncertain as an unknown start, the rest of the state started again. */
        s = s0;
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, dt, 1e30f, NAN, NAN, &out) == BF_OK);
        CHECKF(out.flags == BF_FLAG_DT_INVALID, "dt %g: flags 0x%02x", (double)dt, (unsigned)out.flags);
        CHECK(bf_soc_ekf_init_soc(&fresh, &cell, &tun, s0.x[0], s0.last_temp_C) == BF_OK);
        CHECKF(same_bits(&s, &fresh, sizeof s), "dt %g: not restarted from the old SOC", (double)dt);
        CHECK(out.soc == s0.x[0] && out.soc_sigma == sqrtf(s.P[0][0]) && out.soc_sigma > 0.5f * sqrtf(tun.p0_soc));
        /* At rest: from the voltage, whatever the old SOC was (the charge
         * that went in during the gap was not seen). */
        s = s0;
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, dt, 0.0f, ocv_at(&cell, 0.95f, 20.0f), 20.0f, &out) == BF_OK);
        CHECKF(out.flags == BF_FLAG_DT_INVALID, "dt %g: flags 0x%02x", (double)dt, (unsigned)out.flags);
        CHECK(bf_soc_ekf_init_ocv(&fresh, &cell, &tun, ocv_at(&cell, 0.95f, 20.0f), 20.0f) == BF_OK);
        CHECKF(same_bits(&s, &fresh, sizeof s), "dt %g: not restarted from the voltage", (double)dt);
        CHECK(bf_absf(out.soc - 0.95f) < 1e-3f && out.soc_sigma == sqrtf(s.P[0][0]));
        CHECK(out.soc_correction == 0.0f && out.innovation_var_V2 == 0.0f && out.capacity_Ah == 0.0f);
    }
    /* The rest is |i| <= C/50 of the capacity at the last temperature. */
    {
        bf_lookup_t at;
        float c50;
        bf_cell_locate(&cell, s0.x[0], s0.last_temp_C, &at);
        c50 = BF_SOC_EKF_REST_C_RATE * bf_cell_capacity(&cell, &at);
        s = s0;
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, INFINITY, -0.99f * c50, ocv_at(&cell, 0.95f, 20.0f), 20.0f, &out) == BF_OK);
        CHECK(bf_absf(out.soc - 0.95f) < 1e-2f && s.last_current_A == -0.99f * c50);
        s = s0;
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, INFINITY, -1.01f * c50, ocv_at(&cell, 0.95f, 20.0f), 20.0f, &out) == BF_OK);
        CHECK(out.soc == s0.x[0]);
    }
    /* The restart API itself: arguments checked, from_voltage reported. */
    {
        int from_voltage = -1;
        s = s0;
        CHECK(bf_soc_ekf_restart(&s, &cell, &tun, NAN, 0.0f, 3.7f, 20.0f, &from_voltage) == BF_E_RANGE);
        CHECK(bf_soc_ekf_restart(&s, &cell, &tun, -1.0f, 0.0f, 3.7f, 20.0f, &from_voltage) == BF_E_RANGE);
        CHECK(from_voltage == -1 && same_bits(&s, &s0, sizeof s));
        CHECK(bf_soc_ekf_restart(0, &cell, &tun, 0.1f, 0.0f, 3.7f, 20.0f, 0) == BF_E_NULL);
        CHECK(bf_soc_ekf_restart(&s, &cell, &tun, 0.1f, 0.0f, 3.7f, 20.0f, &from_voltage) == BF_OK && from_voltage == 1);
        CHECK(bf_soc_ekf_restart(&s, &cell, &tun, 0.1f, 0.0f, NAN, 20.0f, &from_voltage) == BF_OK && from_voltage == 0);
        CHECK(bf_soc_ekf_restart(&s, &cell, &tun, 0.1f, 0.0f, 3.7f, 20.0f, 0) == BF_OK);
    }
    /* dt = 0 and dt = dt_max are valid intervals. */
    s = s0;
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 0.0f, -2.0f, 3.6f, 20.0f, &out) == BF_OK);
    CHECK(!(out.flags & BF_FLAG_DT_INVALID) && out_sane(&s, &out));
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, -0.0f, -2.0f, 3.6f, 20.0f, &out) == BF_OK);
    CHECK(!(out.flags & BF_FLAG_DT_INVALID) && out_sane(&s, &out));
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, tun.dt_max_s, -2.0f, 3.6f, 20.0f, &out) == BF_OK);
    CHECK(!(out.flags & BF_FLAG_DT_INVALID) && out_sane(&s, &out));
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1e-45f, -2.0f, 3.6f, 20.0f, &out) == BF_OK);
    CHECK(!(out.flags & BF_FLAG_DT_INVALID) && out_sane(&s, &out));
}

/* SOC pinned at the ends, by the prediction and by the correction: flagged,
 * never outside [0, 1]. */
static void test_soc_clamp(void)
{
    bf_soc_ekf_t s;
    bf_soc_ekf_out_t out;
    int k;
    uint32_t seen = 0u;
    /* Prediction (no voltage): charging past full, discharging past empty. */
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.999f, 25.0f) == BF_OK);
    for (k = 0; k < 100; ++k) {
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, 60.0f, 30.0f, NAN, 25.0f, &out) == BF_OK);
        seen |= out.flags;
        CHECK(out.soc <= 1.0f && out.soc >= 0.0f);
    }
    CHECK(out.soc == 1.0f && (seen & BF_FLAG_SOC_CLAMPED));
    seen = 0u;
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.001f, 25.0f) == BF_OK);
    for (k = 0; k < 100; ++k) {
        CHECK(bf_soc_ekf_step(&s, &cell, &tun, 60.0f, -30.0f, NAN, 25.0f, &out) == BF_OK);
        seen |= out.flags;
        CHECK(out.soc <= 1.0f && out.soc >= 0.0f);
    }
    CHECK(out.soc == 0.0f && (seen & BF_FLAG_SOC_CLAMPED));
    /* Correction: at rest, a voltage far above full / below empty (but
     * within the plausible margin) pushes SOC past the end. */
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.999f, 25.0f) == BF_OK);
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, 0.0f, cell.v_max_V + 0.49f, 25.0f, &out) == BF_OK);
    CHECKF(out.soc == 1.0f && (out.flags & BF_FLAG_SOC_CLAMPED) && (out.flags & BF_FLAG_GATED),
           "soc %.9g flags 0x%02x", (double)out.soc, (unsigned)out.flags);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.001f, 25.0f) == BF_OK);
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, 0.0f, cell.v_min_V - 0.49f, 25.0f, &out) == BF_OK);
    CHECKF(out.soc == 0.0f && (out.flags & BF_FLAG_SOC_CLAMPED) && (out.flags & BF_FLAG_GATED),
           "soc %.9g flags 0x%02x", (double)out.soc, (unsigned)out.flags);
}

/* --------------------------------------------------------------------------
 * Random walks: the state stays sane and P symmetric with a positive
 * diagonal. Positive semi-definiteness is measured with a Cholesky
 * factorisation in double and printed. */

typedef struct {
    long steps, bad_status, bad_soc, bad_x, asym, bad_diag, not_psd;
    double min_eig; /* smallest eigenvalue of any correlation matrix seen */
    uint32_t flags;
    uint32_t hash;  /* FNV-1a of every state, to compare builds bit for bit */
} health_t;

/* Smallest eigenvalue of the correlation matrix D^-1/2 P D^-1/2 (cyclic
 * Jacobi in double): 0 for a singular PSD matrix, < 0 if P is indefinite. */
static double corr_min_eig(const float P[BF_SOC_EKF_NX][BF_SOC_EKF_NX])
{
    double A[BF_SOC_EKF_NX][BF_SOC_EKF_NX], d[BF_SOC_EKF_NX], m;
    int i, j, k, sweep;
    for (i = 0; i < BF_SOC_EKF_NX; ++i) {
        d[i] = sqrt((double)P[i][i]);
    }
    for (i = 0; i < BF_SOC_EKF_NX; ++i) {
        for (j = 0; j < BF_SOC_EKF_NX; ++j) {
            A[i][j] = (double)P[i][j] / (d[i] * d[j]);
        }
    }
    for (sweep = 0; sweep < 50; ++sweep) {
        double off = 0.0;
        for (i = 0; i < BF_SOC_EKF_NX; ++i) {
            for (j = i + 1; j < BF_SOC_EKF_NX; ++j) {
                off += A[i][j] * A[i][j];
            }
        }
        if (off < 1e-30) {
            break;
        }
        for (i = 0; i < BF_SOC_EKF_NX; ++i) {
            for (j = i + 1; j < BF_SOC_EKF_NX; ++j) {
                double th, t, c, sn;
                if (A[i][j] == 0.0) {
                    continue;
                }
                th = (A[j][j] - A[i][i]) / (2.0 * A[i][j]);
                t = (th >= 0.0 ? 1.0 : -1.0) / (fabs(th) + sqrt(th * th + 1.0));
                c = 1.0 / sqrt(t * t + 1.0);
                sn = t * c;
                for (k = 0; k < BF_SOC_EKF_NX; ++k) { /* columns i, j */
                    double aki = A[k][i], akj = A[k][j];
                    A[k][i] = c * aki - sn * akj;
                    A[k][j] = sn * aki + c * akj;
                }
                for (k = 0; k < BF_SOC_EKF_NX; ++k) { /* rows i, j */
                    double aik = A[i][k], ajk = A[j][k];
                    A[i][k] = c * aik - sn * ajk;
                    A[j][k] = sn * aik + c * ajk;
                }
            }
        }
    }
    m = A[0][0];
    for (i = 1; i < BF_SOC_EKF_NX; ++i) {
        m = A[i][i] < m ? A[i][i] : m;
    }
    return m;
}

static void health_check(health_t *h, const bf_soc_ekf_t *s, const bf_cell_params_t *p,
                         bf_status_t st, const bf_soc_ekf_out_t *o)
{
    int i, j, bad_x = 0, asym = 0, bad_diag = 0;
    ++h->steps;
    h->flags |= o->flags;
    {
        const unsigned char *b = (const unsigned char *)s;
        size_t n;
        for (n = 0; n < sizeof *s; ++n) {
            h->hash = (h->hash ^ b[n]) * 16777619u;
        }
    }
    h->bad_status += st != BF_OK;
    h->bad_soc += !(bf_isfinite(o->soc) && o->soc >= 0.0f && o->soc <= 1.0f && o->soc == s->x[0]
                    && bf_isfinite(o->soc_sigma) && o->soc_sigma >= 0.0f);
    for (i = 0; i < BF_SOC_EKF_NX; ++i) {
        bad_x |= !bf_isfinite(s->x[i]);
        bad_diag |= !(bf_isfinite(s->P[i][i]) && s->P[i][i] > 0.0f);
        for (j = 0; j < BF_SOC_EKF_NX; ++j) {
            asym |= !same_bits(&s->P[i][j], &s->P[j][i], sizeof(float)) || !bf_isfinite(s->P[i][j]);
        }
    }
    bad_x |= !(s->x[3] >= -1.0f && s->x[3] <= 1.0f);
    bad_x |= !(bf_absf(s->x[1]) <= p->i_max_A && bf_absf(s->x[2]) <= p->i_max_A);
    bad_x |= !(bf_isfinite(s->last_current_A) && bf_isfinite(s->last_temp_C));
    h->bad_x += bad_x;
    h->asym += asym;
    h->bad_diag += bad_diag;
    if (!bad_diag && !asym) {
        double e = corr_min_eig((const float(*)[BF_SOC_EKF_NX])s->P);
        h->not_psd += e < -1e-5; /* beyond float rounding of a correlation */
        h->min_eig = e < h->min_eig ? e : h->min_eig;
    }
}

static float pick(fx_rng_t *r, float absurd_share, float lo, float hi)
{
    if (fx_uniform(r, 0.0f, 1.0f) < absurd_share) {
        return fx_absurd(r);
    }
    return fx_uniform(r, lo, hi);
}

static void random_walk(health_t *h, fx_rng_t *rng, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                        long steps, float absurd_share)
{
    bf_soc_ekf_t s;
    bf_soc_ekf_out_t out;
    long k;
    float v_last = 0.5f * (p->v_min_V + p->v_max_V);
    /* Two statements: the order in which a call's arguments are evaluated
     * is unspecified, and the draws must not depend on the compiler. */
    float v0 = fx_uniform(rng, p->v_min_V, p->v_max_V);
    float t0 = fx_uniform(rng, -20.0f, 50.0f);
    if (bf_soc_ekf_init_ocv(&s, p, t, v0, t0) != BF_OK) {
        ++h->bad_status;
        return;
    }
    for (k = 0; k < steps; ++k) {
        float dt = pick(rng, absurd_share, 0.0f, 10.0f);
        float i = pick(rng, absurd_share, -p->i_max_A, p->i_max_A);
        float tc = pick(rng, absurd_share, -30.0f, 70.0f);
        float v;
        float u = fx_uniform(rng, 0.0f, 1.0f);
        bf_status_t st;
        if (u < absurd_share) {
            v = fx_absurd(rng);
        } else if (u < 0.6f) {
            v = v_last + 0.01f * fx_gauss(rng); /* near the prediction */
        } else {
            v = fx_uniform(rng, p->v_min_V - 0.5f, p->v_max_V + 0.5f);
        }
        if (fx_next(rng) % 50u == 0u) {
            i = 0.0f; /* rests */
        }
        st = bf_soc_ekf_step(&s, p, t, dt, i, v, tc, &out);
        if (bf_isfinite(out.voltage_pred_V) && out.voltage_pred_V != 0.0f) {
            v_last = out.voltage_pred_V;
        }
        health_check(h, &s, p, st, &out);
    }
}

static void report_health(const char *name, const health_t *h)
{
    printf("%s: %ld steps, flags seen 0x%02x; bad status %ld, bad SOC/sigma %ld, bad state %ld, "
           "asymmetric/non-finite P %ld, bad diagonal %ld; indefinite P %ld (min eigenvalue of the "
           "correlation matrix %.3g); state hash %08x\n",
           name, h->steps, (unsigned)h->flags, h->bad_status, h->bad_soc, h->bad_x, h->asym, h->bad_diag,
           h->not_psd, h->min_eig, (unsigned)h->hash);
    CHECKF(h->bad_status == 0 && h->bad_soc == 0 && h->bad_x == 0, "%s: unhealthy state", name);
    CHECKF(h->asym == 0 && h->bad_diag == 0, "%s: covariance not symmetric with positive diagonal", name);
}

static uint32_t flags_seen;

static void test_random_walk(void)
{
    health_t h;
    fx_rng_t rng = { 0x2545f491u };
    memset(&h, 0, sizeof h);
    h.min_eig = 1.0;
    h.hash = 2166136261u;
    random_walk(&h, &rng, &cell, &tun, 20000, 0.1f);
    report_health("random walk, fixture tuning, 10% absurd samples", &h);
    CHECKF(h.not_psd == 0, "P indefinite in %ld steps", h.not_psd);
    flags_seen |= h.flags;
    memset(&h, 0, sizeof h);
    h.min_eig = 1.0;
    h.hash = 2166136261u;
    random_walk(&h, &rng, &cell, &tun, 5000, 0.9f);
    report_health("random walk, fixture tuning, 90% absurd samples", &h);
    CHECKF(h.not_psd == 0, "P indefinite in %ld steps", h.not_psd);
}

static float log_uniform(fx_rng_t *r, float lo, float hi)
{
    return expf(fx_uniform(r, logf(lo), logf(hi)));
}

/* Wild but valid tunings and cells. */
static void test_random_tunings(void)
{
    health_t h;
    fx_rng_t rng = { 0xdeadbeefu };
    int n;
    long seeds_bad = 0;
    memset(&h, 0, sizeof h);
    h.min_eig = 1.0;
    h.hash = 2166136261u;
    for (n = 0; n < 60; ++n) {
        static bf_cell_params_t p;
        bf_soc_ekf_tuning_t t;
        health_t one;
        uint32_t i, k;
        float rs = log_uniform(&rng, 1e-3f, 1e2f), ts = log_uniform(&rng, 1e-3f, 1e4f);
        fx_cell(&p);
        fx_tuning(&t);
        for (i = 0; i < p.n_temps; ++i) {
            p.capacity_Ah[i] *= log_uniform(&rng, 1e-3f, 1e3f);
            p.rn_ohm[i] *= rs;
            p.hyst_gamma[i] *= log_uniform(&rng, 1e-3f, 1e3f);
            for (k = 0; k < p.n_rc; ++k) {
                p.r0_ohm[i][k] *= rs;
                p.r1_ohm[i][k] *= rs;
                p.r2_ohm[i][k] *= rs;
                p.tau1_s[i][k] *= ts;
                p.tau2_s[i][k] *= ts;
            }
        }
        p.i_max_A = log_uniform(&rng, 0.1f, 1e4f);
        t.q_soc_per_s = log_uniform(&rng, 1e-14f, 1.0f);
        t.q_irc_A2_per_s = log_uniform(&rng, 1e-10f, 1e2f);
        t.q_hyst_per_s = log_uniform(&rng, 1e-10f, 1.0f);
        t.r_voltage_V2_s = log_uniform(&rng, 1e-10f, 1.0f);
        t.r_overpotential_rel2_s = fx_uniform(&rng, 0.0f, 1.0f) < 0.2f ? 0.0f : log_uniform(&rng, 1e-6f, 10.0f);
        t.r_dt_min_s = log_uniform(&rng, 1e-4f, 10.0f);
        t.p0_soc = log_uniform(&rng, 1e-10f, 1.0f);
        t.p0_soc_ocv = log_uniform(&rng, 1e-10f, 1.0f);
        t.p0_irc_A2 = log_uniform(&rng, 1e-10f, 1e2f);
        t.p0_hyst = log_uniform(&rng, 1e-10f, 1.0f);
        t.p_floor_soc = log_uniform(&rng, 1e-20f, 1e-4f);
        t.p_floor_irc_A2 = log_uniform(&rng, 1e-20f, 1e-4f);
        t.p_floor_hyst = log_uniform(&rng, 1e-20f, 1e-4f);
        t.gate_sigma = log_uniform(&rng, 0.5f, 100.0f);
        t.hyst_current_A = log_uniform(&rng, 1e-3f, 10.0f);
        t.dt_max_s = log_uniform(&rng, 1.0f, 1e4f);
        t.hold_sigma_c_rate = fx_uniform(&rng, 0.0f, 1.0f) < 0.2f ? 0.0f : log_uniform(&rng, 1e-3f, 100.0f);
        CHECK(bf_cell_params_check(&p) == BF_OK && bf_soc_ekf_tuning_check(&t) == BF_OK);
        memset(&one, 0, sizeof one);
        one.min_eig = 1.0;
        one.hash = 2166136261u;
        random_walk(&one, &rng, &p, &t, 2000, 0.05f);
        if (one.bad_status || one.bad_soc || one.bad_x || one.asym || one.bad_diag) {
            if (seeds_bad++ < 3) {
                report_health("  failing random tuning", &one);
            }
        }
        h.steps += one.steps;
        h.flags |= one.flags;
        h.bad_status += one.bad_status;
        h.bad_soc += one.bad_soc;
        h.bad_x += one.bad_x;
        h.asym += one.asym;
        h.bad_diag += one.bad_diag;
        h.not_psd += one.not_psd;
        h.min_eig = one.min_eig < h.min_eig ? one.min_eig : h.min_eig;
        h.hash = (h.hash ^ one.hash) * 16777619u;
    }
    report_health("random walks, 60 random valid tunings and cells", &h);
    /* soc_ekf.h promises a positive semi-definite P, even under extreme
     * (valid) tunings where a measurement is far more precise than the prior. */
    CHECKF(h.not_psd == 0, "P indefinite in %lu steps", (unsigned long)h.not_psd);
    flags_seen |= h.flags;
    CHECKF((flags_seen & 0x7fu) == 0x7fu, "flags seen 0x%02x: not every flag exercised", (unsigned)flags_seen);
}

/* Valid but extreme settings, each of which exposes a defect in soc_ekf.c. */
static void test_extreme_settings(void)
{
    static bf_cell_params_t p;
    bf_soc_ekf_tuning_t t = tun;
    bf_soc_ekf_t s, before;
    bf_soc_ekf_out_t out;
    bf_status_t st;
    uint32_t k;
    float sigma_1s;

    /* A variance that overflows is "repaired" to the floor, i.e. to the
     * greatest confidence, instead of to the bound P_MAX_SOC. */
    t.q_soc_per_s = 1e38f;
    CHECK(bf_soc_ekf_tuning_check(&t) == BF_OK);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &t, 0.5f, 25.0f) == BF_OK);
    CHECK(bf_soc_ekf_step(&s, &cell, &t, 1.0f, 0.0f, NAN, 25.0f, &out) == BF_OK);
    sigma_1s = out.soc_sigma;
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &t, 0.5f, 25.0f) == BF_OK);
    CHECK(bf_soc_ekf_step(&s, &cell, &t, 10.0f, 0.0f, NAN, 25.0f, &out) == BF_OK);
    CHECK(out_sane(&s, &out));
    /* An overflowed variance means "nothing known": the bound, not the floor. */
    CHECK(out.soc_sigma >= sigma_1s);

    /* A capacity so small that one sample's SOC change overflows (with
     * gamma = 0, exp(-|inf * 0|) is NaN) is refused by the check. */
    fx_cell(&p);
    for (k = 0; k < p.n_temps; ++k) {
        p.capacity_Ah[k] = 1e-40f;
        p.hyst_gamma[k] = 0.0f;
    }
    CHECK(bf_cell_params_check(&p) == BF_E_PARAMS);
    /* The smallest accepted capacity with the largest current and interval
     * still steps, and a step that did fail would leave the state as it was. */
    for (k = 0; k < p.n_temps; ++k) {
        p.capacity_Ah[k] = BF_MIN_CAPACITY_AH;
    }
    p.i_max_A = 3e38f;
    CHECK(bf_cell_params_check(&p) == BF_OK);
    CHECK(bf_soc_ekf_init_soc(&s, &p, &tun, 0.5f, 25.0f) == BF_OK);
    before = s;
    st = bf_soc_ekf_step(&s, &p, &tun, tun.dt_max_s, 3e38f, 3.7f, 25.0f, &out);
    CHECK(st == BF_OK || same_bits(&s, &before, sizeof s));
    CHECK(bf_isfinite(s.x[0]) && s.x[0] >= 0.0f && s.x[0] <= 1.0f);
}

/* --------------------------------------------------------------------------
 * Argument checks. */

static void test_null(void)
{
    bf_soc_ekf_t s;
    bf_soc_ekf_out_t out;
    float dt = 1.0f, i = -1.0f, v = 3.7f, tc = 25.0f, soc, sig;
    uint8_t fl;
    CHECK(bf_soc_ekf_tuning_check(0) == BF_E_NULL);
    CHECK(bf_soc_ekf_init_soc(0, &cell, &tun, 0.5f, 25.0f) == BF_E_NULL);
    CHECK(bf_soc_ekf_init_soc(&s, 0, &tun, 0.5f, 25.0f) == BF_E_NULL);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, 0, 0.5f, 25.0f) == BF_E_NULL);
    CHECK(bf_soc_ekf_init_ocv(0, &cell, &tun, 3.7f, 25.0f) == BF_E_NULL);
    CHECK(bf_soc_ekf_init_ocv(&s, 0, &tun, 3.7f, 25.0f) == BF_E_NULL);
    CHECK(bf_soc_ekf_init_ocv(&s, &cell, 0, 3.7f, 25.0f) == BF_E_NULL);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.5f, 25.0f) == BF_OK);
    CHECK(bf_soc_ekf_step(0, &cell, &tun, 1.0f, -1.0f, 3.7f, 25.0f, &out) == BF_E_NULL);
    CHECK(bf_soc_ekf_step(&s, 0, &tun, 1.0f, -1.0f, 3.7f, 25.0f, &out) == BF_E_NULL);
    CHECK(bf_soc_ekf_step(&s, &cell, 0, 1.0f, -1.0f, 3.7f, 25.0f, &out) == BF_E_NULL);
    CHECK(bf_soc_ekf_step(&s, &cell, &tun, 1.0f, -1.0f, 3.7f, 25.0f, 0) == BF_E_NULL);
    CHECK(bf_soc_ekf_run(0, &cell, &tun, &dt, &i, &v, &tc, 1u, &soc, &sig, &fl) == BF_E_NULL);
    CHECK(bf_soc_ekf_run(&s, 0, &tun, &dt, &i, &v, &tc, 1u, &soc, &sig, &fl) == BF_E_NULL);
    CHECK(bf_soc_ekf_run(&s, &cell, 0, &dt, &i, &v, &tc, 1u, &soc, &sig, &fl) == BF_E_NULL);
    CHECK(bf_soc_ekf_run(&s, &cell, &tun, 0, &i, &v, &tc, 1u, &soc, &sig, &fl) == BF_E_NULL);
    CHECK(bf_soc_ekf_run(&s, &cell, &tun, &dt, 0, &v, &tc, 1u, &soc, &sig, &fl) == BF_E_NULL);
    CHECK(bf_soc_ekf_run(&s, &cell, &tun, &dt, &i, 0, &tc, 1u, &soc, &sig, &fl) == BF_E_NULL);
    CHECK(bf_soc_ekf_run(&s, &cell, &tun, &dt, &i, &v, 0, 1u, &soc, &sig, &fl) == BF_E_NULL);
    /* The outputs of run are optional. */
    CHECK(bf_soc_ekf_run(&s, &cell, &tun, &dt, &i, &v, &tc, 1u, 0, 0, 0) == BF_OK);
}

typedef struct {
    const char *name;
    size_t off;
    int zero_ok;
} tuning_field_t;

#define TF(f, z) { #f, offsetof(bf_soc_ekf_tuning_t, f), z }

static void test_bad_tuning(void)
{
    static const tuning_field_t fields[] = {
        TF(q_soc_per_s, 1), TF(q_irc_A2_per_s, 1), TF(q_hyst_per_s, 1), TF(r_voltage_V2_s, 0),
        TF(r_overpotential_rel2_s, 1), TF(r_dt_min_s, 0), TF(p0_soc, 0), TF(p0_soc_ocv, 0),
        TF(p0_irc_A2, 0), TF(p0_hyst, 0), TF(p_floor_soc, 0), TF(p_floor_irc_A2, 0),
        TF(p_floor_hyst, 0), TF(gate_sigma, 0), TF(hyst_current_A, 1), TF(dt_max_s, 0),
        TF(hold_sigma_c_rate, 1),
    };
    static const float bad[] = { NAN, INFINITY, -INFINITY, -1.0f, -1e-30f };
    size_t f, b;
    bf_soc_ekf_t s, before;
    float dt = 1.0f, i = -1.0f, v = 3.7f, tc = 25.0f;
    static bf_cell_params_t badp;

    CHECK(bf_soc_ekf_tuning_check(&tun) == BF_OK);
    CHECK(bf_soc_ekf_init_soc(&s, &cell, &tun, 0.5f, 25.0f) == BF_OK);
    before = s;
    for (f = 0; f < sizeof fields / sizeof fields[0]; ++f) {
        for (b = 0; b < 6u; ++b) {
            bf_soc_ekf_tuning_t t = tun;
            float val = b < 5u ? bad[b] : 0.0f;
            bf_status_t want = (b == 5u && fields[f].zero_ok) ? BF_OK : BF_E_TUNING;
            memcpy((char *)&t + fields[f].off, &val, sizeof val);
            CHECKF(bf_soc_ekf_tuning_check(&t) == want, "tuning_check with %s = %g", fields[f].name, (double)val);
            CHECKF(bf_soc_ekf_init_soc(&s, &cell, &t, 0.5f, 25.0f) == want, "init_soc with %s = %g",
                   fields[f].name, (double)val);
            CHECKF(bf_soc_ekf_init_ocv(&s, &cell, &t, 3.7f, 25.0f) == want, "init_ocv with %s = %g",
                   fields[f].name, (double)val);
            s = before;
            CHECKF(bf_soc_ekf_run(&s, &cell, &t, &dt, &i, &v, &tc, 1u, 0, 0, 0) == want, "run with %s = %g",
                   fields[f].name, (double)val);
            if (want != BF_OK) {
                CHECKF(same_bits(&s, &before, sizeof s), "run with bad %s changed the state", fields[f].name);
            }
        }
    }
    /* A gate whose square is 0 in single precision (or nearly) divided by 0:
     * every covariance NaN, repaired to its ceiling, no correction ever. */
    {
        bf_soc_ekf_tuning_t t = tun;
        t.gate_sigma = 1e-23f;
        CHECK(bf_soc_ekf_tuning_check(&t) == BF_E_TUNING);
        t.gate_sigma = 0.999f * BF_GATE_SIGMA_MIN;
        CHECK(bf_soc_ekf_tuning_check(&t) == BF_E_TUNING);
        t.gate_sigma = BF_GATE_SIGMA_MIN;
        CHECK(bf_soc_ekf_tuning_check(&t) == BF_OK);
    }
    /* Bad parameters are refused the same way. */
    fx_cell(&badp);
    badp.capacity_Ah[1] = 0.0f;
    CHECK(bf_soc_ekf_init_soc(&s, &badp, &tun, 0.5f, 25.0f) == BF_E_PARAMS);
    CHECK(bf_soc_ekf_init_ocv(&s, &badp, &tun, 3.7f, 25.0f) == BF_E_PARAMS);
    s = before;
    CHECK(bf_soc_ekf_run(&s, &badp, &tun, &dt, &i, &v, &tc, 1u, 0, 0, 0) == BF_E_PARAMS);
    CHECK(same_bits(&s, &before, sizeof s));
}

/* --------------------------------------------------------------------------
 * bf_soc_ekf_run is bf_soc_ekf_step in a loop, bit for bit. */

#define RUN_N 5000

static void test_run_equals_step(void)
{
    static float dt[RUN_N], cur[RUN_N], volt[RUN_N], temp[RUN_N];
    static float soc_r[RUN_N], sig_r[RUN_N];
    static uint8_t fl_r[RUN_N];
    bf_soc_ekf_t a, b, c;
    bf_soc_ekf_out_t out;
    truth_t tr;
    fx_rng_t rng = { 99u };
    int k, mism = 0;
    memset(&tr, 0, sizeof tr);
    tr.z = 0.6;
    for (k = 0; k < RUN_N; ++k) {
        dt[k] = fx_uniform(&rng, 0.1f, 2.0f);
        cur[k] = (k / 200) % 2 ? -4.0f : 1.5f;
        temp[k] = 15.0f + 10.0f * (float)k / (float)RUN_N;
        volt[k] = truth_step(&tr, &cell, dt[k], cur[k], temp[k]) + 0.003f * fx_gauss(&rng);
        if (fx_next(&rng) % 17u == 0u) {
            switch (fx_next(&rng) % 4u) {
            case 0: dt[k] = fx_absurd(&rng); break;
            case 1: cur[k] = fx_absurd(&rng); break;
            case 2: volt[k] = fx_absurd(&rng); break;
            default: temp[k] = fx_absurd(&rng); break;
            }
        }
    }
    CHECK(bf_soc_ekf_init_ocv(&a, &cell, &tun, 3.7f, 15.0f) == BF_OK);
    b = a;
    c = a;
    CHECK(bf_soc_ekf_run(&a, &cell, &tun, dt, cur, volt, temp, RUN_N, soc_r, sig_r, fl_r) == BF_OK);
    for (k = 0; k < RUN_N; ++k) {
        CHECK(bf_soc_ekf_step(&b, &cell, &tun, dt[k], cur[k], volt[k], temp[k], &out) == BF_OK);
        if (!same_bits(&out.soc, &soc_r[k], sizeof(float)) || !same_bits(&out.soc_sigma, &sig_r[k], sizeof(float))
            || (uint8_t)out.flags != fl_r[k] || out.flags > 0xffu) {
            if (mism++ < 3) {
                CHECKF(0, "sample %d: run soc %.9g sigma %.9g flags 0x%02x, step %.9g %.9g 0x%02x", k,
                       (double)soc_r[k], (double)sig_r[k], (unsigned)fl_r[k], (double)out.soc,
                       (double)out.soc_sigma, (unsigned)out.flags);
            }
        }
    }
    CHECKF(mism == 0, "%d samples differ between run and step", mism);
    CHECK(same_bits(&a, &b, sizeof a));
    /* Without outputs, in two chunks: the same final state. */
    CHECK(bf_soc_ekf_run(&c, &cell, &tun, dt, cur, volt, temp, 1234u, 0, 0, 0) == BF_OK);
    CHECK(bf_soc_ekf_run(&c, &cell, &tun, dt + 1234, cur + 1234, volt + 1234, temp + 1234, RUN_N - 1234u,
                         0, sig_r, 0) == BF_OK);
    CHECK(same_bits(&a, &c, sizeof a));
    /* n = 0 is a no-op. */
    b = a;
    CHECK(bf_soc_ekf_run(&a, &cell, &tun, dt, cur, volt, temp, 0u, soc_r, sig_r, fl_r) == BF_OK);
    CHECK(same_bits(&a, &b, sizeof a));
}

int main(void)
{
    fx_cell(&cell);
    fx_tuning(&tun);
    CHECK(bf_cell_params_check(&cell) == BF_OK);
    CHECK(bf_soc_ekf_tuning_check(&tun) == BF_OK);
    printf("sizeof(bf_soc_ekf_t) = %u bytes\n", (unsigned)sizeof(bf_soc_ekf_t));
    test_init();
    test_voltage_equation();
    test_cc_discharge();
    test_coulomb_counting();
    test_converges_from_wrong_start();
    test_bad_voltage();
    test_bad_current_and_temperature();
    test_bad_dt();
    test_soc_clamp();
    test_extreme_settings();
    test_null();
    test_bad_tuning();
    test_run_equals_step();
    test_random_walk();
    test_random_tunings();
    return bf_test_finish();
}
