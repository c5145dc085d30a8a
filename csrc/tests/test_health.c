/* health: the AWTLS capacity fit learns a known capacity, the anchors of a
 * simulated life (full, empty, gaps) close one pair per discharge and give
 * the cell's capacity, R0 follows known current steps, and absurd inputs
 * keep every output finite. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "bf_test.h"
#include "bmsfil/bf_math.h"
#include "bmsfil/health.h"

static bf_cell_params_t cell;
static bf_soc_ekf_tuning_t tun;

static void cap_tuning(bf_capacity_tuning_t *c)
{
    c->rated_Ah = 2.4f;
    c->prior_sigma_rel = 0.1f;
    c->memory_cycles = 0.5f;
    c->rest_current_A = 0.05f;
    c->rest_anchor_s = 3600.0f;
    c->full_margin_V = 0.03f;
    c->full_sigma = 0.005f;
    c->empty_V = 3.1f;
    c->empty_current_A = 0.24f;
    c->empty_soc_max = 0.2f;
    c->empty_sigma = 0.005f;
    c->min_dsoc = 0.2f;
    c->current_sigma_A = 0.01f;
    c->current_bias_A = 0.01f;
    c->gap_s = 600.0f;
}

static void r0_tuning(bf_r0_tuning_t *r)
{
    r->step_min_A = 0.5f;
    r->step_max_s = 30.0f;
    r->forget_steps = 10.0f;
    r->soc_min = 0.2f;
    r->voltage_sigma_V = 0.002f;
    r->r0_init_ohm = 0.0f;
    r->r0_init_sigma_ohm = 0.05f;
}

static void test_awtls(void)
{
    bf_awtls_t f;
    int k;
    CHECK(bf_awtls_init(&f, 1.0f, 0.1f) == BF_OK);
    CHECK(bf_awtls_init(&f, -1.0f, 0.1f) == BF_E_RANGE);
    CHECK(bf_awtls_init(0, 1.0f, 0.1f) == BF_E_NULL);
    CHECK(bf_awtls_init(&f, 1.0f, 0.1f) == BF_OK);
    CHECK(bf_awtls_update(&f, 0.5f, NAN, 1e-4f, 0.9f, 1e-6f) == BF_E_RANGE);
    CHECK(bf_awtls_update(&f, 0.5f, 1.0f, 0.0f, 0.9f, 1e-6f) == BF_E_RANGE);
    for (k = 0; k < 5; ++k) {
        CHECK(bf_awtls_update(&f, 0.5f, -1.0f, 5e-5f, -0.9f, 1e-6f) == BF_OK);
    }
    CHECKF(fabsf(f.q - 0.9f) < 1e-4f, "q %g, expected 0.9", (double)f.q);
    CHECKF(f.q_sigma > 0.0f && f.q_sigma < 0.01f, "sigma %g", (double)f.q_sigma);
    /* Charge pairs (both negative or both positive) teach the same. */
    for (k = 0; k < 5; ++k) {
        CHECK(bf_awtls_update(&f, 0.5f, 0.5f, 5e-5f, 0.4f, 1e-6f) == BF_OK);
    }
    /* After 2.5 equivalent cycles of new pairs the old ones weigh e^-5 of
     * their first weight against e^-0..e^-4 of the new ones: about 0.3 %. */
    CHECKF(fabsf(f.q - 0.8f) < 4e-3f, "q %g, expected 0.8", (double)f.q);
    CHECK(f.updates == 10u);
}

/* The cell the filter's model describes (cell_model.h's equations), but
 * holding q_true_Ah instead of the table's capacity. */
typedef struct {
    float z, i1, i2, h, s;
} sim_cell_t;

static float sim_step(sim_cell_t *c, float q_true_Ah, float dt, float i, float temp)
{
    const bf_cell_params_t *pc = &cell;
    bf_lookup_t at;
    float dz, a1, a2, ah;
    bf_cell_locate(&cell, c->z, temp, &at);
    dz = (i > 0.0f ? cell.eta_charge : 1.0f) * i * dt / (3600.0f * q_true_Ah);
    a1 = expf(-dt / bf_cell_rc_table(pc, pc->tau1_s, &at));
    a2 = expf(-dt / bf_cell_rc_table(pc, pc->tau2_s, &at));
    ah = expf(-fabsf(dz * bf_cell_temp_row(pc, pc->hyst_gamma, &at)));
    c->z += dz;
    c->i1 = a1 * c->i1 + (1.0f - a1) * i;
    c->i2 = a2 * c->i2 + (1.0f - a2) * i;
    c->h = ah * c->h + (1.0f - ah) * (i > 0.0f ? 1.0f : (i < 0.0f ? -1.0f : 0.0f));
    if (fabsf(i) > tun.hyst_current_A) {
        c->s = i > 0.0f ? 1.0f : -1.0f;
    }
    bf_cell_locate(&cell, c->z > 0.0f ? c->z : 0.0f, temp, &at);
    return bf_cell_ocv(&cell, &at, 0) + bf_cell_temp_row(pc, pc->hyst_m0_V, &at) * c->s
           + bf_cell_temp_row(pc, pc->hyst_m_V, &at) * c->h + bf_cell_rc_table(pc, pc->r0_ohm, &at) * i
           + bf_cell_rc_table(pc, pc->r1_ohm, &at) * c->i1 + bf_cell_rc_table(pc, pc->r2_ohm, &at) * c->i2;
}

