/* State-of-charge extended Kalman filter on the cell model of cell_model.h.
 *
 * State x = [SOC, i_R1, i_R2, h]: SOC, the currents through the two RC
 * resistors, and the dynamic hysteresis state. Covariance update in Joseph
 * form with symmetrisation and diagonal floors; innovations beyond the gate
 * have their measurement variance inflated so that one bad sample cannot
 * throw the state (a robust, Huber-like update rather than a rejection, which
 * could lock out a filter that started far off).
 *
 * The model's voltage error grows with the overpotential it predicts (the
 * resistances are least certain under load and in the cold), so the
 * measurement variance has a term proportional to the squared overpotential:
 * the filter listens to the voltage most when the cell is near rest.
 *
 * Time is data: every step takes the interval since the previous sample.
 * Process noise is given per second and measurement noise as variance times
 * seconds, so the same tuning serves 0.1 s and 10 s sampling.
 *
 * Bad samples never poison the state: a non-finite or implausible voltage
 * skips the correction, a bad current is replaced by the last good one, a
 * bad temperature by the last good one; each is reported in the step's
 * flags. SOC stays in [0, 1], never NaN.
 *
 * An interval that is not known (NaN, negative: a corrupted timestamp) skips
 * the sample, the state kept. An interval of 0 (a second reading at the same
 * instant) predicts nothing and corrects with the measurement variance of
 * r_dt_min_s, as another reading would: a reading repeated many times pulls
 * the state as many readings would. An interval longer than
 * dt_max_s (a logger or a BMS asleep, a charge that was not recorded, a
 * frame that could not carry the gap) is time the filter did not see, in
 * which the cell may have been charged or discharged by any amount: the
 * filter does not keep its old state as if nothing happened but starts again
 * at that sample (bf_soc_ekf_restart), from its voltage if the cell rests,
 * else from its old SOC with the variance of an unknown start. Both are
 * flagged BF_FLAG_DT_INVALID. */
#ifndef BMSFIL_SOC_EKF_H
#define BMSFIL_SOC_EKF_H

#include <stddef.h>
#include <stdint.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BF_SOC_EKF_NX 4

/* Per-sample flags (bitwise OR). */
#define BF_FLAG_VOLTAGE_INVALID 0x01u  /* no correction this sample */
#define BF_FLAG_CURRENT_INVALID 0x02u  /* predicted with the last good current */
#define BF_FLAG_TEMP_INVALID 0x04u     /* used the last good temperature */
#define BF_FLAG_DT_INVALID 0x08u       /* interval refused: sample skipped, or the
                                        * filter restarted after a long one */
#define BF_FLAG_GATED 0x10u            /* innovation beyond the gate, down-weighted */
#define BF_FLAG_SOC_CLAMPED 0x20u      /* the update pushed SOC out of [0, 1] */
#define BF_FLAG_COV_REPAIRED 0x40u     /* a covariance floor or bound was applied */
/* (0x80 is taken: the CAN contract's "restored" shares this byte.) */

/* |current| at or below this many C (of the capacity at the present
 * temperature) is a rest for a restart after a refused interval. */
#define BF_SOC_EKF_REST_C_RATE 0.02f
/* A first sample whose |current| exceeds this many C is under load: its
 * voltage is not its OCV (bf_soc_ekf_start). C here is the capacity at the
 * coldest temperature of the tables, per hour: a threshold, not a count.
 * C/4, not lower: a current sensor's offset (0.5 A on a 2.5 Ah cell reads a
 * resting cell as 0.45 A) must not turn every start into an unknown one,
 * which the plausibility monitor waits out before it weighs any evidence
 * (a 0.5 A offset at -20 °C was then never flagged). */
#define BF_SOC_EKF_LOADED_C_RATE 0.25f

typedef struct {
    float q_soc_per_s;        /* SOC random-walk variance per second */
    float q_irc_A2_per_s;     /* RC-current variance per second */
    float q_hyst_per_s;       /* hysteresis-state variance per second */
    float r_voltage_V2_s;     /* voltage variance x seconds: R = (r + k*eta^2) / dt */
    float r_overpotential_rel2_s; /* k: relative variance x seconds of the model's
                                 * overpotential eta = R0 i + R1 i_R1 + R2 i_R2 */
    float r_dt_min_s;         /* dt floor in R = r / dt */
    float p0_soc;             /* initial SOC variance (from a given SOC) */
    float p0_soc_ocv;         /* initial SOC variance when started from OCV */
    float p0_irc_A2;
    float p0_hyst;
    float p_floor_soc;        /* diagonal floors */
    float p_floor_irc_A2;
    float p_floor_hyst;
    float gate_sigma;         /* innovations beyond this many sigma are down-weighted */
    float hyst_current_A;     /* |i| above which the instantaneous sign s follows i */
    float dt_max_s;           /* intervals longer than this are refused */
    float hold_sigma_c_rate;  /* 1 sigma, in C, of an interval's mean current about the
                               * sample that ends it: the current is sampled, not
                               * integrated, so each step adds (this * dt / 3600 s)^2
                               * to the SOC variance; 0 switches it off */
} bf_soc_ekf_tuning_t;

