"""`bmsfil eval`: run the estimator on recordings and score it against the reference."""

from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from bmsfil._core import lib
from bmsfil.core import InitialSoc, SocTrace, given_soc
from bmsfil.health import HealthTrace
from bmsfil.current_sign import wrong_sign
from bmsfil.inject import SensorErrors
from bmsfil.metrics import SocScore, score_soc
from bmsfil.params import ParameterSet
from bmsfil.plausibility import PlausibilityMonitor, PlausibilityTrace, run_monitored
from bmsfil.power import PowerTrace, power_trace
from bmsfil.recording import Recording, RecordingError, RecordingWarning
from bmsfil.thermal import CoreTempEstimator, CoreTempTrace, first_plausible_temp


#: Step flags that mean a measurement was unusable (not the filter's own guards).
BAD_SAMPLE_FLAGS = (
    lib.BF_FLAG_VOLTAGE_INVALID | lib.BF_FLAG_CURRENT_INVALID | lib.BF_FLAG_TEMP_INVALID | lib.BF_FLAG_DT_INVALID
)


@dataclass(frozen=True)
class Evaluation:
    name: str
    recording: Recording
    trace: SocTrace
    reference: np.ndarray
    coulomb: np.ndarray
    score: SocScore
    coulomb_score: SocScore
    flagged_samples: int
    #: The plausibility monitor's flags and evidence (None where only SOC was scored, e.g. HIL).
    plausibility: PlausibilityTrace | None = None
    #: Capacity and R0 at the end of the recording (None unless asked for).
    health: dict[str, float | int] | None = None
    #: Capacity and R0 along the recording (None unless asked for).
    health_trace: HealthTrace | None = None
    #: State of power along the recording (None unless asked for).
    power: PowerTrace | None = None
    #: A life's discharges (health_eval.capacity_cycles; None unless health was asked for a life).
    capacity_cycles: list[dict[str, float | int]] | None = None
    #: The core-temperature filter along the recording (`core_temperature`; None unless asked for and possible).
    core_temp: CoreTempTrace | None = None

    def summary(self) -> dict[str, object]:
        extra: dict[str, object] = {"plausibility": self.plausibility.summary()} if self.plausibility is not None else {}
        if self.health is not None:
            extra["health"] = _finite_dict(self.health)
        if self.power is not None:
            extra["power"] = self.power.summary()
        if self.capacity_cycles is not None:
            extra["capacity_cycles"] = self.capacity_cycles
        if self.core_temp is not None:
            extra["core_temperature"] = self.core_temp.summary()
        return _recording_summary(self.recording) | {
            "ekf": _finite_dict(self.score.as_dict()),
            "coulomb_counter": _finite_dict(self.coulomb_score.as_dict()),
            "flagged_samples": self.flagged_samples,
        } | extra


def _finite_dict(d: dict[str, float]) -> dict[str, float | None]:
    """JSON has no inf/NaN: they become null."""
    return {k: (v if isinstance(v, int) or math.isfinite(v) else None) for k, v in d.items()}


def _recording_summary(rec: Recording) -> dict[str, object]:
    """What an eval summary says of the recording itself (scored or not); the
    start current because a start from the OCV assumes it is near 0."""
    finite = np.flatnonzero(np.isfinite(rec.current_A))
    return {"name": rec.meta.name, "ambient_temp_C": rec.meta.ambient_temp_C, "duration_s": float(rec.time_s[-1] - rec.time_s[0]),
            "start_current_A": float(rec.current_A[finite[0]]) if finite.size else None}


#: How far the reference SOC may leave [0, 1] before a score against it means
#: nothing: a cycler's counter runs past full by what a charge puts back more
#: than the discharge took (up to 1.069 at the end of the LG HG2 C/20
#: discharge-then-charge tests) and a little past empty.
REFERENCE_SLACK = 0.15


