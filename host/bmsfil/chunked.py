"""Recordings larger than memory: Parquet files read by row groups, the
estimator streamed through them with its state carried from one chunk to the
next (the same answer as one batch call: the same float32 steps in the same
order), and the score accumulated as the chunks pass.

A bmsfil Parquet recording has the columns of the canonical recording
(``time_s``, ``current_A``, ``voltage_V``, ``temp_C`` and optionally ``ah``,
float64) and the recording's header (format tag and metadata, JSON) in the
schema's metadata under ``bmsfil``. `bmsfil import FILE -o OUT.parquet`
writes one; pandas, polars or Spark read it as a table.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bmsfil.core import InitialSoc, SocEstimator, SocTrace, given_soc, start_estimator
from bmsfil.importers.names import output_stem
from bmsfil.metrics import CONVERGED_BAND, SETTLE_S, SocScore
from bmsfil.params import ParameterSet
from bmsfil.plausibility import PlausibilityMonitor, PlausibilityTrace, StreamedFlags, run_monitored_arrays
from bmsfil.recording import FORMAT_TAG, Recording, RecordingError, RecordingMeta

SUFFIX = ".parquet"
ROWS_PER_GROUP = 1 << 20
#: Rows per chunk when streaming.
CHUNK_ROWS = 1 << 18
COLUMNS = ("time_s", "current_A", "voltage_V", "temp_C")
_META_KEY = b"bmsfil"


def _pyarrow():  # type: ignore[no-untyped-def]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RecordingError("Parquet recordings need pyarrow: pip install 'bmsfil[fleet]'") from None
    return pa, pq


def save_parquet(rec: Recording, path: str | Path, rows_per_group: int = ROWS_PER_GROUP) -> Path:
    """Write a recording as Parquet, in row groups of `rows_per_group`."""
    pa, pq = _pyarrow()
    path = Path(path)
    columns = {name: getattr(rec, name) for name in COLUMNS}
    if rec.ah is not None:
        columns["ah"] = rec.ah
    header = json.dumps({"format": FORMAT_TAG, "meta": asdict(rec.meta)})
    table = pa.table(columns).replace_schema_metadata({_META_KEY: header.encode()})
    tmp = path.with_name(path.name + ".part")
    pq.write_table(table, tmp, row_group_size=rows_per_group)
    tmp.replace(path)
    return path


class ChunkedRecording:
    """A Parquet recording, read a chunk at a time."""

    def __init__(self, path: str | Path) -> None:
        _pa, pq = _pyarrow()
        self.path = Path(path)
        try:
            self._file = pq.ParquetFile(self.path, pre_buffer=False)
        except (OSError, ValueError) as exc:
            raise RecordingError(f"{self.path}: not a readable Parquet file: {exc}") from None
        schema = self._file.schema_arrow
        raw = (schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise RecordingError(f"{self.path}: a Parquet file without a bmsfil header (write it with bmsfil import "
                                 "... -o FILE.parquet, or import it with --map as a table)")
        try:
            header = json.loads(raw)
        except ValueError as exc:
            raise RecordingError(f"{self.path}: its bmsfil header is not JSON: {exc}") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_TAG:
            raise RecordingError(f"{self.path}: header format {header.get('format') if isinstance(header, dict) else header!r}, "
                                 f"expected {FORMAT_TAG!r}")
        missing = [c for c in COLUMNS if c not in schema.names]
        if missing:
            raise RecordingError(f"{self.path}: missing column(s) {', '.join(missing)}")
        try:
            self.meta = RecordingMeta(**header.get("meta", {}))
        except TypeError as exc:
            raise RecordingError(f"{self.path}: bad metadata in its header: {exc}") from None
        self.has_ah = "ah" in schema.names
        self.n_samples = int(self._file.metadata.num_rows)

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[Recording]:
        """Consecutive chunks of at most `rows` samples (never across a row
        group); time stays the file's, so a chunk's first interval is to the
        previous chunk's last sample (`stream_estimates` uses it)."""
        columns = list(COLUMNS) + (["ah"] if self.has_ah else [])
        last_time = -math.inf
        start = 0
        for group in range(self._file.num_row_groups):
            # A row group at a time (not iter_batches, whose read-ahead grew
            # without bound here), then cut to `rows`.
            table = self._file.read_row_group(group, columns=columns)
            whole = {name: table.column(name).to_numpy().astype(np.float64, copy=False) for name in columns}
            del table
            n = len(whole["time_s"])
            for a in range(0, n, rows):
                arrays = {name: np.array(values[a : a + rows]) for name, values in whole.items()}
                if not arrays["time_s"][0] >= last_time:
                    raise RecordingError(f"{self.path}: time goes backwards at sample {start} "
                                         f"({last_time!r} s then {arrays['time_s'][0]!r} s)")
                try:
                    chunk = Recording(meta=self.meta, ah=arrays.get("ah"), **{c: arrays[c] for c in COLUMNS})
                except RecordingError as exc:
                    raise RecordingError(f"{self.path} (samples from {start}): {exc}") from None
                last_time = float(chunk.time_s[-1])
                start += len(chunk)
                yield chunk

    def load(self) -> Recording:
        """The whole recording in memory (for files that fit)."""
        parts = list(self.chunks())
        if not parts:
            raise RecordingError(f"{self.path}: no samples")
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        return Recording(meta=self.meta, ah=cat("ah") if self.has_ah else None, **{c: cat(c) for c in COLUMNS})


