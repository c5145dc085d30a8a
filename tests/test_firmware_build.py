"""The bare-metal firmware builds for every board, and its size checks hold
and can fail: the estimator within its flash budget and free of
double-precision helpers and libm."""

from __future__ import annotations

import os
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



def test_another_parameter_set_is_built_in_whatever_its_date(tmp_path):
    """`make PARAMS_C=B` after `make PARAMS_C=A` in one build folder, B's file older
    than A's object (a set exported yesterday, a copy that kept its date): make went
    by the dates and left A's parameters in the image, which `bmsfil flash` then
    wrote to the board. The object now records which file it was built from."""
    from bmsfil.export_c import params_to_c
    from bmsfil.params import bundled_params

    fw = ROOT / "firmware" / "baremetal"
    out = tmp_path / "build"
    params_o = out / "params" / "params.o"
    lg, nasa = tmp_path / "lg.c", tmp_path / "nasa.c"
    lg.write_text(params_to_c(bundled_params("lg-hg2"), source="lg-hg2"))
    nasa.write_text(params_to_c(bundled_params("nasa-pcoe-18650"), source="nasa-pcoe-18650"))
    yesterday = lg.stat().st_mtime - 86400
    os.utime(nasa, (yesterday, yesterday))

    def make(params_c: Path) -> bytes:
        subprocess.run(["make", "-s", "-C", str(fw), "BOARD=nucleo-f446re", f"OUT={out}", f"PARAMS_C={params_c}",
                        "all"], check=True, capture_output=True)
        assert (out / "params" / "source").read_text().strip() == str(params_c)
        return params_o.read_bytes()

    with_lg = make(lg)
    with_nasa = make(nasa)
    assert with_nasa != with_lg, "the older set is built in"
    built_at = params_o.stat().st_mtime_ns
    assert make(nasa) == with_nasa and params_o.stat().st_mtime_ns == built_at, "the same set: nothing rebuilt"
