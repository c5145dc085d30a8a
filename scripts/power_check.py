#!/usr/bin/env python3
"""State of power (csrc/src/power.c) checked against the cell model: along the
bundled US06 recording, every STRIDE samples, the predicted discharge and
charge power limits for 2, 10 and 30 s are applied as constant-power pulses
to the float64 cell model (bmsfil.power.pulse_voltage, 10 ms steps) and
the time the voltage reaches its limit is compared with the horizon. Then
every predicted limit, from those states and from stressed ones (RC
currents at +-i_max), is applied over its horizon and the worst excursion
of voltage and current beyond their limits over the whole pulse is
measured. Prints both and the C call's cost in microseconds (host, one
core).

    .venv/bin/python scripts/power_check.py [--stride N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator, start_estimator
from bmsfil.params import ParameterSet, bundled_params
from bmsfil.power import HORIZONS_S, SopLimits, StateOfPower, pulse_voltage, state_of_power


def model_params() -> ParameterSet:
    """The bundled set without its operating limits (its `power` section,
    the datasheet's 20 A discharge and 4 A charge): the check is of the
    search against the cell model up to the cell's own ranges, where most
    limits are the voltage's; within the datasheet's currents most would be
    the current's, which the model has no say in."""
    return replace(bundled_params(), power=None)


def crossing(t: np.ndarray, v: np.ndarray, v_lim: float, falling: bool) -> float:
    """When v first reaches v_lim, interpolated linearly between the steps
    around it (inf if never; the pulse starts at t = 0 from the step's start)."""
    past = v <= v_lim if falling else v >= v_lim
    hit = np.flatnonzero(past)
    if not hit.size:
        return float("inf")
    k = int(hit[0])
    if k == 0:
        return float(t[0])
    return float(t[k - 1] + (t[k] - t[k - 1]) * (v_lim - v[k - 1]) / (v[k] - v[k - 1]))


def _estimator_at(params, x: np.ndarray, temp: float) -> SocEstimator:
    est = SocEstimator(params)
    est.init_soc(float(x[0]), temp)
    for j in range(1, 4):
        est._state.x[j] = float(x[j])
    return est


def _predictions(states: list[tuple[np.ndarray, float]]) -> Iterator[tuple[SocEstimator, float, SopLimits, StateOfPower]]:
    """For each state and horizon: the estimator in that state, the
    temperature, the limits and the C core's state of power."""
    params = model_params()
    for x, temp in states:
        est = _estimator_at(params, x, temp)
        for horizon in HORIZONS_S:
            lim = SopLimits.for_cell(params, horizon)
            yield est, temp, lim, state_of_power(est, temp, lim)


def check(stride: int = 4000, steps_per_s: float = 100.0) -> list[tuple[float, float, str, float]]:
    """(SOC, horizon, direction, relative time error) of every voltage-limited case."""
    params = model_params()
    out = []
    for est, temp, lim, sop in _predictions(_recording_states(stride)):
        horizon = lim.horizon_s
        for power, v_lim, by, name in ((-sop.discharge_W, lim.v_min_V, sop.discharge_by, "discharge"),
                                       (sop.charge_W, lim.v_max_V, sop.charge_by, "charge")):
            if by != ("voltage",):
                continue
            t, v, _ = pulse_voltage(params, est.x, temp, power, 1.2 * horizon, steps=int(1.2 * horizon * steps_per_s))
            t_hit = crossing(t, v, v_lim, power < 0)
            out.append((float(est.x[0]), horizon, name, (t_hit - horizon) / horizon))
    return out


def _recording_states(stride: int) -> list[tuple[np.ndarray, float]]:
    """The filter's state along the bundled recording, every `stride` samples, and the temperature there."""
    params, rec = model_params(), bundled_recording()
    est = SocEstimator(params)
    start_estimator(est, rec, "ocv")
    out = []
    for k in range(0, len(rec), stride):
        sl = slice(k, k + stride)
        est.run_arrays(rec.dt_s[sl], rec.current_A[sl], rec.voltage_V[sl], rec.temp_C[sl])
        out.append((est.x.copy(), float(rec.temp_C[min(k + stride, len(rec)) - 1])))
    return out


def _states(stride: int) -> list[tuple[np.ndarray, float]]:
    """The recording's states (`_recording_states`) and stressed ones: RC
    currents at +-i_max (right after a hard discharge or a regeneration), at
    low and high SOC, 0 and 25 degC."""
    out = _recording_states(stride)
    i_max = model_params().cell.i_max_A
    for soc in (0.1, 0.15, 0.3, 0.6, 0.9):
        for irc in (-i_max, i_max):
            for temp in (0.0, 25.0):
                out.append((np.array([soc, irc, irc, np.sign(irc)]), temp))
    return out


def overshoot(stride: int = 4000, steps_per_s: float = 100.0) -> list[tuple[float, float, str, float, float]]:
    """Every predicted limit (any limiting factor) applied as a constant-power
    pulse over its horizon on the float64 model, from the states of
    `_states`: (SOC, horizon, direction, how far the voltage went beyond its
    limit in V, how far the current went beyond its limit relative to it);
    0 where it stayed within."""
    params = model_params()
    out = []
    for est, temp, lim, sop in _predictions(_states(stride)):
        horizon = lim.horizon_s
        for power, name in ((-sop.discharge_W, "discharge"), (sop.charge_W, "charge")):
            if power == 0.0:
                continue
            _, v, i = pulse_voltage(params, est.x, temp, power, horizon, steps=max(20, int(horizon * steps_per_s)))
            if power < 0:
                dv, di = lim.v_min_V - float(v.min()), (float(np.abs(i).max()) - lim.i_dis_max_A) / lim.i_dis_max_A
            else:
                dv, di = float(v.max()) - lim.v_max_V, (float(np.abs(i).max()) - lim.i_chg_max_A) / lim.i_chg_max_A
            out.append((float(est.x[0]), horizon, name, max(dv, 0.0), max(di, 0.0)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stride", type=int, default=4000)
    args = ap.parse_args(argv)
    cases = check(args.stride)
    worst = max(cases, key=lambda c: abs(c[3]))
    print(f"{len(cases)} voltage-limited pulses; worst: SOC {worst[0]:.3f}, {worst[1]:g} s {worst[2]}, "
          f"reached the limit {worst[3] * 100:+.2f} % of the horizon off")
    over = overshoot(args.stride)
    wv, wi = max(over, key=lambda c: c[3]), max(over, key=lambda c: c[4])
    print(f"{len(over)} pulses at the predicted limits (recording and stressed states), over the whole pulse: "
          f"voltage at most {wv[3] * 1e3:.1f} mV beyond its limit (SOC {wv[0]:.2f}, {wv[1]:g} s {wv[2]}), "
          f"current at most {wi[4] * 100:.2f} % beyond its limit (SOC {wi[0]:.2f}, {wi[1]:g} s {wi[2]})")
    params = model_params()
    est = SocEstimator(params)
    est.init_soc(0.5, 25.0)
    lim = SopLimits.for_cell(params, 10.0)
    t0 = time.perf_counter()
    n = 300
    for _ in range(n):
        state_of_power(est, 25.0, lim)
    step_t0 = time.perf_counter()
    for _ in range(n):
        est.step(0.1, -3.0, 3.7, 25.0)
    per_sop, per_step = (step_t0 - t0) / n, (time.perf_counter() - step_t0) / n
    print(f"one state-of-power call: {per_sop * 1e6:.0f} us, {per_sop / per_step:.0f}x one filter step (same run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
