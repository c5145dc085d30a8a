"""Building the C core as a MicroPython native module (``bmsfil_c.mpy``).

The `micropython` target's ``native`` variant runs the C core (csrc/) inside
MicroPython through ``firmware/micropython/natmod/`` (a Makefile on
MicroPython's ``py/dynruntime.mk``). `build()` runs that ``make`` from the
checkout, as `bmsfil_hil.firmware` builds the bare-metal firmware; make
rebuilds only what changed. The first build downloads the sdist of
``mpy-cross-v6-3==1.1.1`` (MicroPython 1.23's ``py/`` and
``tools/mpy_ld.py``) with pip into the natmod build directory, so it needs
the network once; ``mpy_ld.py`` needs ``pyelftools`` in this interpreter.

Architectures: ``x64`` (the unix port on x86-64, what the harness runs) and
``armv7emsp`` (Cortex-M4F boards; built, not run here).
"""

from __future__ import annotations

import fcntl
import importlib.util
import platform
import shutil
import subprocess
import sys
from pathlib import Path

#: The estimator variants of the micropython target.
VARIANTS = ("python", "native")
DEFAULT_VARIANT = "python"
ARCHS = {"x64": "gcc", "armv7emsp": "arm-none-eabi-gcc"}
MODULE = "bmsfil_c.mpy"
PYELFTOOLS_HINT = "pip install 'bmsfil[test]' (it pins pyelftools)"


class NatmodError(RuntimeError):
    """The native module could not be built (a tool missing, no network for the sdist, a compile error)."""


def natmod_dir() -> Path:
    """firmware/micropython/natmod of the checkout this package lives in."""
    d = Path(__file__).resolve().parents[2] / "firmware" / "micropython" / "natmod"
    if not (d / "Makefile").is_file():
        raise NatmodError(f"no natmod sources at {d}: the native variant builds from a source checkout of "
                          "bmsfil (pip install -e . from the checkout)")
    return d


def host_arch() -> str:
    """The natmod architecture of this machine's MicroPython unix port."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x64"
    raise NatmodError(f"no native-module architecture for a unix port on {machine!r}: MicroPython 1.23's "
                      "dynruntime.mk builds x64 (and x86, Arm Cortex-M, Xtensa), not this machine's")


def missing_tools(arch: str) -> list[str]:
    """What the build of `arch` needs and this machine lacks, each with how to get it."""
    if arch not in ARCHS:
        raise NatmodError(f"unknown natmod architecture {arch!r}; known: {', '.join(ARCHS)}")
    missing = []
    if shutil.which("make") is None:
        missing.append("make (apt-get install make)")
    cc = ARCHS[arch]
    if shutil.which(cc) is None:
        missing.append(f"{cc} (" + ("apt-get install gcc" if arch == "x64" else
                                    "scripts/install-firmware-tools.sh: gcc-arm-none-eabi") + ")")
    if importlib.util.find_spec("elftools") is None:
        missing.append(f"pyelftools for MicroPython's mpy_ld.py in {sys.executable} ({PYELFTOOLS_HINT})")
    if importlib.util.find_spec("pip") is None:
        missing.append(f"pip in {sys.executable}, to download the sdist mpy-cross-v6-3==1.1.1")
    return missing


def build(arch: str | None = None, jobs: int = 2) -> Path:
    """Build (or reuse) ``build/<arch>/bmsfil_c.mpy``; its path."""
    arch = arch or host_arch()
    missing = missing_tools(arch)
    if missing:
        raise NatmodError(f"cannot build the native module {MODULE} for {arch}: missing " + "; ".join(missing))
    d = natmod_dir()
    args = ["make", "-s", "-C", str(d), f"-j{jobs}", f"ARCH={arch}", f"NATMOD_PYTHON={sys.executable}"]
    (d / "build").mkdir(exist_ok=True)
    with open(d / "build" / ".lock", "w") as lock:
        # One build at a time: harness runs and test sessions may start together.
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        raise NatmodError(f"building the native module {MODULE} for {arch} failed (`{' '.join(args)}`):\n"
                          f"{out[-3000:]}")
    mpy = d / "build" / arch / MODULE
    if not mpy.is_file():
        raise NatmodError(f"make succeeded but left no {mpy}")
    return mpy
