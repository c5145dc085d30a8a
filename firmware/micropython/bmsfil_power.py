"""State of power in pure MicroPython: csrc/src/power.c's search in pieces
(bf_sop_task_t), line for line, on bmsfil_ekf's cell model. Each horizon's
search starts from the cell's filter state and its last good temperature;
a pulse of constant power is simulated in SUBSTEPS second-order sub-steps
(its limits checked at its first instant and at every sub-step's end) and
the largest power whose pulse keeps every limit is found by regula falsi
with the Illinois step on the pulse's margin (bisection where it stalls),
warm-started from the previous result of the horizon. See docs/power.md.

`PowerSearch(params).step(ekf, sequence)` has the interface of
bmsfil_native.PowerSearch: one sub-step on every SOP_EVERY-th sample, and
the latest result as (horizon index, discharge_W, charge_W), or None.
"""

import math

from bmsfil_ekf import CellModel

SUBSTEPS = 4
ITERATIONS = 32
TOLERANCE = 1e-3
TOLERANCE_TOP = 1e-5
WARM = 0.02
SOP_HORIZONS_S = (2.0, 10.0, 30.0)
SOP_EVERY = 2

BY_VOLTAGE, BY_CURRENT, BY_SOC, BY_TEMP, BY_POWER = 1, 2, 4, 8, 16
_IDLE, _REST, _TOP, _WARM_LO, _WARM_HI, _SEARCH = range(6)
_KEPT_NONE, _KEPT_LO, _KEPT_HI = range(3)


def _ramp_weight(u, one_minus_a):
    if u < 0.05:
        return u * (0.5 - u * (1.0 / 6.0 - u * (1.0 / 24.0)))
    return 1.0 - one_minus_a / u


def _solve_current(direction, e0, r, power):
    """The magnitude of the current that draws `power` (None: none can), as
    2P / (e0 + sqrt(e0^2 -+ 4 r P)): no cancellation for a small power."""
    disc = e0 * e0 - 4.0 * r * power if direction < 0.0 else e0 * e0 + 4.0 * r * power
    if not e0 > 0.0 or disc < 0.0:
        return None
    return 2.0 * power / (e0 + math.sqrt(disc))