def checked_reference(rec: Recording, first_sample: int = 0) -> np.ndarray:
    """`rec.reference_soc()`, refused (RecordingError naming the sample, its
    time and the likely cause) where it leaves [-REFERENCE_SLACK, 1 +
    REFERENCE_SLACK]: the recording does not start at the SOC its metadata
    states, or its current (and Ah) have the wrong sign, which the error
    says if `current_sign.wrong_sign` finds it. `first_sample` is the index of rec's first sample in its file
    (for a chunk of a streamed one)."""
    ref = rec.reference_soc()
    out = np.flatnonzero(np.abs(ref - 0.5) > 0.5 + REFERENCE_SLACK)
    if out.size:
        k = int(out[0])
        stated = rec.meta.reference_initial_soc
        start = (f"its reference_initial_soc {stated:g}" if stated is not None
                 else "full charge (it states no reference_initial_soc)")
        cause = wrong_sign(rec) or (
            "the recording does not start at that SOC (a charge logged before the cycle?); set its start with "
            "bmsfil import --meta reference_initial_soc=SOC, or cut the recording to where that holds")
        raise RecordingError(
            f"recording {rec.meta.name!r}: its reference SOC leaves [{-REFERENCE_SLACK:g}, {1 + REFERENCE_SLACK:g}] "
            f"at sample {first_sample + k} ({float(rec.time_s[k]):.0f} s), where it is {float(ref[k]):.3f} "
            f"(counted from {start} with the tester's Ah over reference_capacity_Ah "
            f"{rec.meta.reference_capacity_Ah:g}): {cause}; not scored")
    return ref


def coulomb_count(rec: Recording, soc0: float, capacity_Ah: float) -> np.ndarray:
    """The baseline every BMS starts from: the measured current integrated."""
    i = np.nan_to_num(rec.current_A)
    charge = np.cumsum(i * rec.dt_s) / 3600.0
    return np.clip(soc0 + charge / capacity_Ah, 0.0, 1.0)


def evaluate(
    rec: Recording,
    params: ParameterSet,
    initial_soc: InitialSoc = "ocv",
    errors: SensorErrors | None = None,
    seed: int = 0,
    health: bool = False,
    power: bool = False,
    core_temp: bool = False,
    checks: bool = True,
) -> Evaluation:
    """Score the SOC filter (with the plausibility monitor beside it); with
    `health`, also run the capacity and R0 estimators (health.py) over the
    recording and report where they ended; with `power`, the state of power
    every 10 s of the recording (power.py); with `core_temp`, the core
    temperature (`core_temperature`). A recording without a reference
    SOC raises RecordingError before anything runs: `evaluate_unscored` is
    the evaluation without a score. With `checks`, what `bmsfil eval` warns
    of is warned of (`warn_of_mismatches`: a current that looks reversed,
    parameters of another cell, a gap the filter restarts at)."""
    try:
        rec.reference_soc()
    except RecordingError as exc:
        raise RecordingError(f"{exc}; evaluate_unscored(rec, params) runs the estimators without a SOC score, "
                             "as bmsfil eval does for such a recording") from None
    if checks:  # after the reference: the error sends the caller to evaluate_unscored, which warns
        warn_of_mismatches(rec, params)
    checked_reference(rec)  # before anything runs
    measured = errors.apply(rec, seed) if errors else rec
    trace, plaus = run_segments_monitored(measured, params, initial_soc)
    ev = score_trace(rec, measured, trace, params, given_soc(initial_soc))
    htrace, summary, cycles = _health(measured, params) if health else (None, None, None)
    return replace(ev, plausibility=plaus, health=summary, health_trace=htrace, capacity_cycles=cycles,
                   power=power_trace(measured, params, initial_soc) if power else None,
                   core_temp=core_temperature(measured, params, initial_soc) if core_temp else None)


def core_temperature(rec: Recording, params: ParameterSet, initial_soc: InitialSoc = "ocv") -> CoreTempTrace | None:
    """The core-temperature filter (thermal.h) over the recording, its
    ambient the first reading (`CoreTempEstimator.run`); None when the
    parameter set has no thermal model or the recording no temperature the
    filter takes (`first_plausible_temp`)."""
    if params.thermal is None or first_plausible_temp(rec) is None:
        return None
    return CoreTempEstimator(params).run(rec, initial_soc=initial_soc)


