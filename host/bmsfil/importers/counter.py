"""The Ah column checked against the integral of the current, at import.

A tester's charge counter and the integral of its current agree (the LG HG2
drive cycles within 8 mAh): its increments are the integral's, slope +1. A
counter that runs the other way (slope -1, as an Arbin ``Discharge_Capacity``
that rises on discharge) is flipped, with a warning; any other slope (60 or
1/60: a time unit; 1000 or 1/1000: mAh; or no relation) is an error.

The slope is the median over blocks of consecutive samples, each holding at
least BLOCK_AH of net charge (and BLOCK_SAMPLES samples' worth, so that a
counter lagging the current by a sample does not matter), of the counter's
change over the integral's: rests (no current, no change) weigh nothing, and
a counter that restarts (per step, per cycle) or an unlogged gap spoils only
the block it falls in. Intervals with a NaN, or where time does not advance
(a new cycle's clock restarting), are left out.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..recording import RecordingError, RecordingWarning
from .table import at

#: Least net charge of a block, Ah.
BLOCK_AH = 0.02
#: A block holds at least this many median samples' charge.
BLOCK_SAMPLES = 20
#: Fewer blocks than this say nothing about the slope: not checked.
MIN_BLOCKS = 3
#: |slope -/+ 1| within this is a counter of the current (or of its opposite).
TOLERANCE = 0.1
# Slopes a wrong unit makes, and what makes them.
_CAUSES = (
    (60.0, "time in minutes in a column read as seconds"),
    (1 / 60.0, "time in seconds in a column read as minutes (seconds in a [min] column)"),
    (3600.0, "time in hours in a column read as seconds, or the counter in As (coulombs) read as Ah"),
    (1 / 3600.0, "time in seconds in a column read as hours"),
    (1000.0, "the counter in mAh in a column read as Ah, or time in ms read as s"),
    (1 / 1000.0, "the counter in Ah in a column read as mAh, or time in s read as ms"),
)


def _intervals(time_s: np.ndarray, current_A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each interval's length (s) and the charge the current moved over it (Ah, trapezoidal)."""
    dt = np.diff(time_s)
    return dt, 0.5 * (current_A[1:] + current_A[:-1]) * dt / 3600.0


def counter_slope(time_s: np.ndarray, current_A: np.ndarray, ah: np.ndarray) -> float | None:
    """The counter's increments over the integral of the current (median of blocks), or None if
    the current moves too little charge to tell."""
    da = np.diff(ah)
    dt, dq = _intervals(time_s, current_A)
    ok = np.isfinite(da) & np.isfinite(dq) & (dt > 0)
    da, dq = da[ok], dq[ok]
    moving = np.abs(dq) > 0
    if not moving.any():
        return None
    block = max(BLOCK_AH, BLOCK_SAMPLES * float(np.median(np.abs(dq[moving]))))
    slopes = []
    net_a = net_q = 0.0
    for a, q in zip(da.tolist(), dq.tolist()):
        net_a += a
        net_q += q
        if abs(net_q) >= block:
            slopes.append(net_a / net_q)
            net_a = net_q = 0.0
    if len(slopes) < MIN_BLOCKS:
        return None
    return float(np.median(slopes))


def check_counter(
    where: str,
    header_line: int,
    columns: dict[str, str],
    time_s: np.ndarray,
    current_A: np.ndarray,
    ah: np.ndarray,
) -> tuple[np.ndarray, str | None]:
    """The Ah counter, flipped (with a RecordingWarning, and that warning's text) if it runs
    against the current; None in place of the text if it does not.

    Raises RecordingError naming the file, the column, the slope found and its likely cause if
    the counter is not the current's integral. ``columns`` names the time, current and Ah columns.
    """
    slope = counter_slope(time_s, current_A, ah)
    if slope is None or abs(slope - 1.0) <= TOLERANCE:
        return ah, None
    column = columns["ah"]
    if abs(slope + 1.0) <= TOLERANCE:
        note = (
            f"column {column!r} runs against the current ({columns['current']!r}: its increments are "
            f"{slope:.3f} x the current's integral), as a discharge counter that rises on discharge does; "
            "flipped to count positive on charge (if it is the current that has the wrong sign, give "
            "--current-sign discharge-positive)"
        )
        warnings.warn(f"{at(where, header_line)}: {note}", RecordingWarning, stacklevel=2)
        return -ah, note
    causes = [cause for factor, cause in _CAUSES if abs(abs(slope) / factor - 1.0) <= TOLERANCE]
    hint = (
        "likely " + "; or ".join(causes) + ("" if slope > 0 else " (and counting the other way)")
        if causes
        else "no unit explains it: is this the Ah counter of this current?"
    )
    raise RecordingError(
        f"{at(where, header_line, column)}: the Ah counter does not follow the current: its increments are "
        f"{slope:.3g} x the integral of {columns['current']!r} over {columns['time']!r} (expected 1); {hint}"
    )


