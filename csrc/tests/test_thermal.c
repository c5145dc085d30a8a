/* The thermal model and the core-temperature filter (thermal.h). */
#include <math.h>
#include <string.h>

#include "bf_test.h"
#include "bmsfil/bf_math.h"
#include "bmsfil/thermal.h"

/* An 18650 as Lin et al. 2013 and Forgez et al. 2010 report them. */
static void params_18650(bf_thermal_params_t *tp)
{
    tp->cc_J_per_K = 55.0f;
    tp->cs_J_per_K = 5.0f;
    tp->rc_K_per_W = 2.0f;
    tp->ru_K_per_W = 10.0f;
}

static void tuning(bf_thermal_tuning_t *t)
{
    memset(t, 0, sizeof *t);
    t->q_heat_W2_s = 0.01f;
    t->q_heat_rel2_s = 0.01f;
    t->q_surface_K2_per_s = 1e-6f;
    t->r_surface_K2 = 0.01f;
    t->p0_core_K2 = 4.0f;
    t->p0_surface_K2 = 1.0f;
    t->p_floor_K2 = 1e-6f;
    t->p_max_K2 = 400.0f;
    t->gate_sigma = 5.0f;
    t->heat_max_W = 200.0f;
    t->temp_min_C = -60.0f;
    t->temp_max_C = 150.0f;
    t->dt_max_s = 3600.0f;
}

/* The exact solution in double: x(t) = ss + V e^{L t} V^-1 (x0 - ss), from
 * the eigen-decomposition of A (real, distinct eigenvalues). */
static void analytic(const bf_thermal_params_t *tp, double t, double q, double ta, const double x0[2], double x[2])
{
    double a = -1.0 / ((double)tp->rc_K_per_W * (double)tp->cc_J_per_K), b = -a;
    double c = 1.0 / ((double)tp->rc_K_per_W * (double)tp->cs_J_per_K);
    double d = -c - 1.0 / ((double)tp->ru_K_per_W * (double)tp->cs_J_per_K);
    double tr = a + d, det = a * d - b * c, disc = sqrt(tr * tr / 4.0 - det);
    double l[2] = { tr / 2.0 + disc, tr / 2.0 - disc };
    double ss[2], y[2], v[2][2], w[2], inv_det;
    int k;
    ss[1] = ta + (double)tp->ru_K_per_W * q;
    ss[0] = ss[1] + (double)tp->rc_K_per_W * q;
    /* Eigenvectors (b, l - a). */
    for (k = 0; k < 2; ++k) {
        v[0][k] = b;
        v[1][k] = l[k] - a;
    }
    inv_det = 1.0 / (v[0][0] * v[1][1] - v[0][1] * v[1][0]);
    y[0] = x0[0] - ss[0];
    y[1] = x0[1] - ss[1];
    w[0] = inv_det * (v[1][1] * y[0] - v[0][1] * y[1]);
    w[1] = inv_det * (-v[1][0] * y[0] + v[0][0] * y[1]);
    for (k = 0; k < 2; ++k) {
        w[k] *= exp(l[k] * t);
    }
    x[0] = ss[0] + v[0][0] * w[0] + v[0][1] * w[1];
    x[1] = ss[1] + v[1][0] * w[0] + v[1][1] * w[1];
}

