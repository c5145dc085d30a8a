#!/usr/bin/env python3
"""How the LG HG2 model does on drive cycles it was not fitted on.

    .venv/bin/python scripts/crossval.py [DATA_DIR]

For each drive-cycle type (US06, HWFET, UDDS), fit the cell model on the
other types only (same OCV, same filter tuning as the bundled set) and score
the held-out cycles: an estimate of what to expect on unseen recordings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bmsfil.ecm_fit import fit_dynamic
from bmsfil.evaluate import evaluate
from bmsfil.importers import import_file
from bmsfil.lg_hg2_params import HYST_GAMMA, RN_SAT_PER_A, full_anchored, is_low_rate, starts_full
from bmsfil.ocv import ocv_from_low_rate
from bmsfil.params import CellParams, ParameterSet, bundled_params

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lg_hg2"


def main() -> int:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA
    recs = [import_file(p) for p in sorted(data.rglob("*")) if p.is_file() and p.suffix in (".csv", ".gz")]
    low_rate = {r.meta.ambient_temp_C: r for r in recs if is_low_rate(r)}
    temps = np.array(sorted(low_rate))
    dynamic = [r for r in recs if starts_full(r) and not is_low_rate(r) and "HPPC" not in r.meta.name]
    curves = [ocv_from_low_rate(low_rate[t]) for t in temps]
    ocv = np.array([full_anchored(c, [r for r in dynamic if r.meta.ambient_temp_C == t]) for c, t in zip(curves, temps)])
    capacity = np.array([c.capacity_Ah for c in curves])
    bundled = bundled_params()
    tuning = bundled.filter
    print("| held out | recording | T / °C | RMSE % | max after 10 min % | in ±3σ % | from 0.7: converged after s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for cycle in ("US06", "HWFET", "UDDS"):
        train = [r for r in dynamic if r.meta.test != cycle]
        test = [r for r in dynamic if r.meta.test == cycle]
        fit = fit_dynamic(train, temps, ocv, capacity, gamma=HYST_GAMMA,
                          overpotential_weight=tuning.r_overpotential_rel2_s / tuning.r_voltage_V2_s,
                          rn_sat_per_A=RN_SAT_PER_A)
        cell = CellParams(
            temp_C=temps, ocv_V=ocv, r0_ohm=fit.r0_ohm, r1_ohm=fit.r1_ohm, tau1_s=fit.tau1_s,
            r2_ohm=fit.r2_ohm, tau2_s=fit.tau2_s, capacity_Ah=capacity, hyst_m0_V=fit.hyst_m0_V,
            hyst_m_V=fit.hyst_m_V, hyst_gamma=np.full(len(temps), HYST_GAMMA), eta_charge=1.0,
            v_min_V=bundled.cell.v_min_V, v_max_V=bundled.cell.v_max_V, i_max_A=bundled.cell.i_max_A,
            nominal_capacity_Ah=bundled.cell.nominal_capacity_Ah, rn_ohm=fit.rn_ohm, rn_sat_per_A=RN_SAT_PER_A,
        )
        params = ParameterSet(f"LG HG2 without {cycle}", cell, tuning, {})
        for r in test:
            a = evaluate(r, params).score
            b = evaluate(r, params, 0.7).score
            print(f"| {cycle} | {r.meta.name} | {r.meta.ambient_temp_C:g} | {a.rmse * 100:.2f} | "
                  f"{a.max_error_after_settle * 100:.2f} | {a.within_3sigma * 100:.1f} | {b.convergence_time_s:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
