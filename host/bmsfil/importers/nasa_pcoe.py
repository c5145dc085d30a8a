"""NASA Ames PCoE battery ageing data (Saha and Goebel 2007): discharge time series.

A file holds every discharge of one cell, one row per sample:
``Voltage_measured`` (V), ``Current_measured`` (A, negative on discharge, so
already positive on charge), ``Temperature_measured`` (°C), ``Current_load``,
``Voltage_load``, ``Time`` (s, restarting at 0 every cycle) and ``cycle_idx``.
The header states no units; those above are the data set's.

The charges between discharges are not in the file, so the file has no Ah
counter of its own: each cycle's ``ah`` is the trapezoid integral of its
current from zero, and the concatenated recording (all cycles in order, the
cell's life) has none. In the concatenated recording each discharge starts
when metadata.csv says it started, relative to the first; without
metadata, UNOBSERVED_GAP_S after the previous one ends. Either way the time
between two discharges is time no sample covers (a charge, rests, impedance
tests), and an estimator sees it as an interval far longer than any sample
interval.

The cell is named by the file name (``B0005_discharge_timeseries.csv`` ->
``B0005``). The ambient temperature of each discharge, and NASA's capacity for
it, come from the data set's ``metadata.csv`` beside the file when that lists
exactly as many discharges of this cell as the file has cycles (else by
cycle_idx); otherwise the ambient is AMBIENT_C, the temperature the data set's
cells B0005-B0018 were cycled at. Since the name is all that ties a file to its
rows of metadata.csv, NASA's capacity of each discharge is compared with the
integral of its current: a file most of whose discharges disagree by more than
CAPACITY_TOLERANCE_AH and agree with another cell's is that cell's and is
refused (agreeing with no cell, it is warned of once: a capacity defined to
another cut-off); a discharge that disagrees alone is warned of.
"""

from __future__ import annotations

import csv
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple, NoReturn

import numpy as np

from ..recording import Recording, RecordingError, RecordingMeta, RecordingWarning
from .channels import Channels, check_time_order, read_channels
from .names import file_stem, safe_name
from .table import Header, Table, at

SOURCE = "Saha and Goebel (2007), Battery Data Set, NASA Ames Prognostics Data Repository"
NOMINAL_CAPACITY_AH = 2.0
AMBIENT_C = 24.0
#: Time between two discharges in the concatenated recording when metadata.csv
#: does not give their start times: about a CC-CV charge at 1.5 A with its rests.
UNOBSERVED_GAP_S = 3 * 3600.0
#: Largest disagreement accepted between NASA's capacity of a discharge
#: (metadata.csv) and the integral of its current. The two agree within 5.7 mAh
#: on every discharge of B0005 and within 28.0 mAh on B0007 (discharged to
#: 2.2 V, NASA's figure being to 2.7 V); this is over twice the larger.
CAPACITY_TOLERANCE_AH = 0.060
TEST = "CC discharge"

_COLUMNS = {
    "voltage": "Voltage_measured",
    "current": "Current_measured",
    "temperature": "Temperature_measured",
    "time": "Time",
    "cycle": "cycle_idx",
}
_UNITS = {"voltage": "V", "current": "A", "temperature": "degC", "time": "s"}
_CELL = re.compile(r"B\d{4}")
_METADATA_FILE = "metadata.csv"


class _Discharge(NamedTuple):
    """One discharge's row of metadata.csv."""

    ambient_C: float
    capacity_Ah: float | None
    start_s: float | None  # since 1970
    line: int  # of metadata.csv


def sniff(header: Header) -> bool:
    return all(header.find(name) is not None for name in _COLUMNS.values())


