/* cell_model: parameter checks, table lookups, OCV inversion. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "bf_test.h"
#include "bmsfil/bf_math.h"
#include "bmsfil/cell_model.h"

/* Mutate a fresh fixture with one statement (on `q`) and expect the check's verdict. */
#define PARAMS_EXPECT(want, stmt)                                                                  \
    do {                                                                                           \
        static bf_cell_params_t q;                                                                 \
        bf_status_t got_;                                                                          \
        fx_cell(&q);                                                                               \
        stmt;                                                                                      \
        got_ = bf_cell_params_check(&q);                                                           \
        CHECKF(got_ == (want), "bf_cell_params_check after `%s` returned %d, want %d", #stmt,      \
               (int)got_, (int)(want));                                                            \
    } while (0)
#define BAD(stmt) PARAMS_EXPECT(BF_E_PARAMS, stmt)
#define GOOD(stmt) PARAMS_EXPECT(BF_OK, stmt)

static void reverse_row(float *v, uint32_t n)
{
    uint32_t k;
    for (k = 0; k < n / 2u; ++k) {
        float x = v[k];
        v[k] = v[n - 1u - k];
        v[n - 1u - k] = x;
    }
}

static void test_params_check(void)
{
    bf_cell_params_t p;
    fx_cell(&p);
    CHECK(bf_cell_params_check(&p) == BF_OK);
    CHECK(bf_cell_params_check(0) == BF_E_NULL);

    /* Counts out of range. */
    BAD(q.n_temps = 0u);
    BAD(q.n_temps = BF_MAX_TEMPS + 1u);
    BAD(q.n_temps = 0xffffffffu);
    BAD(q.n_ocv = 0u);
    BAD(q.n_ocv = 1u);
    BAD(q.n_ocv = BF_OCV_MAX_POINTS + 1u);
    BAD(q.n_rc = 1u);
    BAD(q.n_rc = BF_RC_MAX_POINTS + 1u);
    /* Temperatures not strictly ascending, or not finite. */
    BAD(q.temp_C[1] = q.temp_C[0]);
    BAD(q.temp_C[2] = q.temp_C[1] - 1.0f);
    BAD((q.temp_C[0] = 50.0f, q.temp_C[1] = 20.0f, q.temp_C[2] = -5.0f));
    BAD(q.temp_C[1] = NAN);
    BAD(q.temp_C[0] = -INFINITY);
    BAD(q.temp_C[2] = INFINITY);
    /* Non-finite OCV anywhere in the used part of the table. */
    BAD(q.ocv_V[0][0] = NAN);
    BAD(q.ocv_V[1][10] = NAN);
    BAD(q.ocv_V[2][q.n_ocv - 1u] = NAN);
    BAD(q.ocv_V[2][3] = INFINITY);
    /* An OCV row that falls by more than BF_OCV_DIP_V: reversed (100 % to 0 %, as datasheets list
     * it) or damaged; a smaller dip (another tool's rounding) passes. */
    BAD(reverse_row(q.ocv_V[1], q.n_ocv));
    BAD(q.ocv_V[0][10] = q.ocv_V[0][9] - 0.01f);
    GOOD(q.ocv_V[0][10] = q.ocv_V[0][9] - 0.5f * BF_OCV_DIP_V);
    /* Taus must be > 0, resistances >= 0, all finite. */
    BAD(q.tau1_s[0][0] = 0.0f);
    BAD(q.tau1_s[2][q.n_rc - 1u] = 0.0f);
    BAD(q.tau2_s[1][5] = 0.0f);
    BAD(q.tau2_s[1][5] = -1.0f);
    BAD(q.tau1_s[1][5] = NAN);
    BAD(q.tau2_s[1][5] = INFINITY);
    BAD(q.r0_ohm[0][0] = -1e-6f);
    BAD(q.r1_ohm[1][4] = -0.01f);
    BAD(q.r2_ohm[2][q.n_rc - 1u] = -0.01f);
    BAD(q.r0_ohm[1][1] = NAN);
    BAD(q.r1_ohm[1][1] = INFINITY);
    BAD(q.r2_ohm[1][1] = NAN);
    /* Capacities > 0 and finite. */
    BAD(q.capacity_Ah[0] = 0.0f);
    BAD(q.capacity_Ah[2] = 0.0f);
    BAD(q.capacity_Ah[1] = -2.0f);
    BAD(q.capacity_Ah[1] = NAN);
    BAD(q.capacity_Ah[1] = INFINITY);
    /* Hysteresis finite, gamma >= 0. */
    BAD(q.hyst_m0_V[0] = NAN);
    BAD(q.hyst_m_V[2] = INFINITY);
    BAD(q.hyst_gamma[1] = -1.0f);
    BAD(q.hyst_gamma[1] = NAN);
    /* Current-dependent resistance: Rn >= 0 and kn >= 0, finite. */
    BAD(q.rn_ohm[0] = -0.001f);
    BAD(q.rn_ohm[2] = NAN);
    BAD(q.rn_ohm[1] = INFINITY);
    BAD(q.rn_sat_per_A = -0.1f);
    BAD(q.rn_sat_per_A = NAN);
    BAD(q.rn_sat_per_A = INFINITY);
    /* Efficiency, voltage and current ranges. */
    BAD(q.eta_charge = 0.0f);
    BAD(q.eta_charge = -0.9f);
    BAD(q.eta_charge = NAN);
    BAD(q.eta_charge = INFINITY);
    BAD(q.v_max_V = q.v_min_V);
    BAD(q.v_max_V = q.v_min_V - 1.0f);
    BAD(q.v_min_V = NAN);
    BAD(q.v_max_V = INFINITY);
    BAD(q.i_max_A = 0.0f);
    BAD(q.i_max_A = -30.0f);
    BAD(q.i_max_A = NAN);
    BAD(q.i_max_A = INFINITY);

    /* Edge cases that are legal. */
    GOOD(q.r0_ohm[0][0] = 0.0f);
    GOOD((q.r1_ohm[1][2] = 0.0f, q.r2_ohm[2][3] = 0.0f));
    GOOD(q.hyst_gamma[0] = 0.0f);
    GOOD((q.hyst_m0_V[0] = 0.0f, q.hyst_m_V[0] = 0.0f));
    GOOD((q.rn_ohm[0] = 0.0f, q.rn_sat_per_A = 0.0f));
    GOOD(q.n_temps = 1u);
    GOOD((q.n_ocv = 2u, q.n_rc = 2u));
    /* Entries beyond the counts are not looked at. */
    GOOD((q.temp_C[3] = NAN, q.ocv_V[0][q.n_ocv] = NAN, q.r0_ohm[0][q.n_rc] = -1.0f,
          q.tau1_s[0][q.n_rc] = 0.0f, q.capacity_Ah[3] = 0.0f, q.ocv_V[3][0] = NAN));
}

