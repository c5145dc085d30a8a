"""A parameter set as the compact file the MicroPython port loads.

    bmsfil export PARAMS.json --format micropython -o params.json

The file is still a bmsfil parameter set (format "bmsfil-params/1", read by
firmware/micropython/bmsfil_ekf.py `load_params` and by
`ParameterSet.load`), cut to what the port needs (the cell, the filter
and, when the set has one, the thermal model): of the notes only
`ocv_loaded`, which the port's capacity estimator reads (not the fit's
inputs, hashes and command), no whitespace, and every number written with
the fewest digits that give back its float32 value. float32 is what the C
core computes with, so the compact file is bit for bit the parameters the
host's C core and the native `.mpy` variant run; on a single-precision
port it is also what the full file would round to, and short literals
leave MicroPython's float parser less to round. The unix port (double
precision) runs the pure-MicroPython filter on these float32 values, which
moves its estimates by about 1e-6 from the full file's.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from bmsfil.params import FORMAT_TAG, OCV_LOADED_NOTE, ParameterSet


def float32_literal(value: float) -> str:
    """The shortest decimal that reads back as float32(value) (numpy's float32 repr); integers without '.0'."""
    with np.errstate(over="ignore"):
        x = np.float32(value)
    if not np.isfinite(x):
        raise ValueError(f"{value!r} is not a finite float32 (out of range or not a number)")
    text = str(x)
    return text[:-2] if text.endswith(".0") else text


def _compact(value: object, where: str) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_compact(v, f"{where}[{k}]") for k, v in enumerate(value)) + "]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: expected a number or a list of numbers, got {type(value).__name__}")
    try:
        return float32_literal(float(value))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def params_to_micropython(params: ParameterSet) -> str:
    """The compact JSON text of ``params`` for the MicroPython port (see this module's docstring)."""
    cell = params.cell.to_json()
    sections = {
        "cell": ",".join(f"{json.dumps(k)}:{_compact(v, f'cell.{k}')}" for k, v in cell.items()),
        "filter": ",".join(f"{json.dumps(k)}:{_compact(v, f'filter.{k}')}" for k, v in asdict(params.filter).items()),
    }
    thermal = ""
    if params.thermal is not None:
        thermal = ',"thermal":{' + ",".join(f"{json.dumps(k)}:{_compact(v, f'thermal.{k}')}"
                                            for k, v in asdict(params.thermal).items()) + "}"
    power = ""
    if params.power is not None:
        power = ',"power":{' + ",".join(f"{json.dumps(k)}:{_compact(v, f'power.{k}')}"
                                        for k, v in asdict(params.power).items() if v is not None) + "}"
    # The one note the port reads: an OCV that is a loaded curve (the capacity estimator's rest anchors off).
    notes = (f',"notes":{{{json.dumps(OCV_LOADED_NOTE)}:{json.dumps(params.notes[OCV_LOADED_NOTE].split(":")[0])}}}'
             if params.ocv_loaded else "")
    return (
        f'{{"format":{json.dumps(FORMAT_TAG)},"name":{json.dumps(params.name)},'
        f'"cell":{{{sections["cell"]}}},"filter":{{{sections["filter"]}}}{thermal}{power}{notes}}}\n'
    )
