"""The core-temperature filter of the C core in pure MicroPython (also runs on CPython).

A port of csrc/src/thermal.c, line for line in plain float arithmetic: the
two-state lumped model of Lin et al. (2013) (core and surface, heat into
the core, the surface losing it to the ambient), discretised exactly for
each interval by the closed-form 2x2 matrix exponential, and a Kalman filter
on [core, surface] that measures the surface (innovation gate, Joseph form,
covariance repair, clamps). The heat is i (v - OCV(SOC, T)) at the SOC
filter's SOC and temperature, as the firmware and the native variant take
it (bmsfil_native.CellThermal); the tuning is the C core's default
(bmsfil.thermal.ThermalTuning), `THERMAL_TUNING` in bf_thermal_tuning_t's
order. On a port whose float is double the results are the float32 C core's
to its rounding.
"""

import math

from bmsfil_ekf import _finite  # not nan, not inf (math.inf and math.isfinite are optional on small ports)

# bf_thermal_tuning_t's defaults (host/bmsfil/thermal.py ThermalTuning), in declaration order:
# q_heat_W2_s, q_heat_rel2_s, q_surface_K2_per_s, r_surface_K2, p0_core_K2, p0_surface_K2, p_floor_K2,
# p_max_K2, gate_sigma, heat_max_W, temp_min_C, temp_max_C, dt_max_s.
THERMAL_TUNING = (0.1, 0.1, 1e-4, 0.01, 0.01, 0.01, 1e-6, 100.0, 5.0, 100.0, -80.0, 150.0, 3600.0)
GATE_TAU_S = 60.0  # BF_THERMAL_GATE_TAU_S: a disagreement beyond the gate is followed within about this
SERIES_BELOW = 0.5  # below it, sinh(x)/x from its series (thermal.c)
MAX_CORRELATION = 0.9999
# The SOC filter's flags after which its step gives no heat (bmsfil_ekf).
_NO_HEAT = 0x01 | 0x02 | 0x08  # voltage, current or interval invalid


