"""State of power from the C core (csrc/include/bmsfil/power.h), and the
float64 check of it against the cell model.

`state_of_power(estimator, temp_C, limits)` gives the largest constant
discharge and charge power over `limits.horizon_s` for the estimator's
current state. `PowerSearch` is the same search cut into sub-steps, a few
per sample, cycling through the horizons, as the firmware and the HIL
targets run it (`SOP_EVERY`). `pulse_voltage` simulates a constant-power pulse on the cell
model in float64 with fine steps (independent of the C core's sub-steps):
applying the predicted limit, the voltage must reach its limit at the end
of the horizon. The recordings hold no such pulses, so this is a check
against the model, not against a cell.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from bmsfil._core import ffi, lib
from bmsfil.core import InitialSoc, SocEstimator, _check, start_estimator
from bmsfil.params import ParameterSet, PowerLimits
from bmsfil.recording import Recording
from bmsfil.reference import CellModel

HORIZONS_S = (2.0, 10.0, 30.0)
#: Targets simulate one sub-step of the search per cell on every sample
#: whose sequence number is a multiple of this (firmware FW_SOP_EVERY).
SOP_EVERY = 2
LIMITED_BY = {lib.BF_SOP_BY_VOLTAGE: "voltage", lib.BF_SOP_BY_CURRENT: "current", lib.BF_SOP_BY_SOC: "soc",
              lib.BF_SOP_BY_TEMP: "temperature", lib.BF_SOP_BY_POWER: "power",
              lib.BF_SOP_UNCONVERGED: "unconverged"}


@dataclass(frozen=True)
class SopLimits:
    """Limits of the pulse; `for_cell` takes a parameter set's (`ParameterSet.power_limits`)."""

    horizon_s: float
    v_min_V: float
    v_max_V: float
    i_dis_max_A: float
    i_chg_max_A: float
    soc_min: float = 0.0
    soc_max: float = 1.0
    temp_min_C: float = -30.0
    temp_max_C: float = 60.0
    #: The charge temperature window; None: the temperature window (as a
    #: parameter set's ``power`` section without one).
    temp_chg_min_C: float | None = None
    temp_chg_max_C: float | None = None

    @classmethod
    def for_cell(cls, params: ParameterSet, horizon_s: float, **changes: float) -> "SopLimits":
        """The parameter set's limits (its ``power`` section, else the cell's ranges) for a horizon.
        A charge window the set does not give follows the temperature window, `changes` included."""
        limits: dict[str, float | None] = {"horizon_s": horizon_s} | params.power_limits()
        given = params.power or PowerLimits()
        for name, own in (("temp_chg_min_C", given.temp_charge_min_C), ("temp_chg_max_C", given.temp_charge_max_C)):
            if own is None:
                limits[name] = None
        return cls(**(limits | changes))  # type: ignore[arg-type]

    def packed(self) -> "ffi.CData":
        lim = ffi.new("bf_sop_limits_t *")
        values = vars(self) | {
            "temp_chg_min_C": self.temp_min_C if self.temp_chg_min_C is None else self.temp_chg_min_C,
            "temp_chg_max_C": self.temp_max_C if self.temp_chg_max_C is None else self.temp_chg_max_C,
        }
        for name, value in values.items():
            setattr(lim, name, value)
        status = lib.bf_sop_limits_check(lim)
        if status != lib.BF_OK:  # the message only when it is needed: state_of_power packs on every call
            _check(status, f"SOP limits ({', '.join(f'{k}={v:g}' for k, v in values.items())})")
        return lim


@dataclass(frozen=True)
class StateOfPower:
    discharge_W: float
    charge_W: float
    discharge_A: float
    charge_A: float
    discharge_by: tuple[str, ...]
    charge_by: tuple[str, ...]


@functools.cache  # a few bit patterns, asked for every sample a search result is read
def _names(bits: int) -> tuple[str, ...]:
    return tuple(name for bit, name in LIMITED_BY.items() if bits & bit)


