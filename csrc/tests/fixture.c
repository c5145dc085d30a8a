/* Shared fixtures for the C unit tests: a synthetic cell and tuning. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "bf_test.h"

static const float temps[3] = { -10.0f, 10.0f, 35.0f };

float fx_ocv_formula(float soc, float temp_C)
{
    /* Strictly increasing in soc for every temperature of the table. */
    return 3.0f + 0.8f * soc + 0.4f * soc * soc + 0.0005f * (temp_C - 25.0f) * soc;
}

void fx_cell(bf_cell_params_t *p)
{
    uint32_t i, k;
    /* Zero everything first, so that fields added to the struct later start
     * from a defined value. */
    memset(p, 0, sizeof *p);
    p->n_temps = 3u;
    p->n_ocv = 21u;
    p->n_rc = 11u;
    for (i = 0; i < p->n_temps; ++i) {
        /* Resistances rise in the cold and towards empty. */
        float cold = 1.0f + 0.03f * (35.0f - temps[i]);
        p->temp_C[i] = temps[i];
        for (k = 0; k < p->n_ocv; ++k) {
            float z = (float)k / (float)(p->n_ocv - 1u);
            p->ocv_V[i][k] = fx_ocv_formula(z, temps[i]);
        }
        for (k = 0; k < p->n_rc; ++k) {
            float z = (float)k / (float)(p->n_rc - 1u);
            float empty = 1.0f + 0.5f * (1.0f - z) * (1.0f - z);
            p->r0_ohm[i][k] = 0.015f * cold * empty;
            p->r1_ohm[i][k] = 0.008f * cold * empty;
            p->tau1_s[i][k] = 12.0f + 6.0f * z;
            p->r2_ohm[i][k] = 0.006f * cold;
            p->tau2_s[i][k] = 250.0f + 100.0f * z;
        }
        p->capacity_Ah[i] = 2.3f + 0.1f * (float)i;
        p->hyst_m0_V[i] = 0.010f - 0.002f * (float)i;
        p->hyst_m_V[i] = 0.020f - 0.005f * (float)i;
        p->hyst_gamma[i] = 40.0f + 10.0f * (float)i;
        p->rn_ohm[i] = 0.02f / (float)(1u << i); /* 20, 10, 5 mOhm at i = 0 */
    }
    p->rn_sat_per_A = 0.5f;
    p->eta_charge = 0.995f;
    p->v_min_V = 2.5f;
    p->v_max_V = 4.25f;
    p->i_max_A = 30.0f;
}

void fx_tuning(bf_soc_ekf_tuning_t *t)
{
    memset(t, 0, sizeof *t);
    t->q_soc_per_s = 1e-10f;
    t->q_irc_A2_per_s = 1e-4f;
    t->q_hyst_per_s = 1e-6f;
    t->r_voltage_V2_s = 1e-5f;
    t->r_overpotential_rel2_s = 0.01f;
    t->r_dt_min_s = 0.01f;
    t->p0_soc = 1e-4f;
    t->p0_soc_ocv = 4e-4f;
    t->p0_irc_A2 = 1e-2f;
    t->p0_hyst = 0.1f;
    t->p_floor_soc = 1e-10f;
    t->p_floor_irc_A2 = 1e-10f;
    t->p_floor_hyst = 1e-10f;
    t->gate_sigma = 4.0f;
    t->hyst_current_A = 0.05f;
    t->dt_max_s = 60.0f;
    t->hold_sigma_c_rate = 0.5f;
}

uint32_t fx_next(fx_rng_t *r)
{
    uint32_t x = r->s ? r->s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    r->s = x;
    return x;
}

float fx_uniform(fx_rng_t *r, float lo, float hi)
{
    /* 24 random bits -> [0, 1). */
    float u = (float)(fx_next(r) >> 8) * (1.0f / 16777216.0f);
    return lo + u * (hi - lo);
}

float fx_gauss(fx_rng_t *r)
{
    float s = 0.0f;
    int i;
    for (i = 0; i < 12; ++i) {
        s += fx_uniform(r, 0.0f, 1.0f);
    }
    return s - 6.0f;
}

float fx_absurd(fx_rng_t *r)
{
    static const float table[] = {
        0.0f, -0.0f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX, 1e-45f, -1e-45f, FLT_MIN, 1e10f, -1e10f,
        1e5f, -1e5f, 123456.0f, -1.0f,
    };
    uint32_t n = (uint32_t)(sizeof table / sizeof table[0]);
    uint32_t k = fx_next(r) % (n + 3u);
    if (k == n) {
        return NAN;
    }
    if (k == n + 1u) {
        return INFINITY;
    }
    if (k == n + 2u) {
        return -INFINITY;
    }
    return table[k];
}
