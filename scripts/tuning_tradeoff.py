#!/usr/bin/env python3
"""How the filter's tuning trades clean accuracy on held-out models against
robustness to BMS sensor errors (docs/crossval.md, "The trade-off").

    .venv/bin/python scripts/tuning_tradeoff.py WEIGHT [ITERATIONS] [DATA_DIR]

Runs `tuning.tune_filter` from the bundled tuning, as
`python -m bmsfil.lg_hg2_params` does (each drive cycle scored with the cell
model fitted without its cycle type), with the cost's clean-RMSE term made
WEIGHT times steeper above 95 % of the bar (1 % at 0 °C and above, 2 %
below), and prints per cycle the held-out RMSE, largest error after 10
minutes and convergence from SOC 0.7 before and after, and the tuning found.
The held-out models are cached in /tmp/bmsfil-heldout.pkl (a minute to fit).
Score the result on the bundled models with `bmsfil eval` (--inject for the
sensor errors) after putting it in a parameter set.
"""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import replace
from pathlib import Path

from bmsfil import tuning
from bmsfil.evaluate import evaluate
from bmsfil.lg_hg2_params import held_out_cells, load_training
from bmsfil.params import ParameterSet, bundled_params
from bmsfil.recording import Recording

CACHE = Path("/tmp/bmsfil-heldout.pkl")


def table(recs: list[Recording], cells: list, params: ParameterSet) -> None:
    for r, c in zip(recs, cells):
        p = replace(params, cell=c)
        a, b = evaluate(r, p, "ocv").score, evaluate(r, p, 0.7).score
        print(f"  {r.meta.name:20s} RMSE {a.rmse * 100:5.2f} %  max after 10 min {a.max_error_after_settle * 100:5.2f} %"
              f"  from 0.7 converged {b.convergence_time_s:7.0f} s")


def main(argv: list[str]) -> int:
    weight = float(argv[1])
    iterations = int(argv[2]) if len(argv) > 2 else 200
    data_dir = Path(argv[3]) if len(argv) > 3 else Path(__file__).resolve().parents[2] / "shared" / "data" / "lg_hg2"
    if CACHE.exists():
        data, held = pickle.loads(CACHE.read_bytes())
    else:
        data = load_training(data_dir)
        held = held_out_cells(data)
        CACHE.write_bytes(pickle.dumps((data, held)))
    recs = data.drive
    cells = [held[r.meta.test] for r in recs]
    params = bundled_params()
    base_cost = tuning.recording_cost

    def steeper(rec: Recording, p: ParameterSet, targets: tuning.Targets) -> float:
        cold = rec.meta.ambient_temp_C is not None and rec.meta.ambient_temp_C < tuning.COLD_C
        rmse = evaluate(rec, p, "ocv").score.rmse
        return base_cost(rec, p, targets) + max(0.0, rmse / (0.019 if cold else 0.0095) - 1.0) * weight

    print("bundled tuning, held-out models:")
    table(recs, cells, params)
    tuning.recording_cost = steeper
    try:
        best, _ = tuning.tune_filter(params, recs, iterations=iterations, cells=cells)
    finally:
        tuning.recording_cost = base_cost
    targets = tuning.Targets()
    print(f"tuned with weight {weight}, held-out models (the tuner's own cost: bundled "
          f"{tuning.total_cost(recs, params, targets, cells):.3f}, found {tuning.total_cost(recs, best, targets, cells):.3f}):")
    table(recs, cells, best)
    print(json.dumps({k: getattr(best.filter, k) for k in tuning.SEARCH_SPACE}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