static float lerp_ref(float a, float b, double w)
{
    return (float)((double)a + w * ((double)b - (double)a));
}

/* |got - want| within n ulps of the larger of the two table neighbours. */
static int close_ulps(float got, float want, float scale, float n)
{
    return bf_absf(got - want) <= n * FLT_EPSILON * bf_absf(scale);
}

static void test_lookup_grid_points(const bf_cell_params_t *p, const char *name)
{
    uint32_t i, k;
    long exact = 0, total = 0, close = 0;
    bf_lookup_t at;
    for (i = 0; i < p->n_temps; ++i) {
        for (k = 0; k < p->n_ocv; ++k) {
            float z = (float)k / (float)(p->n_ocv - 1u);
            float v;
            bf_cell_locate(p, z, p->temp_C[i], &at);
            v = bf_cell_ocv(p, &at, 0);
            ++total;
            exact += v == p->ocv_V[i][k];
            close += close_ulps(v, p->ocv_V[i][k], p->ocv_V[i][k], 1.0f);
        }
        for (k = 0; k < p->n_rc; ++k) {
            float z = (float)k / (float)(p->n_rc - 1u);
            float r0, r1, r2, t1, t2;
            bf_cell_locate(p, z, p->temp_C[i], &at);
            r0 = bf_cell_rc_table(p, p->r0_ohm, &at);
            r1 = bf_cell_rc_table(p, p->r1_ohm, &at);
            r2 = bf_cell_rc_table(p, p->r2_ohm, &at);
            t1 = bf_cell_rc_table(p, p->tau1_s, &at);
            t2 = bf_cell_rc_table(p, p->tau2_s, &at);
            total += 5;
            exact += (r0 == p->r0_ohm[i][k]) + (r1 == p->r1_ohm[i][k]) + (r2 == p->r2_ohm[i][k])
                     + (t1 == p->tau1_s[i][k]) + (t2 == p->tau2_s[i][k]);
            close += close_ulps(r0, p->r0_ohm[i][k], p->r0_ohm[i][k], 1.0f)
                     + close_ulps(r1, p->r1_ohm[i][k], p->r1_ohm[i][k], 1.0f)
                     + close_ulps(r2, p->r2_ohm[i][k], p->r2_ohm[i][k], 1.0f)
                     + close_ulps(t1, p->tau1_s[i][k], p->tau1_s[i][k], 1.0f)
                     + close_ulps(t2, p->tau2_s[i][k], p->tau2_s[i][k], 1.0f);
        }
        bf_cell_locate(p, 0.5f, p->temp_C[i], &at);
        total += 4;
        exact += (bf_cell_capacity(p, &at) == p->capacity_Ah[i])
                 + (bf_cell_temp_row(p, p->hyst_m0_V, &at) == p->hyst_m0_V[i])
                 + (bf_cell_temp_row(p, p->hyst_m_V, &at) == p->hyst_m_V[i])
                 + (bf_cell_temp_row(p, p->hyst_gamma, &at) == p->hyst_gamma[i]);
        close += 4;
    }
    printf("%s: %ld of %ld grid-point lookups exact, %ld within 1 ulp\n", name, exact, total, close);
    CHECKF(exact == total, "%s: %ld of %ld grid-point lookups are not exact", name, total - exact, total);
}