def import_cycles(table: Table, path: Path) -> list[Recording]:
    """One Recording per discharge, named ``<cell>_c<cycle_idx>``."""
    channels, starts = _read(table)
    values = channels.values
    cell = _cell_id(path)
    per_cycle = _checked_metadata(path, cell, channels, starts)
    ends = np.append(starts[1:], len(channels.lines))
    recordings = []
    for k, (start, end) in enumerate(zip(starts, ends)):
        number = int(values["cycle"][start])
        time = values["time"][start:end] - values["time"][start]
        current = values["current"][start:end]
        ah = _integral_Ah(time, current)
        ambient, nasa_capacity = (per_cycle[k].ambient_C, per_cycle[k].capacity_Ah) if per_cycle else (AMBIENT_C, None)
        extra = {"cycle_idx": str(number), "first_line": str(int(channels.lines[start]))}
        if nasa_capacity is not None:
            extra["nasa_capacity_Ah"] = repr(nasa_capacity)
        recordings.append(
            Recording(
                time_s=time,
                current_A=current,
                voltage_V=values["voltage"][start:end],
                temp_C=values["temperature"][start:end],
                ah=ah,
                meta=_meta(f"{cell}_c{number:03d}", cell, ambient, extra),
            )
        )
    return recordings


def import_concatenated(table: Table, path: Path) -> Recording:
    """All discharges end to end; ``extra['cycle_starts']`` lists the sample index of each."""
    channels, starts = _read(table)
    values = channels.values
    cell = _cell_id(path)
    time = values["time"].copy()
    ends = np.append(starts[1:], len(time))
    per_cycle = _checked_metadata(path, cell, channels, starts)
    began = [row.start_s for row in per_cycle] if per_cycle else []
    offset = 0.0
    for k, (start, end) in enumerate(zip(starts, ends)):
        time[start:end] += offset - time[start]
        following = k + 1
        if following < len(starts):
            known = following < len(began) and began[following] is not None and began[0] is not None
            offset = time[end - 1] + UNOBSERVED_GAP_S
            if known:
                offset = max(time[end - 1] + 1.0, began[following] - began[0])
    ambients = {row.ambient_C for row in per_cycle} if per_cycle else {AMBIENT_C}
    extra = {"cycle_starts": ",".join(map(str, starts)),
             "cycle_numbers": ",".join(str(int(values["cycle"][k])) for k in starts)}
    if len(ambients) > 1:
        extra["ambient_temp_C_per_cycle"] = ",".join(f"{row.ambient_C:g}" for row in per_cycle or ())
    # The impedance sweeps of metadata.csv travel with the recording (into an .npz or .parquet,
    # which has no metadata.csv beside it): bmsfil health compares R0 with their Re.
    numbers = [int(values["cycle"][k]) for k in starts]
    if sweeps := impedance_sweeps(path, numbers):
        extra["impedance_sweeps"] = ";".join(f"{t:.3f}:{re:.9g}" for t, re in sweeps)
        if missing := missing_discharges(path, numbers):
            extra["discharges_not_held_s"] = ",".join(f"{t:.3f}" for t in missing)
    return Recording(
        time_s=time,
        current_A=values["current"],
        voltage_V=values["voltage"],
        temp_C=values["temperature"],
        meta=_meta(
            f"{cell}_discharges", cell, ambients.pop() if len(ambients) == 1 else None, extra
        ),
    )


def _read(table: Table) -> tuple[Channels, np.ndarray]:
    """The columns, checked, and the sample index where each cycle starts."""
    header = table.require_header(
        sniff,
        "a NASA PCoE discharge time series (Voltage_measured, Current_measured, "
        "Temperature_measured, Time, cycle_idx)",
    )
    channels = read_channels(table, header, header.require(table.where, _COLUMNS), _UNITS)
    cycle = channels.values["cycle"]
    column = channels.columns["cycle"]
    bad = np.flatnonzero(np.isnan(cycle) | (cycle != np.round(cycle)))
    if bad.size:
        raise RecordingError(
            f"{at(table.where, int(channels.lines[bad[0]]), column)}: expected a whole "
            f"cycle number, got {cycle[bad[0]]:g}"
        )
    lines = channels.lines
    step = np.diff(cycle)
    starts = np.concatenate(([0], np.flatnonzero(step) + 1))
    back = np.flatnonzero(step < 0)
    if back.size:
        i = int(back[0]) + 1
        earlier = starts[(starts < i) & (cycle[starts] == cycle[i])]
        if earlier.size:
            _appears_twice(table.where, column, int(cycle[i]), int(lines[earlier[0]]), int(lines[i]))
        raise RecordingError(
            f"{at(table.where, int(lines[i]), column)}: cycle {cycle[i]:g} after "
            f"cycle {cycle[i - 1]:g}: the cycles must be in order"
        )
    # A cycle written twice in a row: its time starts over within what reads as one cycle.
    time = channels.values["time"]
    backwards = np.diff(time) < 0
    backwards[starts[1:] - 1] = False
    found = np.flatnonzero(backwards)
    if found.size:
        i = int(found[0]) + 1
        start = int(starts[np.searchsorted(starts, i, side="right") - 1])
        if time[i] <= time[start]:
            _appears_twice(table.where, column, int(cycle[i]), int(lines[start]), int(lines[i]))
    check_time_order(channels, starts)
    return channels, starts


