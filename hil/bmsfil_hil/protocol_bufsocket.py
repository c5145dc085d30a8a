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

import select
import socket

from serial import PortNotOpenError, SerialException, Timeout
from serial.urlhandler import protocol_socket

SCHEME = "bufsocket"


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
