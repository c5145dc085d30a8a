"""Capacity and R0 beside the SOC filter, in pure MicroPython (also CPython).

A port of the C core's csrc/src/capacity.c, resistance.c and health.c, line
for line, over bmsfil_ekf.SocEkf: capacity by approximate weighted total
least squares (AWTLS) over pairs of SOC anchors (full, empty at the cut-off,
a long rest), R0 by recursive least squares on current steps, and gaps in
the record restarting the SOC filter from a rested voltage. The settings
are the host's defaults (host/bmsfil/health.py, CapacityTuning.for_params
and R0Tuning.for_params), derived from the parameter set the same way.
"""

import math

from bmsfil_ekf import TEMP_MAX_C, TEMP_MIN_C, VOLTAGE_MARGIN_V, SocEkf, _finite

CAP_ANCHOR_FULL = 0x01
CAP_ANCHOR_EMPTY = 0x02
CAP_ANCHOR_REST = 0x04
CAP_UPDATED = 0x08
CAP_BROKEN = 0x10
R0_UPDATED = 0x01
HEALTH_GAP = 0x01
HEALTH_RESTARTED = 0x02
_FLAG_VOLTAGE_INVALID = 0x01
_FLAG_CURRENT_INVALID = 0x02
_FLAG_DT_INVALID = 0x08

_Q_MIN = 0.01
_GRID = 64
_GRID_RATIO = 10.0 ** (4.0 / _GRID)
_PAIR_Q_MIN, _PAIR_Q_MAX = 0.25, 4.0  # capacity.c: a pair is learned only between these (times rated)
_BISECTIONS = 32


class CapacityTuning:
    """capacity.h's bf_capacity_tuning_t, defaults as CapacityTuning.for_params."""

    def __init__(self, params):
        rated = params.nominal_capacity_Ah
        self.rated_Ah = rated
        self.prior_sigma_rel = 0.10
        self.memory_cycles = 0.5
        self.rest_current_A = rated / 50.0
        self.rest_anchor_s = 1e9 if params.ocv_loaded else 3600.0  # 1e9: never (REST_ANCHORS_OFF_S)
        self.full_margin_V = 0.03
        self.full_sigma = 0.005
        self.empty_V = min(row[0] for row in params.ocv_V) + 0.1
        self.empty_current_A = rated / 10.0
        self.empty_soc_max = 0.2
        self.empty_sigma = 0.005
        self.min_dsoc = 0.2
        self.current_sigma_A = 0.01
        self.current_bias_A = 0.01
        self.gap_s = 600.0

    def values(self):
        """The settings in bf_capacity_tuning_t's order (for the native module)."""
        return (self.rated_Ah, self.prior_sigma_rel, self.memory_cycles, self.rest_current_A, self.rest_anchor_s,
                self.full_margin_V, self.full_sigma, self.empty_V, self.empty_current_A, self.empty_soc_max,
                self.empty_sigma, self.min_dsoc, self.current_sigma_A, self.current_bias_A, self.gap_s)


class R0Tuning:
    """resistance.h's bf_r0_tuning_t, defaults as R0Tuning.for_params."""

    def __init__(self, params):
        temps = params.temp_C
        row = min(range(len(temps)), key=lambda i: abs(temps[i] - 25.0))
        table = params.tables["r0_ohm"][row]
        pos = 0.5 * (len(table) - 1)
        k = min(int(pos), len(table) - 2)
        r0 = table[k] + (pos - k) * (table[k + 1] - table[k])
        self.step_min_A = params.nominal_capacity_Ah / 4.0
        self.step_max_s = 30.0
        self.forget_steps = 10.0
        self.soc_min = 0.2
        self.voltage_sigma_V = 0.002
        self.r0_init_ohm = r0
        self.r0_init_sigma_ohm = max(r0, 0.05)

    def values(self):
        """The settings in bf_r0_tuning_t's order (for the native module)."""
        return (self.step_min_A, self.step_max_s, self.forget_steps, self.soc_min, self.voltage_sigma_V,
                self.r0_init_ohm, self.r0_init_sigma_ohm)


