"""The HIL pytest plugin (bmsfil_hil/pytest_plugin.py) as a user's CI runs it:
`pytest hil/ --hil-...` in a process of its own, its usage errors and what a
short or unscored run reports (a red team's findings, 2026-12-07)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from bmsfil.bundled import bundled_recording
from bmsfil.recording import RecordingMeta

ROOT = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)


def test_options_that_cannot_work_are_usage_errors(tmp_path: Path) -> None:
    """A file that is not a recording was read by every test (an error with a traceback
    in each, the good recordings' tests too); a timeout of 0 made a live target look
    dead; a parameter file that is not there errored in every test. Each is now one
    usage error (exit 4) naming the option and the file."""
    suite = str(ROOT / "hil")
    for args, said in ((["--hil-recording", str(ROOT / "README.md")], "--hil-recording"),
                       (["--hil-recording", str(tmp_path)], "a directory"),
                       (["--hil-timeout", "0"], "--hil-timeout 0: expected a number of seconds above 0"),
                       (["--hil-params", str(tmp_path / "none.json")], "--hil-params")):
        done = _pytest(tmp_path, suite, *args)
        assert done.returncode == 4, (args, done.stdout, done.stderr)
        assert said in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_run_of_one_sample_and_one_without_a_reference(tmp_path: Path) -> None:
    """One sample: the target's flags, health and power frames came right behind its
    estimate, but the replay waited only for kinds already seen, so the tests for them
    failed. A recording without a reference SOC: every test errored (RecordingError).
    Now both pass what they can, the accuracy test skipped with the reason."""
    suite = str(ROOT / "hil")
    one = _pytest(tmp_path, suite, "--hil-samples", "1", "-rs")
    assert one.returncode == 0, one.stdout
    rec = bundled_recording().slice(0, 300)
    plain = RecordingMeta(name="no_reference", ambient_temp_C=None)
    path = replace(rec, ah=None, meta=plain).save(tmp_path / "x.npz")
    unscored = _pytest(tmp_path, suite, "--hil-recording", str(path), "-rs",
                       "-o", "junit_family=xunit1", f"--junitxml={tmp_path / 'r.xml'}")
    assert unscored.returncode == 0, unscored.stdout
    assert "not scored: recording 'no_reference' has no reference SOC" in " ".join(unscored.stdout.split())
    xml = (tmp_path / "r.xml").read_text()
    assert 'name="not_scored"' in xml and 'name="ambient_temp_C"' not in xml


def test_a_reset_asked_of_a_desktop_target_fails_at_once(tmp_path: Path) -> None:
    """hil_replay(rec, commands=...) on host waited out the timeout and blamed the target."""
    (tmp_path / "test_mine.py").write_text(
        "from bmsfil import can_contract as cc\n"
        "def test_reset(hil_replay, hil_recording):\n"
        "    hil_replay(hil_recording, commands={10: cc.HostCommandCode.WARM_RESET})\n")
    done = _pytest(tmp_path, str(tmp_path / "test_mine.py"), "--hil-samples", "50")
    assert done.returncode == 1
    assert "target host has no reset: replay with commands on qemu, micropython, board" in done.stdout


def test_a_conftest_with_recordings_of_its_own_is_told_how(tmp_path: Path) -> None:
    """A conftest overriding `hil_recordings` with three recordings ran the tests once,
    on the first, under the bundled recording's id; now it fails saying to use
    --hil-recording."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\n"
        "from bmsfil.bundled import bundled_recording\n"
        "@pytest.fixture(scope='session')\n"
        "def hil_recordings():\n"
        "    rec = bundled_recording()\n"
        "    return [rec.slice(0, 50), rec.slice(50, 100), rec.slice(100, 150)]\n")
    (tmp_path / "test_mine.py").write_text("def test_one(hil_recording):\n    assert len(hil_recording) == 50\n")
    done = _pytest(tmp_path, str(tmp_path / "test_mine.py"))
    assert done.returncode == 1
    assert "give the recordings with --hil-recording" in " ".join(done.stdout.split())
