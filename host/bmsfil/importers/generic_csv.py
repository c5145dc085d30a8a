"""Any other CSV (or gzip CSV) of a cell, its columns named by a column map or by their names.

A column map gives, for each quantity (``time``, ``current`` and ``voltage``
required; ``temperature`` and ``ah`` optional), the column that holds it,
written as in the header with or without its unit (``'Voltage [V]'`` or
``'Voltage'``). A unit in the map (``'I [mA]'``) is used when the header
states none; a column with no unit anywhere is taken in s, A, V, °C, Ah.
``state`` names a cycler's step-type column (Maccor's State, Neware's Step
Type), from which a current logged as a magnitude takes its sign.

Without a map, columns are recognised by common names (SYNONYMS, compared
loosely) and must then state their units in the header, in brackets or
parentheses or in a units row under it: a guessed unit would go unnoticed.

Time may be numbers in a unit, ``hh:mm:ss(.fff)`` durations or ISO date-times
(``2018-11-30 08:39:51``), told apart by the first value. Current is read
positive on charge (the caller flips it for a discharge-positive file).

Without a temperature column, the ambient temperature (``--meta
ambient_temp_C=...``) stands in for it as a constant, which ``extra['temp_C']``
records; without either the import fails.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..recording import Recording, RecordingError, RecordingMeta, RecordingWarning
from .channels import QUANTITIES, check_time_order, from_zero, join_counter_restarts, read_channels
from .names import file_stem, safe_name
from .table import HEADER_SEARCH_ROWS, Header, Table, at
from .units import SI, conversion, normalise_unit, split_unit

REQUIRED = ("time", "current", "voltage")

#: Column names (normalised: lower case, words separated by one space) that
#: say which quantity a column holds, most telling first.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "time": (
        "time", "test time", "total time", "elapsed time", "time elapsed", "prog time",
        "t", "timestamp", "time stamp", "datetime", "date time",
    ),
    "current": ("current", "i", "cell current", "battery current"),
    "voltage": ("voltage", "v", "u", "cell voltage", "battery voltage", "terminal voltage"),
    "temperature": ("temperature", "temp", "t", "cell temperature", "battery temperature"),
    "ah": ("capacity", "ah", "charge", "ah counter", "amp hours"),
}

_MAP_HINT = ("time=<column>,current=<column>,voltage=<column>[,temperature=<column>][,ah=<column>]"
             "[,state=<column>]")
#: A map's key for a cycler's state or step-type column (Maccor's State, Neware's Step Type): a
#: current logged as a magnitude gets its sign from it (parse.direction).
STATE = "state"


def recognise(header: Header) -> dict[str, int]:
    """Quantity -> column index for the columns recognised by name (and a unit that fits)."""
    found: dict[str, int] = {}
    for quantity in QUANTITIES:
        for synonym in SYNONYMS[quantity]:
            index = next(
                (
                    i
                    for i, name in enumerate(header.names)
                    if name == synonym
                    and i not in found.values()
                    and conversion(quantity, header.units[i]) is not None
                ),
                None,
            )
            if index is not None:
                found[quantity] = index
                break
    return found


#: bmsfil's own column names (a recording's fields, as a Parquet recording or a DataFrame of
#: one holds them), their unit in the name: read as if mapped.
OWN_COLUMNS = {"time": "time_s [s]", "current": "current_A [A]", "voltage": "voltage_V [V]",
               "temperature": "temp_C [degC]", "ah": "ah [Ah]"}


def _own_map(header: Header) -> dict[str, str]:
    """The column map of a header with bmsfil's own names: each in the unit its name says unless
    the header states one; a quantity named otherwise (recognised by its name and unit) beside
    them; an `ah` column left empty (a recording without a counter, written back) left out."""
    found = recognise(header)
    out: dict[str, str] = {}
    for quantity, name in OWN_COLUMNS.items():
        index = header.find(name)
        if index is None:
            if quantity in found:
                out[quantity] = header.cells[found[quantity]]
        elif not (quantity == "ah" and not header.first_value(index).strip()):
            out[quantity] = header.cells[index] if header.units[index] else name
    return out


def _own_names(header: Header) -> bool:
    """Whether the header has bmsfil's own names for time, current and voltage."""
    return all(header.find(OWN_COLUMNS[q]) is not None for q in REQUIRED)


def sniff(header: Header) -> bool:
    return all(quantity in recognise(header) for quantity in REQUIRED) or _own_names(header)


def unrecognised(table: Table) -> RecordingError:
    """The error for a file whose columns say nothing bmsfil knows."""
    return RecordingError(
        f"{at(table.where)}: not a layout bmsfil recognises; columns found: "
        f"{table.columns_found()}. Expected columns for time, current and voltage "
        f"(e.g. 'Time [s]', 'Current [A]', 'Voltage [V]', 'Temperature [degC]'); "
        f"name them with a column map: --map {_MAP_HINT}"
    )


