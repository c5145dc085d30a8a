"""Does noise on the temperature reading raise a plausibility flag on a live
cell? White noise of each given size (1 sigma, K, on every sample, seed 0)
added to the temperature of every LG HG2 drive cycle, the C core's EKF and
monitor run over it (`run_monitored`, bundled `lg-hg2` set); prints, per
size, the cycles that raised any flag and which. Quoted in
docs/plausibility.md ("Stuck voltage"); about a minute.

    .venv/bin/python scripts/temp_noise_study.py [--data ../shared/data] [--sigma 0.1 0.3 1]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from bmsfil.importers import import_file
from bmsfil.params import bundled_params
from bmsfil.plausibility import run_monitored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.5, 1.0, 2.0])
    args = ap.parse_args()
    # The drive cycles as the plausibility report takes them (tests/shared_data.lg_drive_cycles).
    files = sorted(p for p in (args.data / "lg_hg2").rglob("*") if p.is_file() and "HPPC" not in p.name
                   and any(kind in p.name for kind in ("US06", "HWFET", "UDDS", "LA92", "Mix", "NN")))
    recs = [import_file(p) for p in files]
    params = bundled_params()
    print("| temperature noise, K per sample | cycles with a flag (of %d) | which |" % len(recs))
    print("| ---: | ---: | --- |")
    for sigma in args.sigma:
        rng = np.random.default_rng(0)
        flagged = []
        for rec in recs:
            noisy = replace(rec, temp_C=rec.temp_C + rng.normal(0.0, sigma, len(rec)))
            _, trace = run_monitored(noisy, params)
            names = sorted({event.flag for event in trace.events()})
            if names:
                flagged.append(f"{rec.meta.name}: {', '.join(names)}")
        print(f"| {sigma:g} | {len(flagged)} | {'; '.join(flagged) or '-'} |")


if __name__ == "__main__":
    main()
