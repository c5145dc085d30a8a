"""`bmsfil bench`: rates per sample actually run, options that cannot work refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import bmsfil.bench as bench
from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.params import bundled_params


def test_rates_count_the_samples_run_on_a_short_recording(monkeypatch: pytest.MonkeyPatch):
    """A recording shorter than python_samples: each per-sample path's rate
    is over the samples it ran (200), not the 3000 asked for."""
    counted: list[int] = []
    real = bench._best_rate

    def recording_rate(fn, n: int, min_time_s: float) -> float:
        counted.append(n)
        return real(fn, n, min_time_s)

    monkeypatch.setattr(bench, "_best_rate", recording_rate)
    rec = bundled_recording().slice(0, 200)
    result = bench.run_bench(bundled_params(), rec, python_samples=3000, min_time_s=0.0)
    assert counted == [200, 200, 200, 200]
    assert result.samples == {"c_batch": 200, "python": 200}


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--python-samples", "0", "expected at least 1, got 0"),
    ("--cells", "-5", "expected at least 0, got -5"),
])
def test_options_out_of_range_are_refused(option: str, value: str, expected: str,
                                          capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exc:
        main(["bench", option, value])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


def test_cells_without_a_reference_is_refused_before_benchmarking(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]):
    rec = bundled_recording().slice(0, 300)
    path = replace(rec, ah=None).save(tmp_path / "field_log.npz")
    assert main(["bench", str(path), "--cells", "5", "--min-time", "0"]) == 2
    out = capsys.readouterr()
    assert "has no reference SOC" in out.err and "--cells 0" in out.err
    assert "steps" not in out.out  # refused up front: no single-cell table first
    assert main(["bench", str(path), "--cells", "0", "--min-time", "0", "--python-samples", "50"]) == 0


def test_a_recording_eval_takes_is_benched_or_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """A first voltage of 0 (a logger's first line) is timed from the first
    sample the filter starts on, as eval starts (it was a CoreError traceback);
    a missing current, which filterpy's filter cannot take, is refused naming
    the sample (a ValueError traceback). The JSON says what was benched."""
    import json

    import numpy as np

    rec = bundled_recording().slice(0, 300)
    zero_first = tmp_path / "zero.npz"
    replace(rec, voltage_V=np.concatenate([[0.0], rec.voltage_V[1:]])).save(zero_first)
    out = tmp_path / "b.json"
    assert main(["bench", str(zero_first), "--cells", "0", "--min-time", "0", "--python-samples", "50",
                 "--json", str(out)]) == 0
    assert "timed from sample 1, the first the filter can start from" in capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["input"] == str(zero_first) and doc["params"] == bundled_params().name
    current = rec.current_A.copy()
    current[100:110] = np.nan
    gappy = tmp_path / "gappy.npz"
    replace(rec, current_A=current).save(gappy)
    assert main(["bench", str(gappy), "--cells", "0", "--min-time", "0"]) == 2
    err = capsys.readouterr().err
    assert "current_A is missing (NaN) at 10 sample(s), the first 100" in err and "Traceback" not in err
