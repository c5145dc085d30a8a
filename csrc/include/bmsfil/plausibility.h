/* Sensor and cell plausibility: a monitor that runs beside the SOC EKF.
 *
 * It reads what each EKF step reports (bf_soc_ekf_out_t) and the raw
 * voltage, never changes the filter, and raises flags, each with the
 * evidence behind it:
 *
 * - Unseen current u = (current the sensor reported) - (current the cell
 *   received), from the charge the filter had to take away or put back to
 *   keep the voltage explained. Over a window of length W (exponential
 *   forgetting with time constant unseen_tau_s) the SOC corrections C sum to
 *   -u W / Q + e(now) - e(past), e the filter's SOC error, so
 *       u_hat = -Q C / W,   sigma_u = Q sqrt(sigma_now^2 + mean sigma_past^2) / W,
 *   with sigma the filter's own SOC sigma: the bound holds as long as the
 *   filter's sigma does, however correlated its errors are in time.
 *   Only samples whose correction the filter made with its SOC sigma below
 *   converged_sigma_soc (sigma before the correction: sqrt(soc_sigma^2 +
 *   soc_correction_var)) add charge, time and sigma: while the filter
 *   converges from a guessed SOC (bf_soc_ekf_init_soc, sigma 0.5 on the
 *   LG HG2 set) its corrections take back the guess's error, which its
 *   sigma does not bound, and would read as an unseen current of
 *   -Q (SOC error) / W. A filter restarted so under a monitor that keeps
 *   its state is waited for the same way; one started from OCV (sigma 0.02)
 *   is counted from its first sample. soc_correction includes the part of
 *   a correction the filter gave SOC when its hysteresis state reached its
 *   bound (soc_ekf.c project_hyst), which soc_correction_var does not
 *   count: where the filter was sure of a wrong SOC (a start under a cold
 *   2C load), that move reads as unseen current too.
 *   CURRENT_OFFSET when |u_hat| - offset_tol_A > z sigma_u (the sensor reads
 *   off by more than its specified tolerance); SELF_DISCHARGE when
 *   u_hat - leak_tol_A > z sigma_u (charge leaves the cell that the sensor
 *   did not see: an internal short, or a sensor reading high; one current
 *   sensor cannot tell these two apart while current flows).
 * - VOLTAGE_STUCK: the reading has stayed within voltage_stuck_tol_V of
 *   the first reading of its run while the model's ohmic drop (R0 i, the
 *   instantaneous response to the current) moved by D from the smallest it
 *   was in the run (a charger or load that holds the voltage at a limit does
 *   so by shrinking the current, which is no evidence; the current growing
 *   again or reversing is); a live sensor would have moved by at least (1 - model_change_rel) D,
 *   so the run is implausible when (1 - rel) D - tol > z sqrt(2) noise. D
 *   is taken one sample late (voltage and current may be sampled up to one
 *   sample apart). At rest the model predicts no change and a constant
 *   reading never flags.
 * - VOLTAGE_RANGE, CURRENT_RANGE, TEMP_RANGE: the EKF refused the sample's
 *   value (non-finite or outside the cell's plausible range), copied here so
 *   that one word carries every sensor verdict.
 *
 * A stuck temperature sensor is not detected: with no measured ambient, a
 * reading frozen under load looks, to the thermal model, like surroundings
 * that cool (measured on the LG HG2 files: docs/plausibility.md, "Stuck
 * temperature").
 *
 * Same rules as the rest of the core: C99, single precision, no heap, no
 * globals, no libm; the caller owns the state (48 bytes) and the config. */
#ifndef BMSFIL_PLAUSIBILITY_H
#define BMSFIL_PLAUSIBILITY_H

