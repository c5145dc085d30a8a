"""The fault matrix: what a target does when the bus or the sensors misbehave.

Two kinds of fault, each injected into an otherwise clean lock-step replay
of one recording, over a window in the middle of it:

- **bus faults** (`FaultyBus` wraps the target's bus): frames from the
  harness lost at 1, 5 or 20 %, duplicated, swapped with the next one, held
  back past the sample's deadline, or with a bit flipped in the payload; the
  harness's adapter in bus-off for half a second (its sends refused, as
  python-can raises them, until it recovers); and a warm reset of the
  target in the middle of the run. A sample whose
  estimate does not come back in time is counted lost and the replay goes
  on (`replay_lockstep(..., on_timeout="skip")`).
- **sensor faults** (the recording is altered before it is sent): stuck
  voltage, current offset and gain error, temperature dropout, NaN voltage,
  out-of-range voltage.

For each fault: how it showed (samples flagged by the estimator, frames and
samples lost, target faults reported, delivery counters), the SOC error
during the window and after it, and how long after the window the error
took to come back within 1 point of the clean run's error. The clean run
is the baseline, measured in the same call. A fault is visible when it
shows on the bus, in flags or delivery statistics (all a BMS in the field
has); one that no monitor can see by design (`Fault.undetectable`) is
visible when the SOC error against the reference, which the harness holds,
grew beyond the clean run's on the same samples (`ERROR_SHOWS`).

Sensor faults are also judged by the plausibility monitor the targets run
beside the filter (EstCellFlags): whether the flag that names the fault
came back over CAN, and how long after the fault started. A current offset
or gain error shows only once the monitor's window is long (a 0.5 A offset
after about half an hour on this cell, docs/plausibility.md), far longer
than the matrix's window; those faults (`Fault.slow`) are run once more on
a longer replay (`detect_samples`) with the fault from the window's start
to the end, beside a clean run of the same length for false flags.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import can
import numpy as np

from bmsfil import can_contract as cc
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording
from bmsfil_hil.replay import ReplayResult, replay_lockstep
from bmsfil_hil.targets import make_target

#: A fault shows in the SOC error when a run's RMSE against the reference (in the window, after it, or on
#: the long replay from the fault's start) exceeds the clean run's over the same samples by this much:
#: 0.1 point of SOC, above the replays' own spread (the targets agree with the host within 1e-6).
ERROR_SHOWS = 0.001

#: Timeout per sample when a fault is expected to lose some (s), by target.
SKIP_TIMEOUT_S = {"host": 0.05, "reference": 0.05}
SKIP_TIMEOUT_OTHER_S = 0.25


class FaultyBus(can.BusABC):
    """A python-can bus between the harness and a target that damages the
    harness's frames while `active()` says so: each sent frame is, with the
    given probabilities, dropped, sent twice, held and sent after the next
    one (reordered), held past the deadline (sent after `delay_s`), or sent
    with one payload bit flipped; with `bus_off_s`, the first send while
    active finds the adapter bus-off: every send for that long raises
    can.CanOperationError, as a python-can adapter's does, and nothing goes
    out, then it has recovered. Received frames pass untouched."""

    def __init__(self, bus: can.BusABC, active: Callable[[], bool], seed: int = 0, drop: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0, delay: float = 0.0, delay_s: float = 0.0,
                 corrupt: float = 0.0, bus_off_s: float = 0.0) -> None:
        self._bus = bus
        self._active = active
        self._rng = random.Random(seed)
        self.drop, self.duplicate, self.reorder, self.delay, self.corrupt = drop, duplicate, reorder, delay, corrupt
        self.delay_s = delay_s
        self.bus_off_s = bus_off_s
        self._bus_off_since: float | None = None
        self._recovered = False
        self._held: can.Message | None = None
        self.counts = {"dropped": 0, "duplicated": 0, "reordered": 0, "delayed": 0, "corrupted": 0, "bus_off": 0,
                       "refused": 0}
        self._frames = 0
        #: Each corrupted frame: its number among the frames sent while active, and the fields the flip changed.
        self.corruptions: list[tuple[int, list[str]]] = []
        super().__init__(channel=f"faulty:{bus.channel_info}")

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        # In bus-off every try is refused, before `active()` counts it as a frame: the harness's retries
        # of one frame are not frames of the window; the frame the bus takes back after it was counted
        # when it was first refused.
        if self._bus_off_since is not None and not self._recovered:
            if time.monotonic() - self._bus_off_since < self.bus_off_s:
                self._refuse()
            self._recovered = True
            self._bus.send(msg, timeout)
            return
        if not self._active():
            self._flush()
            self._bus.send(msg, timeout)
            return
        if self.bus_off_s > 0.0 and self._bus_off_since is None:
            self._bus_off_since = time.monotonic()
            self.counts["bus_off"] += 1
            self._refuse()
        r = self._rng.random
        self._frames += 1
        if r() < self.drop:
            self.counts["dropped"] += 1
            return
        if r() < self.corrupt:
            data = bytearray(msg.data)
            bit = self._rng.randrange(8 * len(data))
            data[bit // 8] ^= 1 << (bit % 8)
            damaged = can.Message(arbitration_id=msg.arbitration_id, data=bytes(data), is_extended_id=False,
                                  timestamp=msg.timestamp)
            self.corruptions.append((self._frames - 1, changed_fields(msg, damaged)))
            msg = damaged
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

    def _refuse(self) -> None:
        self.counts["refused"] += 1
        raise can.CanOperationError("bus-off: the adapter does not transmit (injected by the fault matrix)")

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._bus.send(held)

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        return self._bus.recv(timeout), False

    def shutdown(self) -> None:
        """Only this wrapper: the target's bus is the target's to close."""
        super().shutdown()


def changed_fields(sent: can.Message, damaged: can.Message) -> list[str]:
    """The contract's signals whose bits differ between a frame and its
    damaged copy, by the DBC's layout (the crc field is one; a bit no signal
    covers is "reserved"). ["unknown frame"] for an ID outside the contract."""
    try:
        msg = cc.database().get_message_by_frame_id(sent.arbitration_id)
    except KeyError:
        return ["unknown frame"]
    diff = int.from_bytes(bytes(sent.data), "little") ^ int.from_bytes(bytes(damaged.data), "little")
    names = []
    for sig in sorted(msg.signals, key=lambda sig: sig.start):
        if diff >> sig.start & ((1 << sig.length) - 1):
            names.append(sig.name)
            diff &= ~(((1 << sig.length) - 1) << sig.start)
    return names + (["reserved"] if diff else [])


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str  # "bus", "sensor" or "reset"
    what: str
    bus: dict[str, float] | None = None  # FaultyBus probabilities
    sensor: Callable[[Recording, slice], Recording] | None = None
    #: Flags that name the fault: EstCellFlags (plausibility) names the monitor raises for it.
    detect: tuple[str, ...] = ()
    #: The monitor needs a long window to see it: also run on the long replay.
    slow: bool = False
    #: What the monitor can not see of it, said in the report.
    limit: str = ""
    #: The monitor cannot see it by design: not showing is its known limit, not a regression.
    undetectable: bool = False


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
    Fault("bus_off", "bus", "the harness's adapter bus-off for 0.5 s, then recovered", {"bus_off_s": 0.5}),
    Fault("warm_reset", "reset", "the target reset mid-run (HostCommand warm_reset)"),
    Fault("stuck_voltage", "sensor", "voltage stuck at its value at the start of the window",
          sensor=_stuck_voltage, detect=("voltage_stuck",),
          limit="flagged once the current has moved the model's ohmic drop by 15.4 mV; at rest a frozen "
                "reading is what a live one shows"),
    Fault("current_offset", "sensor", "current sensor offset +0.5 A",
          sensor=lambda r, w: _alter(r, w, current_A=lambda i: i + 0.5),
          detect=("current_offset", "self_discharge"), slow=True,
          limit="needs about half an hour of driving (the filter's 1 % SOC sigma floor)"),
    Fault("current_gain", "sensor", "current sensor gain +5 %",
          sensor=lambda r, w: _alter(r, w, current_A=lambda i: i * 1.05),
          detect=("current_offset", "self_discharge"), slow=True,
          limit="not detectable by design: a gain error is an unseen current of 5 % of the current, which "
                "averages to about 0.1 A over a drive cycle, below what the monitor resolves in one cycle; "
                "there is no gain test", undetectable=True),
    Fault("temp_dropout", "sensor", "temperature missing (NaN)",
          sensor=lambda r, w: _alter(r, w, temp_C=lambda t: np.full_like(t, np.nan)), detect=("temp_range",)),
    Fault("voltage_nan", "sensor", "voltage missing (NaN)",
          sensor=lambda r, w: _alter(r, w, voltage_V=lambda v: np.full_like(v, np.nan)),
          detect=("voltage_range",)),
    Fault("voltage_out_of_range", "sensor", "voltage reads 9.9 V",
          sensor=lambda r, w: _alter(r, w, voltage_V=lambda v: np.full_like(v, 9.9)),
          detect=("voltage_range",)),
)


@dataclass
class Detection:
    """How the plausibility monitor's flags (EstCellFlags, cell 0) showed one
    sensor fault in one replay: `after_s` from the fault's start to the first
    sample that carried one of the fault's flags, None if none did."""

    run: str                      # "window": the matrix's replay; "long": the long replay
    samples: int
    fault_from_s: float
    after_s: float | None
    flags_seen: list[str]         # every plausibility flag raised from the fault's start on
    unseen_current_end_A: float | None
    unseen_current_sigma_end_A: float | None
    sent: bool                    # the target sent EstCellFlags at all
    #: SOC RMSE against the reference from the fault's start to the run's end, and the clean run's over the same
    rmse_from_fault: float = math.nan
    clean_rmse_from_fault: float = math.nan

    @property
    def error_shows(self) -> bool:
        return self.rmse_from_fault > self.clean_rmse_from_fault + ERROR_SHOWS

    @property
    def detected(self) -> bool:
        return self.after_s is not None

    def summary(self) -> dict[str, object]:
        return {"run": self.run, "samples": self.samples, "fault_from_s": self.fault_from_s,
                "detected": self.detected, "after_s": self.after_s, "flags_seen": self.flags_seen,
                "unseen_current_end_A": self.unseen_current_end_A,
                "unseen_current_sigma_end_A": self.unseen_current_sigma_end_A, "monitor_sent": self.sent,
                "rmse_from_fault": self.rmse_from_fault, "clean_rmse_from_fault": self.clean_rmse_from_fault,
                "error_shows": self.error_shows}


