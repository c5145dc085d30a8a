"""Packs: cells in series for the harness.

A pack is N cells carrying one current. From one recording of one cell,
`synthetic_pack` makes N cells that differ as cells of a real string do, by
stated spreads of capacity, resistance and initial SOC, and labels every one
of them synthetic (in its name and its metadata). Cell i has

- capacity c_i = c (1 + e_c,i): its reference SOC is
  z_i = z0 + dz_i + Ah / (Q_ref c_i), with initial SOC offset dz_i;
- voltage V_i = OCV(z_i, T) + r_i (V - OCV(z, T)), with r_i = 1 + e_r,i:
  the recorded overpotential (everything that is not OCV: ohmic, RC,
  hysteresis) scaled by the cell's resistance, on the cell's own OCV;

where z is the recording's reference SOC, OCV the parameter set's table, and
e_c, e_r, dz drawn uniformly within +-spread from a seeded generator (cell 0
is the recorded cell itself); dz is then limited so that z_i stays inside
[0, 1] (a recording that starts full leaves room below only). The result is an approximation good for
exercising a pack (bus load, per-cell estimates, a monitor), not a model of
cell-to-cell physics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bmsfil.params import ParameterSet
from bmsfil.recording import Recording, RecordingError
from bmsfil.table_lookup import bilinear


@dataclass(frozen=True)
class Spread:
    """Half-widths of the uniform spreads: relative capacity and resistance, absolute SOC."""

    capacity: float = 0.03
    resistance: float = 0.10
    soc: float = 0.02

    @classmethod
    def parse(cls, text: str) -> "Spread":
        """``capacity=0.03,resistance=0.1,soc=0.02`` (any subset)."""
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in ("capacity", "resistance", "soc"):
                raise ValueError(f"spread {item!r}: expected capacity=X, resistance=X or soc=X")
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f"spread {item!r}: {value!r} is not a number") from None
            if not 0.0 <= values[key] < (0.5 if key != "soc" else 0.2):
                raise ValueError(f"spread {item!r}: out of range (capacity and resistance < 0.5, soc < 0.2)")
        return cls(**values)


def synthetic_pack(rec: Recording, n_cells: int, params: ParameterSet, spread: Spread = Spread(),
                   seed: int = 0) -> list[Recording]:
    """N synthetic cells in series from one recorded cell (see the module docstring)."""
    if n_cells < 1:
        raise ValueError(f"a pack needs at least one cell, got {n_cells}")
    z = rec.reference_soc()  # raises with what is missing
    q_ref = rec.meta.reference_capacity_Ah
    z0 = rec.meta.reference_initial_soc
    if q_ref is None or z0 is None:
        raise RecordingError(f"{rec.meta.name}: a synthetic pack needs reference_capacity_Ah and "
                             "reference_initial_soc")
    cell = params.cell
    temp = np.nan_to_num(rec.temp_C, nan=float(np.nanmedian(rec.temp_C)))
    ocv = bilinear(cell.ocv_V, cell.temp_C, np.clip(z, 0.0, 1.0), temp)
    overpotential = rec.voltage_V - ocv
    rng = np.random.default_rng(seed)
    cells = []
    for i in range(n_cells):
        if i == 0:
            e_c = e_r = dz = 0.0
        else:
            e_c, e_r = rng.uniform(-1.0, 1.0, 2) * (spread.capacity, spread.resistance)
            dz = float(rng.uniform(-1.0, 1.0) * spread.soc)
        q_i = q_ref * (1.0 + e_c)
        base = z0 + (z - z0) * q_ref / q_i
        # Keep the cell inside [0, 1]: a recording that starts full leaves
        # only room below, one that ends empty only room above.
        lo, hi = -float(base.min()), 1.0 - float(base.max())
        if lo > hi:
            raise ValueError(f"synthetic cell {i} of {rec.meta.name} cannot stay inside SOC [0, 1] with capacity "
                             f"x{1 + e_c:.4f}: reduce the capacity spread")
        dz = min(max(dz, lo), hi)
        z_i = base + dz
        volts = bilinear(cell.ocv_V, cell.temp_C, np.clip(z_i, 0.0, 1.0), temp) + (1.0 + e_r) * overpotential
        meta = replace(
            rec.meta,
            name=f"{rec.meta.name}#cell{i:03d}",
            reference_capacity_Ah=q_i,
            reference_initial_soc=z0 + dz,
            extra={**rec.meta.extra, "synthetic": f"from {rec.meta.name}: capacity x{1 + e_c:.4f}, "
                   f"resistance x{1 + e_r:.4f}, initial SOC {dz:+.4f} (seed {seed})"},
        )
        cells.append(Recording(rec.time_s, rec.current_A, volts, rec.temp_C, meta, rec.ah))
    return cells
