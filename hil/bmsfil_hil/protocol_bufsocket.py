"""pyserial URL handler ``bufsocket://HOST:PORT``: pyserial's ``socket://``
with a receive buffer and Nagle's algorithm off.

python-can's ``slcan`` interface reads one byte per call; over plain
``socket://`` each byte costs a select() and a recv(). Here a call takes it
from a buffer filled by one recv() of whatever has arrived, and every small
write (one SLCAN line) leaves at once (TCP_NODELAY). Registered with pyserial
by `bmsfil_hil.qemu` (``serial.protocol_handler_packages``), so that
``can.Bus(interface="slcan", channel="bufsocket://127.0.0.1:PORT")`` works.
"""

from __future__ import annotations

import os
import select
import socket
import time

from serial import PortNotOpenError, SerialException, Timeout
from serial.urlhandler import protocol_socket

SCHEME = "bufsocket"
#: How long a read polls before it sleeps, s.
SPIN_S = 0.002


class Serial(protocol_socket.Serial):
    _rx = bytearray()

    def open(self) -> None:
        self._rx = bytearray()
        super().open()
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def from_url(self, url: str) -> tuple[str, int]:
        if not url.startswith(f"{SCHEME}://"):
            raise SerialException(f"expected {SCHEME}://<host>:<port>, got {url!r}")
        return super().from_url("socket://" + url[len(SCHEME) + 3:])

    @property
    def in_waiting(self) -> int:
        if not self.is_open:
            raise PortNotOpenError()
        self._fill(0.0)
        return len(self._rx)

    def _fill(self, wait: float | None) -> None:
        ready: list[object] = []
        if wait is None or wait > 0.0:
            # Poll for up to SPIN_S before sleeping in select(): on a virtual
            # machine a core that sleeps takes milliseconds to wake when the
            # answer comes (lock-step over QEMU: 3.4 ms a round trip with the
            # harness sleeping, 1.1 ms with it polling; docs/firmware.md).
            spin_until = time.perf_counter() + SPIN_S
            while not ready and time.perf_counter() < spin_until:
                os.sched_yield()  # to QEMU's threads, where they wait for this core
                ready, _, _ = select.select([self._socket], [], [], 0.0)
        if not ready:
            ready, _, _ = select.select([self._socket], [], [], wait)
        if ready:
            try:
                chunk = self._socket.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                raise SerialException("socket disconnected")
            self._rx += chunk

    def read(self, size: int = 1) -> bytes:
        if not self.is_open:
            raise PortNotOpenError()
        timeout = Timeout(self._timeout)
        while len(self._rx) < size:
            self._fill(timeout.time_left())
            if timeout.expired():
                break
        out = bytes(self._rx[:size])
        del self._rx[:size]
        return out

    def reset_input_buffer(self) -> None:
        self._rx.clear()
        super().reset_input_buffer()
