/* libFuzzer target: the estimator's step API with any float inputs (raw
 * bits: NaN, infinities, subnormals, absurd magnitudes), from a state
 * initialised from a fuzzed OCV. Every step must keep SOC in [0, 1], the
 * state finite and the covariance symmetric with positive finite
 * variances; a step that fails must leave the state exactly as it was.
 * After every good step the state-of-power search (power.h) goes on from
 * that state, a few sub-steps at a time, with the firmware's limits: every
 * result finite and >= 0, and every horizon published within the
 * search's bound on pulses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bmsfil/power.h"
#include "bmsfil/soc_ekf.h"
#include "fw/params.h"

/* Sub-steps one horizon may take at most: both directions, each at most
 * BF_SOP_ITERATIONS pulses after a bracket of at most 3. */
#define SOP_BOUND (2u * (BF_SOP_ITERATIONS + 3u) * BF_SOP_SUBSTEPS)

static float take(const uint8_t *p)
{
    float x;
    memcpy(&x, p, sizeof x);
    return x;
}

static void check(const bf_soc_ekf_t *s)
{
    if (!(s->x[0] >= 0.0f && s->x[0] <= 1.0f)) abort();
    for (int i = 0; i < BF_SOC_EKF_NX; i++) {
        if (!isfinite(s->x[i]) || !isfinite(s->P[i][i]) || !(s->P[i][i] > 0.0f)) abort();
        for (int j = 0; j < BF_SOC_EKF_NX; j++)
            if (s->P[i][j] != s->P[j][i]) abort();
    }
}

static void check_power(const bf_sop_t *r)
{
    if (!(r->discharge_W >= 0.0f && isfinite(r->discharge_W) && r->charge_W >= 0.0f && isfinite(r->charge_W) &&
          r->discharge_A >= 0.0f && isfinite(r->discharge_A) && r->charge_A >= 0.0f && isfinite(r->charge_A))) {
        fprintf(stderr, "DEBUG %g %g %g %g by %u %u\n", (double)r->discharge_W, (double)r->charge_W, (double)r->discharge_A, (double)r->charge_A, r->discharge_by, r->charge_by);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    static const float horizon_s[3] = {2.0f, 10.0f, 30.0f};
    bf_soc_ekf_t s, before;
    bf_soc_ekf_out_t out;
    bf_sop_task_t sop;
    bf_sop_limits_t lims[3];
    uint32_t since = 0;
    if (n < 8) return 0;
    for (int h = 0; h < 3; h++) {
        lims[h].horizon_s = horizon_s[h];
        lims[h].v_min_V = fw_params_cell.v_min_V;
        lims[h].v_max_V = fw_params_cell.v_max_V;
        lims[h].i_dis_max_A = lims[h].i_chg_max_A = fw_params_cell.i_max_A;
        lims[h].soc_min = 0.0f;
        lims[h].soc_max = 1.0f;
        lims[h].temp_min_C = -30.0f;
        lims[h].temp_max_C = 60.0f;
        lims[h].temp_chg_min_C = 0.0f;
        lims[h].temp_chg_max_C = 50.0f;
    }
    if (bf_sop_task_init(&sop) != BF_OK) abort();
    /* The start every target makes (bf_soc_ekf_start, which runs init_ocv),
     * at the first step's current. */
    if (bf_soc_ekf_start(&s, &fw_params_cell, &fw_params_tuning, n >= 24 ? take(data + 12) : 0.0f, take(data),
                         take(data + 4)) != BF_OK &&
        bf_soc_ekf_init_soc(&s, &fw_params_cell, &fw_params_tuning, 0.5f, 25.0f) != BF_OK)
        abort();
    check(&s);
    for (size_t i = 8; i + 16 <= n; i += 16) {
        bf_status_t st;
        before = s;
        st = bf_soc_ekf_step(&s, &fw_params_cell, &fw_params_tuning, take(data + i), take(data + i + 4),
                             take(data + i + 8), take(data + i + 12), &out);
        if (st != BF_OK) {
            if (memcmp(&before, &s, sizeof s) != 0) abort();
            continue;
        }
        check(&s);
        if (!(out.soc >= 0.0f && out.soc <= 1.0f) || !isfinite(out.soc_sigma)) abort();
        {
            int32_t finished;
            /* 1 to 8 sub-steps, from the low bits of the sample's current */
            uint32_t budget = 1u + (data[i + 4] & 7u);
            if (bf_sop_task_step(&sop, &s, &fw_params_cell, s.last_temp_C, lims, 3u, budget, &finished) != BF_OK)
                abort();
            if (finished >= 0) {
                check_power(&sop.result[finished]);
                since = sop.substeps;
            } else if (sop.substeps - since > SOP_BOUND) {
                abort();
            }
        }
    }
    return 0;
}