class Awtls:
    """The running AWTLS fit in units of the rated capacity (bf_awtls_t)."""

    def __init__(self, q, q_sigma):
        var = q_sigma * q_sigma / (1.0 + q * q)
        w = 1.0 / var
        self.c = [w, q * w, q * q * w, w, q * w, q * q * w]
        self.q = q
        self.q_sigma = q_sigma
        self.updates = 0

    def _cost(self, q):
        c1, c2, c3, c4, c5, c6 = self.c
        q2 = q * q
        n = (((c4 * q - 2.0 * c5) * q + (c1 + c6)) * q - 2.0 * c2) * q + c3
        dn = ((4.0 * c4 * q - 6.0 * c5) * q + 2.0 * (c1 + c6)) * q - 2.0 * c2
        d2n = (12.0 * c4 * q - 12.0 * c5) * q + 2.0 * (c1 + c6)
        d = (1.0 + q2) * (1.0 + q2)
        dd = 4.0 * q * (1.0 + q2)
        d2d = 4.0 + 12.0 * q2
        j = n / d
        dj = (dn - j * dd) / d
        return j, (d2n - 2.0 * dj * dd - j * d2d) / d

    def _quartic(self, q):
        c1, c2, c3, c4, c5, c6 = self.c
        return ((((c5 * q + (2.0 * c4 - c1 - c6)) * q + 3.0 * (c2 - c5)) * q + (c1 + c6 - 2.0 * c3)) * q) - c2

    def _minimise(self):
        best, best_j = _Q_MIN, self._cost(_Q_MIN)[0]
        a = _Q_MIN
        ga = self._quartic(a)
        for _ in range(_GRID):
            b = a * _GRID_RATIO
            gb = self._quartic(b)
            if (ga < 0.0) != (gb < 0.0):
                lo, hi, glo = a, b, ga
                for _ in range(_BISECTIONS):
                    mid = 0.5 * (lo + hi)
                    gm = self._quartic(mid)
                    if (gm < 0.0) == (glo < 0.0):
                        lo, glo = mid, gm
                    else:
                        hi = mid
                q = 0.5 * (lo + hi)
                j = self._cost(q)[0]
                if j < best_j:
                    best, best_j = q, j
            a, ga = b, gb
        if self._cost(a)[0] < best_j:
            best = a
        return best

    def update(self, memory_cycles, x, var_x, y, var_y):
        if not (_finite(x) and _finite(y) and var_x > 0.0 and var_y > 0.0 and _finite(var_x) and _finite(var_y)):
            return False
        decay = math.exp(-abs(x) / memory_cycles)
        self.c = [v * decay for v in self.c]
        wx, wy = 1.0 / var_x, 1.0 / var_y
        c = self.c
        c[0] += x * x * wy
        c[1] += x * y * wy
        c[2] += y * y * wy
        c[3] += x * x * wx
        c[4] += x * y * wx
        c[5] += y * y * wx
        self.updates += 1
        q = self._minimise()
        d2j = self._cost(q)[1]
        self.q = q
        self.q_sigma = math.sqrt(2.0 / d2j) if d2j > 0.0 and _finite(d2j) else q
        return True


