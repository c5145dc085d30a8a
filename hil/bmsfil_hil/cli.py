"""`bmsfil hil ...`: plugged into the `bmsfil` command through the
`bmsfil.commands` entry-point group, so that the desktop library never
imports the harness."""

from __future__ import annotations

import argparse
import functools
import math
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import can
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bmsfil import can_contract as cc
from bmsfil.argtypes import at_least, positive_float
from bmsfil.bundled import bundled_recording
from bmsfil.core import SocTrace
from bmsfil.current_sign import wrong_sign
from bmsfil.eval_plot import write_plot
from bmsfil.importers.names import output_stem
from bmsfil.evaluate import Evaluation, score_trace, write_csv, write_trace_csv
from bmsfil.fleet import FleetError, claim_stem, expand_inputs, run_many
from bmsfil.gaps import gap_warning
from bmsfil.importers import load_any, load_as_is
from bmsfil.jsonout import json_text, write_json
from bmsfil.outdirs import output_dir_problem
from bmsfil.pack import Spread, synthetic_pack
from bmsfil.params import ParameterSet, params_arg, params_for
from bmsfil.params_match import parameter_warnings
from bmsfil.recording import Recording, RecordingError
from bmsfil_hil.busopts import BusOptionError, bus_config, option_keys, resolve_bus
from bmsfil_hil.expected import expected_run, expected_soc
from bmsfil_hil.faults import MatrixInterrupted, run_matrix
from bmsfil_hil.firmware import FirmwareError
from bmsfil_hil.junit import case_problems, lost_in_real_time, write_fault_junit, write_junit
from bmsfil_hil.logreplay import LogError, LoggedRun, describe_skipped, read_log
from bmsfil_hil.micropython import MicroPythonError
from bmsfil_hil.natmod import DEFAULT_VARIANT, VARIANTS
from bmsfil_hil.qemu import QemuError
from bmsfil_hil.replay import (LOG_SUFFIXES, Health, Plausibility, Power, ReplayInterrupted, open_log,
                               replay_lockstep, replay_realtime)
from bmsfil_hil.targets import RESETTABLE, TARGETS, BusOpenError, make_target

#: Tables written to a file or a pipe are not cut to 80 columns (a terminal's own width, or COLUMNS, wins).
console = Console(highlight=False, markup=False,
                  width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)


def _pack_cells(text: str) -> int:
    """An argparse type: a pack's cell count, as many as MeasPack.n_cells carries."""
    value = at_least(1)(text)
    most = int(cc.database().get_message_by_name("MeasPack").get_signal_by_name("n_cells").maximum)
    if value > most:
        raise argparse.ArgumentTypeError(f"expected 1 to {most} cells (the CAN contract's MeasPack.n_cells), "
                                         f"got {value}")
    return value


def _spread(text: str) -> Spread:
    """An argparse type: Spread.parse, its message shown (argparse hides a ValueError's)."""
    try:
        return Spread.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> None:
    hil = sub.add_parser("hil", help="hardware-in-the-loop: replay recordings over CAN to a target")
    hsub = hil.add_subparsers(dest="hil_command", required=True)
    p = hsub.add_parser("run", help="replay recordings to a target in lock-step and score its estimates")
    p.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                   help="recordings (.npz or any file `bmsfil import` reads); none: the bundled one")
    p.add_argument("--target", choices=TARGETS, default="host")
    p.add_argument("--variant", choices=VARIANTS,
                   help="target micropython: its estimator, python (pure MicroPython, the default) or native "
                        "(the C core as a native .mpy module, built on demand)")
    p.add_argument("--on", choices=("unix", "qemu"), default="unix",
                   help="target micropython: MicroPython's unix port, or MicroPython on the emulated "
                        "Cortex-M4F (QEMU mps2-an386, firmware/micropython/port-mps2, built on demand)")
    p.add_argument("--params", type=Path, help="parameter set the target runs (default: bundled); a board "
                   "runs what it was built with")
    bus = p.add_argument_group("target board: the CAN bus it is on, as python-can opens it")
    bus.add_argument("-i", "--interface", help="python-can interface, e.g. socketcan, pcan, slcan, kvaser, vector")
    bus.add_argument("-c", "--channel", help="python-can channel, e.g. can0, PCAN_USBBUS1, /dev/ttyACM0")
    bus.add_argument("-b", "--bitrate", type=int, help="bit rate in bit/s (the boards use 500000); also the rate "
                     "the bus load is worked out for (default 500000)")
    bus.add_argument("--bus-option", action="append", default=[], metavar="KEY=VALUE",
                     help="any other python-can bus argument (repeatable), e.g. sleep_after_open=0; "
                          "config_context=SECTION lays that section of python-can's configuration file over its "
                          "[default] (refused where no file has it)")
    p.add_argument("--mode", choices=("lockstep", "realtime"), default="lockstep",
                   help="lockstep: each sample waits for its estimates; realtime: samples paced by the "
                        "recording's clock (--speed), latency and late/lost samples reported")
    p.add_argument("--speed", type=positive_float, metavar="X",
                   help="--mode realtime only: X times the recorded rate (default 1); refused in lock-step, "
                        "which has no pace")
    p.add_argument("--samples", type=at_least(0), default=0, metavar="N",
                   help="replay only the first N samples of each recording, or of each run of --from-log (0: all)")
    p.add_argument("--workers", type=at_least(1), metavar="N",
                   help="targets host and reference: replay the recordings in parallel on a local Dask "
                        "cluster of N processes (same estimates, in input order)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="... or on an existing Dask scheduler")
    p.add_argument("--cells", type=_pack_cells, default=1, metavar="N",
                   help="a pack of N cells in series made from each recording with --spread (synthetic)")
    p.add_argument("--spread", type=_spread, default=Spread(),
                   help="synthetic pack spreads, e.g. capacity=0.03,resistance=0.1,soc=0.02 (the default)")
    p.add_argument("--seed", type=int, default=0, help="synthetic pack: seed of the spreads")
    p.add_argument("--from-log", type=Path, metavar="LOG",
                   help="replay the measurements of a python-can log (a previous run's --log, a pack "
                        "recorded on a bus) instead of recordings; compared with the estimates in the log")
    p.add_argument("--from-log-channel", metavar="CH",
                   help="--from-log: read only the frames of this channel of the log, as python-can names it "
                        "(0, 1, ... in an .asc or .blf file, whose own numbers start at 1; can0, ... in a "
                        "candump .log); needed for a log with frames of the contract on several channels")
    p.add_argument("--junit", type=Path, help="write a JUnit XML report (one test case per cell)")
    p.add_argument("--timeout", type=positive_float, default=2.0, help="seconds to wait for each sample's estimates")
    p.add_argument("--log", type=Path, help="write the exchange as a python-can log (.blf, .asc or .log)")
    p.add_argument("--out-dir", type=Path, default=Path("bmsfil-hil"))
    p.add_argument("--json", type=Path)
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--warm-reset-at", type=at_least(0), action="append", default=[], metavar="K",
                   help="after sample K, command a warm reset (as a watchdog would); the target must "
                        "restore its state (repeatable; firmware targets)")
    p.add_argument("--power-cycle-at", type=at_least(0), action="append", default=[], metavar="K",
                   help="after sample K, simulate a power loss: the saved state is scrambled and the "
                        "target must start fresh (repeatable; firmware targets)")
    p.set_defaults(func=_interruptible(cmd_hil_run))

    sc = hsub.add_parser("score", help="score the estimates a HIL log holds (an interrupted run too)")
    sc.add_argument("log", type=Path, metavar="LOG", help="a python-can log of a run (.blf, .asc, .log)")
    sc.add_argument("--params", type=Path, help="parameter set the target ran (default: bundled); given, estimates "
                                                "beyond 1e-3 of its C core fail the exit status")
    sc.add_argument("--recording", type=Path, action="append", default=[],
                    help="the recording that was replayed (one cell): score against its reference SOC too; "
                         "a log of several recordings: once per recording, in the order they were replayed")
    sc.add_argument("--channel", metavar="CH",
                    help="read only the frames of this channel of the log, as python-can names it (0, 1, ... "
                         "in an .asc or .blf file, whose own numbers start at 1; can0, ... in a candump .log); "
                         "needed for a log with frames of the contract on several channels")
    sc.add_argument("--out-dir", type=Path, default=Path("bmsfil-hil"),
                    help="where each scored cell's CSV (and PNG) go, with --recording (default: bmsfil-hil)")
    sc.add_argument("--json", type=Path, help="write the scores, the log's warnings and the answers over CAN as JSON")
    sc.add_argument("--no-plot", action="store_true", help="no PNG beside each CSV")
    sc.set_defaults(func=_interruptible(cmd_hil_score))

    f = hsub.add_parser("faults", help="run the fault matrix (bus and sensor faults) on a target")
    f.add_argument("input", nargs="?", type=Path, metavar="RECORDING", help="default: the bundled one")
    f.add_argument("--target", choices=[t for t in TARGETS if t != "board"], default="host")
    f.add_argument("--variant", choices=VARIANTS, help="target micropython: python (default) or native")
    f.add_argument("--on", choices=("unix", "qemu"), default="unix", help="target micropython: unix port or QEMU")
    f.add_argument("--params", type=Path)
    f.add_argument("--samples", type=at_least(0), default=1200, help="replay the first N samples (0: all)")
    f.add_argument("--detect-samples", type=at_least(0), default=24000, metavar="N",
                   help="the sensor faults the plausibility monitor needs long to see (current offset, gain) "
                        "run again on the first N samples, the fault from the window's start to the end, "
                        "beside a clean run of as many (default 24000: 40 min of the bundled US06; 0: not)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--json", type=Path)
    f.add_argument("--junit", type=Path)
    f.set_defaults(func=_interruptible(cmd_hil_faults))


