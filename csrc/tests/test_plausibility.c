/* plausibility: config checks, a frozen voltage under a changing current is
 * flagged and a constant voltage at rest is not, an unseen current is
 * estimated with the right sign, the filter's convergence from a wrong
 * initial SOC (at the start, or at a restart under a monitor that keeps its
 * state) is not counted as an unseen current, and absurd inputs keep every
 * output finite. */
#include <math.h>
#include <stddef.h>

#include "bf_test.h"
#include "bmsfil/bf_math.h"
#include "bmsfil/plausibility.h"

static bf_cell_params_t cell;
static bf_soc_ekf_tuning_t tun;

static void default_config(bf_plaus_config_t *c)
{
    c->unseen_tau_s = 14400.0f;
    c->offset_tol_A = 0.0f;
    c->leak_tol_A = 0.0f;
    c->unseen_z = 4.26f;
    c->voltage_noise_V = 1e-3f;
    c->voltage_stuck_tol_V = 1e-3f;
    c->model_change_rel = 0.5f;
    c->stuck_z = 4.75f;
    c->converged_sigma_soc = 0.03f;
}

static void test_config(void)
{
    bf_plaus_config_t c;
    bf_plaus_t s;
    bf_soc_ekf_out_t eo = { 0 };
    bf_plaus_out_t po;
    default_config(&c);
    CHECK(bf_plaus_config_check(&c) == BF_OK);
    CHECK(bf_plaus_config_check(0) == BF_E_NULL);
    CHECK(bf_plaus_init(0, &c) == BF_E_NULL);
    CHECK(bf_plaus_init(&s, &c) == BF_OK);
    CHECK(bf_plaus_step(&s, &c, 0.1f, 3.7f, 0, &po) == BF_E_NULL);
    c.model_change_rel = 1.0f;
    CHECK(bf_plaus_config_check(&c) == BF_E_CONFIG);
    default_config(&c);
    c.unseen_tau_s = 0.0f;
    CHECK(bf_plaus_config_check(&c) == BF_E_CONFIG);
    default_config(&c);
    c.stuck_z = NAN;
    CHECK(bf_plaus_config_check(&c) == BF_E_CONFIG);
    default_config(&c);
    c.converged_sigma_soc = 0.0f;
    CHECK(bf_plaus_config_check(&c) == BF_E_CONFIG);
    c.converged_sigma_soc = NAN;
    CHECK(bf_plaus_config_check(&c) == BF_E_CONFIG);
    /* A bad config is refused where a state is started; the step trusts the
     * config its state was started with, as the filter's step its tuning. */
    CHECK(bf_plaus_init(&s, &c) == BF_E_CONFIG);
    CHECK(bf_plaus_step(&s, 0, 0.1f, 3.7f, &eo, &po) == BF_E_NULL);
    default_config(&c);
    CHECK(bf_plaus_init(&s, &c) == BF_OK);
    CHECK(bf_plaus_step(&s, &c, 0.1f, 3.7f, &eo, &po) == BF_OK);
    CHECK(isinf(po.unseen_current_sigma_A) && po.flags == 0u);
}

/* n samples of current i_of(k) with the voltage frozen at v (or the model's
 * own voltage if v <= 0); returns the first sample flagged stuck, or -1. */
static int run_stuck(float v, int square_wave, int n)
{
    bf_soc_ekf_t e;
    bf_plaus_t s;
    bf_plaus_config_t c;
    bf_soc_ekf_out_t eo;
    bf_plaus_out_t po;
    int k, first = -1;
    default_config(&c);
    CHECK(bf_soc_ekf_init_soc(&e, &cell, &tun, 0.6f, 25.0f) == BF_OK);
    CHECK(bf_plaus_init(&s, &c) == BF_OK);
    for (k = 0; k < n; ++k) {
        float i = square_wave ? ((k / 10) % 2 ? -3.0f : 1.0f) : 0.0f;
        CHECK(bf_soc_ekf_step(&e, &cell, &tun, 0.1f, i, v, 25.0f, &eo) == BF_OK);
        CHECK(bf_plaus_step(&s, &c, 0.1f, v, &eo, &po) == BF_OK);
        if (first < 0 && (po.flags & BF_PLAUS_VOLTAGE_STUCK)) {
            first = k;
        }
    }
    return first;
}

