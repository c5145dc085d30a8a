"""Scoring the capacity estimate against capacity tests in a cell's life.

A life is a recording of many discharges (NASA PCoE's files are one: every
discharge, in order, with the unrecorded charges between them as gaps). Each
discharge is scored the way the data set measures capacity: the charge
delivered from its start to its end (the trapezoid integral of its current).
The capacity reported when the discharge stops (at the first sample after
its last discharging one: the moment a BMS learns that the load is off,
which in a life with unrecorded charges can be the next discharge's first
sample) is compared with it, and so is the capacity reported once 20 % of
that charge had been delivered (what the estimator knew after a brief
excursion into the discharge, with all the life before it).

Only a capacity test is scored: a discharge from a full cell to the
cut-off, as the capacity estimator reads them (a full anchor since the
discharge before; an empty anchor at its end, or its last loaded voltage at
or below the estimator's empty_V: a record that ends under load gives no
anchor). The charge
a partial discharge delivers (80 % to 30 %, a drive cycle stopped half-way)
is not the cell's capacity. A stretch that delivered less than CHARGE_SHARE
of the rated capacity (a rest's sensor noise, a pulse) is no discharge.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bmsfil.health import HealthTrace
from bmsfil.recording import Recording, RecordingError

#: Fraction of a discharge's charge after which the early estimate is taken.
EARLY_FRACTION = 0.2
#: A discharge whose current is missing (NaN) for more than this share of its duration has no
#: measured capacity to score against (the charge its current delivered is not known).
MISSING_CURRENT_SHARE = 0.01


@dataclass(frozen=True)
class DischargeScore:
    index: int
    start_s: float
    #: The discharge's own number: the file's (NASA cycle_idx) where the importer kept it, else index + 1 (index: its place among the discharges listed, partial ones included).
    cycle: int
    measured_Ah: float
    end_Ah: float
    end_sigma_Ah: float
    early_Ah: float
    early_sigma_Ah: float
    r0_ohm: float
    #: The capacity reported once 20 % of the discharge's duration had passed
    #: (to its last discharging sample): `bmsfil eval`'s estimate_20pct_Ah.
    early_time_Ah: float
    #: 1-sigma of early_time_Ah.
    early_time_sigma_Ah: float = float("nan")
    #: Share of the discharge's duration whose current is missing (NaN), filled in linearly for
    #: measured_Ah; beyond MISSING_CURRENT_SHARE the discharge is not measured and not scored.
    current_missing_share: float = 0.0
    #: From a full cell to the cut-off (a full anchor since the discharge before it, an empty
    #: anchor at its end): its charge is the cell's capacity. A partial discharge's is not.
    capacity_test: bool = True

    @property
    def measured(self) -> bool:
        """Whether it measured the cell's capacity: a capacity test whose current was recorded
        well enough."""
        return self.capacity_test and self.current_missing_share <= MISSING_CURRENT_SHARE

    @property
    def end_error(self) -> float:
        return (self.end_Ah - self.measured_Ah) / self.measured_Ah

    @property
    def early_error(self) -> float:
        return (self.early_Ah - self.measured_Ah) / self.measured_Ah

    @property
    def within_3_sigma(self) -> bool:
        return abs(self.end_Ah - self.measured_Ah) <= 3.0 * self.end_sigma_Ah

    def as_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "end_error": self.end_error, "early_error": self.early_error,
                "within_3_sigma": self.within_3_sigma, "measured": self.measured}


#: A charge, which ends a discharge, puts back at least this share of the cell's rated capacity
#: (between two discharging samples, rests within it included: a CC-CV charge with a pause is
#: one); a drive cycle's regenerative pulses (each a few mAh, 1 % of an 18650's capacity at most)
#: are not.
CHARGE_SHARE = 0.05


def discharge_bounds(recording: Recording, gap_s: float, rated_Ah: float | None = None) -> list[tuple[int, int]]:
    """[start, end) sample ranges of the discharges: the cycles the importer
    recorded (``extra['cycle_starts']``), else the stretches between gaps
    longer than ``gap_s``; each cut where a charge was recorded in it (a
    cycler's log of a life holds its charges: the discharge ends where the
    charge begins, the next begins with the first discharging sample after
    it). A charge is CHARGE_SHARE of `rated_Ah` (default: the recording's
    nominal capacity; without one, no cut)."""
    n = len(recording)
    starts = recording.cycle_starts() or [0, *(int(k) for k in np.flatnonzero(recording.dt_s > gap_s))]
    ends = [*starts[1:], n]
    rated = rated_Ah if rated_Ah is not None else recording.meta.nominal_capacity_Ah
    bounds = []
    for start, end in zip(starts, ends):
        cut = start
        for c0, c1 in (_charges(recording, start, end, CHARGE_SHARE * rated) if rated else []):
            bounds.append((cut, c0))
            cut = c1
        bounds.append((cut, end))
    return [(s, e) for s, e in bounds if e - s >= 2]


def _charges(recording: Recording, start: int, end: int, least_Ah: float) -> list[tuple[int, int]]:
    """Each stretch of [start, end) without a discharging sample that puts back at least
    `least_Ah`: (its first charging sample, the sample before the next discharging one, from
    which the next discharge is integrated, as a recorded discharge starts at rest)."""
    i = _filled_current(recording.current_A[start:end])
    if i.size < 2:
        return []
    dt_h = np.diff(recording.time_s[start:end], prepend=recording.time_s[start]) / 3600.0
    discharging = [int(k) for k in np.flatnonzero(i < 0.0)]
    out = []
    for a, b in zip([-1, *discharging], [*discharging, i.size]):  # the samples between two discharging ones
        charging = np.flatnonzero(i[a + 1:b] > 0.0)
        if charging.size and float(np.sum(np.maximum(i[a + 1:b], 0.0) * dt_h[a + 1:b])) >= least_Ah:
            first = a + 1 + int(charging[0])
            out.append((start + first, start + max(first, b - 1) if b < i.size else end))
    return out


def _filled_current(current_A: np.ndarray) -> np.ndarray:
    """The current with its missing samples (NaN) filled in linearly from
    their neighbours (0 where there is none)."""
    i = np.asarray(current_A, dtype=np.float64)
    ok = np.isfinite(i)
    if ok.all() or not ok.any():
        return np.nan_to_num(i)
    k = np.arange(i.size)
    return np.interp(k, k[ok], i[ok])


def score_discharges(recording: Recording, trace: HealthTrace, gap_s: float,
                     rated_Ah: float | None = None) -> list[DischargeScore]:
    """One score per discharge that delivered at least CHARGE_SHARE of the rated capacity (see
    the module docstring; `discharge_bounds` with the rated capacity that tells a recorded charge
    from a regenerative pulse; without a rated capacity, any charge delivered)."""
    scores: list[DischargeScore] = []
    listed = recording.meta.extra.get("cycle_numbers", "")
    numbered = dict(zip(recording.cycle_starts() or [], (int(n) for n in listed.split(",") if n.strip())))
    rated = rated_Ah if rated_Ah is not None else recording.meta.nominal_capacity_Ah
    full, empty = trace.where("anchor_full"), trace.where("anchor_empty")
    after = 0  # where the discharge before ended: a full anchor since then starts this one
    for start, end in discharge_bounds(recording, gap_s, rated_Ah):
        t = recording.time_s[start:end]
        i = _filled_current(recording.current_A[start:end])
        missing = float(np.sum(np.diff(t, prepend=t[0])[~np.isfinite(recording.current_A[start:end])]))
        delivered = np.concatenate(([0.0], np.cumsum(-0.5 * (i[1:] + i[:-1]) * np.diff(t) / 3600.0)))
        measured = float(delivered[-1])
        if not measured > (CHARGE_SHARE * rated if rated else 0.0):
            continue
        began_full = bool(np.any((full >= after) & (full <= start + 1))) or _at_full(recording, trace, start)
        ended_empty = (bool(np.any((empty >= start) & (empty <= end)))
                       or _at_empty(recording, trace, start + int(np.flatnonzero(i < 0.0)[-1])))
        after = end
        early = start + int(np.searchsorted(delivered, EARLY_FRACTION * measured))
        discharging = np.flatnonzero(i < 0.1 * np.min(i))
        last = min(start + int(discharging[-1]) + 1, len(recording) - 1)
        t_early = t[0] + EARLY_FRACTION * (t[int(discharging[-1])] - t[0])
        early_time = start + int(np.searchsorted(t, t_early))
        scores.append(
            DischargeScore(
                index=len(scores),
                start_s=float(t[0]),
                cycle=numbered.get(start, len(scores) + 1),
                measured_Ah=measured,
                end_Ah=float(trace.capacity_Ah[last]),
                end_sigma_Ah=float(trace.capacity_sigma_Ah[last]),
                early_Ah=float(trace.capacity_Ah[early]),
                early_sigma_Ah=float(trace.capacity_sigma_Ah[early]),
                r0_ohm=float(trace.r0_ohm[last]),
                early_time_Ah=float(trace.capacity_Ah[early_time]),
                early_time_sigma_Ah=float(trace.capacity_sigma_Ah[early_time]),
                current_missing_share=missing / float(t[-1] - t[0]) if t[-1] > t[0] else 0.0,
                capacity_test=began_full and ended_empty,
            )
        )
    return scores


def _open_circuit_V(recording: Recording, trace: HealthTrace, k: int) -> float:
    """Sample k's voltage with the model's instantaneous drop (R0 i + Rn i / (1 + kn |i|)) taken
    out, at the filter's SOC, as the capacity estimator reads a cut-off; the voltage itself
    without the set."""
    v, i, temp = float(recording.voltage_V[k]), float(recording.current_A[k]), float(recording.temp_C[k])
    model = trace.model
    if model is None or not math.isfinite(i) or not math.isfinite(temp):
        return v  # no temperature: the coldest row's R0 (three times 25 °C's) would be taken
    at = model.locate(float(trace.soc[k]), temp)
    rn = model.row("rn_ohm", at) / (1.0 + model.cell.rn_sat_per_A * abs(i))
    return v - (model.rc("r0_ohm", at) + rn) * i


def _at_empty(recording: Recording, trace: HealthTrace, k: int) -> bool:
    """Whether the last discharging sample k reached the cut-off: at or below the tuning's
    empty_V once the instantaneous drop is out (a drive cycle's last pulse below it, its
    drop taken out, did not; a record that ends under load gives no empty anchor)."""
    t = trace.capacity_tuning
    return t is not None and _open_circuit_V(recording, trace, k) <= t.empty_V


#: A recording whose reference SOC starts at least this high starts full (a tester's log that
#: begins a minute into the discharge from full: 0.991 for the LG HG2 0.5C tests).
FULL_REFERENCE_SOC = 0.99


def _at_full(recording: Recording, trace: HealthTrace, start: int) -> bool:
    """Whether the discharge's first sample is a full cell's: the recording's first, with a
    reference SOC of at least FULL_REFERENCE_SOC there, or within the tuning's full margin of
    OCV(1) at its temperature once the instantaneous drop is out (a test that starts under
    load at once gives the estimator no rest to anchor at)."""
    soc0 = recording.meta.reference_initial_soc
    if start == 0 and soc0 is not None and soc0 >= FULL_REFERENCE_SOC:
        return True
    t, model = trace.capacity_tuning, trace.model
    if t is None or model is None or not math.isfinite(float(recording.temp_C[start])):
        return False
    full_V = model.ocv(model.locate(1.0, float(recording.temp_C[start])))[0]
    return _open_circuit_V(recording, trace, start) >= full_V - t.full_margin_V


def capacity_cycles(scores: list[DischargeScore]) -> list[dict[str, float | int]]:
    """One object per discharge of a life, as `bmsfil eval` adds them to its
    JSON: the discharge's number (the file's own, else from 1), the charge it delivered, the
    capacity reported when it stopped and after 20 % of its duration, each one's 1-sigma, and
    whether the discharge was a capacity test (from full to the cut-off: only then is the charge
    it delivered the capacity)."""
    return [{"cycle": s.cycle, "measured_Ah": s.measured_Ah, "estimate_end_Ah": s.end_Ah,
             "estimate_20pct_Ah": s.early_time_Ah, "sigma_Ah": s.end_sigma_Ah,
             "sigma_20pct_Ah": s.early_time_sigma_Ah, "capacity_test": s.capacity_test} for s in scores]


@dataclass(frozen=True)
class LifeSummary:
    discharges: int
    scored_from: int
    scored: int  # the discharges after the first scored_from whose capacity was measured
    end_within_1pct: int
    early_within_3pct: int
    within_3_sigma: int
    end_max_abs_error: float
    early_max_abs_error: float
    end_rms_error: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def summarise(scores: list[DischargeScore], skip: int = 5) -> LifeSummary:
    """Counts over the discharges after the first ``skip`` (the estimator's
    first few discharges teach it the cell) whose capacity was measured."""
    kept = [s for s in scores[skip:] if s.measured]
    end = np.array([s.end_error for s in kept]) if kept else np.zeros(0)
    early = np.array([s.early_error for s in kept]) if kept else np.zeros(0)
    return LifeSummary(
        discharges=len(scores),
        scored_from=min(skip, len(scores)),
        scored=len(kept),
        end_within_1pct=int(np.sum(np.abs(end) <= 0.01)),
        early_within_3pct=int(np.sum(np.abs(early) <= 0.03)),
        within_3_sigma=int(sum(s.within_3_sigma for s in kept)),
        end_max_abs_error=float(np.max(np.abs(end))) if end.size else float("nan"),
        early_max_abs_error=float(np.max(np.abs(early))) if early.size else float("nan"),
        end_rms_error=float(np.sqrt(np.mean(end**2))) if end.size else float("nan"),
    )


@dataclass(frozen=True)
class R0Check:
    """The R0 estimate against impedance sweeps' Re (the ohmic resistance
    fitted to each sweep): Pearson's r over the sweeps inside the recording,
    each compared with the estimate at the last sample before it."""

    sweeps: int
    pearson_r: float
    r0_first_ohm: float
    r0_last_ohm: float
    re_first_ohm: float
    re_last_ohm: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class RecordedSweeps:
    """The impedance sweeps the recording's discharges surround, and those
    left out: each one between two recorded discharges with a discharge
    between them that the file does not hold (a file of some of a cell's
    discharges) fell where no estimate from the recording belongs to it."""

    kept: list[tuple[float, float]]
    dropped: int
    #: (number before, number after) of each pair of recorded discharges with discharges missing between them.
    unrecorded: list[tuple[int, int]]
    #: Sweeps before the recording's first sample or after its last (a file of a life's first discharges).
    outside: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"kept": len(self.kept), "dropped_unrecorded": self.dropped,
                "unrecorded_between_cycles": [list(pair) for pair in self.unrecorded],
                "outside_the_recording": self.outside}


def recorded_sweeps(recording: Recording, sweeps: list[tuple[float, float]],
                    missing_s: list[float]) -> RecordedSweeps:
    """``sweeps`` (time on the recording's axis, Re) without those in a
    stretch the recording does not cover: from the end of a discharge to the
    start of the next recorded one when a discharge the file does not hold
    started between them (``missing_s``: their start times on the same axis)."""
    starts = recording.cycle_starts() or []
    listed = recording.meta.extra.get("cycle_numbers", "")
    numbers = [int(n) for n in listed.split(",") if n.strip()]
    if len(numbers) != len(starts):
        numbers = list(range(1, len(starts) + 1))
    at = np.array([t for t, _ in sweeps], dtype=np.float64)
    missing = np.array(missing_s, dtype=np.float64)
    out = np.zeros(at.size, dtype=bool)
    unrecorded = []
    for k in range(1, len(starts)):
        after, before = recording.time_s[starts[k] - 1], recording.time_s[starts[k]]
        if np.any((missing > after) & (missing < before)):
            unrecorded.append((numbers[k - 1], numbers[k]))
            out |= (at > after) & (at < before)
    beyond = (at < recording.time_s[0]) | (at > recording.time_s[-1])
    return RecordedSweeps(kept=[sweep for sweep, o in zip(sweeps, out | beyond) if not o],
                          dropped=int((out & ~beyond).sum()), unrecorded=unrecorded, outside=int(beyond.sum()))


def file_sweeps(recording: Recording) -> tuple[list[tuple[float, float]], RecordedSweeps | None]:
    """The impedance sweeps the importer found for a NASA file's discharges (metadata.csv's,
    kept in ``extra['impedance_sweeps']`` on the recording's axis, so that an .npz or .parquet
    made of the file has them too) and those of them the recording covers
    (`recorded_sweeps`); ([], None) for any other recording."""
    listed_text = recording.meta.extra.get("impedance_sweeps", "")
    if not listed_text or not len(recording):
        return [], None
    try:
        listed = [(float(t), float(re)) for t, re in (item.split(":", 1) for item in listed_text.split(";") if item)]
        missing = [float(t) for t in recording.meta.extra.get("discharges_not_held_s", "").split(",") if t.strip()]
    except ValueError:
        raise RecordingError(f"recording {recording.meta.name!r}: extra impedance_sweeps or discharges_not_held_s "
                             "is not the importer's (time:Re;... and time,...)") from None
    return listed, recorded_sweeps(recording, listed, missing)


def check_r0(recording: Recording, trace: HealthTrace, sweeps: list[tuple[float, float]]) -> R0Check | None:
    """None if fewer than 3 sweeps fall inside the recording."""
    at = np.array([t for t, _ in sweeps], dtype=np.float64)
    re_ohm = np.array([r for _, r in sweeps], dtype=np.float64)
    inside = (at >= recording.time_s[0]) & (at <= recording.time_s[-1])
    if inside.sum() < 3:
        return None
    idx = np.searchsorted(recording.time_s, at[inside], side="right") - 1
    ours, theirs = trace.r0_ohm[idx], re_ohm[inside]
    return R0Check(
        sweeps=int(inside.sum()),
        pearson_r=float(np.corrcoef(ours, theirs)[0, 1]),
        r0_first_ohm=float(ours[0]),
        r0_last_ohm=float(ours[-1]),
        re_first_ohm=float(theirs[0]),
        re_last_ohm=float(theirs[-1]),
    )


def write_life_plot(name: str, scores: list[DischargeScore], recording: Recording, trace: HealthTrace,
                    sweeps: list[tuple[float, float]], path: Path) -> Path:
    """Capacity per discharge (measured, at the end, after 20 %, with 3 sigma)
    and R0 over the life (with the sweeps' Re on a second axis if given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.arange(len(scores))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), height_ratios=(2, 1))
    end = np.array([s.end_Ah for s in scores])
    sig = np.array([s.end_sigma_Ah for s in scores])
    ax1.fill_between(n, end - 3 * sig, end + 3 * sig, color="tab:blue", alpha=0.2, label="estimate ±3σ")
    ax1.plot(n, [s.measured_Ah for s in scores], "k.", ms=4, label="measured (charge delivered)")
    ax1.plot(n, end, color="tab:blue", lw=1.0, label="estimate when the discharge stops")
    ax1.plot(n, [s.early_Ah for s in scores], color="tab:orange", lw=0.8, ls="--",
             label=f"estimate after {EARLY_FRACTION:.0%} of the discharge")
    ax1.set_xlabel("discharge")
    ax1.set_ylabel("capacity / Ah")
    ax1.set_title(f"{name}: capacity (AWTLS) and R0", fontsize=10)
    ax1.legend(fontsize=8)
    days = recording.time_s / 86400.0
    learned = trace.where("r0_updated")
    r0 = np.where(np.arange(len(days)) >= (learned[0] if learned.size else len(days)), trace.r0_ohm, np.nan)
    ax2.plot(days, r0 * 1e3, color="tab:blue", lw=1.0, label="R0 estimate")
    ax2.set_xlabel("time / days")
    ax2.set_ylabel("R0 / mΩ")
    if sweeps:
        twin = ax2.twinx()
        twin.plot([t / 86400.0 for t, _ in sweeps], [r * 1e3 for _, r in sweeps], "r.", ms=3,
                  label="impedance sweep Re")
        twin.set_ylabel("Re / mΩ", color="tab:red")
        twin.legend(loc="lower right", fontsize=8)
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
