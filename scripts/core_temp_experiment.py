#!/usr/bin/env python3
"""Would the SOC filter be more accurate on unseen cycles if its cell model
were looked up at the core temperature instead of the surface reading?
(docs/core_temp_experiment.md)

    .venv/bin/python scripts/core_temp_experiment.py [--iterations N] [-o docs/core_temp_experiment.md]

The cross-validation of scripts/crossval.py (per drive-cycle type, the cell
model fitted without it, scored on it), twice: as bmsfil does today, every
table looked up at the measured surface temperature; and with every
recording's temperature replaced by the core temperature the bundled
two-state thermal model (docs/thermal.md) estimates from that surface
reading and the heat i (v - OCV) (bmsfil.thermal.CoreTempEstimator), for
the fit and for the filter alike. First with the bundled filter tuning (tuned
on the surface models), then with the tuning searched again on the core
models as lg_hg2_params tunes the bundled set (each drive cycle scored with
the model fitted without its type). Issue 2's bars for each: RMSE from the
first sample's OCV, convergence from SOC 0.7, and the injected sensor errors
at 0 degC and above.

An experiment, not the estimator: the core temperature here is computed
offline, with the bundled set's own model and SOC for the heat. That model
was fitted on every drive cycle, the held-out ones included: a leak, but a
small one (a held-out model's heat moves the core temperature by at most
0.14 K, 0.04-0.05 K at 0 degC; the thermal model itself was fitted on 25 degC
pulse and capacity tests, none of the drive cycles). The third table's
tuning is searched on the same 13 cycles it scores (each with its held-out
model, as the bundled tuning): it is not cross-validated in its settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from bmsfil.evaluate import evaluate
from bmsfil.lg_hg2_params import TrainingData, held_out_cells, load_training
from bmsfil.params import CellParams, FilterTuning, ParameterSet, bundled_params
from bmsfil.recording import Recording
from bmsfil.thermal import CoreTempEstimator
from bmsfil.tuning import TRAINING_ERRORS, tune_filter

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "lg_hg2"


def at_core_temperature(rec: Recording, params: ParameterSet) -> tuple[Recording, float]:
    """The recording with its temperature replaced by the estimated core
    temperature; and the largest core-minus-surface difference."""
    trace = CoreTempEstimator(params).run(rec)
    core = np.where(np.isfinite(trace.core_C), trace.core_C, rec.temp_C)
    return dataclasses.replace(rec, temp_C=core), float(np.nanmax(core - rec.temp_C))


def scores(data: TrainingData, cells: dict[str, CellParams], tuning: FilterTuning) -> list[dict[str, object]]:
    out = []
    for cycle, cell in cells.items():
        params = ParameterSet(f"without {cycle}", cell, tuning, {})
        for rec in (r for r in data.drive if r.meta.test == cycle):
            warm = rec.meta.ambient_temp_C is not None and rec.meta.ambient_temp_C >= 0
            nominal = evaluate(rec, params).score
            started_off = evaluate(rec, params, 0.7).score
            row: dict[str, object] = {"name": rec.meta.name, "T": rec.meta.ambient_temp_C, "rmse": nominal.rmse,
                                      "late": nominal.max_error_after_settle, "in3": nominal.within_3sigma,
                                      "conv": started_off.convergence_time_s}
            if warm:
                injected = evaluate(rec, params, "ocv", TRAINING_ERRORS, seed=1)
                row["inj_rmse"] = injected.score.rmse
                row["inj_ratio"] = injected.coulomb_score.rmse / max(injected.score.rmse, 1e-9)
            out.append(row)
    return out


def meets(row: dict[str, object]) -> bool:
    """Issue 2's bars on one cycle."""
    cold = row["T"] is not None and float(row["T"]) < 0  # type: ignore[arg-type]
    ok = (float(row["rmse"]) <= (0.02 if cold else 0.01) and float(row["late"]) <= 0.03  # type: ignore[arg-type]
          and float(row["in3"]) >= 0.95 and float(row["conv"]) <= (1800 if cold else 600))  # type: ignore[arg-type]
    if "inj_rmse" in row:
        ok = ok and float(row["inj_rmse"]) <= 0.015 and float(row["inj_ratio"]) >= 3.0  # type: ignore[arg-type]
    return ok


