#include "bmsfil/plausibility.h"

#include "bmsfil/bf_math.h"

#define SECONDS_PER_HOUR 3600.0f
#define SQRT2 1.41421356f

static int finite_nonneg(float v)
{
    return bf_isfinite(v) && v >= 0.0f;
}

static float plus_inf(void)
{
    bf_bits32_t b;
    b.u = 0x7f800000u;
    return b.f;
}

bf_status_t bf_plaus_config_check(const bf_plaus_config_t *c)
{
    if (c == 0) {
        return BF_E_NULL;
    }
    if (!finite_nonneg(c->unseen_tau_s) || c->unseen_tau_s <= 0.0f || !finite_nonneg(c->offset_tol_A)
        || !finite_nonneg(c->leak_tol_A) || !finite_nonneg(c->unseen_z) || c->unseen_z <= 0.0f
        || !finite_nonneg(c->voltage_noise_V) || !finite_nonneg(c->voltage_stuck_tol_V)
        || !finite_nonneg(c->model_change_rel) || c->model_change_rel >= 1.0f
        || !finite_nonneg(c->stuck_z) || c->stuck_z <= 0.0f || !finite_nonneg(c->converged_sigma_soc)
        || c->converged_sigma_soc <= 0.0f) {
        return BF_E_CONFIG;
    }
    return BF_OK;
}

bf_status_t bf_plaus_init(bf_plaus_t *s, const bf_plaus_config_t *c)
{
    bf_status_t st;
    if (s == 0) {
        return BF_E_NULL;
    }
    st = bf_plaus_config_check(c);
    if (st != BF_OK) {
        return st;
    }
    s->unseen_charge_As = 0.0f;
    s->window_s = 0.0f;
    s->sigma2_past = 0.0f;
    s->capacity_As = 0.0f;
    s->anchor_V = 0.0f;
    s->anchor_current_A = 0.0f;
    s->lag_current_A = 0.0f;
    s->run_s = 0.0f;
    s->run_pred_change_V = 0.0f;
    s->have_anchor = 0u;
    s->have_q_last = 0u;
    s->have_sigma = 0u;
    s->flags = 0u;
    return BF_OK;
}

/* The run of unchanged readings: restarted by any reading that moved more
 * than the tolerance from the run's first one; the evidence is how far the
 * model's ohmic drop (R0 i, the instantaneous response to the current, the
 * part of any equivalent circuit that is surest in size and sign; the RC
 * relaxations are not, in the cold) grew meanwhile, judged one sample late: a BMS (and a
 * cycler) may sample voltage and current up to one sample apart, so a
 * reading need not yet show a current step made in its own sample. The
 * run keeps the currents, and the growth is the change of current at this
 * sample's ohmic resistance: drops computed at two samples' temperatures
 * differ by the temperature reading's noise through R0(T) (0.3 K of white
 * noise at 0 degC moved the drop 18 mV under a steady 5 A, a false alarm).
 * Returns 1 if the run is implausible. */
static int stuck_step(bf_plaus_t *s, const bf_plaus_config_t *c, float dt_s, float voltage_V, float ohmic_V,
                      float ohmic_R_ohm)
{
    float change, live_min, needed;
    float current_A = ohmic_R_ohm > 0.0f ? ohmic_V / ohmic_R_ohm : 0.0f;  /* 0: a skipped sample */
    if (!s->have_anchor || bf_absf(voltage_V - s->anchor_V) > c->voltage_stuck_tol_V) {
        s->anchor_V = voltage_V;
        s->anchor_current_A = current_A;
        s->lag_current_A = current_A;
        s->run_s = 0.0f;
        s->run_pred_change_V = 0.0f;
        s->have_anchor = 1u;
        return 0;
    }
    s->run_s += dt_s;
    /* A charger or load holding the voltage at a limit (constant-voltage
     * charging, a discharge cut-off) keeps the reading still by backing the
     * current off: a drop that shrinks towards zero is what regulation does
     * and is no evidence. What is, is the drop growing again (or changing
     * sign) from the smallest it has been in the run. */
    if (bf_absf(s->lag_current_A) < bf_absf(s->anchor_current_A)) {
        s->anchor_current_A = s->lag_current_A;
    }
    change = ohmic_R_ohm * bf_absf(s->lag_current_A - s->anchor_current_A);
    s->lag_current_A = current_A;
    if (change > s->run_pred_change_V) {
        s->run_pred_change_V = change;
    }
    /* The least a live sensor would have moved, against what noise on two
     * readings could hide inside the tolerance. */
    live_min = (1.0f - c->model_change_rel) * s->run_pred_change_V;
    needed = c->voltage_stuck_tol_V + c->stuck_z * SQRT2 * c->voltage_noise_V;
    return live_min > needed;
}