static void test_lookup_between(const bf_cell_params_t *p)
{
    static const double fr[] = { 0.125, 0.25, 0.5, 0.75, 0.9 };
    uint32_t i, k, f;
    bf_lookup_t at;
    int bad = 0;
    /* Linear in SOC between grid points, on each temperature row. */
    for (i = 0; i < p->n_temps; ++i) {
        for (k = 0; k + 1u < p->n_ocv; ++k) {
            for (f = 0; f < 5u; ++f) {
                double zd = ((double)k + fr[f]) / (double)(p->n_ocv - 1u);
                float z = (float)zd;
                /* The weight that z actually represents. */
                double w = (double)z * (double)(p->n_ocv - 1u) - (double)k;
                float want = lerp_ref(p->ocv_V[i][k], p->ocv_V[i][k + 1u], w);
                float slope_want = (p->ocv_V[i][k + 1u] - p->ocv_V[i][k]) * (float)(p->n_ocv - 1u);
                float slope, v;
                bf_cell_locate(p, z, p->temp_C[i], &at);
                v = bf_cell_ocv(p, &at, &slope);
                if (!close_ulps(v, want, p->ocv_V[i][k + 1u], 4.0f)
                    || !close_ulps(slope, slope_want, slope_want, 4.0f)) {
                    if (bad++ < 3) {
                        CHECKF(0, "ocv row %u at z=%.9g: %.9g (slope %.9g), want %.9g (slope %.9g)",
                               (unsigned)i, (double)z, (double)v, (double)slope, (double)want,
                               (double)slope_want);
                    }
                }
            }
        }
        for (k = 0; k + 1u < p->n_rc; ++k) {
            for (f = 0; f < 5u; ++f) {
                float z = (float)(((double)k + fr[f]) / (double)(p->n_rc - 1u));
                double w = (double)z * (double)(p->n_rc - 1u) - (double)k;
                float want = lerp_ref(p->r0_ohm[i][k], p->r0_ohm[i][k + 1u], w);
                float scale = bf_absf(p->r0_ohm[i][k]) > bf_absf(p->r0_ohm[i][k + 1u]) ? p->r0_ohm[i][k]
                                                                                   : p->r0_ohm[i][k + 1u];
                float v;
                bf_cell_locate(p, z, p->temp_C[i], &at);
                v = bf_cell_rc_table(p, p->r0_ohm, &at);
                if (!close_ulps(v, want, scale, 4.0f)) {
                    if (bad++ < 3) {
                        CHECKF(0, "r0 row %u at z=%.9g: %.9g, want %.9g", (unsigned)i, (double)z,
                               (double)v, (double)want);
                    }
                }
            }
        }
    }
    /* Linear in temperature between rows, at a grid column, and bilinear
     * at an arbitrary point. */
    for (i = 0; i + 1u < p->n_temps; ++i) {
        for (f = 0; f < 5u; ++f) {
            float tc = (float)((double)p->temp_C[i] + fr[f] * (double)(p->temp_C[i + 1u] - p->temp_C[i]));
            double wt = ((double)tc - (double)p->temp_C[i]) / ((double)p->temp_C[i + 1u] - (double)p->temp_C[i]);
            float z = 0.3f;
            double wz = (double)z * (double)(p->n_ocv - 1u) - 6.0;
            double lo = (double)p->ocv_V[i][6] + wt * ((double)p->ocv_V[i + 1u][6] - (double)p->ocv_V[i][6]);
            double hi = (double)p->ocv_V[i][7] + wt * ((double)p->ocv_V[i + 1u][7] - (double)p->ocv_V[i][7]);
            float want_ocv = (float)(lo + wz * (hi - lo));
            float want_cap = lerp_ref(p->capacity_Ah[i], p->capacity_Ah[i + 1u], wt);
            float want_m = lerp_ref(p->hyst_m_V[i], p->hyst_m_V[i + 1u], wt);
            float v;
            CHECK(p->n_ocv == 21u); /* z = 0.3 sits in column 6 */
            bf_cell_locate(p, z, tc, &at);
            v = bf_cell_ocv(p, &at, 0);
            CHECKF(close_ulps(v, want_ocv, v, 4.0f), "ocv(%.3g, %.3g C) = %.9g, want %.9g", (double)z,
                   (double)tc, (double)v, (double)want_ocv);
            CHECKF(close_ulps(bf_cell_capacity(p, &at), want_cap, want_cap, 4.0f), "capacity at %.3g C",
                   (double)tc);
            CHECKF(close_ulps(bf_cell_temp_row(p, p->hyst_m_V, &at), want_m, p->hyst_m_V[i], 4.0f),
                   "hyst_m at %.3g C", (double)tc);
        }
    }
    CHECKF(bad == 0, "%d interpolation mismatches", bad);
}

