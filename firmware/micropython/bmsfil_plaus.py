"""The bmsfil plausibility monitor in pure MicroPython (also runs on CPython).

A port of csrc/src/plausibility.c, line for line, in plain float
arithmetic, as bmsfil_ekf.py ports the SOC EKF: it reads what each
`bmsfil_ekf.SocEkf.step` reports (`SocEkf.out`: flags, SOC sigma, the SOC
correction, the capacity, the model's ohmic drop of the step and the
variance the correction removed) and the
raw voltage, never changes the filter, and raises the same flags with the
same evidence (see csrc/include/bmsfil/plausibility.h and
docs/plausibility.md): CURRENT_OFFSET and SELF_DISCHARGE from the unseen
current, VOLTAGE_STUCK from a frozen reading while the model's ohmic drop
moved, and the range flags copied from the filter's.

`CONFIG` is the monitor's settings in the order of bf_plaus_config_t: the
defaults of the host's `bmsfil.plausibility.PlausibilityConfig` (the
z-values are its `z_for(1e-5)` and `z_for(1e-6)`, written out: MicroPython
has no inverse normal CDF). bmsfil_native packs the same numbers for the C
monitor.
"""

import math

CURRENT_OFFSET = 0x01
SELF_DISCHARGE = 0x02
VOLTAGE_STUCK = 0x04
VOLTAGE_RANGE = 0x08
CURRENT_RANGE = 0x10
TEMP_RANGE = 0x20

# The filter's flags (bmsfil_ekf.FLAG_*), as bf_plaus_step reads them.
_EKF_VOLTAGE_INVALID = 0x01
_EKF_CURRENT_INVALID = 0x02
_EKF_TEMP_INVALID = 0x04
_EKF_DT_INVALID = 0x08
_EKF_SOC_CLAMPED = 0x20

SECONDS_PER_HOUR = 3600.0
SQRT2 = math.sqrt(2.0)
INF = float("inf")

# bf_plaus_config_t, in declaration order, with the host's defaults.
CONFIG_FIELDS = ("unseen_tau_s", "offset_tol_A", "leak_tol_A", "unseen_z", "voltage_noise_V",
                 "voltage_stuck_tol_V", "model_change_rel", "stuck_z", "converged_sigma_soc")
CONFIG = (86400.0, 0.0, 0.0, 4.264890793922825, 1e-3, 1e-3, 0.5, 4.753424308822899, 0.03)


def _finite(x):
    return x == x and x - x == 0.0


