"""The replay engine: a recording becomes measurement frames on a bus, and
the estimates that come back become a trace.

Lock-step mode sends sample k (one MeasPack, then a MeasCell per cell),
waits until every cell's EstCell for k has arrived, then sends k+1: the
result is the same whatever the load on the host, the emulator's speed or
the bus. A target that does not answer within the timeout ends the run with
a fault; what was received until then is kept, and so is the log. Ctrl-C
during a replay raises `ReplayInterrupted`, a KeyboardInterrupt that
carries what was received until then.

Targets that run the plausibility monitor follow each EstCell with an
EstCellFlags, and targets that estimate capacity and R0 with an
EstCellHealth; those are matched to their sample by sequence whenever they
arrive (during the next sample's wait, in lock-step) and kept in
`ReplayResult.plausibility` and `ReplayResult.health`. A sample is complete
with its EstCells. Firmware that times the parts of its cell step follows
each sample's TargetStatus with a TargetProfile, kept per sample in
`Delivery.profiles`.

Everything sent and received is written to a python-can log as it happens
(`.blf`, `.asc` or `.log`, by the file's suffix).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import can
import numpy as np

from bmsfil import can_contract as cc
from bmsfil.recording import Recording


def _sample_of(sequence: int, k: int) -> int:
    """The latest sample sent (up to k) with that sequence number."""
    return k - ((k - sequence) % cc.SEQUENCE_MODULUS)


class _PerSample:
    """What the records of one frame kind per sample and cell share: which
    arrived (`received`, bool (samples, cells)) and where a frame goes."""

    received: np.ndarray

    @property
    def sent(self) -> bool:
        """Whether the target sends this frame at all."""
        return bool(self.received.any())

    def note(self, frame: cc.EstCellHealth | cc.EstCellPower | cc.EstCellFlags, k: int) -> bool:
        """Record a frame that arrived while sample k was in flight; False if
        it is for no sample sent so far, a cell outside the pack or a repeat."""
        return self.note_at(frame, _sample_of(frame.sequence, k))

    def note_at(self, frame: cc.EstCellHealth | cc.EstCellPower | cc.EstCellFlags, j: int) -> bool:
        """Record a frame known to answer sample j (a log's frames, matched by
        sequence number); False if j or the cell is outside the record or a
        frame for it is already there."""
        n, m = self.received.shape
        c = frame.cell_index
        if not (0 <= j < n) or c >= m or self.received[j, c]:
            return False
        self.received[j, c] = True
        self._fill(frame, j, c)
        return True

    def _fill(self, frame: Any, j: int, c: int) -> None:
        """Store the frame's values at (sample j, cell c): each record's own."""
        raise NotImplementedError


@dataclass
class Health(_PerSample):
    """The EstCellHealth a target sent, per sample and cell: capacity, R0
    and core temperature (nan where not received or not yet valid)."""

    received: np.ndarray                # bool (samples, cells)
    capacity_Ah: np.ndarray
    r0_ohm: np.ndarray
    core_temp_C: np.ndarray

    @classmethod
    def empty(cls, n: int, m: int) -> "Health":
        return cls(np.zeros((n, m), dtype=bool), np.full((n, m), np.nan), np.full((n, m), np.nan),
                   np.full((n, m), np.nan))

    def _fill(self, frame: cc.EstCellHealth, j: int, c: int) -> None:
        self.capacity_Ah[j, c] = frame.capacity_Ah
        self.r0_ohm[j, c] = frame.r0_ohm
        self.core_temp_C[j, c] = frame.core_temp_C

    def summary(self) -> list[dict[str, float | int | None]]:
        """`cell_summary` of every cell."""
        return [self.cell_summary(c) for c in range(self.received.shape[1])]

    def cell_summary(self, c: int) -> dict[str, float | int | None]:
        """The last capacity, R0 and core temperature received for cell c, and from which
        sample on each was valid; and the core temperature's largest value (one cell's alone:
        a pack of 1,024 cells took minutes when each cell's JSON summed up every cell)."""
        cell: dict[str, float | int | None] = {}
        for name, short, values in (("capacity_Ah", "capacity", self.capacity_Ah[:, c]),
                                    ("r0_ohm", "r0", self.r0_ohm[:, c]),
                                    ("core_temp_C", "core_temp", self.core_temp_C[:, c])):
            valid = np.flatnonzero(np.isfinite(values))
            cell[name] = float(values[valid[-1]]) if valid.size else None
            cell[f"{short}_valid_from_sample"] = int(valid[0]) if valid.size else None
        core = self.core_temp_C[:, c]
        cell["core_temp_max_C"] = float(np.nanmax(core)) if np.isfinite(core).any() else None
        return cell


#: EstCellPower.horizon codes with a horizon, in the order targets search them.
POWER_HORIZONS = (cc.PowerHorizon.PEAK_2S, cc.PowerHorizon.PEAK_10S, cc.PowerHorizon.PEAK_30S)


