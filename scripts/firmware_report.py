#!/usr/bin/env python3
"""Write docs/firmware.md: the bare-metal firmware on the emulated
Cortex-M4F (QEMU mps2-an386) over every LG HG2 drive cycle, full length.

    .venv/bin/python scripts/firmware_report.py [DATA_DIR] [-o docs/firmware.md] [--elf IMAGE]

Per cycle: a lock-step replay through the `qemu` target, compared sample by
sample with the C core on the host fed the same (CAN-quantised)
measurements; samples per second of the whole exchange (harness, SLCAN,
QEMU) and, in the same run, of the `host` target on the same slice, as the
baseline; and the instructions per cell step the firmware counted itself,
in all (TargetStatus) and per part of the cell step (TargetProfile).
Then the image's flash and RAM per component. The hand-written sections
between HAND_BEGIN and HAND_END are carried over from docs/firmware.md as
they are, whatever the output. Takes 20 minutes to an hour, with the
machine's load.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from shared_data import LG, lg_drive_cycles  # noqa: E402

from bmsfil.core import SocEstimator  # noqa: E402
from bmsfil.importers import import_file  # noqa: E402
from bmsfil.params import bundled_params  # noqa: E402
from bmsfil_hil.firmware import Image, build  # noqa: E402
from bmsfil_hil.qemu import BOARD, QemuTarget  # noqa: E402
from bmsfil_hil.replay import as_carried, replay_lockstep  # noqa: E402
from bmsfil_hil.targets import make_target  # noqa: E402

BASELINE_SAMPLES = 2000  # host target on the first samples of each cycle, same run
#: The hand-written sections (what each part of the cell step costs), carried over when the report is rewritten.
HAND_BEGIN, HAND_END = "<!-- by hand: begin -->", "<!-- by hand: end -->"
DOC = ROOT / "docs" / "firmware.md"


def speed_note(instructions_mean: float) -> list[str]:
    return [
        "## Where the time goes",
        "",
        f"The firmware's work is a small part of a sample (about {round(instructions_mean, -1):,.0f} instructions per "
        "cell step on average, a few microseconds of emulation). The rest is the link and the waits: a sample of "
        "one cell is 44 bytes of SLCAN in (MeasPack, MeasCell) and 136 out (EstCell, EstCellFlags, EstCellHealth, "
        "EstCellPower, TargetStatus and TargetProfile, 22 bytes each, and two acknowledgements), through QEMU's "
        "model of the "
        "CMSDK UART, which takes the next received byte from the socket only after the guest has read the last. "
        "The largest cost was none of these but waking up: on this virtual machine a core that sleeps takes "
        "milliseconds to wake when data arrives, and in lock-step every round trip has both sides waiting. "
        "Measured 2026-12-06 on 6,000 samples: 304 samples/s (round trip p50 3.4 ms) with the machine "
        "otherwise idle, 848 (1.1 ms) with an unrelated job keeping one core busy. Since then the harness's "
        "`bufsocket://` link polls for up to 2 ms before it sleeps, giving the core away at each poll "
        "(`os.sched_yield`) to QEMU's threads where they wait for it: 1,060-1,291 samples/s idle (p50 0.7 ms), "
        "830 with the other core busy (a poll that did not yield gave 435 there: it took QEMU's core). Earlier, "
        "polling or spinning inside the firmware instead of sleeping until the receive interrupt was slower "
        "(it competes with QEMU's I/O thread), and reading the socket in bulk on the harness side gained about "
        "20 %. Samples per second still follow the machine's load: the host column, measured in the same run, "
        "moves with it.",
    ]


def _rate(target, rec) -> tuple[object, float]:
    bus = target.start()
    t0 = time.perf_counter()
    try:
        result = replay_lockstep(bus, [rec], timeout_s=10.0)
    finally:
        elapsed = time.perf_counter() - t0
        target.stop()
    return result, result.samples_done / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=LG)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "firmware.md")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON")
    ap.add_argument("--elf", type=Path, help="run this image instead of building one")
    args = ap.parse_args(argv)
    params = bundled_params()
    image = build(BOARD) if args.elf is None else Image(BOARD, args.elf, args.elf.parent, {})
    size = image.size or build(BOARD).size
    rows = []
    cycles = [p for p in lg_drive_cycles() if args.data in p.parents] or lg_drive_cycles()
    for path in cycles:
        rec = import_file(path)
        result, rate = _rate(QemuTarget(params, image=image), rec)
        d = result.delivery
        host_soc = SocEstimator(params).run(as_carried(rec)).soc
        n = result.samples_done
        delta = float(np.max(np.abs(result.soc[:n, 0] - host_soc[:n]))) if n else float("nan")
        _, host_rate = _rate(make_target("host", params), rec.slice(0, min(len(rec), BASELINE_SAMPLES)))
        ipcs = np.asarray(d.instructions_per_cell_step, dtype=float)
        by_part = d.by_part() or {}
        row = {
            "recording": rec.meta.name, "samples": len(rec), "done": n, "fault": d.fault,
            "max_abs_soc_difference_vs_host": delta, "samples_per_second": rate,
            "host_samples_per_second": host_rate, "p50_ms": float(np.percentile(d.round_trip_s, 50) * 1e3),
            "p99_ms": float(np.percentile(d.round_trip_s, 99) * 1e3),
            "instructions_mean": float(ipcs.mean()), "instructions_max": int(ipcs.max()),
            "instructions_by_part": {name: None if x is None else {"mean": x["mean"], "max": x["max"]}
                                     for name, x in by_part.items()},
            "target_faults": len(d.target_faults),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"cycles": rows, "size": size}, indent=1) + "\n")
    write_report(rows, size, args.output)
    print(f"wrote {args.output}")
    return 0


def _part_text(row: dict, name: str, with_max: bool = False) -> str:
    """One part's mean (and max) instructions per cell step over a cycle; - when not measured."""
    x = row["instructions_by_part"].get(name)
    if x is None:
        return "-"
    return f"{x['mean']:.0f}" + (f" ({x['max']})" if with_max else "")


