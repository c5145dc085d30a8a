"""Text cells to float64 arrays, stopping at the first cell that is not what was expected.

Each parser tries a fast bulk conversion first and only walks the cells one by
one when that fails, to find the bad cell or to turn empty cells into NaN.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Cells that mean "no sample here": kept as NaN, never an error by themselves.
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})


class CellError(Exception):
    """Cell ``index`` of the batch is not ``expected`` (the caller knows its line and column)."""

    def __init__(self, index: int, expected: str) -> None:
        super().__init__(index, expected)
        self.index = index
        self.expected = expected


#: A '.' with groups of three digits after it and nothing else: 1.714 or 1714?
_GROUPED = re.compile(r"^[+-]?\d{1,3}(\.\d{3})+$")


@dataclass
class DecimalMarks:
    """How a file of ';' or tabs writes its decimals, learnt as it is read, batch by batch of
    rows before they are converted (`see`): once a number has a ',' the file writes decimal
    commas, and a '.' groups thousands. Until then a '.' is a decimal point, and the first
    number it made ambiguous ('1.714': 1.714, or 1714 grouped?) is kept, to refuse the file
    where a ',' shows later which it was."""

    comma: bool = False
    read_with_point: tuple[str, int, str] | None = None  # the first '1.714' read as 1.714: key, line, cell

    def see(self, cells: Mapping[str, Sequence[str]], lines: Sequence[int]) -> tuple[str, int] | None:
        """Learn from a batch of rows (number cells by column key, and their lines); returns the
        key and row of its first ',' when a batch before it was read with '.' as the decimal
        point and wrote an ambiguous '1.714' (`read_with_point`), else None."""
        if self.comma:
            return None
        first = [(row, key) for key, column in cells.items()
                 if (row := next((r for r, cell in enumerate(column) if "," in cell), None)) is not None]
        if first:
            row, key = min(first)
            if self.read_with_point is not None:
                return key, row
            self.comma = True
            return None
        if self.read_with_point is None:
            grouped = [(r, key, cell.strip()) for key, column in cells.items()
                       if (r := next((r for r, cell in enumerate(column)
                                      if "." in cell and _GROUPED.match(cell.strip())), None)) is not None
                       for cell in (column[r],)]
            if grouped:
                row, key, cell = min(grouped)
                self.read_with_point = (key, lines[row], cell)
        return None


def _point_unclear(cell: str) -> bool:
    """In a file of decimal commas: a '.' that may group thousands or mark decimals ('-1.714',
    '1,714.5'), where '1.714,5' or '3.7' say which."""
    if "." not in cell:
        return False
    if "," in cell:
        return cell.rfind(".") > cell.rfind(",")
    return bool(_GROUPED.match(cell.strip()))


def numbers(cells: Sequence[str], decimal_comma: bool = False, marks: DecimalMarks | None = None) -> np.ndarray:
    """Plain numbers; missing cells become NaN. With `decimal_comma` a ',' is the decimal mark;
    with `marks` too (the file's, `DecimalMarks`), once the file writes its decimals so, a '.'
    groups thousands: beside a ',' before it it is dropped ('1.714,5'); alone before three
    digits ('-1.714') or after a ',' ('1,714.5') it is refused, as it could mean either (a '.'
    elsewhere, '3.7', stays a decimal point)."""
    if decimal_comma and marks is not None and marks.comma:
        for i, cell in enumerate(cells):
            if _point_unclear(cell):
                raise CellError(i, "a number whose '.' groups thousands before its decimal ',', or none (this file "
                                   "writes its decimals with ','; a '.' before three digits, or after the ',', could "
                                   "group thousands or mark decimals)")
        cells = [cell.replace(".", "").replace(",", ".") if "," in cell else cell for cell in cells]
    elif decimal_comma:
        cells = [cell.replace(",", ".") for cell in cells]
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(cells))
    for i, cell in enumerate(cells):
        text = cell.strip()
        if text.lower() in MISSING:
            out[i] = np.nan
            continue
        try:
            out[i] = float(text)
        except ValueError:
            raise CellError(i, "a number") from None
    return out


#: Days before a clock, as testers, pandas and Python write long durations: '1d 02:03:04',
#: '2 days 01:00:00', '1 day, 2:03:04'.
_DAYS = re.compile(r"^\s*(\d+)\s*(?:d|days?),?\s+(.*)$")


def _clock(cell: str) -> float:
    days = _DAYS.match(cell)
    if days:
        return int(days.group(1)) * 86400 + _clock(days.group(2))
    hours, minutes, seconds = cell.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds.replace(",", "."))


def clock_seconds(cells: Sequence[str]) -> np.ndarray:
    """``hh:mm:ss(.fff)`` durations (hours may exceed 24; a decimal ',' as ISO 8601 allows it;
    days before them as '1d 02:03:04' or '1 days 02:03:04') in seconds."""
    try:
        return np.array([_clock(cell) for cell in cells])
    except (ValueError, TypeError):
        return _each(cells, _clock, "a time as hh:mm:ss(.fff)")  # raises at the bad cell


def datetime_seconds(cells: Sequence[str]) -> np.ndarray:
    """ISO 8601 date-times (``2018-11-30 08:39:51.25``, or with a decimal ',') as seconds since
    1970, NaN when empty."""
    cells = [cell.strip().replace(",", ".") for cell in cells]
    try:
        stamps = np.array(cells, dtype="datetime64[us]")
    except ValueError:
        # Only to find the bad cell: the bulk conversion above does not say which.
        _each(cells, lambda cell: np.datetime64(cell, "us"), "a date-time such as 2018-11-30 08:39:51")
        raise
    seconds = stamps.astype(np.int64) / 1e6
    seconds[np.isnat(stamps)] = np.nan
    return seconds


#: A state column's words for a step without current (Maccor's R, O and S; Neware's Rest;
#: Digatron's Pause; open-circuit and relaxation steps), lower case, letters only.
REST_WORDS = frozenset({"r", "o", "s", "rest", "pause", "wait", "ocv", "opencircuit", "relax", "relaxation",
                        "idle", "stop", "end"})


def direction(cells: Sequence[str]) -> np.ndarray:
    """A cycler's state or step-type column as the sign of its step: -1 on discharge, +1 on
    charge, 0 at rest (REST_WORDS), NaN for a word it does not know (a number, another
    language, a pulse or DCIR step). Read in lower case, letters only: Maccor's State 'D' and
    'C', Neware's Step Type 'CC_DChg', 'CCCV_Chg' and 'CP DChg', Digatron's and others'
    'Discharge' and 'Charge'."""
    out = np.full(len(cells), np.nan)
    for k, cell in enumerate(cells):
        word = "".join(ch for ch in cell.lower() if ch.isalpha())
        if word == "d" or "dchg" in word or "dischg" in word or "discharg" in word:
            out[k] = -1.0
        elif word == "c" or "chg" in word or "charg" in word:
            out[k] = 1.0
        elif word in REST_WORDS:
            out[k] = 0.0
    return out


def _each(cells: Sequence[str], parse: Callable[[str], object], expected: str) -> np.ndarray:
    out = []
    for i, cell in enumerate(cells):
        try:
            out.append(parse(cell))
        except (ValueError, TypeError):
            raise CellError(i, expected) from None
    return np.array(out)