class Capacity:
    """capacity.c: the fit and its anchors."""

    def __init__(self, params, tuning):
        self.p, self.t = params, tuning
        self.fit = Awtls(1.0, tuning.prior_sigma_rel)
        self.has_anchor = False
        self.anchor_soc = self.anchor_var = 0.0
        self.charge = self.charge_var = self.anchor_age_s = 0.0
        self.rest_s = 0.0
        self.rest_anchored = False
        self.last_current_A = self.last_voltage_V = self.last_dt_s = self.last_soc = 0.0
        self.last_valid = False

    def _drop(self):
        self.has_anchor = False
        self.charge = self.charge_var = self.anchor_age_s = 0.0

    def _set(self, soc, var):
        self.has_anchor = True
        self.anchor_soc, self.anchor_var = soc, var
        self.charge = self.charge_var = self.anchor_age_s = 0.0

    def _offer(self, soc, var):
        t = self.t
        if not self.has_anchor:
            self._set(soc, var)
            return 0
        x = soc - self.anchor_soc
        if abs(x) < t.min_dsoc:
            if var < self.anchor_var:
                self._set(soc, var)
            return 0
        bias = t.current_bias_A * self.anchor_age_s / (3600.0 * t.rated_Ah)
        var_y = max(self.charge_var + bias * bias, 1e-12)
        # A pair whose own capacity is outside a quarter to four times rated has a wrong anchor in it.
        xy = self.charge * x
        updated = (CAP_UPDATED if _PAIR_Q_MIN * x * x <= xy <= _PAIR_Q_MAX * x * x
                   and self.fit.update(t.memory_cycles, x, var + self.anchor_var, self.charge, var_y) else 0)
        self._set(soc, var)
        return updated

    def _empty(self):
        t = self.t
        if not (self.last_valid and self.last_current_A <= -t.empty_current_A and self.last_voltage_V <= t.empty_V
                and self.last_soc <= t.empty_soc_max):
            return 0
        self.last_valid = False
        spread = -self.last_current_A * self.last_dt_s / (3600.0 * t.rated_Ah * self.fit.q)
        return CAP_ANCHOR_EMPTY | self._offer(0.0, t.empty_sigma * t.empty_sigma + spread * spread / 12.0)

    def step(self, model, dt_s, current_A, voltage_V, temp_C, soc, soc_sigma, ekf_flags, ohmic_V):
        t = self.t
        events = 0
        current_ok = _finite(current_A) and not ekf_flags & _FLAG_CURRENT_INVALID
        voltage_ok = _finite(voltage_V) and _finite(temp_C)
        resting = current_ok and abs(current_A) <= t.rest_current_A
        if not _finite(dt_s) or dt_s < 0.0 or dt_s > t.gap_s or not current_ok:
            events |= self._empty()
            if self.has_anchor:
                events |= CAP_BROKEN
            self._drop()
            self.rest_s = 0.0
            self.rest_anchored = False
        else:
            eta = self.p.eta_charge if current_A > 0.0 else 1.0
            sq = t.current_sigma_A * dt_s / (3600.0 * t.rated_Ah)
            self.charge += eta * current_A * dt_s / (3600.0 * t.rated_Ah)
            self.charge_var += sq * sq
            self.anchor_age_s += dt_s
            if resting:
                self.rest_s += dt_s
            else:
                self.rest_s = 0.0
                self.rest_anchored = False
        if voltage_ok and resting:
            ocv_full = model.ocv(model.locate(1.0, temp_C))[0]
            empty = self._empty()
            if empty:
                events |= empty
            elif voltage_V >= ocv_full - t.full_margin_V:
                events |= CAP_ANCHOR_FULL | self._offer(1.0, t.full_sigma * t.full_sigma)
            elif (self.rest_s >= t.rest_anchor_s and not self.rest_anchored and not ekf_flags & _FLAG_VOLTAGE_INVALID
                  and _finite(soc_sigma) and soc_sigma > 0.0):
                self.rest_anchored = True
                events |= CAP_ANCHOR_REST | self._offer(soc, soc_sigma * soc_sigma)
        self.last_valid = current_ok and voltage_ok and _finite(dt_s) and 0.0 <= dt_s <= t.gap_s
        self.last_current_A = current_A if current_ok else 0.0
        self.last_voltage_V = voltage_V - ohmic_V if voltage_ok else 0.0  # without the instantaneous drop
        self.last_dt_s = dt_s if self.last_valid else 0.0
        self.last_soc = soc
        return self.fit.q * t.rated_Ah, self.fit.q_sigma * t.rated_Ah, events


class Resistance:
    """resistance.c: R0 by recursive least squares on current steps."""

    def __init__(self, params, tuning):
        self.p, self.t = params, tuning
        self.r0_ohm = tuning.r0_init_ohm
        self.var = tuning.r0_init_sigma_ohm * tuning.r0_init_sigma_ohm
        self.growth = 0.0
        self.updates = 0
        self.last_current_A = self.last_voltage_V = 0.0
        self.last_valid = False

    def step(self, model, dt_s, current_A, voltage_V, temp_C, soc):
        t = self.t
        events = 0
        p = self.p
        # A reading the SOC filter refuses is none here either (resistance.c).
        valid = (abs(current_A) <= p.i_max_A and p.v_min_V - VOLTAGE_MARGIN_V <= voltage_V <= p.v_max_V
                 + VOLTAGE_MARGIN_V and TEMP_MIN_C <= temp_C <= TEMP_MAX_C and _finite(soc))
        if valid and self.last_valid and _finite(dt_s) and 0.0 < dt_s <= t.step_max_s:
            di = current_A - self.last_current_A
            if abs(di) >= t.step_min_A and soc >= t.soc_min:
                dv = voltage_V - self.last_voltage_V
                prior = self.var * (1.0 + 1.0 / t.forget_steps)
                gain = prior * di / (di * di * prior + 2.0 * t.voltage_sigma_V * t.voltage_sigma_V)
                r0 = self.r0_ohm + gain * (dv - di * self.r0_ohm)
                var = (1.0 - gain * di) * prior
                if _finite(r0) and _finite(var) and var > 0.0:
                    self.r0_ohm = max(r0, 0.0)
                    self.var = var
                    self.updates += 1
                    table = model.rc("r0_ohm", model.locate(min(max(soc, 0.0), 1.0), temp_C))
                    self.growth = self.r0_ohm / table if table > 1e-6 else 0.0
                    events |= R0_UPDATED
        self.last_valid = valid
        self.last_current_A = current_A if valid else 0.0
        self.last_voltage_V = voltage_V if valid else 0.0
        return self.r0_ohm, math.sqrt(self.var), self.growth, events


