"""Starts away from rest: the SOC filter (C core) started at a sample in the middle of each LG HG2 drive cycle.

    .venv/bin/python scripts/midstart_report.py [--per-cycle N] [--seed S]

The bars start each cycle from its first sample, a cell rested for hours. A
BMS that wakes up, or a log cut in the middle of a drive, starts from a
sample whose cell was driven a moment ago: its voltage holds polarisation
and hysteresis that a start from that voltage (`bf_soc_ekf_start`, below
C/4: a rested start, sigma from p0_soc_ocv) takes for OCV. Per cycle, N
samples drawn (seeded) among those at least 10 minutes into the cycle and
40 minutes before its end whose |current| is below C/4; from each, the
filter runs 30 minutes. Prints the error at the start and after 30 minutes
and the share of those 30 minutes inside ±3σ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from bmsfil.core import SocEstimator
from bmsfil.importers import import_file
from bmsfil.params import bundled_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shared_data import lg_drive_cycles  # noqa: E402

WINDOW_S = 1800.0
LOADED_C_RATE = 0.25


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-cycle", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    params = bundled_params()
    limit = LOADED_C_RATE * float(params.cell.capacity_Ah[0])
    rows, first, late, inside = [], [], [], []
    for path in lg_drive_cycles():
        rec = import_file(path)
        ref, t, i = rec.reference_soc(), rec.time_s, rec.current_A
        pool = np.flatnonzero((np.abs(i) < limit) & (t > 600.0) & (t < t[-1] - WINDOW_S - 600.0))
        picks = np.random.default_rng(args.seed).choice(pool, size=min(args.per_cycle, pool.size), replace=False)
        for k in sorted(int(p) for p in picks):
            end = int(np.searchsorted(t, t[k] + WINDOW_S))
            est = SocEstimator(params)
            est.start(float(i[k]), float(rec.voltage_V[k]), float(rec.temp_C[k]))
            tr = est.run_arrays(rec.dt_s[k + 1:end + 1], i[k + 1:end + 1], rec.voltage_V[k + 1:end + 1],
                                rec.temp_C[k + 1:end + 1])
            err = np.abs(tr.soc - ref[k + 1:end + 1])
            first.append(err[0])
            late.append(err[-1])
            inside.append(float(np.mean(err <= 3.0 * tr.soc_sigma)))
            rows.append(f"| {rec.meta.name} | {t[k]:.0f} | {i[k]:+.2f} | {err[0] * 100:.1f} | "
                        f"{tr.soc_sigma[0] * 100:.1f} | {err[-1] * 100:.1f} | {inside[-1] * 100:.0f} |")
    print("| cycle | start s | current A | error at start pts | sigma pts | error after 30 min pts | in ±3σ % |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    print(f"\n{len(first)} starts: error at the start median {np.median(first) * 100:.1f}, largest "
          f"{np.max(first) * 100:.1f} points; after 30 minutes median {np.median(late) * 100:.1f}, largest "
          f"{np.max(late) * 100:.1f}; inside ±3σ {np.mean(inside) * 100:.0f} % of the samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
