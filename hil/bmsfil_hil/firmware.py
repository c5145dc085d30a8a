"""Building the bare-metal firmware from the source checkout.

The firmware (``firmware/baremetal/``, one board from ``boards/``) is built
with ``make`` and Debian's ``gcc-arm-none-eabi``; ``scripts/install-firmware-tools.sh``
installs the toolchain and QEMU. Images go to
``firmware/baremetal/build/<board>/`` and are rebuilt only when a source or
the parameter set changed (make decides).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bmsfil.export_c import params_to_c
from bmsfil.params import ParameterSet

INSTALL_HINT = "scripts/install-firmware-tools.sh (Debian: gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm)"


class FirmwareError(RuntimeError):
    """The firmware could not be built (toolchain missing, compile error, budget exceeded)."""


def source_root() -> Path:
    """The checkout the firmware is built from (this package lives in its hil/)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "firmware" / "baremetal" / "Makefile").is_file():
        raise FirmwareError(
            f"no firmware sources at {root}/firmware/baremetal: the firmware targets build from a source "
            "checkout of bmsfil (install it with `pip install -e .` from the checkout)"
        )
    return root


def boards() -> list[str]:
    """Every board with a board.mk under boards/."""
    return sorted(p.parent.name for p in (source_root() / "boards").glob("*/board.mk"))


@dataclass(frozen=True)
class Image:
    board: str
    elf: Path
    build_dir: Path
    size: dict[str, object]  # from size_report.py --json


def build(board: str, params: ParameterSet | None = None, jobs: int = 2) -> Image:
    """Build (or reuse) the image for `board` with `params` (default: the bundled set).

    The size report's checks run as part of the build: a double-precision
    helper or libm symbol in the estimator, or an estimator over its flash
    budget, fails it.
    """
    root = source_root()
    if board not in boards():
        raise FirmwareError(f"unknown board {board!r}; boards: {', '.join(boards())}")
    if shutil.which("arm-none-eabi-gcc") is None:
        raise FirmwareError(f"arm-none-eabi-gcc not found: install the firmware toolchain with {INSTALL_HINT}")
    fw = root / "firmware" / "baremetal"
    args = ["make", "-s", "-C", str(fw), f"-j{jobs}", f"BOARD={board}"]
    build_dir = fw / "build" / board
    if params is not None:
        build_dir, params_c, text = params_build(fw, board, params)
        write_params_c(params_c, text)
        args += [f"OUT={build_dir}", f"PARAMS_C={params_c}"]
    size_json = build_dir / "size.json"
    args += ["all", "size", f"SIZE_JSON={size_json}"]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FirmwareError(f"firmware build for {board} failed:\n{proc.stdout}{proc.stderr}".rstrip())
    return Image(board, build_dir / "bmsfil.elf", build_dir, json.loads(size_json.read_text()))


def params_build(fw: Path, board: str, params: ParameterSet) -> tuple[Path, Path, str]:
    """Where the firmware in `fw` (firmware/baremetal) is built for `board` with `params`:
    a folder of its own, ``build/<board>-<sha256 of the set's C>/`` (an image of one set
    never reuses objects of another's), its ``params.c``, and that C (`bmsfil export`'s)."""
    text = params_to_c(params, source=params.name)
    build_dir = fw / "build" / f"{board}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return build_dir, build_dir / "params.c", text


def write_params_c(params_c: Path, text: str) -> None:
    """Write a build's params.c (params_build), unless it holds that text already (make then rebuilds nothing)."""
    params_c.parent.mkdir(parents=True, exist_ok=True)
    if not params_c.is_file() or params_c.read_text() != text:
        params_c.write_text(text)