class PowerSearch:
    """One cell's search; limits from the parameter set (Params.power_limits), as the firmware's."""

    def __init__(self, params):
        self.p = params
        self.model = CellModel(params)
        (self.v_min, self.v_max, self.i_dis_max, self.i_chg_max, self.soc_min, self.soc_max,
         self.temp_min, self.temp_max, self.temp_chg_min, self.temp_chg_max) = params.power_limits
        self.results = [None] * len(SOP_HORIZONS_S)  # (discharge_W, charge_W) per horizon
        self.latest = None
        self.stage = _IDLE
        self.horizon = 0

    # --- a pulse ---------------------------------------------------------------

    def _pulse_begin(self, power):
        m = self.model
        self.power = power
        self.z, self.i1, self.i2, self.h = self.z0, self.i10, self.i20, self.h0
        self.margin = 3.0e38
        self.by = 0
        self.k = 0
        at = m.locate(self.z0, self.temp)
        ocv = m.ocv(at)[0]
        e0 = ocv + self.m0 * self.dir + self.m * self.h + m.rc("r1_ohm", at) * self.i1 + m.rc("r2_ohm", at) * self.i2
        r0 = m.rc("r0_ohm", at)
        x = _solve_current(self.dir, e0, r0 + self.rn / (1.0 + self.kn * power / ocv), power)
        if x is not None:
            x = _solve_current(self.dir, e0, r0 + self.rn / (1.0 + self.kn * x), power)
        if x is None:
            self.by |= BY_POWER
            self.margin = -1.0
            x = power / ocv
        else:
            self._note_limits(power / x if x > 0.0 else e0, x, self.z0)
        self.x = x

    def _note_limits(self, v, x, z):
        if self.dir < 0.0:
            mv, mz, i_max = (v - self.v_min) / self.v_min, z - self.soc_min, self.i_dis_max
        else:
            mv, mz, i_max = (self.v_max - v) / self.v_max, self.soc_max - z, self.i_chg_max
        mi = (i_max - x) / i_max
        if mv < 0.0:
            self.by |= BY_VOLTAGE
        if mi < 0.0:
            self.by |= BY_CURRENT
        if mz < 0.0:
            self.by |= BY_SOC
        self.margin = min(self.margin, mv, mi, mz)

    def _pulse_substep(self):
        m, d = self.model, self.dir
        eta = self.eta_chg if d > 0.0 else 1.0
        i0 = d * self.x
        dz = eta * self.dt / self.cap_As
        at = m.locate(self.z + i0 * dz, self.temp)
        ocv, docv = m.ocv(at)
        r0, r1, r2 = m.rc("r0_ohm", at), m.rc("r1_ohm", at), m.rc("r2_ohm", at)
        rn = self.rn / (1.0 + self.kn * self.x)
        ah = math.exp(-abs(self.x * dz * self.gamma))
        a1, a2, b1, b2 = self.a1, self.a2, self.b1, self.b2
        e0 = (ocv - 0.5 * docv * dz * i0 + self.m0 * d + self.m * (ah * self.h + (1.0 - ah) * d)
              + r1 * (a1 * self.i1 + (1.0 - a1 - b1) * i0) + r2 * (a2 * self.i2 + (1.0 - a2 - b2) * i0))
        r = r0 + rn + r1 * b1 + r2 * b2 + 0.5 * docv * dz
        x = _solve_current(d, e0, r, self.power)
        if x is None:
            self.by |= BY_POWER
            self.margin = min(self.margin, -1.0)
            return False
        i = d * x
        v = e0 + r * i
        self.x = x
        self.z += 0.5 * (i0 + i) * dz
        self.i1 = a1 * self.i1 + (1.0 - a1 - b1) * i0 + b1 * i
        self.i2 = a2 * self.i2 + (1.0 - a2 - b2) * i0 + b2 * i
        self.h = ah * self.h + (1.0 - ah) * (1.0 if i > 0 else (-1.0 if i < 0 else 0.0))
        self._note_limits(v, x, self.z)
        return True

    # --- the search ------------------------------------------------------------

    def _top(self):
        return self.v_max * (self.i_dis_max if self.dir < 0.0 else self.i_chg_max)

    def _set_lo(self):
        self.lo, self.g_lo = self.power, self.margin

    def _set_hi(self):
        self.hi, self.g_hi, self.by_hi = self.power, self.margin, self.by

    def _done(self, watts):
        self.partial[0 if self.dir < 0.0 else 1] = watts
        return False

    def _search_next(self):
        w = self.hi - self.lo
        if w <= TOLERANCE * self.hi or w <= TOLERANCE_TOP * self._top() or self.pulses >= ITERATIONS:
            return self._done(self.lo)
        if self.slow >= 2:
            power = 0.5 * (self.lo + self.hi)
            self.slow = 0
        else:
            power = (self.lo * self.g_hi - self.hi * self.g_lo) / (self.g_hi - self.g_lo)
            edge = 0.25 * TOLERANCE * self.hi
            power = min(max(power, self.lo + edge), self.hi - edge)
        self.width = w
        self._pulse_begin(power)
        return True

    def _pulse_end(self):
        """Move the search on; False when the direction is done."""
        feasible = self.by == 0
        self.pulses += 1
        stage = self.stage
        if stage == _WARM_LO:
            if feasible:
                self._set_lo()
                self.stage = _WARM_HI
                self._pulse_begin(self.power * (1.0 + WARM) / (1.0 - WARM))
            else:
                self._set_hi()
                self.stage = _REST
                self._pulse_begin(0.0)
            return True
        if stage == _WARM_HI:
            if feasible:
                self._set_lo()
                self.stage = _TOP
                self._pulse_begin(self._top())
                return True
            self._set_hi()
        elif stage == _REST:
            if not feasible:
                return self._done(0.0)
            self._set_lo()
            if self.by_hi == 0:
                self.stage = _TOP
                self._pulse_begin(self._top())
                return True
        elif stage == _TOP:
            if feasible:
                return self._done(self.power)
            self._set_hi()
        else:
            if feasible:
                self._set_lo()
                if self.side == _KEPT_HI:
                    self.g_hi *= 0.5
                self.side = _KEPT_HI
            else:
                self._set_hi()
                if self.side == _KEPT_LO:
                    self.g_lo *= 0.5
                self.side = _KEPT_LO
            self.slow = self.slow + 1 if self.hi - self.lo > 0.5 * self.width else 0
            return self._search_next()
        self.side = _KEPT_NONE
        self.slow = 0
        self.stage = _SEARCH
        return self._search_next()

    def _direction_begin(self, direction):
        self.dir = direction
        self.pulses = 0
        self.by_hi = 0
        prev = self.results[self.horizon]
        w = None if prev is None else prev[0 if direction < 0.0 else 1]
        if WARM > 0.0 and w is not None and w > 0.0 and w * (1.0 + WARM) < self._top():
            self.stage = _WARM_LO
            self._pulse_begin(w * (1.0 - WARM))
        else:
            self.stage = _REST
            self._pulse_begin(0.0)

    def _horizon_begin(self, ekf):
        """False when the result is known without a pulse (outside the temperature
        window); outside the charge window only the discharge is searched."""
        temp = ekf.last_temp_C
        self.partial = [0.0, 0.0]
        if temp < self.temp_min or temp > self.temp_max:
            return False
        self.charge_known = temp < self.temp_chg_min or temp > self.temp_chg_max  # 0 W, not searched
        m = self.model
        at = m.locate(ekf.x[0], temp)
        self.z0, self.i10, self.i20, self.h0 = ekf.x[0], ekf.x[1], ekf.x[2], ekf.x[3]
        self.temp = temp
        self.dt = SOP_HORIZONS_S[self.horizon] / SUBSTEPS
        self.cap_As = m.row("capacity_Ah", at) * 3600.0
        self.rn, self.kn = m.row("rn_ohm", at), self.p.rn_sat_per_A
        self.m0, self.m, self.gamma = m.row("hyst_m0_V", at), m.row("hyst_m_V", at), m.row("hyst_gamma", at)
        self.eta_chg = self.p.eta_charge
        u1, u2 = self.dt / m.rc("tau1_s", at), self.dt / m.rc("tau2_s", at)
        self.a1, self.a2 = math.exp(-u1), math.exp(-u2)
        self.b1, self.b2 = _ramp_weight(u1, 1.0 - self.a1), _ramp_weight(u2, 1.0 - self.a2)
        self._direction_begin(-1.0)
        return True

    def _work(self, ekf, budget):
        """At most `budget` sub-steps; publishes a horizon when both directions are done."""
        if self.stage == _IDLE and not self._horizon_begin(ekf):
            return self._publish()
        for _ in range(budget):
            if self._pulse_substep():
                self.k += 1
                if self.k < SUBSTEPS:
                    continue
            if self._pulse_end():
                continue
            if self.dir < 0.0 and not self.charge_known:
                self._direction_begin(1.0)
                continue
            return self._publish()
        return None

    def _publish(self):
        k = self.horizon
        self.results[k] = (self.partial[0], self.partial[1])
        self.latest = (k, self.partial[0], self.partial[1])
        self.horizon = (k + 1) % len(SOP_HORIZONS_S)
        self.stage = _IDLE
        return k

    def step(self, ekf, sequence):
        if sequence % SOP_EVERY == 0:
            self._work(ekf, 1)
        return self.latest