static void test_stuck(void)
{
    bf_lookup_t at;
    float v;
    int k;
    bf_cell_locate(&cell, 0.6f, 25.0f, &at);
    v = bf_cell_ocv(&cell, &at, 0);
    k = run_stuck(v, 1, 300);
    CHECKF(k >= 0 && k < 50, "frozen voltage under a 4 A square wave flagged at sample %d", k);
    k = run_stuck(v, 0, 3000);
    CHECKF(k < 0, "constant voltage at rest flagged at sample %d", k);
}

/* A cell discharged at 2 A whose sensor reads 2 A - u: the monitor's unseen
 * current comes out near u, sign included. */
static void test_unseen_current(void)
{
    static const float us[] = { 0.5f, -0.5f };
    size_t j;
    for (j = 0; j < 2u; ++j) {
        bf_soc_ekf_t e;
        bf_plaus_t s;
        bf_plaus_config_t c;
        bf_soc_ekf_out_t eo;
        bf_plaus_out_t po;
        double z = 0.8;
        int k;
        default_config(&c);
        CHECK(bf_soc_ekf_init_soc(&e, &cell, &tun, 0.8f, 25.0f) == BF_OK);
        CHECK(bf_plaus_init(&s, &c) == BF_OK);
        for (k = 0; k < 30000; ++k) {
            bf_lookup_t at;
            float i_true = (k / 600) % 2 ? -2.0f : 0.0f, v;
            bf_cell_locate(&cell, (float)z, 25.0f, &at);
            z += (double)i_true * 1.0 / ((double)bf_cell_capacity(&cell, &at) * 3600.0);
            bf_cell_locate(&cell, (float)z, 25.0f, &at);
            v = bf_cell_ocv(&cell, &at, 0) + bf_cell_rc_table(&cell, (const float (*)[BF_RC_MAX_POINTS])cell.r0_ohm, &at) * i_true;
            CHECK(bf_soc_ekf_step(&e, &cell, &tun, 1.0f, i_true + us[j], v, 25.0f, &eo) == BF_OK);
            CHECK(bf_plaus_step(&s, &c, 1.0f, v, &eo, &po) == BF_OK);
            if (z < 0.15) {
                break;
            }
        }
        CHECKF(fabsf(po.unseen_current_A - us[j]) < 0.25f, "unseen current %g +- %g for %g",
               (double)po.unseen_current_A, (double)po.unseen_current_sigma_A, (double)us[j]);
        CHECK(bf_isfinite(po.unseen_current_sigma_A) && po.unseen_current_sigma_A > 0.0f);
        printf("unseen current %+.2f A: estimated %+.3f +- %.3f A, flags 0x%02x\n", (double)us[j],
               (double)po.unseen_current_A, (double)po.unseen_current_sigma_A, (unsigned)po.flags);
    }
}

/* A cell at 0.8 SOC, discharged at 1 A in 10-minute pulses with rests,
 * sensor exact; the filter starts from 0.5 with the LG HG2 set's initial
 * SOC sigma (0.5) and, if restart_at >= 0, is restarted from 0.3 at that
 * sample (the cell then near 0.6) while the monitor keeps its state. Returns the monitor's last
 * output; *flags_seen collects every flag raised. */
static bf_plaus_out_t run_wrong_start(const bf_plaus_config_t *c, int restart_at, uint32_t *flags_seen)
{
    bf_soc_ekf_t e;
    bf_soc_ekf_tuning_t t = tun;
    bf_plaus_t s;
    bf_soc_ekf_out_t eo;
    bf_plaus_out_t po;
    double z = 0.8;
    int k;
    t.p0_soc = 0.25f;
    t.p_floor_soc = 1e-4f;
    *flags_seen = 0u;
    CHECK(bf_soc_ekf_init_soc(&e, &cell, &t, 0.5f, 25.0f) == BF_OK);
    CHECK(bf_plaus_init(&s, c) == BF_OK);
    for (k = 0; k < 8000; ++k) {
        bf_lookup_t at;
        float i_true = (k / 600) % 2 ? -1.0f : 0.0f, v;
        if (k == restart_at) {
            CHECK(bf_soc_ekf_init_soc(&e, &cell, &t, 0.3f, 25.0f) == BF_OK);
        }
        bf_cell_locate(&cell, (float)z, 25.0f, &at);
        z += (double)i_true * 1.0 / ((double)bf_cell_capacity(&cell, &at) * 3600.0);
        bf_cell_locate(&cell, (float)z, 25.0f, &at);
        v = bf_cell_ocv(&cell, &at, 0) + bf_cell_rc_table(&cell, (const float (*)[BF_RC_MAX_POINTS])cell.r0_ohm, &at) * i_true;
        CHECK(bf_soc_ekf_step(&e, &cell, &t, 1.0f, i_true, v, 25.0f, &eo) == BF_OK);
        CHECK(bf_plaus_step(&s, c, 1.0f, v, &eo, &po) == BF_OK);
        *flags_seen |= po.flags;
    }
    return po;
}