def _detection(run: str, result: ReplayResult, rec: Recording, start: int, fault: Fault,
               clean: ReplayResult) -> Detection:
    p = result.plausibility
    bits = sum(bit for bit, name in cc.PLAUS_FLAGS.items() if name in fault.detect)
    k = p.first(bits, start=start) if bits else None
    t0 = float(rec.time_s[start] - rec.time_s[0])
    seen = sorted({name for bit, name in cc.PLAUS_FLAGS.items() if np.any(p.flags[start:, 0] & bit)})
    received = np.flatnonzero(p.received[:, 0])
    u = s = None
    if received.size:
        j = int(received[-1])
        u = None if math.isnan(p.unseen_current_A[j, 0]) else float(p.unseen_current_A[j, 0])
        s = None if math.isnan(p.unseen_current_sigma_A[j, 0]) else float(p.unseen_current_sigma_A[j, 0])
    reference = rec.reference_soc()[start:]
    err = result.soc[start:, 0] - reference
    clean_err = np.where(np.isfinite(err), clean.soc[start:, 0] - reference, np.nan)  # the samples both answered
    return Detection(run, len(rec), t0, None if k is None else float(rec.time_s[k] - rec.time_s[start]), seen, u, s,
                     p.sent, _rmse(err), _rmse(clean_err))


