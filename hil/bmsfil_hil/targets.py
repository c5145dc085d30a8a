"""Targets under test, each reached through a python-can `Bus`.

A target is anything that answers the CAN contract: it takes MeasPack and
MeasCell frames and sends an EstCell frame per cell per sample (and, where
it runs the plausibility monitor, an EstCellFlags after it). The harness
only ever sees the bus that `Target.start()` returns, so an emulated board
(SLCAN over a socket) or a real adapter slots in with an adapter of its own;
the replay and the scoring do not change.

Here: `host` (the C core through cffi) and `reference` (the float64 model),
each answering on an in-process bus (`InlineBus`); `qemu` (qemu.py); and
`board`, any python-can bus to a target already running.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from typing import Protocol

import can

from bmsfil import can_contract as cc
from bmsfil.core import SocEstimator, StepResult, filter_restarted, plausible_voltage
from bmsfil.health import CellHealth
from bmsfil.power import SOP_EVERY, PowerSearch
from bmsfil.params import ParameterSet, ThermalParams
from bmsfil.plausibility import PlausibilityMonitor
from bmsfil.thermal import CellThermal
from bmsfil.reference import ReferenceSocEstimator
from bmsfil_hil.busopts import BUS_OPEN_ERRORS, open_failure, resolve_bus


class Target(Protocol):
    name: str

    def start(self) -> can.BusABC:
        """Bring the target up; returns the bus the harness talks to it on."""

    def stop(self) -> None:
        """Shut the target down and release its bus; safe to call twice."""


class Estimator(Protocol):
    params: ParameterSet

    def init_ocv(self, voltage_V: float, temp_C: float) -> None: ...
    def start(self, current_A: float, voltage_V: float, temp_C: float) -> None: ...
    def step(self, dt_s: float, current_A: float, voltage_V: float, temp_C: float) -> StepResult: ...


class InlineBus(can.BusABC):
    """A python-can bus whose far end is a function on the caller's thread:
    every frame sent is handed to `answer` at once, and the frames it
    returns are what `recv` gives next, in order. Nothing arrives on its
    own, so a `recv` with nothing queued waits out its timeout and returns
    None, as a silent bus would. An exception in `answer` is raised from
    `send` as a `can.CanOperationError`, a bus fault the harness reports."""

    def __init__(self, answer: Callable[[can.Message], list[can.Message]], channel: str = "inline") -> None:
        self._answer = answer
        self._queue: collections.deque[can.Message] = collections.deque()
        super().__init__(channel=channel)

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        try:
            replies = self._answer(msg)
        except Exception as exc:  # the target failed: a fault on the bus, not a crash of the run
            raise can.CanOperationError(f"{self.channel_info}: the target failed on frame "
                                        f"0x{msg.arbitration_id:03X}: {exc!r}") from exc
        for reply in replies:
            reply.is_rx = True
        self._queue.extend(replies)

    def recv(self, timeout: float | None = None) -> can.Message | None:
        # A frame waiting and no filters: python-can's recv() would return it
        # too, after a debug log and a filter check that cost as much as a
        # decode (a lock-step replay receives four frames a sample).
        if self._queue and self._filters is None:
            return self._received()
        return super().recv(timeout)

    def _received(self) -> can.Message:
        """The next reply, stamped when the harness takes it (as an interface
        stamps a frame on reception), so that a log's times never go back."""
        msg = self._queue.popleft()
        msg.timestamp = time.time()
        return msg

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        if self._queue:
            return self._received(), False
        # Nothing arrives on its own: wait out the timeout (None: in steps,
        # as python-can's recv asks again, rather than spinning).
        time.sleep(0.1 if timeout is None else timeout)
        return None, False