def _appears_twice(where: str, column: str, cycle: int, first_line: int, again_line: int) -> NoReturn:
    raise RecordingError(
        f"{at(where, again_line, column)}: cycle {cycle} appears twice (lines {first_line} and {again_line}): "
        "expected each cycle once, its samples together"
    )


def _integral_Ah(time_s: np.ndarray, current_A: np.ndarray) -> np.ndarray:
    steps = 0.5 * (current_A[1:] + current_A[:-1]) * np.diff(time_s) / 3600.0
    # A missing current loses its interval's charge instead of making the rest NaN.
    return np.concatenate(([0.0], np.cumsum(np.nan_to_num(steps))))


def _meta(name: str, cell: str, ambient: float | None, extra: dict[str, str]) -> RecordingMeta:
    return RecordingMeta(
        name=safe_name(name),
        cell_id=cell,
        nominal_capacity_Ah=NOMINAL_CAPACITY_AH,
        ambient_temp_C=ambient,
        source=SOURCE,
        test=TEST,
        extra=extra,
    )


def _cell_id(path: Path) -> str:
    stem = file_stem(path)
    match = _CELL.search(stem)
    return match[0] if match else stem.split("_")[0]


def _metadata(path: Path, cell: str, cycles: list[int]) -> list[_Discharge] | None:
    """The metadata.csv row of each of the file's discharges of ``cell``
    (their cycle_idx: ``cycles``).

    From the data set's metadata.csv beside the file, if it has one that
    lists this cell's discharges: in order when it lists as many as the file
    holds, else by cycle_idx (the discharge's number, 1 for the first: a file
    of some of a cell's discharges); else None, with a warning when the
    metadata lists the cell but not these discharges.
    """
    meta_path = path.with_name(_METADATA_FILE)
    unknown = (f"{path}: {{}}: its ambient temperature is not known (bmsfil takes {AMBIENT_C:g} °C, the room of the "
               "data set's first cells, unless --meta ambient_temp_C=T says otherwise), nor when each discharge "
               f"began (a life of several is laid out with {UNOBSERVED_GAP_S / 3600:g} h between them), nor NASA's "
               "capacities to check the file against")
    if not meta_path.is_file():
        warnings.warn(unknown.format(f"no {_METADATA_FILE} of the data set beside it"), RecordingWarning,
                      stacklevel=4)
        return None
    where = str(meta_path)
    rows = []
    with open(meta_path, newline="", encoding="latin-1") as fh:
        reader = csv.DictReader(fh)
        if not {"type", "battery_id", "ambient_temperature", "Capacity"} <= set(reader.fieldnames or ()):
            warnings.warn(unknown.format(f"the {_METADATA_FILE} beside it is not the data set's (no columns type, "
                                         "battery_id, ambient_temperature, Capacity)"), RecordingWarning, stacklevel=4)
            return None
        for row in reader:
            if row["type"] == "discharge" and row["battery_id"] == cell:
                rows.append((reader.line_num, row["ambient_temperature"] or "", row["Capacity"] or "",
                             row.get("start_time") or ""))
    if len(rows) != len(cycles):
        if not rows:
            warnings.warn(unknown.format(f"{where} lists no discharge of {cell}"), RecordingWarning, stacklevel=4)
            return None
        if not all(1 <= n <= len(rows) for n in cycles):
            warnings.warn(f"{where}: lists {len(rows)} discharges of {cell}, {path.name} holds {len(cycles)} with "
                          f"cycle_idx {min(cycles)} to {max(cycles)}: its ambient temperatures, capacities and "
                          "start times left out", RecordingWarning, stacklevel=4)
            return None
        rows = [rows[n - 1] for n in cycles]
    out = []
    for line, ambient, capacity, start in rows:
        try:
            out.append(_Discharge(float(ambient), float(capacity) if capacity.strip() else None, _start_s(start), line))
        except ValueError:
            raise RecordingError(
                f"{at(where, line)}: expected numbers in 'ambient_temperature' and 'Capacity', "
                f"got {ambient!r} and {capacity!r}"
            ) from None
    return out