def stream_estimates(source: ChunkedRecording, params: ParameterSet, initial_soc: InitialSoc = "ocv",
                     rows: int = CHUNK_ROWS) -> Iterator[tuple[Recording, SocTrace]]:
    """The C core run through the file chunk by chunk, its state carried over."""
    for chunk, trace, _ in _stream(source, params, initial_soc, rows, monitored=False):
        yield chunk, trace


def stream_monitored(source: ChunkedRecording, params: ParameterSet, initial_soc: InitialSoc = "ocv",
                     rows: int = CHUNK_ROWS) -> Iterator[tuple[Recording, SocTrace, PlausibilityTrace]]:
    """As stream_estimates, with the plausibility monitor beside the EKF (`run_monitored`'s C call)."""
    for chunk, trace, plaus in _stream(source, params, initial_soc, rows, monitored=True):
        assert plaus is not None
        yield chunk, trace, plaus


def _stream(source: ChunkedRecording, params: ParameterSet, initial_soc: InitialSoc, rows: int,
            monitored: bool) -> Iterator[tuple[Recording, SocTrace, PlausibilityTrace | None]]:
    est = SocEstimator(params)
    mon = PlausibilityMonitor() if monitored else None
    prev_time: float | None = None
    for chunk in source.chunks(rows):
        if prev_time is None:
            start_estimator(est, chunk, initial_soc)
        dt = chunk.dt_s.copy()
        if prev_time is not None and len(dt):
            dt[0] = chunk.time_s[0] - prev_time
        if mon is not None:
            trace, plaus = run_monitored_arrays(est, mon, chunk.time_s, dt, chunk.current_A, chunk.voltage_V,
                                                chunk.temp_C)
        else:
            trace, plaus = est.run_arrays(dt, chunk.current_A, chunk.voltage_V, chunk.temp_C), None
        if len(chunk):
            prev_time = float(chunk.time_s[-1])
        yield chunk, trace, plaus


@dataclass
class StreamingScore:
    """`metrics.score_soc`, accumulated chunk by chunk (the same definitions)."""

    t0: float = math.nan
    n: int = 0
    sum_sq: float = 0.0
    max_after: float = math.nan
    inside: int = 0
    with_sigma: int = 0
    last_outside_next_time: float | None = 0.0  # None: the last sample seen was outside the band
    last_error: float = math.nan
    pending_outside: bool = False

    def update(self, time_s: np.ndarray, soc: np.ndarray, reference: np.ndarray,
               sigma: np.ndarray | None = None) -> None:
        if not len(time_s):
            return
        if math.isnan(self.t0):
            self.t0 = float(time_s[0])
        err = soc - reference
        ok = np.isfinite(err)
        if self.pending_outside:
            # The sample after the last one outside the band is this chunk's first.
            self.last_outside_next_time = float(time_s[0] - self.t0)
            self.pending_outside = False
        abs_err = np.abs(err)
        outside = np.flatnonzero(ok & (abs_err > CONVERGED_BAND))
        if outside.size:
            k = int(outside[-1])
            if k == len(err) - 1:
                self.pending_outside = True
            else:
                self.last_outside_next_time = float(time_s[k + 1] - self.t0)
        after = ok & (time_s >= self.t0 + SETTLE_S)
        if after.any():
            m = float(abs_err[after].max())
            self.max_after = m if math.isnan(self.max_after) else max(self.max_after, m)
        self.n += int(ok.sum())
        self.sum_sq += float(np.sum(err[ok] ** 2))
        if sigma is not None:
            self.inside += int(np.sum(abs_err[ok] <= 3.0 * sigma[ok]))
            self.with_sigma += int(ok.sum())
        if ok.any():
            self.last_error = float(err[ok][-1])

    def result(self) -> SocScore:
        if not self.n:
            raise ValueError("no sample has both an estimate and a reference")
        conv = math.inf if self.pending_outside else float(self.last_outside_next_time or 0.0)
        return SocScore(
            rmse=math.sqrt(self.sum_sq / self.n), max_error_after_settle=self.max_after,
            within_3sigma=self.inside / self.with_sigma if self.with_sigma else math.nan,
            convergence_time_s=conv, final_error=self.last_error, n_samples=self.n,
        )


