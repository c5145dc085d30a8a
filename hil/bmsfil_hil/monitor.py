"""`bmsfil monitor`: a live terminal view of a pack on a CAN bus or in a log.

Every frame is decoded with the CAN contract (:func:`bmsfil.can_contract.decode`).
:class:`PackView` keeps the latest state of the pack (per cell: the last
estimate, health and measurements; for the pack: the current, the target's
status, frame counts) and gives it as a plain, JSON-ready dict;
:func:`render` turns that dict into a rich table. Frames that are not in the
contract or do not decode are counted by kind (an ID not in the contract,
29-bit IDs, error frames, CAN FD frames; a frame of the contract by its name
and field or what was wrong: :func:`bmsfil_hil.logreplay.frame_error_kind`)
with the first's log time and error, the most frequent shown, each in
``--json``; never raised: a monitor must survive whatever is on the bus.

Sources: a live bus opened with python-can (``--interface``, ``--channel``,
``--bitrate``, or ``-i``, ``-c``, ``-b`` as its tools spell them, ``--bus-option
KEY=VALUE``, completed from python-can's own configuration as its tools are:
CAN_INTERFACE, CAN_CHANNEL, ``~/.canrc``; a bus option ``config_context``
names a section of that file, laid over its [default], and is refused
where no file has it), or a python-can log (``--log``:
``.blf``, ``.asc`` or ``.log``, or any of them gzip-compressed, ``.log.gz``) played through the view. ``--once`` prints
one snapshot instead (a live bus is listened to for ``--window`` seconds
first; where no frame of the contract arrived in that time it warns, naming
the bus, and exits 1) and ``--json`` writes the last snapshot as JSON.

Age and staleness: a cell whose last estimate is older than ``--stale``
seconds is STALE. On a live bus age is measured on the host's clock from the
moment a frame arrived; in a log, in the log's own timestamps, relative to
its latest message. Age is also counted in the contract's own time, the
intervals (MeasPack ``dt_s``) of the samples between the one a cell's last
estimate follows and the sample before the newest one sent (``behind_s``; the
newest may not be answered yet): a lock-step replay sends thousands of samples a second, so a
cell its target stopped estimating is stale by that count long before the
clock says so. The same distance is counted in samples (``behind_samples``,
12-bit sequences unwrapped), from the same sample; without any MeasPack (a
log of a pack's own BMS: its estimates alone, no contract time) it is taken
from the sample before the newest any cell was estimated for, and a cell
more than ``--stale-samples`` samples behind that one (default
STALE_SAMPLES) is STALE too: a cell estimated for the newest sample or the
one before is 0 behind.

A cell's health, power and plausibility (EstCellHealth, EstCellPower,
EstCellFlags) are OLD where their last frame is older than ``--stale``
seconds (on the same clock) or its sequence more than ANSWER_LAG_SAMPLES
behind the cell's last EstCell: the target stopped sending them. The
snapshot lists them per cell (``old_answers``) and the table shows their
last values in brackets, never as current.

Losses: the counters of the contract say what did not arrive. Samples
missing from the MeasPack sequence (12 bits: a jump past the furthest-on
sequence sent; a repeat is not a loss, nor the harness starting again at
sequence 0, see :func:`bmsfil_hil.logreplay.sequence_restarts`: one within
WRAP_SLACK of the 12-bit wrap reads as the wrap, the sequences up to it
counted lost, and one whose first samples were lost counts none), per
cell the sequences its EstCells jumped over (their frames lost, or not
sent), and TargetStatus frames missing from its 8-bit counter (+1 a frame;
a restart is counter 0 with state not running; a status going on from the
counter of the one before the last, alternating, is two targets' counters
interleaved, said and not counted lost): each counted, with the first gaps
(the count before, how many, and ``at``, the time of the frame after). Such
times (``at``, ``first_at``, of a loss, a conflict, a frame not decoded)
are seconds after the first frame's timestamp, not the timestamps themselves
(a bus's and most logs' are seconds since 1970).
A sample or estimate put back in order on the bus (one of the last
REORDER_SLACK passed over, arriving after a later one) is taken off the
loss and counted as reordered, as `hil score` counts it; an EstCell behind
the cell's last one is counted late and not shown over it, nor a MeasPack
behind the newest over that.

Two targets answering for one cell: an EstCell for the sequence a cell's
last one carried, with another SOC, is counted as a conflict (the first
estimate of the sample kept, as `hil score` keeps it), and said.

A log is read one CAN channel at a time: ``--channel`` chooses one (as
python-can names it); a log with frames of the contract on more than one
channel and none chosen is refused, naming them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import threading
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import can
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bmsfil import can_contract as cc
from bmsfil_hil.busopts import BUS_OPEN_ERRORS, bus_config, open_failure, option_keys, resolve_bus
from bmsfil_hil.logreplay import (REORDER_SLACK, ChannelError, LogError, LogRead, describe_skipped, frame_error_kind,
                                  one_channel, sequence_restarts, statuses_interleaved)

#: Not on a terminal (a pipe, a file), a snapshot is printed at full width, not cut to 80 columns.
console = Console(highlight=False, markup=False,
                  width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 1000)
err_console = Console(stderr=True, highlight=False, markup=False)

#: Seconds between redraws of the live view.
REFRESH_S = 0.25
#: How long `--once` listens to a live bus when `--window` is not given.
WINDOW_S = 1.5
#: Without MeasPack (a log of a pack's estimates alone), a cell more than this many samples
#: behind the sample before the newest any cell was estimated for is STALE (`--stale-samples`):
#: 5 s at 10 Hz.
STALE_SAMPLES = 50
#: Kinds of frames not decoded named in the summary (the most frequent; --json has each).
SHOWN_ERRORS = 3
#: A cell's health, power or plausibility whose last frame's sequence is more than this many
#: samples behind the cell's last EstCell is old (the target stopped sending it): a sample's
#: answers come after its EstCell, so one sample behind is the usual.
ANSWER_LAG_SAMPLES = 4
#: The frames of a cell's answers beside its EstCell, by the name the snapshot gives them.
ANSWER_KINDS = {cc.EstCellHealth: "health", cc.EstCellPower: "power", cc.EstCellFlags: "plausibility"}

#: How many of the first gaps of a counter (samples, a cell's estimates, TargetStatus) are kept to say where.
FIRST_GAPS = 3


@dataclass
class _Losses:
    """What a counter's jumps say was lost (modulo `modulus`: 12-bit sequences, the 8-bit
    TargetStatus counter): how many, and the first FIRST_GAPS gaps (the count before each, how
    many were missing, and the log time of the frame after them). The last REORDER_SLACK counts
    passed over are kept (`recent`): one of them arriving late was put back in order on the
    bus, not lost, and is taken off the count (`reordered`), as `hil score` takes it."""

    modulus: int = cc.SEQUENCE_MODULUS
    count: int = 0
    first: list[dict[str, Any]] = field(default_factory=list)
    reordered: int = 0
    recent: list[int] = field(default_factory=list)  # at most REORDER_SLACK counts

    def note(self, after: int, missing: int, at: float | None) -> dict[str, Any]:
        """Count a gap; it is returned for `take_back`."""
        gap = {"after": after, "missing": missing, "at": at}
        self.count += missing
        if len(self.first) < FIRST_GAPS:
            self.first.append(gap)
        newest = (after + missing + 1) % self.modulus
        passed = [(newest - k) % self.modulus for k in range(min(missing, REORDER_SLACK), 0, -1)]
        kept = [q for q in self.recent if (newest - q) % self.modulus <= REORDER_SLACK]
        self.recent = (kept + passed)[-REORDER_SLACK:]
        return gap

    def take_back(self, gap: dict[str, Any] | None) -> None:
        """A gap `note` counted that was no loss after all (None: none)."""
        if gap is not None:
            self.count -= gap["missing"]
            self.first = [g for g in self.first if g is not gap]
            self.recent = []

    def arrived(self, count: int, newest: int) -> bool:
        """Whether `count`, arriving behind `newest`, is one counted lost a moment ago: then it
        is taken off the count (and off its gap's) as reordered."""
        if count not in self.recent or (newest - count) % self.modulus > REORDER_SLACK:
            return False
        self.recent.remove(count)
        self.count -= 1
        self.reordered += 1
        for gap in self.first:
            if 0 < (count - gap["after"]) % self.modulus <= gap["missing"]:
                gap["missing"] -= 1
                if not gap["missing"]:
                    self.first.remove(gap)
                break
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "first": [dict(gap) for gap in self.first], "reordered": self.reordered}


