/* Total capacity, learned online beside the SOC filter.
 *
 * Method: recursive approximate weighted total least squares (AWTLS, after
 * G. Plett, "Recursive approximate weighted total least squares estimation
 * of battery cell total capacity", J. Power Sources 196 (2011) 2319-2331).
 * Each update is a pair (x, y): x the change of SOC between two moments and
 * y the charge that passed between them, both uncertain (sigma_x from the SOC
 * at either end, sigma_y from the current sensor), with y = Q x. Ordinary
 * least squares would assume x exact and bias Q; total least squares weighs
 * each pair by 1 / (sigma_y^2 + Q^2 sigma_x^2). AWTLS approximates that
 * weight by (1/sigma_y^2 + Q^2/sigma_x^2) / (1 + Q^2)^2 (exact when
 * sigma_x = sigma_y), which makes the cost a ratio of polynomials in Q with
 * six running sums as coefficients:
 *   J(Q) = (c4 Q^4 - 2 c5 Q^3 + (c1 + c6) Q^2 - 2 c2 Q + c3) / (1 + Q^2)^2,
 *   c1 = sum x^2/sy^2, c2 = sum xy/sy^2, c3 = sum y^2/sy^2,
 *   c4 = sum x^2/sx^2, c5 = sum xy/sx^2, c6 = sum y^2/sx^2.
 * dJ/dQ = 0 is the quartic
 *   c5 Q^4 + (2 c4 - c1 - c6) Q^3 + 3 (c2 - c5) Q^2 + (c1 + c6 - 2 c3) Q - c2 = 0,
 * solved between the two one-sided least-squares answers c2/c1 and c6/c5 by
 * bisection; sigma_Q = sqrt(2 / J''(Q)). Charge is kept in units of the
 * rated capacity, so that Q is near 1 and x and y errors are of one size,
 * where the approximation is best. The sums start from one pseudo-pair (x =
 * 1, y = rated capacity) with the prior's uncertainty, and every update first
 * multiplies them by exp(-|x| / memory_cycles): forgetting is per equivalent
 * full cycle, so that many small pairs forget no faster than one large one.
 *
 * Why AWTLS and not a dual or joint EKF: capacity changes over hundreds of
 * cycles while SOC changes in seconds; a joint filter must be tuned so that
 * SOC errors do not leak into capacity, and it learns from every sample
 * including those where SOC is least known. AWTLS learns only from pairs of
 * moments where SOC is known (anchors), with each pair's own uncertainty, at
 * a cost only when a pair closes; between pairs it costs a few additions.
 *
 * Anchors (moments whose SOC is known, and how well):
 *   - full: a rested or tapering cell (|i| <= rest_current_A) whose voltage is
 *     within full_margin_V of OCV(1, T): SOC 1, sigma full_sigma;
 *   - empty: a discharge of at least empty_current_A that stops (the next
 *     sample rests, or the record breaks) at or below empty_V once the
 *     model's instantaneous drop (the filter's ohmic_V: R0 i + Rn i / (1 +
 *     kn |i|)) is taken out, with the SOC filter's SOC at most empty_soc_max
 *     (so that a voltage dip under a heavy pulse, a drive cycle's last
 *     acceleration or a cold cell's resistance, is not taken for the end of
 *     a discharge: the LG HG2 US06 cycles end at SOC 0.06-0.17 with the
 *     voltage below empty_V under their last pulse): SOC 0 at that load, sigma
 *     empty_sigma combined with the charge of the last loaded interval
 *     (the cut-off fell somewhere inside it). The capacity learned from full
 *     and empty anchors is therefore the capacity delivered down to the
 *     cut-off at the load the cell is used with, as a capacity test measures
 *     it;
 *   - rest: a rest of rest_anchor_s or longer: the SOC filter's SOC and
 *     sigma (after a long rest the filter's SOC is the OCV's).
 * Two anchors at least min_dsoc apart close a pair, which is learned if its
 * own capacity (charge / SOC change) is between a quarter and four times
 * the rating: one outside has a wrong anchor in it (no event says so; the
 * anchor's event comes without BF_CAP_UPDATED). An anchor closer than
 * that replaces the open one only if it is better known. An interval longer
 * than gap_s, or an invalid current, breaks the charge count: the open
 * anchor is dropped.
 *
 * No heap, no globals; the caller owns the state. */
#ifndef BMSFIL_CAPACITY_H
#define BMSFIL_CAPACITY_H