/* A life of three discharges at 1 A from full to the SOC 0 of a cell that
 * has lost capacity (2.0 Ah against the table's 2.4), each after an
 * unrecorded charge (a 3 h gap) and a rest: one pair per discharge, the
 * capacity within 1 % after each (the filter, counting with the table's
 * 2.4 Ah, does not know the cell has faded: the pairs must not depend on
 * it), R0 from the load steps. */
static void test_simulated_life(void)
{
    const float q_true_Ah = 2.0f, temp = 25.0f;
    bf_capacity_tuning_t ct;
    bf_r0_tuning_t rt;
    bf_health_t h;
    bf_health_out_t o;
    uint32_t seen = 0u, updates = 0u, cycle;
    float r0_table, r1_table, m0_V;
    const bf_cell_params_t *pc = &cell;
    cap_tuning(&ct);
    r0_tuning(&rt);
    {
        bf_lookup_t at;
        bf_cell_locate(&cell, 1.0f, temp, &at);
        r0_table = bf_cell_rc_table(pc, pc->r0_ohm, &at);
        r1_table = bf_cell_rc_table(pc, pc->r1_ohm, &at);
        m0_V = bf_cell_temp_row(pc, pc->hyst_m0_V, &at);
    }
    for (cycle = 0u; cycle < 3u; ++cycle) {
        sim_cell_t c = { 1.0f, 0.0f, 0.0f, 1.0f, 1.0f };
        float v = sim_step(&c, q_true_Ah, 1.0f, 0.0f, temp);
        int k;
        if (cycle == 0u) {
            CHECK(bf_health_init(&h, &cell, &tun, &ct, &rt, 1.0f, 0.0f, v, temp) == BF_OK);
        }
        /* The rest after the (unrecorded) charge. */
        CHECK(bf_health_step(&h, &cell, &tun, &ct, &rt, cycle == 0u ? 1.0f : 3.0f * 3600.0f, 0.0f, v, temp, &o)
              == BF_OK);
        seen |= o.capacity.events;
        for (k = 0; k < 10; ++k) {
            v = sim_step(&c, q_true_Ah, 10.0f, 0.0f, temp);
            CHECK(bf_health_step(&h, &cell, &tun, &ct, &rt, 10.0f, 0.0f, v, temp, &o) == BF_OK);
            seen |= o.capacity.events;
        }
        while (c.z > 0.0f) {
            v = sim_step(&c, q_true_Ah, 10.0f, -1.0f, temp);
            CHECK(bf_health_step(&h, &cell, &tun, &ct, &rt, 10.0f, -1.0f, v, temp, &o) == BF_OK);
            seen |= o.capacity.events;
            updates += (o.capacity.events & BF_CAP_UPDATED) ? 1u : 0u;
        }
        for (k = 0; k < 20; ++k) {
            v = sim_step(&c, q_true_Ah, 10.0f, 0.0f, temp);
            CHECK(bf_health_step(&h, &cell, &tun, &ct, &rt, 10.0f, 0.0f, v, temp, &o) == BF_OK);
            seen |= o.capacity.events;
            updates += (o.capacity.events & BF_CAP_UPDATED) ? 1u : 0u;
        }
        CHECKF(fabsf(o.capacity.capacity_Ah - q_true_Ah) < 0.01f * q_true_Ah, "cycle %u: capacity %g, true %g",
               (unsigned)cycle, (double)o.capacity.capacity_Ah, (double)q_true_Ah);
        /* A step 10 s long also sees the part of the fast RC pair that
         * relaxed (tau1 18 s) and, where the current changes sign, the jump
         * of the instantaneous hysteresis (2 M0 / 1 A): between R0 and R0 +
         * R1 + 2 M0 / 1 A. */
        CHECKF(o.r0.r0_ohm > r0_table && o.r0.r0_ohm < r0_table + r1_table + 2.0f * m0_V,
               "cycle %u: R0 %g, table %g", (unsigned)cycle, (double)o.r0.r0_ohm, (double)r0_table);
    }
    CHECKF(updates == 3u, "%u pairs closed, expected one per discharge", (unsigned)updates);
    CHECK((seen & BF_CAP_ANCHOR_FULL) && (seen & BF_CAP_ANCHOR_EMPTY));
    printf("simulated life: capacity %.4f +- %.4f Ah (true %.3f), R0 %.4f +- %.4f ohm (table %.4f at SOC 1)\n",
           (double)o.capacity.capacity_Ah, (double)o.capacity.capacity_sigma_Ah, (double)q_true_Ah,
           (double)o.r0.r0_ohm, (double)o.r0.r0_sigma_ohm, (double)r0_table);
}

