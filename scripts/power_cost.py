#!/usr/bin/env python3
"""The state of power and the core temperature on the emulated Cortex-M4F:
what they cost per cell step and how often each horizon is refreshed, and
that the firmware sends the EstCellPower the host target sends.

The firmware is built five ways from the same sources: without capacity,
R0, the state of power and the core temperature (FW_HEALTH=0
FW_SOP_EVERY=0 FW_THERMAL=0), without the state of power and the core
temperature, with one sub-step of its search on every sample
(FW_SOP_EVERY=1 FW_THERMAL=0), on every second sample (FW_THERMAL=0) and
with the core temperature too (the default). Each replays the first
SAMPLES samples of the bundled US06 recording in lock-step through the
`qemu` target; under `-icount` the firmware counts its own instructions
exactly, so one run of each is enough and the differences are the state of
power's and the core temperature's cost. The host target replays the same samples for the comparison.

    .venv/bin/python scripts/power_cost.py [--samples N] [--doc docs/power.md]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bmsfil.bundled import bundled_recording
from bmsfil.params import bundled_params
from bmsfil_hil.firmware import Image, build, source_root
from bmsfil_hil.qemu import BOARD, QemuTarget
from bmsfil_hil.replay import POWER_HORIZONS, ReplayResult, replay_lockstep
from bmsfil_hil.targets import make_target

BEGIN, END = "<!-- power_cost: begin -->", "<!-- power_cost: end -->"


def image_with(out: Path, **switches: int) -> Image:
    """The default board's image built with these FW_* switches in out/."""
    fw = source_root() / "firmware" / "baremetal"
    subprocess.run(["make", "-s", "-C", str(fw), "-j2", f"BOARD={BOARD}", f"BUILD={out}", "all",
                    *(f"{k}={v}" for k, v in switches.items())], check=True, capture_output=True, text=True)
    return Image(BOARD, out / BOARD / "bmsfil.elf", out / BOARD, {})


def replay(target: object, samples: int) -> ReplayResult:
    rec = bundled_recording().slice(0, samples)
    bus = target.start()  # type: ignore[attr-defined]
    try:
        return replay_lockstep(bus, [rec], timeout_s=10.0)
    finally:
        target.stop()  # type: ignore[attr-defined]


def refresh_samples(result: ReplayResult) -> list[float]:
    """Per horizon: the median number of samples between two results."""
    p = result.power
    out = []
    for h in POWER_HORIZONS:
        dis, chg = p.latest(0, h)
        pairs = np.stack([dis, chg], axis=1)
        changes = np.flatnonzero(np.any(pairs[1:] != pairs[:-1], axis=1) & np.isfinite(pairs[1:, 0])) + 1
        out.append(float(np.median(np.diff(changes))) if changes.size > 1 else float("nan"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--doc", type=Path, help="rewrite the block between the power_cost markers of this file")
    args = ap.parse_args(argv)
    params = bundled_params()
    runs: dict[str, ReplayResult] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        images = {"filter and monitor only": image_with(t / "bare", FW_HEALTH=0, FW_SOP_EVERY=0, FW_THERMAL=0),
                  "with capacity and R0": image_with(t / "health", FW_SOP_EVERY=0, FW_THERMAL=0),
                  "and state of power, every sample": image_with(t / "one", FW_SOP_EVERY=1, FW_THERMAL=0),
                  "and state of power, every 2nd sample (FW_THERMAL=0)": image_with(t / "two", FW_THERMAL=0),
                  "and core temperature (default)": build(BOARD)}
        for name, image in images.items():
            runs[name] = replay(QemuTarget(params, image=image), args.samples)
    host = replay(make_target("host", params), args.samples)
    base = float(np.mean(runs["filter and monitor only"].delivery.instructions_per_cell_step))
    lines = [f"`.venv/bin/python scripts/power_cost.py --samples {args.samples}`: the first {args.samples} "
             "samples of the bundled US06 recording (10 Hz), one cell, in lock-step on `qemu`; instructions "
             "counted by the firmware (exact under `-icount`).", "",
             "| firmware | instructions per cell step, mean | more than filter and monitor | max | "
             "samples between results, 2 / 10 / 30 s | EstCellPower as the host target's |",
             "| --- | ---: | ---: | ---: | --- | --- |"]
    for name, result in runs.items():
        ipcs = np.asarray(result.delivery.instructions_per_cell_step, dtype=float)
        power = result.power
        if power.sent:
            same = all(np.array_equal(getattr(power, f), getattr(host.power, f), equal_nan=True)
                       for f in ("horizon", "discharge_W", "charge_W"))
            refresh = " / ".join(f"{x:.0f}" for x in refresh_samples(result))
            same_text = "identical" if same else "differs (the host target searches every 2nd sample)"
        else:
            refresh, same_text = "not sent", "-"
        lines.append(f"| {name} | {ipcs.mean():.0f} | {ipcs.mean() - base:+.0f} | {ipcs.max():.0f} | {refresh} | "
                     f"{same_text} |")
    text = "\n".join(lines)
    print(text)
    if args.doc:
        doc = args.doc.read_text()
        if BEGIN not in doc:
            raise SystemExit(f"{args.doc}: no {BEGIN} marker")
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", doc, flags=re.S)
        args.doc.write_text(doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