def _clean_flags(result: ReplayResult) -> list[str]:
    """Plausibility flags a clean replay raised (false flags)."""
    return sorted({name for bit, name in cc.PLAUS_FLAGS.items() if np.any(result.plausibility.flags[:, 0] & bit)})


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
    visible_on_bus: bool              # the fault shows in flags or delivery statistics
    error_shows: bool                 # the SOC error against the reference grew beyond the clean run's
    detection: list[Detection] = field(default_factory=list)  # sensor faults: the monitor's flags
    #: Bus corruption: per field a flipped bit changed, frames, how many the target reported (refused for
    #: their crc: TargetStatus.crc_errors) and how many of their samples' estimates were flagged.
    corrupted: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def visible(self) -> bool:
        """The fault shows on the bus (flags, delivery statistics); or, for a fault no monitor can see by
        design, in the SOC error against the reference. A fault the bus should show and does not is not
        visible, whatever its error."""
        return self.visible_on_bus or (self.fault.undetectable and self.error_shows)

    def visible_text(self, no: str) -> str:
        """Where the fault showed, for a table: "yes" on the bus; "SOC error only" (with the long replay's
        RMSE, clean -> faulty, when that is where it grew) for one no monitor can see; else `no`."""
        if self.visible_on_bus:
            return "yes"
        if not self.visible:
            return no
        grew = next((d for d in self.detection if d.run == "long" and d.error_shows), None)
        return "SOC error only" + ("" if grew is None else f" (long run {grew.clean_rmse_from_fault * 100:.2f} → "
                                                           f"{grew.rmse_from_fault * 100:.2f} %)")

    @property
    def corrupted_frames(self) -> int:
        """Frames the bus corrupted (each counted once, whatever fields its flip hit)."""
        return int(self.injected.get("corrupted", 0))

    @property
    def corrupted_detected(self) -> int:
        """Corrupted frames the target reported (refused for their crc)."""
        return int(self.delivery.get("crc_errors", 0) or 0) if self.corrupted_frames else 0

    def summary(self) -> dict[str, object]:
        return {
            "fault": self.fault.name, "kind": self.fault.kind, "what": self.fault.what,
            "samples": self.samples, "answered": self.answered, "flagged_in_window": self.flagged_in_window,
            "flags_seen": self.flags_seen, "target_faults": self.target_faults, "injected": self.injected,
            "rmse_during": self.rmse_during, "rmse_after": self.rmse_after, "recovery_s": self.recovery_s,
            "nan_estimates": self.nan_estimates, "visible": self.visible,
            "visible_on_bus": self.visible_on_bus, "error_shows": self.error_shows,
            "detect_flags": list(self.fault.detect), "detection": [d.summary() for d in self.detection],
            "detected": self.detected, "detected_after_s": self.detected_after_s, "detection_limit": self.fault.limit,
            "undetectable_by_design": self.fault.undetectable,
            "undecodable_frames": self.delivery["undecodable_frames"],
            "unexpected_frames": self.delivery["unexpected_frames"], "fault_ended_run": self.delivery["fault"],
            "corrupted_fields": self.corrupted,
            "bus_outages": self.delivery.get("bus_outages", 0), "bus_outage_max_s": self.delivery.get("bus_outage_max_s", 0.0),
            "crc_errors": self.delivery.get("crc_errors", 0),
        }


    @property
    def detected(self) -> bool | None:
        """A sensor fault's flag came back over CAN (in either run); None for
        faults the monitor does not judge (bus faults, resets)."""
        if not self.fault.detect:
            return None
        return any(d.detected for d in self.detection)

    @property
    def detected_after_s(self) -> float | None:
        """Seconds from the fault's start to its first flag, in the first run that flagged it."""
        return next((d.after_s for d in self.detection if d.detected), None)


