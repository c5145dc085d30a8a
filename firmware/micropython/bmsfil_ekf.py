"""The bmsfil SOC estimator in pure MicroPython (also runs on CPython).

A port of host/bmsfil/reference.py, the float64 reference of the C core
(csrc/src/soc_ekf.c): the same equivalent-circuit cell model (OCV(SOC, T)
bilinear table, two RC pairs, current-dependent resistance, hysteresis) and
the same EKF (Joseph-form update, R floor, innovation gate, clamps,
covariance repair), line for line, in plain float arithmetic: no numpy, no
dataclasses, no typing at run time. The 4x4 covariance is a flat list of 16
floats, row major. On a port whose float is double (the unix port) the
results are the reference's to rounding; on single-precision ports they are
the float32 C core's to about 1e-4.

Parameters: the JSON of a bmsfil ParameterSet (`ParameterSet.to_json()`,
format "bmsfil-params/1", sections "cell" and "filter"), loaded with
`load_params(path)` or `Params(dict)`.
"""

import math
from array import array

NX = 4
TEMP_MIN_C = -60.0
TEMP_MAX_C = 120.0
VOLTAGE_MARGIN_V = 0.5
P_MAX_SOC = 1.0
P_MAX_HYST = 4.0
# |current| at or below this many C is a rest for a restart (BF_SOC_EKF_REST_C_RATE).
REST_C_RATE = 0.02
GATE_SIGMA_MIN = 1e-3
OCV_DIP_V = 1e-3  # BF_OCV_DIP_V (cell_model.h): the largest fall of an OCV row between neighbouring points
# |current| above this many C at a first sample is a start under load (BF_SOC_EKF_LOADED_C_RATE).
LOADED_C_RATE = 0.25
R_MIN_REL = 1e-6
FLAG_VOLTAGE_INVALID = 0x01
FLAG_CURRENT_INVALID = 0x02
FLAG_TEMP_INVALID = 0x04
FLAG_DT_INVALID = 0x08
FLAG_GATED = 0x10
FLAG_SOC_CLAMPED = 0x20
FLAG_COV_REPAIRED = 0x40

FORMAT_TAG = "bmsfil-params/1"
_RC_TABLES = ("r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")
_TEMP_ROWS = ("capacity_Ah", "hyst_m0_V", "hyst_m_V", "hyst_gamma", "rn_ohm")
_FILTER = ("q_soc_per_s", "q_irc_A2_per_s", "q_hyst_per_s", "r_voltage_V2_s", "r_overpotential_rel2_s",
           "r_dt_min_s", "p0_soc", "p0_soc_ocv", "p0_irc_A2", "p0_hyst", "p_floor_soc", "p_floor_irc_A2",
           "p_floor_hyst", "gate_sigma", "hyst_current_A", "dt_max_s", "hold_sigma_c_rate")
# FilterTuning's defaults (host/bmsfil/params.py), for a "filter" section that leaves some out.
# The thermal model (bf_thermal_params_t), in declaration order: the set's optional "thermal" section.
THERMAL = ("cc_J_per_K", "cs_J_per_K", "rc_K_per_W", "ru_K_per_W")
_FILTER_DEFAULTS = (9.59e-09, 4.84e-06, 7.98e-08, 0.0548, 4.91, 0.05, 0.25, 4e-4, 1e-2, 0.25, 5.21e-05, 1e-8,
                    1e-8, 4.0, 0.05, 3600.0, 0.5)


class ParamsError(ValueError):
    pass


def _finite(x):
    return x == x and x - x == 0.0  # not nan, not inf (math.isfinite is optional on small ports)


def _floats(values, what):
    out = [float(v) for v in values]
    for v in out:
        if not _finite(v):
            raise ParamsError(what + ": every value must be finite")
    return out


