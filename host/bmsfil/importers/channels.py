"""The measured quantities of a recording, read from a table: parsed, in SI units, checked."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ..recording import RecordingError, RecordingWarning
from . import parse
from .counter import check_counter, check_net, join_noting_gaps
from .plausibility import check
from .table import Converter, Header, Table, at
from .units import conversion, known_units

#: The quantities a Recording holds, by the names importers map columns to.
QUANTITIES = ("time", "current", "voltage", "temperature", "ah")


@dataclass(frozen=True)
class Channels:
    """Converted columns: each quantity in its Recording unit (time in seconds from an arbitrary origin)."""

    where: str  # the file, for messages
    values: dict[str, np.ndarray]
    lines: np.ndarray  # file line of each sample
    columns: dict[str, str]  # column as written in the header, per key
    notes: dict[str, str] = field(default_factory=dict)  # what was changed on reading, for the metadata's extra


def read_channels(
    table: Table,
    header: Header,
    columns: Mapping[str, int],
    units: Mapping[str, str] | None = None,
) -> Channels:
    """Read the columns ``key -> index``; keys in QUANTITIES are converted and checked.

    Other keys (such as NASA's ``cycle_idx``) are read as plain numbers, or as
    ``hh:mm:ss(.fff)`` durations in seconds when their first value has a colon
    (as a Digatron export's ``Step Time``).
    ``units`` gives the unit of a column whose header states none.
    An Ah counter is checked against the integral of the current (`check_counter`).
    """
    units = units or {}
    unit_of: dict[str, str] = {}
    scales: dict[str, tuple[float, float]] = {}
    converters: dict[str, tuple[int, Converter]] = {}
    # How a file of ';' or tabs writes its decimals: so its first row does, else learnt as it is read.
    marks = parse.DecimalMarks(comma=any("," in header.first_value(index) for index in columns.values()))
    numbers = partial(parse.numbers, decimal_comma=table.decimal_comma, marks=marks)
    for key, index in columns.items():
        column = header.cells[index]
        converters[key] = (index, numbers)
        if key == "state":  # a cycler's step type: the sign of a current logged as a magnitude
            converters[key] = (index, parse.direction)
            continue
        if key not in QUANTITIES:
            if ":" in header.first_value(index):
                converters[key] = (index, parse.clock_seconds)
            continue
        if key == "time":
            sample = header.first_value(index)
            if ":" in sample:
                # A date-time has a date before its clock: "2018-11-30 08:39:51".
                clock = parse.datetime_seconds if "-" in sample.split(":")[0] else parse.clock_seconds
                converters[key] = (index, clock)
                continue
        unit = header.units[index] or units.get(key, "")
        factor = conversion(key, unit)
        if factor is None:
            raise RecordingError(
                f"{at(table.where, header.line, column)}: unit {unit!r} is not one for {key}; "
                f"expected one of {known_units(key)}"
            )
        unit_of[key] = unit
        scales[key] = factor
    def learn(cells: Mapping[str, Sequence[str]], lines: Sequence[int]) -> None:
        conflict = marks.see({key: cells[key] for key, (_, fn) in converters.items() if fn is numbers}, lines)
        if conflict is not None and marks.read_with_point is not None:
            key, row = conflict
            earlier, line, cell = marks.read_with_point
            raise RecordingError(
                f"{at(table.where, lines[row], header.cells[columns[key]])}: a decimal ',' in {cells[key][row]!r}, "
                f"and line {line} (column {header.cells[columns[earlier]]!r}) wrote {cell!r}, read with '.' as "
                "its decimal point: a '.' that may have grouped thousands; write the file with one decimal mark")

    values, lines = table.read(header, converters, before=learn if table.decimal_comma else None)
    for key, (scale, offset) in scales.items():
        if scale != 1.0 or offset != 0.0:
            values[key] = values[key] * scale + offset
        if key != "time":
            index = columns[key]
            check(
                table.where, key, header.cells[index], unit_of[key], scale, values[key], lines, header.line,
                from_header=bool(header.units[index]),
            )
    if "time" in values:
        bad = np.flatnonzero(~np.isfinite(values["time"]))
        if bad.size:
            i = int(bad[0])
            where = at(table.where, int(lines[i]), header.cells[columns["time"]])
            if np.isnan(values["time"][i]):
                raise RecordingError(f"{where}: expected a time, got an empty or NaN cell (every sample needs its time)")
            raise RecordingError(f"{where}: expected a finite time, got {values['time'][i]:g}")
    names = {key: header.cells[index] for key, index in columns.items()}
    if "time" in values:
        _check_time_resolution(table.where, names["time"], values["time"])
    if {"current", "voltage"} <= values.keys() and scales.get("current", (1.0, 0.0))[0] < 1.0:
        _check_current_scale(table.where, names["current"], unit_of["current"], values.get("time"), values["current"],
                             values["voltage"])
    notes: dict[str, str] = {}
    if {"ah", "current", "time"} <= values.keys():
        values["ah"], flipped = check_counter(
            table.where, header.line, names, values["time"], values["current"], values["ah"]
        )
        if flipped is not None:
            notes["ah_flipped"] = flipped
    return Channels(table.where, values, lines, names, notes)


#: More than this share of intervals of 0 s: the time column is coarser than the sampling (the
#: LG HG2 pulse test repeats a few timestamps, 0.03 %).
REPEATED_TIME_SHARE = 0.2


def _check_time_resolution(where: str, column: str, time: np.ndarray) -> None:
    """Raise RecordingError if most samples repeat the time before them (whole seconds at 10 Hz):
    the intervals would be 0 s, and every check and integral after this one wrong."""
    steps = np.diff(time)
    repeats = int(np.count_nonzero(steps == 0.0))
    if steps.size >= 10 and repeats > REPEATED_TIME_SHARE * steps.size and (steps > 0).any():
        # (A time that never advances is check_time_order's to name.)
        step = float(np.min(steps[steps > 0]))
        raise RecordingError(
            f"{at(where, None, column)}: {repeats} of {steps.size} samples repeat the time before them (its "
            f"smallest step is {step:g} s): the column is coarser than the sampling, and a current cannot be "
            "integrated over intervals of 0 s; map a time column with the sampling's resolution (--map time=COLUMN)"
        )


#: A current in mA (or µA) that moves less than this charge in all, beside a voltage that
#: swings by more than SWING_V, was probably written in A: a cell of any size does not swing
#: so far on so little (0.14 A of a C/20 test read as 0.14 mA moves 3 mAh in 20 h), Ah.
TINY_CHARGE_AH = 0.01
SWING_V = 0.3


def _check_current_scale(where: str, column: str, unit: str, time: np.ndarray | None, current: np.ndarray,
                         voltage: np.ndarray) -> None:
    """Warn of a current column in mA (or µA) whose values look like A: the reverse mistake, A
    holding mA, shows as currents no cell carries; this one as a voltage that swings by volts on
    a few mAh."""
    v = voltage[np.isfinite(voltage)]
    if time is None or len(time) < 2 or v.size < 2:
        return
    i = np.nan_to_num(current[:-1])
    moved = float(np.sum(np.abs(i) * np.clip(np.nan_to_num(np.diff(time)), 0.0, None))) / 3600.0
    low, high = np.percentile(v, [1.0, 99.0])
    if 0.0 < moved < TINY_CHARGE_AH and high - low > SWING_V:
        warnings.warn(f"{at(where, None, column)}: read in {unit!r}, it moves {moved * 1e3:.3g} mAh in all, and the "
                      f"voltage swings by {high - low:.2f} V on it: no cell does on so little; if the column holds A, "
                      "write its unit as [A]", RecordingWarning, stacklevel=5)


def check_time_order(channels: Channels, restarts: np.ndarray | None = None) -> None:
    """Raise RecordingError at the first sample whose time is before its predecessor's.

    ``restarts`` are sample indices where time may start over (new NASA cycles).
    Equal times are allowed: the HPPC file repeats some timestamps.
    """
    time = channels.values["time"]
    backwards = np.diff(time) < 0
    if restarts is not None:
        backwards[restarts[restarts > 0] - 1] = False
    found = np.flatnonzero(backwards)
    if not found.size and time.size > 1 and np.nanmax(time) == np.nanmin(time) and restarts is None:
        lines = channels.lines
        raise RecordingError(
            f"{at(channels.where, int(lines[-1]), channels.columns['time'])}: time never advances: all {time.size} "
            f"samples at {time[0]:.3f} s (the wrong column for --map time=..., or its unit?)"
        )
    if found.size:
        i = int(found[0]) + 1
        lines = channels.lines
        raise RecordingError(
            f"{at(channels.where, int(lines[i]), channels.columns['time'])}: time goes backwards: "
            f"{time[i - 1]:.3f} s at line {int(lines[i - 1])}, then {time[i]:.3f} s"
        )


def from_zero(values: np.ndarray) -> np.ndarray:
    """The values minus the first one that is not NaN (a counter or clock zeroed at the start)."""
    present = np.flatnonzero(~np.isnan(values))
    return values - values[present[0]] if present.size else values


def join_counter_restarts(channels: Channels) -> None:
    """The Ah counter, if any, joined where it starts over mid-file (`counter.join_noting_gaps`), in place;
    what was joined goes into the notes. Call it after any join the format knows better (step restarts)."""
    values = channels.values
    if not {"ah", "current", "time"} <= values.keys():
        return
    values["ah"], note, unlogged = join_noting_gaps(
        channels.where, channels.lines, channels.columns, values["time"], values["current"], values["ah"]
    )
    if note is not None:
        channels.notes["ah_restarts_joined"] = note
    if unlogged is not None:  # kept with the recording: eval warns of it (the counter moved unseen)
        channels.notes["ah_unlogged"] = unlogged
    check_net(channels.where, channels.columns, values["time"], values["current"], values["ah"])
