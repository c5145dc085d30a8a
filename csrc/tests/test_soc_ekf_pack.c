/* soc_ekf_pack: every cell of a multi-cell run gets the same bits as
 * bf_soc_ekf_step gives it alone (plausible and absurd inputs, states that
 * need the covariance repairs or fail), state carried across calls, argument
 * checks. Built like every test program: portable code, and under ASan +
 * UBSan by `make sanitize`. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "bf_test.h"
#include "bmsfil/bf_math.h"
#include "bmsfil/soc_ekf_pack.h"

#define MAX_CELLS 21
#define MAX_STEPS 60

static bf_cell_params_t cell;
static bf_soc_ekf_tuning_t tun;

static float data[BF_SOC_EKF_PACK_FIELDS * MAX_CELLS];
static float dt[MAX_STEPS], cur[MAX_STEPS];
static float volt[MAX_STEPS * MAX_CELLS], temp[MAX_STEPS * MAX_CELLS];
static float soc[MAX_STEPS * MAX_CELLS], sigma[MAX_STEPS * MAX_CELLS];
static uint8_t flags[MAX_STEPS * MAX_CELLS];

static int same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Compare every cell's outputs and final state with bf_soc_ekf_step run on
 * that cell alone from `start` (going on after a failed step, which leaves
 * the state as it was); returns the number of failed single-cell steps. */
static int check_against_single(const bf_soc_ekf_t *start, size_t n_cells, size_t n, const bf_soc_ekf_pack_t *pk)
{
    size_t c, k;
    int failures = 0;
    for (c = 0; c < n_cells; ++c) {
        bf_soc_ekf_t s = start[c], got;
        int fails = 0, ok = 1;
        for (k = 0; k < n; ++k) {
            bf_soc_ekf_out_t o;
            bf_status_t st = bf_soc_ekf_step(&s, &cell, &tun, dt[k], cur[k], volt[k * n_cells + c],
                                             temp[k * n_cells + c], &o);
            fails += st != BF_OK;
            ok &= same_float(o.soc, soc[k * n_cells + c]) && same_float(o.soc_sigma, sigma[k * n_cells + c])
                  && (uint8_t)o.flags == flags[k * n_cells + c];
        }
        CHECKF(ok, "cell %u of %u: outputs differ from bf_soc_ekf_step", (unsigned)c, (unsigned)n_cells);
        CHECK(bf_soc_ekf_pack_get(pk, c, &got) == BF_OK);
        CHECKF(memcmp(got.x, s.x, sizeof s.x) == 0 && memcmp(got.P, s.P, sizeof s.P) == 0
                   && same_float(got.last_current_A, s.last_current_A) && same_float(got.last_temp_C, s.last_temp_C)
                   && same_float(got.hyst_sign, s.hyst_sign),
               "cell %u: final state differs", (unsigned)c);
        CHECK(pk->data[BF_SOC_EKF_PACK_FAILS * n_cells + c] == (float)fails);
        failures += fails;
    }
    return failures;
}

static void random_inputs(fx_rng_t *r, size_t n_cells, size_t n, int absurd)
{
    size_t k, c;
    static const float dts[4] = { 0.1f, 1.0f, 10.0f, 0.0f };
    for (k = 0; k < n; ++k) {
        dt[k] = dts[fx_next(r) % 4u];
        cur[k] = fx_uniform(r, -6.0f, 6.0f);
        if (absurd && fx_next(r) % 8u == 0u) {
            dt[k] = fx_absurd(r);
        }
        if (absurd && fx_next(r) % 8u == 0u) {
            cur[k] = fx_absurd(r);
        }
        for (c = 0; c < n_cells; ++c) {
            volt[k * n_cells + c] = fx_ocv_formula(fx_uniform(r, 0.0f, 1.0f), 20.0f) + fx_uniform(r, -0.1f, 0.1f);
            temp[k * n_cells + c] = fx_uniform(r, -20.0f, 45.0f);
            if (absurd && fx_next(r) % 6u == 0u) {
                volt[k * n_cells + c] = fx_absurd(r);
            }
            if (absurd && fx_next(r) % 6u == 0u) {
                temp[k * n_cells + c] = fx_absurd(r);
            }
        }
    }
}

