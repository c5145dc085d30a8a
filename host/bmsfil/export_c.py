"""A parameter set as C source for firmware: the `bf_cell_params_t` and
`bf_soc_ekf_tuning_t` the host runs, as `const` initialisers that stay in
flash.

The values are taken from the structs the cffi binding fills (so they passed
`bf_cell_params_check` and `bf_soc_ekf_tuning_check`) and written as C99
hexadecimal float literals: the firmware gets bit for bit the numbers the
host estimator uses.

    python -m bmsfil.export_c PARAMS.json -o params.c

The file defines `fw_params_cell`, `fw_params_tuning`, `fw_params_name`,
`fw_plaus_config`, the plausibility monitor's settings (the defaults of
`bmsfil.plausibility.PlausibilityConfig`, which the host targets run too),
and `fw_capacity_tuning` and `fw_r0_tuning`, the capacity and R0
estimators' settings (`bmsfil.health`'s defaults for this parameter set),
and `fw_thermal_params` and `fw_thermal_tuning`, the core-temperature
filter's model (the set's ``thermal`` section) and settings
(`bmsfil.thermal.ThermalTuning`'s defaults), both NULL when the set has no
thermal section (the firmware then sends no core temperature), declared in
firmware/baremetal/include/fw/params.h.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from bmsfil._core import ffi
from bmsfil.core import pack_cell_params, pack_tuning
from bmsfil.health import CapacityTuning, R0Tuning
from bmsfil.params import ParameterSet
from bmsfil.plausibility import PlausibilityConfig
from bmsfil.thermal import ThermalTuning, pack_thermal


def _literal(value: object, ctype: str) -> str:
    if ctype == "float":
        x = float(value)  # type: ignore[arg-type]
        if not math.isfinite(x):
            raise ValueError(f"non-finite float {x!r} cannot go into firmware parameters")
        return f"{x.hex()}f"
    return f"{int(value)}u"  # type: ignore[call-overload]


def _initialiser(cdata: "ffi.CData", indent: str = "    ") -> str:
    """A C designated initialiser of a cffi struct (floats, unsigned ints and arrays of them)."""
    ctype = ffi.typeof(cdata)
    lines = []
    for name, field in ctype.fields:
        value = getattr(cdata, name)
        lines.append(f"{indent}.{name} = {_value(value, field.type)},")
    return "{\n" + "\n".join(lines) + "\n}"


def _value(value: object, ctype: "ffi.CType") -> str:
    if ctype.kind == "array":
        return "{" + ", ".join(_value(v, ctype.item) for v in value) + "}"  # type: ignore[attr-defined]
    if ctype.kind == "primitive":
        return _literal(value, "float" if ctype.cname in ("float", "double") else "int")
    raise TypeError(f"unexpected C type {ctype.cname} in a parameter struct")


def _c_string(text: str) -> str:
    """A C string literal of `text` (UTF-8): printable ASCII as it is, the
    rest, quotes, backslashes and '?' (trigraphs) escaped."""
    out = []
    for byte in text.encode():
        ch = chr(byte)
        out.append(ch if 0x20 <= byte < 0x7F and ch not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    """`text` inside a C comment: no line breaks, nothing that ends it."""
    return " ".join(text.split()).replace("*/", "* /")


def params_to_c(params: ParameterSet, source: str = "") -> str:
    """C source defining fw_params_cell, fw_params_tuning, fw_params_name,
    fw_plaus_config, fw_capacity_tuning, fw_r0_tuning, fw_sop_limits,
    fw_thermal_params and fw_thermal_tuning."""
    cell = pack_cell_params(params)
    plaus = PlausibilityConfig().packed()
    capacity = CapacityTuning.for_params(params).packed()
    r0 = R0Tuning.for_params(params).packed()
    sop = ffi.new("bf_sop_limits_t *", {"horizon_s": 0.0} | params.power_limits())
    tuning = pack_tuning(params.filter)
    if params.thermal is not None:
        thermal = (
            f"static const bf_thermal_params_t thermal_params = {_initialiser(pack_thermal(params.thermal)[0])};\n\n"
            f"static const bf_thermal_tuning_t thermal_tuning = {_initialiser(ThermalTuning().packed()[0])};\n\n"
            "const bf_thermal_params_t *const fw_thermal_params = &thermal_params;\n"
            "const bf_thermal_tuning_t *const fw_thermal_tuning = &thermal_tuning;\n"
        )
    else:
        thermal = (
            "/* No thermal section in the set: no core temperature. */\n"
            "const bf_thermal_params_t *const fw_thermal_params = 0;\n"
            "const bf_thermal_tuning_t *const fw_thermal_tuning = 0;\n"
        )
    origin = f" from {_comment(source)}" if source else ""
    return (
        f"/* Parameter set \"{_comment(params.name)}\"{origin}, written by bmsfil.export_c. Do not edit. */\n"
        '#include "fw/params.h"\n\n'
        f'const char fw_params_name[] = {_c_string(params.name)};\n\n'
        f"const bf_cell_params_t fw_params_cell = {_initialiser(cell[0])};\n\n"
        f"const bf_soc_ekf_tuning_t fw_params_tuning = {_initialiser(tuning[0])};\n\n"
        f"const bf_plaus_config_t fw_plaus_config = {_initialiser(plaus[0])};\n\n"
        f"const bf_capacity_tuning_t fw_capacity_tuning = {_initialiser(capacity[0])};\n\n"
        f"const bf_r0_tuning_t fw_r0_tuning = {_initialiser(r0[0])};\n\n"
        "/* The state of power's limits (horizon 0: the firmware sets each horizon's). */\n"
        f"const bf_sop_limits_t fw_sop_limits = {_initialiser(sop[0])};\n\n"
        + thermal
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bmsfil.export_c", description=__doc__.splitlines()[0])
    ap.add_argument("params", type=Path, help="parameter set (.json)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="C file to write")
    args = ap.parse_args(argv)
    text = params_to_c(ParameterSet.load(args.params), source=args.params.name)
    tmp = args.output.with_name(args.output.name + ".part")
    tmp.write_text(text)
    tmp.replace(args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