class EstimatorTarget:
    """An estimator per cell answering the contract in process, on an
    `InlineBus`: the harness's send of a MeasCell steps that cell, on the
    harness's thread, and its EstCell is the next frame received. The
    frames are the same as on any bus; no thread hand-off, so a lock-step
    replay runs at the speed of the encode, the step and the decode.

    Each cell starts from the OCV of the first sample that carries a
    voltage the cell can have (`bmsfil.core.plausible_voltage`); before it,
    a sample is answered as one without a voltage. Frames that do not
    decode are answered with a TargetStatus fault frame and otherwise
    ignored; a
    measurement frame whose crc does not match (a damaged frame) is refused
    as a lost one would be and counted: its TargetStatus says crc_error and
    carries the count (crc_errors), as the firmware's does.

    With `monitored` (the C core: `SocEstimator`) every cell also has a
    plausibility monitor (`bmsfil.plausibility.PlausibilityMonitor`, the C
    core's `bf_plaus_step`), capacity and R0 estimators
    (`bmsfil.health.CellHealth`) and a state-of-power search
    (`bmsfil.power.PowerSearch`, one sub-step on every `SOP_EVERY`-th
    sample) stepped after its filter, and each EstCell is followed by the
    cell's EstCellFlags, EstCellHealth and EstCellPower, as the firmware
    sends them. Given `thermal` (the parameter set's thermal model), each
    monitored cell also runs the core-temperature filter
    (`bmsfil.thermal.CellThermal`) and EstCellHealth carries its core
    temperature; without, core_temp_valid is 0.
    """

    def __init__(self, name: str, params: ParameterSet, make_estimator: Callable[[ParameterSet], Estimator],
                 monitored: bool = False, thermal: ThermalParams | None = None) -> None:
        self.name = name
        self._params = params
        self._make = make_estimator
        self._monitored = monitored
        self._thermal_params = thermal
        self._monitors: dict[int, PlausibilityMonitor] = {}
        self._health: dict[int, CellHealth] = {}
        self._thermal: dict[int, CellThermal] = {}
        self._power: dict[int, PowerSearch] = {}
        self._bus: InlineBus | None = None
        self._cells: dict[int, Estimator] = {}
        self._pack: cc.MeasPack | None = None
        self._counter = 0
        self._crc_errors = 0

    def start(self) -> can.BusABC:
        self._cells, self._pack, self._counter, self._crc_errors = {}, None, 0, 0
        self._monitors, self._health, self._power, self._thermal = {}, {}, {}, {}
        self._bus = InlineBus(self._answer, channel=f"bmsfil-{self.name}")
        return self._bus

    def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.shutdown()

    def _answer(self, msg: can.Message) -> list[can.Message]:
        try:
            frame = cc.decode(msg)
        except cc.FrameError as exc:
            fault = cc.FaultCode.FRAME_ERROR
            if exc.field == "crc":
                fault = cc.FaultCode.CRC_ERROR
                self._crc_errors += 1
            self._counter = (self._counter + 1) % cc.COUNTER_MODULUS
            return [cc.encode_target_status(self._counter, cc.TargetState.RUNNING, None, fault, None,
                                            crc_errors=self._crc_errors)]
        if isinstance(frame, cc.MeasPack):
            self._pack = frame
        elif isinstance(frame, cc.MeasCell) and self._pack is not None and frame.sequence == self._pack.sequence:
            return self._estimate(self._pack, frame)
        return []

    def _estimate(self, pack: cc.MeasPack, cell: cc.MeasCell) -> list[can.Message]:
        est = self._cells.get(cell.cell_index)
        if est is None:
            if not (cell.voltage_valid and plausible_voltage(self._params, cell.voltage_V)):
                out = [cc.encode_est_cell(pack.sequence, cell.cell_index, math.nan, math.nan, cc.FLAG_VOLTAGE_INVALID)]
                if self._monitored:  # no filter yet, so nothing to judge but the reading itself
                    out.append(cc.encode_est_cell_flags(pack.sequence, cell.cell_index, cc.PLAUS_VOLTAGE_RANGE))
                return out
            est = self._cells[cell.cell_index] = self._make(self._params)
            est.start(pack.current_A, cell.voltage_V,
                      cell.temp_C if cell.temp_valid else 25.0)
            if self._monitored:
                self._monitors[cell.cell_index] = PlausibilityMonitor()
                self._health[cell.cell_index] = CellHealth(est)  # type: ignore[arg-type]
                self._power[cell.cell_index] = PowerSearch(est)  # type: ignore[arg-type]
                if self._thermal_params is not None:
                    self._thermal[cell.cell_index] = CellThermal(est, self._thermal_params)  # type: ignore[arg-type]
        dt = pack.dt_s  # a gap as the frame carries it: seconds, inf (LONG_GAP_MAX_S or more), nan (not known)
        r = est.step(dt, pack.current_A, cell.voltage_V, cell.temp_C)
        out = [cc.encode_est_cell(pack.sequence, cell.cell_index, r.soc, r.soc_sigma, r.flags & 0x1F)]
        if self._monitored:
            po = self._monitors[cell.cell_index].step(est, dt, cell.voltage_V)  # type: ignore[arg-type]
            out.append(cc.encode_est_cell_flags(pack.sequence, cell.cell_index, int(po.flags),
                                                float(po.unseen_current_A), float(po.unseen_current_sigma_A),
                                                float(po.stuck_for_s)))
            capacity, r0 = self._health[cell.cell_index].step(dt, pack.current_A, cell.voltage_V, cell.temp_C)
            if filter_restarted(r.flags, dt):  # a search under way, and its results, are of the state before
                self._power[cell.cell_index] = PowerSearch(est)  # type: ignore[arg-type]
            search = self._power[cell.cell_index]
            if pack.sequence % SOP_EVERY == 0:
                search.step(budget=1)
            thermal = self._thermal.get(cell.cell_index)
            core = thermal.step(dt, pack.current_A, cell.voltage_V, cell.temp_C) if thermal is not None else math.nan
            out.append(cc.encode_est_cell_health(pack.sequence, cell.cell_index, capacity, r0,
                                                 cc.core_temp_on_frame(core)))
            out.append(_power_frame(pack.sequence, cell.cell_index, search))
        return out


