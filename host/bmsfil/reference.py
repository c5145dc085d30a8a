"""The float64 reference: the same cell model and EKF as the C core.

Written for reading, not speed, line for line against csrc/src/soc_ekf.c so
that any disagreement beyond float rounding is a bug in one of them. The C
core is tested against this over random parameters and inputs.
"""

from __future__ import annotations

import math

import numpy as np

from bmsfil.core import CoreError, InitialSoc, SocTrace, StepResult, start_estimator, start_variance
from bmsfil.params import TEMP_MAX_C, TEMP_MIN_C, VOLTAGE_MARGIN_V, ParameterSet
from bmsfil.recording import Recording

NX = 4
P_MAX_SOC, P_MAX_HYST = 1.0, 4.0
#: |current| at or below this many C is a rest for a restart (BF_SOC_EKF_REST_C_RATE).
REST_C_RATE = 0.02
#: |current| above this many C at a first sample is a start under load (BF_SOC_EKF_LOADED_C_RATE).
LOADED_C_RATE = 0.25
R_MIN_REL = 1e-6
FLAG_VOLTAGE_INVALID, FLAG_CURRENT_INVALID, FLAG_TEMP_INVALID = 0x01, 0x02, 0x04
FLAG_DT_INVALID, FLAG_GATED, FLAG_SOC_CLAMPED, FLAG_COV_REPAIRED = 0x08, 0x10, 0x20, 0x40


class Lookup:
    """Where (SOC, T) falls in the tables: the float64 twin of bf_lookup_t."""

    __slots__ = ("t0", "t1", "wt", "k_ocv", "w_ocv", "k_rc", "w_rc")

    def __init__(self, model: "CellModel", soc: float, temp_C: float) -> None:
        temps = model.temp_C
        nt = len(temps)
        t0, wt = 0, 0.0
        if nt > 1:
            if temp_C >= temps[-1]:
                t0, wt = nt - 2, 1.0
            elif temp_C > temps[0]:
                while t0 + 2 < nt and temp_C >= temps[t0 + 1]:
                    t0 += 1
                wt = (temp_C - temps[t0]) / (temps[t0 + 1] - temps[t0])
        self.t0, self.t1, self.wt = t0, (t0 + 1 if nt > 1 else t0), wt
        self.k_ocv, self.w_ocv = grid_cell(soc, model.n_ocv)
        self.k_rc, self.w_rc = grid_cell(soc, model.n_rc)


def lerp(a: float, b: float, w: float) -> float:
    return (1.0 - w) * a + w * b


def grid_cell(x: float, n: int) -> tuple[int, float]:
    pos = (min(x, 1.0) if x > 0.0 else 0.0) * (n - 1)
    k = min(int(pos), n - 2)
    return k, pos - k


class CellModel:
    """Table lookups of the equivalent-circuit model in float64."""

    def __init__(self, params: ParameterSet) -> None:
        c = params.cell
        self.cell = c
        self.temp_C = c.temp_C.tolist()
        self.n_ocv = c.ocv_V.shape[1]
        self.n_rc = c.r0_ohm.shape[1]
        self.ocv_V = c.ocv_V.tolist()
        self.tables = {name: getattr(c, name).tolist() for name in ("r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")}
        self.rows = {name: getattr(c, name).tolist() for name in ("capacity_Ah", "hyst_m0_V", "hyst_m_V", "hyst_gamma", "rn_ohm")}

    def locate(self, soc: float, temp_C: float) -> Lookup:
        return Lookup(self, soc, temp_C)

    def ocv(self, at: Lookup) -> tuple[float, float]:
        a, b, k = self.ocv_V[at.t0], self.ocv_V[at.t1], at.k_ocv
        lo = lerp(a[k], b[k], at.wt)
        hi = lerp(a[k + 1], b[k + 1], at.wt)
        return lerp(lo, hi, at.w_ocv), (hi - lo) * (self.n_ocv - 1)

    def rc(self, name: str, at: Lookup) -> float:
        a, b, k = self.tables[name][at.t0], self.tables[name][at.t1], at.k_rc
        return lerp(lerp(a[k], b[k], at.wt), lerp(a[k + 1], b[k + 1], at.wt), at.w_rc)

    def row(self, name: str, at: Lookup) -> float:
        r = self.rows[name]
        return lerp(r[at.t0], r[at.t1], at.wt)

    def soc_from_ocv(self, ocv_V: float, temp_C: float) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(24):
            mid = 0.5 * (lo + hi)
            if self.ocv(self.locate(mid, temp_C))[0] < ocv_V:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)


def sign(v: float) -> float:
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