# The "power" section's fields, in bf_sop_limits_t's order (after horizon_s),
# and what a field not given is: a cell attribute's name, a number, or (the
# charge window, _CHARGE_DEFAULTS) the limit of the temperature window it
# defaults to.
_POWER_FIELDS = ("v_min_V", "v_max_V", "i_discharge_max_A", "i_charge_max_A", "soc_min", "soc_max",
                 "temp_min_C", "temp_max_C", "temp_charge_min_C", "temp_charge_max_C")
_CHARGE_DEFAULTS = {"temp_charge_min_C": "temp_min_C", "temp_charge_max_C": "temp_max_C"}
_POWER_DEFAULTS = {"v_min_V": "v_min_V", "v_max_V": "v_max_V", "i_discharge_max_A": "i_max_A",
                   "i_charge_max_A": "i_max_A", "soc_min": 0.0, "soc_max": 1.0, "temp_min_C": -30.0,
                   "temp_max_C": 60.0, "temp_charge_min_C": None, "temp_charge_max_C": None}


class Params:
    """A parameter set as plain lists and floats (the fields of CellParams and FilterTuning)."""

    def __init__(self, data):
        if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
            raise ParamsError("not a bmsfil parameter set (format " + FORMAT_TAG + ")")
        cell = data["cell"]
        self.name = data.get("name", "")
        self.temp_C = _floats(cell["temp_C"], "cell.temp_C")
        nt = len(self.temp_C)
        if nt < 1:
            raise ParamsError("cell.temp_C: no temperatures")
        for i in range(nt - 1):
            if not self.temp_C[i + 1] > self.temp_C[i]:
                raise ParamsError("cell.temp_C: must be strictly ascending")
        self.ocv_V = [_floats(row, "cell.ocv_V") for row in cell["ocv_V"]]
        self.n_ocv = len(self.ocv_V[0])
        if len(self.ocv_V) != nt or self.n_ocv < 2 or any(len(r) != self.n_ocv for r in self.ocv_V):
            raise ParamsError("cell.ocv_V: expected %d rows of the same >= 2 points" % nt)
        for i, row in enumerate(self.ocv_V):  # bf_cell_params_check: no fall beyond BF_OCV_DIP_V
            for j in range(1, self.n_ocv):
                if row[j] - row[j - 1] < -OCV_DIP_V:
                    raise ParamsError("cell.ocv_V: row %d falls from index %d to %d: expected an OCV rising "
                                      "with SOC" % (i, j - 1, j))
        self.tables = {}
        self.n_rc = len(cell["r0_ohm"][0])
        for name in _RC_TABLES:
            table = [_floats(row, "cell." + name) for row in cell[name]]
            if len(table) != nt or self.n_rc < 2 or any(len(r) != self.n_rc for r in table):
                raise ParamsError("cell.%s: expected %d rows of %d points" % (name, nt, self.n_rc))
            self.tables[name] = table
        self.rows = {}
        for name in _TEMP_ROWS:
            row = cell.get(name)
            row = [0.0] * nt if row is None else _floats(row, "cell." + name)
            if len(row) != nt:
                raise ParamsError("cell.%s: expected %d values" % (name, nt))
            self.rows[name] = row
        # The set's OCV is a discharge curve, not a rested cell's (its notes' ocv_loaded, as the
        # host's ParameterSet.ocv_loaded): the capacity estimator takes no anchor from a rest.
        self.ocv_loaded = "ocv_loaded" in (data.get("notes") or {})
        self.eta_charge = float(cell.get("eta_charge", 1.0))
        self.v_min_V = float(cell.get("v_min_V", 2.5))
        self.v_max_V = float(cell.get("v_max_V", 4.2))
        self.i_max_A = float(cell.get("i_max_A", 50.0))
        self.rn_sat_per_A = float(cell.get("rn_sat_per_A", 0.0))
        nominal = cell.get("nominal_capacity_Ah")
        self.nominal_capacity_Ah = float(nominal) if nominal else max(self.rows["capacity_Ah"])
        filt = data.get("filter", {})
        for name, default in zip(_FILTER, _FILTER_DEFAULTS):
            value = float(filt.get(name, default))
            if not _finite(value) or value < 0:
                raise ParamsError("filter.%s: expected a finite value >= 0" % name)
            if name == "gate_sigma" and not value >= GATE_SIGMA_MIN:  # BF_GATE_SIGMA_MIN: the gate divides by its square
                raise ParamsError("filter.gate_sigma: expected at least %g" % GATE_SIGMA_MIN)
            setattr(self, name, value)
        # The thermal model's values in THERMAL's order, or None (the set has no core temperature).
        self.thermal = None
        thermal = data.get("thermal")
        if thermal is not None:
            missing = [k for k in THERMAL if k not in thermal]
            if missing or len(thermal) != len(THERMAL):
                raise ParamsError("thermal: expected exactly the fields " + ", ".join(THERMAL))
            values = [float(thermal[k]) for k in THERMAL]
            for k, v in zip(THERMAL, values):
                if not _finite(v) or v <= 0:
                    raise ParamsError("thermal.%s: expected a finite value > 0" % k)
            self.thermal = values
        # The state of power's limits (bf_sop_limits_t's order but the horizon):
        # the set's optional "power" section, the cell's ranges where it is silent.
        power = data.get("power") or {}
        unknown = [k for k in power if k not in _POWER_DEFAULTS]
        if unknown:
            raise ParamsError("power: unknown field(s) " + ", ".join(unknown))
        limits = []
        for name in _POWER_FIELDS:
            default = _POWER_DEFAULTS[name]
            if name in _CHARGE_DEFAULTS:
                default = limits[_POWER_FIELDS.index(_CHARGE_DEFAULTS[name])]
            elif isinstance(default, str):
                default = getattr(self, default)
            value = float(power.get(name, default))
            if not _finite(value):
                raise ParamsError("power.%s: expected a finite number, got %r" % (name, value))
            limits.append(value)
        if not (0.0 < limits[0] < limits[1] and limits[2] > 0 and limits[3] > 0
                and 0.0 <= limits[4] < limits[5] <= 1.0 and limits[6] < limits[7]):
            raise ParamsError("power: limits out of order (v_min < v_max, currents > 0, "
                              "0 <= soc_min < soc_max <= 1, temp_min < temp_max)")
        if not limits[6] <= limits[8] < limits[7]:
            raise ParamsError("power.temp_charge_min_C: %g C is outside [temp_min_C, temp_max_C) = [%g, %g) C"
                              % (limits[8], limits[6], limits[7]))
        if not limits[6] < limits[9] <= limits[7]:
            raise ParamsError("power.temp_charge_max_C: %g C is outside (temp_min_C, temp_max_C] = (%g, %g] C"
                              % (limits[9], limits[6], limits[7]))
        if not limits[8] < limits[9]:
            raise ParamsError("power: temp_charge_min_C %g C must be below temp_charge_max_C %g C"
                              % (limits[8], limits[9]))
        # Nor beyond what the filter reads (bf_sop_limits_cell_check): the voltages
        # within VOLTAGE_MARGIN_V of the cell's range, the currents up to i_max_A. The
        # limits are compared in single precision, as the C core compares them (in the
        # unix port's doubles, sets the host and the C core take were refused: 4.19
        # above 3.69 + 0.5, 1.7 below 2.2 - 0.5).
        for k, bound, high in ((0, _f32(_f32(self.v_min_V) - VOLTAGE_MARGIN_V), False),
                               (1, _f32(_f32(self.v_max_V) + VOLTAGE_MARGIN_V), True),
                               (2, _f32(self.i_max_A), True), (3, _f32(self.i_max_A), True),
                               (6, TEMP_MIN_C, False), (7, TEMP_MAX_C, True)):
            if _f32(limits[k]) > bound if high else _f32(limits[k]) < bound:
                raise ParamsError("power.%s: %g is %s %g, where the filter takes a reading for a sensor fault"
                                  % (_POWER_FIELDS[k], limits[k], "above" if high else "below", bound))
        self.power_limits = limits


