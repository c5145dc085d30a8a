"""The MicroPython target application: the CAN contract over SLCAN on a TCP socket.

The behaviour of firmware/baremetal/src/app.c and slcan.c, without the
persistence in retained RAM (a desktop process has none; HostCommand resets
are emulated in memory, see `App.on_host_command`):

- SLCAN, lines ending in CR: ``tIIIL<data>`` (and ``T``/``r``/``R``)
  frames are answered ``z\\r`` (``Z\\r`` for extended IDs); ``O``, ``L``,
  ``C``, ``S0``-``S8``, ``sXXXX``, ``Z0`` with ``\\r``; ``V`` with
  ``V1013\\r``, ``N`` with ``NBMSF\\r``, ``F`` with ``F00\\r``; anything else
  with BELL (``\\a``). The channel is open from the start.
- MeasPack opens a sample; each MeasCell of it steps that cell, its
  plausibility monitor judges the step, the capacity and R0 estimators
  (bmsfil_health in pure MicroPython, or the C core's in the native
  module) learn from it, its state-of-power search takes a sub-step on
  every second sample (bmsfil_power, or the C core's), its core-temperature
  filter follows (bmsfil_thermal, or the C core's; when the set has a
  thermal model; it starts at the cell's first valid temperature reading,
  the ambient taken as it), and the cell is answered with its EstCell,
  EstCellFlags, EstCellHealth and EstCellPower;
  after the last cell of the sample, a
  TargetStatus. A cell starts from the OCV of its first valid voltage
  (25 degC when that sample has no temperature). Faults (sequence gap, cell
  index out of range, a cell twice, bad frames, and a MeasPack or MeasCell
  whose end-to-end crc does not match: refused as a lost frame, counted in
  crc_errors) are reported in the next TargetStatus, which is also sent on connection (the boot status) and
  after a second without traffic (heartbeat).

Each accepted connection starts with a fresh application state, as a
desktop target does for each replay.
"""

import gc
import math

import bmsfil_can as bc
import bmsfil_ekf as be
import bmsfil_health as bh
import bmsfil_plaus as bp
import bmsfil_power as bw
import bmsfil_thermal as bt

MAX_CELLS = 1024
LINE_MAX = 64
EST_FLAG_MASK = 0x1F
HEARTBEAT_MS = 1000
# Bytes read or written in one piece: small enough to be found in a fragmented heap (write_lines).
CHUNK_BYTES = 256
_HEX = b"0123456789ABCDEF"


