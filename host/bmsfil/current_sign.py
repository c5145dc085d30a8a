"""Whether a recording's current has the sign bmsfil expects (positive on charge).

A generic CSV's sign convention is the user's to state (`bmsfil import
--current-sign`); a wrong one is silent in the file but not in the physics:
wherever the current steps, the terminal voltage steps the same way (more
charge current, higher voltage), whatever the cell. A recording where
significantly more than half of the steps go the other way was imported
with the wrong sign; a coarse log (a current averaged over a minute beside
a voltage sampled once) gives steps that go either way, which is no
evidence at all. A constant-current test has too few steps; over its
long stretches of steady current the voltage falls on discharge and rises
on charge (through the OCV), and all of them going the other way is a
wrong sign too.
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


#: A stretch of steady current (within STEADY_SHARE of the sample before, one sign, above
#: REST_SHARE of the largest current, no gap longer than GAP_S) this long says which way the
#: voltage goes under it: down on discharge, up on charge, through the OCV ...
STEADY_S = 600.0
STEADY_SHARE = 0.05
REST_SHARE = 0.02
GAP_S = 300.0
#: ... measured from this long after its start (past the step and the first relaxation) to its
#: end, and only a move of at least this much counts, V.
SETTLE_S = 60.0
STEADY_DV_V = 0.05


def steady_votes(rec: Recording) -> tuple[int, int]:
    """(stretches of steady current over which the voltage moved with the current, ... against
    it). A constant-current test has one step or two, too few for `step_votes`, and hours of
    this: a NASA PCoE discharge flipped to charge, its voltage falling 1.3 V, was taken as is."""
    t, i, v = rec.time_s, rec.current_A, rec.voltage_V
    ok = np.isfinite(i) & np.isfinite(v) & np.isfinite(t)
    if not ok.any() or len(t) < 2:
        return 0, 0
    peak = float(np.max(np.abs(i[ok])))
    if peak <= 0.0:
        return 0, 0
    flowing = ok & (np.abs(i) >= REST_SHARE * peak)
    joined = (flowing[1:] & flowing[:-1] & (np.sign(i[1:]) == np.sign(i[:-1]))
              & (np.abs(np.diff(i)) <= STEADY_SHARE * np.abs(i[:-1])) & (np.diff(t) <= GAP_S))
    # runs of samples joined to the one before: [start, end] inclusive
    edges = np.flatnonzero(np.diff(np.r_[0, joined.astype(np.int8), 0]))
    agree = disagree = 0
    for start, stop in zip(edges[::2], edges[1::2]):  # joined[start:stop] true: samples start..stop
        if t[stop] - t[start] < STEADY_S:
            continue
        settled = min(int(np.searchsorted(t, t[start] + SETTLE_S)), stop)
        dv = float(v[stop] - v[settled])
        if abs(dv) >= STEADY_DV_V:
            if np.sign(dv) == np.sign(i[start]):
                agree += 1
            else:
                disagree += 1
    return agree, disagree


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
    """Why the recording's current looks positive on discharge, or a magnitude, or None if it
    does not."""
    steady = steady_votes(rec)
    if (why := magnitude(rec, steady)) is not None:
        return why
    agree, disagree = step_votes(rec)
    unanimous = agree == 0 and disagree >= UNANIMOUS_STEPS
    fix = ("(bmsfil's current is positive on charge); import it again with --current-sign discharge-positive (or "
           "charge-positive if it was given)")
    if unanimous or against_chance(disagree, agree + disagree) < SIGNIFICANCE:
        return (f"{rec.meta.name}: its current looks positive on discharge: at {disagree} of {agree + disagree} "
                f"current steps the voltage moved against the current {fix}")
    steady_agree, steady_disagree = steady
    if steady_disagree and not steady_agree and against_chance(agree, agree + disagree) >= SIGNIFICANCE:
        return (f"{rec.meta.name}: its current looks positive on discharge: over each of its {steady_disagree} "
                f"stretch(es) of steady current of {STEADY_S / 60:g} minutes or more the voltage moved against the "
                f"current (falling on charge, rising on discharge) {fix}")
    return None


def magnitude(rec: Recording, steady: tuple[int, int] | None = None) -> str | None:
    """Why the current looks like a magnitude (never negative, while the voltage rises over some
    stretches of steady current and falls over others: charge and discharge logged alike, as
    Maccor's Amps are), or None. `steady`: `steady_votes(rec)`, if already counted."""
    finite = rec.current_A[np.isfinite(rec.current_A)]
    # Never negative but for a rest's noise (a magnitude's sensor reads -1 mA at rest too).
    if not finite.size or float(np.min(finite)) < -REST_SHARE * float(np.max(np.abs(finite))):
        return None
    rising, falling = steady_votes(rec) if steady is None else steady
    if not (rising and falling):
        return None
    return (f"{rec.meta.name}: its current is never negative, yet the voltage rose over {rising} stretch(es) of "
            f"steady current and fell over {falling}: charge and discharge logged as a magnitude? Map the cycler's "
            "state or step-type column (Maccor's State, Neware's Step Type) with --map ...,state=COLUMN to give "
            "the current its sign (bmsfil's current is positive on charge)")