#: More than this share of a file's discharges disagreeing with a cell's capacities: another cell's file.
OTHER_CELL_SHARE = 0.1


def _checked_metadata(path: Path, cell: str, channels: Channels, starts: np.ndarray) -> list[_Discharge] | None:
    """`_metadata` of the file's discharges, its capacities compared with the
    integral of each discharge's current: where more than OTHER_CELL_SHARE
    disagree by over CAPACITY_TOLERANCE_AH the metadata is another cell's
    (RecordingError; the cells of one batch agree on their early discharges,
    so half was too many: B0005's file named after B0007 disagreed on 82 of
    168); a few that do are warned of, in one warning."""
    values = channels.values
    cycles = [int(values["cycle"][k]) for k in starts]
    per_cycle = _metadata(path, cell, cycles)
    if not per_cycle:
        return per_cycle
    ends = np.append(starts[1:], len(channels.lines))
    delivered = [-_integral_Ah(values["time"][s:e], values["current"][s:e])[-1] for s, e in zip(starts, ends)]
    compared = [k for k, row in enumerate(per_cycle) if row.capacity_Ah is not None]
    off = [k for k in compared if abs(delivered[k] - per_cycle[k].capacity_Ah) > CAPACITY_TOLERANCE_AH]
    meta_path = str(path.with_name(_METADATA_FILE))
    tolerance = f"{CAPACITY_TOLERANCE_AH * 1e3:.0f} mAh"
    if len(off) > OTHER_CELL_SHARE * len(compared):
        worst = max(off, key=lambda k: abs(delivered[k] - per_cycle[k].capacity_Ah))
        others = _cells_agreeing(path, cycles, delivered)
        found = (f"{channels.where}: the integral of the current disagrees with {cell}'s capacities in {meta_path} "
                 f"by more than {tolerance} on {len(off)} of {len(compared)} discharges (worst: cycle "
                 f"{cycles[worst]} at line {int(channels.lines[starts[worst]])}, {delivered[worst]:.3f} Ah against "
                 f"{per_cycle[worst].capacity_Ah:.3f} Ah at line {per_cycle[worst].line})")
        if all(delivered[k] < 0.5 * per_cycle[k].capacity_Ah for k in off):  # type: ignore[operator]
            # Far less than the capacity on every one that disagrees: a file of part of each
            # (a short discharge agrees with any cell's smallest capacities: no other cell's).
            warnings.warn(f"{found}: those discharges deliver less than half of it: cut short (a file of part of "
                          "each)? The integrals are used", RecordingWarning, stacklevel=4)
            return per_cycle
        if others:
            raise RecordingError(f"{found}: the file, named after {cell}, holds another cell's discharges (they "
                                 f"agree with {' and '.join(others)}'s); name it after its cell, or import it "
                                 f"without {_METADATA_FILE} beside it")
        # No other cell's either: a capacity defined otherwise (another
        # cut-off), not another cell. Said once; the discharges' own
        # integrals are what bmsfil measures capacity by anyway.
        warnings.warn(f"{found}, and with every other cell's: its capacities there are not the integral of these "
                      "discharges (defined to another cut-off voltage?); the integrals are used",
                      RecordingWarning, stacklevel=4)
        return per_cycle
    if off:
        shown = "; ".join(
            f"cycle {cycles[k]} at line {int(channels.lines[starts[k]])}: {delivered[k]:.3f} Ah against "
            f"{per_cycle[k].capacity_Ah:.3f} Ah at {at(meta_path, per_cycle[k].line)}" for k in off[:3])
        warnings.warn(
            f"{channels.where}: the integral of the current disagrees with {cell}'s capacity in {meta_path} by more "
            f"than {tolerance} on {len(off)} of {len(compared)} discharges ({shown}{'; ...' if len(off) > 3 else ''})",
            RecordingWarning,
            stacklevel=4,
        )
    return per_cycle


