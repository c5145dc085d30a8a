"""Whether a recording's current has the sign bmsfil expects (positive on charge).

A generic CSV's sign convention is the user's to state (`bmsfil import
--current-sign`); a wrong one is silent in the file but not in the physics:
wherever the current steps, the terminal voltage steps the same way (more
charge current, higher voltage), whatever the cell. A recording where most
steps go the other way was imported with the wrong sign.
"""

from __future__ import annotations

import numpy as np

from bmsfil.recording import Recording

#: A current step is a change between two samples of at least this share of
#: the recording's largest current.
STEP_SHARE = 0.2
#: A voltage change smaller than this says nothing about the step's sign, V.
MIN_DV_V = 0.001
#: Fewer disagreeing steps than this are not evidence of a wrong sign.
MIN_STEPS = 3


def step_votes(rec: Recording) -> tuple[int, int]:
    """(steps where the voltage moves with the current, steps where it moves against it)."""
    i, v = rec.current_A, rec.voltage_V
    ok = np.isfinite(i[1:]) & np.isfinite(i[:-1]) & np.isfinite(v[1:]) & np.isfinite(v[:-1])
    if not ok.any():
        return 0, 0
    di, dv = np.diff(i)[ok], np.diff(v)[ok]
    step = (np.abs(di) >= STEP_SHARE * float(np.max(np.abs(i[np.isfinite(i)])))) & (np.abs(dv) >= MIN_DV_V)
    same = np.sign(di[step]) == np.sign(dv[step])
    return int(same.sum()), int((~same).sum())


def wrong_sign(rec: Recording) -> str | None:
    """Why the recording's current looks positive on discharge, or None if it does not."""
    agree, disagree = step_votes(rec)
    if disagree < MIN_STEPS or disagree <= agree:
        return None
    return (f"{rec.meta.name}: its current looks positive on discharge: at {disagree} of {agree + disagree} current "
            "steps the voltage moved against the current (bmsfil's current is positive on charge); import it again "
            "with --current-sign discharge-positive (or charge-positive if it was given)")
