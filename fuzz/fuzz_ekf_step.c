/* libFuzzer target: the estimator's step API with any float inputs (raw
 * bits: NaN, infinities, subnormals, absurd magnitudes), from a state
 * initialised from a fuzzed OCV. Every step must keep SOC in [0, 1], the
 * state finite and the covariance symmetric with positive finite
 * variances; a step that fails must leave the state exactly as it was. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bmsfil/soc_ekf.h"
#include "fw/params.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n)
{
    bf_soc_ekf_t s, before;
    bf_soc_ekf_out_t out;
    if (n < 8) return 0;
    if (bf_soc_ekf_init_ocv(&s, &fw_params_cell, &fw_params_tuning, take(data), take(data + 4)) != BF_OK &&
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
    }
    return 0;
}
