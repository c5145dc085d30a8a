"""Targets under test, each reached through a python-can `Bus`.

A target is anything that answers the CAN contract: it takes MeasPack and
MeasCell frames and sends an EstCell frame per cell per sample. The harness
only ever sees the bus that `Target.start()` returns, so an emulated board
(SLCAN over a socket) or a real adapter slots in with an adapter of its own;
the replay and the scoring do not change.

Here: `host` (the C core through cffi) and `reference` (the float64 model),
each serving a python-can `virtual` bus from its own thread, as a board
would serve its CAN controller.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Callable
from typing import Protocol

import can

from bmsfil import can_contract as cc
from bmsfil.core import SocEstimator, StepResult
from bmsfil.params import ParameterSet
from bmsfil.reference import ReferenceSocEstimator


class Target(Protocol):
    name: str

    def start(self) -> can.BusABC:
        """Bring the target up; returns the bus the harness talks to it on."""

    def stop(self) -> None:
        """Shut the target down and release its bus; safe to call twice."""


class Estimator(Protocol):
    def init_ocv(self, voltage_V: float, temp_C: float) -> None: ...
    def step(self, dt_s: float, current_A: float, voltage_V: float, temp_C: float) -> StepResult: ...


class EstimatorTarget:
    """An estimator per cell behind a virtual bus, served from a thread.

    Each cell starts from the OCV of the first sample that carries its
    voltage, as firmware does after a reset. Frames that do not decode are
    answered with a TargetStatus fault frame and otherwise ignored.
    """

    def __init__(self, name: str, make_estimator: Callable[[], Estimator]) -> None:
        self.name = name
        self._make = make_estimator
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._bus: can.BusABC | None = None
        self._harness_bus: can.BusABC | None = None
        self.error: BaseException | None = None

    def start(self) -> can.BusABC:
        # Not ending in a digit: python-can's BLF writer reads trailing digits of a
        # channel name as a channel number and fails above 65535.
        channel = f"bmsfil-{self.name}-{uuid.uuid4().hex}-bus"
        self._bus = can.Bus(interface="virtual", channel=channel)
        self._harness_bus = can.Bus(interface="virtual", channel=channel)
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"bmsfil-target-{self.name}", daemon=True)
        self._thread.start()
        return self._harness_bus

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for bus in (self._bus, self._harness_bus):
            if bus is not None:
                bus.shutdown()
        self._bus = self._harness_bus = None

    def _serve(self) -> None:
        assert self._bus is not None
        bus = self._bus
        cells: dict[int, Estimator] = {}
        pack: cc.MeasPack | None = None
        counter = 0
        try:
            while not self._stop.is_set():
                msg = bus.recv(timeout=0.05)
                if msg is None:
                    continue
                try:
                    frame = cc.decode(msg)
                except cc.FrameError:
                    counter = (counter + 1) % cc.COUNTER_MODULUS
                    bus.send(cc.encode_target_status(counter, cc.TargetState.RUNNING, None, cc.FaultCode.FRAME_ERROR, None))
                    continue
                if isinstance(frame, cc.MeasPack):
                    pack = frame
                elif isinstance(frame, cc.MeasCell) and pack is not None and frame.sequence == pack.sequence:
                    bus.send(self._estimate(cells, pack, frame))
        except BaseException as exc:  # reported by the harness as a target fault
            self.error = exc

    def _estimate(self, cells: dict[int, Estimator], pack: cc.MeasPack, cell: cc.MeasCell) -> can.Message:
        est = cells.get(cell.cell_index)
        if est is None:
            if not cell.voltage_valid:
                return cc.encode_est_cell(pack.sequence, cell.cell_index, math.nan, math.nan, cc.FLAG_VOLTAGE_INVALID)
            est = cells[cell.cell_index] = self._make()
            est.init_ocv(cell.voltage_V, cell.temp_C if cell.temp_valid else 25.0)
        r = est.step(pack.dt_s, pack.current_A, cell.voltage_V, cell.temp_C)
        return cc.encode_est_cell(pack.sequence, cell.cell_index, r.soc, r.soc_sigma, r.flags & 0x1F)


class BusTarget:
    """A target that is already running somewhere on a CAN bus: a flashed
    board behind a USB-CAN adapter, say. The harness opens the bus with
    python-can (``interface``, ``channel``, ``bitrate`` and any other
    keyword python-can's interface takes) and closes it in `stop()`; the
    target's parameters are whatever it was built with."""

    name = "board"

    def __init__(self, interface: str, channel: str, bitrate: int | None = None, **options: object) -> None:
        self.config: dict[str, object] = {"interface": interface, "channel": channel, **options}
        if bitrate is not None:
            self.config["bitrate"] = bitrate
        self._bus: can.BusABC | None = None

    def start(self) -> can.BusABC:
        try:
            self._bus = can.Bus(**self.config)  # type: ignore[arg-type]
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            shown = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
            raise BusOpenError(f"could not open the CAN bus ({shown}): {exc}") from exc
        return self._bus

    def stop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.shutdown()


class BusOpenError(RuntimeError):
    """python-can could not open the bus a `BusTarget` names."""


def make_target(name: str, params: ParameterSet, bus_config: dict[str, object] | None = None) -> Target:
    """A target by name: `host` (the C core), `reference` (the float64
    model), `qemu` (the bare-metal firmware on an emulated Cortex-M4F) or
    `board` (a target on a real bus, opened with `bus_config`: python-can's
    interface, channel, bitrate and options)."""
    if name == "board":
        config = dict(bus_config or {})
        if not config.get("interface") or not config.get("channel"):
            raise ValueError("target board needs the bus it is on: --interface and --channel "
                             "(python-can's, e.g. --interface socketcan --channel can0)")
        return BusTarget(**config)  # type: ignore[arg-type]
    if name == "host":
        return EstimatorTarget("host", lambda: SocEstimator(params))
    if name == "reference":
        return EstimatorTarget("reference", lambda: ReferenceSocEstimator(params))
    if name == "qemu":
        from bmsfil_hil.qemu import QemuTarget  # builds firmware: only when asked for

        return QemuTarget(params)
    raise ValueError(f"unknown target {name!r}; known: {', '.join(TARGETS)}")


TARGETS = ("host", "reference", "qemu", "board")