#: A counter step this much beyond the charge the current can explain (Ah) is the counter starting over.
RESTART_AH = 0.05
#: An interval longer than this many median intervals (and LONG_MIN_S) is a gap in the log: the charge
#: in it is unknown, so a counter that moved there is kept as it counted, with a warning.
LONG_INTERVALS = 10.0
LONG_MIN_S = 60.0


def _unexplained(lines: np.ndarray, columns: dict[str, str], time_s: np.ndarray, current_A: np.ndarray,
                 ah: np.ndarray):  # type: ignore[no-untyped-def]
    """The counter's moves the current cannot explain: (finite samples, their counter steps,
    intervals and the current's charge over them, the moves over ordinary intervals (restarts),
    the text for those over gaps in the log or None); None if nothing can be told."""
    finite = np.flatnonzero(np.isfinite(ah) & np.isfinite(time_s))
    known = np.isfinite(current_A)
    if finite.size < 2 or not known.any():
        return None
    # A missing current is taken as its neighbours' (in time order of the file).
    current = current_A if known.all() else np.interp(np.arange(len(current_A)), np.flatnonzero(known),
                                                       current_A[known])
    t, i, a = time_s[finite], current[finite], ah[finite]
    da = np.diff(a)
    dt, dq = _intervals(t, i)
    bound = np.maximum(np.abs(i[1:]), np.abs(i[:-1])) * np.maximum(dt, 0.0) / 3600.0
    positive = dt[dt > 0]
    long_s = max(LONG_INTERVALS * float(np.median(positive)), LONG_MIN_S) if positive.size else LONG_MIN_S
    unexplained = (dt >= 0) & (np.abs(da) > bound + RESTART_AH)
    gaps = np.flatnonzero(unexplained & (dt > long_s))
    jumps = np.flatnonzero(unexplained & (dt <= long_s))
    note = None
    if gaps.size:
        k = int(gaps[0])
        note = (f"column {columns['ah']!r} moved {da[k]:+.4f} Ah over {dt[k]:g} s not logged before line "
                f"{int(lines[finite[k + 1]])}, more than {columns['current']!r} at either end explains"
                + ("" if gaps.size == 1 else f" (and over {gaps.size - 1} more such gap(s))")
                + ": kept as the tester counted it (charge the log does not show)")
    return finite, da, dt, dq, jumps, note


def join_noting_gaps(
    where: str,
    lines: np.ndarray,
    columns: dict[str, str],
    time_s: np.ndarray,
    current_A: np.ndarray,
    ah: np.ndarray,
) -> tuple[np.ndarray, str | None, str | None]:
    """The Ah counter joined over the places where it starts over, what was joined, and what it
    moved over gaps in the log (each None: nothing).

    A tester may restart its counter at 0 mid-file (per cycle, per step, after a
    pause): the counter then jumps by far more than any current in the file could
    move in one interval. Between two samples the current moves at most the larger
    of their two currents times the interval (more only if it peaked unlogged in
    between); a change of the counter beyond that by RESTART_AH is a restart, and
    from there on the counter is offset so that the interval counts what the
    current's integral says. Samples with a missing count are stepped over (the
    change is taken between their neighbours), a missing current is taken as its
    neighbours'; a repeated timestamp is an interval of 0 s. Over an interval long enough to be a gap in
    the log (LONG_INTERVALS, LONG_MIN_S) the charge is not known, so a counter that
    moved more than its ends' currents explain is kept as counted, with a warning
    (the tester counted what it did not log). Joins are warned of with their lines.
    """
    found = _unexplained(lines, columns, time_s, current_A, ah)
    if found is None:
        return ah, None, None
    finite, da, dt, dq, jumps, gap_note = found
    if gap_note is not None:
        warnings.warn(f"{where}: {gap_note}", RecordingWarning, stacklevel=3)
    if not jumps.size:
        return ah, None, gap_note
    a = ah[finite]
    step = np.zeros(len(ah))
    step[finite[jumps + 1]] = -(da[jumps] - dq[jumps])
    out = ah + np.cumsum(step)
    where_lines = [int(lines[finite[j + 1]]) for j in jumps.tolist()]
    k = int(jumps[0])
    more = "" if jumps.size == 1 else (
        f"; and {jumps.size - 1} more time(s), at line(s) {', '.join(map(str, where_lines[1:6]))}"
        + (", ..." if jumps.size > 6 else ""))
    note = (
        f"column {columns['ah']!r} starts over at line {where_lines[0]} ({a[k]:+.4f} Ah to {a[k + 1]:+.4f} Ah in "
        f"{dt[k]:g} s, while {columns['current']!r} moved {dq[k]:+.4f} Ah){more}: joined, each restart's interval "
        "counted as the current's integral, so that the counter runs over the whole file"
    )
    warnings.warn(f"{where}: {note}", RecordingWarning, stacklevel=3)
    return out, note, gap_note


