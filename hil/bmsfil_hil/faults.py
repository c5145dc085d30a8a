"""The fault matrix: what a target does when the bus or the sensors misbehave.

Two kinds of fault, each injected into an otherwise clean lock-step replay
of one recording, over a window in the middle of it:

- **bus faults** (`FaultyBus` wraps the target's bus): frames from the
  harness lost at 1, 5 or 20 %, duplicated, swapped with the next one, held
  back past the sample's deadline, or with a bit flipped in the payload; and
  a warm reset of the target in the middle of the run. A sample whose
  estimate does not come back in time is counted lost and the replay goes
  on (`replay_lockstep(..., on_timeout="skip")`).
- **sensor faults** (the recording is altered before it is sent): stuck
  voltage, current offset and gain error, temperature dropout, NaN voltage,
  out-of-range voltage.

For each fault: how it showed (samples flagged by the estimator, frames and
samples lost, target faults reported, delivery counters), the SOC error
during the window and after it, and how long after the window the error
took to come back within 1 point of the clean run's error. The clean run
is the baseline, measured in the same call.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import can
import numpy as np

from bmsfil import can_contract as cc
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording
from bmsfil_hil.replay import ReplayResult, replay_lockstep
from bmsfil_hil.targets import make_target

#: Timeout per sample when a fault is expected to lose some (s), by target.
SKIP_TIMEOUT_S = {"host": 0.05, "reference": 0.05}
SKIP_TIMEOUT_OTHER_S = 0.25


class FaultyBus(can.BusABC):
    """A python-can bus between the harness and a target that damages the
    harness's frames while `active()` says so: each sent frame is, with the
    given probabilities, dropped, sent twice, held and sent after the next
    one (reordered), held past the deadline (sent after `delay_s`), or sent
    with one payload bit flipped. Received frames pass untouched."""

    def __init__(self, bus: can.BusABC, active: Callable[[], bool], seed: int = 0, drop: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, delay: float = 0.0, delay_s: float = 0.0,
                 corrupt: float = 0.0) -> None:
        self._bus = bus
        self._active = active
        self._rng = random.Random(seed)
        self.drop, self.duplicate, self.reorder, self.delay, self.corrupt = drop, duplicate, reorder, delay, corrupt
        self.delay_s = delay_s
        self._held: can.Message | None = None
        self.counts = {"dropped": 0, "duplicated": 0, "reordered": 0, "delayed": 0, "corrupted": 0}
        super().__init__(channel=f"faulty:{bus.channel_info}")

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        if not self._active():
            self._flush()
            self._bus.send(msg, timeout)
            return
        r = self._rng.random
        if r() < self.drop:
            self.counts["dropped"] += 1
            return
        if r() < self.corrupt:
            data = bytearray(msg.data)
            bit = self._rng.randrange(8 * len(data))
            data[bit // 8] ^= 1 << (bit % 8)
            msg = can.Message(arbitration_id=msg.arbitration_id, data=bytes(data), is_extended_id=False,
                              timestamp=msg.timestamp)
            self.counts["corrupted"] += 1
        if r() < self.delay:
            self.counts["delayed"] += 1
            # Held past the deadline: sent once the harness has given up on it.
            time.sleep(self.delay_s)
        if self._held is None and r() < self.reorder:
            self._held = msg
            self.counts["reordered"] += 1
            return
        self._bus.send(msg, timeout)
        self._flush()
        if r() < self.duplicate:
            self.counts["duplicated"] += 1
            self._bus.send(msg, timeout)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._bus.send(held)

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        return self._bus.recv(timeout), False

    def shutdown(self) -> None:
        """Only this wrapper: the target's bus is the target's to close."""
        super().shutdown()


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str  # "bus", "sensor" or "reset"
    what: str
    bus: dict[str, float] | None = None  # FaultyBus probabilities
    sensor: Callable[[Recording, slice], Recording] | None = None


def _alter(rec: Recording, window: slice, **arrays: Callable[[np.ndarray], np.ndarray]) -> Recording:
    changed = {}
    for name, fn in arrays.items():
        values = getattr(rec, name).copy()
        values[window] = fn(values[window])
        changed[name] = values
    return replace(rec, **changed)


def _stuck_voltage(rec: Recording, w: slice) -> Recording:
    return _alter(rec, w, voltage_V=lambda v: np.full_like(v, v[0]))


FAULTS: tuple[Fault, ...] = (
    Fault("loss_1pct", "bus", "1 % of the harness's frames lost", {"drop": 0.01}),
    Fault("loss_5pct", "bus", "5 % of the harness's frames lost", {"drop": 0.05}),
    Fault("loss_20pct", "bus", "20 % of the harness's frames lost", {"drop": 0.20}),
    Fault("duplicate", "bus", "10 % of frames sent twice", {"duplicate": 0.10}),
    Fault("reorder", "bus", "10 % of frames swapped with the next", {"reorder": 0.10}),
    Fault("late", "bus", "2 % of frames held past the sample's deadline", {"delay": 0.02}),
    Fault("corrupt", "bus", "5 % of frames with one payload bit flipped", {"corrupt": 0.05}),
    Fault("warm_reset", "reset", "the target reset mid-run (HostCommand warm_reset)"),
    Fault("stuck_voltage", "sensor", "voltage stuck at its value at the start of the window",
          sensor=_stuck_voltage),
    Fault("current_offset", "sensor", "current sensor offset +0.5 A",
          sensor=lambda r, w: _alter(r, w, current_A=lambda i: i + 0.5)),
    Fault("current_gain", "sensor", "current sensor gain +5 %",
          sensor=lambda r, w: _alter(r, w, current_A=lambda i: i * 1.05)),
    Fault("temp_dropout", "sensor", "temperature missing (NaN)",
          sensor=lambda r, w: _alter(r, w, temp_C=lambda t: np.full_like(t, np.nan))),
    Fault("voltage_nan", "sensor", "voltage missing (NaN)",
          sensor=lambda r, w: _alter(r, w, voltage_V=lambda v: np.full_like(v, np.nan))),
    Fault("voltage_out_of_range", "sensor", "voltage reads 9.9 V",
          sensor=lambda r, w: _alter(r, w, voltage_V=lambda v: np.full_like(v, 9.9))),
)


@dataclass
class FaultOutcome:
    fault: Fault
    samples: int
    answered: int
    flagged_in_window: int            # samples in the window with any estimator flag
    flags_seen: list[str]
    target_faults: int
    injected: dict[str, int]          # what the FaultyBus did
    delivery: dict[str, object]
    rmse_during: float
    rmse_after: float
    recovery_s: float | None          # after the window until the error is back near the clean run's
    nan_estimates: int                # answered estimates that were not valid numbers
    visible: bool                     # the fault shows in flags or statistics

    def summary(self) -> dict[str, object]:
        return {
            "fault": self.fault.name, "kind": self.fault.kind, "what": self.fault.what,
            "samples": self.samples, "answered": self.answered, "flagged_in_window": self.flagged_in_window,
            "flags_seen": self.flags_seen, "target_faults": self.target_faults, "injected": self.injected,
            "rmse_during": self.rmse_during, "rmse_after": self.rmse_after, "recovery_s": self.recovery_s,
            "nan_estimates": self.nan_estimates, "visible": self.visible,
            "undecodable_frames": self.delivery["undecodable_frames"],
            "unexpected_frames": self.delivery["unexpected_frames"], "fault_ended_run": self.delivery["fault"],
        }


def _rmse(err: np.ndarray) -> float:
    ok = np.isfinite(err)
    return float(np.sqrt(np.mean(err[ok] ** 2))) if ok.any() else math.nan


def run_matrix(target_name: str, rec: Recording, params: ParameterSet, faults: tuple[Fault, ...] = FAULTS,
               seed: int = 0, progress: Callable[[str], None] | None = None, variant: str | None = None,
               on: str = "unix") -> tuple[dict[str, object], list[FaultOutcome]]:
    """The clean baseline and every fault on `rec` through `target_name`
    (`variant` and `on`: the micropython target's, as `make_target` takes them)."""
    n = len(rec)
    window = slice(n // 3, n // 3 + max(1, n // 6))
    reference = rec.reference_soc()
    timeout = SKIP_TIMEOUT_S.get(target_name, SKIP_TIMEOUT_OTHER_S)

    def replay(cells: Recording, bus_fault: dict[str, float] | None,
               commands: dict[int, cc.HostCommandCode] | None = None) -> tuple[ReplayResult, dict[str, int]]:
        target = make_target(target_name, params, variant=variant, on=on)
        bus = target.start()
        injected: dict[str, int] = {}
        try:
            if bus_fault is not None:
                sent = [0]
                per_sample = 2  # MeasPack + MeasCell: frames sent per sample of one cell

                def active() -> bool:
                    sent[0] += 1
                    return window.start <= (sent[0] - 1) // per_sample < window.stop

                faulty = FaultyBus(bus, active, seed=seed, delay_s=timeout * 1.5, **bus_fault)
                try:
                    result = replay_lockstep(faulty, [cells], timeout_s=timeout, on_timeout="skip")
                finally:
                    faulty.shutdown()
                injected = dict(faulty.counts)
            else:
                result = replay_lockstep(bus, [cells], timeout_s=max(timeout, 2.0), commands=commands,
                                         on_timeout="skip")
        finally:
            target.stop()
        return result, injected

    clean, _ = replay(rec, None)
    clean_err = clean.soc[:, 0] - reference
    baseline = {"rmse": _rmse(clean_err), "rmse_during": _rmse(clean_err[window]),
                "rmse_after": _rmse(clean_err[window.stop:]), "answered": int(np.isfinite(clean.soc[:, 0]).sum()),
                "samples": n, "window": [window.start, window.stop],
                "window_s": [float(rec.time_s[window.start]), float(rec.time_s[window.stop - 1])]}
    outcomes = []
    for fault in faults:
        if progress is not None:
            progress(fault.name)
        if fault.kind == "reset" and target_name in ("host", "reference"):
            continue  # desktop targets have no reset to exercise
        cells = fault.sensor(rec, window) if fault.sensor is not None else rec
        commands = {window.start: cc.HostCommandCode.WARM_RESET} if fault.kind == "reset" else None
        result, injected = replay(cells, fault.bus, commands)
        soc = result.soc[:, 0]
        err = soc - reference
        flags = result.flags[:, 0]
        flagged = int(np.count_nonzero(flags[window]))
        seen = sorted({name for bit, name in cc.EST_CELL_FLAGS.items() if np.any(flags & bit)})
        d = result.delivery.summary()
        recovery = None
        after = np.abs(err[window.stop:]) <= np.abs(clean_err[window.stop:]) + 0.01
        if after.size and after.all():
            recovery = 0.0
        elif after.size and after.any():
            # the first sample from which the error stays near the clean run's
            bad = np.flatnonzero(~after)
            first_good = int(bad[-1]) + 1
            if first_good < after.size:
                recovery = float(rec.time_s[window.stop + first_good] - rec.time_s[window.stop])
        answered = int(np.count_nonzero(~np.isnan(soc)))
        lost = n - answered
        stats_show = (lost > 0 or d["undecodable_frames"] or d["unexpected_frames"] or result.delivery.target_faults
                      or result.delivery.target_starts)
        visible = bool(flagged or stats_show)
        outcomes.append(FaultOutcome(
            fault=fault, samples=n, answered=answered, flagged_in_window=flagged, flags_seen=seen,
            target_faults=len(result.delivery.target_faults), injected=injected, delivery=d,
            rmse_during=_rmse(err[window]), rmse_after=_rmse(err[window.stop:]), recovery_s=recovery,
            nan_estimates=int(np.count_nonzero(np.isnan(result.soc_sigma[:, 0]) & ~np.isnan(soc))),
            visible=visible,
        ))
    return baseline, outcomes
