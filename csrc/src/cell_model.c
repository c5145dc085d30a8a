#include "bmsfil/cell_model.h"

#include "bmsfil/bf_math.h"

/* Every point finite, none more than BF_OCV_DIP_V below the one before it
 * (the difference in single precision, as the host's check takes it). */
static int ocv_row_ok(const float *v, uint32_t n)
{
    uint32_t k;
    for (k = 0; k < n; ++k) {
        if (!bf_isfinite(v[k]) || (k > 0u && v[k] - v[k - 1u] < -BF_OCV_DIP_V)) {
            return 0;
        }
    }
    return 1;
}

static int rc_table_ok(const bf_cell_params_t *p, const float t[BF_MAX_TEMPS][BF_RC_MAX_POINTS], float lower)
{
    uint32_t i, k;
    for (i = 0; i < p->n_temps; ++i) {
        for (k = 0; k < p->n_rc; ++k) {
            float v = t[i][k];
            if (!bf_isfinite(v) || v < lower) {
                return 0;
            }
        }
    }
    return 1;
}

bf_status_t bf_cell_params_check(const bf_cell_params_t *p)
{
    uint32_t i;
    if (p == 0) {
        return BF_E_NULL;
    }
    if (p->n_temps < 1u || p->n_temps > BF_MAX_TEMPS || p->n_ocv < 2u || p->n_ocv > BF_OCV_MAX_POINTS
        || p->n_rc < 2u || p->n_rc > BF_RC_MAX_POINTS) {
        return BF_E_PARAMS;
    }
    for (i = 0; i < p->n_temps; ++i) {
        if (!bf_isfinite(p->temp_C[i]) || (i > 0u && !(p->temp_C[i] > p->temp_C[i - 1u]))) {
            return BF_E_PARAMS;
        }
        if (!ocv_row_ok(p->ocv_V[i], p->n_ocv) || !(p->capacity_Ah[i] >= BF_MIN_CAPACITY_AH)
            || !bf_isfinite(p->capacity_Ah[i]) || !bf_isfinite(p->hyst_m0_V[i])
            || !bf_isfinite(p->hyst_m_V[i]) || !bf_isfinite(p->hyst_gamma[i])
            || p->hyst_gamma[i] < 0.0f || !bf_isfinite(p->rn_ohm[i]) || p->rn_ohm[i] < 0.0f) {
            return BF_E_PARAMS;
        }
    }
    if (!rc_table_ok(p, p->r0_ohm, 0.0f) || !rc_table_ok(p, p->r1_ohm, 0.0f) || !rc_table_ok(p, p->r2_ohm, 0.0f)
        || !rc_table_ok(p, p->tau1_s, BF_MIN_TAU_S) || !rc_table_ok(p, p->tau2_s, BF_MIN_TAU_S)) {
        return BF_E_PARAMS;
    }
    if (!bf_isfinite(p->rn_sat_per_A) || p->rn_sat_per_A < 0.0f) {
        return BF_E_PARAMS;
    }
    if (!(p->eta_charge > 0.0f) || p->eta_charge > 1.5f || !bf_isfinite(p->v_min_V)
        || !bf_isfinite(p->v_max_V) || !(p->v_max_V > p->v_min_V) || !(p->i_max_A > 0.0f)
        || !bf_isfinite(p->i_max_A)) {
        return BF_E_PARAMS;
    }
    return BF_OK;
}

/* Index of the grid cell holding x on a uniform 0..1 grid of n points, and
 * the weight of its upper end, holding the ends outside [0, 1]. */
static uint32_t grid_cell(float x, uint32_t n, float *w)
{
    /* Written so that NaN lands on 0: a float-to-integer conversion of NaN
     * is undefined behaviour. */
    float c = x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f;
    float pos = c * (float)(n - 1u);
    uint32_t k = (uint32_t)pos;
    if (k > n - 2u) {
        k = n - 2u;
    }
    *w = pos - (float)k;
    return k;
}

void bf_cell_locate(const bf_cell_params_t *p, float soc, float temp_C, bf_lookup_t *at)
{
    uint32_t t0 = 0u;
    at->wt = 0.0f;
    if (p->n_temps > 1u) {
        if (temp_C >= p->temp_C[p->n_temps - 1u]) {
            t0 = p->n_temps - 2u;
            at->wt = 1.0f;
        } else if (temp_C > p->temp_C[0]) {
            while (t0 + 2u < p->n_temps && temp_C >= p->temp_C[t0 + 1u]) {
                ++t0;
            }
            at->wt = (temp_C - p->temp_C[t0]) / (p->temp_C[t0 + 1u] - p->temp_C[t0]);
        }
    }
    at->t0 = t0;
    bf_cell_locate_soc(p, soc, at);
}

void bf_cell_locate_soc(const bf_cell_params_t *p, float soc, bf_lookup_t *at)
{
    at->k_ocv = grid_cell(soc, p->n_ocv, &at->w_ocv);
    at->k_rc = grid_cell(soc, p->n_rc, &at->w_rc);
}

float bf_cell_soc_from_ocv(const bf_cell_params_t *p, float ocv_V, float temp_C)
{
    float lo = 0.0f, hi = 1.0f;
    int i;
    bf_lookup_t at;
    for (i = 0; i < 24; ++i) {
        float mid = 0.5f * (lo + hi);
        bf_cell_locate(p, mid, temp_C, &at);
        if (bf_cell_ocv(p, &at, 0) < ocv_V) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return 0.5f * (lo + hi);
}
