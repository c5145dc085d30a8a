"""The MicroPython application on the emulated Cortex-M4F (QEMU mps2-an386):
agreement with the host C core, samples per second and instructions per
cell step, for both estimator variants.

    .venv/bin/python scripts/micropython_qemu_report.py [RECORDING ...] [--variant python|native ...]
                                                         [--samples N] [--drive-cycles [DIR]] [--json FILE]

Builds the firmware (firmware/micropython/port-mps2, and for `native` the
native module for armv7emsp) if needed, replays each recording (default: the
bundled US06, first --samples samples, all with --samples 0) in lock-step
over SLCAN through `MicroPythonQemuTarget` and prints, per variant and
recording: samples, largest |ΔSOC| from the host's C core (the issue's bar
is 1e-3), samples per second of the whole loop, and the instructions per
cell step the firmware counted (median, mean, max: SysTick under QEMU
-icount, exact). With --drive-cycles, every LG HG2 drive cycle of the shared
data, full length. The numbers in firmware/micropython/README.md come from
this.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.importers import import_file
from bmsfil.params import bundled_params
from bmsfil_hil.micropython_qemu import VARIANTS, MicroPythonQemuTarget
from bmsfil_hil.replay import as_carried, replay_lockstep

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lg_hg2"
CYCLES = ("US06", "HWFET", "UDDS", "LA92", "Mix", "NN")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("recordings", nargs="*", type=Path)
    ap.add_argument("--variant", action="append", choices=VARIANTS)
    ap.add_argument("--samples", type=int, default=2000, help="first N samples of each recording (0: all)")
    ap.add_argument("--drive-cycles", nargs="?", const=DATA, type=Path, default=None)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    params = bundled_params()
    recs = [(p.name, import_file(p)) for p in args.recordings]
    if args.drive_cycles is not None:
        recs += [(p.name, import_file(p)) for p in sorted(args.drive_cycles.rglob("*"))
                 if p.is_file() and any(c in p.name for c in CYCLES) and "HPPC" not in p.name]
    if not recs:
        recs = [("bundled US06", bundled_recording())]
    if args.samples:
        recs = [(name, r.slice(0, min(args.samples, len(r)))) for name, r in recs]
    rows = []
    print(f"{'variant':8} {'recording':28} {'samples':>8} {'max|dSOC|':>10} {'samples/s':>10} "
          f"{'instr/step median':>18} {'mean':>10} {'max':>10}")
    for variant in args.variant or list(VARIANTS):
        target = MicroPythonQemuTarget(params, variant=variant)
        for name, rec in recs:
            bus = target.start()
            try:
                t0 = time.perf_counter()
                result = replay_lockstep(bus, [rec], timeout_s=30.0)
                elapsed = time.perf_counter() - t0
            finally:
                target.stop()
            d = result.delivery
            host = SocEstimator(params).run(as_carried(rec)).soc
            done = result.samples_done
            dsoc = float(np.nanmax(np.abs(result.soc[:done, 0] - host[:done]))) if done else float("nan")
            ipcs = np.asarray(d.instructions_per_cell_step, dtype=float)
            row = {"variant": variant, "recording": name, "samples": len(rec), "samples_done": done,
                   "fault": d.fault, "target_faults": list(d.target_faults), "max_abs_dsoc": dsoc,
                   "samples_per_s": done / elapsed if elapsed > 0 else None,
                   "instructions_per_cell_step": {
                       "median": float(np.median(ipcs)) if len(ipcs) else None,
                       "mean": float(ipcs.mean()) if len(ipcs) else None,
                       "max": float(ipcs.max()) if len(ipcs) else None}}
            rows.append(row)
            i = row["instructions_per_cell_step"]
            print(f"{variant:8} {name[:28]:28} {done:>8} {dsoc:>10.2e} {row['samples_per_s']:>10.0f} "
                  f"{i['median'] or 0:>18.0f} {i['mean'] or 0:>10.0f} {i['max'] or 0:>10.0f}"
                  + (f"  FAULT: {d.fault}" if d.fault else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    bad = [r for r in rows if r["fault"] or r["samples_done"] < r["samples"] or not r["max_abs_dsoc"] <= 1e-3]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