#: After its joins, the counter's net change may differ from the current's integral by the
#: resolution of the log (a current that stepped inside an interval: half its step times the
#: interval), plus this much (Ah) and this share of the charge moved: the LG HG2 files agree
#: within that resolution (0.075 Ah at most, on the minute-logged 2C discharges).
NET_SLACK_AH = 0.02
NET_SLACK_SHARE = 0.02


def check_net(where: str, columns: dict[str, str], time_s: np.ndarray, current_A: np.ndarray,
              ah: np.ndarray) -> None:
    """Raise RecordingError if the counter, over the whole file, is not the net charge of the
    current: a counter of one direction only (an Arbin ``Discharge_Capacity`` beside a current
    that also charges), or one that starts over at each step by less than a restart can be told
    from (join_noting_gaps), passes the slope test and would give a wrong reference SOC in silence.
    Intervals long enough to be gaps in the log are left out (their charge is the tester's)."""
    ok = np.isfinite(ah) & np.isfinite(time_s) & np.isfinite(current_A)
    t, i, a = time_s[ok], current_A[ok], ah[ok]
    if t.size < 2:
        return
    dt, dq = _intervals(t, i)
    da = np.diff(a)
    positive = dt[dt > 0]
    long_s = max(LONG_INTERVALS * float(np.median(positive)), LONG_MIN_S) if positive.size else LONG_MIN_S
    kept = (dt >= 0) & (dt <= long_s)
    resolution = float(np.sum(np.abs(np.diff(i))[kept] * dt[kept])) / 7200.0
    moved = float(np.sum(np.abs(dq[kept])))
    off = float(np.sum(da[kept]) - np.sum(dq[kept]))
    if abs(off) <= resolution + NET_SLACK_AH + NET_SLACK_SHARE * moved:
        return
    charging, discharging = kept & (i[1:] > 0) & (i[:-1] > 0), kept & (i[1:] < 0) & (i[:-1] < 0)
    q_in, q_out = float(np.sum(dq[charging])), float(-np.sum(dq[discharging]))
    a_in, a_out = float(np.sum(da[charging])), float(-np.sum(da[discharging]))
    if q_in > NET_SLACK_AH and abs(a_in) < 0.1 * q_in:
        why = (f"it stays still while the current charges ({q_in:.3f} Ah in, {a_in:+.3f} Ah counted): a counter "
               "of discharge only, not the net charge")
    elif q_out > NET_SLACK_AH and abs(a_out) < 0.1 * q_out:
        why = (f"it stays still while the current discharges ({q_out:.3f} Ah out, {a_out:+.3f} Ah counted): a "
               "counter of charge only, not the net charge")
    else:
        why = ("a counter that starts over at each step by less than can be told from the current (a step's "
               "count of a few mAh), or one of another current")
    raise RecordingError(
        f"{at(where, None, columns['ah'])}: the Ah counter is not the net charge of {columns['current']!r}: over the "
        f"file it moves {np.sum(da[kept]):+.4f} Ah where the current's integral moves {np.sum(dq[kept]):+.4f} Ah "
        f"({off:+.4f} Ah apart, more than the log's resolution explains); {why}. The reference SOC needs the net "
        "counter: map that one (bmsfil import --map ...,ah=<column>), or leave ah out to import without a reference"
    )
