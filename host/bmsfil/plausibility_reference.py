"""The float64 reference of the plausibility monitor.

Written for reading, line for line against csrc/src/plausibility.c, as
reference.py is for the SOC EKF: it reads the same step report
(`StepResult`: flags, SOC sigma, the voltage correction and its variance,
the capacity and the ohmic drop) and keeps the same state, in float64. The
C monitor is tested against it on random step reports and on recordings
(tests/test_plausibility_reference.py). docs/plausibility.md has the
statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bmsfil.core import StepResult
from bmsfil.plausibility import PlausibilityConfig
from bmsfil.reference import FLAG_CURRENT_INVALID, FLAG_DT_INVALID, FLAG_SOC_CLAMPED, FLAG_TEMP_INVALID, \
    FLAG_VOLTAGE_INVALID

CURRENT_OFFSET, SELF_DISCHARGE, VOLTAGE_STUCK = 0x01, 0x02, 0x04
VOLTAGE_RANGE, CURRENT_RANGE, TEMP_RANGE = 0x08, 0x10, 0x20


@dataclass(frozen=True)
class MonitorStep:
    """What `bf_plaus_out_t` holds after a step."""

    flags: int
    unseen_current_A: float
    unseen_current_sigma_A: float
    stuck_for_s: float
    stuck_pred_change_V: float


class ReferencePlausibilityMonitor:
    """`bf_plaus_t` and `bf_plaus_step` in float64."""

    def __init__(self, config: PlausibilityConfig | None = None) -> None:
        self.config = config or PlausibilityConfig()
        self.unseen_charge_As = 0.0
        self.window_s = 0.0
        self.sigma2_past: float | None = None  # None until a sample counted (have_sigma)
        self.capacity_As = 0.0
        self.have_q_last = False  # capacity_As is the filter's capacity before this sample (not across a restart)
        self.anchor_V: float | None = None  # None until a valid voltage starts a run (have_anchor)
        self.anchor_current_A = 0.0
        self.lag_current_A = 0.0
        self.run_s = 0.0
        self.run_pred_change_V = 0.0

    def _stuck(self, dt_s: float, voltage_V: float, ohmic_V: float, ohmic_R_ohm: float) -> bool:
        c = self.config
        current_A = ohmic_V / ohmic_R_ohm if ohmic_R_ohm > 0.0 else 0.0  # the currents, not two temperatures' drops
        if self.anchor_V is None or abs(voltage_V - self.anchor_V) > c.voltage_stuck_tol_V:
            self.anchor_V, self.anchor_current_A, self.lag_current_A = voltage_V, current_A, current_A
            self.run_s = self.run_pred_change_V = 0.0
            return False
        self.run_s += dt_s
        if abs(self.lag_current_A) < abs(self.anchor_current_A):
            self.anchor_current_A = self.lag_current_A
        change = ohmic_R_ohm * abs(self.lag_current_A - self.anchor_current_A)
        self.lag_current_A = current_A
        self.run_pred_change_V = max(self.run_pred_change_V, change)
        live_min = (1.0 - c.model_change_rel) * self.run_pred_change_V
        return live_min > c.voltage_stuck_tol_V + c.stuck_z * math.sqrt(2.0) * c.voltage_noise_V

    def step(self, ekf: StepResult, dt_s: float, voltage_V: float) -> MonitorStep:
        """Judge the filter's step `ekf` (made with this dt and voltage)."""
        c, ef, flags = self.config, ekf.flags, 0
        if ef & FLAG_VOLTAGE_INVALID:
            flags |= VOLTAGE_RANGE
        if ef & FLAG_CURRENT_INVALID:
            flags |= CURRENT_RANGE
        if ef & FLAG_TEMP_INVALID:
            flags |= TEMP_RANGE
        if not ef & FLAG_DT_INVALID and math.isfinite(dt_s) and dt_s >= 0.0:
            if ef & FLAG_VOLTAGE_INVALID or not math.isfinite(ekf.ohmic_V):
                self.anchor_V = None
                self.run_s = self.run_pred_change_V = 0.0
            elif self._stuck(dt_s, voltage_V, ekf.ohmic_V, ekf.ohmic_R_ohm):
                flags |= VOLTAGE_STUCK
            q_As = ekf.capacity_Ah * 3600.0
            moved_As = 0.0  # charge the capacity's change with temperature moves into SOC (plausibility.c)
            if math.isfinite(q_As) and q_As > 0.0:
                if self.have_q_last:
                    moved_As = (1.0 - (ekf.soc - ekf.soc_correction)) * (q_As - self.capacity_As)
                self.capacity_As = q_As
                self.have_q_last = True
            if (not ef & FLAG_SOC_CLAMPED and not flags & VOLTAGE_STUCK and math.isfinite(q_As) and q_As > 0.0
                    and math.isfinite(ekf.soc_correction) and math.isfinite(ekf.soc_sigma)
                    and ekf.soc_sigma**2 + ekf.soc_correction_var < c.converged_sigma_soc**2):
                forget = -math.expm1(-dt_s / c.unseen_tau_s)  # 1 - exp(-dt/tau)
                self.unseen_charge_As -= forget * self.unseen_charge_As + ekf.soc_correction * q_As - moved_As
                self.window_s += dt_s - forget * self.window_s
                self.sigma2_past = (ekf.soc_sigma**2 if self.sigma2_past is None
                                    else self.sigma2_past + forget * (ekf.soc_sigma**2 - self.sigma2_past))
        elif dt_s >= 0.0:  # beyond dt_max_s: the filter restarted here (plausibility.c)
            self.have_q_last = False
        u, sigma_u = 0.0, math.inf
        if (self.window_s > 0.0 and self.sigma2_past is not None and self.capacity_As > 0.0
                and math.isfinite(ekf.soc_sigma)):
            u = self.unseen_charge_As / self.window_s
            sigma_u = self.capacity_As * math.sqrt(ekf.soc_sigma**2 + self.sigma2_past) / self.window_s
            if math.isfinite(sigma_u) and math.isfinite(u):
                if abs(u) - c.offset_tol_A > c.unseen_z * sigma_u:
                    flags |= CURRENT_OFFSET
                if u - c.leak_tol_A > c.unseen_z * sigma_u:
                    flags |= SELF_DISCHARGE
            else:
                u, sigma_u = 0.0, math.inf
        running = self.anchor_V is not None
        return MonitorStep(flags, u, sigma_u, self.run_s if running else 0.0,
                           self.run_pred_change_V if running else 0.0)