static void test_equals_single(void)
{
    fx_rng_t r = { 12345u };
    int round, total_failures = 0;
    size_t total_steps = 0u;
    for (round = 0; round < 40; ++round) {
        size_t n_cells = 1u + fx_next(&r) % MAX_CELLS, n = 1u + fx_next(&r) % MAX_STEPS, c;
        bf_soc_ekf_pack_t pk;
        bf_soc_ekf_t start[MAX_CELLS];
        float v0[MAX_CELLS], t0[MAX_CELLS];
        pk.data = data;
        pk.n_cells = n_cells;
        pk.options = 0u;
        for (c = 0; c < n_cells; ++c) {
            v0[c] = fx_ocv_formula(fx_uniform(&r, 0.0f, 1.0f), 10.0f);
            t0[c] = fx_uniform(&r, -15.0f, 40.0f);
        }
        CHECK(bf_soc_ekf_pack_init_ocv(&pk, &cell, &tun, v0, t0) == BF_OK);
        for (c = 0; c < n_cells; ++c) {
            CHECK(bf_soc_ekf_init_ocv(&start[c], &cell, &tun, v0[c], t0[c]) == BF_OK);
            if (round % 3 == 2) {
                /* States that need the repairs: variances over their
                 * ceilings, correlations beyond the bound, NaN. */
                start[c].P[0][0] = fx_uniform(&r, 0.0f, 3.0f);
                start[c].P[1][1] = fx_uniform(&r, 0.0f, 1e4f);
                start[c].P[0][1] = start[c].P[1][0] = fx_uniform(&r, -2.0f, 2.0f);
                if (c % 5u == 3u) {
                    start[c].P[3][3] = NAN;
                }
                if (c % 7u == 4u) {
                    start[c].x[2] = NAN; /* every step of this cell fails */
                }
                CHECK(bf_soc_ekf_pack_set(&pk, c, &start[c]) == BF_OK);
            }
        }
        random_inputs(&r, n_cells, n, round % 2);
        {
            bf_status_t st = bf_soc_ekf_pack_run(&pk, &cell, &tun, dt, cur, volt, temp, n, soc, sigma, flags);
            int failures = check_against_single(start, n_cells, n, &pk);
            total_failures += failures;
            total_steps += n * n_cells;
            CHECKF(st == (failures ? BF_E_NUMERIC : BF_OK), "round %d: status %d with %d failures", round, (int)st,
                   failures);
        }
        for (c = 0; c < n * n_cells; ++c) {
            CHECK(soc[c] >= 0.0f && soc[c] <= 1.0f);
        }
    }
    printf("pack vs single cell: 40 rounds, %u cell-steps, %d failed single-cell steps matched\n",
           (unsigned)total_steps, total_failures);
    CHECK(total_failures > 0); /* the failure path was exercised */
}

static void test_two_calls(void)
{
    fx_rng_t r = { 777u };
    static float data2[BF_SOC_EKF_PACK_FIELDS * MAX_CELLS];
    bf_soc_ekf_pack_t a = { data, 13u, 0u }, b = { data2, 13u, 0u };
    float s0[13], t0[13];
    size_t c;
    for (c = 0; c < 13u; ++c) {
        s0[c] = fx_uniform(&r, 0.2f, 0.9f);
        t0[c] = 25.0f;
    }
    random_inputs(&r, 13u, 50u, 1);
    CHECK(bf_soc_ekf_pack_init_soc(&a, &cell, &tun, s0, t0) == BF_OK);
    CHECK(bf_soc_ekf_pack_init_soc(&b, &cell, &tun, s0, t0) == BF_OK);
    (void)bf_soc_ekf_pack_run(&a, &cell, &tun, dt, cur, volt, temp, 50u, 0, 0, 0);
    (void)bf_soc_ekf_pack_run(&b, &cell, &tun, dt, cur, volt, temp, 20u, 0, 0, 0);
    (void)bf_soc_ekf_pack_run(&b, &cell, &tun, dt + 20, cur + 20, volt + 20 * 13, temp + 20 * 13, 30u, 0, 0, 0);
    CHECK(memcmp(data, data2, sizeof(float) * BF_SOC_EKF_PACK_FIELDS * 13u) == 0);
}

static void test_arguments(void)
{
    bf_soc_ekf_pack_t pk = { data, 3u, 0u }, empty = { 0, 0u, 0u };
    bf_soc_ekf_t s;
    float v[3] = { 3.6f, 3.7f, 3.8f }, t[3] = { 25.0f, 25.0f, 25.0f };
    bf_cell_params_t bad = cell;
    CHECK(bf_soc_ekf_pack_init_ocv(&pk, &cell, &tun, v, t) == BF_OK);
    CHECK(bf_soc_ekf_pack_run(0, &cell, &tun, dt, cur, volt, temp, 1u, 0, 0, 0) == BF_E_NULL);
    CHECK(bf_soc_ekf_pack_run(&pk, &cell, &tun, 0, cur, volt, temp, 1u, 0, 0, 0) == BF_E_NULL);
    CHECK(bf_soc_ekf_pack_init_soc(&pk, &cell, &tun, 0, t) == BF_E_NULL);
    bad.n_temps = 0u;
    CHECK(bf_soc_ekf_pack_run(&pk, &bad, &tun, dt, cur, volt, temp, 1u, 0, 0, 0) == BF_E_PARAMS);
    CHECK(bf_soc_ekf_pack_get(&pk, 3u, &s) == BF_E_RANGE);
    CHECK(bf_soc_ekf_pack_set(&pk, 3u, &s) == BF_E_RANGE);
    CHECK(bf_soc_ekf_pack_run(&empty, &cell, &tun, dt, cur, volt, temp, 5u, 0, 0, 0) == BF_OK);
    CHECK(bf_soc_ekf_pack_run(&pk, &cell, &tun, dt, cur, volt, temp, 0u, 0, 0, 0) == BF_OK);
    CHECK(strcmp(bf_soc_ekf_pack_code_path(&pk), "portable") == 0);
}

int main(void)
{
    fx_cell(&cell);
    fx_tuning(&tun);
    test_equals_single();
    test_two_calls();
    test_arguments();
    return bf_test_finish();
}
