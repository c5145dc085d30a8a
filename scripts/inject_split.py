#!/usr/bin/env python3
"""Which of issue 2's injected sensor errors costs the held-out models their accuracy.

    .venv/bin/python scripts/inject_split.py [DATA_DIR]

For each drive cycle at 0 °C and above, the cell model fitted without its
cycle type (as scripts/crossval.py) is scored clean and with each injected
error alone (seed 0), then all together, and with the offset and the
temperature error of the other sign: SOC RMSE % of the filter / of the
coulomb counter fed the same data. About a minute and a half.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bmsfil.evaluate import evaluate
from bmsfil.inject import SensorErrors
from bmsfil.lg_hg2_params import held_out_cells, load_training
from bmsfil.params import ParameterSet, bundled_params

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lg_hg2"
SPECS = ("current_offset_A=0.1", "voltage_noise_V=0.004", "temp_offset_C=2",
         "current_offset_A=0.1,voltage_noise_V=0.004,temp_offset_C=2", "current_offset_A=-0.1", "temp_offset_C=-2")


def main() -> int:
    data = load_training(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DATA)
    tuning = bundled_params().filter
    print("| recording | clean | " + " | ".join(SPECS) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in SPECS) + " |")
    for cycle, cell in held_out_cells(data).items():
        params = ParameterSet(f"LG HG2 without {cycle}", cell, tuning, {})
        for r in (r for r in data.drive if r.meta.test == cycle and r.meta.ambient_temp_C >= 0):
            cells = [f"{evaluate(r, params).score.rmse * 100:.2f}"]
            for spec in SPECS:
                e = evaluate(r, params, "ocv", SensorErrors.parse(spec), seed=0)
                cells.append(f"{e.score.rmse * 100:.2f} / {e.coulomb_score.rmse * 100:.2f}")
            print(f"| {r.meta.name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