def mismatches(rec: Recording, params: ParameterSet, scored: bool = True) -> list[str]:
    """What `bmsfil eval` warns of between a recording and a parameter set: a current that looks
    positive on discharge or a magnitude (`current_sign.wrong_sign`), a set of another cell or
    temperature (`params_match.parameter_warnings`), an interval the filter restarts at
    (`gaps.gap_warning`); `scored`, a reference that assumes a start from full or misses a charge."""
    from bmsfil.gaps import gap_warning
    from bmsfil.params_match import parameter_warnings

    reference = (rec.meta.reference_start_warning(), rec.meta.unlogged_charge_warning()) if scored else ()
    return [w for w in (wrong_sign(rec), *reference, *parameter_warnings(rec, params), gap_warning(rec, params)) if w]


def warn_of_mismatches(rec: Recording, params: ParameterSet, scored: bool = True) -> list[str]:
    """`mismatches` as Python warnings (RecordingWarning) for a caller of the API, and returned
    (a reversed current scored 0.07 % RMSE through the API without a word)."""
    found = mismatches(rec, params, scored)
    for text in found:
        warnings.warn(text, RecordingWarning, stacklevel=3)
    return found


def evaluate_unscored(rec: Recording, params: ParameterSet, why: str = "no reference SOC",
                      initial_soc: InitialSoc = "ocv",
                      errors: SensorErrors | None = None, seed: int = 0,
                      csv_path: Path | None = None, plot_path: Path | None = None,
                      checks: bool = True) -> dict[str, object]:
    """`bmsfil eval` of a recording without a reference SOC (a field log, a
    NASA life): the estimates (CSV, and the figure at `plot_path`), the
    plausibility monitor, capacity and R0 (and a life's `capacity_cycles`),
    the core temperature, no SOC score (`why` says why); summary keys as
    Evaluation.summary, "ekf" and "coulomb_counter" None. `checks` as `evaluate`'s."""
    if checks:
        warn_of_mismatches(rec, params, scored=False)
    measured = errors.apply(rec, seed) if errors else rec
    trace, plaus = run_segments_monitored(measured, params, initial_soc)
    if csv_path is not None:
        write_trace_csv(rec.time_s, trace, csv_path)
    htrace, health, cycles = _health(measured, params)
    core = core_temperature(measured, params, initial_soc)
    if plot_path is not None:
        from bmsfil.eval_plot import write_unscored_plot

        write_unscored_plot(rec.meta.name, rec.time_s, trace, why, plaus, htrace, core, plot_path)
    return _recording_summary(rec) | {
        "ekf": None, "coulomb_counter": None, "not_scored": why,
        "flagged_samples": int(np.count_nonzero(trace.flags & BAD_SAMPLE_FLAGS)),
        "plausibility": plaus.summary(), "health": _finite_dict(health),
    } | ({"capacity_cycles": cycles} if cycles is not None else {}) \
        | ({"core_temperature": core.summary()} if core is not None else {})


def segment_bounds(rec: Recording) -> list[tuple[int, int]]:
    """[start, end) of each segment the importer recorded (the discharges of a
    life, ``extra['cycle_starts']``), else of the whole recording."""
    starts = rec.cycle_starts() or [0]
    return list(zip(starts, [*starts[1:], len(rec)]))


def run_segments_monitored(rec: Recording, params: ParameterSet,
                           initial_soc: InitialSoc = "ocv") -> tuple[SocTrace, PlausibilityTrace]:
    """`run_monitored` over each segment of the recording: the SOC filter
    restarted at each (from `initial_soc` at the first, from the OCV of the
    rested cell at the others, which the importer says start at rest), the
    monitor's evidence carried over (the unrecorded time between segments
    counts as none)."""
    bounds = segment_bounds(rec)
    if len(bounds) == 1:
        return run_monitored(rec, params, initial_soc)
    monitor = PlausibilityMonitor()
    runs = [run_monitored(_segment(rec, a, b), params, initial_soc if k == 0 else "ocv", monitor=monitor)
            for k, (a, b) in enumerate(bounds)]
    soc = SocTrace(*(np.concatenate([getattr(t, f.name) for t, _ in runs]) for f in fields(SocTrace)))
    assert len(soc.soc) == len(rec), "the segments cover the recording"
    plaus = PlausibilityTrace(*(np.concatenate([getattr(p, f.name) for _, p in runs])
                                for f in fields(PlausibilityTrace)))
    return soc, plaus


