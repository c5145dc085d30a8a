"""Parquet recordings read in chunks, the estimator streamed through them
(the same estimates as one batch call), the score accumulated as they pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil.bundled import bundled_recording
from bmsfil.chunked import ChunkedRecording, StreamingScore, save_parquet, stream_estimates
from bmsfil.cli import main
from bmsfil.core import SocEstimator
from bmsfil.importers import load_any
from bmsfil.metrics import score_soc
from bmsfil.params import bundled_params
from bmsfil.recording import RecordingError

pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def parquet_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rec = bundled_recording().slice(0, 12000)
    return save_parquet(rec, tmp_path_factory.mktemp("pq") / "slice.parquet", rows_per_group=2500)


def test_round_trip(parquet_file: Path):
    rec = bundled_recording().slice(0, 12000)
    back = load_any(parquet_file)
    assert back.meta == rec.meta
    for name in ("time_s", "current_A", "voltage_V", "temp_C", "ah"):
        assert np.array_equal(getattr(back, name), getattr(rec, name))


@pytest.mark.parametrize("rows", [7, 999, 2500, 4096, 12000])
def test_streamed_estimates_are_the_batch_call(parquet_file: Path, rows: int):
    rec = bundled_recording().slice(0, 12000)
    batch = SocEstimator(bundled_params()).run(rec)
    parts = list(stream_estimates(ChunkedRecording(parquet_file), bundled_params(), "ocv", rows=rows))
    soc = np.concatenate([t.soc for _, t in parts])
    sigma = np.concatenate([t.soc_sigma for _, t in parts])
    assert np.array_equal(soc, batch.soc) and np.array_equal(sigma, batch.soc_sigma)  # not just <= 1e-6


@settings(max_examples=60, deadline=None)
@given(
    err=st.lists(st.floats(-0.05, 0.05), min_size=2, max_size=60),
    cuts=st.lists(st.integers(1, 59), max_size=5),
    dt=st.floats(1.0, 60.0),
)
def test_streaming_score_is_score_soc(err: list[float], cuts: list[int], dt: float):
    e = np.asarray(err)
    n = len(e)
    time_s = np.arange(n) * dt
    reference = np.linspace(1.0, 0.2, n)
    soc = reference + e
    sigma = np.full(n, 0.01)
    whole = score_soc(time_s, soc, reference, sigma)
    acc = StreamingScore()
    edges = [0] + sorted({c for c in cuts if c < n}) + [n]
    for a, b in zip(edges[:-1], edges[1:]):
        acc.update(time_s[a:b], soc[a:b], reference[a:b], sigma[a:b])
    got = acc.result()
    assert got.n_samples == whole.n_samples and got.convergence_time_s == whole.convergence_time_s
    assert got.within_3sigma == whole.within_3sigma and got.final_error == whole.final_error
    assert got.rmse == pytest.approx(whole.rmse, rel=1e-12, abs=1e-15)
    assert got.max_error_after_settle == pytest.approx(whole.max_error_after_settle, nan_ok=True)


def test_eval_streams_a_parquet_file(tmp_path: Path, parquet_file: Path):
    npz = bundled_recording().slice(0, 12000).save(tmp_path / "slice.npz")
    docs = []
    for src in (npz, parquet_file):
        out = tmp_path / f"{src.suffix[1:]}.json"
        assert main(["eval", str(src), "--no-plot", "--out-dir", str(tmp_path / src.suffix[1:]), "--json", str(out)]) == 0
        docs.append(json.loads(out.read_text())["recordings"][0])
    npz_doc, pq_doc = docs
    assert pq_doc["streamed"] is True and pq_doc["plausibility"] == npz_doc["plausibility"]
    for part in ("ekf", "coulomb_counter"):  # sums over chunks: equal to rounding
        assert pq_doc[part].keys() == npz_doc[part].keys()
        for key, value in npz_doc[part].items():
            got = pq_doc[part][key]
            assert got == value if value is None else got == pytest.approx(value, rel=1e-9)
    rows_npz = (tmp_path / "npz" / "551_US06_25degC.csv").read_text()
    assert (tmp_path / "parquet" / "551_US06_25degC.csv").read_text() == rows_npz


@pytest.mark.parametrize("rows", [999, 4096])
def test_streamed_monitor_flags_are_the_whole_run_s(tmp_path: Path, rows: int):
    """A recording with a frozen voltage and an unseen leak baked in: the flags,
    their first samples and evidence, and the end evidence, as one call gives."""
    from bmsfil.chunked import evaluate_streaming
    from bmsfil.inject import SensorErrors
    from bmsfil.plausibility import run_monitored

    faulty = SensorErrors.parse("voltage_stuck_at_s=300,voltage_stuck_for_s=60,leak_A=0.5").apply(
        bundled_recording().slice(0, 12000), 0)
    path = save_parquet(faulty, tmp_path / "faulty.parquet", rows_per_group=2500)
    streamed = evaluate_streaming(path, bundled_params(), "ocv", tmp_path, rows=rows)["plausibility"]
    whole = run_monitored(faulty, bundled_params())[1].summary()
    assert [f["flag"] for f in whole["flags"]] and streamed == whole


def test_import_writes_parquet_and_bad_files_are_named(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    npz = bundled_recording().slice(0, 500).save(tmp_path / "s.npz")
    out = tmp_path / "s.parquet"
    assert main(["import", str(npz), "-o", str(out)]) == 0
    assert ChunkedRecording(out).n_samples == 500
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"time_s": [0.0, 1.0]}), plain)
    with pytest.raises(RecordingError, match="plain.parquet: a Parquet file without a bmsfil header"):
        ChunkedRecording(plain)
    rec = bundled_recording().slice(0, 500)
    t = rec.time_s.copy()
    t[300:] -= 100.0  # backwards at sample 300, across a row group
    path = save_parquet(rec, tmp_path / "back.parquet")
    table = pq.read_table(path)
    table = table.set_column(0, "time_s", pa.array(t)).replace_schema_metadata(table.schema.metadata)
    pq.write_table(table, path, row_group_size=300)
    with pytest.raises(RecordingError, match="back.parquet.*time goes backwards at sample 300"):
        list(ChunkedRecording(path).chunks(rows=300))


_STREAM_RSS = """
import resource, sys
from pathlib import Path
from bmsfil.chunked import evaluate_streaming
from bmsfil.params import bundled_params
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
evaluate_streaming(sys.argv[1], bundled_params(), "ocv", Path(sys.argv[3]))  # warm: imports, first allocations
before = rss()
summary = evaluate_streaming(sys.argv[2], bundled_params(), "ocv", Path(sys.argv[3]))
print(summary["ekf"]["n_samples"], before, rss())
"""


@pytest.mark.slow
def test_a_recording_larger_than_the_process_holds(tmp_path: Path):
    """8 million samples (320 MB as float64 arrays) streamed by a process
    whose peak memory grows by a small part of that over what a short file
    needs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = bundled_recording()
    reps = 8_000_000 // len(base) + 1
    path = tmp_path / "long.parquet"
    with_meta = save_parquet(base.slice(0, 10), tmp_path / "meta.parquet")
    meta = pq.read_schema(with_meta).metadata
    period = float(base.time_s[-1] + 0.1)
    with pq.ParquetWriter(path, pa.schema([(c, pa.float64()) for c in ("time_s", "current_A", "voltage_V", "temp_C", "ah")],
                                          metadata=meta)) as w:
        for k in range(reps):
            # The cycle again and again: time and charge go on, voltage as recorded.
            cols = {"time_s": base.time_s + k * period, "current_A": base.current_A, "voltage_V": base.voltage_V,
                    "temp_C": base.temp_C, "ah": base.ah}
            w.write_table(pa.table(cols))
    n = ChunkedRecording(path).n_samples
    assert n >= 8_000_000
    out = subprocess.run([sys.executable, "-c", _STREAM_RSS, str(with_meta), str(path), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == n
    growth = int(out[2]) - int(out[1])
    assert growth < 80, f"peak RSS grew by {growth} MB streaming {n} samples"


def test_a_parquet_file_scores_as_its_npz_twin_from_a_given_soc_and_without_reference(tmp_path: Path):
    """From --initial-soc 0.7 the streamed coulomb counter starts at 0.7 as the
    whole-file one does; a file without a reference SOC takes the unscored
    path (estimates, flags, health) instead of failing."""
    from dataclasses import replace

    rec = bundled_recording().slice(0, 3000)
    unref = replace(rec, meta=replace(rec.meta, name="unref", reference_capacity_Ah=None))
    docs = {}
    for name, r in (("ref", rec), ("unref", unref)):
        for suffix in ("npz", "parquet"):
            path = tmp_path / f"{name}.{suffix}"
            save_parquet(r, path) if suffix == "parquet" else r.save(path)
            out = tmp_path / f"{name}_{suffix}.json"
            assert main(["eval", str(path), "--initial-soc", "0.7", "--no-plot", "--out-dir",
                         str(tmp_path / suffix), "--json", str(out)]) == 0
            docs[name, suffix] = json.loads(out.read_text())["recordings"][0]
    assert docs["ref", "parquet"]["streamed"] is True
    assert docs["ref", "parquet"]["coulomb_counter"]["rmse"] == pytest.approx(
        docs["ref", "npz"]["coulomb_counter"]["rmse"], rel=1e-9)
    assert docs["ref", "parquet"]["start_current_A"] == docs["ref", "npz"]["start_current_A"]
    assert docs["unref", "parquet"]["ekf"] is None and docs["unref", "npz"]["ekf"] is None
    assert docs["unref", "parquet"]["plausibility"] == docs["unref", "npz"]["plausibility"]


@pytest.mark.parametrize("rows", [999, 4096])
def test_streamed_eval_warns_as_the_whole_recording_does(tmp_path: Path, rows: int):
    """A parameter set of another cell and a 10-minute gap under load: the
    streamed eval warns of both, word for word as eval of the whole
    recording (the gap's sample numbered in the whole recording)."""
    from dataclasses import replace

    from bmsfil.chunked import evaluate_streaming
    from bmsfil.gaps import gap_warning
    from bmsfil.params_match import parameter_warnings

    rec = bundled_recording().slice(0, 12000)
    keep = np.r_[0:3000, 9000:12000]  # 6,000 samples of 0.1 s left out: 10 minutes
    cut = replace(rec, time_s=rec.time_s[keep], current_A=rec.current_A[keep], voltage_V=rec.voltage_V[keep],
                  temp_C=rec.temp_C[keep], ah=rec.ah[keep])
    nasa = bundled_params("nasa-pcoe-18650")
    path = save_parquet(cut, tmp_path / "gap.parquet", rows_per_group=2500)
    warnings = evaluate_streaming(path, nasa, "ocv", tmp_path, rows=rows)["warnings"]
    whole = [*parameter_warnings(cut, nasa), gap_warning(cut, nasa)]
    assert len(whole) == 2 and "sample 2999" in str(whole[1]) and warnings == whole
    assert evaluate_streaming(path, bundled_params(), "ocv", tmp_path, rows=rows)["warnings"] == \
        [gap_warning(cut, bundled_params())]


def _relogged(index: np.ndarray, time_s: np.ndarray, rest: int, name: str):
    """The bundled US06 (25 °C, logged every 0.1 s) as a logger that logged
    its samples `index` at `time_s`, the first `rest` of them a rest before
    the drive (the first sample's readings and no current)."""
    from dataclasses import replace

    rec = bundled_recording()
    current = rec.current_A[index].copy()
    current[:rest] = 0.0
    return replace(rec, time_s=time_s, current_A=current, voltage_V=rec.voltage_V[index],
                   temp_C=rec.temp_C[index], ah=rec.ah[index], meta=replace(rec.meta, name=name))


@pytest.mark.parametrize("case", ["rest at 60 s first", "0.1 s first, then 10 s"])
def test_streamed_gap_warning_takes_the_whole_recordings_median(tmp_path: Path, case: str):
    """A recording whose first chunk is logged at another rate than the
    rest: the streamed eval's gap threshold (60 s, or 20 median intervals)
    is the whole recording's, not the first chunk's. A 2-hour rest logged
    every 60 s before the drive (first chunk's median 60 s: a threshold of
    1200 s, which missed the 10-minute gap under load); or 20 s at 0.1 s
    before a logger's 10 s (first chunk's threshold 60 s, which took a
    100-s interval of the 10-s logging for a gap)."""
    from bmsfil.chunked import evaluate_streaming
    from bmsfil.gaps import gap_warning
    from bmsfil.params_match import parameter_warnings

    params = bundled_params()
    if case == "rest at 60 s first":
        drive = np.r_[0:3000, 9000:12000]  # 10 minutes under load left out
        index = np.r_[np.zeros(120, dtype=int), drive]
        time = np.r_[np.arange(120) * 60.0, 7200.0 + bundled_recording().time_s[drive]]
        rec = _relogged(index, time, 120, "rest-then-us06")
    else:
        slow = np.setdiff1d(np.arange(200, 40155, 100), np.arange(20000, 20900, 100))  # 100 s under load missed
        index = np.r_[0:200, slow]
        rec = _relogged(index, bundled_recording().time_s[index], 0, "us06-relogged-at-10s")
    whole = gap_warning(rec, params)
    assert (whole is not None and "1 gap(s) of 60 s" in whole and "600 s after 7500 s (sample 3119" in whole
            if case == "rest at 60 s first" else whole is None)
    path = save_parquet(rec, tmp_path / "relogged.parquet", rows_per_group=100)
    streamed = evaluate_streaming(path, params, "ocv", tmp_path, rows=100)["warnings"]
    assert streamed == [w for w in [*parameter_warnings(rec, params), whole] if w is not None]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([0.1, 1.0, 2.9, 3.0, 3.1, 10.0, 60.0, 100.0]), min_size=1, max_size=60),
       st.lists(st.integers(1, 60), max_size=6))
def test_gap_scan_threshold_is_the_whole_recordings_in_any_chunks(dt: list[float], cuts: list[int]):
    """The streamed threshold is max(60 s, 20 x np.median of every interval), however the recording is cut."""
    from bmsfil.gaps import GapScan

    time = np.r_[0.0, np.cumsum(dt)]
    scan = GapScan(bundled_params())
    for chunk in np.split(np.arange(time.size), sorted(set(c for c in cuts if c < time.size))):
        scan.add(time[chunk], np.zeros(chunk.size))
    assert scan.threshold() == max(60.0, 20.0 * float(np.median(np.diff(time))))