@dataclass
class _Cell:
    """What the view knows about one cell; nan/None = not seen or not valid."""

    soc: float = math.nan
    soc_sigma: float = math.nan
    flags: int = 0
    sequence: int | None = None
    estimated_at: float | None = None  # when the last EstCell arrived
    estimated_sample_at: float | None = None  # contract time of the sample it follows (None: MeasPack not seen)
    sample_position: int | None = None  # PackView._sample_position of the sample it follows (None: not seen)
    estimate_position: int | None = None  # its last EstCell's sequence on the count of estimated ones
    capacity_Ah: float = math.nan
    r0_ohm: float = math.nan  # EstCellHealth's ohmic resistance
    core_temp_C: float = math.nan  # EstCellHealth's core temperature (virtual sensor)
    voltage_V: float = math.nan
    temp_C: float = math.nan
    plaus_flags: int | None = None  # EstCellFlags: the plausibility monitor's (None: no frame seen)
    unseen_current_A: float = math.nan
    unseen_current_sigma_A: float = math.nan
    # EstCellPower: per horizon name, the latest (discharge_W, charge_W)
    power: dict[str, tuple[float, float]] = field(default_factory=dict)
    power_latest: str | None = None  # the horizon of the last EstCellPower with one
    answers_at: dict[str, tuple[float, int]] = field(default_factory=dict)  # per ANSWER_KINDS: when, and sequence
    answered: bool = False  # a frame of the target's about it came (the harness's MeasCell is not one)
    skipped: _Losses = field(default_factory=_Losses)  # sequences its EstCells jumped over
    late: int = 0  # EstCells behind its last one (out of order, or an old one again): counted, not shown
    conflicts: int = 0  # EstCells for its last sequence again with another SOC (a second target answering?)
    first_conflict: dict[str, Any] | None = None  # the first: sequence, log time, the SOC kept and the other


