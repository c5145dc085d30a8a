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
cycler's Ah counter; the Recording's ``ah`` is that counter from zero.

Metadata. The data set's defaults (cell, chemistry, nominal 3.0 Ah, source,
Q_ref) apply to the formatted layouts, which only this data set uses, and to
raw exports whose header mentions HG2; any other Digatron export keeps only
what its own header says. The chamber temperature is read from a parent
directory named like ``n10degC`` (the data set's layout), else it is the first
temperature sample rounded to the nearest chamber temperature of Q_REF_AH.
``reference_initial_soc`` is 1.0 for the tests that start from a full
charge (drive cycles and HPPC, by the test's name: the ``Test section`` of a
raw header, else the file name after its test number) and None for the
others (capacity tests, C/20, ...), whose first sample is not at a known SOC.
The name is the file stem without ``_parsed`` plus the chamber temperature,
e.g. ``589_US06_0degC``, unique across the data set's folders and safe as a
file name.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..recording import Recording, RecordingError, RecordingMeta
from .channels import Channels, check_time_order, from_zero, read_channels
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
# from 100 % SOC down (data set readme, test 1).
_FROM_FULL = re.compile(r"US06|HWFET|UDDS|LA92|NN|Mix(ed)?\d*|HPPC", re.IGNORECASE)
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
    channels = read_channels(table, header, header.require(table.where, _RAW_COLUMNS), _RAW_UNITS)
    check_time_order(channels)
    info = _key_values(header.preamble)
    hg2 = any("hg2" in value.lower() for value in info.values())
    test = info.get("Test section") or _test_from_stem(path)
    nominal = _number(info.get("Nominal Capacity", ""))
    if nominal is None and hg2:
        nominal = NOMINAL_CAPACITY_AH
    extra = {normalise(key).replace(" ", "_"): value for key, value in info.items()}
    return _recording(
        path,
        channels,
        hg2=hg2,
        test=test,
        cell_id=info.get("Battery Name") or (CELL_ID if hg2 else ""),
        chemistry=CHEMISTRY if hg2 else info.get("Type", info.get("Battery Type", "")),
        nominal=nominal,
        extra=extra,
    )


def import_formatted(table: Table, path: Path) -> Recording:
    """The formatted or the processed layout (their common columns)."""
    header = table.require_header(
        _formatted_layout,
        "the LG HG2 formatted layout (Timestamp, Time [min], Voltage [V], Current [A], "
        "Temperature [degC], Capacity [Ah])",
    )
    channels = read_channels(table, header, header.require(table.where, _FORMATTED_COLUMNS))
    check_time_order(channels)
    ignored = [header.cells[i] for i in map(header.find, _PROCESSED_ONLY) if i is not None]
    extra = (
        {"ignored_columns": ", ".join(ignored) + " (a heuristic of the processed files, never a reference)"}
        if ignored
        else {}
    )
    return _recording(
        path,
        channels,
        hg2=True,
        test=_test_from_stem(path),
        cell_id=CELL_ID,
        chemistry=CHEMISTRY,
        nominal=NOMINAL_CAPACITY_AH,
        extra=extra,
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
) -> Recording:
    values = channels.values
    ambient, how = _chamber_temperature(path, values["temperature"], hg2)
    extra = dict(extra)
    if how:
        extra["ambient_from"] = how
    stem = _stem(path)
    label = "" if ambient is None else _label(ambient)
    name = stem if label.lower() in stem.lower() else f"{stem}_{label}"
    meta = RecordingMeta(
        name=safe_name(name),
        cell_id=cell_id,
        chemistry=chemistry,
        nominal_capacity_Ah=nominal,
        ambient_temp_C=ambient,
        reference_capacity_Ah=Q_REF_AH.get(ambient) if hg2 and ambient is not None else None,
        reference_initial_soc=1.0 if hg2 and _FROM_FULL.fullmatch(test) else None,
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