@dataclass
class Power(_PerSample):
    """The EstCellPower a target sent, per sample and cell: the horizon the
    frame carried (NONE before the target's first result) and its powers
    (nan where not received or not valid). A target searches its horizons
    in turn, so each frame carries the latest result of one of them."""

    received: np.ndarray                # bool (samples, cells)
    horizon: np.ndarray                 # PowerHorizon codes
    discharge_W: np.ndarray
    charge_W: np.ndarray

    @classmethod
    def empty(cls, n: int, m: int) -> "Power":
        return cls(np.zeros((n, m), dtype=bool), np.zeros((n, m), dtype=np.uint8), np.full((n, m), np.nan),
                   np.full((n, m), np.nan))

    def _fill(self, frame: cc.EstCellPower, j: int, c: int) -> None:
        self.horizon[j, c] = int(frame.horizon)
        self.discharge_W[j, c] = frame.discharge_power_W
        self.charge_W[j, c] = frame.charge_power_W

    def latest(self, cell: int, horizon: cc.PowerHorizon) -> tuple[np.ndarray, np.ndarray]:
        """Per sample, the discharge and charge power of that horizon last
        received for the cell up to it (nan before the first)."""
        mine = self.horizon[:, cell] == int(horizon)
        index = np.maximum.accumulate(np.where(mine, np.arange(mine.size), -1))
        out = []
        for values in (self.discharge_W[:, cell], self.charge_W[:, cell]):
            filled = np.where(index >= 0, values[np.maximum(index, 0)], np.nan)
            out.append(filled)
        return out[0], out[1]

    def summary(self) -> list[dict[str, object]]:
        """`cell_summary` of every cell."""
        return [self.cell_summary(c) for c in range(self.received.shape[1])]

    def cell_summary(self, c: int) -> dict[str, object]:
        """Per horizon, for cell c: the last powers received, the sample of the first, and how
        many new results came (counted where the values differ from the horizon's previous
        ones: a new result that repeats the last to the frame's 0.1 W is not counted)."""
        cell: dict[str, object] = {}
        for h in POWER_HORIZONS:
            mine = np.flatnonzero(self.horizon[:, c] == int(h))
            if not mine.size:
                cell[h.name.lower()] = None
                continue
            pairs = np.nan_to_num(np.stack([self.discharge_W[mine, c], self.charge_W[mine, c]], axis=1), nan=-1.0)
            new = 1 + int(np.count_nonzero(np.any(pairs[1:] != pairs[:-1], axis=1)))
            cell[h.name.lower()] = {"discharge_W": float(pairs[-1, 0]), "charge_W": float(pairs[-1, 1]),
                                    "first_sample": int(mine[0]), "results": new}
        return cell


@dataclass
class Plausibility(_PerSample):
    """The EstCellFlags a target sent, per sample and cell (nothing received:
    `received` False, flags 0, the evidence nan)."""

    received: np.ndarray                # bool (samples, cells)
    flags: np.ndarray                   # PLAUS_* bits
    unseen_current_A: np.ndarray
    unseen_current_sigma_A: np.ndarray
    stuck_for_s: np.ndarray

    @classmethod
    def empty(cls, n: int, m: int) -> "Plausibility":
        return cls(np.zeros((n, m), dtype=bool), np.zeros((n, m), dtype=np.uint8), np.full((n, m), np.nan),
                   np.full((n, m), np.nan), np.full((n, m), np.nan))

    def _fill(self, frame: cc.EstCellFlags, j: int, c: int) -> None:
        self.flags[j, c] = frame.flags
        self.unseen_current_A[j, c] = frame.unseen_current_A
        self.unseen_current_sigma_A[j, c] = frame.unseen_current_sigma_A
        self.stuck_for_s[j, c] = frame.stuck_for_s

    def first(self, flag_bits: int, cell: int = 0, start: int = 0) -> int | None:
        """The first sample from `start` whose EstCellFlags has any of `flag_bits`."""
        hit = np.flatnonzero(self.flags[start:, cell] & flag_bits)
        return int(hit[0]) + start if hit.size else None

    def cell_summary(self, cell: int, time_s: np.ndarray | None = None) -> dict[str, object] | None:
        """One cell's: each flag raised (samples, first sample and time) and the
        unseen current with its sigma at the last frame; None when the target
        sent no EstCellFlags."""
        if not self.sent:
            return None
        out: dict[str, object] = {"frames_received": int(self.received[:, cell].sum())}
        events = []
        for bit, name in cc.PLAUS_FLAGS.items():
            hit = np.flatnonzero(self.flags[:, cell] & bit)
            if hit.size:
                k = int(hit[0])
                e: dict[str, object] = {"flag": name, "first_sample": k, "samples": int(hit.size)}
                if time_s is not None:
                    e["first_time_s"] = round(float(time_s[k] - time_s[0]), 3)
                e["unseen_current_A"] = _none_if_nan(self.unseen_current_A[k, cell])
                e["unseen_current_sigma_A"] = _none_if_nan(self.unseen_current_sigma_A[k, cell])
                e["stuck_for_s"] = _none_if_nan(self.stuck_for_s[k, cell])
                events.append(e)
        out["flags"] = sorted(events, key=lambda e: e["first_sample"])  # type: ignore[arg-type,return-value]
        got = np.flatnonzero(self.received[:, cell])
        j = int(got[-1]) if got.size else None
        out["unseen_current_end_A"] = None if j is None else _none_if_nan(self.unseen_current_A[j, cell])
        out["unseen_current_sigma_end_A"] = None if j is None else _none_if_nan(self.unseen_current_sigma_A[j, cell])
        return out

    def summary(self, time_s: np.ndarray | None = None) -> dict[str, object] | None:
        """Per flag: samples that carried it and when it was first raised (cell 0
        first); None when the target sent no EstCellFlags."""
        if not self.sent:
            return None
        out: dict[str, object] = {"frames_received": int(self.received.sum())}
        raised = {}
        for bit, name in cc.PLAUS_FLAGS.items():
            hits = np.argwhere(self.flags & bit)
            if hits.size:
                k, c = (int(v) for v in hits[0])
                entry: dict[str, object] = {"samples": int(hits.shape[0]), "first_sample": k, "first_cell": c}
                if time_s is not None:
                    entry["first_time_s"] = float(time_s[k] - time_s[0])
                raised[name] = entry
        out["flags"] = raised
        last = np.flatnonzero(self.received[:, 0])
        if last.size:
            j = int(last[-1])
            u, s = self.unseen_current_A[j, 0], self.unseen_current_sigma_A[j, 0]
            out["unseen_current_end_A"] = None if math.isnan(u) else float(u)
            out["unseen_current_sigma_end_A"] = None if math.isnan(s) else float(s)
        return out


