"""Can a frozen temperature reading be told from a live one with the
two-state thermal model and no measured ambient? A study, not a detector:
prints the markdown tables quoted in docs/plausibility.md ("Stuck
temperature").

    .venv/bin/python scripts/stuck_temp_study.py [--data ../shared/data]

The candidate test: a run is a sequence of surface readings within TOL_K of
the run's first; from the run's start the thermal model alone (the float64
reference of thermal.h's filter supplies the state at the start and the
ambient it has learned, shift included) is fed the run's heat, and D is how
far it says the surface moved. A live sensor would have followed D, so a
large |D| during a run would mean a frozen sensor. Two questions, on every
LG HG2 file with a temperature channel (bundled `lg-hg2` set):

- clean: the largest |D| inside a run of a live sensor (what a threshold
  must stay above to raise no false flag);
- frozen: the temperature channel held at its value from the moment a 2C
  discharge (a median heat of 0.8-3.2 W) starts, the filter fed the frozen reading as
  a BMS would: the largest |D| during the discharge.

About a minute on this machine.
"""
from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

import numpy as np

import bmsfil.thermal as th
from bmsfil.importers import import_file
from bmsfil.params import bundled_params
from bmsfil.recording import Recording
from bmsfil.thermal import CoreTempEstimator, ReferenceThermalFilter, ThermalTuning, steady_state

ROOT = Path(__file__).resolve().parents[1]
TOL_K = 0.15  # 1.5 steps of the LG HG2 logger's 0.105 K resolution


class _Discretise:
    """th.discretise for one interval, cached by the interval (the reference
    filter asks for e^{A dt} every step; the recordings hold a few intervals)."""

    def __init__(self) -> None:
        self.plain = th.discretise
        self.cache: dict[float, np.ndarray] = {}

    def __call__(self, tp: th.ThermalParams, dt_s: float | np.ndarray) -> np.ndarray:
        if np.ndim(dt_s) != 0:
            return self.plain(tp, dt_s)
        key = round(float(dt_s), 4)
        if key not in self.cache:
            self.cache[key] = self.plain(tp, key)
        return self.cache[key]


def model_moves(rec: Recording, temp_C: np.ndarray, params) -> np.ndarray:
    """D at each sample: the model's surface move since the current run began
    (0 outside runs)."""
    tp, tuning = params.thermal, ThermalTuning()
    heat = CoreTempEstimator(params).run(_with_temp(rec, temp_C)).heat_W
    good = np.flatnonzero(np.isfinite(temp_C))
    start = float(temp_C[good[0]])
    filt = ReferenceThermalFilter(tp, tuning, start, start)
    moves = np.zeros(len(rec))
    anchor, model = start, np.array([start, start])
    for k in range(len(rec)):
        dt = float(rec.dt_s[k])
        filt.step(dt, float(heat[k]), float(temp_C[k]), start)
        if not (np.isfinite(dt) and 0 < dt <= tuning.dt_max_s):
            anchor, model = float(temp_C[k]), filt.x.copy()
            continue
        ss = steady_state(tp, filt.heat, filt.ambient + filt.ambient_shift)
        model = ss + th.discretise(tp, dt) @ (model - ss)
        reading = float(temp_C[k])
        if not np.isfinite(reading):
            continue
        if abs(reading - anchor) > TOL_K:
            anchor, model = reading, np.array([filt.x[0] + reading - filt.x[1], reading])
        else:
            moves[k] = model[1] - anchor
    return moves


def _with_temp(rec: Recording, temp_C: np.ndarray) -> Recording:
    out = copy.copy(rec)
    object.__setattr__(out, "temp_C", temp_C)
    return out


def _files(data: Path) -> list[Path]:
    lg = data / "lg_hg2"
    return sorted((lg / "1_raw").glob("*/*.csv")) + sorted((lg / "2_formatted").glob("*/*.csv"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("BMSFIL_DATA", ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
    th.discretise = _Discretise()  # type: ignore[assignment]
    params = bundled_params()
    print("| recording | interval s | largest \\|D\\| in a run of a live sensor K |")
    print("| --- | ---: | ---: |")
    for path in _files(args.data):
        rec = import_file(path)
        d = model_moves(rec, rec.temp_C, params)
        print(f"| {rec.meta.name} | {float(np.median(rec.dt_s)):g} | {float(np.max(np.abs(d))):.2f} |", flush=True)
    print()
    print("| 2C discharge, reading frozen at its start | discharge s | real rise K | largest \\|D\\| K |")
    print("| --- | ---: | ---: | ---: |")
    for path in sorted((args.data / "lg_hg2" / "1_raw").glob("*/*_Dis_2C.csv")):
        rec = import_file(path)
        on = np.flatnonzero(rec.current_A < -1.0)
        frozen = rec.temp_C.copy()
        frozen[on[0]:] = frozen[on[0]]
        d = model_moves(rec, frozen, params)
        print(f"| {rec.meta.name} | {rec.time_s[on[-1]] - rec.time_s[on[0]]:.0f} | "
              f"{rec.temp_C[on[-1]] - rec.temp_C[on[0]]:.1f} | {float(np.max(np.abs(d[on[0]:on[-1]]))):.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