def write_report(rows: list[dict], size: dict, output: Path) -> None:
    qemu_version = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    gcc_version = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    rates = [r["samples_per_second"] for r in rows]
    means = [r["instructions_mean"] for r in rows]
    filter_means = [r["instructions_by_part"]["soc_filter"]["mean"] for r in rows
                    if (r["instructions_by_part"].get("soc_filter") or None) is not None]
    faults = [f"{r['recording']}: {r['fault']}" for r in rows if r["fault"]]
    lines = [
        "# The bare-metal firmware on an emulated Cortex-M4F",
        "",
        f"Generated by `scripts/firmware_report.py` on {date.today().isoformat()} ({platform.machine()}, "
        f"{qemu_version}, {gcc_version}); rerun it to check. Every LG HG2 drive cycle in `../shared/data`, "
        "full length, replayed in lock-step through the `qemu` target (`bmsfil hil run --target qemu`): "
        "SLCAN over the emulated UART0 of `mps2-an386`, QEMU with `-icount shift=10`. The firmware is the "
        "one that ships by default (no build switches), with the bundled parameter set in flash: for every "
        "cell on every sample the SOC filter, the plausibility monitor, capacity and R0, one sub-step of the "
        "state-of-power search on every second sample, and the core-temperature filter; per cell it sends "
        "EstCell, EstCellFlags, EstCellHealth and EstCellPower, then a TargetStatus and a TargetProfile.",
        "",
        "- **max |ΔSOC| vs host**: largest difference on any sample from the C core on the host fed the "
        "same CAN-quantised measurements (the bar: 1e-4).",
        "- **samples/s**: whole exchange, harness to QEMU and back (the bar: 500); **host samples/s**: the "
        f"`host` target on the first {BASELINE_SAMPLES} samples of the same cycle, in the same run, as the "
        "baseline of this machine's speed at that moment.",
        "- **instructions/cell step**: counted by the firmware itself (SysTick under -icount, calibrated "
        "against a run of NOPs at boot), reported in every TargetStatus: everything above that the firmware "
        "does for one cell on one sample. Then per part, each timed on its own and reported in the "
        "TargetProfile after each TargetStatus: the SOC filter (its bar: 1,500), the monitor (400), "
        "capacity, R0 and the state of power's sub-step (1,000) and the core temperature (1,100).",
        "",
        "| recording | samples | max \\|ΔSOC\\| vs host | samples/s | host samples/s | round trip p50 / p99 ms "
        "| instructions/cell step mean (max) | SOC filter mean (max) | monitor / capacity, R0, power / core temp. "
        "mean | fault |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['recording']} | {r['done']}/{r['samples']} | {r['max_abs_soc_difference_vs_host']:.1e} | "
            f"{r['samples_per_second']:.0f} | {r['host_samples_per_second']:.0f} | "
            f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} | {r['instructions_mean']:.0f} ({r['instructions_max']}) | "
            f"{_part_text(r, 'soc_filter', with_max=True)} | "
            f"{' / '.join(_part_text(r, name) for name in ('monitor', 'health_and_power', 'core_temp'))} | "
            f"{r['fault'] or ''} |"
        )
    lines += [
        "",
        f"Over the {len(rows)} cycles: {min(rates):.0f} to {max(rates):.0f} samples/s, max |ΔSOC| vs host "
        f"{max(r['max_abs_soc_difference_vs_host'] for r in rows):.1e}, "
        f"{'faults: ' + '; '.join(faults) if faults else 'no fault'}. Instructions per cell step "
        f"{min(means):,.0f} to {max(means):,.0f} on average per cycle, {max(r['instructions_max'] for r in rows):,} "
        "at most: over the filter's bar of 1,500, as expected of a firmware that does much more than the "
        "filter; "
        + (f"the SOC filter's own part {min(filter_means):,.0f} to {max(filter_means):,.0f} on average per cycle "
           f"(bar 1,500). " if filter_means else "no TargetProfile from the firmware. ")
        + "The sections below take the cell step apart.",
        "",
        *speed_note(float(np.mean(means))),
        "",
    ]
    hand = re.search(re.escape(HAND_BEGIN) + ".*?" + re.escape(HAND_END), DOC.read_text() if DOC.is_file() else "",
                     flags=re.S)
    if hand:
        lines += [hand.group(0), ""]
    lines += [
        "## Flash and RAM per component",
        "",
        "From the linker map of the `qemu-mps2-an386` image (`make -C firmware/baremetal size`): code and "
        "constants kept after `--gc-sections`, attributed to the object they came from. The estimators' "
        "state is not here: it is caller-owned, kept by the firmware per cell in retained RAM (`fw_cell_t`, "
        "304 bytes: filter 92, monitor 48, capacity 88, R0 28, core temperature 44 (its filter 40, its ambient "
        "4), flags 4); the state of power's search state (`bf_sop_task_t`), 312 bytes per cell, is not retained "
        "(a reset starts the searches again).",
        "",
        "| component | flash bytes | RAM bytes |",
        "| --- | ---: | ---: |",
    ]
    for name, c in size.get("components", {}).items():
        lines.append(f"| {name} | {c['flash']} | {c['ram']} |")
    lines += [
        "",
        f"Estimator: {size.get('estimator_flash')} bytes of flash, budget "
        f"{size.get('estimator_flash_budget')}; symbols it needs from outside itself: "
        f"{', '.join(size.get('estimator_external_symbols') or []) or 'none'} (memcpy/memset allowed; no "
        "double-precision helper, no libm). Plausibility monitor: "
        f"{size.get('monitor_flash')} bytes of flash, a budget of its own of {size.get('monitor_flash_budget')} "
        "beside the estimator's (the two together would be over 8 KB). Capacity, R0, power and core "
        f"temperature: {size.get('health_flash')} bytes, a budget of their own of "
        f"{size.get('health_flash_budget')}. The build fails if any check fails.",
        "",
    ]
    output.write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