@dataclass
class Delivery:
    """What happened on the bus, for the run's report."""

    samples_sent: int = 0
    frames_sent: int = 0
    estimates_received: int = 0
    undecodable: int = 0
    unexpected: int = 0        # decodable, but not an EstCell for the sample in flight
    status_frames: int = 0
    target_faults: list[str] = field(default_factory=list)
    #: Measurement frames the target refused for a bad crc (TargetStatus.crc_errors), one entry per
    #: frame: the sample in flight when the status that counted it came.
    crc_errors: list[int] = field(default_factory=list)
    last_status: cc.TargetStatus | None = None  # the previous TargetStatus (crc_errors counts from it)
    round_trip_s: list[float] = field(default_factory=list)
    instructions_per_cell_step: list[int] = field(default_factory=list)  # from TargetStatus, where known
    profiles: list[cc.TargetProfile] = field(default_factory=list)  # one per sample closed, from firmware that sends it
    target_starts: list[str] = field(default_factory=list)  # "sample k: start" after each commanded reset
    #: The fault a commanded reset's first TargetStatus must carry (a power cycle's persist_error):
    #: the outcome asked for, not counted in target_faults.
    expected_fault: cc.FaultCode | None = None
    counted_sequence: int | None = None  # last_sequence of the last instruction count taken
    closed_sequence: int | None = None   # last_sequence of the last TargetStatus that closed a sample
    profiled_sequence: int | None = None  # the sample the last TargetProfile was taken for
    profiles_missing: int = 0  # samples closed without their TargetProfile, from a target that sends them
    samples_lost: int = 0      # lock-step with on_timeout="skip": samples not answered in time
    #: Each time the bus refused a frame and took it again within BUS_RECOVER_S (an adapter in bus-off
    #: that recovered): the sample, the error, and how long the harness retried.
    bus_outages: list[dict[str, object]] = field(default_factory=list)
    sent_invalid: dict[str, int] = field(default_factory=dict)  # values outside the contract, sent not valid
    fault: str | None = None   # why the run ended early, if it did
    interrupted: bool = False  # ended by Ctrl-C (or SIGTERM in the harness): `fault` says where
    plausibility: Plausibility | None = None  # where EstCellFlags are kept as they arrive
    health: Health | None = None  # where EstCellHealth are kept as they arrive
    power: Power | None = None    # where EstCellPower are kept as they arrive

    def summary(self) -> dict[str, object]:
        rt = np.asarray(self.round_trip_s) if self.round_trip_s else np.array([np.nan])
        ipcs = np.asarray(self.instructions_per_cell_step, dtype=float)
        return {
            "samples_sent": self.samples_sent,
            "frames_sent": self.frames_sent,
            "estimates_received": self.estimates_received,
            "undecodable_frames": self.undecodable,
            "unexpected_frames": self.unexpected,
            "status_frames": self.status_frames,
            "target_faults": self.target_faults,
            "crc_errors": len(self.crc_errors),
            "round_trip_p50_ms": float(np.percentile(rt, 50) * 1e3),
            "round_trip_p99_ms": float(np.percentile(rt, 99) * 1e3),
            "round_trip_max_ms": float(np.max(rt) * 1e3),
            "instructions_per_cell_step": None if ipcs.size == 0 else {
                "mean": float(ipcs.mean()), "p50": float(np.percentile(ipcs, 50)),
                "p99": float(np.percentile(ipcs, 99)), "max": int(ipcs.max()), "samples": int(ipcs.size),
            },
            "instructions_per_cell_step_by_part": self.by_part(),
            "profiles_missing": self.profiles_missing,
            "target_starts": self.target_starts,
            "samples_lost": self.samples_lost,
            "bus_outages": len(self.bus_outages),
            "bus_outage_max_s": max((float(o["retried_s"]) for o in self.bus_outages), default=0.0),  # type: ignore[arg-type]
            "bus_outage_first": self.bus_outages[0] if self.bus_outages else None,
            "values_sent_invalid": self.sent_invalid,
            "fault": self.fault,
            "interrupted": self.interrupted,
        }

    def by_part(self) -> dict[str, dict[str, float | int] | None] | None:
        """Per part of the cell step (cc.PROFILE_PARTS), over the samples for
        which the target measured it: mean, p50, p99, max and how many
        samples; None for a part never measured, and None in all for a
        target that sends no TargetProfile."""
        if not self.profiles:
            return None
        out: dict[str, dict[str, float | int] | None] = {}
        for name in cc.PROFILE_PARTS:
            counts = [c for c in (getattr(p, name) for p in self.profiles) if c is not None]
            x = np.asarray(counts, dtype=float)
            out[name] = None if x.size == 0 else {
                "mean": float(x.mean()), "p50": float(np.percentile(x, 50)), "p99": float(np.percentile(x, 99)),
                "max": int(x.max()), "samples": int(x.size),
            }
        return out


@dataclass
class ReplayResult:
    soc: np.ndarray         # (samples, cells); NaN where no valid estimate arrived
    soc_sigma: np.ndarray
    flags: np.ndarray       # EstCell flag bits
    delivery: Delivery
    samples_done: int

    @property
    def plausibility(self) -> Plausibility:
        """The EstCellFlags received (`Plausibility.sent` False if none)."""
        p = self.delivery.plausibility
        return p if p is not None else Plausibility.empty(*self.soc.shape)

    @property
    def health(self) -> Health:
        """The EstCellHealth received (`Health.sent` False if none)."""
        h = self.delivery.health
        return h if h is not None else Health.empty(*self.soc.shape)

    @property
    def power(self) -> Power:
        """The EstCellPower received (`Power.sent` False if none)."""
        p = self.delivery.power
        return p if p is not None else Power.empty(*self.soc.shape)


class ReplayInterrupted(KeyboardInterrupt):
    """Ctrl-C (or what the harness takes as it) during a replay, its cause,
    with what came back until then: the replay's result, its fault saying
    where it was interrupted, and in real-time mode its timing."""

    def __init__(self, result: ReplayResult, timing: Timing | None = None) -> None:
        super().__init__(result.delivery.fault)
        self.result = result
        self.timing = timing


