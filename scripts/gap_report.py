"""Gaps under load: every LG HG2 drive cycle with GAP seconds of samples cut
out at 20, 40 and 60 % of its length, scored as `bmsfil eval` scores it, with
the bundled filter and with its sampled-current variance switched off
(`hold_sigma_c_rate` 0).

    .venv/bin/python scripts/gap_report.py [--gap 300]

Per cut: the error and sigma at the first sample after the gap, the share of
samples inside +-3 sigma and the RMSE over the whole recording. A few
minutes (13 cycles x 3 cuts x 2 tunings).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shared_data import lg_drive_cycles  # noqa: E402

from bmsfil.evaluate import evaluate  # noqa: E402
from bmsfil.importers import import_file  # noqa: E402
from bmsfil.params import ParameterSet, bundled_params  # noqa: E402
from bmsfil.recording import Recording  # noqa: E402

CUTS = (0.2, 0.4, 0.6)


def cut(rec: Recording, start_s: float, gap_s: float) -> Recording:
    """rec without its samples strictly inside (start_s, start_s + gap_s)."""
    keep = ~((rec.time_s > start_s) & (rec.time_s < start_s + gap_s))
    return Recording(time_s=rec.time_s[keep], current_A=rec.current_A[keep], voltage_V=rec.voltage_V[keep],
                     temp_C=rec.temp_C[keep], meta=rec.meta, ah=None if rec.ah is None else rec.ah[keep])


def scores(rec: Recording, params: ParameterSet, start_s: float, gap_s: float) -> tuple[float, float, float, float]:
    """Error and sigma after the gap, share inside 3 sigma, RMSE."""
    g = cut(rec, start_s, gap_s)
    ev = evaluate(g, params)
    k = int(np.searchsorted(g.time_s, start_s + gap_s))
    return (abs(float(ev.trace.soc[k] - ev.reference[k])), float(ev.trace.soc_sigma[k]), ev.score.within_3sigma,
            ev.score.rmse)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gap", type=float, default=300.0, help="seconds cut out (default 300)")
    args = ap.parse_args()
    bundled = bundled_params()
    off = replace(bundled, filter=replace(bundled.filter, hold_sigma_c_rate=0.0))
    k = bundled.filter.hold_sigma_c_rate
    print(f"| recording | gap at | without: error / σ after % | ±3σ % | RMSE % "
          f"| hold_sigma_c_rate {k:g}: error / σ after % | ±3σ % | RMSE % |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    cycles = lg_drive_cycles()
    if not cycles:
        raise SystemExit("gap_report: no LG HG2 drive cycle found (the shared data, or BMSFIL_DATA)")
    covered = {"without": 0, "with": 0}
    n = 0
    for path in cycles:
        rec = import_file(path)
        for frac in CUTS:
            start = frac * float(rec.time_s[-1])
            row = [rec.meta.name, f"{frac * 100:.0f} %"]
            for label, params in (("without", off), ("with", bundled)):
                err, sig, inside, rmse = scores(rec, params, start, args.gap)
                covered[label] += inside >= 0.95
                row += [f"{err * 100:.2f} / {sig * 100:.2f}", f"{inside * 100:.1f}", f"{rmse * 100:.2f}"]
            n += 1
            print("| " + " | ".join(row) + " |", flush=True)
    print(f"\n{args.gap:g} s gaps with at least 95 % of samples inside ±3σ: without {covered['without']}/{n}, "
          f"with {covered['with']}/{n}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