static void test_lookup_hold(const bf_cell_params_t *p)
{
    static const float below[] = { -0.001f, -0.5f, -1e30f, -INFINITY, -FLT_MAX };
    static const float above[] = { 1.001f, 1.5f, 1e30f, INFINITY, FLT_MAX };
    static const float cold[] = { -10.001f, -40.0f, -1e30f, -INFINITY };
    static const float hot[] = { 35.001f, 80.0f, 1e30f, INFINITY };
    uint32_t j, top = p->n_temps - 1u, last_ocv = p->n_ocv - 1u, last_rc = p->n_rc - 1u;
    bf_lookup_t at;
    float slope;
    for (j = 0; j < 5u; ++j) {
        bf_cell_locate(p, below[j], 25.0f, &at);
        CHECKF(at.k_ocv == 0u && at.w_ocv == 0.0f && at.k_rc == 0u && at.w_rc == 0.0f,
               "soc %g: k_ocv=%u w_ocv=%g", (double)below[j], (unsigned)at.k_ocv, (double)at.w_ocv);
        bf_cell_locate(p, below[j], p->temp_C[1], &at);
        CHECK(bf_cell_ocv(p, &at, &slope) == p->ocv_V[1][0]);
        CHECK(bf_isfinite(slope));
        CHECK(bf_cell_rc_table(p, p->r0_ohm, &at) == p->r0_ohm[1][0]);
        bf_cell_locate(p, above[j], p->temp_C[1], &at);
        CHECKF(bf_cell_ocv(p, &at, 0) == p->ocv_V[1][last_ocv], "soc %g: ocv %.9g want %.9g",
               (double)above[j], (double)bf_cell_ocv(p, &at, 0), (double)p->ocv_V[1][last_ocv]);
        CHECK(bf_cell_rc_table(p, p->r0_ohm, &at) == p->r0_ohm[1][last_rc]);
        CHECK(bf_cell_rc_table(p, p->tau2_s, &at) == p->tau2_s[1][last_rc]);
    }
    for (j = 0; j < 4u; ++j) {
        bf_cell_locate(p, 0.25f, cold[j], &at);
        CHECKF(at.t0 == 0u && at.wt == 0.0f, "T=%g: t0=%u wt=%g", (double)cold[j], (unsigned)at.t0,
               (double)at.wt);
        CHECK(bf_cell_ocv(p, &at, 0) == p->ocv_V[0][5]);
        CHECK(bf_cell_capacity(p, &at) == p->capacity_Ah[0]);
        bf_cell_locate(p, 0.25f, hot[j], &at);
        CHECKF(bf_cell_ocv(p, &at, 0) == p->ocv_V[top][5], "T=%g: ocv %.9g want %.9g", (double)hot[j],
               (double)bf_cell_ocv(p, &at, 0), (double)p->ocv_V[top][5]);
        CHECK(bf_cell_capacity(p, &at) == p->capacity_Ah[top]);
        CHECK(bf_cell_temp_row(p, p->hyst_gamma, &at) == p->hyst_gamma[top]);
        CHECK(close_ulps(bf_cell_rc_table(p, p->r1_ohm, &at),
                         lerp_ref(p->r1_ohm[top][2], p->r1_ohm[top][3], 0.5), p->r1_ohm[top][2], 2.0f));
    }
    /* Both axes outside at once. */
    bf_cell_locate(p, 2.0f, 100.0f, &at);
    CHECK(bf_cell_ocv(p, &at, 0) == p->ocv_V[top][last_ocv]);
    bf_cell_locate(p, -2.0f, -100.0f, &at);
    CHECK(bf_cell_ocv(p, &at, 0) == p->ocv_V[0][0]);
    /* A NaN temperature is not a table position; it must still give a
     * finite lookup (the filter replaces bad temperatures before this). */
    bf_cell_locate(p, 0.5f, NAN, &at);
    CHECK(at.t0 + 1u < p->n_temps && bf_isfinite(at.wt) && bf_isfinite(bf_cell_ocv(p, &at, 0)));
}

