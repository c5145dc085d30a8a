"""Recordings rebuilt from a python-can log of the CAN contract.

Any log that carries the measurement frames (a previous `bmsfil hil run
--log`, a pack recorded on a bus with candump or a vendor tool, in any format
python-can reads) becomes one `Recording` per cell, so that it can be
replayed to a target again. The values are the ones the bus carried, so a
replay sends exactly the frames that were logged and a deterministic target
answers with exactly the estimates that were logged (`logged_estimates`).

A sample's answers are its first EstCell, EstCellFlags, EstCellHealth and
EstCellPower for each cell, as in a live replay (a repeat is not the answer).

Rebuilt recordings have no reference SOC (the bus does not carry one): they
are compared with the C core and with the logged estimates, not scored.
A sample whose interval was sent as not valid is rebuilt with a 0 s interval
(a recording's clock cannot skip); a cell missing from a sample is rebuilt
with no voltage or temperature (sent as not valid again).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import can
import numpy as np

from bmsfil import can_contract as cc
from bmsfil.recording import Recording, RecordingMeta
from bmsfil_hil.replay import Health, Plausibility, Power


class LogError(ValueError):
    """A log that holds no replayable measurements, with the file and why."""


@dataclass
class LoggedRun:
    cells: list[Recording]
    logged_soc: np.ndarray  # (samples, cells): EstCell soc found in the log, NaN where none
    logged_sigma: np.ndarray  # the same for soc_sigma
    undecodable: int        # frames of the log that are not frames of the contract
    plausibility: Plausibility  # the EstCellFlags found (`sent` False if none)
    health: Health              # the EstCellHealth found
    power: Power                # the EstCellPower found


def read_log(path: Path) -> LoggedRun:
    """The measurements (and estimates) of a log, sample by sample."""
    if not path.is_file():
        raise LogError(f"{path}: no such log file")
    packs: list[cc.MeasPack] = []
    cells: list[dict[int, cc.MeasCell]] = []
    estimates: list[dict[int, tuple[float, float]]] = []
    answers: list[tuple[int, cc.EstCellFlags | cc.EstCellHealth | cc.EstCellPower]] = []
    by_sequence: dict[int, int] = {}
    undecodable = 0
    try:
        reader = can.LogReader(str(path))
    except (ValueError, OSError) as exc:
        raise LogError(f"{path}: not a log python-can reads ({exc})") from exc
    for msg in reader:
        try:
            frame = cc.decode(msg)
        except cc.FrameError:
            undecodable += 1
            continue
        if isinstance(frame, cc.MeasPack):
            by_sequence[frame.sequence] = len(packs)
            packs.append(frame)
            cells.append({})
            estimates.append({})
        elif isinstance(frame, cc.MeasCell) and frame.sequence in by_sequence:
            cells[by_sequence[frame.sequence]][frame.cell_index] = frame
        elif isinstance(frame, cc.EstCell) and frame.sequence in by_sequence:
            estimates[by_sequence[frame.sequence]].setdefault(frame.cell_index, (frame.soc, frame.soc_sigma))
        elif isinstance(frame, (cc.EstCellFlags, cc.EstCellHealth, cc.EstCellPower)) and frame.sequence in by_sequence:
            answers.append((by_sequence[frame.sequence], frame))
    if not packs:
        raise LogError(f"{path}: no MeasPack frame (0x{cc.FrameId.MEAS_PACK:03X}) in the log: nothing to replay")
    n, m = len(packs), max(p.n_cells for p in packs)
    dt = np.array([p.dt_s if p.dt_valid else 0.0 for p in packs])
    dt[0] = 0.0
    time_s = np.cumsum(dt)
    current = np.array([p.current_A for p in packs])
    volts = np.full((n, m), np.nan)
    temps = np.full((n, m), np.nan)
    logged = np.full((n, m), np.nan)
    logged_sigma = np.full((n, m), np.nan)
    for k in range(n):
        for i, c in cells[k].items():
            if i < m:
                volts[k, i], temps[k, i] = c.voltage_V, c.temp_C
        for i, (soc, sigma) in estimates[k].items():
            if i < m:
                logged[k, i], logged_sigma[k, i] = soc, sigma
    stem = path.stem
    recs = [
        Recording(time_s, current, volts[:, i], temps[:, i],
                  RecordingMeta(name=stem if m == 1 else f"{stem}#cell{i:03d}", source=str(path),
                                test="rebuilt from a CAN log"))
        for i in range(m)
    ]
    plausibility, health, power = Plausibility.empty(n, m), Health.empty(n, m), Power.empty(n, m)
    record = {cc.EstCellFlags: plausibility, cc.EstCellHealth: health, cc.EstCellPower: power}
    for k, answer in answers:
        record[type(answer)].note_at(answer, k)
    return LoggedRun(recs, logged, logged_sigma, undecodable, plausibility, health, power)


def recordings_from_log(path: Path) -> list[Recording]:
    """One recording per cell of the pack the log carries."""
    return read_log(path).cells