/* The whole per-cell state; the caller owns it (92 bytes). A step that
 * fails leaves it unchanged. */
typedef struct {
    float x[BF_SOC_EKF_NX];
    float P[BF_SOC_EKF_NX][BF_SOC_EKF_NX];
    float last_current_A;
    float last_temp_C;
    float hyst_sign;          /* instantaneous hysteresis sign s in {-1, 0, 1} */
} bf_soc_ekf_t;

/* What one step reports besides the state. */
typedef struct {
    float soc;
    float soc_sigma;          /* 1 sigma of SOC */
    float voltage_pred_V;     /* model voltage before the correction */
    uint32_t flags;
    /* What the correction did, for monitors beside the filter (plausibility.h);
     * they do not feed back into the state. All 0 when no correction was
     * made (voltage invalid, interval skipped). */
    float soc_correction;     /* SOC after the correction minus SOC after the prediction */
    float soc_correction_var; /* variance of that correction if the model holds: K0^2 S */
    float innovation_V;       /* measured minus predicted voltage */
    float innovation_var_V2;  /* its predicted variance H P H' + R, before any gate inflation */
    float capacity_Ah;        /* capacity the prediction used (0 if the sample was skipped) */
    float ohmic_V;            /* the instantaneous part of the predicted overpotential,
                               * R0 i + Rn i / (1 + kn |i|) (0 if the sample was skipped) */
    float ohmic_R_ohm;        /* its resistance at this current, R0 + Rn / (1 + kn |i|), > 0
                               * (0 if the sample was skipped): ohmic_V / ohmic_R_ohm is the
                               * current the step used */
} bf_soc_ekf_out_t;

/* The smallest gate_sigma the tuning check takes: the gate divides by its
 * square, which a smaller one takes towards 0 and every covariance to NaN. */
#define BF_GATE_SIGMA_MIN 1e-3f

bf_status_t bf_soc_ekf_tuning_check(const bf_soc_ekf_tuning_t *t);

/* Start from a known SOC (clamped to [0, 1]) at temperature temp_C. */
bf_status_t bf_soc_ekf_init_soc(bf_soc_ekf_t *s, const bf_cell_params_t *p,
                                const bf_soc_ekf_tuning_t *t, float soc, float temp_C);

/* Start from the voltage of a rested cell: SOC = OCV^-1(voltage_V, temp_C).
 * A voltage the step would refuse (NaN, or outside [v_min_V - 0.5,
 * v_max_V + 0.5]) or a non-finite temperature is BF_E_RANGE, the state
 * unchanged: wait for a reading to start from. */
bf_status_t bf_soc_ekf_init_ocv(bf_soc_ekf_t *s, const bf_cell_params_t *p,
                                const bf_soc_ekf_tuning_t *t, float voltage_V, float temp_C);

/* Start from a first sample: from its voltage as bf_soc_ekf_init_ocv does
 * (same BF_E_RANGE), with that start's variance p0_soc_ocv if the cell rests
 * (|current_A| at most BF_SOC_EKF_LOADED_C_RATE C), else
 * (under load, or no current reading) at the SOC that voltage reads with the
 * variance of an unknown start, p0_soc: a loaded voltage is off the OCV by
 * the overpotential, tenths of a volt in the cold, which a start from a
 * rested cell's variance would hold against every later correction. */
bf_status_t bf_soc_ekf_start(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                             float current_A, float voltage_V, float temp_C);

/* Start again after time the filter did not see, at a sample with these
 * measurements. If the cell rests there (|current_A| <= rest_current_A and a
 * plausible voltage), from that voltage as bf_soc_ekf_init_ocv does, and
 * *from_voltage is set to 1; otherwise from the SOC the filter had, with the
 * variance p0_soc of an unknown start, and *from_voltage is 0. The RC
 * currents and the hysteresis start again either way (time has passed). An
 * invalid temperature is replaced by the last good one. from_voltage may be
 * NULL. A NaN or negative rest_current_A is BF_E_RANGE. */
bf_status_t bf_soc_ekf_restart(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                               float rest_current_A, float current_A, float voltage_V, float temp_C,
                               int *from_voltage);

/* One sample: dt_s since the previous sample, then current, terminal voltage
 * and temperature measured at the end of that interval. p and t must be the
 * ones an init checked and the caller keeps unchanged: the step does not check
 * them again on every sample (the instructions it would cost); only a restart
 * after a long interval does. */
bf_status_t bf_soc_ekf_step(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                            float dt_s, float current_A, float voltage_V, float temp_C,
                            bf_soc_ekf_out_t *out);

/* n samples in one call; soc_out, sigma_out and flags_out may each be NULL.
 * Stops at the first error status and returns it. */
bf_status_t bf_soc_ekf_run(bf_soc_ekf_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *t,
                           const float *dt_s, const float *current_A, const float *voltage_V,
                           const float *temp_C, size_t n, float *soc_out, float *sigma_out,
                           uint8_t *flags_out);

#ifdef __cplusplus
}
#endif

#endif