#include <stdint.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Events of a step (bitwise OR). */
#define BF_CAP_ANCHOR_FULL 0x01u   /* a full anchor was taken this sample */
#define BF_CAP_ANCHOR_EMPTY 0x02u  /* an empty anchor was taken */
#define BF_CAP_ANCHOR_REST 0x04u   /* a rest anchor was taken */
#define BF_CAP_UPDATED 0x08u       /* a pair closed and the estimate moved */
#define BF_CAP_BROKEN 0x10u        /* the charge count broke (gap or bad current) */

typedef struct {
    float rated_Ah;            /* rated capacity: SOH = Q / rated, and the prior */
    float prior_sigma_rel;     /* 1 sigma of the prior, relative to rated */
    float memory_cycles;       /* forgetting: sums decay by e per this many full cycles, > 0 */
    float rest_current_A;      /* |i| at or below this: at rest (or tapering) */
    float rest_anchor_s;       /* a rest this long gives a rest anchor */
    float full_margin_V;       /* at rest within this below OCV(1, T): full */
    float full_sigma;          /* SOC sigma of a full anchor */
    float empty_V;             /* a discharge stopping at or below this: empty */
    float empty_current_A;     /* ... if it drew at least this */
    float empty_soc_max;       /* ... and the SOC filter agrees: its SOC at most this */
    float empty_sigma;         /* SOC sigma of an empty anchor, before the cut-off interval */
    float min_dsoc;            /* smallest SOC change of a pair */
    float current_sigma_A;     /* random error of one current sample */
    float current_bias_A;      /* bound of the current sensor's offset */
    float gap_s;               /* a longer interval breaks the charge count */
} bf_capacity_tuning_t;

/* The running AWTLS fit, in units of the rated capacity. */
typedef struct {
    float c[6];                /* c1..c6 above */
    float q;                   /* estimate / rated */
    float q_sigma;             /* its 1 sigma / rated */
    uint32_t updates;          /* pairs learned from */
} bf_awtls_t;

typedef struct {
    bf_awtls_t fit;
    uint32_t has_anchor;
    float anchor_soc;
    float anchor_var;
    float charge;              /* since the anchor, / rated, positive on charge */
    float charge_var;          /* its random-error variance, / rated^2 */
    float anchor_age_s;        /* time since the anchor (for the offset term) */
    float rest_s;              /* time at rest so far */
    uint32_t rest_anchored;    /* this rest has given its anchor */
    float last_current_A;      /* previous sample, for the empty anchor */
    float last_voltage_V;      /* without the model's instantaneous drop */
    float last_dt_s;
    float last_soc;            /* the filter's SOC there */
    uint32_t last_valid;
} bf_capacity_t;

typedef struct {
    float capacity_Ah;
    float capacity_sigma_Ah;
    float soh;                 /* capacity / rated */
    uint32_t events;           /* BF_CAP_* */
} bf_capacity_out_t;

bf_status_t bf_capacity_tuning_check(const bf_capacity_tuning_t *t);

bf_status_t bf_capacity_init(bf_capacity_t *s, const bf_capacity_tuning_t *t);

/* Start the fit from a capacity already learned (for example kept across a
 * reset), capacity_Ah with 1 sigma sigma_Ah. */
bf_status_t bf_capacity_init_from(bf_capacity_t *s, const bf_capacity_tuning_t *t, float capacity_Ah,
                                  float sigma_Ah);

/* One sample, after the SOC filter's step for it: dt_s since the previous
 * sample, the measured current, voltage and temperature, and what the filter
 * reported (its SOC and sigma are used for rest anchors; its flags say which
 * inputs were valid). */
bf_status_t bf_capacity_step(bf_capacity_t *s, const bf_cell_params_t *p, const bf_capacity_tuning_t *t,
                             float dt_s, float current_A, float voltage_V, float temp_C,
                             const bf_soc_ekf_out_t *ekf, bf_capacity_out_t *out);

/* The AWTLS fit alone: forget, then learn the pair y = Q x (x a SOC change,
 * y a charge / rated, with variances). For tests and for callers with their
 * own anchors. BF_E_RANGE for a non-finite pair or non-positive variances. */
bf_status_t bf_awtls_update(bf_awtls_t *f, float memory_cycles, float x, float var_x, float y, float var_y);

/* Start the fit at q (/ rated) with 1 sigma q_sigma (/ rated). */
bf_status_t bf_awtls_init(bf_awtls_t *f, float q, float q_sigma);

#ifdef __cplusplus
}
#endif

#endif
