"""The CAN contract on a board's own CAN controller, through `pyb.CAN`
(STM32 ports: the pyboard and other STM32F4/F7 boards of MicroPython >= 1.22).

app.py's application (App) with a CAN peripheral instead of SLCAN: the
controller receives the host's IDs (0x100-0x1FF: MeasPack, MeasCell,
HostCommand) through one hardware filter into FIFO 0, each frame goes to
`App.on_frame`, and each reply goes out with `CAN.send`. As the bare-metal
firmware does (firmware/baremetal/src/app.c, fw_app_poll), a fault of the
bus is reported, never absorbed: a receive FIFO overrun (frames lost) or
the controller entering error-passive or bus-off since the last look sets
the next TargetStatus's fault to rx_overflow; a reply that no transmit
mailbox took within SEND_TIMEOUT_MS is counted in `send_errors`. The
controller leaves bus-off by itself (auto_restart). A TargetStatus goes out
at start and after a second without a frame (the heartbeat).

`recv` fills one preallocated list and buffer (no allocation per frame).
"""

import app
import bmsfil_ekf

FIFO = 0
HEARTBEAT_MS = 1000
SEND_TIMEOUT_MS = 20
#: The host-to-target IDs of the contract: 0x100-0x1FF, standard frames.
HOST_ID = 0x100
HOST_MASK = 0x700
#: CAN.info() fields: error-passive and bus-off entries counted by the controller's driver.
INFO_PASSIVE, INFO_BUS_OFF = 3, 4
#: CAN.rxcallback reasons: 2 is "FIFO overflowed, a frame was lost".
RX_OVERFLOW = 2


class PybCanLink:
    """Frames between a `pyb.CAN`-like controller and an App.

    `can` needs the methods of pyb.CAN used here: setfilter, recv(fifo,
    list, timeout=ms) filling [id, extended, rtr, fmi, memoryview] and
    raising OSError on timeout, send(data, id, timeout=ms) raising OSError
    when no mailbox frees, rxcallback(fifo, fn) and info(list)."""

    def __init__(self, can, params, estimator=None, filter_mode=None):
        self.can = can
        self.app = app.App(params, self.send, estimator)
        self.send_errors = 0
        self.overflows = 0
        self.bus_events = 0
        self._overflowed = False
        # CAN.info fills a given list: two, swapped, so that a look allocates nothing.
        self._info = can.info([0] * 8)
        self._info_now = [0] * 8
        self._buf = bytearray(8)
        self._frame = [0, False, False, 0, memoryview(self._buf)]
        # Bank 0, two (id, mask) pairs of 16-bit filters (filter_mode: CAN.MASK16).
        can.setfilter(0, filter_mode, FIFO, (HOST_ID, HOST_MASK, HOST_ID, HOST_MASK))
        can.rxcallback(FIFO, self._on_rx_event)

    def _on_rx_event(self, _can, reason):
        # Interrupt context: no allocation, just note it.
        if reason == RX_OVERFLOW:
            self._overflowed = True

    def send(self, fid, data):
        try:
            self.can.send(data, fid, timeout=SEND_TIMEOUT_MS)
        except OSError:
            self.send_errors += 1

    def check_bus(self):
        """Report what the controller saw since the last look: a lost frame,
        or error-passive / bus-off entered."""
        if self._overflowed:
            self._overflowed = False
            self.overflows += 1
            self.app.fault = app.bc.FAULT_RX_OVERFLOW
        info = self.can.info(self._info_now)
        if info[INFO_PASSIVE] != self._info[INFO_PASSIVE] or info[INFO_BUS_OFF] != self._info[INFO_BUS_OFF]:
            self.bus_events += 1
            self.app.fault = app.bc.FAULT_RX_OVERFLOW
        self._info_now, self._info = self._info, info

    def poll(self, timeout_ms):
        """Take one frame (waiting up to timeout_ms) and hand it to the app;
        False if none came."""
        f = self._frame
        try:
            self.can.recv(FIFO, f, timeout=timeout_ms)
        except OSError:
            return False
        # bytes() copies: the app may keep what it is given.
        self.app.on_frame(f[0], f[1], f[2], bytes(f[4]))
        return True

    def serve(self):
        """Run the contract forever."""
        self.app.send_status()  # the boot status
        while True:
            got = self.poll(HEARTBEAT_MS)
            self.check_bus()
            if not got:
                self.app.send_status()  # heartbeat


def run(params, estimator=None, bus=1, baudrate=500000):
    """Open CAN `bus` of this board at `baudrate` and serve the contract forever."""
    from pyb import CAN

    can = CAN(bus, CAN.NORMAL, baudrate=baudrate, auto_restart=True)
    link = PybCanLink(can, params, estimator, CAN.MASK16)
    print("bmsfil micropython target: CAN(%d) at %d bit/s (%s, %s)"
          % (bus, baudrate, params.name, (estimator or bmsfil_ekf).__name__))
    link.serve()