static void test_single_temperature(void)
{
    static bf_cell_params_t p;
    bf_lookup_t at;
    fx_cell(&p);
    p.n_temps = 1u;
    CHECK(bf_cell_params_check(&p) == BF_OK);
    bf_cell_locate(&p, 0.5f, -50.0f, &at);
    CHECK(at.t0 == 0u && bf_cell_ocv(&p, &at, 0) == p.ocv_V[0][10]);
    bf_cell_locate(&p, 0.5f, 100.0f, &at);
    CHECK(at.t0 == 0u && bf_cell_ocv(&p, &at, 0) == p.ocv_V[0][10]);
    CHECK(bf_cell_capacity(&p, &at) == p.capacity_Ah[0]);
    bf_cell_locate(&p, 0.5f, NAN, &at);
    CHECK(bf_cell_ocv(&p, &at, 0) == p.ocv_V[0][10]);
    CHECK(bf_cell_soc_from_ocv(&p, p.ocv_V[0][10], 77.0f) > 0.49999f
          && bf_cell_soc_from_ocv(&p, p.ocv_V[0][10], 77.0f) < 0.50001f);
}

static void test_soc_from_ocv(const bf_cell_params_t *p)
{
    static const float temps[] = { -30.0f, -10.0f, 0.0f, 10.0f, 21.3f, 35.0f, 60.0f };
    uint32_t i;
    int k;
    float worst = 0.0f, worst_z = 0.0f, worst_t = 0.0f;
    bf_lookup_t at;
    for (i = 0; i < 7u; ++i) {
        for (k = 0; k <= 2000; ++k) {
            float z = (float)k / 2000.0f;
            float v, back, err;
            bf_cell_locate(p, z, temps[i], &at);
            v = bf_cell_ocv(p, &at, 0);
            back = bf_cell_soc_from_ocv(p, v, temps[i]);
            err = bf_absf(back - z);
            if (err > worst) {
                worst = err;
                worst_z = z;
                worst_t = temps[i];
            }
        }
        /* Outside the table: 0 below the empty OCV, 1 above the full one. */
        CHECK(bf_cell_soc_from_ocv(p, 2.0f, temps[i]) <= 1e-6f);
        CHECK(bf_cell_soc_from_ocv(p, -1e30f, temps[i]) <= 1e-6f);
        CHECK(bf_cell_soc_from_ocv(p, 5.0f, temps[i]) >= 1.0f - 1e-6f);
        CHECK(bf_cell_soc_from_ocv(p, INFINITY, temps[i]) >= 1.0f - 1e-6f);
        CHECK(bf_cell_soc_from_ocv(p, 5.0f, temps[i]) <= 1.0f);
        CHECK(bf_cell_soc_from_ocv(p, 2.0f, temps[i]) >= 0.0f);
    }
    printf("bf_cell_soc_from_ocv inverts bf_cell_ocv to %.3g (at z=%.4g, T=%g C)\n", (double)worst,
           (double)worst_z, (double)worst_t);
    CHECKF(worst <= 1e-5f, "inverse off by %.3g at z=%g T=%g", (double)worst, (double)worst_z,
           (double)worst_t);
    /* Garbage in, a SOC in [0, 1] out. */
    {
        float z = bf_cell_soc_from_ocv(p, NAN, 25.0f);
        CHECK(z >= 0.0f && z <= 1.0f);
        z = bf_cell_soc_from_ocv(p, 3.5f, NAN);
        CHECK(z >= 0.0f && z <= 1.0f);
    }
}

