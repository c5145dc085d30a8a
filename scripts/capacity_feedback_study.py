"""Would feeding the learned capacity back into the SOC filter make an aged
cell's SOC better? Each NASA PCoE life (B0005, B0007) discharge by
discharge, the SOC filter restarted at each discharge from the rested full
cell's OCV (as `bmsfil eval` runs a life), with the capacity row of the
bundled `nasa-pcoe-18650` set scaled three ways: not at all (what every
target does), to the capacity the health estimator had learned by the end of
the discharge before (what a feedback at each restart would use), and to the
capacity measured in the discharge before (the best such a feedback could
know). Scored against each discharge's own SOC, 1 - (charge out so far) /
(that discharge's measured capacity), over the samples under load (|i| above
C/10 of the rated capacity), after the first 5 discharges. Quoted in
docs/health.md ("Not yet"); about a second.

    .venv/bin/python scripts/capacity_feedback_study.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from bmsfil.core import SocEstimator
from bmsfil.evaluate import _segment, segment_bounds
from bmsfil.health import HealthEstimator
from bmsfil.importers import import_file
from bmsfil.params import ParameterSet, bundled_params

VARIANTS = ("the set's capacity", "learned by the discharge before", "measured in the discharge before")


def scaled(params: ParameterSet, capacity_Ah: float | None) -> ParameterSet:
    """The set with its capacity row scaled so that its 24 °C capacity is `capacity_Ah`."""
    if capacity_Ah is None:
        return params
    c = params.cell
    factor = capacity_Ah / float(np.interp(24.0, c.temp_C, c.capacity_Ah))
    return replace(params, cell=replace(c, capacity_Ah=c.capacity_Ah * factor))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    params = bundled_params("nasa-pcoe-18650")
    rated = params.cell.nominal_capacity_Ah
    print("| life | SOC filter's capacity | discharges | RMSE under load % (mean / worst discharge) "
          "| error half-way % (mean) | error at the end of the load % (mean) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name in ("B0005", "B0007"):
        rec = import_file(args.data / "nasa_pcoe" / f"{name}_discharge_timeseries.csv")
        learned = HealthEstimator(params).run(rec).capacity_Ah
        scores: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
        before: dict[str, float | None] = {v: None for v in VARIANTS}
        for k, (a, b) in enumerate(segment_bounds(rec)):
            seg = _segment(rec, a, b)
            i = np.nan_to_num(seg.current_A)
            out_Ah = np.concatenate([[0.0], np.cumsum(-0.5 * (i[1:] + i[:-1]) * np.diff(seg.time_s))]) / 3600.0
            measured = float(out_Ah[-1])
            load = np.flatnonzero(np.abs(i) > 0.1 * rated)
            if k >= 5 and len(load) > 2:
                reference = 1.0 - out_Ah / measured
                for variant in VARIANTS:
                    soc = SocEstimator(scaled(params, before[variant])).run(seg, "ocv").soc
                    err = (soc - reference)[load]
                    scores[variant].append((float(np.sqrt(np.mean(err ** 2))), float(err[len(err) // 2]),
                                            float(err[-1])))
            before = {VARIANTS[0]: None, VARIANTS[1]: float(learned[b - 1]), VARIANTS[2]: measured}
        for variant in VARIANTS:
            s = np.array(scores[variant]) * 100.0
            print(f"| {name} | {variant} | {len(s)} | {s[:, 0].mean():.2f} / {s[:, 0].max():.2f} "
                  f"| {s[:, 1].mean():+.2f} | {s[:, 2].mean():+.2f} |")


if __name__ == "__main__":
    main()