bf_status_t bf_plaus_step(bf_plaus_t *s, const bf_plaus_config_t *c, float dt_s, float voltage_V,
                          const bf_soc_ekf_out_t *ekf, bf_plaus_out_t *out)
{
    uint32_t flags = 0u;
    uint32_t ef;
    float q_As, moved_As, sigma_u, u, x, forget;
    /* The config was checked by bf_plaus_init (as the filter's tuning is by
     * its init): not again on every sample, which would cost a quarter of
     * the monitor's instructions. */
    if (s == 0 || c == 0 || ekf == 0 || out == 0) {
        return BF_E_NULL;
    }
    ef = ekf->flags;
    if (ef & BF_FLAG_VOLTAGE_INVALID) {
        flags |= BF_PLAUS_VOLTAGE_RANGE;
    }
    if (ef & BF_FLAG_CURRENT_INVALID) {
        flags |= BF_PLAUS_CURRENT_RANGE;
    }
    if (ef & BF_FLAG_TEMP_INVALID) {
        flags |= BF_PLAUS_TEMP_RANGE;
    }

    if (!(ef & BF_FLAG_DT_INVALID) && bf_isfinite(dt_s) && dt_s >= 0.0f) {
        /* Stuck voltage: only readings the filter accepted form a run. */
        if (ef & BF_FLAG_VOLTAGE_INVALID || !bf_isfinite(ekf->ohmic_V)) {
            s->have_anchor = 0u;
            s->run_s = 0.0f;
            s->run_pred_change_V = 0.0f;
        } else if (stuck_step(s, c, dt_s, voltage_V, ekf->ohmic_V, ekf->ohmic_R_ohm)) {
            flags |= BF_PLAUS_VOLTAGE_STUCK;
        }

        /* Unseen current. A clamped SOC absorbs charge the corrections never
         * see, corrections made from a stuck reading are not evidence, and
         * neither are those of a filter that had not converged when it made
         * them (its SOC sigma before this sample's correction, sigma after
         * it combined with the variance the correction removed, at or above
         * converged_sigma_soc: started from a guessed SOC, its corrections
         * take back the guess, which its sigma does not bound): such samples
         * add neither charge nor time. The sigma before the correction, not
         * after: one correction can take sigma from 0.5 to the floor. */
        q_As = ekf->capacity_Ah * SECONDS_PER_HOUR;
        /* The SOC is a share of the capacity at the cell's temperature, and
         * the prediction carries no change of that capacity over: where it
         * changed since the last sample, the same charge is a SOC higher by
         * (1 - z)(1 - q_last/q), z the SOC before this step's correction,
         * which the voltage's corrections then make. That charge,
         * (1 - z)(q - q_last), is expected of them, not unseen (a cell
         * discharged in the cold that warms up). */
        moved_As = 0.0f;
        if (bf_isfinite(q_As) && q_As > 0.0f) {
            if (s->have_q_last) {
                moved_As = (1.0f - (ekf->soc - ekf->soc_correction)) * (q_As - s->capacity_As);
            }
            s->capacity_As = q_As;
            s->have_q_last = 1u;
        }
        if (!(ef & BF_FLAG_SOC_CLAMPED) && !(flags & BF_PLAUS_VOLTAGE_STUCK) && bf_isfinite(q_As)
            && q_As > 0.0f && bf_isfinite(ekf->soc_correction) && bf_isfinite(ekf->soc_sigma)
            && ekf->soc_sigma * ekf->soc_sigma + ekf->soc_correction_var
                   < c->converged_sigma_soc * c->converged_sigma_soc) {
            /* Forgetting by 1 - exp(-dt/tau), not by exp(-dt/tau): with a day's
             * memory at 10 Hz the factor is 0.99999884, within float32's
             * spacing near 1 (6e-8) of its neighbours, so its complement
             * would carry a 3 % error (the float64 reference showed it);
             * for small x, x (1 - x/2) is within a share x^2/6 of it. */
            x = dt_s / c->unseen_tau_s;
            forget = x < 0.01f ? x * (1.0f - 0.5f * x) : 1.0f - bf_expf(-x);
            s->unseen_charge_As -= forget * s->unseen_charge_As + ekf->soc_correction * q_As - moved_As;
            s->window_s += dt_s - forget * s->window_s;
            if (s->have_sigma) {
                s->sigma2_past += forget * (ekf->soc_sigma * ekf->soc_sigma - s->sigma2_past);
            } else {
                s->sigma2_past = ekf->soc_sigma * ekf->soc_sigma;
                s->have_sigma = 1u;
            }
        }
    } else if (dt_s >= 0.0f) {
        /* An interval the filter refused that is a number: beyond its
         * dt_max_s, it restarted here, its SOC from this sample (the new
         * temperature's share): no capacity change to expect across it. */
        s->have_q_last = 0u;
    }

    u = 0.0f;
    sigma_u = plus_inf();
    if (s->window_s > 0.0f && s->have_sigma && s->capacity_As > 0.0f && bf_isfinite(ekf->soc_sigma)) {
        u = s->unseen_charge_As / s->window_s;
        sigma_u = s->capacity_As * bf_sqrtf(ekf->soc_sigma * ekf->soc_sigma + s->sigma2_past) / s->window_s;
        if (bf_isfinite(sigma_u) && bf_isfinite(u)) {
            if (bf_absf(u) - c->offset_tol_A > c->unseen_z * sigma_u) {
                flags |= BF_PLAUS_CURRENT_OFFSET;
            }
            if (u - c->leak_tol_A > c->unseen_z * sigma_u) {
                flags |= BF_PLAUS_SELF_DISCHARGE;
            }
        } else {
            u = 0.0f;
            sigma_u = plus_inf();
        }
    }
    s->flags = flags;
    out->flags = flags;
    out->unseen_current_A = u;
    out->unseen_current_sigma_A = sigma_u;
    out->stuck_for_s = s->have_anchor ? s->run_s : 0.0f;
    out->stuck_pred_change_V = s->have_anchor ? s->run_pred_change_V : 0.0f;
    return BF_OK;
}

