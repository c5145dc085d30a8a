"""Fuzz target (atheris, libFuzzer's engine for Python): the parameter-file
loader, `ParameterSet.from_bytes` (what `ParameterSet.load` and every
`--params FILE` run), with any bytes.

What must hold: the loader either refuses the input with a ParamsError (the
message that names the file, line or field) or returns a set that the C core
takes as it is: the cell and tuning pass bf_cell_params_check and
bf_soc_ekf_tuning_check (SocEstimator starts from it), a thermal model
bf_thermal_params_check, the power limits bf_sop_limits_cell_check at every
horizon; and a few steps of a rested and a loaded cell, one after a gap,
keep SOC in [0, 1] with a finite, positive sigma.
Any other exception, or a set the core refuses (CoreError), is a finding.

    make -C fuzz run SECONDS=15          (with the C targets)
    .venv/bin/python fuzz/fuzz_params.py -max_total_time=60 fuzz/build/work/params fuzz/corpus/params
"""

from __future__ import annotations

import math
import sys

import atheris

with atheris.instrument_imports():
    from bmsfil._core import lib
    from bmsfil.core import SocEstimator
    from bmsfil.params import ParameterSet, ParamsError
    from bmsfil.power import SopLimits
    from bmsfil.thermal import pack_thermal


def check(data: bytes) -> None:
    try:
        params = ParameterSet.from_bytes(data, "fuzz.json")
    except ParamsError:
        return
    # A CoreError from here on: the loader let through what the core refuses.
    est = SocEstimator(params)
    if params.thermal is not None:
        pack_thermal(params.thermal)
    for horizon_s in (2.0, 10.0, 30.0):
        status = lib.bf_sop_limits_cell_check(SopLimits.for_cell(params, horizon_s).packed(), est._cell)
        if status != lib.BF_OK:
            raise AssertionError(f"power limits the loader took, refused for the cell by the core: status {status}")
    cell = params.cell
    v_mid = 0.5 * (cell.v_min_V + cell.v_max_V)
    est.init_ocv(v_mid, 25.0)
    for dt, current, voltage in ((1.0, 0.0, v_mid), (1.0, -0.5 * cell.i_max_A, cell.v_min_V), (1e9, 0.0, v_mid)):
        r = est.step(dt, current, voltage, 25.0)
        if not (0.0 <= r.soc <= 1.0 and math.isfinite(r.soc_sigma) and r.soc_sigma > 0.0):
            raise AssertionError(f"step ({dt}, {current}, {voltage}): SOC {r.soc}, sigma {r.soc_sigma}")


def main() -> None:
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