class App:
    """The application of app.c: frames in, frames out through `send(id, data8)`.

    `estimator` is the module whose `SocEkf` steps the cells: bmsfil_ekf
    (pure MicroPython, the default) or bmsfil_native (the C core as a native
    module); both have the same interface. Each cell's plausibility monitor
    is the module's `Plausibility` (bmsfil_native's: the C monitor), else
    bmsfil_plaus's (pure MicroPython).

    `icount`, where the board can count instructions (the emulated
    Cortex-M4F, port-mps2/), returns the instructions executed so far
    modulo 2**30; each cell step is timed with it and the mean per cell
    step of a sample goes out in its TargetStatus (0 = unknown, as on the
    unix port)."""

    def __init__(self, params, send, estimator=None, icount=None):
        self.params = params
        self.send = send
        self.SocEkf = (estimator or be).SocEkf
        self.Monitor = getattr(estimator or be, "Plausibility", bp.Plausibility)
        self.CellHealth = getattr(estimator or be, "CellHealth", bh.CellHealth)
        self.PowerSearch = getattr(estimator or be, "PowerSearch", bw.PowerSearch)
        # The core temperature, when the set has a thermal model: the C core's filter or bmsfil_thermal's.
        self.CellThermal = getattr(estimator or be, "CellThermal", bt.CellThermal) if params.thermal is not None else None
        self.icount = icount
        self.instructions = 0  # mean instructions per cell step of the last sample
        self.step_insns = 0
        self.steps = 0
        if icount is not None:
            t0 = icount()
            self.icount_overhead = (icount() - t0) & 0x3FFFFFFF  # the counter's own cost
        self.cells = {}  # cell index -> SocEkf (initialised cells only)
        self.monitors = {}  # cell index -> its plausibility monitor
        self.health = {}  # cell index -> its capacity and R0 estimators
        self.power = {}  # cell index -> its state-of-power search
        self.thermal = {}  # cell index -> its core-temperature filter (when the set has a thermal model)
        self.capacity_tuning = bh.CapacityTuning(params)
        self.r0_tuning = bh.R0Tuning(params)
        self.restored = {}  # cell index -> True: the next estimate says restored
        self.counter = 0
        self.start = bc.START_POWER_ON
        self.reset_state(bc.START_POWER_ON)

    def reset_state(self, start):
        self.counter = 0
        self.start = start
        self.state = bc.STATE_IDLE
        self.fault = bc.FAULT_NONE
        self.crc_errors = 0  # measurement frames refused for their crc since this start, as the firmware counts
        self.in_sample = False
        self.sequence = 0
        self.n_cells = 0
        self.answered = set()
        self.dt_s = float("nan")
        self.current_A = float("nan")
        # The state-of-power searches are not retained (the firmware keeps
        # them outside its retained RAM): every start begins them again.
        self.power = {i: self.PowerSearch(self.params) for i in self.cells} if start == bc.START_RESTORED else {}
        if start != bc.START_RESTORED:
            self.full = False  # no_room: no cell starts until a start that loses the cells
            self.cells = {}
            self.monitors = {}
            self.health = {}
            self.thermal = {}
            self.restored = {}
            self.last_sequence = None

    def send_status(self):
        self.send(bc.TARGET_STATUS, bc.encode_target_status(self.counter, self.state, self.start,
                                                            self.last_sequence, self.fault, self.instructions,
                                                            self.crc_errors))
        self.counter = (self.counter + 1) & 0xFF
        self.fault = bc.FAULT_NONE

    def send_estimate(self, index, soc, sigma, flags, valid):
        self.send(bc.EST_CELL, bc.encode_est_cell(self.sequence, index, soc, sigma, flags, valid))

    def send_flags(self, index, flags, u=0.0, sigma=bp.INF, stuck_s=0.0):
        self.send(bc.EST_CELL_FLAGS, bc.encode_est_cell_flags(self.sequence, index, flags, u, sigma, stuck_s))

    def on_frame(self, fid, extended, remote, data):
        if extended or fid not in (bc.MEAS_PACK, bc.MEAS_CELL, bc.HOST_COMMAND):
            return  # not the contract's, or another target's estimates
        if remote or len(data) != 8:
            self.fault = bc.FAULT_FRAME_ERROR
            return
        if fid == bc.MEAS_PACK:
            self.on_meas_pack(data)
        elif fid == bc.MEAS_CELL:
            self.on_meas_cell(data)
            if self.in_sample and len(self.answered) == self.n_cells:
                self.finish_sample()
        else:
            self.on_host_command(data)

    def refuse_crc(self):
        """A measurement frame whose crc does not match: refused as a lost
        frame would be (nothing of it is used), counted and reported."""
        self.crc_errors += 1
        self.fault = bc.FAULT_CRC_ERROR

    def sequence_gap(self):
        # a gap that a frame just refused for its crc caused, or the frames of a pack
        # too large to open: the status says why
        if self.fault not in (bc.FAULT_CRC_ERROR, bc.FAULT_N_CELLS_UNSUPPORTED):
            self.fault = bc.FAULT_SEQUENCE_GAP

    def on_meas_pack(self, data):
        decoded = bc.decode_meas_pack(data)
        if decoded is None:
            self.refuse_crc()
            return
        seq, dt_s, current_A, n_cells = decoded
        if self.in_sample and len(self.answered) < self.n_cells:
            self.sequence_gap()  # cells of the previous sample lost
        if self.last_sequence is not None and seq != (self.last_sequence + 1) & bc.SEQUENCE_MASK:
            self.sequence_gap()
        self.in_sample = False
        if n_cells > MAX_CELLS:
            self.fault = bc.FAULT_N_CELLS_UNSUPPORTED
            return
        self.sequence = seq
        self.n_cells = n_cells
        self.dt_s = dt_s  # a gap in seconds, inf (65535 s or more: a restart) or nan (not known)
        self.current_A = current_A
        self.answered = set()
        self.step_insns = 0
        self.steps = 0
        self.in_sample = True
        self.state = bc.STATE_RUNNING

    def on_meas_cell(self, data):
        decoded = bc.decode_meas_cell(data)
        if decoded is None:
            self.refuse_crc()
            return
        seq, index, v, t = decoded
        if not self.in_sample or seq != self.sequence:
            self.sequence_gap()  # a cell of a sample that was not opened
            return
        if index >= self.n_cells:
            self.fault = bc.FAULT_CELL_INDEX_OUT_OF_RANGE
            return
        if index in self.answered:
            self.fault = bc.FAULT_FRAME_ERROR  # the same cell twice in one sample
            return
        self.answered.add(index)
        ekf = self.cells.get(index)
        if ekf is None:
            if self.full:
                self.no_room(index)
                return
            try:
                ekf = self.SocEkf(self.params)
                ekf.start(self.current_A, v, 25.0 if math.isnan(t) else t)
            except ValueError:  # NaN, or a voltage the cell cannot have: no OCV to start from
                self.send_estimate(index, 0.0, 0.0, bc.FLAG_VOLTAGE_INVALID, False)
                self.send_flags(index, bp.VOLTAGE_RANGE)  # no filter yet: only the reading is judged
                return
            except MemoryError:
                self.no_room(index)
                return
            try:
                self.cells[index] = ekf
                self.monitors[index] = self.Monitor()
                self.health[index] = self.CellHealth(self.params, self.capacity_tuning, self.r0_tuning)
                self.power[index] = self.PowerSearch(self.params)
                if self.CellThermal is not None:
                    self.thermal[index] = self.CellThermal(self.params)
            except MemoryError:
                self.no_room(index)
                return
            self.restored.pop(index, None)
        monitor = self.monitors[index]
        health = self.health[index]
        dt, i = self.dt_s, self.current_A
        try:
            t0 = self.icount() if self.icount is not None else 0
            soc, sigma, _, flags = ekf.step(dt, i, v, t)
            verdict = monitor.step(ekf, dt, v)
            capacity_Ah, r0_ohm = health.step(ekf, dt, i, v, t, soc, sigma, flags)
            if flags & bc.FLAG_DT_INVALID and dt >= 0:
                # The filter started again (an interval beyond dt_max_s): the search
                # under way and its results are of the state before (app.c does so).
                self.power[index] = self.PowerSearch(self.params)
            power = self.power[index].step(ekf, self.sequence)
            thermal = self.thermal.get(index)
            core_C = thermal.step(ekf, dt, i, v, t) if thermal is not None else bc.NAN
            if self.icount is not None:
                self.step_insns += ((self.icount() - t0) & 0x3FFFFFFF) - self.icount_overhead
                self.steps += 1
        except (ValueError, ArithmeticError):
            self.fault = bc.FAULT_ESTIMATOR_ERROR
            self.send_estimate(index, 0.0, 0.0, 0, False)
            return
        flags &= EST_FLAG_MASK
        if self.restored.pop(index, False):
            flags |= bc.FLAG_RESTORED
        ok = not (math.isnan(soc) or math.isnan(sigma) or math.isinf(sigma))
        if not ok:
            self.fault = bc.FAULT_ESTIMATOR_ERROR
        self.send_estimate(index, soc, sigma, flags, ok)
        self.send_flags(index, verdict[0], verdict[1], verdict[2], verdict[3])
        self.send(bc.EST_CELL_HEALTH, bc.encode_est_cell_health(self.sequence, index, capacity_Ah, r0_ohm,
                                                                        core_C))
        self.send(bc.EST_CELL_POWER, bc.encode_est_cell_power(self.sequence, index, power))

    def no_room(self, index):
        """A cell whose state does not fit in the heap left: the pack has more cells
        than this board holds (MAX_CELLS is the protocol's bound, not the heap's).
        No cell is started after this until a start that loses the cells, so that a
        cell refused at one sample does not start late at another, from another
        state than the pack's first sample (its estimates then valid but unlike
        those of a target that holds the pack)."""
        for table in (self.cells, self.monitors, self.health, self.power, self.thermal):
            table.pop(index, None)
        gc.collect()
        self.full = True
        self.fault = bc.FAULT_N_CELLS_UNSUPPORTED
        self.send_estimate(index, 0.0, 0.0, 0, False)

    def finish_sample(self):
        if self.steps:
            self.instructions = max(0, (self.step_insns + self.steps // 2) // self.steps)
        self.last_sequence = self.sequence
        self.in_sample = False
        self.send_status()

    def on_host_command(self, data):
        """warm_reset: the cells' filter states survive (as the firmware's
        retained RAM does) and each cell's next estimate says restored;
        power_cycle: the saved state is lost (reported as saved_state_bad with
        a persist_error fault); restart_fresh: start fresh. Each ends with the
        restarted target's first TargetStatus (counter 0, state idle)."""
        command, key = bc.decode_host_command(data)
        if key != bc.HOST_COMMAND_KEY:
            self.fault = bc.FAULT_FRAME_ERROR
            return
        if command == 1:
            self.reset_state(bc.START_RESTORED)
            self.restored = {i: True for i in self.cells}
        elif command == 2:
            self.reset_state(bc.START_SAVED_STATE_BAD)
            self.fault = bc.FAULT_PERSIST_ERROR
        elif command == 3:
            self.reset_state(bc.START_POWER_ON)
        else:
            return
        self.send_status()


def estimator_for(variant, params):
    """The estimator module of a variant for a board's boot script:
    bmsfil_ekf (`python`) or bmsfil_native (`native`, the C core as a native
    module, which checks the parameter set now rather than at the first
    cell)."""
    if variant != "native":
        return be
    import bmsfil_native

    bmsfil_native.packed(params)
    return bmsfil_native


def _hex_value(c):
    if 48 <= c <= 57:
        return c - 48
    if 65 <= c <= 70:
        return c - 55
    if 97 <= c <= 102:
        return c - 87
    return -1


def _parse_hex(line, start, n):
    v = 0
    for i in range(start, start + n):
        d = _hex_value(line[i])
        if d < 0:
            return -1
        v = (v << 4) | d
    return v


def frame_line(fid, data):
    """An SLCAN line for a standard data frame: tIIIL<data>\\r."""
    out = bytearray(b"t")
    out.append(_HEX[(fid >> 8) & 0xF])
    out.append(_HEX[(fid >> 4) & 0xF])
    out.append(_HEX[fid & 0xF])
    out.append(_HEX[len(data)])
    for b in data:
        out.append(_HEX[b >> 4])
        out.append(_HEX[b & 0xF])
    out.append(13)
    return bytes(out)


class Slcan:
    """SLCAN lines in, replies and frames out through `write(bytes)` (slcan.c)."""

    def __init__(self, app, write):
        self.app = app
        self.write = write
        self.open = True
        self.buf = b""
        self.overlong = False
        self.bad_lines = 0

    def feed(self, chunk):
        buf = self.buf + chunk if self.buf else chunk
        pos = 0
        while True:
            end = buf.find(b"\r", pos)
            if end < 0:
                break
            line = buf[pos:end]
            pos = end + 1
            if line[:1] == b"\n":
                line = line[1:]  # tolerate CRLF from terminals
            if self.overlong or len(line) > LINE_MAX:
                self.overlong = False
                self.bell()
                continue
            self.line(line)
        rest = buf[pos:]
        if len(rest) > LINE_MAX:
            self.overlong = True  # the line is answered with BELL at its CR
            rest = b""
        self.buf = rest

    def bell(self):
        self.bad_lines += 1
        self.write(b"\a")

    def line(self, line):
        n = len(line)
        if n == 0:
            return self.bell()
        kind = line[0]
        if kind in b"tTrR":
            return self.frame(line)
        if kind in b"OLC":
            if n != 1:
                return self.bell()
            self.open = kind == 79  # 'O'
            self.write(b"\r")
        elif kind == 83:  # 'S'
            if n != 2 or not 48 <= line[1] <= 56:
                return self.bell()
            self.write(b"\r")
        elif kind == 115:  # 's'
            if n != 5 or _parse_hex(line, 1, 4) < 0:
                return self.bell()
            self.write(b"\r")
        elif kind == 86 and n == 1:  # 'V'
            self.write(b"V1013\r")
        elif kind == 78 and n == 1:  # 'N'
            self.write(b"NBMSF\r")
        elif kind == 70 and n == 1:  # 'F'
            self.write(b"F00\r")
        elif kind == 90 and line == b"Z0":
            self.write(b"\r")
        else:
            self.bell()

    def frame(self, line):
        kind = line[0]
        extended = kind in b"TR"
        remote = kind in b"rR"
        id_len = 8 if extended else 3
        n = len(line)
        if n < 2 + id_len:
            return self.bell()
        fid = _parse_hex(line, 1, id_len)
        dlc = _parse_hex(line, 1 + id_len, 1)
        if fid < 0 or dlc < 0 or dlc > 8 or fid > (0x1FFFFFFF if extended else 0x7FF):
            return self.bell()
        data = bytearray(dlc)
        if remote:
            if n != 2 + id_len:
                return self.bell()
        else:
            if n != 2 + id_len + 2 * dlc:
                return self.bell()
            for i in range(dlc):
                b = _parse_hex(line, 2 + id_len + 2 * i, 2)
                if b < 0:
                    return self.bell()
                data[i] = b
        self.write(b"Z\r" if extended else b"z\r")
        if self.open:  # the 'L' (listen only) and closed channel drop what they receive
            self.app.on_frame(fid, extended, remote, bytes(data))


def serve(params, port, host="127.0.0.1", estimator=None):
    """Serve the contract over SLCAN on host:port, one connection at a time,
    forever; `estimator` as for `App`."""
    import socket

    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(socket.getaddrinfo(host, port)[0][-1])
    server.listen(1)
    variant = (estimator or be).__name__
    print("bmsfil micropython target: SLCAN on %s:%d (%s, %s)" % (host, port, params.name, variant))
    while True:
        conn, _ = server.accept()
        try:
            _serve_connection(conn, params, estimator)
        except OSError as exc:
            print("connection ended:", exc)
        conn.close()


def _serve_connection(conn, params, estimator=None):
    import select
    import socket

    try:
        # Nagle off, so that each batch of replies leaves at once. The unix
        # port's socket module has no names for these: Linux's values.
        conn.setsockopt(getattr(socket, "IPPROTO_TCP", 6), getattr(socket, "TCP_NODELAY", 1), 1)
    except OSError:
        pass  # replies still go out, only later
    out = []

    def send_frame(fid, data):
        out.append(frame_line(fid, data))

    app = App(params, send_frame, estimator)
    link = Slcan(app, out.append)
    app.send_status()  # the boot status
    poller = select.poll()
    poller.register(conn, select.POLLIN)
    while True:
        if out:
            # Each read's replies sent together, in pieces (write_lines).
            write_lines(lambda data: _send_all(conn, data), out)
            del out[:]
        events = poller.poll(HEARTBEAT_MS)
        if not events:
            app.send_status()  # heartbeat
            continue
        for _obj, ev in events:
            if ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                return
        chunk = conn.recv(CHUNK_BYTES)
        if not chunk:
            return
        link.feed(chunk)


def write_lines(write, lines):
    """SLCAN lines out through `write(bytes)` in pieces of at most CHUNK_BYTES: a
    large pack's replies to one sample (8.7 KB for 96 cells) as one block needed
    that much contiguous heap, which the many small objects of the cells' states
    leave nowhere even with most of the heap free (the unix port's pure variant
    died at the second sample of 96 cells with 1.3 of its 2 MB free)."""
    i, n = 0, len(lines)
    while i < n:
        j, size = i + 1, len(lines[i])
        while j < n and size + len(lines[j]) <= CHUNK_BYTES:
            size += len(lines[j])
            j += 1
        write(b"".join(lines[i:j]))
        i = j


def _send_all(conn, data):
    view = memoryview(data)
    while len(view):
        n = conn.send(view)
        view = view[n:]