/* Anchors that contradict each other: a full cell (full anchor), then an
 * hour's rest at whatever the filter reads as SOC 0.5 with no charge in
 * between, as when a cut-off in the cold was taken for empty and the warm
 * rest's OCV then reads half the SOC back. The pair says the cell holds no
 * capacity at all; it is not learned (the fit went to 100 times rated), the
 * rest is the new anchor, and a consistent pair after it is learned. */
static void test_contradicting_pair_is_not_learned(void)
{
    bf_capacity_tuning_t ct;
    bf_capacity_t c;
    bf_capacity_out_t o;
    bf_soc_ekf_out_t e;
    bf_lookup_t at;
    float v_full;
    int k;
    cap_tuning(&ct);
    memset(&e, 0, sizeof e);
    e.soc_sigma = 0.01f;
    bf_cell_locate(&cell, 1.0f, 25.0f, &at);
    v_full = bf_cell_ocv(&cell, &at, 0);
    CHECK(bf_capacity_init(&c, &ct) == BF_OK);
    e.soc = 1.0f;
    CHECK(bf_capacity_step(&c, &cell, &ct, 1.0f, 0.0f, v_full, 25.0f, &e, &o) == BF_OK);
    CHECK((o.events & BF_CAP_ANCHOR_FULL) != 0u);
    e.soc = 0.5f;
    for (k = 0; k <= 360 && !(o.events & BF_CAP_ANCHOR_REST); ++k) {
        CHECK(bf_capacity_step(&c, &cell, &ct, 10.0f, 0.0f, 3.7f, 25.0f, &e, &o) == BF_OK);
    }
    CHECK((o.events & BF_CAP_ANCHOR_REST) != 0u && !(o.events & BF_CAP_UPDATED));
    CHECKF(c.fit.updates == 0u && o.capacity_Ah == ct.rated_Ah, "capacity %g after a pair with no charge",
           (double)o.capacity_Ah);
    /* Then 0.96 Ah out of the 2.4 Ah rated cell takes it from 0.5 to 0.1. */
    for (k = 0; k < 96; ++k) {
        e.soc = 0.5f - 0.4f * (float)(k + 1) / 96.0f;
        CHECK(bf_capacity_step(&c, &cell, &ct, 36.0f, -1.0f, 3.5f, 25.0f, &e, &o) == BF_OK);
    }
    for (k = 0; k <= 360 && !(o.events & BF_CAP_ANCHOR_REST); ++k) {
        CHECK(bf_capacity_step(&c, &cell, &ct, 10.0f, 0.0f, 3.5f, 25.0f, &e, &o) == BF_OK);
    }
    CHECK((o.events & BF_CAP_UPDATED) != 0u && c.fit.updates == 1u);
    CHECKF(fabsf(o.capacity_Ah - 2.4f) < 0.1f, "capacity %g after a consistent pair", (double)o.capacity_Ah);
}

static void test_absurd_inputs(void)
{
    bf_capacity_tuning_t ct;
    bf_r0_tuning_t rt;
    bf_health_t h;
    bf_health_out_t o;
    fx_rng_t rng = { 12345u };
    int k, bad = 0, bad_status = 0;
    cap_tuning(&ct);
    r0_tuning(&rt);
    CHECK(bf_health_init(&h, &cell, &tun, &ct, &rt, 0.5f, NAN, NAN, NAN) == BF_OK);
    for (k = 0; k < 20000; ++k) {
        int absurd = (fx_next(&rng) % 4u) == 0u;
        float dt = absurd && (fx_next(&rng) & 1u) ? fx_absurd(&rng) : fx_uniform(&rng, 0.0f, 700.0f);
        float i = absurd && (fx_next(&rng) & 1u) ? fx_absurd(&rng) : fx_uniform(&rng, -5.0f, 5.0f);
        float v = absurd && (fx_next(&rng) & 1u) ? fx_absurd(&rng) : fx_uniform(&rng, 2.5f, 4.3f);
        float t = absurd && (fx_next(&rng) & 1u) ? fx_absurd(&rng) : fx_uniform(&rng, -10.0f, 45.0f);
        if (bf_health_step(&h, &cell, &tun, &ct, &rt, dt, i, v, t, &o) != BF_OK) {
            ++bad_status;
            continue;
        }
        if (!bf_isfinite(o.capacity.capacity_Ah) || !(o.capacity.capacity_Ah > 0.0f)
            || !bf_isfinite(o.capacity.capacity_sigma_Ah) || !(o.capacity.capacity_sigma_Ah > 0.0f)
            || !bf_isfinite(o.r0.r0_ohm) || o.r0.r0_ohm < 0.0f || !bf_isfinite(o.r0.r0_sigma_ohm)
            || !bf_isfinite(o.ekf.soc) || o.ekf.soc < 0.0f || o.ekf.soc > 1.0f) {
            ++bad;
        }
    }
    CHECKF(bad_status == 0 && bad == 0, "%d bad statuses, %d non-finite or out-of-range outputs", bad_status, bad);
}