def state_of_power(estimator: SocEstimator, temp_C: float, limits: SopLimits) -> StateOfPower:
    """The powers for the estimator's state now (it is not changed)."""
    out = ffi.new("bf_sop_t *")
    _check(lib.bf_sop(estimator._state, estimator._cell, temp_C, limits.packed(), out), "state of power")
    return StateOfPower(out.discharge_W, out.charge_W, out.discharge_A, out.charge_A,
                        _names(out.discharge_by), _names(out.charge_by))


def pulse_voltage(params: ParameterSet, state: np.ndarray, temp_C: float, power_W: float,
                  horizon_s: float, steps: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time, terminal voltage and current of a constant-power pulse (power_W
    > 0 charges, < 0 discharges) from `state` ([SOC, i_R1, i_R2, h]) on the
    float64 cell model, `steps` steps; each step's current draws exactly the
    power at that step's voltage (a fixed point, solved to 1e-12)."""
    model = CellModel(params)
    z, i1, i2, h = (float(v) for v in state)
    dt = horizon_s / steps
    direction = math.copysign(1.0, power_W)
    times, volts, amps = np.empty(steps), np.empty(steps), np.empty(steps)
    i = 0.0
    for k in range(steps):
        at = model.locate(z, temp_C)
        cap = model.row("capacity_Ah", at) * 3600.0
        tau1, tau2 = model.rc("tau1_s", at), model.rc("tau2_s", at)
        r0, r1, r2 = model.rc("r0_ohm", at), model.rc("r1_ohm", at), model.rc("r2_ohm", at)
        rn, m0, m = model.row("rn_ohm", at), model.row("hyst_m0_V", at), model.row("hyst_m_V", at)
        gamma = model.row("hyst_gamma", at)
        a1, a2 = math.exp(-dt / tau1), math.exp(-dt / tau2)
        eta = params.cell.eta_charge if direction > 0 else 1.0
        for _ in range(60):  # the current that draws power_W at the voltage it causes
            dz = eta * i * dt / cap
            ah = math.exp(-abs(dz * gamma))
            z1 = z + dz
            v = (model.ocv(model.locate(z1, temp_C))[0] + m0 * direction + m * (ah * h + (1 - ah) * direction)
                 + r0 * i + rn * i / (1 + params.cell.rn_sat_per_A * abs(i))
                 + r1 * (a1 * i1 + (1 - a1) * i) + r2 * (a2 * i2 + (1 - a2) * i))
            new_i = power_W / v
            if abs(new_i - i) < 1e-12:
                break
            i = new_i
        dz = eta * i * dt / cap
        ah = math.exp(-abs(dz * gamma))
        z += dz
        i1 = a1 * i1 + (1 - a1) * i
        i2 = a2 * i2 + (1 - a2) * i
        h = ah * h + (1 - ah) * direction
        times[k], volts[k], amps[k] = (k + 1) * dt, v, i
    return times, volts, amps


class PowerSearch:
    """The state-of-power search of one cell in pieces (bf_sop_task_t): each
    `step` simulates at most `budget` sub-steps from the state of the
    cell's filter and publishes a horizon's result when both its directions
    are done, then begins the next horizon of `horizons_s`. Limits:
    `SopLimits.for_cell` of the filter's parameter set."""

    def __init__(self, estimator: SocEstimator, horizons_s: tuple[float, ...] = HORIZONS_S) -> None:
        if not 1 <= len(horizons_s) <= lib.BF_SOP_MAX_HORIZONS:
            raise ValueError(f"between 1 and {lib.BF_SOP_MAX_HORIZONS} horizons, not {len(horizons_s)}")
        self._est = estimator
        self.horizons_s = tuple(horizons_s)
        self._lims = ffi.new(f"bf_sop_limits_t[{len(horizons_s)}]")
        for k, horizon in enumerate(horizons_s):
            lim = SopLimits.for_cell(estimator.params, horizon).packed()
            self._lims[k] = lim[0]
        self._task = ffi.new("bf_sop_task_t *")
        self._finished = ffi.new("int32_t *")
        _check(lib.bf_sop_task_init(self._task), "state-of-power search init")

    def step(self, budget: int = 1) -> int | None:
        """Go on with the search (from the filter's state and its last good
        temperature when a horizon begins); the index of the horizon
        published by this call, or None."""
        est = self._est
        _check(lib.bf_sop_task_step(self._task, est._state, est._cell, est._state.last_temp_C, self._lims,
                                    len(self.horizons_s), budget, self._finished), "state-of-power search")
        return int(self._finished[0]) if self._finished[0] >= 0 else None

    @property
    def latest(self) -> tuple[int, StateOfPower] | None:
        """The horizon published last and its result, None before the first."""
        k = int(self._task.latest)
        return None if k < 0 else (k, self.result(k))

    def result(self, k: int) -> StateOfPower:
        """The latest result of horizon k (an index into `horizons_s`)."""
        if not 0 <= k < len(self.horizons_s):
            raise IndexError(f"horizon {k}: this search has {len(self.horizons_s)} horizons")
        if not self._task.published & (1 << k):
            raise LookupError(f"horizon {k} ({self.horizons_s[k]:g} s) has no result yet")
        r = self._task.result[k]
        return StateOfPower(r.discharge_W, r.charge_W, r.discharge_A, r.charge_A, _names(r.discharge_by),
                            _names(r.charge_by))

    @property
    def substeps(self) -> int:
        """Sub-steps simulated since the search began."""
        return int(self._task.substeps)


@dataclass(frozen=True)
class PowerTrace:
    """State of power along a recording: at `time_s`, per horizon of
    `horizons_s` (rows), the discharge and charge power (W)."""

    horizons_s: tuple[float, ...]
    time_s: np.ndarray
    discharge_W: np.ndarray   # (horizons, points)
    charge_W: np.ndarray

    def summary(self) -> dict[str, dict[str, float | None]]:
        """Per horizon: the smallest, median and largest power seen, and the last."""
        out: dict[str, dict[str, float | None]] = {}
        for k, horizon in enumerate(self.horizons_s):
            entry: dict[str, float | None] = {}
            for name, values in (("discharge_W", self.discharge_W[k]), ("charge_W", self.charge_W[k])):
                ok = values[np.isfinite(values)]
                for stat, fn in (("min", np.min), ("median", np.median), ("max", np.max)):
                    entry[f"{name}_{stat}"] = float(fn(ok)) if ok.size else None
                entry[f"{name}_end"] = float(ok[-1]) if ok.size else None
            out[f"{horizon:g}s"] = entry
        return out


def power_trace(rec: Recording, params: ParameterSet, initial_soc: InitialSoc = "ocv", every_s: float = 10.0,
                horizons_s: tuple[float, ...] = HORIZONS_S) -> PowerTrace:
    """Run the SOC filter over the recording and, every `every_s` of its
    time, the state of power for each horizon from the filter's state and
    the last good temperature (the C core's `bf_sop`)."""
    est = SocEstimator(params)
    start_estimator(est, rec, initial_soc)
    t = np.asarray(rec.time_s, dtype=float)
    ends = np.unique(np.searchsorted(t, np.arange(t[0] + every_s, t[-1] + every_s, every_s), side="right"))
    ends = ends[(ends > 0) & (ends <= len(rec))]
    limits = [SopLimits.for_cell(params, h) for h in horizons_s]
    dis = np.full((len(horizons_s), ends.size), np.nan)
    chg = np.full((len(horizons_s), ends.size), np.nan)
    start = 0
    dt = rec.dt_s  # once: a property that differences the whole recording (it did, every 10 s of it)
    for j, end in enumerate(ends):
        sl = slice(start, int(end))
        est.run_arrays(dt[sl], rec.current_A[sl], rec.voltage_V[sl], rec.temp_C[sl])
        start = int(end)
        temp = float(est._state.last_temp_C)
        for k, lim in enumerate(limits):
            sop = state_of_power(est, temp, lim)
            dis[k, j], chg[k, j] = sop.discharge_W, sop.charge_W
    return PowerTrace(tuple(horizons_s), t[ends - 1], dis, chg)
