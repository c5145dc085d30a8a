"""The bare-metal firmware builds for every board, and its size checks hold
and can fail: the estimator within its flash budget and free of
double-precision helpers and libm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bmsfil_hil.firmware import boards, build

from firmware_tools import needs_toolchain

pytestmark = needs_toolchain
ROOT = Path(__file__).resolve().parents[1]
SIZE_REPORT = ROOT / "firmware" / "baremetal" / "size_report.py"


@pytest.mark.parametrize("board", boards())
def test_board_builds_within_budget(board):
    image = build(board)
    size = image.size
    assert image.elf.is_file()
    assert size["problems"] == []
    assert size["estimator_external_symbols"] == []
    assert 0 < size["estimator_flash"] <= 8192
    comps = size["components"]
    assert comps["estimator core"]["ram"] == 0, "the core keeps no state of its own"
    assert comps["parameters"]["flash"] > 4000 and comps["parameters"]["ram"] == 0, "parameters stay in flash"


def _arm_object(tmp_path: Path, name: str, source: str) -> Path:
    c = tmp_path / f"{name}.c"
    c.write_text(source)
    o = tmp_path / f"{name}.o"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard",
                    "-O2", "-c", str(c), "-o", str(o)], check=True)
    return o


def test_double_check_can_fail(tmp_path):
    """An 'estimator' that computes in double or calls libm is refused by name."""
    sys.path.insert(0, str(SIZE_REPORT.parent))
    try:
        import size_report
    finally:
        sys.path.pop(0)
    good = _arm_object(tmp_path, "good", "float f(float x) { return x * 2.0f; }\n")
    soft_double = _arm_object(tmp_path, "dbl", "double g(double x, double y) { return x / y; }\n")
    libm = _arm_object(tmp_path, "lm", "#include <math.h>\nfloat h(float x) { return sqrtf(x) + expf(x); }\n")
    assert size_report.undefined_outside("arm-none-eabi-nm", [str(good)]) == []
    # The FPU is single precision: double division is a runtime call.
    assert any(s.startswith("__aeabi_d") for s in size_report.undefined_outside("arm-none-eabi-nm", [str(soft_double)]))
    assert "expf" in size_report.undefined_outside("arm-none-eabi-nm", [str(libm)])
