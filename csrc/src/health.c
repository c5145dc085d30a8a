/* The SOC filter, capacity fit and R0 tracker stepped together: see health.h. */
#include "bmsfil/health.h"

#include "bmsfil/bf_math.h"

bf_status_t bf_health_init(bf_health_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *ft,
                           const bf_capacity_tuning_t *ct, const bf_r0_tuning_t *rt, float soc,
                           float current_A, float voltage_V, float temp_C)
{
    bf_health_t fresh;
    bf_status_t st;
    if (s == 0 || p == 0 || ft == 0 || ct == 0 || rt == 0) {
        return BF_E_NULL;
    }
    st = bf_capacity_init(&fresh.capacity, ct);
    if (st == BF_OK) {
        st = bf_r0_init(&fresh.r0, rt);
    }
    if (st == BF_OK) {
        /* As every target starts its filter (under load: an unknown start at
         * the SOC the voltage reads), from soc only without a voltage. */
        st = bf_soc_ekf_start(&fresh.ekf, p, ft, current_A, voltage_V, temp_C);
        if (st == BF_E_RANGE) {  /* no voltage the cell can have, or no temperature */
            st = bf_soc_ekf_init_soc(&fresh.ekf, p, ft, soc, bf_isfinite(temp_C) ? temp_C : 25.0f);
        }
    }
    if (st == BF_OK) {
        *s = fresh;
    }
    return st;
}

bf_status_t bf_health_step(bf_health_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *ft,
                           const bf_capacity_tuning_t *ct, const bf_r0_tuning_t *rt, float dt_s,
                           float current_A, float voltage_V, float temp_C, bf_health_out_t *out)
{
    bf_status_t st;
    uint32_t events = 0u;
    if (s == 0 || p == 0 || ft == 0 || ct == 0 || rt == 0 || out == 0) {
        return BF_E_NULL;
    }
    /* Every check that could fail below, before anything moves: a step that
     * fails leaves the state as it was. */
    st = bf_capacity_tuning_check(ct);
    if (st == BF_OK) {
        st = bf_r0_tuning_check(rt);
    }
    if (st == BF_OK) {
        st = bf_soc_ekf_tuning_check(ft);
    }
    if (st != BF_OK) {
        return st;
    }
    if (dt_s > ct->gap_s) {
        bf_soc_ekf_out_t *eo = &out->ekf;
        int from_voltage = 0;
        events |= BF_HEALTH_GAP;
        st = bf_soc_ekf_restart(&s->ekf, p, ft, ct->rest_current_A, current_A, voltage_V, temp_C, &from_voltage);
        if (st != BF_OK) {
            return st;
        }
        if (from_voltage) {
            events |= BF_HEALTH_RESTARTED;
        }
        eo->soc = s->ekf.x[0];
        eo->soc_sigma = bf_sqrtf(s->ekf.P[0][0]);
        eo->voltage_pred_V = 0.0f;
        eo->flags = BF_FLAG_DT_INVALID;
        eo->soc_correction = 0.0f;
        eo->soc_correction_var = 0.0f;
        eo->innovation_V = 0.0f;
        eo->innovation_var_V2 = 0.0f;
        eo->capacity_Ah = 0.0f;
        eo->ohmic_V = 0.0f;
        eo->ohmic_R_ohm = 0.0f;
    } else {
        st = bf_soc_ekf_step(&s->ekf, p, ft, dt_s, current_A, voltage_V, temp_C, &out->ekf);
        if (st != BF_OK) {
            return st;
        }
    }
    st = bf_capacity_step(&s->capacity, p, ct, dt_s, current_A, voltage_V, temp_C, &out->ekf, &out->capacity);
    if (st == BF_OK) {
        st = bf_r0_step(&s->r0, p, rt, dt_s, current_A, voltage_V, temp_C, out->ekf.soc, &out->r0);
    }
    out->events = events;
    return st;
}

bf_status_t bf_health_run(bf_health_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *ft,
                          const bf_capacity_tuning_t *ct, const bf_r0_tuning_t *rt, const float *dt_s,
                          const float *current_A, const float *voltage_V, const float *temp_C, size_t n,
                          float *soc, float *soc_sigma, float *capacity_Ah, float *capacity_sigma_Ah,
                          float *r0_ohm, float *r0_sigma_ohm, float *r0_growth, uint8_t *events)
{
    size_t k;
    bf_status_t checked;
    if (dt_s == 0 || current_A == 0 || voltage_V == 0 || temp_C == 0) {
        return BF_E_NULL;
    }
    /* The tables once per call, as bf_soc_ekf_run (the step checks the tunings, not them). */
    checked = bf_cell_params_check(p);
    if (checked != BF_OK) {
        return checked;
    }
    for (k = 0u; k < n; ++k) {
        bf_health_out_t o;
        bf_status_t st = bf_health_step(s, p, ft, ct, rt, dt_s[k], current_A[k], voltage_V[k], temp_C[k], &o);
        if (st != BF_OK) {
            return st;
        }
        if (soc != 0) soc[k] = o.ekf.soc;
        if (soc_sigma != 0) soc_sigma[k] = o.ekf.soc_sigma;
        if (capacity_Ah != 0) capacity_Ah[k] = o.capacity.capacity_Ah;
        if (capacity_sigma_Ah != 0) capacity_sigma_Ah[k] = o.capacity.capacity_sigma_Ah;
        if (r0_ohm != 0) r0_ohm[k] = o.r0.r0_ohm;
        if (r0_sigma_ohm != 0) r0_sigma_ohm[k] = o.r0.r0_sigma_ohm;
        if (r0_growth != 0) r0_growth[k] = o.r0.growth;
        if (events != 0) events[k] = (uint8_t)(o.capacity.events | (o.events << 5u) | (o.r0.events << 7u));
    }
    return BF_OK;
}