/* A reading the SOC filter refuses (0.0 V, a current beyond i_max_A) is no
 * current step for R0 either: one such sample between good ones leaves R0
 * where the good steps put it (it read as volts per amp). */
static void test_r0_skips_refused_readings(void)
{
    bf_r0_tuning_t rt;
    bf_r0_t r;
    bf_r0_out_t o;
    const float r0_true = 0.03f;
    int k;
    r0_tuning(&rt);
    CHECK(bf_r0_init(&r, &rt) == BF_OK);
    for (k = 0; k < 40; ++k) {
        float i = (k & 1) ? -2.0f : 0.0f;
        CHECK(bf_r0_step(&r, &cell, &rt, 1.0f, i, 3.7f + r0_true * i, 25.0f, 0.6f, &o) == BF_OK);
    }
    CHECKF(fabsf(o.r0_ohm - r0_true) < 1e-3f, "R0 %g from clean steps", (double)o.r0_ohm);
    {
        const float glitch_i[2] = { 0.0f, -500.0f }, glitch_v[2] = { 0.0f, 3.7f };
        int g;
        for (g = 0; g < 2; ++g) {
            bf_r0_t before;
            CHECK(bf_r0_step(&r, &cell, &rt, 1.0f, glitch_i[g], glitch_v[g], 25.0f, 0.6f, &o) == BF_OK);
            CHECK(!(o.events & BF_R0_UPDATED));
            before = r;
            /* the next good sample is a step from nothing: no update */
            CHECK(bf_r0_step(&r, &cell, &rt, 1.0f, -2.0f, 3.7f - 2.0f * r0_true, 25.0f, 0.6f, &o) == BF_OK);
            CHECKF(!(o.events & BF_R0_UPDATED) && o.r0_ohm == before.r0_ohm, "glitch %d: R0 %g", g,
                   (double)o.r0_ohm);
        }
    }
}

/* A health step with a tuning that fails its check leaves every estimator
 * as it was (it used to step the SOC filter and the capacity fit first). */
static void test_failed_step_changes_nothing(void)
{
    bf_capacity_tuning_t ct;
    bf_r0_tuning_t rt;
    bf_health_t h, before;
    bf_health_out_t o;
    float dts[2] = { 1.0f, 7200.0f };
    int g;
    cap_tuning(&ct);
    r0_tuning(&rt);
    CHECK(bf_health_init(&h, &cell, &tun, &ct, &rt, 0.5f, -1.0f, 3.6f, 25.0f) == BF_OK);
    rt.forget_steps = 0.5f; /* < 1: refused */
    for (g = 0; g < 2; ++g) {
        before = h;
        CHECK(bf_health_step(&h, &cell, &tun, &ct, &rt, dts[g], -1.0f, 3.6f, 25.0f, &o) == BF_E_CONFIG);
        CHECK(memcmp(&h, &before, sizeof h) == 0);
    }
}

static void test_config(void)
{
    bf_capacity_tuning_t ct;
    bf_r0_tuning_t rt;
    bf_capacity_t c;
    cap_tuning(&ct);
    r0_tuning(&rt);
    CHECK(bf_capacity_tuning_check(&ct) == BF_OK);
    CHECK(bf_r0_tuning_check(&rt) == BF_OK);
    ct.memory_cycles = 0.0f;
    CHECK(bf_capacity_init(&c, &ct) == BF_E_CONFIG);
    cap_tuning(&ct);
    ct.min_dsoc = 1.5f;
    CHECK(bf_capacity_tuning_check(&ct) == BF_E_CONFIG);
    rt.soc_min = 1.0f;
    CHECK(bf_r0_tuning_check(&rt) == BF_E_CONFIG);
    CHECK(bf_capacity_tuning_check(0) == BF_E_NULL);
}

int main(void)
{
    fx_cell(&cell);
    fx_tuning(&tun);
    test_config();
    test_awtls();
    test_simulated_life();
    test_contradicting_pair_is_not_learned();
    test_absurd_inputs();
    test_r0_skips_refused_readings();
    test_failed_step_changes_nothing();
    return bf_test_finish();
}