def import_csv(
    table: Table,
    path: Path,
    column_map: Mapping[str, str] | None,
    ambient_C: float | None,
) -> Recording:
    if column_map is None and (own := table.find_header(_own_names)) is not None \
            and not all(q in recognise(own) for q in REQUIRED):
        column_map = _own_map(own)
    if column_map is None:
        header = table.find_header(sniff)
        if header is None:
            raise unrecognised(table)
        columns = recognise(header)
        units: dict[str, str] = {}
        _require_units(table, header, columns)
    else:
        header, columns, units = _mapped(table, column_map)
    if "temperature" not in columns and ambient_C is None:
        raise RecordingError(
            f"{at(table.where, header.line)}: no temperature column (columns found: "
            f"{', '.join(repr(cell) for cell in header.cells if cell)}); map one with "
            "temperature=<column>, or give the ambient temperature (--meta ambient_temp_C=<°C>) "
            "to use it as a constant"
        )
    channels = read_channels(table, header, columns, units)
    check_time_order(channels)
    join_counter_restarts(channels)
    values = channels.values
    extra = {"columns": "; ".join(f"{key}={column}" for key, column in channels.columns.items()), **channels.notes}
    current = values["current"]
    if STATE in values:
        unread = np.flatnonzero(np.isnan(values[STATE]) & (np.abs(current) > 0.0))
        if unread.size:
            lines = ", ".join(str(int(channels.lines[k])) for k in unread[:5])
            warnings.warn(f"{at(table.where)}: state column {channels.columns[STATE]!r}: {unread.size} sample(s) that "
                          f"carry current are under a word not read as charge, discharge or rest (lines {lines}"
                          f"{', ...' if unread.size > 5 else ''}): their current is as logged (a magnitude there "
                          "reads as charge); expected words such as C/D/R (Maccor), CC_Chg/CC_DChg/Rest (Neware), "
                          "Charge/Discharge/Pause", RecordingWarning, stacklevel=2)
        current = _signed(current, values[STATE])
        extra["current_sign"] = (f"from the state column {channels.columns[STATE]!r}: negative on its discharge "
                                 "steps, positive on its charge steps, as read elsewhere")
    temp_C = values.get("temperature")
    if temp_C is None:
        assert ambient_C is not None
        temp_C = np.full(len(channels.lines), ambient_C)
        extra["temp_C"] = f"constant {ambient_C:g} (ambient_temp_C): the file has no temperature column"
    time = values["time"]
    return Recording(
        time_s=time - time[0],
        current_A=current,
        voltage_V=values["voltage"],
        temp_C=temp_C,
        ah=from_zero(values["ah"]) if "ah" in values else None,
        meta=RecordingMeta(name=safe_name(file_stem(path)), ambient_temp_C=ambient_C, extra=extra),
    )


def _signed(current_A: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The current with the sign of its step (`parse.direction`: -1 discharge, +1 charge): a
    magnitude, as Maccor logs it, signed; a signed current agreeing with its steps unchanged;
    samples of other steps (rest, a word not read: NaN) as logged."""
    return np.where(step < 0, -np.abs(current_A), np.where(step > 0, np.abs(current_A), current_A))


def _require_units(table: Table, header: Header, columns: Mapping[str, int]) -> None:
    for quantity, index in columns.items():
        clock = quantity == "time" and ":" in header.first_value(index)
        if not header.units[index] and not clock:
            raise RecordingError(
                f"{at(table.where, header.line, header.cells[index])}: no unit in the header; "
                f"write it as '{header.cells[index]} [{SI[quantity]}]' (or whatever unit it is in), "
                f"or name the column in a column map (--map {quantity}={header.cells[index]}) "
                f"to take it in {SI[quantity]}"
            )


def _mapped(
    table: Table, column_map: Mapping[str, str]
) -> tuple[Header, dict[str, int], dict[str, str]]:
    """The column row that has every mapped column, their indices and the map's units."""
    if STATE in column_map and "ah" in column_map:
        raise RecordingError(
            f"{at(table.where)}: column map names both {STATE}={column_map[STATE]!r} and ah={column_map['ah']!r}: "
            "a cycler that logs its current as a magnitude logs its charge so too (Maccor's Amp-hr, per step), "
            "which bmsfil cannot sign; leave ah out (the estimates and the capacity per discharge are then made, "
            "the SOC not scored against the counter)")
    unknown = sorted(set(column_map) - set(QUANTITIES) - {STATE})
    missing = [quantity for quantity in REQUIRED if quantity not in column_map]
    if unknown or missing:
        raise RecordingError(
            f"{at(table.where)}: column map "
            + (f"has unknown {', '.join(map(repr, unknown))}" if unknown else "")
            + ("; " if unknown and missing else "")
            + (f"lacks {', '.join(map(repr, missing))}" if missing else "")
            + f"; expected {_MAP_HINT}"
        )
    header = table.find_header(
        lambda h: all(_locate(h, spec) is not None for spec in column_map.values())
    )
    if header is None:
        raise RecordingError(
            f"{at(table.where)}: no column row with all of "
            f"{', '.join(repr(spec) for spec in column_map.values())} in the first "
            f"{HEADER_SEARCH_ROWS} rows; columns found: {table.columns_found()}"
        )
    columns: dict[str, int] = {}
    units: dict[str, str] = {}
    for quantity, spec in column_map.items():
        located = _locate(header, spec)
        assert located is not None
        index, unit = located
        stated = header.units[index]
        if unit and stated and normalise_unit(unit) != normalise_unit(stated):
            raise RecordingError(
                f"{at(table.where, header.line, header.cells[index])}: the column map says "
                f"{unit!r}, the header says {stated!r}"
            )
        columns[quantity] = index
        if unit:
            units[quantity] = unit
    return header, columns, units


def _locate(header: Header, spec: str) -> tuple[int, str] | None:
    """Index of the column a map names, and the unit the map gives it ('' if none)."""
    spec = spec.strip()
    if spec in header.cells:
        return header.cells.index(spec), ""
    name, unit = split_unit(spec)
    index = header.find(name)
    return None if index is None else (index, unit)
