"""Text cells to float64 arrays, stopping at the first cell that is not what was expected.

Each parser tries a fast bulk conversion first and only walks the cells one by
one when that fails, to find the bad cell or to turn empty cells into NaN.
"""

from __future__ import annotations

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


def numbers(cells: Sequence[str], decimal_comma: bool = False) -> np.ndarray:
    """Plain numbers; missing cells become NaN."""
    if decimal_comma:
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