def table(title: str, rows: list[dict[str, object]]) -> list[str]:
    lines = [f"### {title}", "", "| recording | T °C | RMSE % | max after 10 min % | in ±3σ % | from 0.7: converged s "
             "| injected RMSE % | injected: x better than CC | bars |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | --- |"]
    for r in rows:
        inj = (f"{float(r['inj_rmse']) * 100:.2f} | {float(r['inj_ratio']):.1f}" if "inj_rmse" in r  # type: ignore[arg-type]
               else "— | —")
        lines.append(f"| {r['name']} | {float(r['T']):g} | {float(r['rmse']) * 100:.2f} | "  # type: ignore[arg-type]
                     f"{float(r['late']) * 100:.2f} | {float(r['in3']) * 100:.1f} | {float(r['conv']):.0f} | "  # type: ignore[arg-type]
                     f"{inj} | {'yes' if meets(r) else 'no'} |")
    warm = [float(r["rmse"]) for r in rows if float(r["T"]) >= 0]  # type: ignore[arg-type]
    lines += ["", f"Meets every bar: {sum(meets(r) for r in rows)} of {len(rows)}; RMSE at 0 °C and above: largest "
              f"{max(warm) * 100:.2f} %, mean {np.mean(warm) * 100:.2f} %; mean over all "
              f"{np.mean([float(r['rmse']) for r in rows]) * 100:.2f} %.", ""]  # type: ignore[arg-type]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, nargs="?", default=DATA)
    ap.add_argument("--iterations", type=int, default=200, help="tuning steps on the core models")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "core_temp_experiment.md")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    bundled = bundled_params()
    data = load_training(args.data)
    rises = {}
    drive = []
    for rec in data.drive:
        cored, rise = at_core_temperature(rec, bundled)
        drive.append(cored)
        rises[rec.meta.name] = rise
    core_data = dataclasses.replace(data, drive=drive, pulse=[at_core_temperature(r, bundled)[0] for r in data.pulse])
    print("core temperatures done", file=sys.stderr, flush=True)
    surface_cells, core_cells = held_out_cells(data), held_out_cells(core_data)
    surface = scores(data, surface_cells, bundled.filter)
    core = scores(core_data, core_cells, bundled.filter)
    print("scored with the bundled tuning", file=sys.stderr, flush=True)
    start = ParameterSet("core", core_cells[core_data.drive[0].meta.test], bundled.filter, {})
    retuned, cost = tune_filter(start, core_data.drive, iterations=args.iterations,
                                cells=[core_cells[r.meta.test] for r in core_data.drive],
                                progress=lambda i, c: print(f"tuning {i + 1}/{args.iterations} cost {c:.4f}",
                                                            file=sys.stderr, flush=True) if i % 20 == 19 else None)
    core_tuned = scores(core_data, core_cells, retuned.filter)
    changed = {f.name: (getattr(bundled.filter, f.name), getattr(retuned.filter, f.name))
               for f in dataclasses.fields(FilterTuning) if getattr(bundled.filter, f.name) != getattr(retuned.filter, f.name)}
    lines = [
        "# The cell model at the core temperature: a cross-validation experiment",
        "",
        f"Generated by `scripts/core_temp_experiment.py` on {date.today().isoformat()} ({args.iterations} tuning "
        f"iterations, {time.perf_counter() - t0:.0f} s). What it does is in the script's docstring: per drive-cycle "
        "type the cell model is fitted without it and scored on it (as docs/crossval.md), once at the surface "
        "temperature as bmsfil does today and once at the core temperature the bundled thermal model estimates, "
        "for the fit and the filter alike.",
        "",
        "Largest core-minus-surface difference the thermal model estimates per cycle: "
        + ", ".join(f"{k} {v:.1f} K" for k, v in rises.items()) + ".",
        "",
        *table("Surface temperature (today), bundled tuning", surface),
        *table("Core temperature, bundled tuning", core),
        *table("Core temperature, tuning searched again on the core models", core_tuned),
        "Tuning changed: " + ", ".join(f"{k} {a:.3g} -> {b:.3g}" for k, (a, b) in changed.items())
        + f" (cost {cost:.4f}).",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
