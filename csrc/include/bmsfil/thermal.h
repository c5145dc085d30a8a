/* Core temperature: a virtual sensor from the surface temperature and the
 * heat the cell makes.
 *
 * Model: the two-state lumped thermal model of a cylindrical cell (X. Lin,
 * H. E. Perez, J. B. Siegel, A. G. Stefanopoulou et al., "Online
 * parameterization of lumped thermal dynamics in cylindrical lithium ion
 * batteries for core temperature estimation and health monitoring", IEEE
 * Trans. Control Syst. Technol. 21 (2013) 1745-1755):
 *   Cc dTc/dt = Q + (Ts - Tc) / Rc
 *   Cs dTs/dt = (Ta - Ts) / Ru - (Ts - Tc) / Rc
 * Tc the core and Ts the surface temperature, Ta the ambient; Cc and Cs
 * heat capacities (J/K), Rc the conduction resistance from core to surface
 * and Ru the convection resistance from surface to ambient (K/W).
 *
 * Heat: Q = i (v - OCV(SOC, T)) (bf_thermal_heat_W), the irreversible term
 * of Bernardi's energy balance; the reversible (entropic) term i T dOCV/dT
 * is left out (no parameter set carries dOCV/dT, and it averages out over
 * charge-sustaining driving). Why this and not i^2 R0: the measured voltage
 * holds every overpotential the cell has (ohmic, both polarisations, the
 * rise of resistance in the cold and near empty, hysteresis) whether or not
 * the cell model has them right; only the OCV comes from the model, at the
 * SOC filter's SOC. A 1 % SOC error is 5-10 mV of OCV, 0.1 W at 10 A,
 * against 2-3 W of heat. Q >= 0 on charge and discharge (current positive on
 * charge), up to noise.
 *
 * Discretisation: exact for inputs held over the interval (zero-order hold,
 * the inputs of the sample that ends it, as the SOC filter holds its
 * current): x(t + dt) = x_ss + e^{A dt} (x(t) - x_ss), x_ss the steady state
 * of the held inputs (Ts_ss = Ta + Ru Q, Tc_ss = Ts_ss + Rc Q) and e^{A dt}
 * in closed form from the two real eigenvalues of the 2x2 system (bf_expf
 * only; no series truncation, no sub-steps), valid for any dt.
 *
 * Filter: a linear Kalman filter on x = [Tc, Ts], measuring Ts. Process
 * noise: the heat's error as white noise of spectral density
 * q_heat_W2_s + q_heat_rel2_s Q^2 (W^2 s) entering the core through 1/Cc, and
 * a random walk of the surface (ambient drift, contact, what the model
 * misses). The covariance update is in Joseph form, symmetrised, with floors
 * and a ceiling. An innovation beyond the gate is down-weighted by inflating
 * the measurement variance so that it sits on the gate (as the SOC
 * filter's); one beyond it on the same side as the reading before is first
 * taken, at a rate (BF_THERMAL_GATE_TAU_S), as a change of the surroundings
 * that moves core, surface and ambient alike (the filter keeps how far the
 * ambient has moved from the one given).
 * What the filter knows about the core comes from the model: the surface
 * reading pins Ts and, through the correlation the model builds,
 * moves Tc with it; Tc - Ts is the model's answer to the heat history.
 *
 * Time is data: every step takes the interval since the previous sample.
 * Bad samples never poison the state: a non-finite or implausible surface
 * reading skips the correction, a bad heat or ambient is replaced by the last
 * good one, a bad interval skips the sample; each is flagged. Temperatures
 * stay finite and inside [temp_min_C, temp_max_C].
 *
 * The thermal parameters sit beside bf_cell_params_t, not in it (firmware and
 * MicroPython rely on its layout). Same rules as the rest of the core: C99,
 * single precision, no heap, no globals, no libm; the caller owns the state
 * (40 bytes), the parameters and the tuning. */
#ifndef BMSFIL_THERMAL_H
#define BMSFIL_THERMAL_H

#include <stddef.h>
#include <stdint.h>

