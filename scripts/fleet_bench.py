#!/usr/bin/env python3
"""`bmsfil eval` over every LG HG2 drive cycle on Dask with 1 and with 2
workers, alternating, as a user runs it (a subprocess each, plots included):
wall time per run, the speed-up as a ratio measured in the same session, and
whether the JSON results are identical (they must be).

    .venv/bin/python scripts/fleet_bench.py [DATA_DIR] [--repeats N] [--workers-max 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BMSFIL = Path(sys.executable).parent / "bmsfil"
CYCLES = ("US06", "HWFET", "UDDS", "LA92")


def drive_cycles(data: Path) -> list[str]:
    return sorted(str(p) for p in data.rglob("*") if p.is_file() and any(c in p.name for c in CYCLES))


def run(inputs: list[str], workers: int, work: Path) -> tuple[float, str]:
    out = work / f"w{workers}"
    doc = work / f"w{workers}.json"
    t0 = time.perf_counter()
    subprocess.run([str(BMSFIL), "eval", *inputs, "--workers", str(workers), "--out-dir", str(out), "--json", str(doc)],
                   check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    return elapsed, json.dumps(json.loads(doc.read_text())["recordings"], sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, nargs="?", default=ROOT.parent / "shared" / "data" / "lg_hg2")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers-max", type=int, default=2)
    args = ap.parse_args(argv)
    inputs = drive_cycles(args.data)
    times: dict[int, list[float]] = {w: [] for w in range(1, args.workers_max + 1)}
    results: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for w in times:
                elapsed, doc = run(inputs, w, Path(tmp))
                times[w].append(elapsed)
                results[w] = doc
    same = len(set(results.values())) == 1
    base = statistics.median(times[1])
    print(f"{len(inputs)} recordings, {args.repeats} alternating runs per worker count; results identical: {same}")
    for w, ts in times.items():
        med = statistics.median(ts)
        print(f"--workers {w}: median {med:.1f} s (runs {', '.join(f'{t:.1f}' for t in ts)}), "
              f"speed-up {base / med:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
