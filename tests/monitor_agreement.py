"""The pure-MicroPython monitor (bmsfil_plaus, in double precision) against
the C monitor (single precision): the same flags, but where the unseen-current
statistic is at its alarm, where the EKF ports' difference decides the side."""

from __future__ import annotations

import numpy as np

from bmsfil.plausibility import PlausibilityConfig

#: A flag may differ where |u| / sigma is within this share of the alarm's z.
EDGE_REL = 1e-3


def assert_port_flags_agree(flags: np.ndarray, c_flags: np.ndarray, c_unseen_A: np.ndarray,
                            c_sigma_A: np.ndarray) -> None:
    """`flags` (the port's) equal `c_flags` but at fewer than 10 samples, all
    where the C monitor's statistic is within EDGE_REL of its z."""
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = np.abs(np.abs(c_unseen_A) / c_sigma_A / PlausibilityConfig().unseen_z - 1.0) < EDGE_REL
    differ = np.asarray(flags) != np.asarray(c_flags)
    assert not np.any(differ & ~edge) and np.count_nonzero(differ) < 10, np.flatnonzero(differ)[:10]