def repair_covariance(P: np.ndarray, floor: list[float], ceiling: list[float]) -> tuple[np.ndarray, bool]:
    """Symmetrise, raise variances below their floor, lower those above
    their ceiling by scaling row and column (keeping P positive
    semi-definite), then pull back correlations beyond 0.999: as
    repair_covariance in C. Returns the repaired P and whether anything
    beyond symmetry changed."""
    P = 0.5 * (P + P.T)
    n = len(floor)
    repaired = False
    for i in range(n):
        d = P[i, i]
        if not math.isfinite(d):
            P[i, :] = 0.0
            P[:, i] = 0.0
            P[i, i], repaired = ceiling[i], True
            continue
        if d < floor[i]:
            P[i, i], repaired = floor[i], True
        elif d > ceiling[i]:
            scale = math.sqrt(ceiling[i] / d)
            P[i, :] *= scale
            P[:, i] *= scale
            P[i, i], repaired = ceiling[i], True
    for i in range(n):
        for j in range(i + 1, n):
            c = P[i, j]
            lim2 = 0.999 * 0.999 * (P[i, i] * P[j, j])
            if not math.isfinite(c):
                c, repaired = 0.0, True
            elif c * c > lim2:
                c, repaired = math.copysign(math.sqrt(lim2), c), True
            P[i, j] = P[j, i] = c
    return P, repaired


