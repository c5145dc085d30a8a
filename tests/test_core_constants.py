"""Constants the Python mirrors copy from the C headers (cffi carries only
integer defines) hold the headers' values."""

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "firmware" / "micropython"))

import bmsfil_ekf  # noqa: E402
import bmsfil_thermal  # noqa: E402

from bmsfil import params, thermal  # noqa: E402


def header_float(header: str, name: str) -> float:
    text = (ROOT / "csrc" / "include" / "bmsfil" / header).read_text()
    m = re.search(rf"^#define\s+{name}\s+\(?([0-9.eE+-]+)f\b", text, flags=re.M)
    assert m, f"{name} not defined as a float in {header}"
    return float(m.group(1))


@pytest.mark.parametrize("header, name, mirrors", [
    ("soc_ekf.h", "BF_GATE_SIGMA_MIN", [params.GATE_SIGMA_MIN, bmsfil_ekf.GATE_SIGMA_MIN]),
    ("thermal.h", "BF_THERMAL_GATE_TAU_S", [thermal.GATE_TAU_S, bmsfil_thermal.GATE_TAU_S]),
    ("cell_model.h", "BF_VOLTAGE_MARGIN_V", [params.VOLTAGE_MARGIN_V, bmsfil_ekf.VOLTAGE_MARGIN_V]),
    ("cell_model.h", "BF_TEMP_MIN_C", [params.TEMP_MIN_C, bmsfil_ekf.TEMP_MIN_C]),
    ("cell_model.h", "BF_TEMP_MAX_C", [params.TEMP_MAX_C, bmsfil_ekf.TEMP_MAX_C]),
])
def test_mirrors_hold_the_header_value(header: str, name: str, mirrors: list[float]) -> None:
    value = header_float(header, name)
    assert all(m == value for m in mirrors), (name, value, mirrors)


def test_the_tuning_fields_are_the_c_structs_in_its_order() -> None:
    """The native port packs bf_soc_ekf_tuning_t by position (its glue checks
    only the size) and the pure port reads the same names with its own
    defaults: every list of the fields is the struct's, in its order."""
    import ast
    from dataclasses import astuple, fields

    from bmsfil._core import ffi

    struct = [name for name, _ in ffi.typeof("bf_soc_ekf_tuning_t").fields]
    source = (ROOT / "firmware" / "micropython" / "bmsfil_native.py").read_text()
    native = next(ast.literal_eval(node.value) for node in ast.parse(source).body
                  if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "TUNING")
    assert [f.name for f in fields(params.FilterTuning)] == struct
    assert list(bmsfil_ekf._FILTER) == struct and list(native) == struct
    assert astuple(params.FilterTuning()) == bmsfil_ekf._FILTER_DEFAULTS