def _cells_agreeing(path: Path, cycles: list[int], delivered: list[float]) -> list[str]:
    """The cells in metadata.csv whose capacities of these discharges all
    agree with ``delivered`` within CAPACITY_TOLERANCE_AH."""
    with open(path.with_name(_METADATA_FILE), newline="", encoding="latin-1") as fh:
        listed: dict[str, list[str]] = {}
        for row in csv.DictReader(fh):
            if row["type"] == "discharge":
                listed.setdefault(row["battery_id"], []).append(row["Capacity"] or "")
    agreeing = []
    for cell, capacities in listed.items():
        if len(capacities) != len(cycles):
            if not all(1 <= n <= len(capacities) for n in cycles):
                continue
            capacities = [capacities[n - 1] for n in cycles]
        try:
            if all(abs(d - float(q)) <= CAPACITY_TOLERANCE_AH for d, q in zip(delivered, capacities)):
                agreeing.append(cell)
        except ValueError:
            continue  # a cell without a capacity for each of them
    return agreeing


def _start_s(vector: str) -> float | None:
    """A MATLAB date vector as metadata.csv writes it ("[2008. 4. 2. 15. 25.
    41.593]") in seconds since 1970 (UTC assumed), or None if it is not one."""
    parts = vector.strip().strip("[]").split()
    try:
        year, month, day, hour, minute, second = (float(p) for p in parts)
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), tzinfo=timezone.utc)
    except ValueError:
        return None
    return moment.timestamp() + second


def impedance_sweeps(path: str | Path, cycles: list[int]) -> list[tuple[float, float]]:
    """(time, Re) of every impedance sweep of the file's cell in the data
    set's metadata.csv, time in s on the concatenated recording's axis (0 at
    the start of the file's first discharge; ``cycles``: the file's cycle_idx,
    as ``extra['cycle_numbers']`` lists them); [] without metadata or start
    times. Re is the electrolyte (ohmic) resistance fitted to the sweep, in ohm."""
    path = Path(path)
    meta_path = path.with_name(_METADATA_FILE)
    if not meta_path.is_file():
        return []
    cell = _cell_id(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingWarning)  # said when the file was imported
        discharges = _metadata(path, cell, cycles)
    first = discharges[0].start_s if discharges else None
    if first is None:
        return []
    sweeps: list[tuple[float, float]] = []
    with open(meta_path, newline="", encoding="latin-1") as fh:
        reader = csv.DictReader(fh)
        if not {"type", "battery_id", "start_time", "Re"} <= set(reader.fieldnames or ()):
            return []
        for row in reader:
            if row["battery_id"] != cell or row["type"] != "impedance":
                continue
            start = _start_s(row["start_time"] or "")
            try:
                re_ohm = float(row["Re"])
            except ValueError:
                continue
            if start is not None and np.isfinite(re_ohm) and re_ohm > 0.0:
                sweeps.append((start - first, re_ohm))
    return sweeps


def missing_discharges(path: str | Path, cycles: list[int]) -> list[float]:
    """Start, in s on the concatenated recording's axis (as `impedance_sweeps`),
    of each discharge of the file's cell in metadata.csv that the file (its
    cycle_idx: ``cycles``) does not hold; [] without metadata or start times."""
    path = Path(path)
    cell = _cell_id(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordingWarning)  # said when the file was imported
        held = _metadata(path, cell, cycles)
    if not held or held[0].start_s is None:
        return []
    lines = {row.line for row in held}
    missing = []
    with open(path.with_name(_METADATA_FILE), newline="", encoding="latin-1") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            if row["type"] == "discharge" and row["battery_id"] == cell and reader.line_num not in lines:
                start = _start_s(row.get("start_time") or "")
                if start is not None:
                    missing.append(start - held[0].start_s)
    return missing
