"""No data lost: a harness killed mid-run leaves a log that reads back and
that `bmsfil hil score` scores; Ctrl-C closes the log and says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import can
import pytest

from bmsfil.cli import main

BUNDLED = Path(__file__).resolve().parents[1] / "host" / "bmsfil" / "data" / "551_US06_25degC.npz"

BMSFIL = [sys.executable, "-m", "bmsfil.cli"]


def _run_then(sig: int, log: Path, tmp_path: Path, after_s: float = 3.0) -> subprocess.CompletedProcess:
    # Paced at 20x the recording's clock: a run of 200 s, whatever the machine.
    proc = subprocess.Popen([*BMSFIL, "hil", "run", "--mode", "realtime", "--speed", "20", "--log", str(log),
                             "--no-plot", "--out-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while (not log.exists() or log.stat().st_size < 5_000) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(after_s)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


@pytest.mark.parametrize("suffix", [".blf", ".asc"])
def test_killed_harness_leaves_a_log_that_scores(tmp_path, suffix):
    log = tmp_path / f"run{suffix}"
    done = _run_then(signal.SIGKILL, log, tmp_path)
    assert done.returncode == -signal.SIGKILL
    assert sum(1 for _ in can.LogReader(str(log))) > 1000
    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log), "--recording", str(BUNDLED), "--json", str(js),
                 "--out-dir", str(tmp_path / "score"), "--no-plot"]) == 0
    doc = json.loads(js.read_text())
    cell = doc["cells_scored"][0]
    assert 50 < doc["samples"] < 40155, "a run cut short"
    assert cell["estimates"] >= doc["samples"] - 1  # the last sample's estimate may not have been logged
    assert cell["max_abs_soc_difference_vs_core"] <= 1e-6
    assert cell["ekf"]["rmse"] < 0.01


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_closes_the_log_and_says_so(tmp_path):
    log = tmp_path / "run.blf"
    done = _run_then(signal.SIGINT, log, tmp_path, after_s=1.0)
    assert done.returncode == 130, done.stdout
    assert "interrupted" in done.stdout and "bmsfil hil score" in done.stdout
    assert sum(1 for _ in can.LogReader(str(log))) > 1000


def test_score_refuses_what_it_cannot_read(tmp_path, capsys):
    assert main(["hil", "score", str(tmp_path / "missing.blf")]) == 2
    assert "missing.blf" in capsys.readouterr().out
