"""Whether a recording's current has the sign bmsfil expects (positive on charge).

A generic CSV's sign convention is the user's to state (`bmsfil import
--current-sign`); a wrong one is silent in the file but not in the physics:
wherever the current steps, the terminal voltage steps the same way (more
charge current, higher voltage), whatever the cell. A recording where
significantly more than half of the steps go the other way was imported
with the wrong sign; a coarse log (a current averaged over a minute beside
a voltage sampled once) gives steps that go either way, which is no
evidence at all.
"""

from __future__ import annotations

import numpy as np

from bmsfil.recording import Recording

#: A current step is a change between two samples of at least this share of
#: the recording's largest current.
STEP_SHARE = 0.2
#: A voltage change smaller than this says nothing about the step's sign, V.
MIN_DV_V = 0.001
#: A wrong sign needs the disagreeing steps to be this unlikely under a
#: coin toss per step (one-sided binomial test, p = 0.5): at least 10 of
#: 10, 19 of 22, 66 of 100, 550 of 1000 ...
SIGNIFICANCE = 1e-3
#: ... or every step against the current, and at least this many: a
#: constant-current test (a C/20 discharge then charge) has 3 steps, each a
#: clean current step from rest, which a coarse log's are not.
UNANIMOUS_STEPS = 3


def step_votes(rec: Recording) -> tuple[int, int]:
    """(steps where the voltage moves with the current, steps where it moves against it)."""
    i, v = rec.current_A, rec.voltage_V
    ok = np.isfinite(i[1:]) & np.isfinite(i[:-1]) & np.isfinite(v[1:]) & np.isfinite(v[:-1])
    if not ok.any():
        return 0, 0
    di, dv = np.diff(i)[ok], np.diff(v)[ok]
    # A current that never moves has no step (with a threshold of 0, every sample was one, all "against").
    step = ((np.abs(di) >= STEP_SHARE * float(np.max(np.abs(i[np.isfinite(i)])))) & (di != 0.0)
            & (np.abs(dv) >= MIN_DV_V))
    same = np.sign(di[step]) == np.sign(dv[step])
    return int(same.sum()), int((~same).sum())


def against_chance(disagree: int, steps: int) -> float:
    """The chance of at least `disagree` of `steps` steps against the current
    if each went either way as a coin falls."""
    from scipy.special import bdtrc  # here: the CLI starts without scipy

    return float(bdtrc(disagree - 1, steps, 0.5)) if disagree > 0 else 1.0


def wrong_sign(rec: Recording) -> str | None:
    """Why the recording's current looks positive on discharge, or None if it does not."""
    agree, disagree = step_votes(rec)
    unanimous = agree == 0 and disagree >= UNANIMOUS_STEPS
    if not unanimous and against_chance(disagree, agree + disagree) >= SIGNIFICANCE:
        return None
    return (f"{rec.meta.name}: its current looks positive on discharge: at {disagree} of {agree + disagree} current "
            "steps the voltage moved against the current (bmsfil's current is positive on charge); import it again "
            "with --current-sign discharge-positive (or charge-positive if it was given)")
