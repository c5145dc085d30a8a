"""What a single cell's measurements can be, to catch wrong units and swapped columns early.

The limits are for one cell, not a pack; every sample that is not NaN must
lie inside them, and a median out of place says which unit was probably meant.
"""

from __future__ import annotations

import numpy as np

from ..recording import SAMPLE_LIMITS, RecordingError
from .table import at

#: Range, in the Recording's units, of every sample of each quantity.
LIMITS = SAMPLE_LIMITS
_SHOWN_UNIT = {"voltage": "V", "current": "A", "temperature": "°C", "ah": "Ah"}
#: Below this a voltage column is not a live cell's voltage.
MIN_MEDIAN_VOLTAGE = 0.5
#: Above this a temperature in °C is really in kelvin.
MAX_MEDIAN_CELSIUS = 150.0


def check(
    where: str,
    quantity: str,
    column: str,
    unit: str,
    scale: float,
    values: np.ndarray,
    lines: np.ndarray,
    header_line: int,
    from_header: bool = True,
) -> None:
    """Raise RecordingError if ``values`` (already converted with ``scale``) are implausible.

    ``unit`` is the unit the column was read in ('' if none was given), from
    the header or else (``from_header`` False) the column map or the format's
    convention; a message about the whole column points at its header, on
    ``header_line``.
    """
    where_col = at(where, header_line, column)
    present = ~np.isnan(values)
    if not present.any():
        raise RecordingError(f"{where_col}: no values: every cell is empty or NaN")
    infinite = np.flatnonzero(np.isinf(values))
    if infinite.size:
        i = int(infinite[0])
        raise RecordingError(f"{at(where, int(lines[i]), column)}: expected a finite number, got {values[i]:g}")
    median = float(np.median(np.abs(values[present])))
    if not unit:
        stated = "no unit is given"
    elif from_header:
        stated = f"the header says {unit!r}"
    else:
        stated = f"it is read in {unit!r} (its header gives no unit)"
    if scale == 1.0 and quantity in ("voltage", "current", "ah"):
        milli = {"voltage": "mV", "current": "mA", "ah": "mAh"}[quantity]
        too_big = median > 100.0 if quantity == "voltage" else float(np.nanmax(np.abs(values))) > LIMITS[quantity][1]
        if too_big:
            raise RecordingError(
                f"{where_col}: values look like {milli} (median {median:g}), but {stated}; "
                f"write the unit as [{milli}] if that is what the column holds"
            )
    if quantity == "voltage" and median < MIN_MEDIAN_VOLTAGE:
        if scale != 1.0 and median / scale >= MIN_MEDIAN_VOLTAGE:
            hint = f"values look like V, but {stated}; write the unit as [V]"
        else:
            hint = "that is not a cell voltage: is this the voltage column (columns swapped)?"
        raise RecordingError(f"{where_col}: median {median:g} V: {hint}")
    if quantity == "temperature" and median > MAX_MEDIAN_CELSIUS:
        raise RecordingError(
            f"{where_col}: values look like kelvin (median {median:g}), but {stated}; "
            "write the unit as [K] if that is what the column holds"
        )
    low, high = LIMITS[quantity]
    outside = np.flatnonzero(present & ~((values >= low) & (values <= high)))
    if outside.size:
        i = int(outside[0])
        raise RecordingError(
            f"{at(where, int(lines[i]), column)}: {values[i]:g} {_SHOWN_UNIT[quantity]} is outside "
            f"[{low:g}, {high:g}] {_SHOWN_UNIT[quantity]}: is this the {quantity} column "
            "(columns swapped or a wrong unit)?"
        )