static void test_checks(void)
{
    bf_thermal_params_t tp;
    bf_thermal_tuning_t t;
    bf_thermal_t s;
    params_18650(&tp);
    tuning(&t);
    CHECK(bf_thermal_params_check(&tp) == BF_OK);
    CHECK(bf_thermal_tuning_check(&t) == BF_OK);
    CHECK(bf_thermal_params_check(0) == BF_E_NULL);
    tp.rc_K_per_W = 0.0f;
    CHECK(bf_thermal_params_check(&tp) == BF_E_PARAMS);
    tp.rc_K_per_W = NAN;
    CHECK(bf_thermal_params_check(&tp) == BF_E_PARAMS);
    params_18650(&tp);
    tp.cs_J_per_K = -1.0f;
    CHECK(bf_thermal_init(&s, &tp, &t, 25.0f, 25.0f) == BF_E_PARAMS);
    params_18650(&tp);
    t.temp_max_C = t.temp_min_C;
    CHECK(bf_thermal_tuning_check(&t) == BF_E_TUNING);
    tuning(&t);
    t.r_surface_K2 = 0.0f;
    CHECK(bf_thermal_tuning_check(&t) == BF_E_TUNING);
    tuning(&t);
    CHECK(bf_thermal_init(&s, &tp, &t, NAN, 1e9f) == BF_E_RANGE);
    CHECK(bf_thermal_init(&s, &tp, &t, NAN, 20.0f) == BF_OK && s.x[0] == 20.0f && s.x[1] == 20.0f);
    /* The step trusts what init checked; the batch calls check again, before
     * touching the state. */
    {
        const float dt = 1.0f, heat = 1.0f, surface = 21.0f;
        float core;
        tp.ru_K_per_W = NAN;
        CHECK(bf_thermal_run_heat(&s, &tp, &t, &dt, &heat, &surface, 0, 1, &core, 0, 0, 0) == BF_E_PARAMS);
        params_18650(&tp);
        t.gate_sigma = 0.0f;
        CHECK(bf_thermal_run_heat(&s, &tp, &t, &dt, &heat, &surface, 0, 1, &core, 0, 0, 0) == BF_E_TUNING);
        tuning(&t);
        CHECK(s.x[0] == 20.0f && s.x[1] == 20.0f);
        CHECK(bf_thermal_step(&s, 0, &t, dt, heat, surface, NAN, &(bf_thermal_out_t){0}) == BF_E_NULL);
        CHECK(bf_thermal_run_heat(&s, &tp, &t, &dt, &heat, &surface, 0, 1, &core, 0, 0, 0) == BF_OK);
    }
}

/* The discrete model against the analytic solution: a step of heat from
 * rest, with intervals from 1 ms to a day, regular and irregular. */
