"""A short libFuzzer run of each fuzz target (fuzz/): the firmware's SLCAN
link and app (bytes in, contract frames, resets, retained state) and the
estimator's step API, under ASan and UBSan, from the corpus kept in the
repository. A crash or a broken invariant fails the run. The long run is
`make -C fuzz run SECONDS=3600` (docs/fuzzing.md)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_tools import REQUIRED

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
pytestmark = pytest.mark.slow

if shutil.which("clang") is None and REQUIRED:
    pytest.fail("clang not found (scripts/install-firmware-tools.sh should have installed it)", pytrace=False)
needs_clang = pytest.mark.skipif(shutil.which("clang") is None,
                                 reason="clang not installed (scripts/install-firmware-tools.sh)")


@needs_clang
@pytest.mark.parametrize("target", ["slcan_app", "ekf_step"])
def test_fuzz_target_survives_a_short_run(target, tmp_path):
    build = subprocess.run(["make", "-s", "-C", str(FUZZ), target], capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [str(FUZZ / "build" / target), "-max_total_time=15", f"-artifact_prefix={tmp_path}/",
         str(work), str(FUZZ / "corpus" / target)],
        capture_output=True, text=True,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*")) + sorted(p.name for p in tmp_path.glob("leak-*"))
    assert run.returncode == 0 and not crashes, f"{target}: {crashes}\n{run.stderr[-3000:]}"
    assert "Done" in run.stderr


def test_parameter_loader_survives_a_short_run(tmp_path):
    """fuzz/fuzz_params.py (atheris): any bytes given as a parameter file are
    refused with a ParamsError or give a set the C core takes as it is."""
    import sys

    work = tmp_path / "work"
    work.mkdir()
    run = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_params.py"), "-max_total_time=15", f"-artifact_prefix={tmp_path}/",
         str(work), str(FUZZ / "corpus" / "params")],
        capture_output=True, text=True,
    )
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert run.returncode == 0 and not crashes, f"params: {crashes}\n{run.stderr[-3000:]}"
    assert "Done" in run.stderr