class ThermalFilter:
    """bf_thermal_t with its model (cc, cs, rc, ru: the set's "thermal"
    section in bmsfil_ekf.THERMAL's order) and tuning."""

    def __init__(self, thermal, tuning=THERMAL_TUNING):
        self.cc, self.cs, self.rc, self.ru = thermal
        (self.q_heat, self.q_heat_rel, self.q_surface, self.r_surface, self.p0_core, self.p0_surface,
         self.p_floor, self.p_max, self.gate_sigma, self.heat_max, self.temp_min, self.temp_max,
         self.dt_max) = tuning
        self.x = [0.0, 0.0]
        self.P = [0.0, 0.0, 0.0, 0.0]
        self.last_heat = 0.0
        self.last_ambient = 0.0
        self.ambient_shift = 0.0  # how far the surroundings moved from the given ambient (thermal.c)
        self.gated_side = 0.0  # +1/-1: the last reading was beyond the gate above/below; 0: inside

    def _in_range(self, v):
        return _finite(v) and self.temp_min <= v <= self.temp_max

    def init(self, surface_C, ambient_C):
        """bf_thermal_init; False (nothing changed) when neither reading is in range."""
        surface_ok, ambient_ok = self._in_range(surface_C), self._in_range(ambient_C)
        if not surface_ok and not ambient_ok:
            return False
        start = surface_C if surface_ok else ambient_C
        self.x = [start, start]
        self.P = [self.p0_core, 0.0, 0.0, self.p0_surface]
        self._repair(self.P)
        self.last_heat = 0.0
        self.last_ambient = ambient_C if ambient_ok else surface_C
        self.ambient_shift = 0.0
        self.gated_side = 0.0
        return True

    def _repair(self, P):
        repaired = False
        off = 0.5 * (P[1] + P[2])
        for d in (0, 3):
            if not P[d] >= self.p_floor:
                P[d] = self.p_floor
                repaired = True
            elif P[d] > self.p_max:
                off *= math.sqrt(self.p_max / P[d])
                P[d] = self.p_max
                repaired = True
        lim = MAX_CORRELATION * math.sqrt(P[0] * P[3])
        if not _finite(off):
            off = 0.0
            repaired = True
        elif abs(off) > lim:
            off = lim if off > 0.0 else -lim
            repaired = True
        P[1] = P[2] = off
        return repaired

    def discretise(self, dt_s, heat_W, ambient_C):
        """(Ad as [a00, a01, a10, a11], steady state [core, surface]) for the held inputs."""
        b = 1.0 / (self.rc * self.cc)
        a = -b
        c = 1.0 / (self.rc * self.cs)
        dd = -c - 1.0 / (self.ru * self.cs)
        tau = 0.5 * (a + dd)
        half = 0.5 * (a - dd)
        delta = math.sqrt(half * half + b * c)
        det = 1.0 / (self.rc * self.cc * self.ru * self.cs)
        l2 = tau - delta
        l1 = det / l2
        e1 = math.exp(l1 * dt_s)
        e2 = math.exp(l2 * dt_s)
        c0 = 0.5 * (e1 + e2)
        if delta * dt_s < SERIES_BELOW:
            x = delta * dt_s
            x2 = x * x
            shc = 1.0 + x2 * (1.0 / 6.0 + x2 * (1.0 / 120.0 + x2 * (1.0 / 5040.0 + x2 * (1.0 / 362880.0))))
            s0 = math.exp(0.5 * (l1 + l2) * dt_s) * dt_s * shc
        else:
            s0 = (e1 - e2) / (l1 - l2)
        surface = ambient_C + self.ru * heat_W
        return (c0 + s0 * half, s0 * b, s0 * c, c0 - s0 * half), (surface + self.rc * heat_W, surface)

    def step(self, dt_s, heat_W, surface_C, ambient_C):
        """bf_thermal_step: the core temperature after the sample (the state
        unchanged for an interval that is not valid); ArithmeticError where
        the C core returns BF_E_NUMERIC."""
        if not (_finite(dt_s) and 0.0 < dt_s <= self.dt_max):
            if dt_s > self.dt_max:  # time not seen, the cell settled: start again (bf_thermal_step)
                self.init(surface_C, ambient_C if self._in_range(ambient_C) else self.last_ambient)
            return self.x[0]
        heat = heat_W if _finite(heat_W) and abs(heat_W) <= self.heat_max else self.last_heat
        ambient = ambient_C if self._in_range(ambient_C) else self.last_ambient
        shift, side = self.ambient_shift, self.gated_side
        Ad, ss = self.discretise(dt_s, heat, min(max(ambient + shift, self.temp_min), self.temp_max))
        x0, x1 = self.x[0] - ss[0], self.x[1] - ss[1]
        x = [ss[0] + Ad[0] * x0 + Ad[1] * x1, ss[1] + Ad[2] * x0 + Ad[3] * x1]
        S = self.P
        AP = [Ad[0] * S[0] + Ad[1] * S[2], Ad[0] * S[1] + Ad[1] * S[3],
              Ad[2] * S[0] + Ad[3] * S[2], Ad[2] * S[1] + Ad[3] * S[3]]
        P = [AP[0] * Ad[0] + AP[1] * Ad[1], AP[0] * Ad[2] + AP[1] * Ad[3],
             AP[2] * Ad[0] + AP[3] * Ad[1], AP[2] * Ad[2] + AP[3] * Ad[3]]
        P[0] += (self.q_heat + self.q_heat_rel * heat * heat) / (self.cc * self.cc) * dt_s
        P[3] += self.q_surface * dt_s
        self._repair(P)
        if self._in_range(surface_C):
            r = self.r_surface
            innov = surface_C - x[1]
            s = P[3] + r
            gate2 = self.gate_sigma * self.gate_sigma
            if innov * innov > gate2 * s:
                # Twice beyond on one side: a shift of the surroundings (core, surface, ambient), at a rate (thermal.c).
                side_now = 1.0 if innov > 0.0 else -1.0
                if side == side_now:
                    share = dt_s / GATE_TAU_S if dt_s < GATE_TAU_S else 1.0
                    grow = (innov * innov / gate2 - s) * share
                    P = [P[0] + grow, P[1] + grow, P[2] + grow, P[3] + grow]
                    s += grow
                    span = self.temp_max - self.temp_min
                    shift += grow * innov / (innov * innov / gate2 if innov * innov > gate2 * s else s)
                    shift = min(max(shift, -span), span)
                side = side_now
                if innov * innov > gate2 * s:
                    s = innov * innov / gate2
                    r = s - P[3]
            else:
                side = 0.0
            k0, k1 = P[1] / s, P[3] / s
            x[0] += k0 * innov
            x[1] += k1 * innov
            # Joseph form with I - K H = [[1, -k0], [0, 1 - k1]].
            m00, m01 = P[0] - k0 * P[2], P[1] - k0 * P[3]
            m10, m11 = (1.0 - k1) * P[2], (1.0 - k1) * P[3]
            P = [m00 - m01 * k0 + k0 * r * k0, m01 * (1.0 - k1) + k0 * r * k1,
                 m10 - m11 * k0 + k1 * r * k0, m11 * (1.0 - k1) + k1 * r * k1]
            self._repair(P)
        for i in (0, 1):
            if not _finite(x[i]):
                raise ArithmeticError("thermal step: state not finite")
            x[i] = min(max(x[i], self.temp_min), self.temp_max)
        if not (_finite(P[0]) and _finite(P[3]) and _finite(P[1])):
            raise ArithmeticError("thermal step: covariance not finite")
        self.x, self.P, self.last_heat, self.last_ambient = x, P, heat, ambient
        self.ambient_shift, self.gated_side = shift, side
        return x[0]


class CellThermal:
    """One cell's core-temperature filter, run as the firmware and the
    native variant run it: `step(ekf, dt_s, current_A, voltage_V, temp_C)`
    after the cell's bmsfil_ekf.SocEkf.step returns the core temperature,
    nan until a valid temperature reading has started the filter (core and
    surface at that reading, the ambient taken as it). `params.thermal` must
    be the set's thermal model (not None)."""

    def __init__(self, params):
        self.filter = ThermalFilter(params.thermal)
        self.ambient_C = None

    def step(self, ekf, dt_s, current_A, voltage_V, temp_C):
        if self.ambient_C is None:
            if temp_C != temp_C or not self.filter.init(temp_C, temp_C):
                return float("nan")
            self.ambient_C = temp_C
        heat = float("nan")
        if not ekf.out[0] & _NO_HEAT:
            m = ekf.model
            heat = current_A * (voltage_V - m.ocv(m.locate(min(max(ekf.x[0], 0.0), 1.0), ekf.last_temp_C))[0])
        return self.filter.step(dt_s, heat, temp_C, self.ambient_C)
