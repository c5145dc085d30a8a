"""Where the shared recordings are: $BMSFIL_DATA, else ../shared/data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("BMSFIL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
LG = DATA / "lg_hg2"
needs_data = pytest.mark.skipif(not LG.is_dir(), reason=f"recorded data not found at {DATA} (set BMSFIL_DATA)")


def lg_drive_cycles() -> list[Path]:
    """Every LG HG2 drive-cycle file in the shared data (not C/20, capacity, HPPC)."""
    names = ("US06", "HWFET", "UDDS", "LA92", "Mix", "NN")
    return sorted(
        p for p in LG.rglob("*") if p.is_file() and any(n in p.name for n in names) and "HPPC" not in p.name
    )


NASA_B0005 = DATA / "nasa_pcoe" / "B0005_discharge_timeseries.csv"
needs_nasa = pytest.mark.skipif(not NASA_B0005.is_file(), reason=f"NASA data not found at {DATA} (set BMSFIL_DATA)")


def nasa_discharges(n: int):  # -> Recording (imported here lazily: bmsfil is the package under test)
    """B0005's first n discharges as one recording: between two of them a
    gap of about 3 h in its time, in which the cell was charged and rested
    (not recorded). Returns the recording and the samples that start a
    discharge after the first."""
    from bmsfil.importers import import_file

    rec = import_file(NASA_B0005)
    starts = rec.cycle_starts()
    return rec.slice(0, starts[n]), starts[1:n]
