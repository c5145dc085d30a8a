"""Time `bmsfil eval` on long recordings and `bmsfil hil run` on large packs, to see that both
grow linearly (docs/fleet.md, "Scale").

    .venv/bin/python scripts/scale_check.py [--samples 1000000,5000000] [--cells 256,1024] [--work DIR]

A long recording is the bundled US06 repeated end to end, an hour not recorded between the
repetitions (a charge), saved as .npz; each size is run with `bmsfil eval --no-plot`. A pack is
`bmsfil hil run --target host --cells N --samples 300`. Wall time and peak memory per run, from
this one run (the machine's load moves them: compare the sizes' ratio).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bmsfil.bundled import bundled_recording
from bmsfil.recording import Recording

BMSFIL = Path(sys.executable).with_name("bmsfil")


def long_recording(samples: int, path: Path) -> Path:
    """The bundled US06 repeated to `samples`, an hour between repetitions, its counter restarting."""
    b = bundled_recording()
    reps = -(-samples // len(b))
    span = b.time_s[-1] + 3600.0
    t = (b.time_s[None, :] + span * np.arange(reps)[:, None]).ravel()[:samples]
    tiled = [np.tile(a, reps)[:samples] for a in (b.current_A, b.voltage_V, b.temp_C, b.ah)]
    Recording(t, *tiled[:3], dataclasses.replace(b.meta, name=path.stem), tiled[3]).save(path)
    return path


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and the command's peak memory in MB."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"{' '.join(argv)}: failed ({status})")
    return time.perf_counter() - start, usage.ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", default="1000000,5000000")
    ap.add_argument("--cells", default="256,1024")
    ap.add_argument("--work", type=Path, default=None, help="folder for the recordings and outputs (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        print("| run | wall s | peak MB |\n| --- | ---: | ---: |")
        for n in (int(x) for x in args.samples.split(",")):
            rec = long_recording(n, work / f"us06_{n}.npz")
            s, mb = timed([str(BMSFIL), "eval", str(rec), "--no-plot", "--out-dir", str(work / f"eval_{n}")])
            print(f"| eval, {n:,} samples | {s:.1f} | {mb:.0f} |", flush=True)
        for cells in (int(x) for x in args.cells.split(",")):
            s, mb = timed([str(BMSFIL), "hil", "run", "--target", "host", "--cells", str(cells), "--samples", "300",
                           "--no-plot", "--out-dir", str(work / f"hil_{cells}")])
            print(f"| hil run, {cells} cells x 300 samples | {s:.1f} | {mb:.0f} |", flush=True)


if __name__ == "__main__":
    main()