static void test_step_response(void)
{
    /* Marching: from 0.1 s (below, a step's change is a few float ulps of
     * the temperature: rounding, not the discretisation, would be tested;
     * one interval of 1 ms is checked further down). */
    static const float dts[] = { 0.1f, 1.0f, 10.0f, 100.0f, 1000.0f };
    bf_thermal_params_t tp;
    bf_thermal_disc_t d;
    double worst = 0.0;
    unsigned j;
    int k;
    fx_rng_t r = { 7u };
    params_18650(&tp);
    for (j = 0; j < sizeof dts / sizeof dts[0]; ++j) {
        /* March to t_end = 2000 dt (capped), regular steps. */
        int n = (int)(dts[j] * 2000.0f < 20000.0f ? 2000 : 20000.0f / dts[j]);
        double x[2] = { 25.0, 25.0 }, x0[2] = { 25.0, 25.0 }, ref[2], err;
        float xf[2] = { 25.0f, 25.0f };
        for (k = 0; k < n; ++k) {
            float a0 = xf[0], a1 = xf[1];
            CHECK(bf_thermal_discretise(&tp, dts[j], 2.0f, 25.0f, &d) == BF_OK);
            xf[0] = d.ss[0] + d.Ad[0][0] * (a0 - d.ss[0]) + d.Ad[0][1] * (a1 - d.ss[1]);
            xf[1] = d.ss[1] + d.Ad[1][0] * (a0 - d.ss[0]) + d.Ad[1][1] * (a1 - d.ss[1]);
        }
        analytic(&tp, (double)dts[j] * n, 2.0, 25.0, x0, ref);
        x[0] = (double)xf[0];
        x[1] = (double)xf[1];
        err = fabs(x[0] - ref[0]) > fabs(x[1] - ref[1]) ? fabs(x[0] - ref[0]) : fabs(x[1] - ref[1]);
        if (err > worst) worst = err;
        CHECKF(err < 2e-3, "dt %g s x %d: Tc %.5f Ts %.5f, exact %.5f %.5f", (double)dts[j], n, x[0], x[1],
               ref[0], ref[1]);
    }
    /* One interval of any length is exact: 1 ms to a day, from a hot core. */
    for (j = 0; j < 12; ++j) {
        double dt = pow(10.0, -3.0 + 0.75 * j), x0[2] = { 40.0, 30.0 }, ref[2];
        float y0, y1;
        CHECK(bf_thermal_discretise(&tp, (float)dt, 1.0f, 20.0f, &d) == BF_OK);
        y0 = d.ss[0] + d.Ad[0][0] * (40.0f - d.ss[0]) + d.Ad[0][1] * (30.0f - d.ss[1]);
        y1 = d.ss[1] + d.Ad[1][0] * (40.0f - d.ss[0]) + d.Ad[1][1] * (30.0f - d.ss[1]);
        analytic(&tp, (double)(float)dt, 1.0, 20.0, x0, ref);
        CHECKF(fabs((double)y0 - ref[0]) < 1e-4 && fabs((double)y1 - ref[1]) < 1e-4,
               "one interval of %g s: %.6f %.6f, exact %.6f %.6f", dt, (double)y0, (double)y1, ref[0], ref[1]);
    }
    /* Irregular intervals reach the same temperature at the same time. */
    {
        double t = 0.0, x0[2] = { 25.0, 25.0 }, ref[2];
        float xf[2] = { 25.0f, 25.0f };
        while (t < 1500.0) {
            float dt = fx_uniform(&r, 0.05f, 3.0f), a0 = xf[0], a1 = xf[1];
            CHECK(bf_thermal_discretise(&tp, dt, 3.0f, 25.0f, &d) == BF_OK);
            xf[0] = d.ss[0] + d.Ad[0][0] * (a0 - d.ss[0]) + d.Ad[0][1] * (a1 - d.ss[1]);
            xf[1] = d.ss[1] + d.Ad[1][0] * (a0 - d.ss[0]) + d.Ad[1][1] * (a1 - d.ss[1]);
            t += (double)dt;
        }
        analytic(&tp, t, 3.0, 25.0, x0, ref);
        CHECKF(fabs((double)xf[0] - ref[0]) < 2e-3 && fabs((double)xf[1] - ref[1]) < 2e-3,
               "irregular steps to %.1f s: %.5f %.5f, exact %.5f %.5f", t, (double)xf[0], (double)xf[1], ref[0], ref[1]);
    }
    /* A huge interval lands on the steady state, finite. */
    CHECK(bf_thermal_discretise(&tp, 1e30f, 1.0f, 20.0f, &d) == BF_OK);
    CHECK(d.Ad[0][0] == 0.0f && d.Ad[1][1] == 0.0f && bf_isfinite(d.ss[0]));
    CHECK(bf_thermal_discretise(&tp, 0.0f, 1.0f, 20.0f, &d) == BF_E_RANGE);
    printf("step response: worst deviation from the exact solution %.2e K\n", worst);
}

/* The filter recovers a known core temperature from simulated surface
 * readings: the true cell in double, heat pulses, a sensor with noise and
 * 0.1 K quantisation, the filter started 5 K off in the core. */
static void test_filter_recovers_core(void)
{
    bf_thermal_params_t tp;
    bf_thermal_tuning_t t;
    bf_thermal_t s;
    bf_thermal_out_t o;
    fx_rng_t r = { 99u };
    double x[2] = { 25.0, 25.0 }, worst = 0.0, sum2 = 0.0;
    int k, n = 40000, inside = 0, counted = 0;
    params_18650(&tp);
    tuning(&t);
    CHECK(bf_thermal_init(&s, &tp, &t, 25.0f, 25.0f) == BF_OK);
    s.x[0] = 30.0f; /* wrong start */
    for (k = 0; k < n; ++k) {
        double dt = 0.1, xn[2];
        /* 4 W for 60 s, 0.5 W for 120 s, repeating. */
        float q = (k / 600) % 3 == 0 ? 4.0f : 0.5f, meas;
        analytic(&tp, dt, (double)q, 25.0, x, xn);
        x[0] = xn[0];
        x[1] = xn[1];
        meas = (float)(floor((x[1] + 0.05 * (double)fx_gauss(&r)) / 0.1 + 0.5) * 0.1);
        CHECK(bf_thermal_step(&s, &tp, &t, 0.1f, q * (1.0f + 0.05f * fx_gauss(&r)), meas, 25.0f, &o) == BF_OK);
        if (k > n / 4) {
            double e = (double)o.core_C - x[0];
            if (fabs(e) > worst) worst = fabs(e);
            sum2 += e * e;
            inside += fabs(e) <= 3.0 * (double)o.core_sigma_C;
            ++counted;
        }
    }
    CHECKF(worst < 0.5, "core error up to %.3f K", worst);
    CHECKF(inside >= (95 * counted) / 100, "core inside 3 sigma %d of %d", inside, counted);
    printf("core temperature from surface readings: rms %.3f K, worst %.3f K, inside 3 sigma %.1f %%, last sigma %.3f K,"
           " core - surface %.2f K\n", sqrt(sum2 / counted), worst, 100.0 * inside / counted, (double)o.core_sigma_C,
           x[0] - x[1]);
}

