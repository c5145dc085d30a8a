"""Core temperature: the two-state thermal model and its Kalman filter
(thermal.h) running the C core, and a float64 reference of the same filter.

Use (params a ParameterSet with a thermal model, from bmsfil fit --thermal)::

    est = CoreTempEstimator(params)
    trace = est.run(recording)
    trace.core_C, trace.core_sigma_C, trace.core_C - trace.surface_meas_C

The heat is i (v - OCV(SOC, T)) at the SOC filter's SOC (thermal.h says why
not i^2 R0). The ambient is, by default, the first surface reading of the
recording: a cell that has rested in its chamber is at the chamber's
temperature as its own sensor reads it (at the start of the LG HG2 drive
cycles the case sensor reads 0.1-1.6 K below the chamber's set point: the
AD592's ±1 K plus the chamber's own error); a number or a measured channel
can be given instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from bmsfil._core import ffi, lib
from bmsfil.core import (InitialSoc, SocEstimator, _check, as_f32, pack_cell_params, pack_tuning, start_estimator,
                         start_tuning)
from bmsfil.params import ParameterSet, ThermalParams
from bmsfil.recording import SAMPLE_LIMITS, Recording

__all__ = [
    "CellThermal", "CoreTempEstimator", "CoreTempTrace", "ReferenceThermalFilter", "ThermalParams", "ThermalTuning",
    "describe_thermal_flags", "discretise", "heat_W", "simulate",
]

#: A surface reading beyond the gate is taken, at this rate, as a change of the
#: surroundings (BF_THERMAL_GATE_TAU_S, thermal.h; cffi carries no float constant).
GATE_TAU_S = 60.0

FLAG_NAMES = {
    lib.BF_THERMAL_SURFACE_INVALID: "surface_invalid",
    lib.BF_THERMAL_HEAT_INVALID: "heat_invalid",
    lib.BF_THERMAL_AMBIENT_INVALID: "ambient_invalid",
    lib.BF_THERMAL_DT_INVALID: "dt_invalid",
    lib.BF_THERMAL_GATED: "gated",
    lib.BF_THERMAL_CLAMPED: "clamped",
    lib.BF_THERMAL_COV_REPAIRED: "cov_repaired",
}


def describe_thermal_flags(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


@dataclass(frozen=True)
class ThermalTuning:
    """Noise and guard settings of the core-temperature filter
    (`bf_thermal_tuning_t`). The defaults are statements about the sensors
    and the heat, not fits:

    - heat: 0.1 W of absolute error and 10 % of relative error, each
      correlated over about 10 s (the SOC filter's OCV error and the
      entropic heat left out): spectral densities 0.1^2 x 10 = 0.1 W^2 s and
      0.1^2 x 10 = 0.1 s;
    - surface: a chamber or a pack's air drifts by about 0.5 K an hour
      (0.25 / 3600 = 7e-5 K^2/s, rounded up to 1e-4);
    - a surface reading is good to 0.1 K (one step of the LG HG2 logger's
      0.105 K resolution) apart from its offset, which the ambient absorbs;
    - start: a rested cell's core at its surface (after ten minutes' rest
      the core-to-surface time constant, about a minute, leaves nothing)
      and the surface known as a reading is: 0.01 K^2 each (1 K^2 for the
      core, as before 2026-12-06, let a 0.1 K step of the surface reading
      in the first seconds pull the core estimate up to 1.1 K below the
      surface, through the correlation the first predictions build);
    - variances between 1e-6 and 100 K^2; innovations beyond 5 sigma
      down-weighted;
    - heat beyond 100 W is not a single cell's; temperatures within the
      recordings' plausible range; intervals up to an hour.
    """

    q_heat_W2_s: float = 0.1
    q_heat_rel2_s: float = 0.1
    q_surface_K2_per_s: float = 1e-4
    r_surface_K2: float = 0.01
    p0_core_K2: float = 0.01
    p0_surface_K2: float = 0.01
    p_floor_K2: float = 1e-6
    p_max_K2: float = 100.0
    gate_sigma: float = 5.0
    heat_max_W: float = 100.0
    temp_min_C: float = SAMPLE_LIMITS["temperature"][0]
    temp_max_C: float = SAMPLE_LIMITS["temperature"][1]
    dt_max_s: float = 3600.0

    def packed(self) -> "ffi.CData":
        c = ffi.new("bf_thermal_tuning_t *")
        for f in fields(self):
            setattr(c, f.name, getattr(self, f.name))
        _check(lib.bf_thermal_tuning_check(c), "thermal tuning")
        return c


def pack_thermal(tp: ThermalParams) -> "ffi.CData":
    c = ffi.new("bf_thermal_params_t *")
    for f in fields(tp):
        setattr(c, f.name, getattr(tp, f.name))
    _check(lib.bf_thermal_params_check(c), "thermal parameters")
    return c


# --- float64 reference --------------------------------------------------------------------------


def system(tp: ThermalParams) -> tuple[np.ndarray, np.ndarray]:
    """Continuous model dx/dt = A x + B [Q, Ta] of x = [Tc, Ts]."""
    cc, cs, rc, ru = tp.cc_J_per_K, tp.cs_J_per_K, tp.rc_K_per_W, tp.ru_K_per_W
    A = np.array([[-1.0 / (rc * cc), 1.0 / (rc * cc)], [1.0 / (rc * cs), -1.0 / (rc * cs) - 1.0 / (ru * cs)]])
    B = np.array([[1.0 / cc, 0.0], [0.0, 1.0 / (ru * cs)]])
    return A, B


def discretise(tp: ThermalParams, dt_s: float | np.ndarray) -> np.ndarray:
    """e^{A dt} by eigen-decomposition in float64, for one dt or an array of them (shape (..., 2, 2))."""
    A, _ = system(tp)
    lam, V = np.linalg.eig(A)
    lam, V = lam.real, V.real
    Vi = np.linalg.inv(V)
    e = np.exp(np.multiply.outer(np.asarray(dt_s, dtype=np.float64), lam))
    return np.einsum("ij,...j,jk->...ik", V, e, Vi)


def steady_state(tp: ThermalParams, heat_W: np.ndarray | float, ambient_C: np.ndarray | float) -> np.ndarray:
    """[Tc, Ts] the held inputs lead to (shape (..., 2))."""
    ts = np.asarray(ambient_C, dtype=np.float64) + tp.ru_K_per_W * np.asarray(heat_W, dtype=np.float64)
    return np.stack(np.broadcast_arrays(ts + tp.rc_K_per_W * np.asarray(heat_W, dtype=np.float64), ts), axis=-1)


def simulate(tp: ThermalParams, dt_s: np.ndarray, heat_W: np.ndarray, ambient_C: np.ndarray | float,
             x0: tuple[float, float]) -> np.ndarray:
    """The model alone in float64 (no filter): [Tc, Ts] after each sample, the
    inputs of a sample held over the interval that ends at it (shape (n, 2))."""
    dt = np.asarray(dt_s, dtype=np.float64)
    heat = np.asarray(heat_W, dtype=np.float64)
    ok = np.isfinite(dt) & (dt > 0)
    Ad = discretise(tp, np.where(ok, dt, 0.0))
    ss = steady_state(tp, np.nan_to_num(heat), np.broadcast_to(np.asarray(ambient_C, dtype=np.float64), heat.shape))
    out = np.empty((len(dt), 2))
    x = np.asarray(x0, dtype=np.float64)
    for k in range(len(dt)):
        if ok[k]:
            x = ss[k] + Ad[k] @ (x - ss[k])
        out[k] = x
    return out


def heat_W(params: ParameterSet, soc: np.ndarray, temp_C: np.ndarray, current_A: np.ndarray,
           voltage_V: np.ndarray) -> np.ndarray:
    """Irreversible heat i (v - OCV(SOC, T)) in float64 (NaN where an input is not finite)."""
    cell = params.cell
    soc = np.clip(np.asarray(soc, dtype=np.float64), 0.0, 1.0)
    temps = np.asarray(cell.temp_C)
    grid = cell.ocv_soc
    rows = np.array([np.interp(soc, grid, row) for row in cell.ocv_V])  # (n_temps, n)
    t = np.clip(np.nan_to_num(np.asarray(temp_C, dtype=np.float64), nan=temps[0]), temps[0], temps[-1])
    if len(temps) == 1:
        ocv = rows[0]
    else:
        k = np.clip(np.searchsorted(temps, t, side="right") - 1, 0, len(temps) - 2)
        w = (t - temps[k]) / (temps[k + 1] - temps[k])
        ocv = (1 - w) * rows[k, np.arange(len(t))] + w * rows[k + 1, np.arange(len(t))]
    q = np.asarray(current_A, dtype=np.float64) * (np.asarray(voltage_V, dtype=np.float64) - ocv)
    bad = ~(np.isfinite(soc) & np.isfinite(np.asarray(temp_C, dtype=float)))
    return np.where(bad, np.nan, q)


class ReferenceThermalFilter:
    """The filter of thermal.h in float64, step by step, for checking the C
    core (same equations, same guards; e^{A dt} by eigen-decomposition
    rather than the C's closed form)."""

    def __init__(self, tp: ThermalParams, tuning: ThermalTuning, surface_C: float, ambient_C: float) -> None:
        self.tp, self.t = tp, tuning
        self._start(surface_C, ambient_C)

    def _ok(self, v: float) -> bool:
        return bool(np.isfinite(v) and self.t.temp_min_C <= v <= self.t.temp_max_C)

    def _start(self, surface_C: float, ambient_C: float) -> None:
        """bf_thermal_init (the caller checks that one reading is in range)."""
        start = surface_C if self._ok(surface_C) else ambient_C
        self.x = np.array([start, start], dtype=np.float64)
        self.P = np.diag([self.t.p0_core_K2, self.t.p0_surface_K2]).astype(np.float64)
        self._repair()
        self.heat = 0.0
        self.ambient = ambient_C if self._ok(ambient_C) else surface_C
        self.ambient_shift = 0.0
        self.gated_side = 0.0

    def _repair(self) -> int:
        t, P = self.t, self.P
        off = 0.5 * (P[0, 1] + P[1, 0])
        repaired = 0
        for i in range(2):
            if not P[i, i] >= t.p_floor_K2:
                P[i, i] = t.p_floor_K2
                repaired = 1
            elif P[i, i] > t.p_max_K2:
                off *= np.sqrt(t.p_max_K2 / P[i, i])
                P[i, i] = t.p_max_K2
                repaired = 1
        lim = 0.9999 * np.sqrt(P[0, 0] * P[1, 1])
        if abs(off) > lim:
            off = np.copysign(lim, off)
            repaired = 1
        P[0, 1] = P[1, 0] = off
        return repaired

    def step(self, dt_s: float, heat: float, surface_C: float, ambient_C: float) -> tuple[float, float, float, int]:
        """One sample; returns (core_C, core_sigma_C, surface_C, flags)."""
        t, tp = self.t, self.tp
        if not (np.isfinite(dt_s) and 0 < dt_s <= t.dt_max_s):
            ambient = ambient_C if self._ok(ambient_C) else self.ambient
            if dt_s > t.dt_max_s and (self._ok(surface_C) or self._ok(ambient)):
                self._start(surface_C, ambient)  # time not seen, the cell settled: start again (bf_thermal_step)
            return self.x[0], np.sqrt(self.P[0, 0]), self.x[1], int(lib.BF_THERMAL_DT_INVALID)
        flags = 0
        if np.isfinite(heat) and abs(heat) <= t.heat_max_W:
            self.heat = heat
        else:
            flags |= lib.BF_THERMAL_HEAT_INVALID
        if np.isfinite(ambient_C) and t.temp_min_C <= ambient_C <= t.temp_max_C:
            self.ambient = ambient_C
        else:
            flags |= lib.BF_THERMAL_AMBIENT_INVALID
        Ad = discretise(tp, dt_s)
        ss = steady_state(tp, self.heat, min(max(self.ambient + self.ambient_shift, t.temp_min_C), t.temp_max_C))
        self.x = ss + Ad @ (self.x - ss)
        self.P = Ad @ self.P @ Ad.T
        self.P[0, 0] += (t.q_heat_W2_s + t.q_heat_rel2_s * self.heat**2) / tp.cc_J_per_K**2 * dt_s
        self.P[1, 1] += t.q_surface_K2_per_s * dt_s
        flags |= self._repair() * lib.BF_THERMAL_COV_REPAIRED
        if np.isfinite(surface_C) and t.temp_min_C <= surface_C <= t.temp_max_C:
            r = t.r_surface_K2
            y = surface_C - self.x[1]
            S = self.P[1, 1] + r
            if y * y > t.gate_sigma**2 * S:
                # Twice beyond on one side: a shift of the surroundings (core, surface, ambient), at a
                # rate; then the rest down-weighted (bf_thermal_step).
                side = 1.0 if y > 0 else -1.0
                if self.gated_side == side:
                    grow = (y * y / t.gate_sigma**2 - S) * min(dt_s / GATE_TAU_S, 1.0)
                    self.P += grow
                    S += grow
                    span = t.temp_max_C - t.temp_min_C
                    self.ambient_shift = min(max(self.ambient_shift + grow * y / max(S, y * y / t.gate_sigma**2),
                                                 -span), span)
                self.gated_side = side
                if y * y > t.gate_sigma**2 * S:
                    S = y * y / t.gate_sigma**2
                    r = S - self.P[1, 1]
                flags |= lib.BF_THERMAL_GATED
            else:
                self.gated_side = 0.0
            K = self.P[:, 1] / S
            self.x = self.x + K * y
            IKH = np.array([[1.0, -K[0]], [0.0, 1.0 - K[1]]])
            self.P = IKH @ self.P @ IKH.T + r * np.outer(K, K)
            flags |= self._repair() * lib.BF_THERMAL_COV_REPAIRED
        else:
            flags |= lib.BF_THERMAL_SURFACE_INVALID
        clamped = np.clip(self.x, t.temp_min_C, t.temp_max_C)
        if np.any(clamped != self.x):
            flags |= lib.BF_THERMAL_CLAMPED
            self.x = clamped
        return float(self.x[0]), float(np.sqrt(self.P[0, 0])), float(self.x[1]), int(flags)


# --- the C core -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreTempTrace:
    """Per-sample output of a core-temperature run."""

    time_s: np.ndarray
    core_C: np.ndarray
    core_sigma_C: np.ndarray
    surface_C: np.ndarray        # the filter's surface temperature
    surface_meas_C: np.ndarray   # what the sensor read
    heat_W: np.ndarray
    soc: np.ndarray              # the SOC filter's (NaN when the heat was given)
    flags: np.ndarray
    ambient_C: np.ndarray

    @property
    def core_minus_surface_C(self) -> np.ndarray:
        return self.core_C - self.surface_C

    def summary(self) -> dict[str, float | None]:
        """What `bmsfil eval` reports of it (its JSON's "core_temperature"):
        the core's peak and last value with the last 1 sigma, how far the core
        ran above the case's reading (largest and mean, over the readings the
        filter took), and the share of
        readings beyond the filter's gate. None where no core was estimated."""
        core = np.flatnonzero(np.isfinite(self.core_C))
        above = self.core_C - self.surface_meas_C
        # Against the readings the filter took: not one it found implausible or beyond its gate.
        refused = (self.flags & (lib.BF_THERMAL_GATED | lib.BF_THERMAL_SURFACE_INVALID)) != 0
        both = np.isfinite(above) & ~refused

        def value(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        last = int(core[-1]) if core.size else -1
        return {
            "core_max_C": value(np.max(self.core_C[core])) if core.size else None,
            "core_end_C": value(self.core_C[last]) if core.size else None,
            "core_sigma_end_C": value(self.core_sigma_C[last]) if core.size else None,
            "core_above_case_max_K": value(np.max(above[both])) if both.any() else None,
            "core_above_case_mean_K": value(np.mean(above[both])) if both.any() else None,
            "readings_gated_share": float(np.mean((self.flags & lib.BF_THERMAL_GATED) != 0)) if self.flags.size else None,
        }


def first_plausible_temp(recording: Recording, tuning: ThermalTuning | None = None) -> int | None:
    """Index of the first temperature reading the thermal filter takes
    (inside the tuning's temp_min_C..temp_max_C), None if there is none."""
    t = tuning or ThermalTuning()
    ok = np.flatnonzero((recording.temp_C >= t.temp_min_C) & (recording.temp_C <= t.temp_max_C))
    return int(ok[0]) if ok.size else None


def ambient_of(recording: Recording, ambient: str | float | np.ndarray) -> np.ndarray:
    """The ambient per sample: "start" (the first plausible surface reading: a
    rested cell is at its surroundings' temperature, as its own sensor reads
    it), "meta" (the recording's ambient_temp_C), a number, or an array (a
    measured channel)."""
    n = len(recording)
    if isinstance(ambient, str):
        if ambient == "start":
            first = first_plausible_temp(recording)
            if first is None:
                raise ValueError(f"recording {recording.meta.name!r}: no plausible temperature to take the ambient from")
            return np.full(n, recording.temp_C[first])
        if ambient == "meta":
            if recording.meta.ambient_temp_C is None:
                raise ValueError(f"recording {recording.meta.name!r}: no ambient_temp_C in its metadata")
            return np.full(n, float(recording.meta.ambient_temp_C))
        raise ValueError(f"ambient: expected 'start', 'meta', a number or an array, got {ambient!r}")
    values = np.broadcast_to(np.asarray(ambient, dtype=np.float64), (n,))
    return np.array(values)


class CoreTempEstimator:
    """One cell's SOC filter and core-temperature filter (C core, thermal.h)."""

    def __init__(self, params: ParameterSet, thermal: ThermalParams | None = None,
                 tuning: ThermalTuning | None = None) -> None:
        thermal = thermal or params.thermal
        if thermal is None:
            raise ValueError(f"parameter set {params.name!r} has no thermal model: fit one with bmsfil fit --thermal "
                             "REC ... or give ThermalParams")
        self.params, self.thermal, self.tuning = params, thermal, tuning or ThermalTuning()
        self._cell = pack_cell_params(params)
        self._filter = pack_tuning(params.filter)
        self._tp = pack_thermal(thermal)
        self._tt = self.tuning.packed()
        self._ekf = ffi.new("bf_soc_ekf_t *")
        self._state = ffi.new("bf_thermal_t *")

    # SOC filter start (as SocEstimator: start_estimator calls these).
    def init_soc(self, soc: float, temp_C: float, sigma: float | None = None) -> None:
        _check(lib.bf_soc_ekf_init_soc(self._ekf, self._cell, start_tuning(self.params, sigma, self._filter), soc,
                                       temp_C), "init_soc")

    def init_ocv(self, voltage_V: float, temp_C: float) -> None:
        _check(lib.bf_soc_ekf_init_ocv(self._ekf, self._cell, self._filter, voltage_V, temp_C), "init_ocv")

    def start(self, current_A: float, voltage_V: float, temp_C: float) -> None:
        _check(lib.bf_soc_ekf_start(self._ekf, self._cell, self._filter, current_A, voltage_V, temp_C), "start")

    def start_thermal(self, surface_C: float, ambient_C: float) -> None:
        _check(lib.bf_thermal_init(self._state, self._tp, self._tt, surface_C, ambient_C), "thermal init")

    @property
    def x(self) -> np.ndarray:
        return np.array(list(self._state.x), dtype=np.float64)

    @property
    def P(self) -> np.ndarray:
        return np.array([list(r) for r in self._state.P], dtype=np.float64)

    def run_heat(self, dt_s: np.ndarray, heat_W: np.ndarray, surface_C: np.ndarray,
                 ambient_C: np.ndarray | None = None, time_s: np.ndarray | None = None) -> CoreTempTrace:
        """The thermal filter alone on a given heat, continuing from the current state."""
        n = len(dt_s)
        ins = [as_f32(a) for a in (dt_s, heat_W, surface_C)]
        amb = as_f32(ambient_C) if ambient_C is not None else None
        if any(len(a) != n for a in ins) or (amb is not None and len(amb) != n):
            raise ValueError("run_heat: dt_s, heat_W, surface_C (and ambient_C) must have equal lengths")
        outs = [np.empty(n, dtype=np.float32) for _ in range(3)]
        flags = np.empty(n, dtype=np.uint8)
        _check(lib.bf_thermal_run_heat(
            self._state, self._tp, self._tt, *(ffi.from_buffer("float[]", a) for a in ins),
            ffi.from_buffer("float[]", amb) if amb is not None else ffi.NULL, n,
            *(ffi.from_buffer("float[]", a) for a in outs), ffi.from_buffer("uint8_t[]", flags)), "thermal run")
        core, sigma, surf = (a.astype(np.float64) for a in outs)
        return CoreTempTrace(
            np.asarray(time_s if time_s is not None else np.cumsum(np.nan_to_num(dt_s)), dtype=np.float64), core,
            sigma, surf, np.asarray(surface_C, dtype=np.float64), np.asarray(heat_W, dtype=np.float64),
            np.full(n, np.nan), flags,
            np.asarray(ambient_C, dtype=np.float64) if ambient_C is not None else np.full(n, np.nan))

    def run(self, recording: Recording, ambient: str | float | np.ndarray = "start",
            initial_soc: InitialSoc = "ocv") -> CoreTempTrace:
        """Start both filters at the recording's first sample and run it all
        (the SOC filter from the first sample's OCV or a given SOC; the core
        and surface at the first surface reading)."""
        amb = ambient_of(recording, ambient)
        start_estimator(self, recording, initial_soc)
        k = first_plausible_temp(recording, self.tuning)
        self.start_thermal(float(recording.temp_C[k]) if k is not None else float("nan"), float(amb[0]))
        n = len(recording)
        ins = [as_f32(a) for a in (recording.dt_s, recording.current_A, recording.voltage_V, recording.temp_C, amb)]
        outs = [np.empty(n, dtype=np.float32) for _ in range(5)]
        flags = np.empty(n, dtype=np.uint8)
        _check(lib.bf_thermal_run(
            self._ekf, self._cell, self._filter, self._state, self._tp, self._tt,
            *(ffi.from_buffer("float[]", a) for a in ins), n,
            *(ffi.from_buffer("float[]", a) for a in outs), ffi.from_buffer("uint8_t[]", flags)), "thermal run")
        soc, core, sigma, surf, heat = (a.astype(np.float64) for a in outs)
        return CoreTempTrace(np.asarray(recording.time_s, dtype=np.float64), core, sigma, surf,
                             np.asarray(recording.temp_C, dtype=np.float64), heat, soc, flags, amb)


class CellThermal:
    """One cell's core-temperature filter stepped after its SOC filter
    (`SocEstimator.step`), the way the firmware and the host HIL target run
    it: started at the cell's first valid (plausible) temperature reading,
    core and surface at that reading and the ambient taken as it; then per
    sample the heat i (v - OCV) at the filter's SOC and temperature (none,
    the last kept, when the filter refused the sample's current, voltage or
    interval), the surface reading and that ambient. It reads the filter's
    parameter tables, state and step report in place."""

    def __init__(self, estimator: SocEstimator, thermal: ThermalParams, tuning: ThermalTuning | None = None) -> None:
        self._est = estimator
        self._tp = pack_thermal(thermal)
        self._tt = (tuning or ThermalTuning()).packed()
        self._state = ffi.new("bf_thermal_t *")
        self._o = ffi.new("bf_thermal_out_t *")
        self._ambient_C: float | None = None

    @property
    def ambient_C(self) -> float | None:
        """The ambient (the first valid reading), None before the filter starts."""
        return self._ambient_C

    def step(self, dt_s: float, current_A: float, voltage_V: float, temp_C: float) -> float:
        """After the filter's step of the same sample: the core temperature
        in °C, nan until a valid temperature reading has started the filter."""
        if self._ambient_C is None:
            if math.isnan(temp_C):
                return math.nan
            st = lib.bf_thermal_init(self._state, self._tp, self._tt, temp_C, temp_C)
            if st == lib.BF_E_RANGE:
                return math.nan  # not a plausible reading: wait for the next
            _check(st, "thermal init")
            self._ambient_C = temp_C
        est = self._est
        heat = math.nan
        if est._out.flags & (lib.BF_FLAG_VOLTAGE_INVALID | lib.BF_FLAG_CURRENT_INVALID | lib.BF_FLAG_DT_INVALID) == 0:
            heat = lib.bf_thermal_heat_W(est._cell, est._out.soc, est._state.last_temp_C, current_A, voltage_V)
        _check(lib.bf_thermal_step(self._state, self._tp, self._tt, dt_s, heat, temp_C, self._ambient_C, self._o),
               "thermal step")
        return float(self._o.core_C)