def _f32(x):
    """x rounded to single precision (a no-op on a port whose floats are single)."""
    return array("f", (x,))[0]


def load_params(path):
    import json

    with open(path) as f:
        return Params(json.load(f))


def _grid_cell(x, n):
    pos = (min(x, 1.0) if x > 0.0 else 0.0) * (n - 1)
    k = min(int(pos), n - 2)
    return k, pos - k


def _lerp(a, b, w):
    return (1.0 - w) * a + w * b


def _sign(v):
    return 1.0 if v > 0 else (-1.0 if v < 0 else 0.0)


class CellModel:
    """Table lookups of the equivalent-circuit model (reference.CellModel)."""

    def __init__(self, p):
        self.p = p
        self.temp_C = p.temp_C
        self.n_ocv = p.n_ocv
        self.n_rc = p.n_rc

    def locate(self, soc, temp_C):
        """(t0, t1, wt, k_ocv, w_ocv, k_rc, w_rc): reference.Lookup as a tuple."""
        temps = self.temp_C
        nt = len(temps)
        t0, wt = 0, 0.0
        if nt > 1:
            if temp_C >= temps[-1]:
                t0, wt = nt - 2, 1.0
            elif temp_C > temps[0]:
                while t0 + 2 < nt and temp_C >= temps[t0 + 1]:
                    t0 += 1
                wt = (temp_C - temps[t0]) / (temps[t0 + 1] - temps[t0])
        k_ocv, w_ocv = _grid_cell(soc, self.n_ocv)
        k_rc, w_rc = _grid_cell(soc, self.n_rc)
        return (t0, t0 + 1 if nt > 1 else t0, wt, k_ocv, w_ocv, k_rc, w_rc)

    def ocv(self, at):
        table = self.p.ocv_V
        a, b, wt, k = table[at[0]], table[at[1]], at[2], at[3]
        lo = _lerp(a[k], b[k], wt)
        hi = _lerp(a[k + 1], b[k + 1], wt)
        return _lerp(lo, hi, at[4]), (hi - lo) * (self.n_ocv - 1)

    def rc(self, name, at):
        table = self.p.tables[name]
        a, b, wt, k = table[at[0]], table[at[1]], at[2], at[5]
        return _lerp(_lerp(a[k], b[k], wt), _lerp(a[k + 1], b[k + 1], wt), at[6])

    def row(self, name, at):
        r = self.p.rows[name]
        return _lerp(r[at[0]], r[at[1]], at[2])

    def soc_from_ocv(self, ocv_V, temp_C):
        lo, hi = 0.0, 1.0
        for _ in range(24):
            mid = 0.5 * (lo + hi)
            if self.ocv(self.locate(mid, temp_C))[0] < ocv_V:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)