def evaluate_streaming(path: str | Path, params: ParameterSet, initial_soc: InitialSoc, out_dir: Path,
                       rows: int = CHUNK_ROWS, stem: str | None = None) -> dict[str, object]:
    """`bmsfil eval` of a Parquet recording without holding it in memory: the
    estimate and a coulomb counter (started where the estimate started, at
    the capacity of the first temperature, as `evaluate.score_trace`), the
    CSV written as the chunks pass, the summary of `Evaluation.summary`
    (the plausibility monitor's flags too; not the health and power sections,
    which run on whole recordings only), ``streamed: true`` and the warnings
    eval gives of the parameter set and of gaps. The CSV is ``out_dir/<stem>.csv``, the stem
    by default the recording's name (`output_stem`)."""
    source = ChunkedRecording(path)
    out_csv = out_dir / f"{stem or output_stem(source.meta.name)}.csv"
    ekf, cc = StreamingScore(), StreamingScore()
    flags = StreamedFlags()
    flagged = 0
    soc0 = capacity = math.nan
    start_current: float | None = None
    charge = 0.0
    duration = 0.0
    samples = 0
    from bmsfil.evaluate import BAD_SAMPLE_FLAGS, checked_reference
    from bmsfil.gaps import GapScan
    from bmsfil.params_match import WorkingTemperature, mismatch_warnings

    gaps, working = GapScan(params), WorkingTemperature(params)  # eval's warnings, as the chunks pass

    tmp = out_csv.with_name(out_csv.name + ".part")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time_s", "soc", "soc_sigma"])
        first = True
        for chunk, trace, plaus in stream_monitored(source, params, initial_soc, rows):
            if not len(chunk):
                continue
            flags.update(plaus)
            gaps.add(chunk.time_s, chunk.current_A)
            working.add(chunk.time_s, chunk.current_A, chunk.temp_C)
            reference = checked_reference(chunk, samples)
            samples += len(chunk)
            if first:
                given = given_soc(initial_soc)
                soc0 = float(trace.soc[0]) if given is None else given
                finite = np.flatnonzero(np.isfinite(chunk.current_A))
                start_current = float(chunk.current_A[finite[0]]) if finite.size else None
                t_first = float(np.nanmedian(chunk.temp_C[:10]))
                capacity = float(np.interp(t_first, params.cell.temp_C, params.cell.capacity_Ah))
                prev_t = float(chunk.time_s[0])
                first = False
            dt = np.diff(chunk.time_s, prepend=prev_t)
            steps = np.cumsum(np.nan_to_num(chunk.current_A) * dt) / 3600.0
            coulomb = np.clip(soc0 + (charge + steps) / capacity, 0.0, 1.0)
            charge += float(steps[-1])
            prev_t = float(chunk.time_s[-1])
            ekf.update(chunk.time_s, trace.soc, reference, trace.soc_sigma)
            cc.update(chunk.time_s, coulomb, reference)
            flagged += int(np.count_nonzero(trace.flags & BAD_SAMPLE_FLAGS))
            duration = float(chunk.time_s[-1])
            for row in zip(chunk.time_s.tolist(), trace.soc.tolist(), trace.soc_sigma.tolist()):
                w.writerow([f"{row[0]:.3f}", f"{row[1]:.6f}", f"{row[2]:.6f}"])
    tmp.replace(out_csv)
    finite = lambda d: {k: (v if isinstance(v, int) or math.isfinite(v) else None) for k, v in d.items()}  # noqa: E731
    return {
        "name": source.meta.name,
        "ambient_temp_C": source.meta.ambient_temp_C,
        "duration_s": duration,
        "start_current_A": start_current,
        "ekf": finite(ekf.result().as_dict()),
        "coulomb_counter": finite(cc.result().as_dict()),
        "flagged_samples": flagged,
        "plausibility": flags.summary(),
        "streamed": True,
        "warnings": [*mismatch_warnings(source.meta, params, working.value()),
                     *filter(None, [gaps.warning(source.meta.name)])],
    }