class CellHealth:
    """The capacity and R0 estimators of one cell beside its SocEkf, as the
    application steps them (bmsfil_native.CellHealth is the C core's):
    `step(ekf, dt_s, current_A, voltage_V, temp_C, soc, soc_sigma, flags)`
    returns (capacity_Ah, r0_ohm), each nan until learned."""

    def __init__(self, params, capacity_tuning, r0_tuning):
        self.capacity = Capacity(params, capacity_tuning)
        self.resistance = Resistance(params, r0_tuning)

    def step(self, ekf, dt_s, current_A, voltage_V, temp_C, soc, soc_sigma, flags):
        model = ekf.model
        cap = self.capacity.step(model, dt_s, current_A, voltage_V, temp_C, soc, soc_sigma, flags, ekf.out[4])[0]
        r0 = self.resistance.step(model, dt_s, current_A, voltage_V, temp_C, soc)[0]
        return (cap if self.capacity.fit.updates else _NAN), (r0 if self.resistance.updates else _NAN)


_NAN = float("nan")


class Health:
    """health.c: the SOC filter, the capacity fit and the R0 tracker of one cell.

    `step()` returns (soc, soc_sigma, flags, capacity_Ah, capacity_sigma_Ah,
    r0_ohm, r0_sigma_ohm, r0_growth, events), events packed as bf_health_run
    packs them (capacity bits, gap << 5, R0 << 7)."""

    def __init__(self, params):
        self.p = params
        self.ekf = SocEkf(params)
        self.cap_t = CapacityTuning(params)
        self.r0_t = R0Tuning(params)
        self.capacity = Capacity(params, self.cap_t)
        self.r0 = Resistance(params, self.r0_t)

    def start(self, soc, current_A, voltage_V, temp_C):
        self.capacity = Capacity(self.p, self.cap_t)
        self.r0 = Resistance(self.p, self.r0_t)
        if self.ekf.voltage_plausible(voltage_V) and _finite(temp_C):  # bf_health_init: as bf_soc_ekf_start
            self.ekf.start(current_A, voltage_V, temp_C)
        else:
            self.ekf.init_soc(soc, temp_C if _finite(temp_C) else 25.0)

    def step(self, dt_s, current_A, voltage_V, temp_C):
        ekf, events = self.ekf, 0
        if dt_s > self.cap_t.gap_s:
            events |= HEALTH_GAP
            if ekf.restart(self.cap_t.rest_current_A, current_A, voltage_V, temp_C):
                events |= HEALTH_RESTARTED
            soc, sigma, flags, ohmic_V = ekf.x[0], math.sqrt(ekf.P[0]), _FLAG_DT_INVALID, 0.0
        else:
            soc, sigma, _, flags = ekf.step(dt_s, current_A, voltage_V, temp_C)
            ohmic_V = ekf.out[4]
        cap, cap_sigma, cap_events = self.capacity.step(ekf.model, dt_s, current_A, voltage_V, temp_C, soc, sigma,
                                                         flags, ohmic_V)
        r0, r0_sigma, growth, r0_events = self.r0.step(ekf.model, dt_s, current_A, voltage_V, temp_C, soc)
        return (soc, sigma, flags, cap, cap_sigma, r0, r0_sigma, growth,
                cap_events | (events << 5) | (r0_events << 7))
