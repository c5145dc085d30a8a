"""Choosing the filter's noise settings from training recordings.

The cost mirrors what DESIGN.md calls good, per recording: SOC RMSE, the
share of samples inside the reported ±3σ, convergence from a start 30 points
off, and accuracy with BMS-grade sensor errors injected; each enters as its
shortfall against a target with a margin, plus a small pull towards lower
RMSE; and the same shortfalls, at half weight by default
(`Targets.model_error_weight`), with the voltage offset by as much as the
cell model is wrong on that recording (both signs). The search is a seeded (1+λ) evolution strategy in log space: a few
hundred cheap runs of the C core, no gradient needed, and the same result
for the same seed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np

from bmsfil.evaluate import evaluate, warn_of_mismatches
from bmsfil.inject import SensorErrors
from bmsfil.metrics import CONVERGED_BAND
from bmsfil.params import CellParams, FilterTuning, ParameterSet
from bmsfil.recording import Recording

#: Filter settings the search moves, with the bounds it keeps them in. The
#: SOC variance floor stays at σ 0.32 % or more: below it the filter claims
#: more than a cell model can hold on data it was not fitted on (in the
#: unseen-cell rehearsal a floor tuned to σ 0.04 % left cycles at 88 % inside
#: ±3σ, docs/unseen_cell.md).
SEARCH_SPACE: dict[str, tuple[float, float]] = {
    "q_soc_per_s": (1e-11, 1e-6),
    "q_irc_A2_per_s": (1e-6, 1e-1),
    "q_hyst_per_s": (1e-8, 1e-2),
    "r_voltage_V2_s": (1e-6, 1e-1),
    "r_overpotential_rel2_s": (1e-3, 1e2),
    "p0_soc": (1e-3, 0.25),
    "p_floor_soc": (1e-5, 1e-4),
}
#: A setting ending this share of its (log10) search range from a bound is at the bound.
AT_BOUND_SHARE = 0.01
#: Bounds of SEARCH_SPACE that are limits by design, not the end of a range
#: searched: an unknown start's SOC sigma of 0.5 (SOC is in [0, 1]) and the
#: 1 % SOC sigma floor the bars' ±3σ share rests on. A setting there is not
#: reported as pinned.
DESIGN_LIMITS = frozenset({("p0_soc", "upper"), ("p_floor_soc", "upper")})
TRAINING_ERRORS = SensorErrors(current_offset_A=0.1, voltage_noise_V=0.004, temp_offset_C=2.0)
COLD_C = 0.0


@dataclass(frozen=True)
class Targets:
    """Targets with margin below DESIGN.md's bar, so that unseen data passes too."""

    rmse_warm: float = 0.008
    rmse_cold: float = 0.016
    within_3sigma: float = 0.97
    converge_warm_s: float = 480.0
    converge_cold_s: float = 1440.0
    start_soc: float = 0.7
    rmse_injected_warm: float = 0.012
    #: Weight of the runs with the voltage offset by the model's error (1: as
    #: much as the clean run; 0: left out). Half by default, for `bmsfil
    #: tune` on a user's fit. `lg_hg2_params` leaves them out: its cells are
    #: already fitted without each recording's cycle type, so their error is
    #: in the runs once, and counting it again failed the injected-error bar
    #: on 6 of the 7 warm LG HG2 cycles (docs/fitting.md).
    model_error_weight: float = 0.5


#: The model's voltage error per (recording, cell), computed once per tuning.
_MODEL_ERROR_V: dict[tuple[int, int, float, float, str], float] = {}


def model_error_V(rec: Recording, cell: CellParams) -> float:
    """RMS of the cell model's voltage error on the recording, driven open loop
    by its current and temperature at its reference SOC (`report.model_voltage`):
    how far the voltage the filter listens to sits from what its model says,
    on a recording the model was not fitted on when `tune` holds it out."""
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(getattr(cell, f.name)).tobytes()
                                     for f in fields(cell) if isinstance(getattr(cell, f.name), np.ndarray))).hexdigest()
    key = (id(rec), len(rec), float(np.nansum(rec.voltage_V)), float(np.nansum(rec.current_A)), digest)
    if key not in _MODEL_ERROR_V:
        from bmsfil.report import model_voltage  # matplotlib: only when tuning
        e = model_voltage(ParameterSet("model", cell, FilterTuning(), {}), rec, rec.reference_soc()) - rec.voltage_V
        e = e[np.isfinite(e)]
        _MODEL_ERROR_V[key] = float(np.sqrt(np.mean(e**2))) if e.size else 0.0
    return _MODEL_ERROR_V[key]