class ReferenceSocEstimator:
    """float64 SOC EKF with the same API and behaviour as `core.SocEstimator`."""

    def __init__(self, params: ParameterSet) -> None:
        self.params = params
        self.model = CellModel(params)
        self.t = params.filter
        self.x = np.zeros(NX)
        self.P = np.zeros((NX, NX))
        self.init_soc(1.0, 25.0)

    def _init(self, soc: float, p_soc: float, temp_C: float) -> None:
        t = self.t
        self.x = np.array([min(max(soc, 0.0), 1.0), 0.0, 0.0, 0.0])
        self.P = np.diag([p_soc, t.p0_irc_A2, t.p0_irc_A2, t.p0_hyst])
        self._repair()
        self.last_current_A = 0.0
        self.last_temp_C = min(max(temp_C, TEMP_MIN_C), TEMP_MAX_C) if math.isfinite(temp_C) else 25.0
        self.hyst_sign = 0.0

    def init_soc(self, soc: float, temp_C: float, sigma: float | None = None) -> None:
        if not math.isfinite(soc):  # as bf_soc_ekf_init_soc: BF_E_RANGE
            raise CoreError("init_soc: argument out of range")
        self._init(soc, start_variance(self.params, sigma), temp_C)

    def init_ocv(self, voltage_V: float, temp_C: float) -> None:
        cell = self.params.cell  # as bf_soc_ekf_init_ocv: BF_E_RANGE for a voltage the step would refuse
        if not (cell.v_min_V - VOLTAGE_MARGIN_V <= voltage_V <= cell.v_max_V + VOLTAGE_MARGIN_V
                and math.isfinite(temp_C)):
            raise CoreError("init_ocv: argument out of range")
        self._init(self.model.soc_from_ocv(voltage_V, temp_C), self.t.p0_soc_ocv, temp_C)

    def start(self, current_A: float, voltage_V: float, temp_C: float) -> None:
        """From a first sample, as bf_soc_ekf_start: its voltage's OCV, with
        the variance of an unknown start (p0_soc) if the cell is under load."""
        self.init_ocv(voltage_V, temp_C)
        if not abs(current_A) <= LOADED_C_RATE * float(self.params.cell.capacity_Ah[0]):  # C at the coldest row
            self._init(float(self.x[0]), self.t.p0_soc, temp_C)  # NaN: not known

    def restart(self, rest_current_A: float, current_A: float, voltage_V: float, temp_C: float) -> bool:
        """Start again after time the filter did not see, as bf_soc_ekf_restart:
        from the voltage if the cell rests, else from the SOC it had with
        variance p0_soc. Returns whether it started from the voltage."""
        cell = self.params.cell
        if not rest_current_A >= 0:  # NaN or negative, as bf_soc_ekf_restart
            raise CoreError("restart: argument out of range")
        temp = temp_C if math.isfinite(temp_C) and TEMP_MIN_C <= temp_C <= TEMP_MAX_C else self.last_temp_C
        rested = (math.isfinite(current_A) and abs(current_A) <= rest_current_A and math.isfinite(voltage_V)
                  and cell.v_min_V - VOLTAGE_MARGIN_V <= voltage_V <= cell.v_max_V + VOLTAGE_MARGIN_V)
        if rested:
            self._init(self.model.soc_from_ocv(voltage_V, temp), self.t.p0_soc_ocv, temp)
        else:
            self._init(float(self.x[0]), self.t.p0_soc, temp)
        if math.isfinite(current_A) and abs(current_A) <= cell.i_max_A:
            self.last_current_A = current_A
        return rested

    def _repair(self) -> bool:
        """Repair P within this filter's floors and ceilings (repair_covariance)."""
        t = self.t
        irc_max = self.params.cell.i_max_A**2
        self.P, repaired = repair_covariance(self.P, [t.p_floor_soc, t.p_floor_irc_A2, t.p_floor_irc_A2, t.p_floor_hyst],
                                             [P_MAX_SOC, irc_max, irc_max, P_MAX_HYST])
        return repaired

    def _sensor_inputs(self, current_A: float, voltage_V: float, temp_C: float) -> tuple[int, float, float, bool]:
        """The step's flags for its readings, the current and temperature to
        use (the last good one for a bad reading, as the C core), and whether
        the voltage may correct."""
        cell, flags = self.params.cell, 0
        if not math.isfinite(current_A) or abs(current_A) > cell.i_max_A:
            flags |= FLAG_CURRENT_INVALID
            current_A = self.last_current_A
        else:
            self.last_current_A = current_A
        if not math.isfinite(temp_C) or not TEMP_MIN_C <= temp_C <= TEMP_MAX_C:
            flags |= FLAG_TEMP_INVALID
            temp_C = self.last_temp_C
        else:
            self.last_temp_C = temp_C
        v_ok = math.isfinite(voltage_V) and (
            cell.v_min_V - VOLTAGE_MARGIN_V <= voltage_V <= cell.v_max_V + VOLTAGE_MARGIN_V
        )
        if not v_ok:
            flags |= FLAG_VOLTAGE_INVALID
        return flags, current_A, temp_C, v_ok

    def step(self, dt_s: float, current_A: float, voltage_V: float, temp_C: float) -> StepResult:
        cell, t, m, x = self.params.cell, self.t, self.model, self.x
        if not 0 <= dt_s <= t.dt_max_s:
            if dt_s > t.dt_max_s:  # time the filter did not see: start again here (bf_soc_ekf_step)
                rest = REST_C_RATE * m.row("capacity_Ah", m.locate(x[0], self.last_temp_C))
                self.restart(rest, current_A, voltage_V, temp_C)
            return StepResult(self.x[0], math.sqrt(self.P[0, 0]), 0.0, FLAG_DT_INVALID)
        flags, current_A, temp_C, v_ok = self._sensor_inputs(current_A, voltage_V, temp_C)

        at = m.locate(x[0], temp_C)
        cap_As = m.row("capacity_Ah", at) * 3600.0
        eta = cell.eta_charge if current_A > 0 else 1.0
        dz = eta * current_A * dt_s / cap_As
        a1 = math.exp(-dt_s / m.rc("tau1_s", at))
        a2 = math.exp(-dt_s / m.rc("tau2_s", at))
        ah = math.exp(-abs(dz * m.row("hyst_gamma", at)))
        x[0] += dz
        x[1] = a1 * x[1] + (1 - a1) * current_A
        x[2] = a2 * x[2] + (1 - a2) * current_A
        x[3] = ah * x[3] + (1 - ah) * sign(current_A)
        if abs(current_A) > t.hyst_current_A:
            self.hyst_sign = sign(current_A)
        if not 0.0 <= x[0] <= 1.0:
            x[0] = min(max(x[0], 0.0), 1.0)
            flags |= FLAG_SOC_CLAMPED
        F = np.array([1.0, a1, a2, ah])
        self.P *= np.outer(F, F)
        self.P += np.diag([t.q_soc_per_s, t.q_irc_A2_per_s, t.q_irc_A2_per_s, t.q_hyst_per_s]) * dt_s
        self.P[0, 0] += (t.hold_sigma_c_rate * dt_s / 3600.0) ** 2  # the interval's charge: a sampled current

        at = m.locate(x[0], temp_C)
        ocv, docv = m.ocv(at)
        r1, r2, mh = m.rc("r1_ohm", at), m.rc("r2_ohm", at), m.row("hyst_m_V", at)
        sat = 1.0 + cell.rn_sat_per_A * abs(current_A)
        ohmic_V = m.rc("r0_ohm", at) * current_A + m.row("rn_ohm", at) * current_A / sat
        ohmic_R_ohm = m.rc("r0_ohm", at) + m.row("rn_ohm", at) / sat
        eta_V = ohmic_V + r1 * x[1] + r2 * x[2]
        v_pred = ocv + m.row("hyst_m0_V", at) * self.hyst_sign + mh * x[3] + eta_V
        soc_pred, correction, correction_var = x[0], 0.0, 0.0
        if v_ok:
            H = np.array([docv, r1, r2, mh])
            PH = self.P @ H
            hph = float(H @ PH)
            r_meas = (t.r_voltage_V2_s + t.r_overpotential_rel2_s * eta_V * eta_V) / max(dt_s, t.r_dt_min_s)
            r_meas = max(r_meas, R_MIN_REL * hph)
            S = hph + r_meas
            innov = voltage_V - v_pred
            if innov * innov / S > t.gate_sigma**2:
                S = innov * innov / t.gate_sigma**2
                r_meas = S - hph
                flags |= FLAG_GATED
            K = PH / S
            correction_var = PH[0] * PH[0] / S
            x += K * innov
            A = np.eye(NX) - np.outer(K, H)
            self.P = A @ self.P @ A.T + r_meas * np.outer(K, K)
            if abs(x[3]) > 1.0:  # h beyond its bound: projected onto it (soc_ekf.c project_hyst)
                bound = 1.0 if x[3] > 0 else -1.0
                if self.P[3, 3] > 0:
                    x[:3] += self.P[:3, 3] * ((bound - x[3]) / self.P[3, 3])
                x[3] = bound
            if not 0.0 <= x[0] <= 1.0:
                x[0] = min(max(x[0], 0.0), 1.0)
                flags |= FLAG_SOC_CLAMPED
            correction = x[0] - soc_pred
        x[1] = min(max(x[1], -cell.i_max_A), cell.i_max_A)
        x[2] = min(max(x[2], -cell.i_max_A), cell.i_max_A)
        if self._repair():
            flags |= FLAG_COV_REPAIRED
        return StepResult(float(x[0]), math.sqrt(self.P[0, 0]), v_pred, flags, float(correction),
                          float(correction_var), cap_As / 3600.0, ohmic_V, ohmic_R_ohm)

    def run(self, recording: Recording, initial_soc: InitialSoc = "ocv") -> SocTrace:
        start_estimator(self, recording, initial_soc)
        return self.run_arrays(recording.dt_s, recording.current_A, recording.voltage_V, recording.temp_C)

    def run_arrays(
        self, dt_s: np.ndarray, current_A: np.ndarray, voltage_V: np.ndarray, temp_C: np.ndarray
    ) -> SocTrace:
        n = len(dt_s)
        soc, sigma, flags = np.empty(n), np.empty(n), np.empty(n, dtype=np.uint8)
        for k, args in enumerate(zip(dt_s.tolist(), current_A.tolist(), voltage_V.tolist(), temp_C.tolist())):
            r = self.step(*args)
            soc[k], sigma[k], flags[k] = r.soc, r.soc_sigma, r.flags
        return SocTrace(soc, sigma, flags)


