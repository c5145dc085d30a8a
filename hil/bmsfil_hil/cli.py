"""`bmsfil hil ...`: plugged into the `bmsfil` command through the
`bmsfil.commands` entry-point group, so that the desktop library never
imports the harness."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator, SocTrace
from bmsfil.evaluate import Evaluation, score_trace, write_csv, write_plot
from bmsfil.importers import load_any
from bmsfil.params import ParameterSet, bundled_params
from bmsfil_hil.firmware import FirmwareError
from bmsfil_hil.qemu import QemuError
from bmsfil_hil.replay import open_log, replay_lockstep
from bmsfil_hil.targets import TARGETS, BusOpenError, make_target

console = Console(highlight=False, markup=False)


def register(sub: argparse._SubParsersAction) -> None:
    hil = sub.add_parser("hil", help="hardware-in-the-loop: replay recordings over CAN to a target")
    hsub = hil.add_subparsers(dest="hil_command", required=True)
    p = hsub.add_parser("run", help="replay recordings to a target in lock-step and score its estimates")
    p.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                   help="recordings (.npz or any file `bmsfil import` reads); none: the bundled one")
    p.add_argument("--target", choices=TARGETS, default="host")
    p.add_argument("--params", type=Path, help="parameter set the target runs (default: bundled); a board "
                   "runs what it was built with")
    bus = p.add_argument_group("target board: the CAN bus it is on, as python-can opens it")
    bus.add_argument("--interface", help="python-can interface, e.g. socketcan, pcan, slcan, kvaser, vector")
    bus.add_argument("--channel", help="python-can channel, e.g. can0, PCAN_USBBUS1, /dev/ttyACM0")
    bus.add_argument("--bitrate", type=int, help="bit rate in bit/s (the boards use 500000)")
    bus.add_argument("--bus-option", action="append", default=[], metavar="KEY=VALUE",
                     help="any other python-can bus argument (repeatable), e.g. sleep_after_open=0")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each sample's estimates")
    p.add_argument("--log", type=Path, help="write the exchange as a python-can log (.blf, .asc or .log)")
    p.add_argument("--out-dir", type=Path, default=Path("bmsfil-hil"))
    p.add_argument("--json", type=Path)
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--warm-reset-at", type=int, action="append", default=[], metavar="K",
                   help="after sample K, command a warm reset (as a watchdog would); the target must "
                        "restore its state (repeatable; firmware targets)")
    p.add_argument("--power-cycle-at", type=int, action="append", default=[], metavar="K",
                   help="after sample K, simulate a power loss: the saved state is scrambled and the "
                        "target must start fresh (repeatable; firmware targets)")
    p.set_defaults(func=cmd_hil_run)


def cmd_hil_run(args: argparse.Namespace) -> int:
    params = ParameterSet.load(args.params) if args.params else bundled_params()
    recordings = [load_any(p) for p in args.inputs] if args.inputs else [bundled_recording()]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"HIL lock-step replay, target {args.target}, params {params.name}")
    for col in ("recording", "RMSE %", "in ±3σ %", "samples", "max |ΔSOC| vs eval", "samples/s", "p99 ms",
                "instr/cell step", "fault"):
        table.add_column(col, no_wrap=col == "recording")
    docs: list[dict[str, object]] = []
    status = 0
    commands = {k: cc.HostCommandCode.WARM_RESET for k in args.warm_reset_at}
    if args.target == "board":
        # A board keeps its state between runs; each recording starts it afresh,
        # as the desktop and emulated targets start.
        commands[-1] = cc.HostCommandCode.RESTART_FRESH
    commands.update({k: cc.HostCommandCode.POWER_CYCLE for k in args.power_cycle_at})
    log = open_log(args.log) if args.log else None
    try:
        for rec in recordings:
            target = make_target(args.target, params, _bus_config(args))
            try:
                bus = target.start()
            except (FirmwareError, QemuError, BusOpenError) as exc:
                console.print(f"bmsfil hil run: target {args.target} did not start: {exc}")
                return 2
            t0 = time.perf_counter()
            try:
                result = replay_lockstep(bus, [rec], timeout_s=args.timeout, log=log, commands=commands)
            finally:
                elapsed = time.perf_counter() - t0
                target.stop()
            trace = SocTrace(result.soc[:, 0], result.soc_sigma[:, 0], result.flags[:, 0])
            ev = score_trace(rec, rec, trace, params)
            direct = SocEstimator(params).run(rec)
            delta = float(np.nanmax(np.abs(trace.soc - direct.soc))) if result.samples_done else math.nan
            write_csv(ev, args.out_dir / f"{ev.name}.csv")
            if not args.no_plot:
                write_plot(ev, args.out_dir / f"{ev.name}.png")
            d = result.delivery.summary()
            d["samples_per_second"] = result.samples_done / elapsed if elapsed > 0 else math.nan
            ipcs = d["instructions_per_cell_step"]
            table.add_row(ev.name, f"{ev.score.rmse * 100:.2f}", f"{ev.score.within_3sigma * 100:.1f}",
                          f"{result.samples_done}/{len(rec)}", f"{delta:.1e}", f"{d['samples_per_second']:.0f}",
                          f"{d['round_trip_p99_ms']:.2f}",
                          "-" if ipcs is None else f"{ipcs['mean']:.0f} (max {ipcs['max']})",  # type: ignore[index]
                          str(d["fault"] or ""))
            doc = _summary(ev, d, delta, args.target)
            image = getattr(target, "image", None)
            if image is not None:
                doc["firmware"] = {"board": image.board, "elf": str(image.elf), "size": image.size}
            docs.append(doc)
            if d["fault"]:
                status = 1
            if args.json:
                _write_json(args.json, docs)
    finally:
        if log is not None:
            log.stop()
    console.print(table)
    console.print(f"per-recording CSV{'' if args.no_plot else ' and PNG'} in {args.out_dir}/"
                  + (f"; CAN log {args.log}" if args.log else ""))
    return status


def _bus_config(args: argparse.Namespace) -> dict[str, object]:
    config: dict[str, object] = {"interface": args.interface, "channel": args.channel, "bitrate": args.bitrate}
    for item in args.bus_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"bmsfil hil run: --bus-option {item!r}: expected KEY=VALUE")
        config[key] = _option_value(value)
    return config


def _option_value(text: str) -> object:
    """KEY=VALUE values as python-can wants them: numbers and booleans typed."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _summary(ev: Evaluation, delivery: dict[str, object], delta: float, target: str) -> dict[str, object]:
    doc = ev.summary()
    doc["target"] = target
    doc["delivery"] = delivery
    doc["instructions_per_cell_step"] = delivery["instructions_per_cell_step"]
    doc["target_starts"] = delivery["target_starts"]
    doc["max_abs_soc_difference_vs_eval"] = delta
    return doc


def _write_json(path: Path, docs: list[dict[str, object]]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps({"recordings": docs}, indent=1, default=str) + "\n")
    tmp.replace(path)
