"""`bmsfil flash --board NAME`: build the bare-metal firmware for a real
board and write it with pyocd through the board's own debug probe; or, for
a board that runs MicroPython, deploy the MicroPython application with
mpremote (flash_micropython.py).

Builds with ``make -C firmware/baremetal BOARD=NAME OUT=... PARAMS_C=...`` in
the source tree, the parameter set (--params, else the bundled LG HG2 set)
exported to C in a build folder of that set's own, then runs
``pyocd flash --no-wait -t TARGET .../bmsfil.elf``. pyocd and
mpremote are optional dependencies (``pip install 'bmsfil[board]'``); they
are only needed here. Emulated boards have nothing to flash and are refused.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bmsfil.params import ParameterSet, ParamsError, bundled_params, params_arg
from bmsfil_hil.firmware import params_build, write_params_c

#: Source tree: hil/bmsfil_hil/flash.py -> the repository root.
ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = ROOT / "firmware" / "baremetal"
BOARDS_DIR = ROOT / "boards"
CROSS_GCC = "arm-none-eabi-gcc"

#: Exit statuses: the request cannot be served (unknown or emulated board),
#: or a tool, the build or the probe failed.
EXIT_USAGE = 2
EXIT_FAILED = 1


@dataclass(frozen=True)
class FlashTarget:
    pyocd_target: str   # pyocd -t
    pack: str           # `pyocd pack install PACK` provides the target
    probe_hint: str     # what to plug in


#: Boards that can be flashed, with their pyocd target.
FLASHABLE: dict[str, FlashTarget] = {
    "nucleo-f446re": FlashTarget(
        pyocd_target="stm32f446retx",
        pack="stm32f446re",
        probe_hint="connect the Nucleo's ST-LINK USB (CN1, mini-B) to this computer and check that "
                   "`pyocd list` shows it (on Linux the ST-LINK needs udev rules for non-root access)",
    ),
}

#: Boards that exist only in an emulator, and how they are run instead.
EMULATED: dict[str, str] = {
    "qemu-mps2-an386": "bmsfil hil run --target qemu",
}


class FlashError(Exception):
    """A flash request that cannot be carried out; the message says why."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def register(sub: argparse._SubParsersAction) -> None:
    from bmsfil_hil.flash_micropython import MICROPYTHON_BOARDS, VARIANTS

    p = sub.add_parser("flash", help="build and flash the bare-metal firmware (pyocd), or deploy the MicroPython "
                                     "application (mpremote), to a real board")
    p.add_argument("--board", required=True, metavar="NAME",
                   help=f"board directory under boards/ (bare metal: {', '.join(sorted(FLASHABLE))}; "
                        f"MicroPython: {', '.join(sorted(MICROPYTHON_BOARDS))})")
    p.add_argument("--probe", metavar="UID", help="bare metal: debug probe unique ID (or a unique part of it), "
                                                  "see `pyocd list`")
    p.add_argument("--port", metavar="DEV", help="MicroPython: the board's serial port (default: mpremote's auto)")
    p.add_argument("--variant", choices=VARIANTS,
                   help="MicroPython: the estimator in MicroPython (the default), or the C core as a native module")
    p.add_argument("--params", metavar="PARAMS",
                   help="parameter set, a file or a bundled set's name (default: the bundled LG HG2 set); bare metal: "
                        "built into the firmware, MicroPython: copied to the board")
    p.add_argument("--dry-run", action="store_true", help="print the build and flash commands (bare metal: after "
                                                          "exporting the set they build in), run nothing")
    p.set_defaults(func=cmd_flash)


def cmd_flash(args: argparse.Namespace) -> int:
    from bmsfil_hil.flash_micropython import MICROPYTHON_BOARDS, deploy

    try:
        micropython = args.board in MICROPYTHON_BOARDS
        if not micropython:
            check_board(args.board)  # an unknown or emulated board is reported as such first
        # An option that does not apply to the board is refused, not ignored.
        wrong = (["--probe"] if micropython and args.probe else []) + [
            opt for opt, value in (("--port", args.port), ("--variant", args.variant))
            if not micropython and value is not None]
        if wrong:
            kind = "a MicroPython board" if micropython else "a bare-metal board"
            raise FlashError(f"{' and '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply to "
                             f"{args.board}, {kind}", EXIT_USAGE)
        params = params_arg(args.params) if args.params else None
        if micropython:
            return deploy(args.board, args.variant or "python", params, port=args.port, dry_run=args.dry_run)
        return flash(args.board, params, probe=args.probe, dry_run=args.dry_run)
    except (FlashError, ParamsError) as exc:
        print(f"bmsfil flash: error: {exc}", file=sys.stderr)
        return exc.status if isinstance(exc, FlashError) else EXIT_USAGE


