"""Gaps in a recording under load: time the recording does not show while
current flowed.

The filter integrates an interval up to its tuning's `dt_max_s` as the
current of the sample that ends it (a longer one restarts it), which is
right for a cycler's sampling and wrong for a logger that stopped for ten
minutes in a drive: the charge in between is unknown, and the filter's
sigma does not say so. `bmsfil eval` warns of such gaps with this.
"""

from __future__ import annotations

import numpy as np

from bmsfil.params import ParameterSet
from bmsfil.recording import Recording
from bmsfil.reference import REST_C_RATE

#: An interval is a gap if it is this long or longer, s ...
GAP_MIN_S = 60.0
#: ... and this many times the recording's median interval.
GAP_MEDIAN_RATIO = 20.0


def gap_warning(rec: Recording, params: ParameterSet) -> str | None:
    """A warning if the recording has intervals the filter integrates (up to
    `dt_max_s`) that are gaps (`GAP_MIN_S` and `GAP_MEDIAN_RATIO` times its
    median interval) with current flowing on either side; None if not."""
    dt = np.diff(rec.time_s)
    if dt.size == 0:
        return None
    threshold = max(GAP_MIN_S, GAP_MEDIAN_RATIO * float(np.median(dt)))
    load = REST_C_RATE * params.cell.nominal_capacity_Ah  # above the filter's rest on either side: a load
    i = np.nan_to_num(rec.current_A)
    under_load = (np.abs(i[:-1]) > load) | (np.abs(i[1:]) > load)
    gaps = np.flatnonzero((dt >= threshold) & (dt <= params.filter.dt_max_s) & under_load)
    if gaps.size == 0:
        return None
    k = int(gaps[np.argmax(dt[gaps])])
    t0 = float(rec.time_s[k] - rec.time_s[0])
    share = abs(i[k + 1]) * dt[k] / 3600.0 / params.cell.nominal_capacity_Ah
    return (f"{rec.meta.name}: {gaps.size} gap(s) of {threshold:.0f} s or more under load, the longest "
            f"{dt[k]:.0f} s after {t0:.0f} s (sample {k}; {i[k]:+.3g} A before, {i[k + 1]:+.3g} A after): the "
            f"filter counts each as the current after it for the whole gap ({share:.1%} of the capacity there), "
            "so its estimate after a gap may be off by the charge that really flowed, more than its sigma says")