def _power_frame(sequence: int, cell_index: int, search: PowerSearch) -> can.Message:
    """EstCellPower: the latest horizon the search published (none before the first)."""
    latest = search.latest
    if latest is None:
        return cc.encode_est_cell_power(sequence, cell_index)
    k, sop = latest
    return cc.encode_est_cell_power(sequence, cell_index, sop.charge_W, sop.discharge_W, cc.PowerHorizon(k + 1))


class BusTarget:
    """A target that is already running somewhere on a CAN bus: a flashed
    board behind a USB-CAN adapter, say. The harness opens the bus with
    python-can (``interface``, ``channel``, ``bitrate`` and any other
    keyword python-can's interface takes) and closes it in `stop()`; the
    target's parameters are whatever it was built with."""

    name = "board"

    def __init__(self, interface: str, channel: str | None = None, bitrate: int | None = None,
                 **options: object) -> None:
        self.config: dict[str, object] = {"interface": interface, **options}
        if channel is not None:  # else the interface's own default channel, as python-can opens it
            self.config["channel"] = channel
        if bitrate is not None:
            self.config["bitrate"] = bitrate
        self._bus: can.BusABC | None = None

    def start(self) -> can.BusABC:
        try:
            self._bus = can.Bus(**self.config)  # type: ignore[arg-type]
        except BUS_OPEN_ERRORS as exc:
            raise BusOpenError(open_failure(self.config, exc)) from exc
        return self._bus

    def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.shutdown()


class BusOpenError(RuntimeError):
    """python-can could not open the bus a `BusTarget` names."""


def make_target(name: str, params: ParameterSet, bus_config: dict[str, object] | None = None,
                variant: str | None = None, on: str = "unix") -> Target:
    """A target by name: `host` (the C core), `reference` (the float64
    model), `qemu` (the bare-metal firmware on an emulated Cortex-M4F),
    `micropython` (the MicroPython application on the unix port, estimator
    `variant` python or native, `on` MicroPython's unix port or the emulated
    Cortex-M4F, "qemu") or `board` (a target on a real bus, opened
    with `bus_config`: python-can's interface, channel, bitrate and
    options, completed from python-can's configuration by `resolve_bus`)."""
    if variant is not None and name != "micropython":
        raise ValueError(f"--variant is the micropython target's (python or native), not {name}'s")
    if on not in ("unix", "qemu") or (on != "unix" and name != "micropython"):
        raise ValueError(f"--on {on!r}: the micropython target runs on unix or qemu; {name} has no --on")
    if name == "board":
        return BusTarget(**resolve_bus(dict(bus_config or {})))  # type: ignore[arg-type]
    if name == "host":
        return EstimatorTarget("host", params, SocEstimator, monitored=True, thermal=params.thermal)
    if name == "reference":
        return EstimatorTarget("reference", params, ReferenceSocEstimator)
    if name == "qemu":
        from bmsfil_hil.qemu import QemuTarget  # builds firmware: only when asked for

        return QemuTarget(params)
    if name == "micropython" and on == "qemu":
        from bmsfil_hil.micropython_qemu import MicroPythonQemuTarget  # builds the port: only when asked for

        return MicroPythonQemuTarget(params, variant=variant or "python")
    if name == "micropython":
        from bmsfil_hil.micropython import MicroPythonTarget  # starts MicroPython's unix port: only when asked for

        return MicroPythonTarget(params, variant=variant or "python")
    raise ValueError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")


TARGETS = ("host", "reference", "qemu", "micropython", "board")
#: The targets a HostCommand resets (the desktop ones run in this process and have no reset).
RESETTABLE = ("qemu", "micropython", "board")