def flash(board: str, params: ParameterSet | None = None, probe: str | None = None, dry_run: bool = False) -> int:
    """Build the firmware for `board` with `params` (None: the bundled LG HG2 set) and flash it."""
    target = check_board(board)
    params = params if params is not None else bundled_params()
    build_dir, params_c, text = params_build(FIRMWARE_DIR, board, params)
    make_cmd = build_command(board, build_dir, params_c)
    elf = elf_path(build_dir)
    # Written in a dry run too: the make command printed reads it.
    write_params_c(params_c, text)
    print(f"parameter set: {params.name} (exported to {params_c}, which the build compiles in)", flush=True)
    if dry_run:
        pyocd = find_pyocd()
        print(shlex.join(make_cmd))
        print(shlex.join(pyocd_command(pyocd or ["pyocd"], target, elf, probe)))
        if pyocd is None:
            print("note: pyocd is not installed: pip install 'bmsfil[board]'", file=sys.stderr)
        return 0
    pyocd = find_pyocd()
    if pyocd is None:
        raise FlashError("pyocd is not installed; it is needed to flash a board: "
                         "pip install 'bmsfil[board]' (or pip install pyocd)")
    check_toolchain()
    build(make_cmd)
    if not elf.is_file():
        raise FlashError(f"the build did not produce {elf}")
    return run_pyocd(pyocd_command(pyocd, target, elf, probe), target)


def known_boards() -> list[str]:
    return sorted(d.name for d in BOARDS_DIR.iterdir() if d.is_dir()) if BOARDS_DIR.is_dir() else []


def check_board(board: str) -> FlashTarget:
    """The board's pyocd target, or a FlashError saying why it cannot be flashed."""
    if board in EMULATED:
        raise FlashError(f"{board} is an emulated board: there is nothing to flash; it is built and run "
                         f"in QEMU by `{EMULATED[board]}`", EXIT_USAGE)
    if not FIRMWARE_DIR.is_dir():
        raise FlashError(f"the firmware sources are not here ({FIRMWARE_DIR}): `bmsfil flash` runs from a "
                         "source checkout of bmsfil")
    from bmsfil_hil.flash_micropython import MICROPYTHON_BOARDS

    boards = known_boards()
    flashable = ", ".join(sorted([*FLASHABLE, *MICROPYTHON_BOARDS]))
    if board not in boards and board not in FLASHABLE:
        raise FlashError(f"unknown board {board!r}; boards: {', '.join(boards) or 'none'} "
                         f"(flashable: {flashable})", EXIT_USAGE)
    if board not in FLASHABLE:
        raise FlashError(f"board {board!r} has no flashing recipe (no pyocd target known for it); "
                         f"flashable: {flashable}", EXIT_USAGE)
    if not (BOARDS_DIR / board / "board.mk").is_file():
        raise FlashError(f"board {board!r} cannot be built: {BOARDS_DIR / board / 'board.mk'} is missing",
                         EXIT_USAGE)
    return FLASHABLE[board]


def build_command(board: str, build_dir: Path, params_c: Path) -> list[str]:
    return ["make", "-C", str(FIRMWARE_DIR), f"BOARD={board}", f"OUT={build_dir}", f"PARAMS_C={params_c}"]


def elf_path(build_dir: Path) -> Path:
    return build_dir / "bmsfil.elf"


def find_tool(name: str) -> list[str] | None:
    """How to run a Python tool (pyocd, mpremote): its executable beside this
    interpreter (a venv's bin) or on PATH, else this Python's module; None
    if none."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return [str(beside)]
    exe = shutil.which(name)
    if exe:
        return [exe]
    if importlib.util.find_spec(name) is not None:
        return [sys.executable, "-m", name]
    return None


def find_pyocd() -> list[str] | None:
    return find_tool("pyocd")


def pyocd_command(pyocd: list[str], target: FlashTarget, elf: Path, probe: str | None) -> list[str]:
    # --no-wait: fail at once when no probe is connected instead of waiting for one.
    cmd = [*pyocd, "flash", "--no-wait", "-t", target.pyocd_target]
    if probe:
        cmd += ["--probe", probe]
    return [*cmd, str(elf)]


def check_toolchain() -> None:
    missing = [tool for tool in ("make", CROSS_GCC) if shutil.which(tool) is None]
    if missing:
        raise FlashError(f"{' and '.join(missing)} not found: the firmware needs the Arm GNU toolchain; install it "
                         "with scripts/install-firmware-tools.sh (on Debian/Ubuntu: apt-get install make "
                         "gcc-arm-none-eabi libnewlib-arm-none-eabi)")


def build(make_cmd: list[str]) -> None:
    print(f"$ {shlex.join(make_cmd)}", flush=True)
    status = subprocess.run(make_cmd, check=False).returncode
    if status != 0:
        raise FlashError(f"the firmware build failed (make exited with {status})")


#: What pyocd says when it sees no probe (with --no-wait).
_NO_PROBE = ("No available debug probes", "No target device available", "No connected debug probes")


def run_pyocd(cmd: list[str], target: FlashTarget) -> int:
    """Run pyocd, echoing its output, and turn its usual failures into clear errors."""
    print(f"$ {shlex.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        sys.stdout.write(line)
        sys.stdout.flush()
    status = proc.wait()
    if status == 0:
        print(f"flashed {cmd[-1]}")
        return 0
    text = "".join(lines)
    if any(s in text for s in _NO_PROBE):
        raise FlashError(f"no debug probe found: {target.probe_hint}")
    if "not recognized" in text and target.pyocd_target in text.lower():  # "Target type '...' not recognized"
        raise FlashError(f"pyocd does not know the target {target.pyocd_target}: install its device pack once "
                         f"with `pyocd pack install {target.pack}` (needs network), then flash again")
    raise FlashError(f"pyocd failed (exit {status})")