class PackView:
    """The latest state of a pack, from the frames fed to it.

    ``feed`` takes every message seen, in order; ``snapshot`` gives the state
    as a dict of plain values (``None`` where a value is not valid or not
    known), ready for :func:`render` or ``json.dumps``.
    """

    def __init__(self, stale_s: float = 5.0, stale_samples: int = STALE_SAMPLES) -> None:
        if not stale_s > 0:
            raise ValueError(f"stale_s must be positive, got {stale_s!r}")
        if not stale_samples > 0:
            raise ValueError(f"stale_samples must be positive, got {stale_samples!r}")
        self.stale_s = stale_s
        self.stale_samples = stale_samples
        self._cells: dict[int, _Cell] = {}
        self._pack: cc.MeasPack | None = None
        self._status: cc.TargetStatus | None = None
        self._profile: cc.TargetProfile | None = None
        self._latest: float | None = None
        # Contract time: the sum of the MeasPack intervals seen, the time of each
        # sequence's (latest) MeasPack, and that of the newest sample any cell was estimated for.
        self._clock = 0.0
        self._sample_time: dict[int, float] = {}
        self._sample_before: dict[int, float] = {}  # sequence -> contract time of the sample before it
        self._newest_estimated: float | None = None
        #: contract time of the sample before the newest estimated one: cells are judged against
        #: it, so that one not yet answered in the newest sample is not behind (a 9.4 s interval)
        self._before_newest: float | None = None
        #: every fault a TargetStatus reported, by name, and the measurement frames it refused for a
        #: bad crc (counted since its start: the largest count seen per start)
        self.faults_reported: dict[str, int] = {}
        #: Samples missing from the MeasPack sequence (after the furthest-on sequence sent, the
        #: newest), and TargetStatus frames missing from its counter.
        self.samples_lost = _Losses()
        self.status_lost = _Losses(cc.COUNTER_MODULUS)
        #: TargetStatus frames going on from the counter of the one before the last: two targets' interleaved
        self.statuses_interleaved = 0
        self._prior_status: int | None = None  # the counter of the status before the last
        self._status_loss: dict[str, Any] | None = None  # the loss the last status's jump was counted as
        # Samples counted without the 12-bit wrap (`_position`): the newest sent (sequence, position),
        # each sequence's (latest) MeasPack's position, and the newest any cell was estimated for.
        self._newest_sent: tuple[int, int] | None = None
        self._sample_position: dict[int, int] = {}
        self._newest_estimate: tuple[int, int] | None = None
        self.crc_errors = 0
        self.frames_decoded = 0
        self.frames_not_in_contract = 0
        self.frames_undecodable = 0
        self.last_error: str | None = None
        #: Frames that did not decode, by kind (`frame_error_kind`): whether in the contract (its
        #: ID is), how many, and the first's log time and error.
        self.decode_errors: dict[str, dict[str, Any]] = {}
        self._first_stamp: float | None = None  # the first frame's own timestamp: "at" times count from it

    def feed(self, msg: can.Message, at: float | None = None) -> None:
        """Take one message; ``at`` is when it arrived (default: its own timestamp).

        A frame that is not in the contract (unknown or extended ID, error
        frame) or that does not decode (wrong DLC, garbled values) is
        counted by kind, with the first's log time and error, and its error
        kept as the last error.
        """
        now = msg.timestamp if at is None else at
        if not math.isfinite(now):  # a log line's time edited or damaged: no time of its own
            now = 0.0 if self._latest is None else self._latest
        # Where a loss or an error is said to be: seconds after the first frame (a bus's and most
        # logs' timestamps are seconds since 1970).
        if math.isfinite(msg.timestamp):
            if self._first_stamp is None:
                self._first_stamp = msg.timestamp
            stamp: float | None = msg.timestamp - self._first_stamp
        else:
            stamp = None
        if self._latest is None or now > self._latest:
            self._latest = now
        try:
            frame = cc.decode(msg)
        except cc.FrameError as exc:
            if exc.frame_name is None:
                self.frames_not_in_contract += 1
            else:
                self.frames_undecodable += 1
            self.last_error = error = str(exc)
            kind = frame_error_kind(msg, exc)
            counted = self.decode_errors.get(kind)
            if counted is None:
                counted = self.decode_errors[kind] = {"in_contract": exc.frame_name is not None, "field": exc.field,
                                                      "count": 0, "first_at": stamp, "first_error": error}
            counted["count"] += 1
            return
        self.frames_decoded += 1
        if isinstance(frame, (cc.EstCell, cc.EstCellHealth, cc.EstCellPower, cc.EstCellFlags, cc.MeasCell)):
            cell = self._cells.get(frame.cell_index) or self._cell(frame.cell_index)
            if not isinstance(frame, cc.MeasCell):  # the harness's: not an answer of the target's
                cell.answered = True
                kind = ANSWER_KINDS.get(type(frame))
                if kind is not None:
                    cell.answers_at[kind] = (now, frame.sequence)
        if isinstance(frame, cc.EstCell):
            if cell.sequence == frame.sequence:  # the sample again: its first estimate is kept
                if not (cell.soc == frame.soc or math.isnan(cell.soc) and math.isnan(frame.soc)):
                    cell.conflicts += 1
                    if cell.first_conflict is None:
                        cell.first_conflict = {"sequence": frame.sequence, "at": stamp, "soc_kept": _value(cell.soc),
                                               "soc_other": _value(frame.soc)}
                return
            if cell.sequence is not None:
                ahead = (frame.sequence - cell.sequence) % cc.SEQUENCE_MODULUS
                if ahead != 1 and not sequence_restarts(cell.sequence, frame.sequence):
                    if ahead > cc.SEQUENCE_MODULUS // 2:  # behind its last: late, not shown over it
                        cell.late += 1
                        cell.skipped.arrived(frame.sequence, cell.sequence)
                        return
                    cell.skipped.note(cell.sequence, ahead - 1, stamp)
            cell.soc, cell.soc_sigma, cell.flags = frame.soc, frame.soc_sigma, frame.flags
            cell.sequence, cell.estimated_at = frame.sequence, now
            cell.estimated_sample_at = self._sample_time.get(frame.sequence)
            cell.sample_position = self._sample_position.get(frame.sequence)
            newest = self._newest_estimate  # the same for every cell of a sample: not counted again
            cell.estimate_position = (newest[1] if newest is not None and newest[0] == frame.sequence
                                      else _position(newest, frame.sequence))
            if self._newest_estimate is None or cell.estimate_position > self._newest_estimate[1]:
                self._newest_estimate = (frame.sequence, cell.estimate_position)
            at = cell.estimated_sample_at
            if at is not None and (self._newest_estimated is None or at > self._newest_estimated):
                self._before_newest = self._sample_before.get(frame.sequence)
                self._newest_estimated = at
        elif isinstance(frame, cc.EstCellHealth):
            cell.capacity_Ah, cell.r0_ohm, cell.core_temp_C = frame.capacity_Ah, frame.r0_ohm, frame.core_temp_C
        elif isinstance(frame, cc.EstCellPower):
            if frame.horizon == cc.PowerHorizon.NONE:
                # No result yet: a target that (re)started; what it said before is gone.
                cell.power, cell.power_latest = {}, None
            else:
                name = frame.horizon.name.lower()
                cell.power[name] = (frame.discharge_power_W, frame.charge_power_W)
                cell.power_latest = name
        elif isinstance(frame, cc.EstCellFlags):
            cell.plaus_flags = frame.flags
            cell.unseen_current_A, cell.unseen_current_sigma_A = frame.unseen_current_A, frame.unseen_current_sigma_A
        elif isinstance(frame, cc.MeasCell):
            cell.voltage_V, cell.temp_C = frame.voltage_V, frame.temp_C
        elif isinstance(frame, cc.MeasPack):
            newest = self._newest_sent
            position = _position(newest, frame.sequence)
            if newest is not None and position < newest[1]:
                # Behind the newest sent: one passed over a moment ago (put back in order on the
                # bus, not lost), or an old one again. Recorded, not shown over the newest.
                if self.samples_lost.arrived(frame.sequence, newest[0]):
                    self._sample_position[frame.sequence] = position
                    self._sample_time[frame.sequence] = self._sample_before.get(newest[0], self._clock)
                return
            if newest is None or position > newest[1]:
                if newest is not None and position > newest[1] + 1:
                    self.samples_lost.note(newest[0], position - newest[1] - 1, stamp)
                self._newest_sent = (frame.sequence, position)
            self._sample_position[frame.sequence] = position
            if self._pack is not None and frame.sequence != self._pack.sequence:  # not a repeat
                self._sample_before[frame.sequence] = self._clock
                self._clock += _interval(frame.dt_s)
            self._sample_time[frame.sequence] = self._clock
            self._pack = frame
        elif isinstance(frame, cc.TargetStatus):
            if self._status is not None and frame == self._status:
                return  # the same status again (a bus's echo, a repeated log line): nothing new
            if frame.fault_code != cc.FaultCode.NONE:
                name = frame.fault_code.name.lower()
                self.faults_reported[name] = self.faults_reported.get(name, 0) + 1
            # crc_errors counts since the target started, modulo 16: the increase since the status
            # before, or all of it on the first status and on a restart's (counter 0, not running).
            restarted = frame.counter == 0 and frame.state != cc.TargetState.RUNNING
            if self._status is not None and not restarted:
                last = self._status.counter
                jump = (frame.counter - last) % cc.COUNTER_MODULUS
                if jump > cc.COUNTER_MODULUS // 2 and self.status_lost.arrived(frame.counter, last):
                    return  # one passed over a moment ago, put back in order: not lost, and not the latest
                if statuses_interleaved(self._prior_status, last, frame.counter):
                    self.statuses_interleaved += 1
                    self.status_lost.take_back(self._status_loss)  # the jump to the last: another target's
                    self._status_loss = None
                elif 1 < jump <= cc.COUNTER_MODULUS // 2:  # further back: one put back in order
                    self._status_loss = self.status_lost.note(last, jump - 1, stamp)
                else:
                    self._status_loss = None
            self._prior_status = None if self._status is None or restarted else self._status.counter
            before = 0 if self._status is None else self._status.crc_errors
            self.crc_errors += (frame.crc_errors if restarted or self._status is None
                                else (frame.crc_errors - before) % cc.CRC_ERRORS_MODULUS)
            self._status = frame
        elif isinstance(frame, cc.TargetProfile):
            self._profile = frame

    def _cell(self, index: int) -> _Cell:
        cell = self._cells.get(index)
        if cell is None:  # (not setdefault: a _Cell made on every frame halved the pace)
            cell = self._cells[index] = _Cell()
        return cell

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The state as plain values; ages are taken at ``now`` (default: the latest message's time).

        ``{"stale_after_s", "cells": [...], "pack": {...}}``; SOC and
        sigma are fractions, a cell without any estimate yet is stale with
        age ``None``.
        """
        now = self._latest if now is None else now
        declared = 0 if self._pack is None else self._pack.n_cells
        # Cells are judged against the sample before the newest one sent (the newest may not be
        # answered yet), so that a target that stopped answering leaves every cell behind; without
        # MeasPacks, against the sample before the newest one any cell was estimated for.
        sent_before = None if self._pack is None else self._sample_before.get(self._pack.sequence)
        reference = (sent_before if sent_before is not None
                     else self._before_newest if self._before_newest is not None else self._newest_estimated)
        # In samples, against the same sample: the one before the newest sent, or without
        # MeasPacks, before the newest estimated.
        newest = self._newest_sent if self._newest_sent is not None else self._newest_estimate
        cells = []
        # The pack's cells (MeasPack's n_cells), heard from or not, and any other cell a frame was about.
        for index in sorted(set(self._cells) | set(range(declared))):
            c = self._cells.get(index, _Cell())
            age = None if c.estimated_at is None or now is None else now - c.estimated_at
            behind = (None if c.estimated_sample_at is None or reference is None
                      else max(0.0, reference - c.estimated_sample_at))
            position = c.sample_position if self._newest_sent is not None else c.estimate_position
            behind_samples = None if position is None or newest is None else max(0, newest[1] - 1 - position)
            # Health, power, plausibility: old on the clock, or far behind the cell's own estimates.
            old = [kind for kind, (at, sequence) in sorted(c.answers_at.items())
                   if (now is not None and now - at > self.stale_s)
                   or (c.sequence is not None and _lag(sequence, c.sequence) > ANSWER_LAG_SAMPLES)]
            cells.append({
                "cell_index": index,
                "soc": _value(c.soc),
                "soc_sigma": _value(c.soc_sigma),
                "capacity_Ah": _value(c.capacity_Ah),
                "r0_ohm": _value(c.r0_ohm),
                "voltage_V": _value(c.voltage_V),
                "temp_C": _value(c.temp_C),
                "core_temp_C": _value(c.core_temp_C),
                "flags": [name for bit, name in cc.EST_CELL_FLAGS.items() if c.flags & bit],
                "plausibility": None if c.plaus_flags is None else
                [name for bit, name in cc.PLAUS_FLAGS.items() if c.plaus_flags & bit],
                "unseen_current_A": _value(c.unseen_current_A),
                "unseen_current_sigma_A": _value(c.unseen_current_sigma_A),
                "power": {name: {"discharge_W": _value(d), "charge_W": _value(ch)}
                          for name, (d, ch) in sorted(c.power.items())},
                "power_latest": c.power_latest,
                "old_answers": old,
                "sequence": c.sequence,
                "age_s": age,
                "behind_s": behind,
                "behind_samples": behind_samples,
                # Without MeasPacks (no contract time), how far behind is judged in samples.
                "stale": (age is None or age > self.stale_s or (behind is not None and behind > self.stale_s)
                          or (self._pack is None and behind_samples is not None
                              and behind_samples > self.stale_samples)),
                "in_pack": None if self._pack is None else index < declared,
                "heard": c.answered,
                "estimates_skipped": c.skipped.as_dict(),
                "estimates_late": c.late,
                "conflicts": {"count": c.conflicts, "first": c.first_conflict},
            })
        socs = [c["soc"] for c in cells if c["soc"] is not None and c["in_pack"] is not False]
        # Heard from, estimated at least once, and its latest estimate not valid (a reading it refused).
        invalid = sum(c["soc"] is None and c["sequence"] is not None and c["in_pack"] is not False for c in cells)
        return {
            "stale_after_s": self.stale_s,
            "stale_after_samples": self.stale_samples,
            "cells": cells,
            "pack": {
                "cells_seen": sum(c["heard"] for c in cells),
                "cells_silent": sum(not c["heard"] for c in cells),
                "cells_outside_pack": sum(c["in_pack"] is False for c in cells),
                "cells_stale": sum(c["stale"] and c["heard"] for c in cells),  # the silent ones: cells_silent
                "cells_without_valid_soc": invalid,  # left out of soc_min/mean/max
                "cells_with_conflicts": sum(c["conflicts"]["count"] > 0 for c in cells),
                "cells_with_old_answers": sum(bool(c["old_answers"]) for c in cells),
                "soc_min": min(socs) if socs else None,
                "soc_mean": sum(socs) / len(socs) if socs else None,
                "soc_max": max(socs) if socs else None,
                "current_A": None if self._pack is None else _value(self._pack.current_A),
                "sequence": None if self._pack is None else self._pack.sequence,
                "n_cells": None if self._pack is None else self._pack.n_cells,
                "target_status": None if self._status is None else _status_dict(self._status),
                "faults_reported": dict(self.faults_reported),
                "crc_errors": self.crc_errors,
                "samples_lost": self.samples_lost.as_dict(),
                "status_frames_lost": self.status_lost.as_dict(),
                "status_counters_interleaved": self.statuses_interleaved,
                "target_profile": None if self._profile is None else self._profile.by_part(),
                "frames_decoded": self.frames_decoded,
                "frames_not_in_contract": self.frames_not_in_contract,
                "frames_undecodable": self.frames_undecodable,
                "last_error": self.last_error,
                "decode_errors": [{"kind": kind, **counted} for kind, counted in
                                  sorted(self.decode_errors.items(), key=lambda item: -item[1]["count"])],
            },
        }


def _position(newest: tuple[int, int] | None, sequence: int) -> int:
    """Where `sequence` is on a count of samples that does not wrap, given the newest (sequence,
    position) on it: up to half the 12-bit counter on from it or back, or the next one when it
    starts the counter again (`sequence_restarts`: the harness replaying another recording)."""
    if newest is None:
        return 0
    last, at = newest
    if sequence_restarts(last, sequence):
        return at + 1
    ahead = (sequence - last) % cc.SEQUENCE_MODULUS
    return at + ahead if ahead <= cc.SEQUENCE_MODULUS // 2 else at + ahead - cc.SEQUENCE_MODULUS


def _lag(sequence: int, latest: int) -> int:
    """How many samples `sequence` is behind `latest` (12 bits; 0 when it is not behind)."""
    back = (latest - sequence) % cc.SEQUENCE_MODULUS
    return back if back <= cc.SEQUENCE_MODULUS // 2 else 0


def _value(x: float) -> float | None:
    return None if math.isnan(x) else x


def _interval(dt_s: float) -> float:
    """A MeasPack's interval in contract time: one not known (nan) as 0, one
    of LONG_GAP_MAX_S or more (inf) as cc.UNCARRIED_GAP_S, as the log replay takes them."""
    return 0.0 if math.isnan(dt_s) else min(dt_s, cc.UNCARRIED_GAP_S)


def _status_dict(s: cc.TargetStatus) -> dict[str, Any]:
    return {
        "state": s.state.name.lower(),
        "fault": s.fault_code.name.lower(),
        "start": s.start.name.lower(),
        "last_sequence": s.last_sequence,
        "crc_errors": s.crc_errors,
        "instructions_per_cell_step": s.instructions_per_cell_step,
        "counter": s.counter,
    }


# --- rendering ----------------------------------------------------------------


def _fmt(x: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if x is None else format(x * scale, spec)


def _fmt_int(n: int | None) -> str:
    return "-" if n is None else str(n)


def _power_text(cell: dict[str, Any]) -> str:
    """The latest state of power received: discharge/charge and its horizon."""
    name = cell.get("power_latest")
    if name is None:
        return "-"
    p = cell["power"][name]
    return f"{_fmt(p['discharge_W'], '.0f')}/{_fmt(p['charge_W'], '.0f')} {name.removeprefix('peak_')}"


def render(snapshot: dict[str, Any], title: str = "bmsfil monitor") -> RenderableType:
    """A snapshot (:meth:`PackView.snapshot`) as a pack summary and a table of cells."""
    pack = snapshot["pack"]
    table = Table(title=title)
    for col in ("cell", "SOC %", "σ %", "Ah", "R0 mΩ", "V", "°C", "core °C", "power W dis/chg", "flags", "seq",
                "age s", "behind s/samples", ""):
        table.add_column(col, justify="left" if col in ("flags", "") else "right")
    for c in snapshot["cells"]:
        def answer(kind: str, text: str) -> str:
            """A value of an old kind of answer (old_answers) in brackets: the last received, not current."""
            return f"({text})" if kind in c["old_answers"] and text not in ("-", "") else text

        table.add_row(
            str(c["cell_index"]), _fmt(c["soc"], ".2f", 100), _fmt(c["soc_sigma"], ".2f", 100),
            answer("health", _fmt(c["capacity_Ah"], ".3f")), answer("health", _fmt(c["r0_ohm"], ".1f", 1000)),
            _fmt(c["voltage_V"], ".4f"), _fmt(c["temp_C"], ".1f"), answer("health", _fmt(c["core_temp_C"], ".1f")),
            answer("power", _power_text(c)),
            ",".join(c["flags"] + [answer("plausibility", ",".join(c["plausibility"] or []))]).strip(","),
            _fmt_int(c["sequence"]), "no estimate" if c["age_s"] is None else f"{c['age_s']:.1f}",
            "-" if c["behind_samples"] is None else f"{_fmt(c['behind_s'], '.1f')}/{c['behind_samples']}",
            " ".join(word for word, on in (("STALE", c["stale"]), ("SILENT", not c["heard"]),
                                           ("NOT IN PACK", c["in_pack"] is False),
                                           ("TWO ANSWERS", c["conflicts"]["count"] > 0),
                                           ("OLD " + "/".join(c["old_answers"]), bool(c["old_answers"])),
                                           ("NO VALID SOC", c["soc"] is None and c["sequence"] is not None)) if on),
            style="red" if c["stale"] or c["in_pack"] is False else None,
        )
    status = pack["target_status"]
    if status is None:
        target = "no TargetStatus seen"
    else:
        ipcs = status["instructions_per_cell_step"]
        target = (f"{status['state']}, fault {status['fault']}, start {status['start']}"
                  + ("" if ipcs is None else f", {ipcs} instr/cell step"))
    profile = pack["target_profile"]
    if profile is not None:
        target += (" (SOC filter / monitor / capacity, R0, power / core temp. "
                   + " / ".join(_fmt_int(profile[part]) for part in cc.PROFILE_PARTS) + ")")
    lines = [
        (f"{pack['cells_seen']} cells seen"
         + (f", {pack['cells_stale']} STALE (their last SOC in the summary)" if pack["cells_stale"] else "")
         + (f", {pack['cells_silent']} of the pack SILENT (no frame of theirs at all)" if pack["cells_silent"]
            else "")
         + (f", {pack['cells_outside_pack']} NOT IN PACK (beyond the {pack['n_cells']} cells MeasPack declares)"
            if pack["cells_outside_pack"] else "")
         + (f", {pack['cells_without_valid_soc']} without a valid SOC (left out of the summary)"
            if pack["cells_without_valid_soc"] else "")
         + (f", {pack['cells_with_old_answers']} with OLD health, power or plausibility (its frames stopped: the "
            "last received in brackets)" if pack["cells_with_old_answers"] else "")
         + f" · SOC min / mean / max {_fmt(pack['soc_min'], '.2f', 100)} / "
         f"{_fmt(pack['soc_mean'], '.2f', 100)} / {_fmt(pack['soc_max'], '.2f', 100)} %"),
        (f"pack current {_fmt(pack['current_A'], '.3f')} A (sequence {_fmt_int(pack['sequence'])} mod {cc.SEQUENCE_MODULUS}, "
         f"{_fmt_int(pack['n_cells'])} cells)"),
        f"target: {target}" + (" · faults reported: " + ", ".join(f"{name} ×{n}" for name, n in
                                                                   pack["faults_reported"].items())
                               if pack["faults_reported"] else "")
        + (f" · {pack['crc_errors']} measurement frame(s) refused for a bad crc" if pack["crc_errors"] else ""),
        (f"frames: {pack['frames_decoded']} decoded, {pack['frames_not_in_contract']} not in the contract, "
         f"{pack['frames_undecodable']} undecodable · stale after {snapshot['stale_after_s']:g} s "
         "(of age, or behind the sample before the newest sent"
         + ("" if pack["sequence"] is not None else
            f"; no MeasPack: or {snapshot['stale_after_samples']} samples behind the one before the newest "
            "estimated") + ")"),
    ]
    lines.extend(_loss_lines(snapshot))
    errors = pack["decode_errors"]
    if errors:
        lines.append("not decoded: " + "; ".join(_error_text(e) for e in errors[:SHOWN_ERRORS])
                     + (f"; {len(errors) - SHOWN_ERRORS} more kind(s), each in --json"
                        if len(errors) > SHOWN_ERRORS else ""))
    return Group(table, Text("\n".join(lines)))


def _error_text(kind: dict[str, Any]) -> str:
    """A kind of frame not decoded: how many, and the first's log time (and, for a field, what
    was wrong with it)."""
    first = [] if kind["first_at"] is None else [f"at {kind['first_at']:.3f}"]
    if kind["field"] is not None:
        first.append(kind["first_error"].partition(": ")[2])
    return f"{kind['count']} × {kind['kind']}" + (f" (first {': '.join(first)})" if first else "")


def _gaps_text(losses: dict[str, Any], what: str) -> str:
    """Where the first gaps of a counter were: '5 after sequence 99 at 12.300, ...'."""
    gaps = ", ".join(f"{g['missing']} after {what} {g['after']}" + ("" if g["at"] is None else f" at {g['at']:.3f}")
                     for g in losses["first"])
    return gaps + (", ..." if sum(g["missing"] for g in losses["first"]) < losses["count"] else "")


def _loss_lines(snapshot: dict[str, Any]) -> list[str]:
    """What the counters say was lost: samples, each cell's estimates, TargetStatus frames (log time)."""
    pack, lines = snapshot["pack"], []
    if pack["samples_lost"]["count"]:
        lines.append(f"LOST: {pack['samples_lost']['count']} sample(s) missing from the MeasPack sequence "
                     f"({_gaps_text(pack['samples_lost'], 'sequence')})")
    if pack["samples_lost"]["reordered"]:
        lines.append(f"{pack['samples_lost']['reordered']} MeasPack(s) out of order (after a later one, put "
                     "back on the bus): not lost")
    skipped = [c for c in snapshot["cells"] if c["estimates_skipped"]["count"]]
    if skipped:
        lines.append(f"{len(skipped)} cell(s) skipped estimates (lost, or not sent): " + "; ".join(
            f"cell {c['cell_index']}: {c['estimates_skipped']['count']} "
            f"({_gaps_text(c['estimates_skipped'], 'sequence')})"
            for c in skipped[:FIRST_GAPS]) + ("; ... (each in --json)" if len(skipped) > FIRST_GAPS else ""))
    late = [c for c in snapshot["cells"] if c["estimates_late"]]
    if late:
        lines.append(f"{len(late)} cell(s) with EstCells behind their last (out of order, or old ones again: "
                     "counted, not shown): " + "; ".join(
                         f"cell {c['cell_index']}: {c['estimates_late']}"
                         + (f", {c['estimates_skipped']['reordered']} of them counted skipped a moment before"
                            if c["estimates_skipped"]["reordered"] else "") for c in late[:FIRST_GAPS])
                     + ("; ... (each in --json)" if len(late) > FIRST_GAPS else ""))
    doubled = [c for c in snapshot["cells"] if c["conflicts"]["count"]]
    for c in doubled[:FIRST_GAPS]:
        first = c["conflicts"]["first"]
        lines.append(f"cell {c['cell_index']}: {c['conflicts']['count']} EstCell(s) for a sequence it had an "
                     f"estimate of, with another SOC (first: sequence {first['sequence']}"
                     + ("" if first["at"] is None else f" at {first['at']:.3f}")
                     + f", SOC {_fmt(first['soc_kept'], '.2f', 100)} % kept, then "
                     f"{_fmt(first['soc_other'], '.2f', 100)} %): two targets answering for cell "
                     f"{c['cell_index']}?")
    if len(doubled) > FIRST_GAPS:
        lines.append(f"... and {len(doubled) - FIRST_GAPS} more cell(s) answered twice (each in --json)")
    if pack["status_frames_lost"]["count"]:
        lines.append(f"LOST: {pack['status_frames_lost']['count']} TargetStatus frame(s) missing from its counter "
                     f"({_gaps_text(pack['status_frames_lost'], 'counter')})")
    if pack["status_counters_interleaved"]:
        lines.append(f"TargetStatus counters interleaved (two targets?): {pack['status_counters_interleaved']} "
                     "status(es) going on from the counter of the one before the last, not counted as lost")
    return lines


