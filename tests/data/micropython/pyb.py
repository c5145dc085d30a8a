"""A stand-in for pyb.CAN on MicroPython's unix port (tests only: there is
no pyboard here), with the signatures and behaviour pyb.CAN documents
(MicroPython 1.22+): CAN(bus, mode, baudrate=, auto_restart=),
setfilter(bank, mode, fifo, params), rxcallback(fifo, fn) calling fn(can,
reason) from the receive interrupt, any(fifo), recv(fifo, list, timeout=)
filling [id, extended, rtr, fmi, memoryview], send(data, id, timeout=)
raising OSError when the frame did not go out in time, info([list]) with
the error-passive and bus-off counts at [3] and [4].

The frames come from the JSON file named by $BMSFIL_TEST_FRAMES: [[id, hex
data], ...] and arrive as a lock-step host sends them: one sample's frames
(a MeasPack and what follows it) after each TargetStatus the application
sends (the first after its boot status), each arrival announced to the callback as the interrupt
would (reason 0, with the heap locked: an interrupt handler must not
allocate; on the unix port the drain it schedules runs before the heap is
unlocked, so the drain is held to the same). $BMSFIL_TEST_EVENTS (JSON {sample: event}) adds, as that
sample's frames arrive: "overflow" (the FIFO overflowed: reason 2),
"bus_off" (the controller went bus-off and came back), "send_full" (the
next reply does not go out). The program ends (SystemExit) at the second
TargetStatus sent after the last frame was taken: the one that closes the
last sample, then the heartbeat. Prints each frame sent as "TX id hex" and
the filter set as "FILTER ...".
"""

import json
import os
import sys

import micropython

STATUS_ID = 0x300
MEAS_PACK_ID = 0x100


class CAN:
    NORMAL = 0
    MASK16 = 0

    def __init__(self, bus, mode=None, baudrate=0, auto_restart=False):
        print("CAN %d %d %r" % (bus, baudrate, auto_restart))
        with open(os.getenv("BMSFIL_TEST_FRAMES")) as f:
            frames = json.load(f)
        events = os.getenv("BMSFIL_TEST_EVENTS")
        self.events = {int(k): v for k, v in json.loads(events).items()} if events else {}
        self.samples = []  # the frames of each sample
        for fid, hexdata in frames:
            if fid == MEAS_PACK_ID or not self.samples:
                self.samples.append([])
            data = bytes.fromhex(hexdata)
            if len(data) != 8:
                raise ValueError("the stand-in carries the contract's 8-byte frames only")
            self.samples[-1].append((fid, data))
        self.next_sample = 0
        self.fifo = []
        self.counters = [0, 0, 0, 0, 0, 0, 0, 0]
        self.callback = None
        self.full = False
        self.idle_statuses = 0

    def setfilter(self, bank, mode, fifo, params):
        print("FILTER %r" % ((bank, mode, fifo, tuple(params)),))

    def rxcallback(self, fifo, fn):
        self.callback = fn

    def _irq(self, reason):
        micropython.heap_lock()
        try:
            self.callback(self, reason)
        finally:
            micropython.heap_unlock()

    def _arrive(self):
        if self.next_sample == len(self.samples):
            return False
        k = self.next_sample
        self.next_sample += 1
        event = self.events.get(k)
        if event == "bus_off":
            self.counters[4] += 1
        elif event == "send_full":
            self.full = True
        self.fifo.extend(self.samples[k])
        self._irq(0)
        if event == "overflow":
            self._irq(2)
        return True

    def info(self, lst=None):
        if lst is None:
            return list(self.counters)
        for i in range(8):
            lst[i] = self.counters[i]
        return lst

    def any(self, fifo):
        return bool(self.fifo)

    def recv(self, fifo, lst, timeout=5000):
        # Allocates nothing (it may run from a drain scheduled with the heap
        # still locked): every frame of the contract fills the list's 8 bytes,
        # so the memoryview keeps its size.
        if not self.fifo:
            raise OSError(110)  # ETIMEDOUT, as pyb.CAN raises it
        fid, data = self.fifo.pop(0)
        lst[0] = fid
        lst[1] = False
        lst[2] = False
        lst[3] = 0
        view = lst[4]
        for i in range(8):
            view[i] = data[i]
        return lst

    def send(self, data, fid, timeout=0):
        if self.full:
            self.full = False
            raise OSError(110)
        print("TX %d %s" % (fid, bytes(data).hex()))
        if fid == STATUS_ID and not self._arrive() and not self.fifo:
            self.idle_statuses += 1
            if self.idle_statuses == 2:
                sys.exit(0)