#: A refused frame is counted by the TargetStatus that follows it: of its own sample, or, when the
#: sample was lost with it, of the next one the target closes, which the harness may read while a later
#: sample is in flight (the firmware in QEMU: 2 or 3 samples later). Matched within this many samples.
CRC_REPORT_WITHIN = 10


def _corruption_tally(corrupted: list[tuple[int, list[str]]], flags: np.ndarray,
                      crc_errors: list[int] = ()) -> dict[str, dict[str, int]]:  # type: ignore[assignment]
    """Per field, the frames a flip changed it in, how many of them the
    target reported refusing for their crc (`crc_errors`: the sample in
    flight when each refusal was counted, matched in order to a damaged
    frame of that sample or up to CRC_REPORT_WITHIN - 1 samples before) and
    how many of those samples' estimates carried a flag: a frame neither
    detected nor flagged is damage the target took in silence (a flip that
    changed nothing is "none")."""
    tally: dict[str, dict[str, int]] = {}
    reports = sorted(crc_errors)
    j = 0
    for sample, names in sorted(corrupted):
        while j < len(reports) and reports[j] < sample:
            j += 1  # a refusal counted before this frame was sent: not this frame's
        detected = int(j < len(reports) and reports[j] < sample + CRC_REPORT_WITHIN)
        j += detected
        flagged = int(sample < len(flags) and bool(flags[sample]))
        for name in names or ["none"]:
            entry = tally.setdefault(name, {"frames": 0, "detected": 0, "flagged": 0})
            entry["frames"] += 1
            entry["detected"] += detected
            entry["flagged"] += flagged
    return tally


def _rmse(err: np.ndarray) -> float:
    ok = np.isfinite(err)
    return float(np.sqrt(np.mean(err[ok] ** 2))) if ok.any() else math.nan


class MatrixInterrupted(KeyboardInterrupt):
    """Ctrl-C (its cause) during the fault matrix, with what was done: the
    baseline (empty if the clean run was interrupted), the faults run, and
    the run that was interrupted."""

    def __init__(self, baseline: dict[str, object], outcomes: list[FaultOutcome], running: str) -> None:
        super().__init__(f"interrupted during {running}")
        self.baseline = baseline
        self.outcomes = outcomes
        self.running = running