/* No input, however wrong, makes the filter emit NaN or leave its range. */
static void test_absurd(void)
{
    bf_thermal_params_t tp;
    bf_thermal_tuning_t t;
    bf_thermal_t s;
    bf_thermal_out_t o;
    fx_rng_t r = { 4242u };
    int k, bad = 0, errors = 0;
    params_18650(&tp);
    tuning(&t);
    CHECK(bf_thermal_init(&s, &tp, &t, 25.0f, 25.0f) == BF_OK);
    for (k = 0; k < 50000; ++k) {
        float dt = fx_uniform(&r, 0.0f, 20.0f), q = fx_uniform(&r, -1.0f, 10.0f);
        float ts = fx_uniform(&r, 20.0f, 40.0f), ta = fx_uniform(&r, 20.0f, 30.0f);
        uint32_t which = fx_next(&r) % 8u;
        if (which & 1u) dt = fx_absurd(&r);
        if (which & 2u) q = fx_absurd(&r);
        if (which & 4u) ts = fx_absurd(&r);
        if (fx_next(&r) % 4u == 0u) ta = fx_absurd(&r);
        if (bf_thermal_step(&s, &tp, &t, dt, q, ts, ta, &o) != BF_OK) {
            ++errors;
            continue;
        }
        if (!bf_isfinite(o.core_C) || !bf_isfinite(o.surface_C) || !bf_isfinite(o.core_sigma_C)
            || !bf_isfinite(o.surface_sigma_C) || o.core_C < t.temp_min_C || o.core_C > t.temp_max_C
            || o.surface_C < t.temp_min_C || o.surface_C > t.temp_max_C || !(o.core_sigma_C > 0.0f)) {
            ++bad;
        }
    }
    CHECKF(bad == 0 && errors == 0, "%d steps with a bad output, %d error statuses", bad, errors);
    /* Flags say what was refused. */
    CHECK(bf_thermal_step(&s, &tp, &t, NAN, 1.0f, 25.0f, 25.0f, &o) == BF_OK && o.flags == BF_THERMAL_DT_INVALID);
    CHECK(bf_thermal_step(&s, &tp, &t, 0.1f, NAN, NAN, INFINITY, &o) == BF_OK
          && o.flags == (BF_THERMAL_HEAT_INVALID | BF_THERMAL_SURFACE_INVALID | BF_THERMAL_AMBIENT_INVALID));
    CHECK(bf_thermal_step(0, &tp, &t, 0.1f, 1.0f, 25.0f, 25.0f, &o) == BF_E_NULL);
}

/* An interval longer than dt_max_s (a BMS asleep for hours) restarts the
 * filter from the sample's readings: the core no longer carries the heat of
 * the drive before it. A NaN interval skips the sample, the state kept. */
