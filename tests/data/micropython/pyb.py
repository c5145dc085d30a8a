"""A stand-in for pyb.CAN on MicroPython's unix port (tests only: there is
no pyboard here), with the signatures and behaviour pyb.CAN documents
(MicroPython 1.22+): CAN(bus, mode, baudrate=, auto_restart=),
setfilter(bank, mode, fifo, params), rxcallback(fifo, fn) calling fn(can,
reason), info([list]) with the error-passive and bus-off counts at [3] and [4],
recv(fifo, list, timeout=) filling [id, extended, rtr, fmi, memoryview]
or raising OSError on timeout, send(data, id, timeout=) raising OSError
when no mailbox frees.

The frames come from the JSON file named by $BMSFIL_TEST_FRAMES: [[id, hex
data, event], ...]; event "overflow": the FIFO overflowed before this
frame, "bus_off": the controller went bus-off (and came back), "send_full":
the next reply finds no free mailbox. After the last frame, one receive
times out (the heartbeat) and the next ends the program (SystemExit).
Prints each frame sent as "TX id hex" and the filters set as "FILTER ...".
"""

import json
import os
import sys


class CAN:
    NORMAL = 0
    MASK16 = 0

    def __init__(self, bus, mode=None, baudrate=0, auto_restart=False):
        print("CAN %d %d %r" % (bus, baudrate, auto_restart))
        with open(os.getenv("BMSFIL_TEST_FRAMES")) as f:
            self.frames = json.load(f)
        self.k = 0
        self.counters = [0, 0, 0, 0, 0, 0, 0, 0]
        self.callback = None
        self.timed_out = False
        self.full = False
        self.view = None

    def setfilter(self, bank, mode, fifo, params):
        print("FILTER %r" % ((bank, mode, fifo, tuple(params)),))

    def rxcallback(self, fifo, fn):
        self.callback = fn

    def info(self, lst=None):
        if lst is None:
            return list(self.counters)
        for i in range(8):
            lst[i] = self.counters[i]
        return lst

    def recv(self, fifo, lst, timeout=5000):
        if self.k == len(self.frames):
            if self.timed_out:
                sys.exit(0)
            self.timed_out = True
            raise OSError(110)  # ETIMEDOUT, as pyb.CAN raises it
        fid, hexdata, event = self.frames[self.k]
        self.k += 1
        if event == "overflow":
            self.callback(self, 2)
        elif event == "bus_off":
            self.counters[4] += 1
        elif event == "send_full":
            self.full = True
        data = bytes.fromhex(hexdata)
        lst[0], lst[1], lst[2], lst[3] = fid, False, False, 0
        if self.view is None:
            self.view = lst[4]  # the caller's buffer, room for 8 bytes
        for i in range(len(data)):
            self.view[i] = data[i]
        # pyb.CAN resizes the list's memoryview in place; a stand-in in
        # Python cannot, so it puts a view of the same buffer of that size.
        lst[4] = self.view[:len(data)]
        return lst

    def send(self, data, fid, timeout=0):
        if self.full:
            self.full = False
            raise OSError(110)
        print("TX %d %s" % (fid, bytes(data).hex()))