static void test_wrong_start(void)
{
    static const int restarts[] = { -1, 4000 };
    bf_plaus_config_t c, never;
    bf_plaus_out_t po;
    uint32_t seen;
    size_t j;
    default_config(&c);
    never = c;
    never.converged_sigma_soc = 1e30f; /* every correction counted, as before the gate */
    for (j = 0; j < 2u; ++j) {
        po = run_wrong_start(&c, restarts[j], &seen);
        CHECKF(fabsf(po.unseen_current_A) < 0.05f && (seen & (BF_PLAUS_CURRENT_OFFSET | BF_PLAUS_SELF_DISCHARGE)) == 0u,
               "exact sensor, filter from a wrong SOC (restart at %d): unseen current %g +- %g, flags 0x%02x",
               restarts[j], (double)po.unseen_current_A, (double)po.unseen_current_sigma_A, (unsigned)seen);
        printf("filter from 0.5 at 0.8 SOC (restart at %d): unseen current %+.3f +- %.3f A", restarts[j],
               (double)po.unseen_current_A, (double)po.unseen_current_sigma_A);
        po = run_wrong_start(&never, restarts[j], &seen);
        CHECKF(po.unseen_current_A < -0.2f, "without the gate the convergence reads as %g A", (double)po.unseen_current_A);
        printf("; counting the convergence: %+.3f +- %.3f A\n", (double)po.unseen_current_A,
               (double)po.unseen_current_sigma_A);
    }
}

static void test_absurd(void)
{
    fx_rng_t r = { 12345u };
    bf_soc_ekf_t e;
    bf_plaus_t s;
    bf_plaus_config_t c;
    bf_soc_ekf_out_t eo;
    bf_plaus_out_t po;
    int k, bad = 0;
    default_config(&c);
    CHECK(bf_soc_ekf_init_soc(&e, &cell, &tun, 0.5f, 25.0f) == BF_OK);
    CHECK(bf_plaus_init(&s, &c) == BF_OK);
    for (k = 0; k < 20000; ++k) {
        float dt = fx_uniform(&r, 0.0f, 5.0f), i = fx_uniform(&r, -20.0f, 20.0f);
        float v = fx_uniform(&r, 2.5f, 4.3f), t = fx_uniform(&r, -20.0f, 50.0f);
        bf_status_t st;
        if (fx_next(&r) % 10u == 0u) {
            switch (fx_next(&r) % 4u) {
            case 0: dt = fx_absurd(&r); break;
            case 1: i = fx_absurd(&r); break;
            case 2: v = fx_absurd(&r); break;
            default: t = fx_absurd(&r); break;
            }
        }
        st = bf_soc_ekf_step(&e, &cell, &tun, dt, i, v, t, &eo);
        if (st != BF_OK) {
            continue;
        }
        CHECK(bf_plaus_step(&s, &c, dt, v, &eo, &po) == BF_OK);
        if (!bf_isfinite(po.unseen_current_A) || isnan(po.unseen_current_sigma_A) || po.unseen_current_sigma_A < 0.0f
            || !bf_isfinite(po.stuck_for_s) || !bf_isfinite(po.stuck_pred_change_V) || po.stuck_for_s < 0.0f
            || !bf_isfinite(s.unseen_charge_As) || !bf_isfinite(s.window_s) || !bf_isfinite(s.sigma2_past)) {
            ++bad;
        }
    }
    CHECKF(bad == 0, "%d steps with a non-finite or negative output", bad);
}

int main(void)
{
    fx_cell(&cell);
    fx_tuning(&tun);
    test_config();
    test_stuck();
    test_unseen_current();
    test_wrong_start();
    test_absurd();
    return bf_test_finish();
}