/* Holding the end values: at SOC >= 1 and at T >= the top temperature the
 * lookups interpolate with weight exactly 1, and `lo + 1*(hi - lo)` equals
 * hi only when lo and hi are within a factor 2 of each other (Sterbenz).
 * With steeper tables (R rising 10x towards empty, tau 3x in the cold) the
 * "held" end value is off by up to an ulp of its neighbour. */
static void test_hold_steep_tables(void)
{
    static bf_cell_params_t p;
    /* A const view: passing a non-const 2-D table to the const-qualified
     * parameter is an error under -std=c99 -pedantic (C2X allows it). */
    const bf_cell_params_t *cp = &p;
    bf_lookup_t at;
    float r_end, tau_end, cap_end;
    fx_cell(&p);
    p.r1_ohm[1][p.n_rc - 2u] = 0.15f; /* SOC 0.9 */
    p.r1_ohm[1][p.n_rc - 1u] = 0.015f; /* SOC 1.0 */
    p.tau2_s[1][5] = 1000.0f;
    p.tau2_s[2][5] = 300.1f;
    p.capacity_Ah[1] = 10.0f;
    p.capacity_Ah[2] = 2.3f;
    CHECK(bf_cell_params_check(&p) == BF_OK);
    bf_cell_locate(&p, 1.0f, p.temp_C[1], &at);
    r_end = bf_cell_rc_table(cp, cp->r1_ohm, &at);
    CHECK(close_ulps(r_end, 0.015f, 0.15f, 1.0f));
    /* Held end values are the table's own, exactly. */
    CHECK(r_end == 0.015f);
    bf_cell_locate(&p, 0.5f, 50.0f, &at);
    tau_end = bf_cell_rc_table(cp, cp->tau2_s, &at);
    cap_end = bf_cell_capacity(&p, &at);
    CHECK(close_ulps(tau_end, 300.1f, 1000.0f, 1.0f));
    CHECK(close_ulps(cap_end, 2.3f, 10.0f, 1.0f));
    CHECK(tau_end == 300.1f && cap_end == 2.3f);
}

int main(void)
{
    static bf_cell_params_t p, pow2;
    fx_cell(&p);
    test_params_check();
    test_lookup_grid_points(&p, "fixture (n_ocv 21, n_rc 11)");
    /* Grids whose spacing is a power of two: every grid SOC is exact in float. */
    fx_cell(&pow2);
    pow2.n_ocv = 17u;
    pow2.n_rc = 9u;
    CHECK(bf_cell_params_check(&pow2) == BF_OK);
    test_lookup_grid_points(&pow2, "power-of-two grids (n_ocv 17, n_rc 9)");
    test_lookup_between(&p);
    test_lookup_hold(&p);
    test_single_temperature();
    test_soc_from_ocv(&p);
    test_hold_steep_tables();
    return bf_test_finish();
}
