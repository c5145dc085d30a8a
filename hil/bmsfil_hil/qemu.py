"""The `qemu` target: the bare-metal firmware on QEMU's mps2-an386 (a
Cortex-M4F), reached over SLCAN on the emulated UART.

`QemuTarget.start()` builds (or reuses) the image, starts
``qemu-system-arm -M mps2-an386 -icount shift=N`` with UART0 on a TCP
socket (``server=on,wait=on,nodelay=on``: QEMU waits for the harness before
running the guest, and sends each reply at once), and connects python-can's
``slcan`` interface to ``bufsocket://127.0.0.1:PORT`` (pyserial's
``socket://`` with a receive buffer and Nagle off, protocol_bufsocket.py). `stop()` closes the bus
and ends QEMU, also after a failed run; QEMU's own messages are kept in a
log file and quoted when it fails.

Instruction counts: with -icount the virtual clock advances a fixed number
of nanoseconds per guest instruction, so the firmware's SysTick counts
instructions exactly (the firmware calibrates the ratio itself) and reports
instructions per cell step in every TargetStatus.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import can
import serial

from bmsfil.params import ParameterSet
from bmsfil_hil.firmware import INSTALL_HINT, Image, build
from bmsfil_hil.processes import end_process, start_process

BOARD = "qemu-mps2-an386"
MACHINE = "mps2-an386"
#: 2**10 ns of virtual time per instruction: SysTick (25 MHz) then advances
#: 25.6 ticks per instruction, fine enough to count single instructions.
ICOUNT_SHIFT = 10


# bufsocket:// (protocol_bufsocket.py): socket:// with a receive buffer and TCP_NODELAY.
if "bmsfil_hil" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("bmsfil_hil")


class QemuError(RuntimeError):
    """QEMU could not be started or stopped answering."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class QemuTarget:
    name = "qemu"

    def __init__(self, params: ParameterSet | None = None, image: Image | None = None,
                 connect_timeout_s: float = 20.0) -> None:
        self.params = params
        self.image = image
        self.connect_timeout_s = connect_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._bus: can.BusABC | None = None
        self._log_dir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None

    def command(self, port: int) -> list[str]:
        assert self.image is not None
        return [
            "qemu-system-arm", "-M", MACHINE, "-nodefaults", "-display", "none", "-monitor", "none",
            "-icount", f"shift={ICOUNT_SHIFT}",
            "-chardev", f"socket,id=uart0,host=127.0.0.1,port={port},server=on,wait=on,nodelay=on",
            "-serial", "chardev:uart0",
            "-kernel", str(self.image.elf),
        ]

    def start(self) -> can.BusABC:
        if shutil.which("qemu-system-arm") is None:
            raise QemuError(f"qemu-system-arm not found: install it with {INSTALL_HINT}")
        if self.image is None:
            self.image = build(BOARD, self.params)
        self._log_dir = tempfile.TemporaryDirectory(prefix="bmsfil-qemu-")
        self.log_path = Path(self._log_dir.name) / "qemu.log"
        deadline = time.monotonic() + self.connect_timeout_s
        last_error: Exception | None = None
        for _attempt in range(3):  # the free port may be taken before QEMU binds it
            port = _free_port()
            with open(self.log_path, "wb") as log:
                self._proc = start_process(self.command(port), stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT)
            while time.monotonic() < deadline and self._proc.poll() is None:
                try:
                    self._bus = can.Bus(interface="slcan", channel=f"bufsocket://127.0.0.1:{port}",
                                        sleep_after_open=0)
                    break
                except can.CanInitializationError as exc:
                    last_error = exc
                    time.sleep(0.02)
            if self._bus is not None:
                break
            self._end_process()
        if self._bus is None:
            self.stop()
            raise QemuError(f"could not connect to QEMU's UART: {last_error}; QEMU said: {self.qemu_output()}")
        return self._bus

    def qemu_output(self) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return "(no output)"
        text = self.log_path.read_text(errors="replace").strip()
        return text[-2000:] if text else "(no output)"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _end_process(self) -> None:
        proc, self._proc = self._proc, None
        end_process(proc)

    def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.shutdown()
            except (can.CanError, OSError):
                pass  # QEMU may already be gone; the process is ended below either way
        self._end_process()
        if self._log_dir is not None:
            self._log_dir.cleanup()
            self._log_dir = None
