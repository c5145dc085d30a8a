/* Ohmic resistance by recursive least squares on current steps: see resistance.h. */
#include "bmsfil/resistance.h"

#include "bmsfil/bf_math.h"

static int positive_finite(float v)
{
    return bf_isfinite(v) && v > 0.0f;
}

bf_status_t bf_r0_tuning_check(const bf_r0_tuning_t *t)
{
    if (t == 0) {
        return BF_E_NULL;
    }
    if (!positive_finite(t->step_min_A) || !positive_finite(t->step_max_s) || !bf_isfinite(t->forget_steps)
        || t->forget_steps < 1.0f || !bf_isfinite(t->soc_min) || t->soc_min < 0.0f || t->soc_min >= 1.0f || !positive_finite(t->voltage_sigma_V) || !bf_isfinite(t->r0_init_ohm)
        || t->r0_init_ohm < 0.0f || !positive_finite(t->r0_init_sigma_ohm)) {
        return BF_E_CONFIG;
    }
    return BF_OK;
}

bf_status_t bf_r0_init(bf_r0_t *s, const bf_r0_tuning_t *t)
{
    bf_status_t st;
    if (s == 0 || t == 0) {
        return BF_E_NULL;
    }
    st = bf_r0_tuning_check(t);
    if (st != BF_OK) {
        return st;
    }
    s->r0_ohm = t->r0_init_ohm;
    s->var_ohm2 = t->r0_init_sigma_ohm * t->r0_init_sigma_ohm;
    s->growth = 0.0f;
    s->updates = 0u;
    s->last_current_A = 0.0f;
    s->last_voltage_V = 0.0f;
    s->last_valid = 0u;
    return BF_OK;
}

bf_status_t bf_r0_step(bf_r0_t *s, const bf_cell_params_t *p, const bf_r0_tuning_t *t, float dt_s,
                       float current_A, float voltage_V, float temp_C, float soc, bf_r0_out_t *out)
{
    uint32_t events = 0u;
    int valid;
    if (s == 0 || p == 0 || t == 0 || out == 0) {
        return BF_E_NULL;
    }
    if (bf_r0_tuning_check(t) != BF_OK) {
        return BF_E_CONFIG;
    }
    /* A reading the SOC filter refuses (soc_ekf.h) is none here either: a
     * finite 0 V or a current beyond the cell's would read as volts per amp. */
    valid = bf_absf(current_A) <= p->i_max_A && bf_cell_voltage_plausible(p, voltage_V) && bf_temp_plausible(temp_C)
            && bf_isfinite(soc);
    if (valid && s->last_valid && bf_isfinite(dt_s) && dt_s > 0.0f && dt_s <= t->step_max_s) {
        float di = current_A - s->last_current_A;
        if (bf_absf(di) >= t->step_min_A && soc >= t->soc_min) {
            float dv = voltage_V - s->last_voltage_V;
            float r_meas = 2.0f * t->voltage_sigma_V * t->voltage_sigma_V;
            float prior = s->var_ohm2 * (1.0f + 1.0f / t->forget_steps);
            float gain = prior * di / (di * di * prior + r_meas);
            float r0 = s->r0_ohm + gain * (dv - di * s->r0_ohm);
            float var = (1.0f - gain * di) * prior;
            if (bf_isfinite(r0) && bf_isfinite(var) && var > 0.0f) {
                bf_lookup_t at;
                float table;
                s->r0_ohm = r0 > 0.0f ? r0 : 0.0f;
                s->var_ohm2 = var;
                s->updates += 1u;
                bf_cell_locate(p, bf_clampf(soc, 0.0f, 1.0f), temp_C, &at);
                table = bf_cell_rc_table(p, p->r0_ohm, &at);
                s->growth = table > 1e-6f ? s->r0_ohm / table : 0.0f;
                events |= BF_R0_UPDATED;
            }
        }
    }
    s->last_valid = (uint32_t)valid;
    s->last_current_A = valid ? current_A : 0.0f;
    s->last_voltage_V = valid ? voltage_V : 0.0f;
    out->r0_ohm = s->r0_ohm;
    out->r0_sigma_ohm = bf_sqrtf(s->var_ohm2);
    out->growth = s->growth;
    out->events = events;
    return BF_OK;
}
