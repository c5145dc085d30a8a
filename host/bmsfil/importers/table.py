"""A delimited text table: where its column row is, and reading chosen columns from it.

Line numbers are 1-based and count lines as a text editor does, so that every
error can say ``file:line: column 'name': ...``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import TextIO

import numpy as np

from ..recording import RecordingError
from .parse import CellError
from .textfile import HEAD_BYTES, Text
from .units import is_unit, split_unit, strip_brackets

#: The column row must be among this many non-blank rows at the top of the file.
HEADER_SEARCH_ROWS = 200
#: Rows converted at a time: bounds the memory that the text cells of a huge file take.
CHUNK_ROWS = 1 << 16

Converter = Callable[[Sequence[str]], np.ndarray]

_NOT_ALNUM = re.compile(r"[\W_]+")
_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+([eE][-+]?\d+)?")


def at(where: str, line: int | None = None, column: str | None = None) -> str:
    """The location prefix of a message: ``data.csv:12: column 'Voltage [V]'``."""
    text = where if line is None else f"{where}:{line}"
    return text if column is None else f"{text}: column {column!r}"


def normalise(name: str) -> str:
    """Column names compared loosely: ``'Prog_Time '`` and ``'prog time'`` are the same."""
    return _NOT_ALNUM.sub(" ", name.lower()).strip()


def _blank(row: Sequence[str]) -> bool:
    return not any(cell.strip() for cell in row)


@dataclass(frozen=True)
class Header:
    """A column row, with the units row under it if there is one."""

    line: int
    cells: tuple[str, ...]  # as written, stripped
    names: tuple[str, ...]  # normalised, without the unit
    units: tuple[str, ...]  # '' where neither the name nor a units row gives one
    end_line: int  # the last line of the header: the units row's if there is one
    first_row: tuple[str, ...]  # the first data row, () if there is none
    preamble: tuple[tuple[str, ...], ...]  # non-blank rows above the column row

    def find(self, name: str) -> int | None:
        """Index of the column called ``name`` (compared loosely, unit ignored)."""
        key = normalise(split_unit(name)[0])
        return self.names.index(key) if key in self.names else None

    def first_value(self, index: int) -> str:
        """The first data row's cell in column ``index`` ('' if there is none)."""
        return self.first_row[index].strip() if index < len(self.first_row) else ""

    def require(self, where: str, wanted: Mapping[str, str]) -> dict[str, int]:
        """Index of each wanted column ``key -> name``; raise naming those missing."""
        found = {key: self.find(name) for key, name in wanted.items()}
        missing = [wanted[key] for key, index in found.items() if index is None]
        if missing:
            raise RecordingError(
                f"{at(where, self.line)}: no column {', '.join(map(repr, missing))}; expected "
                f"{', '.join(map(repr, wanted.values()))}; columns found: "
                f"{', '.join(repr(cell) for cell in self.cells if cell)}"
            )
        return {key: index for key, index in found.items() if index is not None}