def run_matrix(target_name: str, rec: Recording, params: ParameterSet, faults: tuple[Fault, ...] = FAULTS,
               seed: int = 0, progress: Callable[[str], None] | None = None, variant: str | None = None,
               on: str = "unix", long_rec: Recording | None = None) -> tuple[dict[str, object], list[FaultOutcome]]:
    """The clean baseline and every fault on `rec` through `target_name`
    (`variant` and `on`: the micropython target's, as `make_target` takes them).

    `long_rec`: a longer recording (starting as `rec` does) on which the
    slow sensor faults run again from the window's start to its end, after
    a clean run of it (its false flags are in the baseline); None: no long runs.
    Ctrl-C raises `MatrixInterrupted` with what was done until then."""
    n = len(rec)
    window = slice(n // 3, n // 3 + max(1, n // 6))
    reference = rec.reference_soc()
    timeout = SKIP_TIMEOUT_S.get(target_name, SKIP_TIMEOUT_OTHER_S)

    corrupted: list[tuple[int, list[str]]] = []  # the last replay's damaged frames: (sample, fields)

    def replay(cells: Recording, bus_fault: dict[str, float] | None,
               commands: dict[int, cc.HostCommandCode] | None = None) -> tuple[ReplayResult, dict[str, int]]:
        target = make_target(target_name, params, variant=variant, on=on)
        injected: dict[str, int] = {}
        corrupted.clear()
        try:
            bus = target.start()
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
                corrupted.extend((window.start + k // per_sample, names) for k, names in faulty.corruptions)
            else:
                result = replay_lockstep(bus, [cells], timeout_s=max(timeout, 2.0), commands=commands,
                                         on_timeout="skip")
        finally:
            target.stop()
        return result, injected

    baseline: dict[str, object] = {}
    outcomes: list[FaultOutcome] = []
    running = "clean"
    try:
        clean, _ = replay(rec, None)
        clean_err = clean.soc[:, 0] - reference
        baseline |= {"rmse": _rmse(clean_err), "rmse_during": _rmse(clean_err[window]),
                     "rmse_after": _rmse(clean_err[window.stop:]), "answered": int(np.isfinite(clean.soc[:, 0]).sum()),
                     "samples": n, "window": [window.start, window.stop],
                     "window_s": [float(rec.time_s[window.start]), float(rec.time_s[window.stop - 1])],
                     "monitor_sent": clean.plausibility.sent, "false_flags": _clean_flags(clean)}
        long_window = None
        long_clean = None
        if long_rec is not None and any(f.slow for f in faults):
            if progress is not None:
                progress("clean (long)")
            running = "clean (long)"
            long_window = slice(window.start, len(long_rec))
            long_clean, _ = replay(long_rec, None)
            baseline["long"] = {"samples": len(long_rec), "false_flags": _clean_flags(long_clean),
                                "fault_from_s": float(long_rec.time_s[window.start] - long_rec.time_s[0]),
                                "rmse": _rmse(long_clean.soc[:, 0] - long_rec.reference_soc())}
        for fault in faults:
            running = fault.name
            if fault.kind == "reset" and target_name in ("host", "reference"):
                continue  # desktop targets have no reset to exercise (the command says so)
            if progress is not None:
                progress(fault.name)
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
                          or result.delivery.target_starts or d["bus_outages"])
            detection = []
            if fault.detect:
                detection.append(_detection("window", result, rec, window.start, fault, clean))
                if (fault.slow and long_window is not None and long_rec is not None and long_clean is not None
                        and not detection[0].detected):
                    if progress is not None:
                        progress(f"{fault.name} (long)")
                    long_result, _ = replay(fault.sensor(long_rec, long_window), None)  # type: ignore[misc]
                    detection.append(_detection("long", long_result, long_rec, long_window.start, fault, long_clean))
            on_bus = bool(flagged or stats_show or any(x.detected for x in detection))
            answered_clean = np.where(np.isfinite(err), clean_err, np.nan)  # the same samples as the fault's run
            during, after_window = _rmse(err[window]), _rmse(err[window.stop:])
            error_shows = bool(during > _rmse(answered_clean[window]) + ERROR_SHOWS
                               or after_window > _rmse(answered_clean[window.stop:]) + ERROR_SHOWS
                               or any(x.error_shows for x in detection))
            outcomes.append(FaultOutcome(
                fault=fault, samples=n, answered=answered, flagged_in_window=flagged, flags_seen=seen,
                target_faults=len(result.delivery.target_faults), injected=injected, delivery=d,
                rmse_during=during, rmse_after=after_window, recovery_s=recovery,
                nan_estimates=int(np.count_nonzero(np.isnan(result.soc_sigma[:, 0]) & ~np.isnan(soc))),
                visible_on_bus=on_bus, error_shows=error_shows, detection=detection,
                corrupted=_corruption_tally(corrupted, flags, result.delivery.crc_errors),
            ))
    except KeyboardInterrupt as exc:
        raise MatrixInterrupted(baseline, outcomes, running) from exc
    return baseline, outcomes
