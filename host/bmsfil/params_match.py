"""Whether a parameter set fits a recording: the same cell, at temperatures
it was identified at, and a stated ambient that is the measured one.

A wrong set or a mislabelled temperature runs without complaint and only
shows in the score; `bmsfil eval` warns of each with these.
"""

from __future__ import annotations

import math

import numpy as np

from bmsfil.params import BUNDLED_SETS, ParameterSet
from bmsfil.recording import Recording, RecordingMeta
from bmsfil.reference import REST_C_RATE

#: A nominal capacity further than this share from the set's is another cell.
CAPACITY_SHARE = 0.10
#: A median temperature further than this outside the set's grid is extrapolated, K.
GRID_MARGIN_K = 5.0
#: A stated ambient further than this from the median measured temperature is mislabelled, K.
AMBIENT_MARGIN_K = 10.0
#: A reference capacity more than this many times the set's nominal one, or less than its
#: inverse, is another unit or another cell's (an aged cell keeps more than half of it).
REFERENCE_RATIO = 2.0




class WorkingTemperature:
    """The median temperature over time while the cell discharges (over
    all the recording where it never does), added a chunk at a time (a
    streamed recording's too), to 0.01 K. Weighed by time, not samples: a
    raw cycler export logs a rest every minute and a test every 0.1 s, or
    the other way round; and the LG HG2 raw tests charge at room
    temperature for hours before a 2C discharge of 25 minutes in the
    chamber. A sample weighs the interval to the next one, up to the
    filter's dt_max_s: a longer one is time not recorded (the NASA PCoE
    files hold only the discharges, hours apart), which would weigh the
    last, hottest sample of each discharge as much as hours of it."""

    def __init__(self, params: ParameterSet) -> None:
        self._load = REST_C_RATE * params.cell.nominal_capacity_Ah  # discharging beyond the filter's rest
        self._dt_max = params.filter.dt_max_s  # a longer interval is a gap, not time at a temperature
        self._working: dict[int, float] = {}
        self._any: dict[int, float] = {}
        self._last: tuple[float, float, float] | None = None  # the sample whose interval the next chunk ends

    def add(self, time_s: np.ndarray, current_A: np.ndarray, temp_C: np.ndarray) -> None:
        if self._last is not None:
            t0, i0, c0 = self._last
            time_s, current_A, temp_C = np.r_[t0, time_s], np.r_[i0, current_A], np.r_[c0, temp_C]
        if len(time_s) == 0:
            return
        self._last = (float(time_s[-1]), float(current_A[-1]), float(temp_C[-1]))
        t, i, dt = temp_C[:-1], np.nan_to_num(current_A[:-1]), np.diff(time_s)
        ok = np.isfinite(t) & (dt >= 0) & (dt <= self._dt_max)
        for bins, use in ((self._any, ok), (self._working, ok & (i < -self._load))):
            keys, where = np.unique(np.round(t[use] * 100.0).astype(np.int64), return_inverse=True)
            for key, weight in zip(keys.tolist(), np.bincount(where, weights=dt[use]).tolist()):
                bins[key] = bins.get(key, 0.0) + weight

    def value(self) -> float | None:
        """The median, °C; None without a finite temperature."""
        bins = self._working if sum(self._working.values()) > 0 else self._any
        if not bins and self._last is not None and math.isfinite(self._last[2]):
            return self._last[2]  # one sample
        if not bins:
            return None
        keys = sorted(bins)
        weights = np.cumsum([bins[k] for k in keys])
        if weights[-1] <= 0:  # no time between the samples: the median of the samples
            return float(np.median(np.array(keys) / 100.0))
        return keys[int(np.searchsorted(weights, 0.5 * weights[-1]))] / 100.0


def parameter_warnings(rec: Recording, params: ParameterSet) -> list[str]:
    """What does not fit between the recording and the parameter set: its
    cell's nominal capacity (metadata) against the set's, its median
    measured temperature against the set's temperature grid, and its stated
    ambient temperature against the measured one."""
    at = WorkingTemperature(params)
    at.add(rec.time_s, rec.current_A, rec.temp_C)
    return mismatch_warnings(rec.meta, params, at.value())


def mismatch_warnings(meta: RecordingMeta, params: ParameterSet, median: float | None) -> list[str]:
    """`parameter_warnings` from a recording's metadata and its working
    temperature (`WorkingTemperature`), for a recording read in chunks."""
    cell = params.cell
    found = []
    nominal = meta.nominal_capacity_Ah
    if nominal and abs(nominal / cell.nominal_capacity_Ah - 1.0) > CAPACITY_SHARE:
        found.append(f"{meta.name}: its cell's nominal capacity is {nominal:g} Ah ({meta.cell_id or 'metadata'}), "
                     f"the parameter set {params.name!r} is of a {cell.nominal_capacity_Ah:g} Ah cell: the estimates "
                     f"use another cell's model; give this cell's set with --params (bundled: {', '.join(BUNDLED_SETS)}; "
                     "bmsfil fit makes one)")
    q_ref = meta.reference_capacity_Ah
    if q_ref and not 1.0 / REFERENCE_RATIO <= q_ref / cell.nominal_capacity_Ah <= REFERENCE_RATIO:
        found.append(f"{meta.name}: its reference_capacity_Ah {q_ref:g} Ah is {q_ref / cell.nominal_capacity_Ah:.3g} "
                     f"times the nominal capacity of the parameter set {params.name!r} ({cell.nominal_capacity_Ah:g} "
                     "Ah), and the reference SOC counts charge with it: a capacity in mAh, or another cell's? "
                     "(bmsfil import --meta reference_capacity_Ah=Q sets it)")
    if median is None:
        return found
    lo, hi = float(cell.temp_C[0]), float(cell.temp_C[-1])
    ambient = meta.ambient_temp_C
    # A set's temperatures are its inputs' ambients (bmsfil fit files each under its stated one): a
    # recording is judged by its own where that agrees with the cell's, a self-heated cell's median
    # above it (a NASA PCoE discharge at 2 A: 24 °C ambient, 32 °C median) being no extrapolation.
    labelled = ambient is not None and abs(ambient - median) <= AMBIENT_MARGIN_K
    at = ambient if labelled else median
    if at < lo - GRID_MARGIN_K or at > hi + GRID_MARGIN_K:
        what = (f"its ambient {at:g} °C (median in discharge {median:.1f} °C)" if labelled else
                f"its median temperature in discharge {median:.1f} °C")
        found.append(f"{meta.name}: {what} is outside the temperatures the parameter "
                     f"set {params.name!r} knows ({lo:g} to {hi:g} °C): the model is extrapolated there; give a set "
                     "identified at this temperature with --params")
    if ambient is not None and abs(ambient - median) > AMBIENT_MARGIN_K:
        where = meta.extra.get("ambient_from", "metadata")
        q_ref = (f"the reference SOC counts with reference_capacity_Ah {meta.reference_capacity_Ah:g} Ah, taken for "
                 f"the stated {ambient:g} °C" if meta.reference_capacity_Ah else "it has no reference capacity")
        found.append(f"{meta.name}: its stated ambient {ambient:g} °C ({where}) is {abs(ambient - median):.0f} K from "
                     f"its median temperature in discharge {median:.1f} °C: the filter runs on the measured one, "
                     f"{q_ref}; if the cell was at {median:.1f} °C, set both with bmsfil import "
                     "--meta ambient_temp_C=T --meta reference_capacity_Ah=Q")
    return found
