"""The CAN contract on a board's own CAN controller, through `pyb.CAN`
(STM32 ports: the pyboard and other STM32F4/F7 boards of MicroPython >= 1.22).

app.py's application (App) with a CAN peripheral instead of SLCAN: the
controller receives the host's IDs (0x100-0x1FF: MeasPack, MeasCell,
HostCommand) through one hardware filter into FIFO 0, each frame goes to
`App.on_frame`, and each reply goes out with `CAN.send`.

Receiving: the controller's FIFO holds 3 frames, and in lock-step the host
sends a sample's MeasPack and all its MeasCells back to back (a frame per
0.25 ms at 500 kbit/s), faster than a cell step in MicroPython. So the
receive interrupt (`rxcallback`) schedules a drain (`micropython.schedule`,
which runs between bytecodes, also in the middle of a cell step) that moves
the FIFO's frames into a ring of RING preallocated frames; the application
takes them from the ring. Nothing is allocated per frame, nor in the
interrupt.

As the bare-metal firmware does (firmware/baremetal/src/app.c,
fw_app_poll), a fault of the bus is reported, never absorbed: a frame lost
(the FIFO overran, or the ring was full) or the controller entering
error-passive or bus-off sets the fault of the TargetStatus that ends the
sample in progress to rx_overflow. A reply is sent with a timeout
(`send` waits until the frame is on the bus): one the bus did not take
within SEND_TIMEOUT_MS (no other node acknowledging, a bus-off) is counted
in `send_errors`. The controller leaves bus-off by itself (auto_restart). An
error raised while handling a frame (a MemoryError, say) is printed on the
console and reported as estimator_error, and the board goes on serving. A
TargetStatus goes out at start and after a second without a frame (the
heartbeat).
"""

import sys
import time

import micropython

import app
import bmsfil_ekf

FIFO = 0
RING = 64
HEARTBEAT_MS = 1000
SEND_TIMEOUT_MS = 20
#: The host-to-target IDs of the contract: 0x100-0x1FF, standard frames.
HOST_ID = 0x100
HOST_MASK = 0x700
#: CAN.info() fields: error-passive and bus-off entries counted by the controller's driver.
INFO_PASSIVE, INFO_BUS_OFF = 3, 4
#: CAN.rxcallback reasons: 0 a frame arrived in an empty FIFO, 1 the FIFO
#: is full, 2 it overflowed (a frame was lost).
RX_FULL, RX_OVERFLOW = 1, 2


class PybCanLink:
    """Frames between a `pyb.CAN`-like controller and an App.

    `can` needs the methods of pyb.CAN used here: setfilter(bank, mode,
    fifo, params) (`filter_mode`: the controller class's MASK16), any(fifo),
    recv(fifo, list, timeout=ms) filling [id, extended, rtr, fmi,
    memoryview], send(data, id, timeout=ms) raising OSError when the frame
    did not go out in time, rxcallback(fifo, fn) and info(list)."""

    def __init__(self, can, params, filter_mode, estimator=None):
        self.can = can
        self.app = app.App(params, self.send, estimator)
        self.send_errors = 0
        self.lost = 0          # times frames were lost (FIFO overrun or ring full)
        self.bus_events = 0    # error-passive or bus-off entries
        self._lost_flag = False
        self._scheduled = False
        self._ring = [[0, False, False, 0, memoryview(bytearray(8))] for _ in range(RING)]
        self._head = 0         # next slot the drain fills
        self._tail = 0         # next slot the application takes
        # CAN.info fills a given list: two, swapped, so that a look allocates nothing.
        self._info = can.info([0] * 8)
        self._info_now = [0] * 8
        # Bound methods made once: the interrupt must not allocate.
        self._drain_ref = self._drain
        self._irq_ref = self._on_rx_event
        # Bank 0, two (id, mask) pairs of 16-bit filters.
        can.setfilter(0, filter_mode, FIFO, (HOST_ID, HOST_MASK, HOST_ID, HOST_MASK))
        can.rxcallback(FIFO, self._irq_ref)

    def _on_rx_event(self, _can, reason):
        # Interrupt context: no allocation, only flags and a scheduled drain.
        if reason == RX_OVERFLOW:
            self._lost_flag = True
        if not self._scheduled:
            self._scheduled = True
            try:
                micropython.schedule(self._drain_ref, None)
            except RuntimeError:
                self._scheduled = False  # the queue is full: the main loop drains

    def _drain(self, _arg):
        """Move what the FIFO holds into the ring."""
        self._scheduled = False
        can = self.can
        while can.any(FIFO):
            nxt = (self._head + 1) % RING
            if nxt == self._tail:
                self._lost_flag = True  # the ring is full: the frame stays in the FIFO, which overflows next
                return
            can.recv(FIFO, self._ring[self._head], timeout=0)
            self._head = nxt

    def send(self, fid, data):
        try:
            self.can.send(data, fid, timeout=SEND_TIMEOUT_MS)
        except OSError:
            self.send_errors += 1

    def check_bus(self):
        """Report what the controller saw since the last look: a lost frame,
        or error-passive / bus-off entered."""
        if self._lost_flag:
            self._lost_flag = False
            self.lost += 1
            self.app.fault = app.bc.FAULT_RX_OVERFLOW
        info = self.can.info(self._info_now)
        if info[INFO_PASSIVE] != self._info[INFO_PASSIVE] or info[INFO_BUS_OFF] != self._info[INFO_BUS_OFF]:
            self.bus_events += 1
            self.app.fault = app.bc.FAULT_RX_OVERFLOW
        self._info_now, self._info = self._info, info

    def next_frame(self, timeout_ms):
        """The next frame of the ring, waiting up to timeout_ms; None if none came."""
        start = time.ticks_ms()
        while self._tail == self._head:
            self._drain(None)  # also what a missed or refused schedule left in the FIFO
            if self._tail != self._head:
                break
            if time.ticks_diff(time.ticks_ms(), start) >= timeout_ms:
                return None
            time.sleep_ms(1)
        f = self._ring[self._tail]
        self._tail = (self._tail + 1) % RING
        return f

    def serve(self):
        """Run the contract forever."""
        self.app.send_status()  # the boot status
        while True:
            f = self.next_frame(HEARTBEAT_MS)
            self.check_bus()  # before the frame: a fault goes out with the sample it hit
            if f is None:
                self.app.send_status()  # heartbeat
                continue
            try:
                # bytes() copies: the slot is reused when the ring comes round.
                self.app.on_frame(f[0], f[1], f[2], bytes(f[4]))
            except Exception as exc:  # noqa: BLE001 - the board must keep serving
                sys.print_exception(exc)
                self.app.fault = app.bc.FAULT_ESTIMATOR_ERROR


def run(params, estimator=None, bus=1, baudrate=500000):
    """Open CAN `bus` of this board at `baudrate` and serve the contract forever."""
    from pyb import CAN

    can = CAN(bus, CAN.NORMAL, baudrate=baudrate, auto_restart=True)
    link = PybCanLink(can, params, CAN.MASK16, estimator)
    print("bmsfil micropython target: CAN(%d) at %d bit/s (%s, %s)"
          % (bus, baudrate, params.name, (estimator or bmsfil_ekf).__name__))
    link.serve()