def recording_cost(rec: Recording, params: ParameterSet, targets: Targets) -> float:
    cold = (rec.meta.ambient_temp_C if rec.meta.ambient_temp_C is not None else float(np.nanmedian(rec.temp_C))) < COLD_C
    nominal = evaluate(rec, params, "ocv", checks=False).score
    started_off_run = evaluate(rec, params, targets.start_soc, checks=False)
    started_off, started_off_trace, reference = started_off_run.score, started_off_run.trace, started_off_run.reference
    cost = nominal.rmse * 20.0
    cost += max(0.0, nominal.rmse / (targets.rmse_cold if cold else targets.rmse_warm) - 1.0) * 5.0
    cost += max(0.0, targets.within_3sigma - nominal.within_3sigma) * 20.0
    cost += max(0.0, targets.within_3sigma - started_off.within_3sigma) * 10.0
    # Convergence enters through the largest error after the time limit, not
    # through the convergence time itself: the latter jumps to "never" when
    # the very last sample leaves the band, a cliff that makes the search
    # chase noise.
    limit = targets.converge_cold_s if cold else targets.converge_warm_s
    late = rec.time_s >= rec.time_s[0] + limit
    late_error = float(np.max(np.abs(started_off_trace.soc[late] - reference[late]))) if late.any() else 0.0
    cost += max(0.0, late_error / CONVERGED_BAND - 0.8) * 5.0
    # The model is wrong on recordings it was not fitted on, and most where
    # the training recordings cannot show it (another cycle type, another
    # temperature): the filter must hold its bars with the voltage offset by
    # the model's error on this one, either way. Without this the search
    # trusts the voltage as far as the training recordings allow, and the
    # LG HG2 `full` workflow then met the bar on 4 of its 7 unseen cycles
    # instead of 7 (docs/fitting.md).
    w = targets.model_error_weight
    for sign in (1.0, -1.0) if w > 0.0 else ():
        off = evaluate(rec, params, "ocv", SensorErrors(voltage_offset_V=sign * model_error_V(rec, params.cell)),
                       seed=1, checks=False).score
        cost += max(0.0, off.rmse / (targets.rmse_cold if cold else targets.rmse_warm) - 1.0) * 5.0 * w
        cost += max(0.0, targets.within_3sigma - off.within_3sigma) * 20.0 * w
    if not cold:
        injected = evaluate(rec, params, "ocv", TRAINING_ERRORS, seed=1, checks=False)
        ratio = injected.coulomb_score.rmse / max(injected.score.rmse, 1e-6)
        cost += max(0.0, injected.score.rmse / targets.rmse_injected_warm - 1.0) * 5.0
        cost += max(0.0, 3.5 / ratio - 1.0) * 5.0
    return cost


#: Each recording's cost under its parameter set, in the recordings' order
#: (`fleet.cost_pool` computes them on Dask).
CostPool = Callable[[list[ParameterSet]], list[float]]


def total_cost(
    recs: list[Recording], params: ParameterSet, targets: Targets, cells: list[CellParams] | None = None,
    pool: CostPool | None = None,
) -> float:
    """Mean cost over the recordings; each runs with its own cell model when
    `cells` is given (the model fitted without it, see `tune_filter`)."""
    sets = [params] * len(recs) if cells is None else [replace(params, cell=c) for c in cells]
    costs = pool(sets) if pool is not None else [recording_cost(r, p, targets) for r, p in zip(recs, sets)]
    return float(np.mean(costs))


def tune_filter(
    params: ParameterSet,
    recs: list[Recording],
    iterations: int = 200,
    seed: int = 0,
    targets: Targets | None = None,
    progress: Callable[[int, float], None] | None = None,
    cells: list[CellParams] | None = None,
    pool: CostPool | None = None,
    checks: bool = True,
) -> tuple[ParameterSet, float]:
    """Search the filter settings in SEARCH_SPACE; returns the best set and its cost.

    With `checks`, each training recording is first checked as `bmsfil eval` checks it
    (`evaluate.warn_of_mismatches`: a reversed current, another cell's set, ...), warned of
    once; the search itself evaluates without them.

    With `cells` (one per recording), each recording is scored with a cell
    model that was fitted without it: the filter then learns how wrong the
    model is on data it has not seen, not how well it fits its training.
    With `pool` (built for these recordings and targets) the costs are
    computed there, with the same result."""
    if checks:
        for rec in recs:
            warn_of_mismatches(rec, params)
    targets = targets or Targets()
    rng = np.random.default_rng(seed)
    names = list(SEARCH_SPACE)
    lo = np.log10([SEARCH_SPACE[n][0] for n in names])
    hi = np.log10([SEARCH_SPACE[n][1] for n in names])
    current = {f.name: getattr(params.filter, f.name) for f in fields(FilterTuning)}
    best_x = np.clip(np.log10([current[n] for n in names]), lo, hi)
    best = params.with_filter(**dict(zip(names, 10.0**best_x)))
    best_cost = total_cost(recs, best, targets, cells, pool)
    step = 0.5
    for it in range(iterations):
        x = np.clip(best_x + rng.normal(0.0, step, len(names)) * (rng.random(len(names)) < 0.5), lo, hi)
        candidate = params.with_filter(**dict(zip(names, 10.0**x)))
        cost = total_cost(recs, candidate, targets, cells, pool)
        if cost < best_cost:
            best_x, best, best_cost = x, candidate, cost
            step = min(step * 1.5, 1.0)
        else:
            step = max(step * 0.97, 0.05)
        if progress:
            progress(it, best_cost)
    return best, best_cost


def at_search_bounds(tuning: FilterTuning) -> list[tuple[str, float, float, str]]:
    """The settings of SEARCH_SPACE within AT_BOUND_SHARE of a bound, in the
    search's log10 scale: (name, value, bound, "lower" or "upper"). One
    there may have its best value beyond the range the search can reach.
    Bounds in DESIGN_LIMITS are not reported."""
    found = []
    for name, (low, high) in SEARCH_SPACE.items():
        value = float(getattr(tuning, name))
        x, lo, hi = math.log10(value) if value > 0 else -math.inf, math.log10(low), math.log10(high)
        margin = AT_BOUND_SHARE * (hi - lo)
        if x <= lo + margin:
            found.append((name, value, low, "lower"))
        elif x >= hi - margin:
            found.append((name, value, high, "upper"))
    return [f for f in found if (f[0], f[3]) not in DESIGN_LIMITS]