class Table:
    """A delimited text file, read as a table; ``where`` names it in messages."""

    def __init__(self, text: Text) -> None:
        self.where = text.where
        self._text = text
        head = text.head()
        self.delimiter = _sniff_delimiter(head)
        # Where ';' or tabs separate fields, a comma is a decimal separator.
        self.decimal_comma = self.delimiter != ","
        self._head = list(islice(self._rows(io.StringIO(head, newline="")), HEADER_SEARCH_ROWS + 2))

    def _comma_hint(self, cell: str) -> str:
        """A hint for a number written with a decimal comma in a comma-separated file ('' otherwise)."""
        if self.delimiter != "," or not _DECIMAL_COMMA.fullmatch(cell.strip()):
            return ""
        return (
            " (a decimal comma? In a comma-separated file bmsfil reads '.' as the decimal mark; "
            "save the file with ';' as the separator, where a decimal comma is read, or with decimal points)"
        )

    def _rows(self, stream: TextIO) -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(stream, delimiter=self.delimiter)
        with self._csv_errors(reader):
            for row in reader:
                if not _blank(row):
                    yield reader.line_num, row

    @contextmanager
    def _csv_errors(self, reader: Iterator[list[str]]) -> Iterator[None]:
        try:
            yield
        except csv.Error as exc:
            line = reader.line_num  # type: ignore[attr-defined]
            raise RecordingError(f"{at(self.where, line)}: not readable as CSV ({exc})") from None

    @property
    def head_rows(self) -> list[tuple[int, list[str]]]:
        """The non-blank rows near the top (line, cells) that the column row is searched among."""
        return list(self._head)

    @property
    def head_is_whole_file(self) -> bool:
        """True if the rows near the top are all the file has."""
        text = self._text
        return text.complete and len(text.data) <= HEAD_BYTES and len(self._head) < HEADER_SEARCH_ROWS + 2

    def find_header(self, accept: Callable[[Header], bool]) -> Header | None:
        """The first row near the top that ``accept`` takes for the column row."""
        head = self._head
        for i, (line, row) in enumerate(head[:HEADER_SEARCH_ROWS]):
            header = _header(line, row, head[i + 1 : i + 3], head[:i])
            if accept(header):
                return header
        return None

    def require_header(self, accept: Callable[[Header], bool], what: str) -> Header:
        """The column row that ``accept`` takes, or an error saying that this is not ``what``."""
        header = self.find_header(accept)
        if header is None:
            raise RecordingError(
                f"{at(self.where)}: not {what}: no such column row in the first "
                f"{HEADER_SEARCH_ROWS} rows; columns found: {self.columns_found()}"
            )
        return header

    def columns_found(self) -> str:
        """The widest row near the top, the likeliest column row, for error messages."""
        if not self._head:
            return "none (the file has no rows)"
        line, row = max(self._head, key=lambda item: (len(item[1]), -item[0]))
        return f"{', '.join(repr(cell.strip()) for cell in row if cell.strip())} (line {line})"

    def read(
        self,
        header: Header,
        columns: Mapping[str, tuple[int, Converter]],
        before: Callable[[Mapping[str, Sequence[str]], Sequence[int]], None] | None = None,
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Convert the given columns of every data row; returns the arrays and each row's line.

        Blank lines are skipped. A row that lacks named columns is an error
        (``truncated`` when it is the last one); extra fields must be empty.
        ``before`` sees each batch of rows (the cells by key, their lines)
        before any of its columns is converted.
        """
        keys = list(columns)
        indices = [columns[key][0] for key in keys]
        pick = itemgetter(*indices) if len(indices) > 1 else (lambda row: (row[indices[0]],))
        width = len(header.cells)
        named = max(i for i, cell in enumerate(header.cells) if cell) + 1
        parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        line_parts: list[np.ndarray] = []
        picked: list[tuple[str, ...]] = []
        lines: list[int] = []

        def flush() -> None:
            cells_by_key = dict(zip(keys, zip(*picked)))
            if before is not None:
                before(cells_by_key, lines)
            for key, (index, convert) in columns.items():
                cells = cells_by_key[key]
                try:
                    parts[key].append(convert(cells))
                except CellError as exc:
                    raise RecordingError(
                        f"{at(self.where, lines[exc.index], header.cells[index])}: "
                        f"expected {exc.expected}, got {cells[exc.index]!r}{self._comma_hint(cells[exc.index])}"
                    ) from None
            line_parts.append(np.array(lines, dtype=np.int64))
            picked.clear()
            lines.clear()

        reader = csv.reader(self._text.stream(), delimiter=self.delimiter)
        with self._csv_errors(reader):
            for _ in reader:
                if reader.line_num >= header.end_line:
                    break
            keep, mark = picked.append, lines.append  # bound once: this loop runs per row
            for row in reader:
                if len(row) != width and not self._fits(row, width, named, header, reader):
                    continue
                if not row[0].strip() and _blank(row):  # a row of empty fields, as a spreadsheet writes them
                    continue
                keep(pick(row))
                mark(reader.line_num)
                if len(lines) == CHUNK_ROWS:
                    flush()
        if picked:
            flush()
        if not line_parts:
            raise RecordingError(
                f"{at(self.where)}: no data rows after the column row (line {header.line})"
            )
        return (
            {key: np.concatenate(arrays) for key, arrays in parts.items()},
            np.concatenate(line_parts),
        )

    def _fits(self, row: list[str], width: int, named: int, header: Header, reader: Iterator[list[str]]) -> bool:
        """For a row of unexpected width: False to skip it (blank), True to use it, else raise."""
        line = reader.line_num  # type: ignore[attr-defined]
        if len(row) > width:
            if _blank(row[width:]):
                return True
            raise RecordingError(
                f"{at(self.where, line)}: {len(row)} fields, but the column row "
                f"(line {header.line}) has {width}"
            )
        if len(row) >= named:  # only unnamed trailing columns are missing
            return True
        if _blank(row):
            return False
        missing = header.cells[len(row)]
        if all(_blank(rest) for rest in reader):
            raise RecordingError(
                f"{at(self.where, line)}: the last line is truncated: it has {len(row)} of "
                f"{named} fields; column {missing!r} and those after it are missing"
            )
        raise RecordingError(
            f"{at(self.where, line)}: {len(row)} fields, but the column row (line "
            f"{header.line}) has {named}; column {missing!r} and those after it are missing"
        )


def _header(
    line: int,
    row: list[str],
    below: list[tuple[int, list[str]]],
    above: list[tuple[int, list[str]]],
) -> Header:
    cells = tuple(cell.strip() for cell in row)
    split = [split_unit(cell) for cell in cells]
    units = [unit for _, unit in split]
    end_line = line
    if below and all(is_unit(cell) for cell in below[0][1] if cell.strip()):
        end_line, units_row = below[0]
        for i, cell in enumerate(units_row[: len(cells)]):
            if cell.strip():
                units[i] = strip_brackets(cell)
        below = below[1:]
    return Header(
        line=line,
        cells=cells,
        names=tuple(normalise(name) for name, _ in split),
        units=tuple(units),
        end_line=end_line,
        first_row=tuple(below[0][1]) if below else (),
        preamble=tuple(tuple(r) for _, r in above),
    )


def _sniff_delimiter(head: str) -> str:
    """',' unless ';' or tabs split each of the last lines of the head into the same fields.

    A last line without a line end (a file cut off) may have fewer of them.
    """
    sample = [line for line in head.splitlines() if line.strip()][-10:]
    cut = sample[-1:] if len(sample) > 2 and not head.endswith(("\n", "\r")) else []
    whole = sample[: len(sample) - len(cut)]
    for delimiter in ("\t", ";"):
        counts = {line.count(delimiter) for line in whole}
        if len(counts) == 1 and (count := counts.pop()) > 0 and all(line.count(delimiter) <= count for line in cut):
            return delimiter
    return ","