def _interrupted(soc: np.ndarray, sigma: np.ndarray, flags: np.ndarray, d: Delivery, k: int,
                 n: int) -> ReplayResult:
    """The result of a replay interrupted while sample k of n was in flight
    (k == n: after the last sample had been answered)."""
    d.interrupted = True
    d.fault = f"interrupted at sample {k} of {n}" if k < n else f"interrupted after the last of {n} samples"
    return ReplayResult(soc, sigma, flags, d, k)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _finite_or_nan(x: float) -> float:
    return x if math.isfinite(x) else math.nan


def measurement_frames(seq: int, dt_s: float, current_A: float, voltages: Sequence[float],
                       temps: Sequence[float]) -> list[can.Message]:
    frames = [cc.encode_meas_pack(seq, _finite_or_nan(float(dt_s)), _finite_or_nan(float(current_A)), len(voltages))]
    for i, (v, t) in enumerate(zip(voltages, temps)):
        frames.append(cc.encode_meas_cell(seq, i, _finite_or_nan(float(v)), _finite_or_nan(float(t))))
    return frames


def _note_status(d: Delivery, frame: cc.TargetStatus, k: int) -> None:
    d.status_frames += 1
    prev, d.last_status = d.last_status, frame
    # crc_errors counts since the target started, modulo 16: the increase since the status
    # before, or, on the first status or after a restart (the counter not following on), all of it.
    follows = prev is not None and frame.counter == (prev.counter + 1) % cc.COUNTER_MODULUS
    new = (frame.crc_errors - prev.crc_errors) % cc.CRC_ERRORS_MODULUS if follows else frame.crc_errors
    refused = f"{new} measurement frame{'s' if new > 1 else ''} refused for a bad crc" if new else ""
    d.crc_errors.extend([k] * new)
    at = f"sample {k}" + ("" if frame.last_sequence is None else f" (its last sequence {frame.last_sequence})")
    restarted = frame.state != cc.TargetState.RUNNING and frame.counter == 0
    if restarted and d.expected_fault is not None and frame.fault_code == d.expected_fault:
        d.expected_fault = None
        if new:
            d.target_faults.append(f"{at}: target reports {refused}")
    elif frame.fault_code != cc.FaultCode.NONE:
        d.target_faults.append(f"{at}: target reports {cc.FaultCode(frame.fault_code).name}"
                               + (f" ({refused})" if refused else ""))
    elif new:
        d.target_faults.append(f"{at}: target reports {refused}")
    # One count per sample: heartbeats repeat the last sample's.
    if (frame.instructions_per_cell_step is not None and frame.state == cc.TargetState.RUNNING
            and frame.last_sequence != d.counted_sequence):
        d.instructions_per_cell_step.append(frame.instructions_per_cell_step)
        d.counted_sequence = frame.last_sequence
    if frame.state == cc.TargetState.RUNNING and frame.last_sequence is not None:
        if frame.last_sequence != d.closed_sequence:
            # A target that sends TargetProfiles owes one for the sample closed before.
            if d.profiles and d.closed_sequence is not None and d.profiled_sequence != d.closed_sequence:
                d.profiles_missing += 1
        d.closed_sequence = frame.last_sequence


def _note_profile(d: Delivery, frame: cc.TargetProfile) -> bool:
    """Keep a TargetProfile for the sample the TargetStatus before it
    closed; False if there is no such sample or it already has one."""
    if d.closed_sequence is None or d.profiled_sequence == d.closed_sequence:
        return False
    d.profiles.append(frame)
    d.profiled_sequence = d.closed_sequence
    return True


#: Per-sample frames other than EstCell -> the Delivery record that keeps them.
_RECORDS = {cc.EstCellFlags: "plausibility", cc.EstCellHealth: "health", cc.EstCellPower: "power"}


def _received(msg: can.Message, d: Delivery, k: int, log: can.Listener | None) -> cc.Frame | None:
    """Log a received message and decode it; a TargetStatus is noted, an
    undecodable frame counted (None). k: the sample in flight."""
    if log is not None:
        log(msg)
    try:
        frame = cc.decode(msg)
    except cc.FrameError as exc:
        d.undecodable += 1
        d.target_faults.append(f"sample {k}: {exc}")
        return None
    kind = type(frame)
    if kind is cc.EstCell:
        return frame
    record_name = _RECORDS.get(kind)
    if record_name is not None:
        record = getattr(d, record_name)
        if record is None or not record.note(frame, k):
            d.unexpected += 1
    elif kind is cc.TargetStatus:
        _note_status(d, frame, k)  # type: ignore[arg-type]
    elif kind is cc.TargetProfile:
        if not _note_profile(d, frame):  # type: ignore[arg-type]
            d.unexpected += 1
    return frame


def _estimate_frame(msg: can.Message, d: Delivery, k: int, log: can.Listener | None) -> cc.EstCell | None:
    """The message if it is an estimate; anything else but a status counts as unexpected."""
    frame = _received(msg, d, k, log)
    kind = type(frame)
    if kind is cc.EstCell:
        return frame  # type: ignore[return-value]
    if frame is not None and kind is not cc.TargetStatus and kind is not cc.TargetProfile and kind not in _RECORDS:
        d.unexpected += 1
    return None


def _status_frame(msg: can.Message, d: Delivery, k: int, log: can.Listener | None) -> cc.TargetStatus | None:
    """The message if it is a TargetStatus; anything else decodable counts as unexpected."""
    frame = _received(msg, d, k, log)
    kind = type(frame)
    if kind is cc.TargetStatus:
        return frame  # type: ignore[return-value]
    if frame is not None and kind is not cc.TargetProfile and kind not in _RECORDS:
        d.unexpected += 1
    return None


def _send(bus: can.BusABC, msg: can.Message, log: can.Listener | None) -> None:
    msg.timestamp = time.time()
    msg.is_rx = False
    bus.send(msg)
    if log is not None:
        if msg.channel is None:  # logged on the bus's channel, as its received frames are, not the writer's default
            bus_channel = getattr(bus, "channel", None)
            msg.channel = bus_channel if isinstance(bus_channel, (str, int)) else None
        log(msg)