def awtls_reference(
    pairs: list[tuple[float, float, float, float]], memory_cycles: float, q0: float, q0_sigma: float
) -> tuple[float, float]:
    """Capacity (and its 1 sigma), in the pairs' units, that the C core's
    AWTLS (capacity.h) should give: the same cost minimised in float64 by
    taking every real root of the quartic and keeping the one of least cost.
    Each pair is (x, var_x, y, var_y); the fit starts from the pseudo-pair
    x = 1, y = q0 with equal variances whose TLS variance is q0_sigma^2."""
    var0 = q0_sigma**2 / (1.0 + q0**2)
    c = np.array([1.0, q0, q0**2, 1.0, q0, q0**2]) / var0
    for x, var_x, y, var_y in pairs:
        c *= np.exp(-abs(x) / memory_cycles)
        c += np.array([x * x / var_y, x * y / var_y, y * y / var_y, x * x / var_x, x * y / var_x, y * y / var_x])
    c1, c2, c3, c4, c5, c6 = c

    def cost(q: float) -> float:
        return (c4 * q**4 - 2 * c5 * q**3 + (c1 + c6) * q**2 - 2 * c2 * q + c3) / (1 + q * q) ** 2

    roots = np.roots([c5, 2 * c4 - c1 - c6, 3 * (c2 - c5), c1 + c6 - 2 * c3, -c2])
    real = [float(r.real) for r in roots if abs(r.imag) < 1e-9 * max(1.0, abs(r)) and r.real > 0]
    q = min(real, key=cost)
    h = 1e-4 * q
    d2 = (cost(q + h) - 2 * cost(q) + cost(q - h)) / (h * h)
    return q, float(np.sqrt(2.0 / d2)) if d2 > 0 else q
