/* Ohmic resistance R0, tracked online from current steps.
 *
 * Method: recursive least squares with forgetting on the voltage change
 * across a current step, dV = R0 dI. Between two samples dt_s apart, the
 * terminal voltage moves by R0 dI plus what the RC pairs, the OCV and the
 * hysteresis do in dt_s; for a large step in a short interval the first term
 * dominates, so only steps with |dI| >= step_min_A and dt_s <= step_max_s
 * are used, and only at a SOC of soc_min or more (near empty the voltage
 * response to a step is dominated by diffusion, not by R0). With samples several seconds apart the estimate includes the
 * part of the fastest RC pair that relaxes within the interval: it is then
 * the resistance seen at that sampling, and still follows R0's trend.
 *
 * Each step is one scalar update of a Kalman filter on R0 with random-walk
 * process noise: the variance grows by the fraction 1/forget_steps of itself
 * per update (exponential forgetting), the measurement variance is
 * 2 voltage_sigma_V^2 (two voltage samples). Reported with its 1 sigma and
 * its ratio to the parameter set's R0 at the step's SOC and temperature
 * (resistance growth), when the parameter set has an R0 there.
 *
 * No heap, no globals; the caller owns the state. */
#ifndef BMSFIL_RESISTANCE_H
#define BMSFIL_RESISTANCE_H

#include <stdint.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BF_R0_UPDATED 0x01u   /* a step updated the estimate this sample */

typedef struct {
    float step_min_A;         /* smallest |dI| used, > 0 */
    float step_max_s;         /* longest interval used, > 0 */
    float forget_steps;       /* memory in steps, >= 1 */
    float soc_min;            /* steps at a lower SOC are not used, in [0, 1) */
    float voltage_sigma_V;    /* random error of one voltage sample, > 0 */
    float r0_init_ohm;        /* start value, >= 0 */
    float r0_init_sigma_ohm;  /* its 1 sigma, > 0 */
} bf_r0_tuning_t;

typedef struct {
    float r0_ohm;
    float var_ohm2;
    float growth;             /* r0 / table R0 at the last step (0: unknown) */
    uint32_t updates;
    float last_current_A;
    float last_voltage_V;
    uint32_t last_valid;
} bf_r0_t;

typedef struct {
    float r0_ohm;
    float r0_sigma_ohm;
    float growth;             /* 0 while unknown */
    uint32_t events;          /* BF_R0_* */
} bf_r0_out_t;

bf_status_t bf_r0_tuning_check(const bf_r0_tuning_t *t);

bf_status_t bf_r0_init(bf_r0_t *s, const bf_r0_tuning_t *t);

/* One sample: the interval since the previous one, the measured current,
 * voltage and temperature, and the SOC to look the table up at. A sample the
 * SOC filter would refuse (a non-finite value, a current beyond i_max_A, a
 * voltage or temperature outside the plausible ranges of cell_model.h) ends
 * the step in progress without an update. */
bf_status_t bf_r0_step(bf_r0_t *s, const bf_cell_params_t *p, const bf_r0_tuning_t *t, float dt_s,
                       float current_A, float voltage_V, float temp_C, float soc, bf_r0_out_t *out);

#ifdef __cplusplus
}
#endif

#endif