#: Samples between two calls of a replay's progress callback.
PROGRESS_EVERY = 256


#: How long the harness retries a frame the bus refused before it ends the run (s): an adapter that went
#: bus-off recovers by itself (SocketCAN's restart-ms, the automatic recovery of most USB adapters) after
#: 128 x 11 recessive bits, a few ms, or after its driver's restart delay.
BUS_RECOVER_S = 2.0
#: Pause between two tries of a refused frame (s).
BUS_RETRY_S = 0.005


def _send_retrying(bus: can.BusABC, msg: can.Message, log: can.Listener | None, d: Delivery, k: int,
                   what: str) -> str | None:
    """Send one frame, retrying while the bus refuses it (up to BUS_RECOVER_S; an outage that ended is
    kept in `d.bus_outages`); the fault if it refused it for longer. `what`: the frame, for the message."""
    first: tuple[float, can.CanError] | None = None
    while True:
        try:
            _send(bus, msg, log)
            break
        except can.CanError as exc:
            now = time.perf_counter()
            if first is None:
                first = (now, exc)
            elif now - first[0] > BUS_RECOVER_S:
                return (f"bus error sending {what}, refused for {now - first[0]:.2f} s: {exc} "
                        f"({exc.__cause__ or 'no cause given'})")
            time.sleep(BUS_RETRY_S)
    if first is not None:
        d.bus_outages.append({"sample": k, "error": str(first[1]),
                              "retried_s": round(time.perf_counter() - first[0], 4)})
    return None


def _send_sample(bus: can.BusABC, log: can.Listener | None, d: Delivery, k: int,
                 frames: Iterable[can.Message]) -> str | None:
    """Send sample k's measurement frames (counted in `d`); the fault if the bus refused one for longer
    than BUS_RECOVER_S. A refusal that ends sooner is retried and kept in `d.bus_outages`."""
    for msg in frames:
        fault = _send_retrying(bus, msg, log, d, k, f"sample {k} (sequence {k % cc.SEQUENCE_MODULUS})")
        if fault is not None:
            return fault
        d.frames_sent += 1
    d.samples_sent += 1
    return None


#: How a target must come back from each HostCommand (the contract's TargetStart), and the
#: fault its first TargetStatus must report: a simulated power loss leaves a saved state that
#: fails its check, which the target reports once as persist_error and starts each cell afresh.
RESTART_OUTCOME: dict[cc.HostCommandCode, tuple[cc.TargetStart, cc.FaultCode | None]] = {
    cc.HostCommandCode.WARM_RESET: (cc.TargetStart.RESTORED, None),
    cc.HostCommandCode.POWER_CYCLE: (cc.TargetStart.SAVED_STATE_BAD, cc.FaultCode.PERSIST_ERROR),
    cc.HostCommandCode.RESTART_FRESH: (cc.TargetStart.POWER_ON, None),
}


def restart_problems(command: cc.HostCommandCode, frame: cc.TargetStatus, when: str) -> list[str]:
    """How a target's first TargetStatus after `command` (sent `when`) differs from what
    RESTART_OUTCOME says it must be: its start, and a fault it had to report."""
    start, fault = RESTART_OUTCOME[command]
    said = f"{when}: {command.name.lower()}"
    problems = []
    if frame.start != start:
        problems.append(f"{said}: the target started {frame.start.name.lower()}, expected {start.name.lower()}")
    if fault is not None and frame.fault_code != fault:
        problems.append(f"{said}: the target did not report {fault.name.lower()} for the saved state it lost")
    return problems


def _command(bus: can.BusABC, command: cc.HostCommandCode, k: int, d: Delivery, timeout_s: float,
             log: can.Listener | None) -> str | None:
    """Send a HostCommand after sample k (before the first for k = -1) and
    wait for the target's first TargetStatus after it restarted (state not
    RUNNING); None when it came, else the fault. Sending more before the
    target is back would lose bytes in its reset."""
    when = "before the first sample" if k < 0 else f"after sample {k}"
    try:
        # What the target sent before the command (its boot status, a
        # heartbeat) must not pass for its restart.
        drain_until = time.perf_counter() + timeout_s
        while time.perf_counter() < drain_until and (msg := bus.recv(timeout=0.05)) is not None:
            _status_frame(msg, d, k, log)
    except can.CanError as exc:
        return f"bus error before {command.name.lower()} {when}: {exc} ({exc.__cause__})"
    d.expected_fault = RESTART_OUTCOME[command][1]
    fault = _send_retrying(bus, cc.encode_host_command(command), log, d, k, f"{command.name.lower()} {when}")
    if fault is not None:
        return fault
    deadline = time.perf_counter() + timeout_s
    while (remaining := deadline - time.perf_counter()) > 0:
        try:
            msg = bus.recv(timeout=remaining)
        except can.CanError as exc:
            return f"bus error after {command.name.lower()} {when}: {exc} ({exc.__cause__})"
        if msg is None:
            break
        frame = _status_frame(msg, d, k, log)
        # A restarted target's first status: counter 0, not running yet.
        if frame is not None and frame.state != cc.TargetState.RUNNING and frame.counter == 0:
            d.target_starts.append(f"{when}: {command.name.lower()} -> {frame.start.name.lower()}")
            d.target_faults.extend(restart_problems(command, frame, when))
            d.expected_fault = None
            return None
    return f"target did not come back within {timeout_s:g} s of {command.name.lower()} {when}"


