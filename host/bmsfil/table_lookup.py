"""The cell model's (T, SOC) tables looked up over whole arrays, with the
interpolation rule of the C core (`bf_cell_locate`): linear between grid
points, held at the ends. numpy only, so that the modules that synthesise or
plot model voltages load without the fitting stack (scipy)."""

from __future__ import annotations

import numpy as np


def interp_weights(x: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower index and upper weight of x on an ascending grid, held at the ends
    (the same rule as bf_cell_locate)."""
    n = len(grid)
    if n == 1:
        return np.zeros(len(x), dtype=np.intp), np.zeros(len(x))
    k = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, n - 2)
    w = np.clip((x - grid[k]) / (grid[k + 1] - grid[k]), 0.0, 1.0)
    return k, w


def bilinear(table: np.ndarray, temp_grid: np.ndarray, soc: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """Vectorised table lookup over (T, SOC) with a uniform SOC grid."""
    kt, wt = interp_weights(temp, temp_grid)
    kt1 = np.minimum(kt + 1, len(temp_grid) - 1)
    kz, wz = interp_weights(soc, np.linspace(0, 1, table.shape[1]))
    lo = table[kt, kz] + wt * (table[kt1, kz] - table[kt, kz])
    hi = table[kt, kz + 1] + wt * (table[kt1, kz + 1] - table[kt, kz + 1])
    return lo + wz * (hi - lo)
