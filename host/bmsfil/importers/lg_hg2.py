"""The LG INR18650HG2 data set of Kollmeyer et al. (2020), in its three published layouts.

* raw: the Digatron cycler's own export: ``key,value`` header lines, then
  ``Time Stamp,Step,Status,Prog Time,...,Voltage,Current,Temperature,Capacity,...``
  and a units row. Time is ``Prog Time`` (hh:mm:ss.fff since program start).
* formatted: ``Timestamp,Time [min],Voltage [V],Current [A],Temperature [degC],Capacity [Ah]``.
* processed (usually gzip): the formatted columns plus ``SOC [-]`` and
  ``Open Circuit Voltage [V]``, which a third party derived by a heuristic:
  they are never read, so they can never become a reference.

Columns are found by name and their units by the header, never by position.
In every layout current is positive on charge and ``Capacity`` is the
cycler's Ah counter; the Recording's ``ah`` is the charge since the first
sample. In a raw export the cycler restarts its counter at 0 at some steps of
the program (in the 0.5C and 2C tests: the rest and the charge after the
discharge, and the closing stop step) and carries it on at others (a rest
after a charge, a drive cycle's profile and its rest): where the counter of a new ``Step`` starts near 0 rather than
near where the last step ended, the last step's end value (plus the charge
between its last sample and its end, from ``Step Time``) is carried over, so
that ``ah`` is continuous over the whole file (`join_step_restarts`). The
formatted layouts have no step column and are taken as they are.

In the formatted layouts the counter is the drive cycle's own: 0 at its start
(data README); in a raw export, so is the counter of the drive profile's step
(``Status`` TABLE). A file that starts later (cut from a drive cycle, e.g.
mid-discharge) starts at the Ah the cycle had delivered by then, so its
reference SOC starts at 1 + (that Ah) / Q_ref, not at 1, and
``extra['reference_start']`` says so. A raw export whose first sample is in
another step (a charge or rest logged before the profile) counts that step,
not the drive cycle: it is taken to start full, as before.

Metadata. The data set's defaults (cell, chemistry, nominal 3.0 Ah, source,
Q_ref) apply to the formatted layouts, which only this data set uses (with a
warning where the data do not fit the cell: `not_an_lg_hg2`), and to
raw exports whose header mentions HG2; any other Digatron export keeps only
what its own header says. The chamber temperature is read from a parent
directory named like ``n10degC`` (the data set's layout), else it is the first
temperature sample rounded to the nearest chamber temperature of Q_REF_AH.
``reference_initial_soc`` is 1.0 for the tests that start from a full
charge (drive cycles and HPPC, by the test's name: the ``Test section`` of a
raw header, else the file name after its test number). The 0.5C and 2C
discharges (``Dis_*``) have a known SOC too, but not at their first sample,
which is logged a minute into the discharge step. Most of these exports end
with the data set's full charge (1C CC-CV to 4.2 V, 50 mA cut-off, at 22 °C or
more) and a rest: the reference is anchored there (SOC 1 at the end of that
charge). Without it (the 25 °C files stop at the end of the discharge) it is
anchored at the start of the discharge step (SOC 1, the first sample being
``Step Time`` x current into it): the 2C test follows the 0.5C test's full
charge and rest, and the 25 °C 0.5C test follows the C/20 test's CC-CV charge
at 24 °C. Anchoring at the start instead of the end would be wrong for the
cold 0.5C tests: they follow the C/20 charge at the chamber temperature, which
leaves the cell short of full (rested 4.139 V at -20 °C against 4.186 V after a
full charge; the closing charge puts back 5 % of Q_ref more than the
discharge took). ``reference_initial_soc`` is then 1 - (Ah at the anchor) / Q_ref.
So is it for a charge the mirrors keep as a file of its own (``589_Charge1``,
the charges between their drive cycles), anchored at the end of its CC-CV
charge; in the formatted layouts, which have no ``Step Time``, only that
closing-charge anchor is known.
Other tests (capacity tests, C/20, ...) get None: their first sample is not
at a SOC the data set states.
The name is the file stem without ``_parsed`` plus the chamber temperature,
e.g. ``589_US06_0degC``, unique across the data set's folders and safe as a
file name.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..recording import Recording, RecordingError, RecordingMeta, RecordingWarning
from .channels import Channels, check_time_order, from_zero, join_counter_restarts, read_channels
from .names import file_stem, safe_name
from .table import HEADER_SEARCH_ROWS, Header, Table, at, normalise

SOURCE = (
    "Kollmeyer, Vidal, Naguib, Skells (2020), LG 18650HG2 Li-ion Battery Data, "
    "Mendeley Data V3, doi:10.17632/cp3473x7xv.3"
)
CELL_ID = "LG INR18650HG2"
CHEMISTRY = "NMC/graphite"
NOMINAL_CAPACITY_AH = 3.0

#: C/20 discharge capacity (Ah) at each chamber temperature (°C): the Q_ref of the
#: benchmark reference SOC = 1 + Ah / Q_ref. Source: the table "Reference state of
#: charge" in the data README (/work/shared/data/README.md), from the *_C20DisCh tests.
Q_REF_AH: dict[float, float] = {
    40: 2.6899,
    25: 2.7807,
    10: 2.6488,
    0: 2.5986,
    -10: 2.5637,
    -20: 2.4948,
}

# Every drive cycle starts at full charge (data README); the HPPC test runs
# from 100 % SOC down (data set readme, test 1). A suffix after "_" names a part
# of one (567_US06_mid_parsed.csv: US06, cut).
_FROM_FULL = re.compile(r"(US06|HWFET|UDDS|LA92|NN|Mix(ed)?\d*|HPPC)(_\w*)?", re.IGNORECASE)
# The constant-current discharges (0.5C, 2C) start from a full charge too,
# but are logged from a minute into their discharge step (module docstring).
_DISCHARGE_FROM_FULL = re.compile(r"Dis_\w+", re.IGNORECASE)
# The charges the mirrors keep as files of their own (``589_Charge1``): full at their end.
_CHARGE_TO_FULL = re.compile(r"Charge\d*", re.IGNORECASE)
#: The data set's full charge: CV at 4.2 V until the current falls to 50 mA
#: (a 60 s log catches the last sample at 48.5 mA and 4.1998 V).
FULL_V = 4.19
FULL_CUTOFF_A = 0.06
#: |current| at or below this is rest, A.
REST_A = 0.01
#: Voltage an LG HG2 never leaves (2.5 V discharge cut-off, 4.2 V charge), V.
VOLTAGE_WINDOW_V = (2.45, 4.25)
OUTSIDE_SHARE = 0.01
#: The data set's discharge cut-off, V, and what an LG HG2 has left there (of Q_ref)
#: at most, at no more than CUTOFF_MAX_A and at CUTOFF_MIN_AMBIENT_C or warmer (not_an_lg_hg2).
CUTOFF_V = 2.8
CUTOFF_MAX_A = 3.5
CUTOFF_MIN_AMBIENT_C = 10.0
CUTOFF_MAX_SOC = 0.15
#: A formatted file whose counter starts further from 0 than this (Ah) starts after its
#: drive cycle did; the whole ones start within 0.01 mAh.
COUNTER_ZERO_AH = 0.001
_CHAMBER_DIR = re.compile(r"(n?)(\d+)degC")
_TEST_NUMBER = re.compile(r"\d+_(.+)")

_RAW_COLUMNS = {
    "time": "Prog Time",
    "voltage": "Voltage",
    "current": "Current",
    "temperature": "Temperature",
    "ah": "Capacity",
}
# The cycler's units row states these; they are what the data set uses when it is missing.
_RAW_UNITS = {"voltage": "V", "current": "A", "temperature": "C", "ah": "Ah"}
# The Status of a drive profile's samples: the step whose counter starts at 0 with the drive cycle.
_PROFILE_STATUS = "TABLE"
# Read when present: where the cycler's counter may restart (join_step_restarts).
_RAW_STEP_COLUMNS = {"step": "Step", "step_time": "Step Time"}
_FORMATTED_COLUMNS = {
    "time": "Time",
    "voltage": "Voltage",
    "current": "Current",
    "temperature": "Temperature",
    "ah": "Capacity",
}
_PROCESSED_ONLY = ("SOC", "Open Circuit Voltage")
# Keys of the Digatron export's header lines: enough of them say what the file was meant to be.
_DIGATRON_KEYS = frozenset(
    normalise(key) for key in ("Measurement ID", "Battery Name", "Battery Type", "Circuit", "Program", "Test section")
)


def sniff_raw(header: Header) -> bool:
    return all(header.find(name) is not None for name in ("Prog Time", "Voltage", "Current"))


def sniff_formatted(header: Header) -> bool:
    return _formatted_layout(header) and header.find("SOC") is None


def sniff_processed(header: Header) -> bool:
    return _formatted_layout(header) and header.find("SOC") is not None


def _formatted_layout(header: Header) -> bool:
    names = ("Timestamp",) + tuple(_FORMATTED_COLUMNS.values())
    return all(header.find(name) is not None for name in names)


def digatron_without_columns(table: Table) -> RecordingError | None:
    """The error for a file that starts as a Digatron export but has no column row; None if it does not."""
    keys = {normalise(row[0]) for _, row in table.head_rows if row}
    if len(keys & _DIGATRON_KEYS) < 2:
        return None
    if table.head_is_whole_file:
        last = table.head_rows[-1][0]
        where = f"the file ends at line {last}: is it truncated?"
    else:
        where = f"none in the first {HEADER_SEARCH_ROWS} rows"
    return RecordingError(
        f"{at(table.where)}: starts as a Digatron export (Measurement ID, Battery Name, ... lines) but "
        f"has no column row with 'Prog Time', 'Voltage' and 'Current' after them; {where} "
        f"Columns found: {table.columns_found()}"
    )


def import_raw(table: Table, path: Path) -> Recording:
    header = table.require_header(
        sniff_raw,
        "a Digatron export (column row 'Time Stamp, Step, Status, Prog Time, ..., "
        "Voltage, Current, Temperature, Capacity')",
    )
    columns = header.require(table.where, _RAW_COLUMNS)
    columns.update({key: i for key, name in _RAW_STEP_COLUMNS.items() if (i := header.find(name)) is not None})
    channels = read_channels(table, header, columns, _RAW_UNITS)
    check_time_order(channels)
    values = channels.values
    step_time = values.pop("step_time", None)
    step = values.pop("step", None)
    if step is not None:
        values["ah"], joined = join_step_restarts(values["ah"], step, values["current"], values["time"], step_time)
    else:
        joined = 0
    join_counter_restarts(channels)
    info = _key_values(header.preamble)
    hg2 = any("hg2" in value.lower() for value in info.values())
    test = info.get("Test section") or _test_from_stem(path)
    nominal = _number(info.get("Nominal Capacity", ""))
    if nominal is None and hg2:
        nominal = NOMINAL_CAPACITY_AH
    extra = {normalise(key).replace(" ", "_"): value for key, value in info.items()}
    if joined:
        extra["ah_joined_steps"] = str(joined)
    full_ah = _full_ah(test, values, step_time) if hg2 else None
    status = header.find("Status")
    in_profile = status is not None and header.first_value(status).upper() == _PROFILE_STATUS
    return _recording(
        path,
        channels,
        hg2=hg2,
        test=test,
        cell_id=info.get("Battery Name") or (CELL_ID if hg2 else ""),
        chemistry=CHEMISTRY if hg2 else info.get("Type", info.get("Battery Type", "")),
        nominal=nominal,
        extra=extra,
        full_ah=full_ah,
        counter_start_ah=_first_value(values["ah"]) if in_profile else None,
    )


def _full_ah(test: str, values: dict[str, np.ndarray], step_time: np.ndarray | None) -> float | None:
    """Where a test whose SOC the data set states at a known point is full, as its Ah from
    the first sample (`_discharge_test_full_ah`): a discharge test, or a charge of its own."""
    if _DISCHARGE_FROM_FULL.fullmatch(test) or _CHARGE_TO_FULL.fullmatch(test):
        return _discharge_test_full_ah(values, step_time)
    return None


def _discharge_test_full_ah(values: dict[str, np.ndarray], step_time: np.ndarray | None) -> float | None:
    """Where a constant-current discharge test (Dis_*) is known full, as its Ah from the first sample.

    At the end of its closing charge when the file has one (its last charging
    sample at the data set's 4.2 V CV and 50 mA cut-off), else, when it never
    charges, at the start of its discharge step, which the first sample is
    ``Step Time`` into; None if neither is known.
    """
    ah = from_zero(values["ah"])
    current, voltage = np.nan_to_num(values["current"]), values["voltage"]
    charging = np.flatnonzero(current > REST_A)
    if charging.size:
        k = int(charging[-1])
        if voltage[k] >= FULL_V and current[k] <= FULL_CUTOFF_A and np.isfinite(ah[k]):
            return float(ah[k])
        return None
    if step_time is None or not np.isfinite(step_time[0]):
        return None
    # The charge of the discharge step before its first logged sample (current x step time).
    return float(-current[0] * step_time[0] / 3600.0)


def join_step_restarts(
    ah: np.ndarray,
    step: np.ndarray,
    current: np.ndarray,
    time: np.ndarray,
    step_time: np.ndarray | None,
) -> tuple[np.ndarray, int]:
    """The cycler's Ah counter made continuous over the file, and how many step restarts were joined.

    At each change of ``step`` the counter either carries on or restarts at 0.
    Its value at the new step's start is estimated as the first sample's value
    less the charge since the step began (current x ``step_time``); if that is
    nearer 0 than the last step's last value, the counter restarted, and from
    there on it is offset by that last value plus the charge between the last
    step's last sample and its end (its current until the new step began).
    Signs are the counter's own: a discharge step counts down, a charge step up.
    """
    out = np.array(ah, dtype=float)
    offset = 0.0
    joined = 0
    changes = np.flatnonzero(np.diff(step) != 0) + 1
    for k in changes.tolist():
        before, first = ah[k - 1], ah[k]
        if not (np.isfinite(before) and np.isfinite(first)):
            continue
        into_step = step_time[k] if step_time is not None and np.isfinite(step_time[k]) else 0.0
        since_start = np.nan_to_num(current[k]) * into_step / 3600.0
        start = first - since_start
        if abs(start) < abs(start - before):
            tail_s = max(0.0, (time[k] - into_step) - time[k - 1])
            offset += before + np.nan_to_num(current[k - 1]) * tail_s / 3600.0
            joined += 1
            out[k:] = ah[k:] + offset
    return out, joined


def import_formatted(table: Table, path: Path) -> Recording:
    """The formatted or the processed layout (their common columns)."""
    header = table.require_header(
        _formatted_layout,
        "the LG HG2 formatted layout (Timestamp, Time [min], Voltage [V], Current [A], "
        "Temperature [degC], Capacity [Ah])",
    )
    channels = read_channels(table, header, header.require(table.where, _FORMATTED_COLUMNS))
    check_time_order(channels)
    join_counter_restarts(channels)
    ignored = [header.cells[i] for i in map(header.find, _PROCESSED_ONLY) if i is not None]
    extra = (
        {"ignored_columns": ", ".join(ignored) + " (a heuristic of the processed files, never a reference)"}
        if ignored
        else {}
    )
    test = _test_from_stem(path)
    recording = _recording(
        path,
        channels,
        hg2=True,
        test=test,
        cell_id=CELL_ID,
        chemistry=CHEMISTRY,
        nominal=NOMINAL_CAPACITY_AH,
        extra=extra,
        # A discharge test is known full at the end of its closing charge, as in the raw
        # layout (these layouts have no Step Time for the other anchor).
        full_ah=_full_ah(test, channels.values, None),
        counter_start_ah=_first_value(channels.values["ah"]),
    )
    why = not_an_lg_hg2(recording)
    if why is None:
        return recording
    meta = recording.meta
    warnings.warn(
        f"{table.where}: recognised as the LG HG2 data set's layout by its column names alone, but its data do "
        f"not fit an LG HG2 cell: {why}. The LG HG2 defaults were applied (cell {CELL_ID}, nominal "
        f"{NOMINAL_CAPACITY_AH:g} Ah, Q_ref {meta.reference_capacity_Ah} Ah at {meta.ambient_temp_C:g} °C); for "
        "another cell import it with --format csv and --meta (cell_id=..., nominal_capacity_Ah=..., "
        "reference_capacity_Ah=..., reference_initial_soc=...)",
        RecordingWarning,
        stacklevel=2,
    )
    return replace(recording, meta=replace(meta, extra={**meta.extra, "not_lg_hg2": why}))


def not_an_lg_hg2(recording: Recording) -> str | None:
    """Why a recording imported with the LG HG2 defaults is not of that cell, or None if it may be.

    Its voltage (single-sample spikes removed) must stay in the cell's window
    (VOLTAGE_WINDOW_V; up to a share OUTSIDE_SHARE of samples outside are
    glitches), and where it
    discharges from full to the cut-off at a chamber of CUTOFF_MIN_AMBIENT_C or
    more and no more than CUTOFF_MAX_A (no load under which an LG HG2 reaches
    the cut-off early), less than CUTOFF_MAX_SOC of Q_ref may be left there by
    the reference. The data set's files reach CUTOFF_V there with 0.07 of Q_ref
    left at most (a 1C test at 40 °C).
    """
    voltage, current = _despiked(recording.voltage_V), recording.current_A
    low, high = VOLTAGE_WINDOW_V
    outside = np.flatnonzero((voltage < low) | (voltage > high))
    if outside.size > OUTSIDE_SHARE * len(voltage):  # not a glitch
        k = int(outside[0])
        return (
            f"{outside.size} samples ({outside.size / len(voltage):.0%}) outside its {low:g}-{high:g} V window, "
            f"the first {voltage[k]:.3f} V at {recording.time_s[k]:.0f} s"
        )
    meta = recording.meta
    q_ref, ambient = meta.reference_capacity_Ah, meta.ambient_temp_C
    if recording.ah is None or q_ref is None or ambient is None or ambient < CUTOFF_MIN_AMBIENT_C:
        return None
    soc0 = meta.reference_initial_soc
    if soc0 is None:
        if not voltage[0] >= FULL_V - 0.05:
            return None
        soc0 = 1.0  # starts at the voltage of a full cell
    at_cutoff = np.flatnonzero((voltage <= CUTOFF_V) & (current < 0) & (current >= -CUTOFF_MAX_A))
    if not at_cutoff.size:
        return None
    k = int(at_cutoff[0])
    left = soc0 + recording.ah[k] / q_ref
    if left <= CUTOFF_MAX_SOC:
        return None
    delivered = (1.0 - soc0) * q_ref - recording.ah[k]
    return (
        f"it reached {voltage[k]:.3f} V under {current[k]:+.2f} A having delivered {delivered:.3f} Ah since full, "
        f"where an LG HG2 at {ambient:g} °C delivers most of its {q_ref:g} Ah (Q_ref): {left:.2f} of Q_ref would be left"
    )


def _recording(
    path: Path,
    channels: Channels,
    *,
    hg2: bool,
    test: str,
    cell_id: str,
    chemistry: str,
    nominal: float | None,
    extra: dict[str, str],
    full_ah: float | None = None,
    counter_start_ah: float | None = None,
) -> Recording:
    """``counter_start_ah``: the drive cycle's own counter at the first sample, where
    the file's counter is the drive cycle's (None where it is not known to be)."""
    values = channels.values
    ambient, how = _chamber_temperature(path, values["temperature"], hg2)
    extra = {**extra, **channels.notes}
    if how:
        extra["ambient_from"] = how
    stem = _stem(path)
    label = "" if ambient is None else _label(ambient)
    name = stem if label.lower() in stem.lower() else f"{stem}_{label}"
    q_ref = Q_REF_AH.get(ambient) if hg2 and ambient is not None else None
    if hg2 and _FROM_FULL.fullmatch(test):
        soc0: float | None = 1.0
        if counter_start_ah is not None and abs(counter_start_ah) > COUNTER_ZERO_AH and q_ref is not None:
            soc0 = 1.0 + counter_start_ah / q_ref
            extra["reference_start"] = (
                f"the Capacity counter starts at {counter_start_ah:+.4f} Ah, not 0: the file starts after its "
                f"drive cycle did, so its reference SOC starts at 1 + {counter_start_ah:+.4f} / {q_ref:g} = {soc0:.4f}"
            )
    elif q_ref is not None and full_ah is not None:
        soc0 = 1.0 - full_ah / q_ref
    else:
        soc0 = None
    meta = RecordingMeta(
        name=safe_name(name),
        cell_id=cell_id,
        chemistry=chemistry,
        nominal_capacity_Ah=nominal,
        ambient_temp_C=ambient,
        reference_capacity_Ah=q_ref,
        reference_initial_soc=soc0,
        source=SOURCE if hg2 else "",
        test=test,
        extra=extra,
    )
    return Recording(
        time_s=from_zero(values["time"]),
        current_A=values["current"],
        voltage_V=values["voltage"],
        temp_C=values["temperature"],
        ah=from_zero(values["ah"]),
        meta=meta,
    )


def _despiked(values: np.ndarray) -> np.ndarray:
    """Each value replaced by the median of it and its two neighbours: a one-sample glitch goes."""
    if len(values) < 3:
        return values
    padded = np.pad(values, 1, mode="reflect")  # an end's neighbour on both sides
    return np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)


def _first_value(values: np.ndarray) -> float | None:
    """The first value that is not NaN, or None."""
    present = np.flatnonzero(~np.isnan(values))
    return float(values[present[0]]) if present.size else None


def _chamber_temperature(path: Path, temp_C: np.ndarray, hg2: bool) -> tuple[float | None, str]:
    """The chamber temperature and how it was found ('' if it was not)."""
    for parent in path.absolute().parents:
        match = _CHAMBER_DIR.fullmatch(parent.name)
        if match:
            sign = -1.0 if match[1] else 1.0
            return sign * float(match[2]), f"directory name {parent.name!r}"
    if not hg2:
        return None, ""
    first = temp_C[~np.isnan(temp_C)][0]  # a column with no value was rejected on reading
    chamber = min(Q_REF_AH, key=lambda t: abs(t - first))
    return float(chamber), f"first temperature sample ({first:.2f} °C), nearest chamber temperature"


def _label(temp_C: float) -> str:
    """-10 -> 'n10degC', as the data set names its folders."""
    return f"{'n' if temp_C < 0 else ''}{abs(temp_C):g}degC"


def _stem(path: Path) -> str:
    return file_stem(path).removesuffix("_parsed")


def _test_from_stem(path: Path) -> str:
    """``589_US06_parsed.csv`` -> ``US06``: the data set names files <test number>_<test>."""
    stem = _stem(path)
    match = _TEST_NUMBER.fullmatch(stem)
    return match[1] if match else stem


def _key_values(rows: tuple[tuple[str, ...], ...]) -> dict[str, str]:
    """``key,value`` header rows; of a repeated key the last non-empty value."""
    info: dict[str, str] = {}
    for row in rows:
        if len(row) >= 2 and row[0].strip() and row[1].strip():
            info[row[0].strip()] = row[1].strip()
    return info


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