def replay_lockstep(
    bus: can.BusABC,
    cells: list[Recording],
    timeout_s: float = 2.0,
    log: can.Listener | None = None,
    commands: dict[int, cc.HostCommandCode] | None = None,
    on_timeout: str = "fault",
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay cells in series (they share the first one's time and current).

    A sample not answered within `timeout_s` ends the run with a fault
    (`on_timeout="fault"`), or is counted lost and the replay goes on with
    the next one (`"skip"`: the fault matrix, where frames are lost on
    purpose). `progress(samples done)` is called every PROGRESS_EVERY samples.

    `commands` maps a sample index k to a HostCommand sent once every
    estimate of sample k has arrived (a warm reset mid-replay, say), or
    before the first sample for k = -1 (a board restarted fresh); the
    replay goes on when the target has restarted.
    """
    if on_timeout not in ("fault", "skip"):
        raise ValueError(f"on_timeout must be 'fault' or 'skip', got {on_timeout!r}")
    d = Delivery()
    n, m, dt, current, volts, temps = _pack_arrays(cells, d)
    # Python floats: what the encoders take fastest, and no numpy scalar per sample.
    dt_rows, current_rows, volt_rows, temp_rows = dt.tolist(), current.tolist(), volts.tolist(), temps.tolist()
    soc = np.full((n, m), np.nan)
    sigma = np.full((n, m), np.nan)
    flags = np.zeros((n, m), dtype=np.uint8)
    d.plausibility = Plausibility.empty(n, m)
    d.health = Health.empty(n, m)
    d.power = Power.empty(n, m)
    if commands and -1 in commands:
        fault = _command(bus, commands[-1], -1, d, timeout_s, log)
        if fault is not None:
            d.fault = fault
            return ReplayResult(soc, sigma, flags, d, 0)
    k = 0
    try:
        for k in range(n):
            seq = k % cc.SEQUENCE_MODULUS
            t0 = time.perf_counter()
            outages = len(d.bus_outages)
            fault = _send_sample(bus, log, d, k, measurement_frames(seq, dt_rows[k], current_rows[k], volt_rows[k],
                                                                    temp_rows[k]))
            if fault is not None:
                d.fault = fault
                return ReplayResult(soc, sigma, flags, d, k)
            if len(d.bus_outages) > outages:
                t0 = time.perf_counter()  # the target's time to answer starts when the bus took the sample
            if progress is not None and k % PROGRESS_EVERY == 0:
                progress(k)
            pending = set(range(m))
            deadline = t0 + timeout_s
            while pending:
                remaining = deadline - time.perf_counter()
                try:
                    msg = bus.recv(timeout=max(remaining, 0.0)) if remaining > 0 else None
                except can.CanError as exc:
                    d.fault = (f"bus error waiting for sample {k} (sequence {seq}): {exc} "
                               f"({exc.__cause__ or 'no cause given'})")
                    return ReplayResult(soc, sigma, flags, d, k)
                if msg is None:
                    if on_timeout == "skip":
                        d.samples_lost += 1
                        break
                    d.fault = (
                        f"target did not answer sample {k} (sequence {seq}) within {timeout_s:g} s: "
                        f"no estimate for cell(s) {sorted(pending)[:8]}"
                    )
                    return ReplayResult(soc, sigma, flags, d, k)
                frame = _estimate_frame(msg, d, k, log)
                if frame is None:
                    continue
                if frame.sequence != seq or frame.cell_index not in pending:
                    d.unexpected += 1
                    continue
                pending.discard(frame.cell_index)
                d.estimates_received += 1
                soc[k, frame.cell_index] = frame.soc
                sigma[k, frame.cell_index] = frame.soc_sigma
                flags[k, frame.cell_index] = frame.flags
            if not pending:
                d.round_trip_s.append(time.perf_counter() - t0)
            if commands and k in commands:
                fault = _command(bus, commands[k], k, d, timeout_s, log)
                if fault is not None:
                    d.fault = fault
                    return ReplayResult(soc, sigma, flags, d, k + 1)
        k = n  # every sample answered: an interrupt from here on comes while waiting for the last flags
        if d.status_frames:
            _await_status(bus, (n - 1) % cc.SEQUENCE_MODULUS, n - 1, d, timeout_s, log)
        _await_flags(bus, n - 1, d, timeout_s, log)
        return ReplayResult(soc, sigma, flags, d, n)
    except KeyboardInterrupt as exc:
        raise ReplayInterrupted(_interrupted(soc, sigma, flags, d, k, n)) from exc


#: How long the end of a run looks for a kind of answer frame (EstCellFlags, EstCellHealth,
#: EstCellPower) no sample has brought yet (a run of one sample: a target that sends them
#: sends them right behind its EstCell).
ANSWER_GRACE_S = 0.1


def _await_flags(bus: can.BusABC, k: int, d: Delivery, timeout_s: float, log: can.Listener | None) -> None:
    """A target that sends EstCellFlags, EstCellHealth or EstCellPower sends
    the last sample's after its last EstCell: read them too, the kinds it has
    sent for up to timeout_s, those it has not (yet) for ANSWER_GRACE_S.
    Targets that send none are not waited for longer than that."""
    answers = [x for x in (d.plausibility, d.health, d.power) if x is not None]
    if not answers or k < 0:
        return
    start = time.perf_counter()
    deadline = start + timeout_s
    grace_end = start + min(ANSWER_GRACE_S, timeout_s)
    while True:
        kinds = [x.received for x in answers if x.sent]
        now = time.perf_counter()
        if not all(r[k].all() for r in kinds):
            remaining = deadline - now
        elif len(kinds) < len(answers):
            remaining = grace_end - now  # a kind not seen yet may still come
        else:
            return
        if remaining <= 0:
            return
        try:
            msg = bus.recv(timeout=remaining)
        except can.CanError as exc:
            d.target_faults.append(f"after sample {k}: bus error waiting for the last EstCellFlags: {exc}")
            return
        if msg is None:
            return
        _received(msg, d, k, log)


#: How long the end of a run looks for a TargetProfile behind the last
#: TargetStatus, when none has come yet (a target that sends them sends the
#: two back to back).
PROFILE_GRACE_S = 0.05


def _await_status(bus: can.BusABC, seq: int, k: int, d: Delivery, timeout_s: float,
                  log: can.Listener | None) -> None:
    """A target that closes each sample with a TargetStatus sends the last
    one after the last estimate: read it too (its instruction count, its
    faults), and the TargetProfile after it from a target that sends them.
    Targets that send none are not waited for."""
    deadline = time.perf_counter() + timeout_s
    closed = False
    looked_for_profile = False
    while not (closed and (d.profiled_sequence == seq or (not d.profiles and looked_for_profile))):
        remaining = deadline - time.perf_counter()
        if closed and not d.profiles:
            # Not yet known whether the target sends TargetProfiles (a run of
            # one sample): one short look for one right behind the status.
            remaining = min(remaining, PROFILE_GRACE_S)
            looked_for_profile = True
        if remaining <= 0:
            break
        try:
            msg = bus.recv(timeout=remaining)
        except can.CanError as exc:
            d.target_faults.append(f"after sample {k}: bus error waiting for the last TargetStatus: {exc}")
            return
        if msg is None:
            break
        frame = _status_frame(msg, d, k, log)
        closed = closed or (frame is not None and frame.last_sequence == seq)
    if closed and d.profiles and d.profiled_sequence != seq:
        d.profiles_missing += 1


def as_carried(rec: Recording) -> Recording:
    """The recording as the CAN contract carries it: every sample encoded
    into measurement frames and decoded again, so quantised to the
    contract's resolution, with values outside its range not valid. A replay
    reproduces `bmsfil eval` of this exactly. An interval over 65.535 s is
    carried in whole seconds, one of `cc.LONG_GAP_MAX_S` or more as that: the
    rebuilt recording has there an interval of `cc.UNCARRIED_GAP_S`, over
    which the C core restarts as the target does."""
    dt, cur, volt, temp = (np.empty(len(rec)) for _ in range(4))
    _, _, dt_in, cur_in, volt_in, temp_in = _pack_arrays([rec])
    for k in range(len(rec)):
        pack_msg, cell_msg = measurement_frames(
            k % cc.SEQUENCE_MODULUS, float(dt_in[k]), float(cur_in[k]), volt_in[k], temp_in[k],
        )
        pack, cell = cc.decode(pack_msg), cc.decode(cell_msg)
        assert isinstance(pack, cc.MeasPack) and isinstance(cell, cc.MeasCell)
        dt[k], cur[k], volt[k], temp[k] = pack.dt_s, pack.current_A, cell.voltage_V, cell.temp_C
    time_s = np.concatenate(([0.0], np.cumsum(np.nan_to_num(dt[1:], nan=0.0, posinf=cc.UNCARRIED_GAP_S))))
    return Recording(time_s, cur, volt, temp, rec.meta, rec.ah)


#: The log formats `DurableLog` writes, by the file's suffix.
LOG_SUFFIXES = (".blf", ".asc", ".log")


class DurableLog(can.Listener):
    """A python-can log writer, chosen by suffix (.blf, .asc or .log), whose
    records reach the disk as the run goes, so that a harness that is
    killed leaves a log that reads back up to its last sync: BLF in small
    compressed containers (4 KB of records each) instead of python-can's
    128 KB, and at most every `interval_s` the file flushed and synced.
    `stop()` (also after Ctrl-C) completes the file."""

    def __init__(self, path: Path, interval_s: float = 0.5) -> None:
        if path.suffix.lower() not in LOG_SUFFIXES:
            raise ValueError(f"{path}: log format by suffix must be one of {', '.join(LOG_SUFFIXES)}")
        options = {"max_container_size": 4096} if path.suffix.lower() == ".blf" else {}
        self.path = path
        self.writer = can.Logger(str(path), **options)
        self.interval_s = interval_s
        self._last_sync = time.monotonic()

    def on_message_received(self, msg: can.Message) -> None:
        self.writer.on_message_received(msg)
        now = time.monotonic()
        if now - self._last_sync >= self.interval_s:
            self._last_sync = now
            self.sync()

    def sync(self) -> None:
        file = getattr(self.writer, "file", None)
        if file is not None and not file.closed:
            file.flush()
            os.fsync(file.fileno())

    def stop(self) -> None:
        self.writer.stop()


def open_log(path: Path) -> DurableLog:
    """A log of the exchange, written as it happens (see `DurableLog`)."""
    return DurableLog(path)


@dataclass
class Timing:
    """Real-time mode: how the target kept up."""

    speed: float
    latency_s: list[float] = field(default_factory=list)  # send of a sample -> its last estimate
    late: int = 0    # answered, but after the next sample was due
    lost: int = 0    # never answered within the timeout after the run
    send_lag_s: list[float] = field(default_factory=list)  # how late the harness itself sent each sample

    def summary(self) -> dict[str, object]:
        lat = np.asarray(self.latency_s) if self.latency_s else np.array([np.nan])
        lag = np.asarray(self.send_lag_s) if self.send_lag_s else np.array([np.nan])
        return {
            "speed": self.speed,
            "latency_p50_ms": float(np.percentile(lat, 50) * 1e3),
            "latency_p99_ms": float(np.percentile(lat, 99) * 1e3),
            "latency_max_ms": float(np.max(lat) * 1e3),
            "late_samples": self.late,
            "lost_samples": self.lost,
            "send_lag_p99_ms": float(np.percentile(lag, 99) * 1e3),
        }


def carriable(values: np.ndarray, frame: str, signal: str) -> tuple[np.ndarray, int]:
    """`values` with those the contract cannot carry (finite but outside the
    signal's range: a 1e30 V glitch, a 600 s interval) made not valid (NaN),
    and how many there were. The contract never clamps a measurement; the
    replay sends such a value as not valid, as a BMS front end would, and
    counts it."""
    sig = cc.database().get_message_by_name(frame).get_signal_by_name(signal)
    half = 0.5 * float(sig.scale)
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(values) & ((values < sig.minimum - half) | (values > sig.maximum + half))
    count = int(np.count_nonzero(bad))
    return (np.where(bad, np.nan, values) if count else values), count


def _pack_arrays(cells: list[Recording], d: Delivery | None = None
                 ) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if not cells:
        raise ValueError("replay needs at least one recording")
    n, m = len(cells[0]), len(cells)
    for rec in cells[1:]:
        if len(rec) != n:
            raise ValueError(f"pack cells differ in length: {cells[0].meta.name} {n}, {rec.meta.name} {len(rec)}")
    arrays = {
        "dt_s": (cells[0].dt_s, 0),  # every interval of a recording is carried (a long gap in whole seconds)
        "current_A": carriable(cells[0].current_A, "MeasPack", "current_A"),
        "voltage_V": carriable(np.stack([r.voltage_V for r in cells], axis=1), "MeasCell", "voltage_V"),
        "temp_C": carriable(np.stack([r.temp_C for r in cells], axis=1), "MeasCell", "temp_C"),
    }
    if d is not None:
        d.sent_invalid = {name: count for name, (_, count) in arrays.items() if count}
    return (n, m, arrays["dt_s"][0], arrays["current_A"][0], arrays["voltage_V"][0], arrays["temp_C"][0])


def replay_realtime(
    bus: can.BusABC,
    cells: list[Recording],
    speed: float = 1.0,
    timeout_s: float = 2.0,
    log: can.Listener | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[ReplayResult, Timing]:
    """Replay cells in series paced by the recording's own clock, `speed`
    times faster, without waiting for the target: sample k goes out at
    time_s[k] / speed after the start whatever the target did with k-1.

    Estimates are matched to their sample by sequence number as they come.
    A sample whose estimates all arrive is timed (latency from its send to
    its last estimate; from when the bus took it, after a bus outage); one
    that completes after the next sample was due is late (that includes
    samples the harness itself sent late, as after a bus outage: send lag
    says so); one still incomplete `timeout_s` after the last sample was sent is
    lost (its estimates stay NaN). Interval gaps longer than 10 s of
    recording time are not waited out at 1x: the pacing skips them.
    """
    if not speed > 0:
        raise ValueError(f"speed must be positive, got {speed}")
    d = Delivery()
    n, m, dt, current, volts, temps = _pack_arrays(cells, d)
    # Python floats: what the encoders take fastest, and no numpy scalar per sample.
    dt_rows, current_rows, volt_rows, temp_rows = dt.tolist(), current.tolist(), volts.tolist(), temps.tolist()
    soc = np.full((n, m), np.nan)
    sigma = np.full((n, m), np.nan)
    flags = np.zeros((n, m), dtype=np.uint8)
    d.plausibility = Plausibility.empty(n, m)
    d.health = Health.empty(n, m)
    d.power = Power.empty(n, m)
    timing = Timing(speed)
    step = np.nan_to_num(dt, nan=0.0)
    step[0] = 0.0
    due = np.cumsum(np.minimum(step, 10.0)) / speed
    sent_at = np.full(n, np.nan)
    remaining_cells = np.full(n, m, dtype=np.int64)
    got = np.zeros((n, m), dtype=bool)
    in_flight: dict[int, int] = {}  # sequence -> sample index
    start = time.perf_counter()
    k = 0

    def receive(until: float) -> str | None:
        while (left := until - time.perf_counter()) > 0:
            try:
                msg = bus.recv(timeout=left)
            except can.CanError as exc:
                return f"bus error: {exc} ({exc.__cause__ or 'no cause given'})"
            if msg is None:
                return None
            frame = _estimate_frame(msg, d, k, log)
            if frame is None:
                continue
            j = in_flight.get(frame.sequence)
            if j is None or frame.cell_index >= m or got[j, frame.cell_index]:
                d.unexpected += 1  # not for a sample in flight, or a duplicate
                continue
            got[j, frame.cell_index] = True
            d.estimates_received += 1
            soc[j, frame.cell_index] = frame.soc
            sigma[j, frame.cell_index] = frame.soc_sigma
            flags[j, frame.cell_index] = frame.flags
            remaining_cells[j] -= 1
            if remaining_cells[j] == 0:
                now = time.perf_counter()
                timing.latency_s.append(now - sent_at[j])
                d.round_trip_s.append(now - sent_at[j])
                if j + 1 < n and now - start > due[j + 1]:
                    timing.late += 1
                del in_flight[frame.sequence]
        return None

    try:
        for k in range(n):
            fault = receive(start + due[k])
            if fault is not None:
                d.fault = f"{fault} before sample {k}"
                return ReplayResult(soc, sigma, flags, d, k), timing
            seq = k % cc.SEQUENCE_MODULUS
            if seq in in_flight:  # cc.SEQUENCE_MODULUS (4096) samples behind: that one is lost
                in_flight.pop(seq)
            now = time.perf_counter()
            timing.send_lag_s.append(max(0.0, now - start - due[k]))
            sent_at[k] = now
            in_flight[seq] = k
            outages = len(d.bus_outages)
            fault = _send_sample(bus, log, d, k, measurement_frames(seq, dt_rows[k], current_rows[k], volt_rows[k],
                                                                    temp_rows[k]))
            if fault is not None:
                d.fault = fault
                return ReplayResult(soc, sigma, flags, d, k), timing
            if len(d.bus_outages) > outages:
                sent_at[k] = time.perf_counter()  # the target's latency starts when the bus took the sample
            if progress is not None and k % PROGRESS_EVERY == 0:
                progress(k)
        deadline = time.perf_counter() + timeout_s
        while in_flight and time.perf_counter() < deadline:
            fault = receive(deadline)
            if fault is not None:
                d.fault = f"{fault} after the last sample"
                break
            if not in_flight:
                break
        timing.lost = int(np.count_nonzero(remaining_cells > 0))  # counted, not a fault of the run
        _await_flags(bus, n - 1, d, min(timeout_s, 0.5), log)
        return ReplayResult(soc, sigma, flags, d, n), timing
    except KeyboardInterrupt as exc:
        raise ReplayInterrupted(_interrupted(soc, sigma, flags, d, k, n), timing) from exc