def _segment(rec: Recording, start: int, stop: int) -> Recording:
    """Samples [start, stop) on the recording's own clock (Recording.slice re-zeroes it)."""
    cut = {name: getattr(rec, name)[start:stop] for name in ("time_s", "current_A", "voltage_V", "temp_C")}
    extra = {k: v for k, v in rec.meta.extra.items() if k != "cycle_starts"}
    return replace(rec, **cut, ah=None if rec.ah is None else rec.ah[start:stop],
                   meta=replace(rec.meta, extra=extra))


def _health(rec: Recording, params: ParameterSet) -> tuple[
        HealthTrace, dict[str, float | int], list[dict[str, float | int]] | None]:
    """Capacity and R0 along the recording, where it ends, and a life's capacity_cycles (None for a
    recording of one segment holding at most one discharge: a cycler's log of a life, its charges
    recorded, is one segment of many)."""
    from bmsfil.health import HealthEstimator
    from bmsfil.health_eval import capacity_cycles, score_discharges

    estimator = HealthEstimator(params)
    tr = estimator.run(rec)
    scores = score_discharges(rec, tr, estimator.capacity.gap_s, estimator.capacity.rated_Ah)
    cycles = capacity_cycles(scores) if len(segment_bounds(rec)) > 1 or len(scores) > 1 else None
    return tr, {
        "capacity_Ah": float(tr.capacity_Ah[-1]),
        "capacity_sigma_Ah": float(tr.capacity_sigma_Ah[-1]),
        "soh": float(tr.soh[-1]),
        "capacity_pairs": int(tr.where("capacity_updated").size),
        "r0_ohm": float(tr.r0_ohm[-1]),
        "r0_sigma_ohm": float(tr.r0_sigma_ohm[-1]),
        "r0_growth": float(tr.r0_growth[-1]),
        "r0_steps": int(tr.where("r0_updated").size),
    }, cycles


def score_trace(rec: Recording, measured: Recording, trace: SocTrace, params: ParameterSet,
                initial_soc: float | None = None) -> Evaluation:
    """Score estimates of `rec` (run on `measured`, the recording as the
    estimator saw it) against the reference, beside a coulomb counter fed the
    same data and started where the estimate started: at `initial_soc` when
    the estimator was given one, else at its first estimate (from the OCV;
    a target answers none before a sample with a plausible voltage). A
    reference outside [0, 1] raises (`checked_reference`).
    Shared by `bmsfil eval` and the HIL harness so that both score alike."""
    reference = checked_reference(rec)
    estimated = np.flatnonzero(np.isfinite(trace.soc))
    soc0 = float(trace.soc[estimated[0]] if estimated.size else math.nan) if initial_soc is None else initial_soc
    first_temp = float(np.nanmedian(measured.temp_C[: max(1, min(len(rec), 10))]))
    capacity = float(np.interp(first_temp, params.cell.temp_C, params.cell.capacity_Ah))
    coulomb = coulomb_count(measured, soc0, capacity)
    return Evaluation(
        name=rec.meta.name,
        recording=rec,
        trace=trace,
        reference=reference,
        coulomb=coulomb,
        score=score_soc(rec.time_s, trace.soc, reference, trace.soc_sigma),
        coulomb_score=score_soc(rec.time_s, coulomb, reference),
        flagged_samples=int(np.count_nonzero(trace.flags & BAD_SAMPLE_FLAGS)),
    )


def write_csv(ev: Evaluation, path: Path) -> Path:
    return write_trace_csv(ev.recording.time_s, ev.trace, path)


def write_trace_csv(time_s: np.ndarray, trace: SocTrace, path: Path) -> Path:
    """The per-sample CSV of `bmsfil eval` (time, SOC, its sigma), for
    estimates with or without a reference to score them against."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time_s", "soc", "soc_sigma"])
        start = float(time_s[0]) if len(time_s) else 0.0  # seconds since the first sample, whatever the file's origin
        for row in zip((time_s - start).tolist(), trace.soc.tolist(), trace.soc_sigma.tolist()):
            w.writerow([f"{row[0]:.3f}", f"{row[1]:.6f}", f"{row[2]:.6f}"])
    tmp.replace(path)
    return path
