"""The C core builds cleanly, passes its C unit tests, and needs no libm.

These run the targets of csrc/Makefile (`make -C csrc check`, `nolibm` and,
marked slow, `sanitize`), each into its own temporary build directory so that
they neither race each other nor reuse a developer's csrc/build/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CSRC = Path(__file__).resolve().parent.parent / "csrc"
CC = os.environ.get("CC") or "gcc"

pytestmark = [
    pytest.mark.skipif(shutil.which("make") is None, reason="`make` is not installed"),
    pytest.mark.skipif(shutil.which(CC) is None, reason=f"C compiler `{CC}` is not installed"),
]

SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def run_make(target: str, build_dir: Path, timeout: float = 900.0) -> str:
    """Run `make -C csrc TARGET` and return its output; fail showing it."""
    cmd = ["make", "-C", str(CSRC), target, f"BUILD={build_dir}"]
    if "CC" in os.environ:
        cmd.append(f"CC={CC}")
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = proc.stdout
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-200:])
        pytest.fail(f"`{' '.join(cmd)}` exited with {proc.returncode}:\n{tail}", pytrace=False)
    return output


def assert_all_tests_passed(output: str) -> None:
    summaries = SUMMARY.findall(output)
    # The C tests, and the headers' C++ check where a C++ compiler is (make's `cxx` says so otherwise).
    n_programs = len(list((CSRC / "tests").glob("test_*.c"))) + ("== cxx_headers" in output)
    assert len(summaries) == n_programs, f"expected {n_programs} test summaries:\n{output}"
    for passed, failed in summaries:
        assert int(failed) == 0 and int(passed) > 0, output


def test_make_check(tmp_path: Path) -> None:
    output = run_make("check", tmp_path / "build")
    assert_all_tests_passed(output)
    assert "make check: all test programs passed" in output


def test_make_nolibm(tmp_path: Path) -> None:
    output = run_make("nolibm", tmp_path / "build")
    assert "no undefined symbol outside the core" in output
    assert "FAILED" not in output


def sanitizers_available() -> bool:
    probe = subprocess.run(
        [CC, "-fsanitize=address,undefined", "-x", "c", "-", "-o", os.devnull],
        input="int main(void) { return 0; }\n",
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.slow
def test_make_sanitize(tmp_path: Path) -> None:
    if not sanitizers_available():
        pytest.skip(f"`{CC}` cannot link -fsanitize=address,undefined (runtime libraries missing)")
    output = run_make("sanitize", tmp_path / "build")
    assert_all_tests_passed(output)
    assert "make sanitize: all test programs passed" in output
