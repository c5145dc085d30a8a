"""Gaps in a recording under load: time the recording does not show while
current flowed.

The filter integrates an interval up to its tuning's `dt_max_s` as the
current of the sample that ends it (a longer one restarts it), which is
right for a cycler's sampling and wrong for a logger that stopped for ten
minutes in a drive: the charge in between is unknown. The filter's sigma
allows for an interval's mean current `hold_sigma_c_rate` C (C/2 in the
bundled sets) away from the sample's, which a drive may well exceed.
`bmsfil eval` warns of such gaps with this.
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
#: A median interval up to this long sets the threshold at GAP_MIN_S, whatever its value.
SHORT_S = GAP_MIN_S / GAP_MEDIAN_RATIO


def gap_warning(rec: Recording, params: ParameterSet) -> str | None:
    """A warning if the recording has intervals the filter integrates (up to
    `dt_max_s`) that are gaps (`GAP_MIN_S` and `GAP_MEDIAN_RATIO` times its
    median interval) with current flowing on either side; None if not."""
    scan = GapScan(params)
    scan.add(rec.time_s, rec.current_A)
    return scan.warning(rec.meta.name)


class GapScan:
    """`gap_warning` a chunk at a time, for a recording read in chunks, with
    the same answer as for the whole recording: the median interval is the
    whole recording's, so the gaps are decided at the end (`warning`).

    Only what the median and the gaps need is kept: the number of intervals
    of at most `SHORT_S` and the longest of them (a median there sets the
    threshold at `GAP_MIN_S` whatever its value), every longer interval (few
    in a recording sampled faster; all of one logged slower, which has few
    samples), and the intervals under load that could be gaps."""

    def __init__(self, params: ParameterSet) -> None:
        self._params = params
        self._last: tuple[float, float] | None = None  # the sample before the next chunk
        self._t0: float | None = None
        self._start = 0  # index of the next chunk's first sample
        self._short = 0  # intervals of at most SHORT_S ...
        self._longest_short = -np.inf  # ... and the longest of them
        self._long: list[np.ndarray] = []  # the intervals longer than SHORT_S
        self._candidates: list[np.ndarray] = []  # intervals under load of GAP_MIN_S to dt_max_s
        self._longest: tuple[float, int, float, float, float] | None = None  # dt, sample, t, i before, i after

    def add(self, time_s: np.ndarray, current_A: np.ndarray) -> None:
        if len(time_s) == 0:
            return
        if self._t0 is None:
            self._t0 = float(time_s[0])
        first = self._start - 1
        if self._last is not None:
            time_s, current_A = np.r_[self._last[0], time_s], np.r_[self._last[1], current_A]
        else:
            first = 0
        self._start += len(time_s) - (1 if self._last is not None else 0)
        self._last = (float(time_s[-1]), float(current_A[-1]))
        dt = np.diff(time_s)
        if dt.size == 0:
            return
        short = dt <= SHORT_S
        if short.any():
            self._short += int(np.count_nonzero(short))
            self._longest_short = max(self._longest_short, float(dt[short].max()))
        if not short.all():
            self._long.append(dt[~short])
        load = REST_C_RATE * self._params.cell.nominal_capacity_Ah  # above the filter's rest on either side
        i = np.nan_to_num(current_A)
        under_load = (np.abs(i[:-1]) > load) | (np.abs(i[1:]) > load)
        gaps = np.flatnonzero((dt >= GAP_MIN_S) & (dt <= self._params.filter.dt_max_s) & under_load)
        if gaps.size == 0:
            return
        self._candidates.append(dt[gaps])
        k = int(gaps[np.argmax(dt[gaps])])
        if self._longest is None or dt[k] > self._longest[0]:
            self._longest = (float(dt[k]), first + k, float(time_s[k]), float(i[k]), float(i[k + 1]))

    def threshold(self) -> float | None:
        """The gap threshold: `GAP_MIN_S` or `GAP_MEDIAN_RATIO` times the
        median interval of all the chunks so far, whichever is longer (as
        np.median takes it); None before the first interval."""
        long = np.sort(np.concatenate(self._long)) if self._long else np.empty(0)
        n = self._short + long.size
        if n == 0:
            return None

        def nth(k: int) -> float:  # the k-th shortest interval (from 0), for k from the longest short one on
            return self._longest_short if k == self._short - 1 else float(long[k - self._short])

        upper = n // 2  # the middle interval (odd n), or the upper of the middle two
        if upper < self._short:
            return GAP_MIN_S  # a median of at most SHORT_S
        lower = upper if n % 2 else upper - 1  # then at least the longest short interval's index
        return max(GAP_MIN_S, GAP_MEDIAN_RATIO * (nth(lower) + nth(upper)) / 2.0)

    def warning(self, name: str) -> str | None:
        threshold = self.threshold()
        if self._longest is None or threshold is None or self._t0 is None or self._longest[0] < threshold:
            return None
        count = int(sum(np.count_nonzero(c >= threshold) for c in self._candidates))
        dt, k, t, before, after = self._longest
        share = abs(after) * dt / 3600.0 / self._params.cell.nominal_capacity_Ah
        return (f"{name}: {count} gap(s) of {threshold:.0f} s or more under load, the longest "
                f"{dt:.0f} s after {t - self._t0:.0f} s (sample {k}; {before:+.3g} A before, {after:+.3g} A after): "
                f"the filter counts each as the current after it for the whole gap ({share:.1%} of the capacity "
                "there), so its estimate after a gap may be off by the charge that really flowed; its sigma allows "
                f"for {self._params.filter.hold_sigma_c_rate:g} C about that current (hold_sigma_c_rate)")
