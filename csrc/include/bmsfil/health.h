/* One cell's estimators stepped together: the SOC filter (soc_ekf.h), the
 * capacity fit (capacity.h) and the R0 tracker (resistance.h).
 *
 * It adds what none of them does alone: an interval longer than the
 * capacity tuning's gap_s is time the estimator did not see (a logger or a BMS asleep, or a charge that was not recorded).
 * The filter is then not stepped across it but restarted
 * (bf_soc_ekf_restart, with the capacity tuning's rest_current_A): from that
 * sample's voltage if the cell rests, otherwise from its SOC with the
 * variance p0_soc; the capacity fit drops its open anchor. The filter's own SOC, sigma and flags are reported as
 * they are; the capacity fit does not feed back into the filter.
 *
 * No heap, no globals; the caller owns the state. */
#ifndef BMSFIL_HEALTH_H
#define BMSFIL_HEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "bmsfil/capacity.h"
#include "bmsfil/resistance.h"
#include "bmsfil/soc_ekf.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BF_HEALTH_GAP 0x01u       /* this sample followed a gap */
#define BF_HEALTH_RESTARTED 0x02u /* ... and the filter restarted from its voltage */

typedef struct {
    bf_soc_ekf_t ekf;
    bf_capacity_t capacity;
    bf_r0_t r0;
} bf_health_t;

typedef struct {
    bf_soc_ekf_out_t ekf;
    bf_capacity_out_t capacity;
    bf_r0_out_t r0;
    uint32_t events;          /* BF_HEALTH_* */
} bf_health_out_t;

/* Start the SOC filter from the first sample as bf_soc_ekf_start does (under
 * load an unknown start at the SOC its voltage reads), from soc where the
 * sample has no voltage the cell can have or no temperature. */
bf_status_t bf_health_init(bf_health_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *ft,
                           const bf_capacity_tuning_t *ct, const bf_r0_tuning_t *rt, float soc,
                           float current_A, float voltage_V, float temp_C);

/* One sample. The three tunings are checked first: a step that fails leaves
 * the state as it was. p must be the one init checked (not checked again). */
bf_status_t bf_health_step(bf_health_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *ft,
                           const bf_capacity_tuning_t *ct, const bf_r0_tuning_t *rt, float dt_s,
                           float current_A, float voltage_V, float temp_C, bf_health_out_t *out);

/* n samples; every output array may be NULL. Stops at the first error. */
bf_status_t bf_health_run(bf_health_t *s, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *ft,
                          const bf_capacity_tuning_t *ct, const bf_r0_tuning_t *rt, const float *dt_s,
                          const float *current_A, const float *voltage_V, const float *temp_C, size_t n,
                          float *soc, float *soc_sigma, float *capacity_Ah, float *capacity_sigma_Ah,
                          float *r0_ohm, float *r0_sigma_ohm, float *r0_growth, uint8_t *events);

#ifdef __cplusplus
}
#endif

#endif