#include <stddef.h>
#include <stdint.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Plausibility flags (bitwise OR), held while the evidence holds. */
#define BF_PLAUS_CURRENT_OFFSET 0x01u  /* |unseen current| beyond the sensor's tolerance */
#define BF_PLAUS_SELF_DISCHARGE 0x02u  /* charge lost that the current sensor did not see */
#define BF_PLAUS_VOLTAGE_STUCK 0x04u   /* voltage reading frozen while the model says it moved */
#define BF_PLAUS_VOLTAGE_RANGE 0x08u   /* voltage non-finite or out of range (EKF refused it) */
#define BF_PLAUS_CURRENT_RANGE 0x10u   /* current non-finite or out of range */
#define BF_PLAUS_TEMP_RANGE 0x20u      /* temperature non-finite or out of range */

typedef struct {
    float unseen_tau_s;        /* forgetting time constant of the unseen-current window */
    float offset_tol_A;        /* current-sensor offset tolerated (its specification) */
    float leak_tol_A;          /* self-discharge tolerated (the cell's specification) */
    float unseen_z;            /* one-sided z of the unseen-current alarms */
    float voltage_noise_V;     /* 1-sigma noise of the voltage sensor */
    float voltage_stuck_tol_V; /* readings closer than this count as unchanged (a few LSB) */
    float model_change_rel;    /* largest relative error of a voltage change the model predicts, in [0, 1) */
    float stuck_z;             /* one-sided z of the stuck-voltage alarm */
    float converged_sigma_soc; /* SOC sigma (before the correction) below which corrections count, > 0 */
} bf_plaus_config_t;

/* Per-cell state; the caller owns it. */
typedef struct {
    float unseen_charge_As;    /* forgotten sum of charge reported but not received */
    float window_s;            /* forgotten sum of the intervals that contributed */
    float sigma2_past;         /* forgotten mean of the filter's SOC variance */
    float capacity_As;         /* capacity of the last sample that had one */
    float anchor_V;            /* first reading of the current run of unchanged readings */
    float anchor_current_A;    /* the current of least size in the run (the filter's, as it used it) */
    float lag_current_A;       /* the current one sample ago */
    float run_s;               /* how long the run has lasted */
    float run_pred_change_V;   /* largest growth of the ohmic drop in the run (stuck_step) */
    uint16_t have_anchor;      /* 0 until a valid voltage starts a run */
    uint16_t have_q_last;      /* 0 until capacity_As is the filter's capacity before this sample
                                * (not across a restart of the filter) */
    uint32_t have_sigma;       /* 0 until sigma2_past holds a value */
    uint32_t flags;            /* flags of the last step */
} bf_plaus_t;

/* What one step reports: the flags and the evidence behind them. */
typedef struct {
    uint32_t flags;
    float unseen_current_A;       /* u_hat, + when the sensor reports more charge than the cell got */
    float unseen_current_sigma_A; /* its 1 sigma (+inf until a window exists) */
    float stuck_for_s;            /* how long the voltage reading has not changed */
    float stuck_pred_change_V;    /* how far the model's ohmic drop moved meanwhile */
} bf_plaus_out_t;

bf_status_t bf_plaus_config_check(const bf_plaus_config_t *c);

bf_status_t bf_plaus_init(bf_plaus_t *s, const bf_plaus_config_t *c);

/* One sample, after bf_soc_ekf_step returned ekf for it: dt_s and
 * voltage_V as given to the filter. `c` must be the config the state was
 * initialised with (bf_plaus_init checked it; the step does not again). */
bf_status_t bf_plaus_step(bf_plaus_t *s, const bf_plaus_config_t *c, float dt_s, float voltage_V,
                          const bf_soc_ekf_out_t *ekf, bf_plaus_out_t *out);

/* n samples through the EKF and the monitor together (both states continue
 * from where they are). Every output array may be NULL. Stops at the first
 * error status and returns it. */
bf_status_t bf_plaus_run(bf_soc_ekf_t *ekf, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                         bf_plaus_t *s, const bf_plaus_config_t *c, const float *dt_s,
                         const float *current_A, const float *voltage_V, const float *temp_C, size_t n,
                         float *soc_out, float *sigma_out, uint8_t *ekf_flags_out, uint8_t *flags_out,
                         float *unseen_A_out, float *unseen_sigma_A_out, float *stuck_s_out,
                         float *stuck_change_V_out);

#ifdef __cplusplus
}
#endif

#endif