class SocEkf:
    """The SOC EKF of one cell (reference.ReferenceSocEstimator).

    `step()` returns (soc, soc_sigma, v_pred, flags), the fields of the
    core's StepResult, and leaves in `out` what a monitor beside the filter
    reads of the step (bf_soc_ekf_out_t): (flags, soc_sigma, soc_correction,
    capacity_Ah, ohmic_V, soc_correction_var, ohmic_R_ohm), those after
    soc_sigma 0 where the C core reports 0 (no correction made, sample
    skipped). See bmsfil_plaus.py."""

    def __init__(self, params):
        self.p = params
        self.model = CellModel(params)
        self.x = [0.0] * NX
        self.P = [0.0] * (NX * NX)
        self.last_current_A = 0.0
        self.last_temp_C = 25.0
        self.hyst_sign = 0.0
        self.out = (0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self.init_soc(1.0, 25.0)

    def _init(self, soc, p_soc, temp_C):
        t = self.p
        self.x = [min(max(soc, 0.0), 1.0), 0.0, 0.0, 0.0]
        P = [0.0] * (NX * NX)
        P[0], P[5], P[10], P[15] = p_soc, t.p0_irc_A2, t.p0_irc_A2, t.p0_hyst
        self.P = P
        self._repair()
        self.last_current_A = 0.0
        self.last_temp_C = min(max(temp_C, TEMP_MIN_C), TEMP_MAX_C) if _finite(temp_C) else 25.0
        self.hyst_sign = 0.0

    def init_soc(self, soc, temp_C):
        if not _finite(soc):
            raise ValueError("init_soc: argument out of range")
        self._init(soc, self.p.p0_soc, temp_C)

    def voltage_plausible(self, voltage_V):
        """A voltage the step accepts (bf_soc_ekf.c voltage_plausible): not NaN, within 0.5 V of the cell's range."""
        t = self.p
        return _finite(voltage_V) and t.v_min_V - VOLTAGE_MARGIN_V <= voltage_V <= t.v_max_V + VOLTAGE_MARGIN_V

    def init_ocv(self, voltage_V, temp_C):
        if not (self.voltage_plausible(voltage_V) and _finite(temp_C)):  # BF_E_RANGE
            raise ValueError("init_ocv: argument out of range")
        self._init(self.model.soc_from_ocv(voltage_V, temp_C), self.p.p0_soc_ocv, temp_C)

    def start(self, current_A, voltage_V, temp_C):
        """From a first sample (bf_soc_ekf_start): its voltage's OCV, with the
        variance of an unknown start if the cell is under load."""
        self.init_ocv(voltage_V, temp_C)
        if not abs(current_A) <= LOADED_C_RATE * self.p.rows["capacity_Ah"][0]:  # NaN: not known; C: coldest row
            self._init(self.x[0], self.p.p0_soc, temp_C)

    def restart(self, rest_current_A, current_A, voltage_V, temp_C):
        """Start again after time the filter did not see (bf_soc_ekf_restart):
        from the voltage if the cell rests, else from the SOC it had with
        variance p0_soc. Returns whether it started from the voltage."""
        t = self.p
        if not rest_current_A >= 0:  # NaN or negative, as bf_soc_ekf_restart
            raise ValueError("restart: argument out of range")
        temp = temp_C if _finite(temp_C) and TEMP_MIN_C <= temp_C <= TEMP_MAX_C else self.last_temp_C
        rested = (_finite(current_A) and abs(current_A) <= rest_current_A and _finite(voltage_V)
                  and t.v_min_V - VOLTAGE_MARGIN_V <= voltage_V <= t.v_max_V + VOLTAGE_MARGIN_V)
        if rested:
            self._init(self.model.soc_from_ocv(voltage_V, temp), t.p0_soc_ocv, temp)
        else:
            self._init(self.x[0], t.p0_soc, temp)
        if _finite(current_A) and abs(current_A) <= t.i_max_A:
            self.last_current_A = current_A
        return rested

    def _repair(self):
        """Symmetrise, floor and ceiling the variances, limit the correlations
        to 0.999: reference._repair / repair_covariance in C."""
        t = self.p
        Q = self.P
        P = [0.0] * (NX * NX)
        for i in range(NX):
            for j in range(NX):
                P[i * NX + j] = 0.5 * (Q[i * NX + j] + Q[j * NX + i])
        floor = (t.p_floor_soc, t.p_floor_irc_A2, t.p_floor_irc_A2, t.p_floor_hyst)
        irc_max = t.i_max_A * t.i_max_A
        ceiling = (P_MAX_SOC, irc_max, irc_max, P_MAX_HYST)
        repaired = False
        for i in range(NX):
            d = P[i * NX + i]
            if not _finite(d):
                for j in range(NX):
                    P[i * NX + j] = 0.0
                    P[j * NX + i] = 0.0
                P[i * NX + i] = ceiling[i]
                repaired = True
                continue
            if d < floor[i]:
                P[i * NX + i] = floor[i]
                repaired = True
            elif d > ceiling[i]:
                scale = math.sqrt(ceiling[i] / d)
                for j in range(NX):
                    P[i * NX + j] *= scale
                for j in range(NX):
                    P[j * NX + i] *= scale
                P[i * NX + i] = ceiling[i]
                repaired = True
        for i in range(NX):
            for j in range(i + 1, NX):
                c = P[i * NX + j]
                lim2 = 0.999 * 0.999 * (P[i * NX + i] * P[j * NX + j])
                if not _finite(c):
                    c = 0.0
                    repaired = True
                elif c * c > lim2:
                    c = math.copysign(math.sqrt(lim2), c)
                    repaired = True
                P[i * NX + j] = c
                P[j * NX + i] = c
        self.P = P
        return repaired

    def step(self, dt_s, current_A, voltage_V, temp_C):
        t, m, x = self.p, self.model, self.x
        flags = 0
        if not 0 <= dt_s <= t.dt_max_s:
            if dt_s > t.dt_max_s:  # time the filter did not see: start again here (bf_soc_ekf_step)
                self.restart(REST_C_RATE * m.row("capacity_Ah", m.locate(x[0], self.last_temp_C)),
                             current_A, voltage_V, temp_C)
            sigma = math.sqrt(self.P[0])
            self.out = (FLAG_DT_INVALID, sigma, 0.0, 0.0, 0.0, 0.0, 0.0)
            return self.x[0], sigma, 0.0, FLAG_DT_INVALID
        if not _finite(current_A) or abs(current_A) > t.i_max_A:
            flags |= FLAG_CURRENT_INVALID
            current_A = self.last_current_A
        else:
            self.last_current_A = current_A
        if not _finite(temp_C) or not TEMP_MIN_C <= temp_C <= TEMP_MAX_C:
            flags |= FLAG_TEMP_INVALID
            temp_C = self.last_temp_C
        else:
            self.last_temp_C = temp_C
        v_ok = _finite(voltage_V) and (t.v_min_V - VOLTAGE_MARGIN_V <= voltage_V <= t.v_max_V + VOLTAGE_MARGIN_V)
        if not v_ok:
            flags |= FLAG_VOLTAGE_INVALID

        # Predict.
        at = m.locate(x[0], temp_C)
        cap_Ah = m.row("capacity_Ah", at)
        cap_As = cap_Ah * 3600.0
        eta = t.eta_charge if current_A > 0 else 1.0
        dz = eta * current_A * dt_s / cap_As
        a1 = math.exp(-dt_s / m.rc("tau1_s", at))
        a2 = math.exp(-dt_s / m.rc("tau2_s", at))
        ah = math.exp(-abs(dz * m.row("hyst_gamma", at)))
        x[0] += dz
        x[1] = a1 * x[1] + (1 - a1) * current_A
        x[2] = a2 * x[2] + (1 - a2) * current_A
        x[3] = ah * x[3] + (1 - ah) * _sign(current_A)
        if abs(current_A) > t.hyst_current_A:
            self.hyst_sign = _sign(current_A)
        if not 0.0 <= x[0] <= 1.0:
            x[0] = min(max(x[0], 0.0), 1.0)
            flags |= FLAG_SOC_CLAMPED
        F = (1.0, a1, a2, ah)
        P = self.P
        for i in range(NX):
            fi = F[i]
            for j in range(NX):
                P[i * NX + j] *= fi * F[j]
        hold = t.hold_sigma_c_rate * dt_s * (1.0 / 3600.0)  # the interval's charge: a sampled current
        P[0] += t.q_soc_per_s * dt_s + hold * hold
        P[5] += t.q_irc_A2_per_s * dt_s
        P[10] += t.q_irc_A2_per_s * dt_s
        P[15] += t.q_hyst_per_s * dt_s

        # Correct.
        at = m.locate(x[0], temp_C)
        ocv, docv = m.ocv(at)
        r1, r2, mh = m.rc("r1_ohm", at), m.rc("r2_ohm", at), m.row("hyst_m_V", at)
        # The same sum as before, its first part (the instantaneous response) kept for the monitor.
        sat = 1.0 + t.rn_sat_per_A * abs(current_A)
        ohmic_V = m.rc("r0_ohm", at) * current_A + m.row("rn_ohm", at) * current_A / sat
        ohmic_R_ohm = m.rc("r0_ohm", at) + m.row("rn_ohm", at) / sat
        eta_V = ohmic_V + r1 * x[1] + r2 * x[2]
        soc_pred = x[0]
        correction = 0.0
        correction_var = 0.0
        v_pred = ocv + m.row("hyst_m0_V", at) * self.hyst_sign + mh * x[3] + eta_V
        if v_ok:
            H = (docv, r1, r2, mh)
            PH = [P[i * NX] * H[0] + P[i * NX + 1] * H[1] + P[i * NX + 2] * H[2] + P[i * NX + 3] * H[3]
                  for i in range(NX)]
            hph = H[0] * PH[0] + H[1] * PH[1] + H[2] * PH[2] + H[3] * PH[3]
            r_meas = (t.r_voltage_V2_s + t.r_overpotential_rel2_s * eta_V * eta_V) / max(dt_s, t.r_dt_min_s)
            r_meas = max(r_meas, R_MIN_REL * hph)
            S = hph + r_meas
            innov = voltage_V - v_pred
            gate2 = t.gate_sigma * t.gate_sigma
            if innov * innov / S > gate2:
                S = innov * innov / gate2
                r_meas = S - hph
                flags |= FLAG_GATED
            K = [PH[i] / S for i in range(NX)]
            correction_var = PH[0] * PH[0] / S
            for i in range(NX):
                x[i] += K[i] * innov
            # Joseph form: P = A P A^T + r K K^T with A = I - K H^T, as (A P) A^T.
            A = [(1.0 if i == j else 0.0) - K[i] * H[j] for i in range(NX) for j in range(NX)]
            AP = [0.0] * (NX * NX)
            for i in range(NX):
                for j in range(NX):
                    s = 0.0
                    for k in range(NX):
                        s += A[i * NX + k] * P[k * NX + j]
                    AP[i * NX + j] = s
            Pn = [0.0] * (NX * NX)
            for i in range(NX):
                for j in range(NX):
                    s = 0.0
                    for k in range(NX):
                        s += AP[i * NX + k] * A[j * NX + k]
                    Pn[i * NX + j] = s + r_meas * K[i] * K[j]
            self.P = Pn
            if abs(x[3]) > 1.0:  # h beyond its bound: projected onto it (soc_ekf.c project_hyst)
                bound = 1.0 if x[3] > 0 else -1.0
                if Pn[15] > 0:
                    u = (bound - x[3]) / Pn[15]
                    for i in range(NX - 1):
                        x[i] += Pn[i * NX + 3] * u
                x[3] = bound
            if not 0.0 <= x[0] <= 1.0:
                x[0] = min(max(x[0], 0.0), 1.0)
                flags |= FLAG_SOC_CLAMPED
            correction = x[0] - soc_pred
        x[1] = min(max(x[1], -t.i_max_A), t.i_max_A)
        x[2] = min(max(x[2], -t.i_max_A), t.i_max_A)
        if self._repair():
            flags |= FLAG_COV_REPAIRED
        sigma = math.sqrt(self.P[0])
        self.out = (flags, sigma, correction, cap_Ah, ohmic_V, correction_var, ohmic_R_ohm)
        return x[0], sigma, v_pred, flags