# --- the command --------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    """Add `bmsfil monitor` to the `bmsfil` command (entry point `bmsfil.commands`)."""
    p = sub.add_parser("monitor", help="live view of a pack on a CAN bus or in a CAN log, decoded with the contract")
    source = p.add_mutually_exclusive_group()
    source.add_argument("-i", "--interface", help="python-can interface of a live bus, e.g. socketcan, pcan, slcan; "
                        "without it and --log, the bus python-can's configuration names (CAN_INTERFACE and "
                        "CAN_CHANNEL, or ~/.canrc)")
    source.add_argument("--log", type=Path, help="python-can log to play (.blf, .asc or .log; also gzip-compressed, "
                        "e.g. .log.gz)")
    p.add_argument("-c", "--channel", help="python-can channel of the live bus, e.g. can0, PCAN_USBBUS1; with --log, "
                   "the channel of the log to show, as python-can names it (0, 1, ... in an .asc or .blf file, "
                   "whose own numbers start at 1), needed for a log with frames of the contract on several")
    p.add_argument("-b", "--bitrate", type=int, help="bit rate of the live bus in bit/s")
    p.add_argument("--bus-option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other python-can bus argument (repeatable); numbers and true/false are typed; "
                        "config_context=SECTION lays that section of python-can's configuration file over its "
                        "[default] (refused where no file has it)")
    p.add_argument("--once", action="store_true",
                   help="print one snapshot and exit: of the whole log, or of --window seconds of the bus")
    p.add_argument("--window", type=_positive, metavar="S",
                   help="with --once on a live bus: seconds to listen before the snapshot (default 1.5); "
                        "refused with --log and without --once")
    p.add_argument("--stale", type=_positive, default=5.0, metavar="S",
                   help="a cell whose last estimate is older than this many seconds, on the clock or in the "
                        "samples' intervals behind the sample before the newest sent (before the newest estimated, "
                        "without MeasPack), is STALE (default 5)")
    p.add_argument("--stale-samples", type=_positive_int, default=STALE_SAMPLES, metavar="N",
                   help="without MeasPack frames (a log or bus of a pack's estimates alone: no contract time), a "
                        f"cell more than N samples behind the sample before the newest any cell was estimated "
                        f"for is STALE (default {STALE_SAMPLES})")
    p.add_argument("--speed", type=_positive, metavar="X",
                   help="--log without --once: play the log at X times its own pace, pauses in it over 10 s "
                        "cut to 10 s (default: as fast as it reads); refused on a live bus and with --once")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the last snapshot as JSON on exit")
    p.set_defaults(func=cmd_monitor)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def cmd_monitor(args: argparse.Namespace) -> int:
    """Run `bmsfil monitor`: 0 when done (or stopped with Ctrl-C or SIGTERM, its --json snapshot
    written either way), 1 on a bus error or when --once heard no frame of the contract on a live
    bus (its snapshot written too), 2 on a bad source."""

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends the process
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    try:
        return _cmd_monitor(args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _cmd_monitor(args: argparse.Namespace) -> int:
    view = PackView(args.stale, args.stale_samples)
    if args.speed is not None and (args.log is None or args.once):
        err_console.print(f"bmsfil monitor: --speed {args.speed:g} paces the play of a log (--log, without --once); "
                          + ("--once reads the whole log at once" if args.log is not None else
                             "a live bus (--interface) comes at its own pace"), soft_wrap=True)
        return 2
    if args.window is not None and (args.log is not None or not args.once):
        err_console.print(f"bmsfil monitor: --window {args.window:g} is how long --once listens to a live bus "
                          "(--interface) before its snapshot; "
                          + ("a log (--log) is not listened to but read" if args.log is not None else
                             "without --once the view runs until Ctrl-C"), soft_wrap=True)
        return 2
    if args.log is not None:
        if args.bitrate is not None or args.bus_option:
            err_console.print("bmsfil monitor: --bitrate and --bus-option are for a live bus "
                              "(--interface), not --log", soft_wrap=True)
            return 2
        status, now = _monitor_log(args, view), None
    else:
        try:
            config = resolve_bus(_bus_config(args), option_keys(args.bus_option))
        except ValueError as exc:
            err_console.print(f"bmsfil monitor: {exc}", soft_wrap=True)
            return 2
        status, now = _monitor_bus(args, config, view), time.monotonic()
    if status != 2 and args.json is not None:
        _write_json(args.json, view.snapshot(now))
    return status


def _bus_config(args: argparse.Namespace) -> dict[str, object]:
    return bus_config(args.interface, args.channel, args.bitrate, args.bus_option)


def _monitor_log(args: argparse.Namespace, view: PackView) -> int:
    title = f"bmsfil monitor: {args.log}"
    try:
        source = LogRead(args.log)
        if source.stream_note:  # before the view: what of the file is read at all
            err_console.print(f"bmsfil monitor: warning: CAN log {args.log}: {source.stream_note}", soft_wrap=True)
        messages = one_channel(source, args.log, args.channel, "--channel")
        if args.once:
            for msg in messages:
                view.feed(msg)
        else:
            with Live(render(view.snapshot(), title), console=console, auto_refresh=False) as live:
                try:
                    _play(messages, view, live, title, args.speed)
                finally:
                    live.update(render(view.snapshot(), title), refresh=True)
    except (ChannelError, LogError) as exc:
        err_console.print(f"bmsfil monitor: {exc}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 0
    if args.once:
        console.print(render(view.snapshot(), title))
    if source.cut_short:
        err_console.print(f"bmsfil monitor: warning: CAN log {args.log} {source.cut_short}: cut short?; shown up "
                          "to its end", soft_wrap=True)
    if source.skipped:
        err_console.print(f"bmsfil monitor: warning: CAN log {args.log}: "
                          f"{describe_skipped(source.skipped, source.skipped_unit)}", soft_wrap=True)
    return 0


#: A pause longer than this in a log's time is not waited out by --speed (as the real-time
#: replay skips the recording's long gaps): a logger left running over a weekend.
PLAY_GAP_MAX_S = 10.0


def _play(messages: Iterable[can.Message], view: PackView, live: Live, title: str, speed: float | None) -> None:
    """Feed a log to the view, redrawing every REFRESH_S; paced by its timestamps at ``speed``, if
    given, each pause in them cut to PLAY_GAP_MAX_S of log time."""
    last: float | None = None  # log time of the message before
    due = time.monotonic()     # wall time the message is due
    next_draw = time.monotonic()
    for msg in messages:
        if speed is not None and math.isfinite(msg.timestamp):
            if last is not None:
                due += min(max(msg.timestamp - last, 0.0), PLAY_GAP_MAX_S) / speed
            last = msg.timestamp
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        view.feed(msg)
        if time.monotonic() >= next_draw:
            live.update(render(view.snapshot(), title), refresh=True)
            next_draw = time.monotonic() + REFRESH_S


def _monitor_bus(args: argparse.Namespace, config: dict[str, object], view: PackView) -> int:
    shown = ", ".join(f"{k}={v!r}" for k, v in config.items())
    try:
        bus = can.Bus(**config)  # type: ignore[arg-type]
    except BUS_OPEN_ERRORS as exc:
        err_console.print(f"bmsfil monitor: {open_failure(config, exc)}", soft_wrap=True)
        return 2
    where = f"{config['interface']} {config.get('channel', '(its default channel)')}"
    title = f"bmsfil monitor: {where}"
    try:
        if args.once:
            window = args.window if args.window is not None else WINDOW_S
            deadline = time.monotonic() + window
            while (remaining := deadline - time.monotonic()) > 0:
                msg = bus.recv(timeout=remaining)
                if msg is not None:
                    view.feed(msg, at=time.monotonic())
            console.print(render(view.snapshot(time.monotonic()), title))
            if not view.frames_decoded:
                err_console.print(f"bmsfil monitor: warning: {_nothing_heard(view, where, window)}", soft_wrap=True)
                return 1
        else:
            with Live(render(view.snapshot(time.monotonic()), title), console=console, auto_refresh=False) as live:
                next_draw = time.monotonic()
                while True:
                    msg = bus.recv(timeout=max(0.0, next_draw - time.monotonic()))
                    if msg is not None:
                        view.feed(msg, at=time.monotonic())
                    if time.monotonic() >= next_draw:
                        live.update(render(view.snapshot(time.monotonic()), title), refresh=True)
                        next_draw = time.monotonic() + REFRESH_S
    except KeyboardInterrupt:
        return 0
    except can.CanError as exc:
        err_console.print(f"bmsfil monitor: bus error on {shown}: {exc}", soft_wrap=True)
        return 1
    finally:
        bus.shutdown()
    return 0


def _nothing_heard(view: PackView, where: str, window: float) -> str:
    """Why a --once snapshot of a live bus shows nothing: no frame came, or none of the contract."""
    heard = view.frames_not_in_contract + view.frames_undecodable
    text = f"no frame of the CAN contract arrived on {where} in {window:g} s: "
    if not heard:
        return text + ("no frame at all: check the channel and the bit rate, and that the pack is powered and "
                       "sending (--window S listens longer)")
    kinds = "; ".join(_error_text(e) for e in view.snapshot()["pack"]["decode_errors"][:SHOWN_ERRORS])
    return text + f"{heard} frame(s) arrived, none decoded as the contract ({kinds}): another bus or pack?"


def _write_json(path: Path, snapshot: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(snapshot, indent=1, allow_nan=False) + "\n")
    tmp.replace(path)