class Plausibility:
    """The monitor of one cell (bf_plaus_t and bf_plaus_step).

    `step(ekf, dt_s, voltage_V)` after `ekf.step(...)` of the same sample
    returns (flags, unseen_current_A, unseen_current_sigma_A, stuck_for_s);
    the sigma is inf until a window exists."""

    def __init__(self, config=CONFIG):
        (self.unseen_tau_s, self.offset_tol_A, self.leak_tol_A, self.unseen_z, self.voltage_noise_V,
         self.voltage_stuck_tol_V, self.model_change_rel, self.stuck_z, self.converged_sigma_soc) = config
        self.unseen_charge_As = 0.0
        self.window_s = 0.0
        self.sigma2_past = 0.0
        self.capacity_As = 0.0
        self.have_q_last = False  # capacity_As is the filter's capacity before this sample (not across a restart)
        self.anchor_V = 0.0
        self.anchor_current_A = 0.0
        self.lag_current_A = 0.0
        self.run_s = 0.0
        self.run_pred_change_V = 0.0
        self.have_anchor = False
        self.have_sigma = False
        self.flags = 0

    def _stuck_step(self, dt_s, voltage_V, ohmic_V, ohmic_R_ohm):
        # The run keeps the currents; the growth is at this sample's resistance (plausibility.c).
        current_A = ohmic_V / ohmic_R_ohm if ohmic_R_ohm > 0.0 else 0.0
        if not self.have_anchor or abs(voltage_V - self.anchor_V) > self.voltage_stuck_tol_V:
            self.anchor_V = voltage_V
            self.anchor_current_A = current_A
            self.lag_current_A = current_A
            self.run_s = 0.0
            self.run_pred_change_V = 0.0
            self.have_anchor = True
            return False
        self.run_s += dt_s
        if abs(self.lag_current_A) < abs(self.anchor_current_A):
            self.anchor_current_A = self.lag_current_A
        change = ohmic_R_ohm * abs(self.lag_current_A - self.anchor_current_A)
        self.lag_current_A = current_A
        if change > self.run_pred_change_V:
            self.run_pred_change_V = change
        live_min = (1.0 - self.model_change_rel) * self.run_pred_change_V
        needed = self.voltage_stuck_tol_V + self.stuck_z * SQRT2 * self.voltage_noise_V
        return live_min > needed

    def step(self, ekf, dt_s, voltage_V):
        ef, soc_sigma, soc_correction, capacity_Ah, ohmic_V, correction_var, ohmic_R_ohm = ekf.out
        flags = 0
        if ef & _EKF_VOLTAGE_INVALID:
            flags |= VOLTAGE_RANGE
        if ef & _EKF_CURRENT_INVALID:
            flags |= CURRENT_RANGE
        if ef & _EKF_TEMP_INVALID:
            flags |= TEMP_RANGE
        if not ef & _EKF_DT_INVALID and _finite(dt_s) and dt_s >= 0.0:
            if ef & _EKF_VOLTAGE_INVALID or not _finite(ohmic_V):
                self.have_anchor = False
                self.run_s = 0.0
                self.run_pred_change_V = 0.0
            elif self._stuck_step(dt_s, voltage_V, ohmic_V, ohmic_R_ohm):
                flags |= VOLTAGE_STUCK
            q_As = capacity_Ah * SECONDS_PER_HOUR
            moved_As = 0.0  # charge the capacity's change with temperature moves into SOC (plausibility.c)
            if _finite(q_As) and q_As > 0.0:
                if self.have_q_last:
                    moved_As = (1.0 - (ekf.x[0] - soc_correction)) * (q_As - self.capacity_As)
                self.capacity_As = q_As
                self.have_q_last = True
            if (not ef & _EKF_SOC_CLAMPED and not flags & VOLTAGE_STUCK and _finite(q_As) and q_As > 0.0
                    and _finite(soc_correction) and _finite(soc_sigma)
                    and soc_sigma * soc_sigma + correction_var < self.converged_sigma_soc * self.converged_sigma_soc):
                # 1 - exp(-dt/tau) as plausibility.c: exact where floats are single
                x = dt_s / self.unseen_tau_s
                forget = x * (1.0 - 0.5 * x) if x < 0.01 else 1.0 - math.exp(-x)
                self.unseen_charge_As -= forget * self.unseen_charge_As + soc_correction * q_As - moved_As
                self.window_s += dt_s - forget * self.window_s
                if self.have_sigma:
                    self.sigma2_past += forget * (soc_sigma * soc_sigma - self.sigma2_past)
                else:
                    self.sigma2_past = soc_sigma * soc_sigma
                    self.have_sigma = True
        elif dt_s >= 0.0:  # beyond dt_max_s: the filter restarted here (plausibility.c)
            self.have_q_last = False
        u = 0.0
        sigma_u = INF
        if self.window_s > 0.0 and self.have_sigma and self.capacity_As > 0.0 and _finite(soc_sigma):
            u = self.unseen_charge_As / self.window_s
            sigma_u = self.capacity_As * math.sqrt(soc_sigma * soc_sigma + self.sigma2_past) / self.window_s
            if _finite(sigma_u) and _finite(u):
                if abs(u) - self.offset_tol_A > self.unseen_z * sigma_u:
                    flags |= CURRENT_OFFSET
                if u - self.leak_tol_A > self.unseen_z * sigma_u:
                    flags |= SELF_DISCHARGE
            else:
                u = 0.0
                sigma_u = INF
        self.flags = flags
        return flags, u, sigma_u, (self.run_s if self.have_anchor else 0.0)