bf_status_t bf_plaus_run(bf_soc_ekf_t *ekf, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                         bf_plaus_t *s, const bf_plaus_config_t *c, const float *dt_s,
                         const float *current_A, const float *voltage_V, const float *temp_C, size_t n,
                         float *soc_out, float *sigma_out, uint8_t *ekf_flags_out, uint8_t *flags_out,
                         float *unseen_A_out, float *unseen_sigma_A_out, float *stuck_s_out,
                         float *stuck_change_V_out)
{
    size_t k;
    bf_soc_ekf_out_t eo;
    bf_plaus_out_t po;
    bf_status_t st;
    if (dt_s == 0 || current_A == 0 || voltage_V == 0 || temp_C == 0 || s == 0) {
        return BF_E_NULL;
    }
    /* The tables once per call, as bf_soc_ekf_run (the step does not check them). */
    st = bf_cell_params_check(p);
    if (st == BF_OK) {
        st = bf_soc_ekf_tuning_check(t);
    }
    if (st == BF_OK) {
        st = bf_plaus_config_check(c);
    }
    if (st != BF_OK) {
        return st;
    }
    for (k = 0; k < n; ++k) {
        st = bf_soc_ekf_step(ekf, p, t, dt_s[k], current_A[k], voltage_V[k], temp_C[k], &eo);
        if (st != BF_OK) {
            return st;
        }
        st = bf_plaus_step(s, c, dt_s[k], voltage_V[k], &eo, &po);
        if (st != BF_OK) {
            return st;
        }
        if (soc_out != 0) {
            soc_out[k] = eo.soc;
        }
        if (sigma_out != 0) {
            sigma_out[k] = eo.soc_sigma;
        }
        if (ekf_flags_out != 0) {
            ekf_flags_out[k] = (uint8_t)eo.flags;
        }
        if (flags_out != 0) {
            flags_out[k] = (uint8_t)po.flags;
        }
        if (unseen_A_out != 0) {
            unseen_A_out[k] = po.unseen_current_A;
        }
        if (unseen_sigma_A_out != 0) {
            unseen_sigma_A_out[k] = po.unseen_current_sigma_A;
        }
        if (stuck_s_out != 0) {
            stuck_s_out[k] = po.stuck_for_s;
        }
        if (stuck_change_V_out != 0) {
            stuck_change_V_out[k] = po.stuck_pred_change_V;
        }
    }
    return BF_OK;
}
