#!/usr/bin/env python3
"""How the LG HG2 model does on drive cycles it was not fitted on.

    .venv/bin/python scripts/crossval.py [DATA_DIR]

For each drive-cycle type (US06, HWFET, UDDS), fit the cell model on the
other types and the pulse test only (same OCV, same filter tuning as the
bundled set) and score the held-out cycles: an estimate of what to expect
on unseen recordings.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bmsfil.evaluate import evaluate
from bmsfil.lg_hg2_params import held_out_cells, load_training
from bmsfil.params import ParameterSet, bundled_params

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lg_hg2"


def main() -> int:
    data = load_training(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA)
    tuning = bundled_params().filter
    print("| held out | recording | T / °C | RMSE % | max after 10 min % | in ±3σ % | from 0.7: converged after s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for cycle, cell in held_out_cells(data).items():
        params = ParameterSet(f"LG HG2 without {cycle}", cell, tuning, {})
        for r in (r for r in data.drive if r.meta.test == cycle):
            a = evaluate(r, params).score
            b = evaluate(r, params, 0.7).score
            print(f"| {cycle} | {r.meta.name} | {r.meta.ambient_temp_C:g} | {a.rmse * 100:.2f} | "
                  f"{a.max_error_after_settle * 100:.2f} | {a.within_3sigma * 100:.1f} | {b.convergence_time_s:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
