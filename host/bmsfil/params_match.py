"""Whether a parameter set fits a recording: the same cell, at temperatures
it was identified at, and a stated ambient that is the measured one.

A wrong set or a mislabelled temperature runs without complaint and only
shows in the score; `bmsfil eval` warns of each with these.
"""

from __future__ import annotations

import numpy as np

from bmsfil.params import BUNDLED_SETS, ParameterSet
from bmsfil.recording import Recording
from bmsfil.reference import REST_C_RATE

#: A nominal capacity further than this share from the set's is another cell.
CAPACITY_SHARE = 0.10
#: A median temperature further than this outside the set's grid is extrapolated, K.
GRID_MARGIN_K = 5.0
#: A stated ambient further than this from the median measured temperature is mislabelled, K.
AMBIENT_MARGIN_K = 10.0




def _working_temperature(rec: Recording, params: ParameterSet) -> float | None:
    """The median temperature over time while the cell discharges (over
    all the recording where it never does); None without a finite
    temperature. Weighed by time, not samples: a raw cycler export logs a
    rest every minute and a test every 0.1 s, or the other way round; and
    the LG HG2 raw tests charge at room temperature for hours before a
    2C discharge of 25 minutes in the chamber."""
    t, i = rec.temp_C, np.nan_to_num(rec.current_A)
    dt = np.append(np.diff(rec.time_s), 0.0)
    ok = np.isfinite(t) & (dt >= 0)
    working = ok & (i < -REST_C_RATE * params.cell.nominal_capacity_Ah)  # discharging beyond the filter's rest
    use = working if np.sum(dt[working]) > 0 else ok
    if not use.any():
        return None
    order = np.argsort(t[use])
    weights = np.cumsum(dt[use][order])
    if weights[-1] <= 0:
        return float(np.median(t[use]))
    return float(t[use][order][np.searchsorted(weights, 0.5 * weights[-1])])


def parameter_warnings(rec: Recording, params: ParameterSet) -> list[str]:
    """What does not fit between the recording and the parameter set: its
    cell's nominal capacity (metadata) against the set's, its median
    measured temperature against the set's temperature grid, and its stated
    ambient temperature against the measured one."""
    meta, cell = rec.meta, params.cell
    found = []
    nominal = meta.nominal_capacity_Ah
    if nominal and abs(nominal / cell.nominal_capacity_Ah - 1.0) > CAPACITY_SHARE:
        found.append(f"{meta.name}: its cell's nominal capacity is {nominal:g} Ah ({meta.cell_id or 'metadata'}), "
                     f"the parameter set {params.name!r} is of a {cell.nominal_capacity_Ah:g} Ah cell: the estimates "
                     f"use another cell's model; give this cell's set with --params (bundled: {', '.join(BUNDLED_SETS)}; "
                     "bmsfil fit makes one)")
    median = _working_temperature(rec, params)
    if median is None:
        return found
    lo, hi = float(cell.temp_C[0]), float(cell.temp_C[-1])
    if median < lo - GRID_MARGIN_K or median > hi + GRID_MARGIN_K:
        found.append(f"{meta.name}: its median temperature in discharge {median:.1f} °C is outside the temperatures the parameter "
                     f"set {params.name!r} knows ({lo:g} to {hi:g} °C): the model is extrapolated there; give a set "
                     "identified at this temperature with --params")
    ambient = meta.ambient_temp_C
    if ambient is not None and abs(ambient - median) > AMBIENT_MARGIN_K:
        where = meta.extra.get("ambient_from", "metadata")
        q_ref = (f"the reference SOC counts with reference_capacity_Ah {meta.reference_capacity_Ah:g} Ah, taken for "
                 f"the stated {ambient:g} °C" if meta.reference_capacity_Ah else "it has no reference capacity")
        found.append(f"{meta.name}: its stated ambient {ambient:g} °C ({where}) is {abs(ambient - median):.0f} K from "
                     f"its median temperature in discharge {median:.1f} °C: the filter runs on the measured one, "
                     f"{q_ref}; if the cell was at {median:.1f} °C, set both with bmsfil import "
                     "--meta ambient_temp_C=T --meta reference_capacity_Ah=Q")
    return found