#include "bmsfil/cell_model.h"
#include "bmsfil/soc_ekf.h"
#include "bmsfil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Accepted range of each thermal parameter: outside it the arithmetic of a
 * step loses single precision (or the value is not a cell's). */
#define BF_THERMAL_MIN_J_PER_K 1e-2f
#define BF_THERMAL_MAX_J_PER_K 1e6f
#define BF_THERMAL_MIN_K_PER_W 1e-3f
#define BF_THERMAL_MAX_K_PER_W 1e4f

/* Surface readings beyond the gate on the same side twice in a row are
 * taken, at this rate, as a change of the surroundings the model did not see
 * (bf_thermal_step): a disagreement that persists is followed, and the
 * ambient moved with it, within about this many seconds. */
#define BF_THERMAL_GATE_TAU_S 60.0f

/* Per-sample flags (bitwise OR). */
#define BF_THERMAL_SURFACE_INVALID 0x01u  /* no correction this sample */
#define BF_THERMAL_HEAT_INVALID 0x02u     /* predicted with the last good heat */
#define BF_THERMAL_AMBIENT_INVALID 0x04u  /* used the last good ambient */
#define BF_THERMAL_DT_INVALID 0x08u       /* sample skipped; after an interval over dt_max_s the
                                           * filter restarted from its readings (bf_thermal_init) */
#define BF_THERMAL_GATED 0x10u            /* innovation beyond the gate, down-weighted */
#define BF_THERMAL_CLAMPED 0x20u          /* a temperature was brought back into range */
#define BF_THERMAL_COV_REPAIRED 0x40u     /* a covariance floor or ceiling was applied */

/* The cell's thermal model (Lin et al. 2013). */
typedef struct {
    float cc_J_per_K;          /* heat capacity of the core */
    float cs_J_per_K;          /* heat capacity of the surface (can, outer layers) */
    float rc_K_per_W;          /* conduction, core to surface */
    float ru_K_per_W;          /* convection, surface to ambient */
} bf_thermal_params_t;

typedef struct {
    float q_heat_W2_s;         /* heat error spectral density, absolute part, W^2 s */
    float q_heat_rel2_s;       /* ... relative part: adds q_heat_rel2_s Q^2 */
    float q_surface_K2_per_s;  /* random walk of the surface temperature */
    float r_surface_K2;        /* variance of one surface reading */
    float p0_core_K2;          /* initial variances */
    float p0_surface_K2;
    float p_floor_K2;          /* floor of both variances */
    float p_max_K2;            /* ceiling of both variances */
    float gate_sigma;          /* innovations beyond this many sigma are down-weighted */
    float heat_max_W;          /* |Q| above this is not plausible */
    float temp_min_C;          /* plausible temperatures (readings, ambient, state) */
    float temp_max_C;
    float dt_max_s;            /* intervals longer than this are refused */
} bf_thermal_tuning_t;

/* Per-cell state; the caller owns it. A step that fails leaves it unchanged. */
typedef struct {
    float x[2];                /* [Tc, Ts], °C */
    float P[2][2];
    float last_heat_W;
    float last_ambient_C;
    float ambient_shift_C;     /* how far the surroundings have moved from the given ambient
                                * (learnt from gated readings, bf_thermal_step; 0 at a start) */
    float gated_side;          /* +1 or -1: the last reading was beyond the gate, above or
                                * below; 0: it was inside */
} bf_thermal_t;

typedef struct {
    float core_C;
    float core_sigma_C;        /* 1 sigma of the core temperature */
    float surface_C;           /* the filter's surface temperature */
    float surface_sigma_C;
    float heat_W;              /* heat the prediction used */
    float innovation_C;        /* measured minus predicted surface (0 without a correction) */
    uint32_t flags;            /* BF_THERMAL_* */
} bf_thermal_out_t;

/* The discrete model of one interval: x' = ss + Ad (x - ss). */
typedef struct {
    float Ad[2][2];
    float ss[2];               /* steady state [Tc, Ts] of the held inputs */
} bf_thermal_disc_t;

bf_status_t bf_thermal_params_check(const bf_thermal_params_t *tp);

bf_status_t bf_thermal_tuning_check(const bf_thermal_tuning_t *t);

/* The exact discrete model for an interval dt_s > 0 with heat_W and
 * ambient_C held over it (for tests and callers that simulate). */
bf_status_t bf_thermal_discretise(const bf_thermal_params_t *tp, float dt_s, float heat_W, float ambient_C,
                                  bf_thermal_disc_t *d);

/* Irreversible heat i (v - OCV(soc, temp_C)) in W, from the cell model's
 * OCV; NaN when an input is not finite (a step then keeps its last heat). */
float bf_thermal_heat_W(const bf_cell_params_t *p, float soc, float temp_C, float current_A, float voltage_V);

/* Start with core and surface at surface_C (a rested cell is uniform); the
 * ambient at ambient_C. A surface reading that is not plausible starts both
 * at the ambient; BF_E_RANGE if neither is plausible. */
bf_status_t bf_thermal_init(bf_thermal_t *s, const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t,
                            float surface_C, float ambient_C);

/* One sample: dt_s since the previous one, the heat over it, the surface
 * reading at its end and the ambient (NaN: the last good one). tp and t
 * must be the model and tuning bf_thermal_init checked: the step does not
 * check them again (on a Cortex-M4F that was a fifth of its work). */
bf_status_t bf_thermal_step(bf_thermal_t *s, const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t,
                            float dt_s, float heat_W, float surface_C, float ambient_C, bf_thermal_out_t *out);

/* n samples of given heat; ambient_C may be NULL (the last good ambient
 * throughout); every output array may be NULL. Stops at the first error. */
bf_status_t bf_thermal_run_heat(bf_thermal_t *s, const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t,
                                const float *dt_s, const float *heat_W, const float *surface_C,
                                const float *ambient_C, size_t n, float *core_C, float *core_sigma_C,
                                float *surface_est_C, uint8_t *flags);

/* n samples through the SOC filter and the thermal filter together (both
 * continue from where they are): the SOC filter takes the surface reading as
 * its temperature; the heat is bf_thermal_heat_W at the filter's SOC and
 * temperature, and invalid (the last good heat kept) when the filter refused
 * the sample's current or voltage. ambient_C may be NULL; every output array
 * may be NULL. Stops at the first error. */
bf_status_t bf_thermal_run(bf_soc_ekf_t *ekf, const bf_cell_params_t *p, const bf_soc_ekf_tuning_t *ft,
                           bf_thermal_t *s, const bf_thermal_params_t *tp, const bf_thermal_tuning_t *t,
                           const float *dt_s, const float *current_A, const float *voltage_V,
                           const float *surface_C, const float *ambient_C, size_t n, float *soc,
                           float *core_C, float *core_sigma_C, float *surface_est_C, float *heat_W,
                           uint8_t *flags);

#ifdef __cplusplus
}
#endif

#endif