static void test_long_gap_restarts(void)
{
    bf_thermal_params_t tp;
    bf_thermal_tuning_t t;
    bf_thermal_t s, kept, fresh;
    bf_thermal_out_t o;
    int k;
    params_18650(&tp);
    tuning(&t);
    CHECK(bf_thermal_init(&s, &tp, &t, 25.0f, 25.0f) == BF_OK);
    for (k = 0; k < 600; ++k) {  /* 10 minutes of 5 W: the core well above the surface */
        CHECK(bf_thermal_step(&s, &tp, &t, 1.0f, 5.0f, NAN, 25.0f, &o) == BF_OK);
    }
    CHECK(o.core_C - o.surface_C > 1.0f);
    kept = s;
    CHECK(bf_thermal_step(&s, &tp, &t, NAN, 0.0f, 24.0f, 23.0f, &o) == BF_OK && o.flags == BF_THERMAL_DT_INVALID);
    CHECK(memcmp(&s, &kept, sizeof s) == 0);
    CHECK(bf_thermal_step(&s, &tp, &t, t.dt_max_s * 2.0f, 0.0f, 24.0f, 23.0f, &o) == BF_OK
          && o.flags == BF_THERMAL_DT_INVALID);
    CHECK(bf_thermal_init(&fresh, &tp, &t, 24.0f, 23.0f) == BF_OK);
    CHECK(memcmp(&s, &fresh, sizeof s) == 0 && o.core_C == 24.0f && o.surface_C == 24.0f);
    /* The ambient not valid: the last one; no surface reading either: the
     * cell settled to the last ambient. */
    s = kept;
    CHECK(bf_thermal_step(&s, &tp, &t, INFINITY, 0.0f, 24.0f, NAN, &o) == BF_OK);
    CHECK(s.x[0] == 24.0f && s.last_ambient_C == kept.last_ambient_C);
    s = kept;
    CHECK(bf_thermal_step(&s, &tp, &t, INFINITY, 0.0f, NAN, NAN, &o) == BF_OK);
    CHECK(s.x[0] == kept.last_ambient_C && s.x[1] == kept.last_ambient_C);
}

/* Stepped with the SOC filter: the heat is i (v - OCV) at the filter's SOC,
 * a refused current keeps the last heat, and the core runs Rc (Q - Cc dTc/dt)
 * above the surface (no surface sensor here: the model alone). */
static void test_with_soc_filter(void)
{
    bf_cell_params_t cell;
    bf_soc_ekf_tuning_t ft;
    bf_soc_ekf_t e;
    bf_thermal_params_t tp;
    bf_thermal_tuning_t t;
    bf_thermal_t s;
    enum { N = 3000 };
    static float dt[N], cur[N], v[N], ts[N], core[N], surf[N], heat[N], soc[N];
    uint8_t flags[N];
    int k, heat_bad = 0;
    fx_cell(&cell);
    fx_tuning(&ft);
    params_18650(&tp);
    tp.ru_K_per_W = 2.0f;
    tuning(&t);
    for (k = 0; k < N; ++k) {
        dt[k] = 1.0f;
        cur[k] = -5.0f;
        v[k] = fx_ocv_formula(1.0f - 5.0f * (float)k / 3600.0f / 2.4f, 25.0f) - 0.1f;
        ts[k] = NAN;
    }
    cur[100] = NAN;
    CHECK(bf_soc_ekf_init_soc(&e, &cell, &ft, 1.0f, 25.0f) == BF_OK);
    CHECK(bf_thermal_init(&s, &tp, &t, 25.0f, 25.0f) == BF_OK);
    CHECK(bf_thermal_run(&e, &cell, &ft, &s, &tp, &t, dt, cur, v, ts, 0, N, soc, core, 0, surf, heat, flags) == BF_OK);
    for (k = 0; k < N; ++k) {
        /* The filter's temperature is the last good one: 25 °C from the start. */
        float want = k == 100 ? heat[99] : bf_thermal_heat_W(&cell, soc[k], 25.0f, cur[k], v[k]);
        heat_bad += !(heat[k] == want && heat[k] > 0.0f);
    }
    CHECKF(heat_bad == 0, "%d samples whose heat is not i (v - OCV(SOC)) > 0", heat_bad);
    CHECK(flags[100] & BF_THERMAL_HEAT_INVALID);
    CHECK(flags[N - 1] & BF_THERMAL_SURFACE_INVALID);
    /* The model's own balance: Tc - Ts = Rc (Q - Cc dTc/dt). */
    {
        float slope = (core[N - 1] - core[N - 21]) / 20.0f;
        float want = tp.rc_K_per_W * (heat[N - 1] - tp.cc_J_per_K * slope);
        CHECKF(fabsf(core[N - 1] - surf[N - 1] - want) < 0.05f, "core %.3f, surface %.3f, heat %.3f W, want %.3f K",
               (double)core[N - 1], (double)surf[N - 1], (double)heat[N - 1], (double)want);
    }
}

int main(void)
{
    test_checks();
    test_step_response();
    test_filter_recovers_core();
    test_absurd();
    test_long_gap_restarts();
    test_with_soc_filter();
    return bf_test_finish();
}
