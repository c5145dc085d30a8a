"""Text cells to float64 arrays, stopping at the first cell that is not what was expected.

Each parser tries a fast bulk conversion first and only walks the cells one by
one when that fails, to find the bad cell or to turn empty cells into NaN.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

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


def numbers(cells: Sequence[str], decimal_comma: bool = False, comma_file: bool = False) -> np.ndarray:
    """Plain numbers; missing cells become NaN. With `decimal_comma` a ',' is the decimal mark;
    with `comma_file` too (the file writes its decimals so), a '.' groups thousands: beside a
    ',' it is dropped ('1.714,5'), alone before three digits ('-1.714') it is refused, as it
    could be either (a '.' elsewhere, '3.7', stays a decimal point)."""
    if decimal_comma and comma_file:
        for i, cell in enumerate(cells):
            if "." in cell and "," not in cell and _GROUPED.match(cell.strip()):
                raise CellError(i, "a number without a '.' between thousands (this file writes its decimals "
                                   "with ',', so a '.' before three digits could group thousands or mark "
                                   "decimals)")
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


def _clock(cell: str) -> float:
    hours, minutes, seconds = cell.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def clock_seconds(cells: Sequence[str]) -> np.ndarray:
    """``hh:mm:ss(.fff)`` durations (hours may exceed 24) in seconds."""
    try:
        return np.array([_clock(cell) for cell in cells])
    except (ValueError, TypeError):
        return _each(cells, _clock, "a time as hh:mm:ss(.fff)")  # raises at the bad cell


def datetime_seconds(cells: Sequence[str]) -> np.ndarray:
    """ISO 8601 date-times (``2018-11-30 08:39:51.25``) as seconds since 1970, NaN when empty."""
    try:
        stamps = np.array([cell.strip() for cell in cells], dtype="datetime64[us]")
    except ValueError:
        # Only to find the bad cell: the bulk conversion above does not say which.
        _each(cells, lambda cell: np.datetime64(cell.strip(), "us"), "a date-time such as 2018-11-30 08:39:51")
        raise
    seconds = stamps.astype(np.int64) / 1e6
    seconds[np.isnat(stamps)] = np.nan
    return seconds


def _each(cells: Sequence[str], parse: Callable[[str], object], expected: str) -> np.ndarray:
    out = []
    for i, cell in enumerate(cells):
        try:
            out.append(parse(cell))
        except (ValueError, TypeError):
            raise CellError(i, expected) from None
    return np.array(out)
