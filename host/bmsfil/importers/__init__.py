"""Recordings from cell testers' files, as `Recording` objects.

Formats (FORMATS), recognised from the file's content, never from its name:

* ``lg-hg2-raw``: the Digatron CSV export of the LG HG2 data set (key/value
  header lines, column row with ``Prog Time``, units row); latin-1.
* ``lg-hg2-formatted``: ``Timestamp,Time [min],Voltage [V],Current [A],Temperature [degC],Capacity [Ah]``.
* ``lg-hg2-processed``: the same plus ``SOC [-]`` and ``Open Circuit Voltage [V]``, never read.
* ``nasa-pcoe``: NASA PCoE discharge time series, several cycles per file.
* ``csv``: any other CSV, with a column map or recognisable column names with units.
* ``bmsfil``: the canonical ``.npz`` (`Recording.save`).

Any of them may be gzip-compressed (except ``bmsfil``), UTF-8 or latin-1,
separated by commas, semicolons (decimal comma allowed) or tabs. See each
module for what it reads and the metadata it fills in.

Every failure is a `RecordingError` whose message names the file and, where
they apply, the line (1-based, as an editor counts) and the column, e.g.
``data.csv:1532: column 'Voltage [V]': expected a number, got 'abc'``.
Empty cells are NaN in the arrays (a wholly empty column is an error), and
time may repeat but not go backwards.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..recording import Recording, RecordingError, RecordingMeta
from . import generic_csv, lg_hg2, nasa_pcoe
from .table import Header, Table
from .textfile import excel_workbook, is_npz, read_head, read_text

__all__ = ["CURRENT_SIGNS", "FORMATS", "detect_format", "import_cycles", "import_file", "load_any"]

FORMATS: tuple[str, ...] = (
    "lg-hg2-raw",
    "lg-hg2-formatted",
    "lg-hg2-processed",
    "nasa-pcoe",
    "csv",
    "bmsfil",
)
#: The sign convention of a file's current (and Ah counter); a Recording is charge-positive.
CURRENT_SIGNS: tuple[str, ...] = ("charge-positive", "discharge-positive")

# Tried in this order on each row near the top of a file; the generic CSV
# comes last because it recognises the loosest names.
_SNIFFERS = (
    ("lg-hg2-raw", lg_hg2.sniff_raw),
    ("lg-hg2-processed", lg_hg2.sniff_processed),
    ("lg-hg2-formatted", lg_hg2.sniff_formatted),
    ("nasa-pcoe", nasa_pcoe.sniff),
    ("csv", generic_csv.sniff),
)


def detect_format(path: str | Path) -> str:
    """The format of the file, from its first bytes and its column row."""
    path = Path(path)
    if (excel := excel_workbook(path)) is not None:
        raise RecordingError(excel)
    if is_npz(path):
        return "bmsfil"
    return _detect(Table(read_head(path, str(path))))


def import_file(
    path: str | Path,
    fmt: str = "auto",
    column_map: dict[str, str] | None = None,
    current_sign: str | None = None,
    meta: dict[str, str] | None = None,
) -> Recording:
    """One Recording from a file; a multi-cycle file gives its cycles end to end.

    ``fmt`` is one of FORMATS or ``"auto"``; a ``column_map`` (quantity ->
    column, see `generic_csv`) reads the file as ``csv``. ``current_sign`` is
    the file's convention, to flip a discharge-positive file (default: the
    format's own, charge-positive for all of them). ``meta`` overrides
    metadata as `RecordingMeta.with_updates` does.
    """
    return _import(Path(path), fmt, column_map, current_sign, meta, cycles=False)[0]


def import_cycles(
    path: str | Path,
    fmt: str = "auto",
    column_map: dict[str, str] | None = None,
    current_sign: str | None = None,
    meta: dict[str, str] | None = None,
) -> list[Recording]:
    """One Recording per cycle of a multi-cycle file (NASA PCoE); other files give one."""
    return _import(Path(path), fmt, column_map, current_sign, meta, cycles=True)


def load_any(path: str | Path) -> Recording:
    """A canonical .npz or .parquet recording, or any other file this package recognises."""
    if str(path).endswith(".parquet"):
        from bmsfil.chunked import ChunkedRecording

        return ChunkedRecording(path).load()
    return import_file(path)


def load_as_is(path: str | Path, command: str) -> Recording:
    """`load_any` for a command that takes recordings as they are (no --map, --meta or
    --current-sign of its own): a file that needs them is refused with the import to run first."""
    try:
        return load_any(path)
    except RecordingError as exc:
        if "--map" not in str(exc):
            raise
        raise RecordingError(f"{exc}; {command} takes recordings as they are: import this one first, "
                             f"bmsfil import {path} --map ... -o REC.npz") from None


def _import(
    path: Path,
    fmt: str,
    column_map: dict[str, str] | None,
    current_sign: str | None,
    meta: dict[str, str] | None,
    cycles: bool,
) -> list[Recording]:
    where = str(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise RecordingError(f"{where}: unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    if current_sign is not None and current_sign not in CURRENT_SIGNS:
        raise RecordingError(
            f"{where}: unknown current sign {current_sign!r}; expected {' or '.join(CURRENT_SIGNS)}"
        )
    if column_map is not None and fmt not in ("auto", "csv"):
        raise RecordingError(f"{where}: a column map applies to the csv format, not {fmt!r}")
    if current_sign == "discharge-positive" and column_map is not None and generic_csv.STATE in column_map:
        raise RecordingError(f"{where}: --current-sign discharge-positive and a state column (--map ...,state=COLUMN) "
                             "both set the current's sign: the state column alone does (negative on discharge)")
    if (excel := excel_workbook(path)) is not None:
        raise RecordingError(excel)
    overrides = dict(meta or {})
    if fmt == "bmsfil" or (fmt == "auto" and column_map is None and is_npz(path)):
        if current_sign is not None:
            raise RecordingError(f"{where}: a bmsfil recording is charge-positive by definition; drop current_sign")
        recording = Recording.load(path)
        return [replace(recording, meta=recording.meta.with_updates(overrides))]
    table = Table(read_text(path, where))
    if column_map is not None:
        fmt = "csv"
    elif fmt == "auto":
        fmt = _detect(table)
    if fmt == "lg-hg2-raw":
        recordings = [lg_hg2.import_raw(table, path)]
    elif fmt in ("lg-hg2-formatted", "lg-hg2-processed"):
        recordings = [lg_hg2.import_formatted(table, path)]
    elif fmt == "nasa-pcoe":
        recordings = (
            nasa_pcoe.import_cycles(table, path) if cycles else [nasa_pcoe.import_concatenated(table, path)]
        )
    else:
        recordings = [generic_csv.import_csv(table, path, column_map, _ambient(overrides))]
    return [_finish(r, fmt, path, current_sign, overrides) for r in recordings]


def _finish(
    recording: Recording, fmt: str, path: Path, current_sign: str | None, overrides: dict[str, str]
) -> Recording:
    extra = {"format": fmt, "file": path.name, **recording.meta.extra}
    if current_sign == "discharge-positive":
        extra["current_sign"] = "negated on import: the file is discharge-positive"
        recording = replace(
            recording,
            current_A=-recording.current_A,
            ah=None if recording.ah is None else -recording.ah,
        )
    return replace(recording, meta=replace(recording.meta, extra=extra).with_updates(overrides))


def _ambient(overrides: dict[str, str]) -> float | None:
    """The ambient temperature among the metadata overrides, checked as with_updates does."""
    if "ambient_temp_C" not in overrides:
        return None
    return RecordingMeta(name="").with_updates({"ambient_temp_C": overrides["ambient_temp_C"]}).ambient_temp_C


def _detect(table: Table) -> str:
    header = table.find_header(lambda h: _sniff(h) is not None)
    if header is None:
        raise lg_hg2.digatron_without_columns(table) or generic_csv.unrecognised(table)
    fmt = _sniff(header)
    assert fmt is not None
    return fmt


def _sniff(header: Header) -> str | None:
    return next((fmt for fmt, sniff in _SNIFFERS if sniff(header)), None)
