"""Open-circuit voltage from a low-rate discharge and charge.

At C/20 the terminal voltage sits a few millivolts from the OCV; averaging a
discharge leg and a charge leg at the same SOC cancels what is left of the
resistive drop and the hysteresis (Plett, Battery Management Systems vol. 2,
ch. 2). The legs are told apart by the sign of the current, not by any
tester's step labels, so any tester's export works.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bmsfil.recording import Recording

#: |current| below this is a rest, A.
REST_CURRENT_A = 0.01


class OcvFitError(ValueError):
    pass


@dataclass(frozen=True)
class OcvCurve:
    soc: np.ndarray
    ocv_V: np.ndarray
    discharge_V: np.ndarray  # the discharge leg on the same grid (NaN where absent)
    charge_V: np.ndarray     # the charge leg on the same grid (NaN where absent)
    capacity_Ah: float       # discharge capacity of the low-rate leg
    temp_C: float
    legs: str                # "both" or "discharge"
    discharge_current_A: float  # median |current| of the discharge leg


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest run of True."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    starts, stops = edges[::2], edges[1::2]
    if not len(starts):
        return 0, 0
    i = int(np.argmax(stops - starts))
    return int(starts[i]), int(stops[i])


def _charge_counter(rec: Recording) -> np.ndarray:
    if rec.ah is not None and np.all(np.isfinite(rec.ah)):
        return rec.ah
    # Trapezoidal integral of current when the tester kept no counter.
    i = np.nan_to_num(rec.current_A)
    return np.concatenate(([0.0], np.cumsum(0.5 * (i[1:] + i[:-1]) * np.diff(rec.time_s)) / 3600.0))


def ocv_from_low_rate(rec: Recording, n_points: int = 101) -> OcvCurve:
    """OCV(SOC) at the recording's temperature from its longest discharge and
    the longest charge after it. SOC is 1 at the start of the discharge and 0
    at its end; the charge leg is scaled to span the same charge."""
    ah = _charge_counter(rec)
    d0, d1 = _longest_run(rec.current_A < -REST_CURRENT_A)
    if d1 - d0 < 20:
        raise OcvFitError(f"{rec.meta.name}: no low-rate discharge found (need a run of negative current)")
    q_dis = float(ah[d0] - ah[d1 - 1])
    soc_grid = np.linspace(0.0, 1.0, n_points)
    z_dis = 1.0 - (ah[d0] - ah[d0:d1]) / q_dis
    v_dis = np.interp(soc_grid, z_dis[::-1], rec.voltage_V[d0:d1][::-1], left=np.nan, right=np.nan)
    c_rel0, c_rel1 = _longest_run(rec.current_A[d1:] > REST_CURRENT_A)
    temp = float(np.nanmean(rec.temp_C[d0:d1]))
    if c_rel1 - c_rel0 < 20:
        v_chg = np.full(n_points, np.nan)
        legs = "discharge"
    else:
        c0, c1 = d1 + c_rel0, d1 + c_rel1
        z_chg = (ah[c0:c1] - ah[c0]) / (ah[c1 - 1] - ah[c0])
        v_chg = np.interp(soc_grid, z_chg, rec.voltage_V[c0:c1], left=np.nan, right=np.nan)
        temp = 0.5 * (temp + float(np.nanmean(rec.temp_C[c0:c1])))
        legs = "both"
    # Each leg is extended to the grid ends by its first/last value, then where
    # one leg is missing the other is shifted by the nearest half-gap.
    v_dis_f = _fill_ends(soc_grid, v_dis)
    if legs == "both":
        v_chg_f = _fill_ends(soc_grid, v_chg)
        both = np.isfinite(v_dis) & np.isfinite(v_chg)
        ocv = 0.5 * (v_dis_f + v_chg_f)
        if both.any():
            first, last = np.flatnonzero(both)[[0, -1]]
            # Near the ends the legs bend apart as the cell is driven hard
            # into its limits; hold the half-gap seen where both are good.
            half_lo = 0.5 * (v_chg[first] - v_dis[first])
            half_hi = 0.5 * (v_chg[last] - v_dis[last])
            ocv[:first] = np.where(np.isfinite(v_dis[:first]), v_dis[:first] + half_lo, v_chg_f[:first] - half_lo)
            ocv[last + 1 :] = np.where(
                np.isfinite(v_dis[last + 1 :]), v_dis[last + 1 :] + half_hi, v_chg_f[last + 1 :] - half_hi
            )
    else:
        ocv = v_dis_f
    ocv = np.maximum.accumulate(ocv)  # OCV never falls as SOC rises
    return OcvCurve(soc_grid, ocv, v_dis, v_chg, q_dis, temp, legs, float(np.median(np.abs(rec.current_A[d0:d1]))))


def _fill_ends(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ok = np.isfinite(y)
    return np.interp(x, x[ok], y[ok])


def anchor_full(ocv_V: np.ndarray, soc: np.ndarray, full_V: float, blend_from: float = 0.9) -> np.ndarray:
    """Bend the top of an OCV curve so that OCV(1) equals the rested voltage
    of a fully charged cell, with a correction growing linearly from 0 at
    `blend_from`. At low temperature the C/20 charge leg reaches the voltage
    limit while still polarised, so the averaged legs understate the top of
    the curve; a cell resting at full charge shows the true value."""
    ramp = np.clip((soc - blend_from) / (1.0 - blend_from), 0.0, 1.0)
    return np.maximum.accumulate(ocv_V + ramp * (full_V - ocv_V[-1]))


def rested_full_voltage(rec: Recording) -> float | None:
    """Voltage of the first sample of a recording that starts fully charged and
    at rest (|current| below the rest threshold at its first sample)."""
    if rec.meta.reference_initial_soc != 1.0 or not len(rec):
        return None
    if not abs(rec.current_A[0]) < 0.1 or not np.isfinite(rec.voltage_V[0]):
        return None
    return float(rec.voltage_V[0])