class _Terminated(KeyboardInterrupt):
    """SIGTERM, taken as Ctrl-C: the same cleanup (log closed, target
    stopped, what was done kept), exit status 143."""


def _interrupted_status(exc: BaseException | None) -> int:
    """The exit status of a command interrupted by Ctrl-C (130) or SIGTERM
    (143), whichever is in the chain of causes of `exc`."""
    while exc is not None:
        if isinstance(exc, _Terminated):
            return 143
        exc = exc.__cause__
    return 130


def _interruptible(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`command` with SIGTERM raising `_Terminated` while it runs (in the
    main thread; a second SIGTERM during the cleanup ends the process), and
    Ctrl-C where the command does not keep anything (loading its inputs,
    say) said in a line instead of a traceback."""

    def terminated(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise _Terminated()

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, terminated) if main_thread else None
        try:
            return command(args)
        except KeyboardInterrupt as exc:
            console.print(f"bmsfil hil {args.hil_command}: interrupted")
            return _interrupted_status(exc)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)

    return run


def cmd_hil_run(args: argparse.Namespace) -> int:
    params, chosen, _ = params_for(args.params, [str(p) for p in args.inputs or []])
    if chosen is not None:
        console.print(f"parameters: the bundled {chosen} set, for these recordings (--params to choose)")
    try:
        _make_run_outputs(args)
    except _Refused as exc:
        console.print(f"bmsfil hil run: {exc}", soft_wrap=True)
        return 2
    try:
        config = _bus_config(args)
    except BusOptionError as exc:
        console.print(f"bmsfil hil run: {exc}")
        return 2
    if (args.variant or args.on != "unix") and args.target != "micropython":
        console.print(f"bmsfil hil run: --variant and --on are the micropython target's, not {args.target}'s")
        return 2
    bus_options = [name for name, given in (("--interface", args.interface), ("--channel", args.channel),
                                            ("--bus-option", args.bus_option)) if given]
    if bus_options and args.target != "board":
        console.print(f"bmsfil hil run: {'/'.join(bus_options)} open the bus of a board, and the target is "
                      f"{args.target}: add --target board", soft_wrap=True)
        return 2
    if args.target == "board":
        try:
            config = resolve_bus(config, option_keys(args.bus_option))
        except BusOptionError as exc:
            console.print(f"bmsfil hil run: target board: {exc}", soft_wrap=True)
            return 2
    if (args.warm_reset_at or args.power_cycle_at) and args.target not in RESETTABLE:
        console.print(f"bmsfil hil run: --warm-reset-at/--power-cycle-at: target {args.target} runs on the desktop "
                      "and has no reset; use a firmware target (qemu, micropython or board)", soft_wrap=True)
        return 2
    both = sorted(set(args.warm_reset_at) & set(args.power_cycle_at))
    if both:
        console.print(f"bmsfil hil run: --warm-reset-at and --power-cycle-at both at sample {both[0]}: one reset a "
                      "sample", soft_wrap=True)
        return 2
    if args.speed is not None and args.mode != "realtime":
        console.print(f"bmsfil hil run: --speed {args.speed:g} paces a real-time replay, and the mode is lock-step "
                      "(the default), where each sample waits for its estimates and nothing is paced: add "
                      "--mode realtime", soft_wrap=True)
        return 2
    if args.from_log_channel is not None and not args.from_log:
        console.print("bmsfil hil run: --from-log-channel chooses a channel of --from-log's log; give --from-log")
        return 2
    if args.from_log and args.log and Path(args.log).resolve() == Path(args.from_log).resolve():
        console.print(f"bmsfil hil run: --log {args.log} is the log --from-log replays: writing it would destroy "
                      "the recording being replayed; log the replay to another file", soft_wrap=True)
        return 2
    synthetic = [name for name, given in (("--cells", args.cells != 1), ("--spread", args.spread != Spread()),
                                          ("--seed", args.seed != 0)) if given]
    if args.from_log and synthetic:
        console.print(f"bmsfil hil run: {'/'.join(synthetic)} make a synthetic pack from a recording; --from-log "
                      "replays the packs the log holds, cells as logged", soft_wrap=True)
        return 2
    if args.cells == 1 and set(synthetic) - {"--cells"}:
        console.print(f"bmsfil hil run: {'/'.join(synthetic)}: for a synthetic pack of several cells, and there is "
                      "one: add --cells N", soft_wrap=True)
        return 2
    logged: list[LoggedRun] = []
    if args.from_log:
        try:
            logged = _read_log(args.from_log, "run", args.from_log_channel, "--from-log-channel")
        except LogError as exc:
            console.print(f"bmsfil hil run: {exc}", soft_wrap=True)
            return 2
        n = args.samples
        packs = [(run.name, [cell.slice(0, min(len(cell), n)) if n else cell for cell in run.cells])
                 for run in logged]
    elif args.workers is not None or args.scheduler is not None:
        problem = _dask_refusal(args)
        if problem:
            console.print(f"bmsfil hil run: {problem}", soft_wrap=True)
            return 2
        try:
            args.inputs = expand_inputs(args.inputs)
        except FleetError as exc:
            console.print(f"bmsfil hil run: {exc}")
            return 2
        if args.scheduler is not None:
            # Paths travel to workers that may run elsewhere, from another folder: absolute.
            args.inputs, args.out_dir = [p.resolve() for p in args.inputs], args.out_dir.resolve()
        # Each worker reads its own recording; the bus load is checked there.
        packs = []
    else:
        recordings = [_recording(p) for p in args.inputs] if args.inputs else [bundled_recording()]
        packs = _packs_of(recordings, args, params)
    resets = [*args.warm_reset_at, *args.power_cycle_at]
    short = [(name, len(cells[0])) for name, cells in packs if resets and max(resets) >= len(cells[0]) - 1]
    if short:
        console.print(f"bmsfil hil run: a reset after sample {max(resets)}, and {short[0][0]} has {short[0][1]} "
                      "samples (numbered from 0): no sample would follow it", soft_wrap=True)
        return 2
    # The rate the bus runs at: a bitrate given with --bus-option (python-can's, it overrides
    # --bitrate in the bus's settings), else --bitrate, else the boards' 500 kbit/s.
    given = config.get("bitrate")
    bitrate = int(given) if isinstance(given, (int, float)) and given > 0 else (args.bitrate or 500_000)
    speed = 1.0 if args.speed is None else args.speed  # given in real-time mode only (refused above)
    for name, cells in packs:
        interval = float(np.nanmedian(cells[0].dt_s[1:])) if len(cells[0]) > 1 else 1.0
        load = cc.bus_load(len(cells), interval / speed, bitrate, frames_per_cell=_frames_per_cell(args.target),
                           frames_per_sample=_frames_per_sample(args.target))
        where = (f"{name}: {len(cells)} cell(s) every {interval:g} s" + (f" at {speed:g}x" if speed != 1 else "")
                 + f" take {load * 100:.0f} % of a {bitrate // 1000} kbit/s bus (worst case)")
        paced = args.mode == "realtime" or args.target == "board"
        if load > 1.0 and paced:
            console.print(f"bmsfil hil run: refused: {where}, more than it carries")
            return 2
        if load > 0.7:
            console.print(f"warning: {where}" + ("" if paced else " when paced in real time"))
    mode = "lock-step" if args.mode == "lockstep" else f"real-time {speed:g}x"
    table = Table(title=f"HIL {mode} replay, target {_target_text(args)}, params {params.name}")
    for col in ("recording", "RMSE %", "in ±3σ %", "samples", "max |ΔSOC| vs eval", "samples/s",
                "p99 ms" if args.mode == "lockstep" else "latency p99 ms / late / lost", "instr/cell step", "fault"):
        table.add_column(col)
    docs: list[dict[str, object]] = []
    commands = {k: cc.HostCommandCode.WARM_RESET for k in args.warm_reset_at}
    if args.target == "board":
        # A board keeps its state between runs; each recording starts it afresh,
        # as the desktop and emulated targets start.
        commands[-1] = cc.HostCommandCode.RESTART_FRESH
    commands.update({k: cc.HostCommandCode.POWER_CYCLE for k in args.power_cycle_at})
    if commands and args.mode == "realtime":
        console.print("bmsfil hil run: --warm-reset-at/--power-cycle-at and target board need --mode lockstep")
        return 2
    try:
        log = open_log(args.log) if args.log else None
    except OSError as exc:
        console.print(f"bmsfil hil run: --log {args.log}: cannot write it ({exc.strerror or exc})")
        return 2
    try:
        return _run_packs(args, params, config, packs, commands, log, logged, bitrate, speed, table, docs)
    except KeyboardInterrupt as exc:
        kept = [str(path) for path in (args.json, args.junit) if path is not None and docs]
        console.print("bmsfil hil run: interrupted" + (f"; the log {args.log} holds the exchange so far "
                      f"(`bmsfil hil score {args.log}` scores it)" if args.log else "")
                      + (f"; the results so far are in {' and '.join(kept)}" if kept else ""), soft_wrap=True)
        return _interrupted_status(exc)
    finally:
        if log is not None:
            log.stop()


def _make_run_outputs(args: argparse.Namespace) -> None:
    """Check --log's format and make its directory and --out-dir before the
    replay (`bmsfil` makes --json's and --junit's)."""
    if args.log is not None and args.log.suffix.lower() not in LOG_SUFFIXES:
        raise _Refused(f"--log {args.log}: the format is taken from the suffix: expected one of "
                       f"{', '.join(LOG_SUFFIXES)}, got {args.log.suffix or 'none'}")
    if args.log is not None:
        _make_dir("--log", args.log.parent)
    _make_dir("--out-dir", args.out_dir)


def _make_dir(option: str, directory: Path) -> None:
    """Make an output's directory, or refuse saying which option's could not be made."""
    if (problem := output_dir_problem(option, directory)) is not None:
        raise _Refused(problem)


def _dask_refusal(args: argparse.Namespace) -> str | None:
    """Why `hil run` cannot run these settings on Dask, or None."""
    if args.target not in ("host", "reference"):
        return f"--workers/--scheduler: only the desktop targets (host, reference) run on Dask, not {args.target}"
    if not args.inputs:
        return "--workers/--scheduler: give the recordings (paths, directories or quoted globs)"
    if args.log or args.from_log:
        return "--workers/--scheduler: one CAN log per run cannot be shared by workers; leave out --log/--from-log"
    if args.mode != "lockstep":
        return "--workers/--scheduler: lock-step only (real-time pacing on a busy worker measures the worker)"
    return None


class _TargetDidNotStart(RuntimeError):
    """A target that could not be made or started (the command's exit status 2)."""


#: Suffixes of the CAN logs python-can writes: a run's log is replayed with --from-log, not as a recording.
CAN_LOG_SUFFIXES = (".blf", ".asc", ".log", ".trc")


def _recording(path: str | Path) -> Recording:
    """A recording the harness replays, with what to do instead when it is a
    CAN log or a file only `bmsfil import --map` can read."""
    if Path(path).suffix.lower() in CAN_LOG_SUFFIXES:
        raise RecordingError(f"{path}: a CAN log, not a recording: replay what it holds with "
                             f"bmsfil hil run --from-log {path}, or score it with bmsfil hil score {path}")
    return load_as_is(path, "the harness")


def _replay_pack(args: argparse.Namespace, params: ParameterSet, config: dict[str, object], name: str,
                 cells: list[Recording], commands: dict[int, cc.HostCommandCode], log: can.Listener | None,
                 logged: LoggedRun | None, bitrate: int, speed: float) -> tuple[dict[str, object], list[str]]:
    """One pack replayed to a fresh target and scored: its JSON entry and its table row."""
    try:
        target = make_target(args.target, params, config, variant=args.variant, on=args.on)
    except ValueError as exc:
        raise _TargetDidNotStart(str(exc)) from None
    try:
        bus = target.start()
    except (FirmwareError, QemuError, MicroPythonError, BusOpenError) as exc:
        raise _TargetDidNotStart(f"target {args.target} did not start: {exc}") from None
    except KeyboardInterrupt:
        target.stop()  # a process started before Ctrl-C came
        raise
    t0 = time.perf_counter()
    timing = None
    interrupted: ReplayInterrupted | None = None
    try:
        with Progress(*Progress.get_default_columns(), console=Console(stderr=True), transient=True,
                      disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(f"{name} on {args.target}", total=len(cells[0]))
            step = functools.partial(bar.update, task)
            if args.mode == "lockstep":
                result = replay_lockstep(bus, cells, timeout_s=args.timeout, log=log, commands=commands,
                                         progress=lambda k: step(completed=k))
            else:
                result, timing = replay_realtime(bus, cells, speed=speed, timeout_s=args.timeout, log=log,
                                                 progress=lambda k: step(completed=k))
    except ReplayInterrupted as exc:
        interrupted, result, timing = exc, exc.result, exc.timing
    finally:
        elapsed = time.perf_counter() - t0
        ended = _ended_with(target)
        target.stop()
    d = result.delivery.summary()
    if d.get("fault") and ended:
        d["fault"] = f"{d['fault']}; {ended}"
    d["samples_per_second"] = result.samples_done / elapsed if elapsed > 0 else math.nan
    if timing is not None:
        d["realtime"] = timing.summary()
    ipcs = d["instructions_per_cell_step"]
    pack_docs = []
    for j, rec in enumerate(cells):
        trace = SocTrace(result.soc[:, j], result.soc_sigma[:, j], result.flags[:, j])
        doc = _score(rec, trace, params, d, args, result.samples_done, plot=len(cells) <= 8,
                     power_cycles=[k for k, c in commands.items() if c == cc.HostCommandCode.POWER_CYCLE])
        doc["target"] = args.target
        doc.update(_answers_over_can(result.plausibility, result.health, result.power, j, rec))
        doc.update(_setup(args))
        pack_docs.append(doc)
    # As eval checks them, once a pack (its cells share a time base and a cell type).
    found = [*parameter_warnings(cells[0], params), gap_warning(cells[0], params)]
    if any(w is not None for w in found):
        pack_docs[0]["warnings"] = [*pack_docs[0].get("warnings", []),  # type: ignore[list-item]
                                    *(w for w in found if w is not None)]
    worst = max(pack_docs, key=lambda x: x["rmse"] if math.isfinite(x["rmse"]) else math.inf)
    timing_text = (f"{d['round_trip_p99_ms']:.2f}" if timing is None else
                   f"{d['realtime']['latency_p99_ms']:.1f} / {timing.late} / {timing.lost}")  # type: ignore[index]
    row = [name if len(cells) == 1 else f"{name}, worst of {len(cells)}: "
           f"{str(worst['recording']).rsplit('#', 1)[-1]}",
           _pct(worst["rmse"]), _pct(min(x["within_3sigma"] for x in pack_docs), 1),
           f"{result.samples_done}/{len(cells[0])}",
           _largest_text([x["max_abs_soc_difference_vs_eval"] for x in pack_docs]),
           f"{d['samples_per_second']:.0f}", timing_text,
           "-" if ipcs is None else f"{ipcs['mean']:.0f} (max {ipcs['max']})",  # type: ignore[index]
           str(d["fault"] or (f"target: {d['target_faults'][0]}" if d["target_faults"] else ""))]
    entry: dict[str, object] = {"name": name, "cells": pack_docs, "delivery": d,
                                "instructions_per_cell_step": ipcs,
                                "instructions_per_cell_step_by_part": d["instructions_per_cell_step_by_part"],
                                "target_starts": d["target_starts"],
                                "bus_load": cc.bus_load(len(cells), float(np.nanmedian(cells[0].dt_s[1:]))
                                                        / speed, bitrate, _frames_per_cell(args.target),
                                                        _frames_per_sample(args.target))
                                if len(cells[0]) > 1 else None}
    if logged is not None:
        # Up to a power cycle of the logged run this replay did not repeat (a desktop target's):
        # after it the run's target started afresh and this one went on.
        unsent = [k for k in logged.power_cycles() if commands.get(k) != cc.HostCommandCode.POWER_CYCLE]
        n = min([result.samples_done, *(k + 1 for k in unsent)])
        both = ~np.isnan(logged.logged_soc[:n]) & ~np.isnan(result.soc[:n])
        entry["max_abs_soc_difference_vs_log"] = (
            float(np.max(np.abs(result.soc[:n][both] - logged.logged_soc[:n][both]))) if both.any() else None)
        flags_both = logged.plausibility.received[:n] & result.plausibility.received[:n]
        entry["flag_samples_compared"] = int(flags_both.sum())
        entry["flag_samples_unlike_log"] = int(np.count_nonzero(
            logged.plausibility.flags[:n][flags_both] != result.plausibility.flags[:n][flags_both])
        ) if flags_both.any() else None  # None: the log or the target has no EstCellFlags to compare
        if not both.any():
            console.print(f"{name}: the log holds no estimate to compare with (a log of the measurements alone)")
        else:
            flags_text = ("the log has no EstCellFlags to compare" if entry["flag_samples_unlike_log"] is None else
                          f"plausibility flags unlike the log's on {entry['flag_samples_unlike_log']} of "
                          f"{int(flags_both.sum())}")
            console.print(f"{name}: max |ΔSOC| vs the estimates in the log {entry['max_abs_soc_difference_vs_log']:.1e} over "
                          f"{int(both.sum())} estimates; {flags_text}")
        apart = entry["max_abs_soc_difference_vs_log"]
        if isinstance(apart, float) and apart > LOG_AGREEMENT:
            # Samples the log lacks (or holds twice, out of order) were not replayed as the logged run sent them;
            # faults the logged target reported (a restart, a refused frame) are not the replayed target's.
            notes = (f"the log's {len(logged.sequence_notes)} warning(s) above (samples or frames it lacks, repeats "
                     "or holds out of order, faults the logged target reported) may explain it, the replay sending "
                     "what the log holds, not what the logged target was sent or did; else "
                     if logged.sequence_notes else "")
            console.print(f"{name}: warning: the target's estimates are up to {apart:.1e} from the log's, beyond the "
                          f"{LOG_AGREEMENT:g} two targets of one parameter set agree within: {notes}the log was "
                          f"written with another parameter set than {params.name!r} (bmsfil hil score LOG --params "
                          "... tells which fits it), or by a target that estimates otherwise", soft_wrap=True)
    image = getattr(target, "image", None)
    if image is not None:
        entry["firmware"] = {"board": image.board, "elf": str(image.elf), "size": image.size}
    if interrupted is not None:
        raise _PackInterrupted(entry, row) from interrupted
    return entry, row


def _largest_text(deltas: list[object]) -> str:
    """The largest difference from the C core among a pack's cells, for the
    table: NaN if any cell's estimates had none to compare with, "-" if no
    cell had anything to compare (None: neither could start it)."""
    known = [float(x) for x in deltas if isinstance(x, float)]  # type: ignore[arg-type]
    if not known:
        return "-"
    return "nan" if any(math.isnan(x) for x in known) else f"{max(known):.1e}"


class _PackInterrupted(KeyboardInterrupt):
    """A pack's replay interrupted, scored over what came back: its JSON
    entry and table row (the interrupt is its cause)."""

    def __init__(self, entry: dict[str, object], row: list[str]) -> None:
        super().__init__(entry["delivery"]["fault"])  # type: ignore[index]
        self.entry = entry
        self.row = row


def _packs_of(recordings: list[Recording], args: argparse.Namespace,
              params: ParameterSet) -> list[tuple[str, list[Recording]]]:
    if args.samples > 0:
        recordings = [rec.slice(0, min(len(rec), args.samples)) for rec in recordings]
    if args.cells > 1:
        try:
            return [(f"{rec.meta.name} x{args.cells} (synthetic)",
                     synthetic_pack(rec, args.cells, params, args.spread, args.seed)) for rec in recordings]
        except ValueError as exc:  # a spread the recording cannot carry: the user's to change
            raise RecordingError(f"--cells {args.cells}: {exc}") from None
    return [(rec.meta.name, [rec]) for rec in recordings]


#: Targets run with one parameter set agree within this on every recording (docs/firmware.md,
#: docs/micropython.md: the pure MicroPython port, the loosest, within 3e-5).
LOG_AGREEMENT = 1e-4


def _with_log_commands(args: argparse.Namespace, name: str, commands: dict[int, cc.HostCommandCode],
                       logged: LoggedRun) -> dict[int, cc.HostCommandCode]:
    """The commands a --from-log replay of `logged` sends: the run's own
    resets as the log holds them (HostCommand frames), so that the replay
    repeats the run, unless resets are given on the command line; a target
    that cannot take them is told of (its estimates then part from the log's)."""
    resets = {k: c for k, c in logged.commands if c != cc.HostCommandCode.RESTART_FRESH and k < len(logged.cells[0]) - 1}
    if not resets or args.warm_reset_at or args.power_cycle_at:
        return commands
    listed = ", ".join(f"{c.name.lower()} after sample {k}" for k, c in sorted(resets.items()))
    if (args.target not in RESETTABLE or args.mode == "realtime") and logged.power_cycles():
        why = (f"target {args.target} runs on the desktop and has no reset" if args.target not in RESETTABLE
               else "a real-time replay sends none")
        console.print(f"{name}: warning: the logged run was reset ({listed}); {why}: after a power cycle the "
                      "estimates are not the run's, and are compared with the log's up to it", soft_wrap=True)
        return commands
    if args.target not in RESETTABLE or args.mode == "realtime":
        return commands  # warm resets only: the run's estimates went on as if none had been
    console.print(f"{name}: the logged run's resets, sent again: {listed}", soft_wrap=True)
    return {**commands, **resets}


def _ended_with(target: object) -> str | None:
    """What a target's process said last, if it ended during the run (a MicroPython
    MemoryError, a firmware's abort), for the fault; None while it runs, or for a target
    without a process of its own."""
    alive, output = getattr(target, "alive", None), getattr(target, "output", None)
    if alive is None or output is None or alive():
        return None
    last = [line for line in str(output()).strip().splitlines() if line.strip()][-2:]
    return "the target's process ended" + (f", its last words: {' / '.join(last)}" if last else "")


def _replay_source(source: str, args: argparse.Namespace, params: ParameterSet, config: dict[str, object],
                   commands: dict[int, cc.HostCommandCode], bitrate: int,
                   speed: float) -> tuple[dict[str, object], list[str]]:
    """`hil run` of one input, in whichever process runs it (a Dask worker):
    its CSV and PNG are written there, its entry and row travel back."""
    ((name, cells),) = _packs_of([_recording(source)], args, params)
    # Its files under a name of its own (workers write at once, and two inputs may hold
    # recordings of one name); the command gives them their names (`_name_worker_outputs`).
    own = argparse.Namespace(**vars(args), private_stem=f".{uuid.uuid4().hex[:12]}")
    try:
        return _replay_pack(own, params, config, name, cells, commands, None, None, bitrate, speed)
    except BaseException:
        for written in Path(args.out_dir).glob(f"{own.private_stem}*"):  # nobody will name them
            written.unlink(missing_ok=True)
        raise


def _name_worker_outputs(args: argparse.Namespace, entry: dict[str, object]) -> None:
    """Give the files a worker wrote under its own names (`_replay_source`) the names the
    cells' recordings take in --out-dir, as without workers (`_output_stem`)."""
    for cell in entry["cells"]:  # type: ignore[attr-defined]
        if not cell.get("csv"):
            continue
        written = Path(cell["csv"])
        stem = _output_stem(args, cell["recording"], written.stem)
        for suffix in (".csv", ".png"):
            if written.with_suffix(suffix).exists():
                written.with_suffix(suffix).replace(args.out_dir / f"{stem}{suffix}")
        cell["csv"] = str(args.out_dir / f"{stem}.csv")


def _run_packs(args: argparse.Namespace, params: ParameterSet, config: dict[str, object],
               packs: list[tuple[str, list[Recording]]], commands: dict[int, cc.HostCommandCode],
               log: can.Listener | None, logged: list[LoggedRun], bitrate: int, speed: float, table: Table,
               docs: list[dict[str, object]]) -> int:
    """Replay each pack to a fresh target (the runs of a --from-log log: `logged`, one per pack)."""
    status = 0
    # How close to the C core a target's estimates must be (the float64 reference's own model is looser).
    agreement = 1e-3 if args.target == "reference" else LOG_AGREEMENT

    def finished(entry: dict[str, object], row: list[str]) -> None:
        nonlocal status
        table.add_row(*row)
        docs.append(entry)
        by_part = entry["instructions_per_cell_step_by_part"]
        if by_part is not None:
            console.print(f"{entry['name']}: {_by_part_text(by_part)}")  # type: ignore[arg-type]
        delivery = entry["delivery"]
        if delivery["bus_outages"]:  # type: ignore[index]
            first = delivery["bus_outage_first"]  # type: ignore[index]
            console.print(f"{entry['name']}: the bus refused frames {delivery['bus_outages']} time(s) and took them "  # type: ignore[index]
                          f"again within {delivery['bus_outage_max_s']:.2f} s (first at sample {first['sample']}: "  # type: ignore[index]
                          f"{first['error']})", soft_wrap=True)
        faults = delivery["target_faults"]  # type: ignore[index]
        if faults:
            console.print(f"{entry['name']}: the target reported {len(faults)} fault(s), the first: {faults[0]}"
                          + (f"; all of them in {args.json}" if args.json and len(faults) > 1 else ""),
                          soft_wrap=True)
        lost = lost_in_real_time(delivery)  # type: ignore[arg-type]
        if lost:
            console.print(f"{entry['name']}: {lost}", soft_wrap=True)
        apart = [cell for cell in entry["cells"]  # type: ignore[attr-defined]
                 if isinstance(cell["max_abs_soc_difference_vs_eval"], float)
                 and cell["max_abs_soc_difference_vs_eval"] > agreement]
        if apart:
            worst = max(apart, key=lambda cell: cell["max_abs_soc_difference_vs_eval"])
            console.print(f"{entry['name']}: the target's estimates differ from the C core's by up to "
                          f"{worst['max_abs_soc_difference_vs_eval']:.1e} ({worst['recording']}), beyond the "
                          f"{agreement:g} a target of this parameter set agrees within", soft_wrap=True)
        if any(case_problems(delivery, cell, agreement) for cell in entry["cells"]):  # type: ignore[arg-type,attr-defined]
            status = 1
        if args.json:
            _write_json(args.json, docs)
        if args.junit:
            write_junit(args.junit, docs, args.target, setup=_setup(args), max_soc_difference=agreement)

    try:
        if args.workers is not None or args.scheduler is not None:
            sources = [str(p) for p in args.inputs]
            # The workers get the settings, not the command (a closure, which does not pickle).
            settings = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "func"})
            for outcome in run_many(_replay_source, sources, (settings, params, config, commands, bitrate, speed),
                                    workers=args.workers, scheduler=args.scheduler):
                if outcome.failure is not None:
                    table.add_row(outcome.source, *([""] * 7), outcome.failure.cause)
                    status = 1
                else:
                    _name_worker_outputs(args, outcome.result[0])  # type: ignore[index]
                    finished(*outcome.result)  # type: ignore[misc]
            return status
        for i, (name, cells) in enumerate(packs):
            try:
                finished(*_replay_pack(args, params, config, name, cells,
                                       _with_log_commands(args, name, commands, logged[i]) if logged else commands,
                                       log, logged[i] if logged else None, bitrate, speed))
            except _PackInterrupted as exc:
                finished(exc.entry, exc.row)
                raise
            except _TargetDidNotStart as exc:
                console.print(f"bmsfil hil run: {exc}")
                return 2
    finally:
        if table.row_count:
            console.print(table)
        for warning in dict.fromkeys(w for entry in docs for cell in entry["cells"]  # type: ignore[union-attr]
                                     for w in cell.get("warnings", [])):
            console.print(f"bmsfil hil run: warning: {warning}", soft_wrap=True)
    written = sum(1 for entry in docs for cell in entry["cells"] if cell.get("csv"))  # type: ignore[union-attr]
    console.print((f"per-cell CSV (and PNG for packs of up to 8) in {args.out_dir}/" if written else
                   "no estimate came back: no CSV written") + (f"; CAN log {args.log}" if args.log else ""))
    return status


def cmd_hil_score(args: argparse.Namespace) -> int:
    """Score what a log holds, each recording of it on its own (the harness
    replays each from sequence 0 to a fresh target): the logged estimates
    against the C core run on the logged measurements and, given the
    replayed recordings, against their reference SOC, over the samples the
    log has (all of them for a run that was cut short); the plausibility
    flags, health and power the target sent, as `hil run --json` reports
    them, the flags compared sample by sample with the C core's monitor on
    the same measurements (started afresh where the log's HostCommands
    power-cycled the target, as the target had to)."""
    params = params_arg(args.params)
    try:
        runs = _read_log(args.log, "score", args.channel, "--channel")
        references = _score_references(runs, args.recording)
        _make_dir("--out-dir", args.out_dir)
    except (LogError, _Refused) as exc:
        console.print(f"bmsfil hil score: {exc}", soft_wrap=True)
        return 2
    scored: list[dict[str, object]] = []
    foreign = runs[0].undecodable - runs[0].crc_failed  # those refused for their crc are said above
    if foreign:
        kinds = runs[0].undecodable_kinds
        shown = "; ".join(f"{n} × {kind}" for kind, n in kinds[:3]) + ("; ..." if len(kinds) > 3 else "")
        console.print(f"bmsfil hil score: {args.log}: {foreign} frame(s) that do not decode as frames of the CAN "
                      f"contract ({shown}): not read", soft_wrap=True)
    doc: dict[str, object] = {"log": str(args.log), "channel": args.channel, "undecodable_frames": runs[0].undecodable,
                              "undecodable_kinds": [{"kind": kind, "frames": n}
                                                    for kind, n in runs[0].undecodable_kinds],
                              "crc_failed_frames": runs[0].crc_failed, "cut_short": runs[-1].cut_short,
                              "stream_warning": runs[0].stream_note,
                              "skipped_lines": [{"line": line, "why": why} for line, why in runs[-1].skipped
                                                if runs[-1].skipped_unit == "line"],
                              "skipped_containers": [{"byte": at, "why": why} for at, why in runs[-1].skipped
                                                     if runs[-1].skipped_unit == "container"],
                              "recordings": scored, "interrupted": False}
    status = 0
    try:
        for run, reference in zip(runs, references):
            entry = _score_run(run, reference, params, args)
            if run.sequence_notes:
                entry["log_warnings"] = list(run.sequence_notes)
            scored.append(entry)
            if entry.pop("unlike_core", False):
                status = max(status, 1)
            if any("not_scored" in cell for cell in entry["cells_scored"]):  # type: ignore[attr-defined]
                status = 2
    except KeyboardInterrupt as exc:
        doc["interrupted"] = True
        console.print(f"bmsfil hil score: interrupted after {len(scored)} of {len(runs)} recording(s) of the log"
                      + (f"; those are in {args.json}" if args.json and scored else ""))
        status = _interrupted_status(exc)
    if args.json and scored:
        args.json.write_text(json_text(doc))
    return status


def _read_log(path: Path, command: str, channel: str | None, channel_option: str) -> list[LoggedRun]:
    """`read_log` of `channel` (chosen by `channel_option`), saying when the
    log ends in a record it cannot read (a text log cut in the middle of a
    line: read up to there) and how many measurement frames it refused for
    their crc."""
    runs = read_log(path, channel, channel_option)
    if runs[0].stream_note is not None:  # said first: what was read, or not, of the file at all
        console.print(f"bmsfil hil {command}: warning: {path}: {runs[0].stream_note}", soft_wrap=True)
    if runs[0].contract != cc.CONTRACT_VERSION:
        console.print(f"bmsfil hil {command}: {path} was written under the CAN contract {runs[0].contract} (its "
                      "measurement frames' crc covers the payload alone): read as such", soft_wrap=True)
    if runs[0].crc_failed:
        console.print(f"bmsfil hil {command}: {path}: {runs[0].crc_failed} measurement frame(s) (MeasPack, MeasCell) "
                      "refused for their crc (the CAN contract's end-to-end check): read as lost", soft_wrap=True)
    if runs[-1].cut_short is not None:
        console.print(f"bmsfil hil {command}: warning: {path} {runs[-1].cut_short}: cut short?; every record "
                      "before its end read", soft_wrap=True)
    for run in runs:
        for note in run.sequence_notes:
            console.print(f"bmsfil hil {command}: warning: {path}: {run.name}: {note}", soft_wrap=True)
    if runs[-1].skipped:
        console.print(f"bmsfil hil {command}: warning: {path}: "
                      f"{describe_skipped(runs[-1].skipped, runs[-1].skipped_unit)}", soft_wrap=True)
    return runs


class _Refused(ValueError):
    """Settings or inputs a command refuses, with why (exit status 2)."""


def _score_references(runs: list[LoggedRun], paths: list[Path]) -> list[Recording | None]:
    """The recording each run of the log replayed (--recording, once per
    recording of the log, in order), or None for each without."""
    if not paths:
        return [None] * len(runs)
    if len(paths) != len(runs):
        held = ", ".join(f"{run.name} ({len(run.cells[0])} samples)" for run in runs)
        raise _Refused(f"the log holds {len(runs)} recording(s): {held}; give --recording once per recording, "
                       f"in order (got {len(paths)})")
    return [_score_reference(run, path) for run, path in zip(runs, paths)]


def _score_reference(run: LoggedRun, path: Path) -> Recording:
    """The recording `run` replayed, checked against it."""
    n, m = run.logged_soc.shape
    if m != 1:
        raise _Refused(f"--recording scores one cell; {run.name} holds {m}")
    reference = load_any(path)
    try:
        reference.reference_soc()
    except RecordingError as exc:
        raise _Refused(f"{path}: {exc}; without --recording the log is compared with the C core only") from None
    if len(reference) < n:
        raise _Refused(f"{path} has {len(reference)} samples, {run.name} in the log {n}")
    unlike = _unlike_log(run.cells[0], reference.slice(0, n))
    if unlike is not None:
        raise _Refused(f"{path} is not the recording {run.name} in the log replayed: {unlike}")
    return reference


def _unlike_log(logged: Recording, recording: Recording) -> str | None:
    """How the current and voltage of a recording differ from those a log
    carried of it, beyond the resolution the contract carries them to (where
    both are valid numbers); None when they agree."""
    for frame, name, carried, sent in (("MeasPack", "current_A", logged.current_A, recording.current_A),
                                       ("MeasCell", "voltage_V", logged.voltage_V, recording.voltage_V)):
        scale = float(cc.database().get_message_by_name(frame).get_signal_by_name(name).scale)
        both = np.isfinite(carried) & np.isfinite(sent)
        off = np.flatnonzero(both & (np.abs(carried - sent) > 0.51 * scale))
        if off.size:
            k = int(off[0])
            return (f"{name} differs on {off.size} of {int(both.sum())} samples, first at sample {k}: "
                    f"{carried[k]:g} in the log, {sent[k]:g} in the recording (carried to {scale:g})")
    return None


#: A difference from the C core above this (SOC) is more than the contract's rounding or float32 explain.
UNLIKE_CORE_SOC = 1e-3


def _score_run(run: LoggedRun, reference: Recording | None, params: ParameterSet,
               args: argparse.Namespace) -> dict[str, object]:
    """One recording of a log scored, its table printed: its JSON entry."""
    n, m = run.logged_soc.shape
    answered = int(np.count_nonzero(~np.isnan(run.logged_soc).any(axis=1)))
    doc: dict[str, object] = {"name": run.name, "samples": n, "cells": m, "samples_fully_answered": answered,
                              "cells_scored": []}
    if reference is not None:
        doc["recording"] = reference.meta.name
    if cycled := run.power_cycles():
        doc["power_cycled_after"] = cycled
        console.print(f"{run.name}: the target was power-cycled after sample {', '.join(map(str, cycled))} (a "
                      "HostCommand in the log): compared with the C core started afresh there, as the target must",
                      soft_wrap=True)
    table = Table(title=f"{run.name}: {n} samples of {m} cell(s) in the log, {answered} fully answered")
    for col in ("cell", "estimates", "max |ΔSOC| vs C core", "flags over CAN", "flag samples unlike C core",
                "RMSE %", "in ±3σ %"):
        table.add_column(col)
    worst = 0.0
    for j, rec in enumerate(run.cells):
        try:
            cell_doc, row = _score_cell(run, j, rec, reference, params, args)
        except ValueError as exc:  # nothing the C core can start from (no valid voltage in the run)
            console.print(f"bmsfil hil score: {rec.meta.name}: not scored: {exc}", soft_wrap=True)
            cell_doc = {"cell": j, "estimates": int(np.count_nonzero(~np.isnan(run.logged_soc[:, j]))),
                        "not_scored": str(exc)}
            row = [str(j), f"{cell_doc['estimates']}/{n}", "not scored", "", "", "", ""]
        doc["cells_scored"].append(cell_doc)  # type: ignore[union-attr]
        table.add_row(*row)
        delta = cell_doc.get("max_abs_soc_difference_vs_core")
        worst = max(worst, delta) if isinstance(delta, float) and math.isfinite(delta) else worst
    console.print(table)
    # Samples any cell answered, with a valid SOC or not (a target answering with soc_valid 0 answers).
    some = np.flatnonzero(run.estimated.any(axis=1))
    # The last sample of a run cut short may have been sent and not yet answered: more is silence.
    if some.size and some[-1] < n - 2:
        last = int(some[-1])
        doc["last_sample_answered"], doc["samples_unanswered_at_end"] = last, n - 1 - last
        console.print(f"{run.name}: warning: the target stopped answering: its last estimate is for sample {last} "
                      f"(sequence {int(run.sequences[last])}), and none of the {n - 1 - last} sample(s) after it, "
                      "to the end of the log, has one (a target that hung or reset, or a bus that lost its "
                      "frames); scored up to there", soft_wrap=True)
    if worst > UNLIKE_CORE_SOC:
        # Named with --params, the set is the one the target ran: a target that estimates otherwise fails.
        doc["unlike_core"] = args.params is not None
        console.print(f"{run.name}: the estimates differ from the C core's by up to {worst:.1e} on the logged "
                      f"measurements, with the parameter set {params.name}"
                      + (f" the target ran (--params): beyond the {UNLIKE_CORE_SOC:g} a target of that set agrees "
                         "within" if args.params is not None else
                         "; a log does not say which set the target ran: if it was another, give it with --params"),
                      soft_wrap=True)
    return doc


def _score_cell(run: LoggedRun, j: int, rec: Recording, reference: Recording | None, params: ParameterSet,
                args: argparse.Namespace) -> tuple[dict[str, object], list[str]]:
    """Cell j of a recording of a log scored: its JSON entry and table row."""
    n = len(rec)
    est = run.logged_soc[:, j]
    have = ~np.isnan(est)
    # Raises where the core has no sample to start from. Power-cycled (a HostCommand in the log),
    # the target had to start afresh, and the C core does.
    core_soc, core_flags = expected_run(rec, params, run.power_cycles())
    if not have.any():
        raise ValueError(f"the log holds no estimate (EstCell 0x{cc.FrameId.EST_CELL:03X}) for cell {j}: nothing to "
                         "score (a log of the measurements alone, or of the wrong channel?)")
    delta = float(np.max(np.abs(est[have] - core_soc[have]))) if have.any() else math.nan
    cell_doc: dict[str, object] = {"cell": j, "estimates": int(have.sum()), "max_abs_soc_difference_vs_core": delta}
    cell_doc.update(_answers_over_can(run.plausibility, run.health, run.power, j, rec))
    got = run.plausibility.received[:, j]
    unlike: int | None = None
    if got.any():
        unlike = int(np.count_nonzero(run.plausibility.flags[got, j] != core_flags[got]))
        cell_doc["flag_samples_unlike_core"] = unlike
        cell_doc["flag_samples_compared"] = int(got.sum())
    raised = cell_doc["plausibility_over_can"]
    rmse = within = math.nan
    if reference is not None:
        trace = SocTrace(est, run.logged_sigma[:, j], np.zeros(n, dtype=np.uint8))
        ev = score_trace(reference.slice(0, n), rec, trace, params)
        rmse, within = ev.score.rmse, ev.score.within_3sigma
        stem = _output_stem(args, ev.name, rec)
        cell_doc["csv"] = str(write_csv(ev, args.out_dir / f"{stem}.csv"))
        if not args.no_plot:
            write_plot(ev, args.out_dir / f"{stem}.png")
        cell_doc.update(ev.summary())
    row = [str(j), f"{int(have.sum())}/{n}", f"{delta:.1e}",
           "not sent" if raised is None else " ".join(e["flag"] for e in raised["flags"]) or "none",  # type: ignore[index]
           "—" if unlike is None else str(unlike), _pct(rmse), _pct(within, 1)]
    return cell_doc, row


def cmd_hil_faults(args: argparse.Namespace) -> int:
    if (args.variant or args.on != "unix") and args.target != "micropython":
        console.print(f"bmsfil hil faults: --variant and --on are the micropython target's, not {args.target}'s")
        return 2
    params = params_arg(args.params)
    rec = _recording(args.input) if args.input else bundled_recording()
    full = rec
    if args.samples > 0:
        rec = rec.slice(0, min(len(rec), args.samples))
    long_rec = full.slice(0, min(len(full), args.detect_samples)) if args.detect_samples > len(rec) else None
    if args.target not in RESETTABLE:
        console.print(f"bmsfil hil faults: target {args.target} runs on the desktop and has no reset: the warm_reset "
                      "fault is left out (a firmware target runs it)", soft_wrap=True)
    interrupted: MatrixInterrupted | None = None
    try:
        baseline, outcomes = run_matrix(args.target, rec, params, seed=args.seed,
                                        progress=lambda name: console.print(f"fault {name} ..."),
                                        variant=args.variant, on=args.on, long_rec=long_rec)
    except (FirmwareError, QemuError, MicroPythonError) as exc:
        console.print(f"bmsfil hil faults: target {args.target} did not start: {exc}")
        return 2
    except MatrixInterrupted as exc:
        interrupted, baseline, outcomes = exc, exc.baseline, exc.outcomes
        if not baseline:
            console.print("bmsfil hil faults: interrupted during the clean run, before any fault ran")
            return _interrupted_status(exc)
    w0, w1 = baseline["window_s"]  # type: ignore[misc]
    table = Table(title=f"Fault matrix, target {_target_text(args)}, {rec.meta.name}, {len(rec)} samples, "
                        f"faults from {w0:.0f} s to {w1:.0f} s; clean RMSE {_pct(baseline['rmse'])} %")  # type: ignore[arg-type]
    for col in ("fault", "injected", "answered", "flagged in window", "flags", "target faults",
                "undecodable / unexpected", "RMSE during %", "RMSE after %", "recovered after s",
                "monitor flag after s", "visible"):
        table.add_column(col)
    for o in outcomes:
        s = o.summary()
        injected = ", ".join(f"{k} {v}" for k, v in o.injected.items() if v) or o.fault.kind
        table.add_row(o.fault.name, injected, f"{o.answered}/{o.samples}", str(o.flagged_in_window),
                      " ".join(o.flags_seen) or "-", str(o.target_faults),
                      f"{s['undecodable_frames']} / {s['unexpected_frames']}", _pct(o.rmse_during),
                      _pct(o.rmse_after), "never" if o.recovery_s is None else f"{o.recovery_s:.0f}",
                      _detected_text(o), o.visible_text("NO"))
    console.print(table)
    for o in outcomes:
        if o.corrupted_frames:
            console.print(f"{o.fault.name}: {o.corrupted_frames} frames corrupted, {o.corrupted_detected} refused by the "
                          "target for their crc and reported (TargetStatus crc_errors)")
    if baseline.get("monitor_sent"):
        clean_flags = baseline["false_flags"] + baseline.get("long", {}).get("false_flags", [])  # type: ignore[operator,union-attr]
        console.print("plausibility flags on the clean run" + (" and its long run" if "long" in baseline else "")
                      + f": {', '.join(sorted(set(clean_flags))) or 'none'}")
    docs = [o.summary() for o in outcomes]
    running = None if interrupted is None else interrupted.running
    if args.json:
        args.json.write_text(json_text({"target": args.target, **_setup(args), "recording": rec.meta.name,
                                         "baseline": baseline, "faults": docs, "interrupted_during": running}))
    if args.junit:
        write_fault_junit(args.junit, args.target, docs, interrupted_during=running, setup=_setup(args))
    if interrupted is not None:
        console.print(f"bmsfil hil faults: interrupted during {running}; the {len(docs)} fault(s) run before are "
                      "above" + "".join(f" and in {path}" for path in (args.json, args.junit) if path), soft_wrap=True)
        return _interrupted_status(interrupted)
    crashed = [o.fault.name for o in outcomes if o.nan_estimates or o.delivery["fault"]]
    if crashed:
        console.print(f"faults that ended a run or gave NaN estimates: {', '.join(crashed)}")
    # As the JUnit fails them: a fault that did not show, unless no monitor can see it by design.
    unseen = [str(d["fault"]) for d in docs if not d.get("visible") and not d.get("undetectable_by_design")]
    if unseen:
        console.print(f"faults that did not show on the bus (flags or delivery statistics): {', '.join(unseen)}"
                      + ("; --detect-samples 0 leaves out the long run the slow ones need"
                         if not args.detect_samples else ""), soft_wrap=True)
    return 1 if crashed or unseen else 0


#: --on as titles say it.
MICROPYTHON_ON = {"unix": "unix port", "qemu": "on QEMU mps2-an386"}


def _setup(args: argparse.Namespace) -> dict[str, str]:
    """Target micropython: which MicroPython ran (`on`: unix port or QEMU)
    and which estimator (`variant`), for the reports; other targets: none."""
    if args.target != "micropython":
        return {}
    return {"on": args.on, "variant": args.variant or DEFAULT_VARIANT}


def _target_text(args: argparse.Namespace) -> str:
    """The target as a title says it, with its MicroPython setup."""
    setup = _setup(args)
    return args.target + (f" ({setup['variant']}, {MICROPYTHON_ON[setup['on']]})" if setup else "")


def _answers_over_can(plausibility: Plausibility, health: Health, power: Power, cell: int,
                      rec: Recording) -> dict[str, object]:
    """A cell's EstCellFlags, EstCellHealth and EstCellPower as they came
    back, for its JSON: the monitor's verdicts (None: not sent) and, where
    the target sent them, its health and power."""
    doc: dict[str, object] = {"plausibility_over_can": plausibility.cell_summary(cell, np.asarray(rec.time_s))}
    if health.sent:
        doc["health_over_can"] = health.cell_summary(cell)
    if power.sent:
        doc["power_over_can"] = power.cell_summary(cell)
    return doc


def _by_part_text(by_part: dict[str, dict[str, float | int] | None]) -> str:
    """The firmware's TargetProfile over a run: each part's mean (max) instructions per cell step."""
    parts = [f"{name} " + ("not measured" if x is None else f"{x['mean']:,.0f} (max {x['max']:,})")
             for name, x in by_part.items()]
    return "instructions per cell step by part, mean (max): " + ", ".join(parts)


def _frames_per_cell(target: str) -> int:
    """Frames per cell per sample on the bus: MeasCell and EstCell,
    EstCellFlags from every target that runs the plausibility monitor (all
    but the float64 reference; a board is assumed to), and EstCellHealth
    from those that also estimate capacity and R0 (all but the reference)."""
    return 2 if target == "reference" else 4


def _frames_per_sample(target: str) -> int:
    """Frames per sample on the bus besides the cells': MeasPack and
    TargetStatus, and the TargetProfile the bare-metal firmware sends after
    it (a board is assumed to run it)."""
    return 3 if target in ("qemu", "board") else 2


def _detected_text(o) -> str:
    """A sensor fault's first plausibility flag: seconds after the fault's start, and in which run."""
    if o.detected is None:
        return ""
    if not o.detection or not o.detection[0].sent:
        return "no monitor"
    for d in o.detection:
        if d.detected:
            return f"{d.after_s:.1f}" + (f" (long run, {d.samples} samples)" if d.run == "long" else "")
    runs = " and ".join(f"{d.samples}" for d in o.detection)
    return f"not flagged ({runs} samples)"


def _pct(x: float, digits: int = 2) -> str:
    return f"{x * 100:.{digits}f}" if math.isfinite(x) else "—"


def _score(rec: Recording, trace: SocTrace, params: ParameterSet, delivery: dict[str, object],
           args: argparse.Namespace, done: int, plot: bool, power_cycles: list[int]) -> dict[str, object]:
    """Score one cell as `bmsfil eval` would; without a reference SOC (a
    recording rebuilt from a log), only the comparison with the C core; a
    cell the C core cannot start on (no valid voltage) is in the JSON with
    the cause (`not_scored`, and under `warnings`, which are printed). The
    C core it is compared with starts afresh after each of `power_cycles`,
    as the target must (`expected_soc`)."""
    doc: dict[str, object] = {"recording": rec.meta.name, "rmse": math.nan, "within_3sigma": math.nan,
                              "max_abs_soc_difference_vs_eval": math.nan}
    try:
        direct = expected_soc(rec, params, power_cycles)
    except ValueError as exc:  # no sample to start from
        doc["not_scored"] = str(exc)
        doc["warnings"] = [f"not scored: {exc}"]
        if not np.isfinite(trace.soc[:done]).any():
            doc["max_abs_soc_difference_vs_eval"] = None  # nothing on either side to compare
        return doc
    answered = np.isfinite(trace.soc[:done])
    if answered.any():
        doc["max_abs_soc_difference_vs_eval"] = float(np.max(np.abs(trace.soc[:done][answered]
                                                                    - direct[:done][answered])))
    if (sign := wrong_sign(rec)) is not None:  # as import and eval check it
        doc["warnings"] = [sign]
    if not answered.any():
        return doc  # nothing came back: the delivery's fault says why
    try:
        ev = score_trace(rec, rec, trace, params)
    except RecordingError as exc:  # no reference SOC: the estimates, unscored
        doc["csv"] = str(write_trace_csv(rec.time_s, trace, args.out_dir / f"{_output_stem(args, rec.meta.name, rec)}.csv"))
        doc["not_scored"] = str(exc)
        return doc
    stem = _output_stem(args, ev.name, rec)
    doc["csv"] = str(write_csv(ev, args.out_dir / f"{stem}.csv"))
    if plot and not args.no_plot:
        write_plot(ev, args.out_dir / f"{stem}.png")
    doc.update(_summary(ev, delivery, doc["max_abs_soc_difference_vs_eval"]))
    doc["rmse"], doc["within_3sigma"] = ev.score.rmse, ev.score.within_3sigma
    if (warning := rec.meta.reference_start_warning()) is not None:
        doc["warnings"] = [*doc.get("warnings", []), warning]  # type: ignore[misc]
    return doc


def _output_stem(args: argparse.Namespace, name: str, cell: Recording | str) -> str:
    """The name of a cell's CSV and PNG in --out-dir: the recording's, with -2, -3, ... where
    another cell of this command took it (a recording replayed twice, a log of two runs of
    one recording), so that none overwrites another's; in a worker, a name of its input's
    own (`_replay_source`)."""
    claimed = vars(args).setdefault("claimed_outputs", {})
    source = cell if isinstance(cell, str) else str(id(cell))
    private = getattr(args, "private_stem", None)
    if private is not None:
        return claim_stem(private, source, claimed)
    stem = claim_stem(output_stem(name), source, claimed)
    if stem != output_stem(name):
        console.print(f"bmsfil hil: warning: a second cell named {name}: its files are {args.out_dir}/{stem}.*",
                      soft_wrap=True)
    return stem


def _bus_config(args: argparse.Namespace) -> dict[str, object]:
    return bus_config(args.interface, args.channel, args.bitrate, args.bus_option)


def _summary(ev: Evaluation, delivery: dict[str, object], delta: float) -> dict[str, object]:
    doc = ev.summary()
    doc["delivery"] = delivery
    doc["instructions_per_cell_step"] = delivery["instructions_per_cell_step"]
    doc["instructions_per_cell_step_by_part"] = delivery["instructions_per_cell_step_by_part"]
    doc["target_starts"] = delivery["target_starts"]
    doc["max_abs_soc_difference_vs_eval"] = delta
    return doc


def _write_json(path: Path, docs: list[dict[str, object]]) -> None:
    """`hil run --json`: the recordings replayed so far, and whether the run was interrupted."""
    interrupted = any(entry["delivery"]["interrupted"] for entry in docs)  # type: ignore[index]
    write_json(path, {"recordings": docs, "interrupted": interrupted})


