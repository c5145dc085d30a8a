"""A file in the LG HG2 formatted layout whose data are another cell's: imported, with a warning."""

from __future__ import annotations

import csv
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bmsfil.importers import import_file
from bmsfil.importers.lg_hg2 import not_an_lg_hg2
from bmsfil.recording import RecordingWarning

from shared_data import LG, NASA_B0005, needs_data, needs_nasa

LG_FILES = sorted(p for p in LG.glob("*/*/*") if p.suffix in (".csv", ".gz"))


def nasa_cycle_as_lg_formatted(path: Path, cycle: str = "10") -> Path:
    """One B0005 discharge (a 2 Ah cell, 2 A to 2.7 V, 24 °C) written with the LG HG2 formatted columns."""
    with open(NASA_B0005, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row["cycle_idx"] == cycle]
    t = np.array([float(r["Time"]) for r in rows])
    i = np.array([float(r["Current_measured"]) for r in rows])
    ah = np.concatenate([[0.0], np.cumsum(0.5 * (i[1:] + i[:-1]) * np.diff(t)) / 3600])
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Timestamp", "Time [min]", "Voltage [V]", "Current [A]", "Temperature [degC]", "Capacity [Ah]"])
        for r, tk, ak in zip(rows, t, ah):
            writer.writerow(["2008-04-02 10:00:00", tk / 60, r["Voltage_measured"], r["Current_measured"],
                             r["Temperature_measured"], ak])
    return path


@needs_nasa
def test_another_cells_discharge_in_lg_columns_warns_and_points_to_csv(tmp_path: Path) -> None:
    path = nasa_cycle_as_lg_formatted(tmp_path / "cell_discharge.csv")
    with pytest.warns(RecordingWarning) as caught:
        rec = import_file(path)
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"{path}: recognised as the LG HG2 data set's layout by its column names alone")
    assert "having delivered 1.8" in message and "Q_ref 2.7807 Ah at 25 °C" in message
    assert "--format csv and --meta" in message
    assert rec.meta.extra["format"] == "lg-hg2-formatted" and "delivered" in rec.meta.extra["not_lg_hg2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordingWarning)
        assert import_file(path, fmt="csv").meta.nominal_capacity_Ah is None  # the way out: no LG defaults


@needs_data
@pytest.mark.parametrize("path", LG_FILES, ids=lambda p: p.name)
def test_every_lg_hg2_file_fits_the_cell(path: Path) -> None:
    """Every file of the data set, the raw ones too (their discharges to the cut-off at 1C and below)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecordingWarning)
        rec = import_file(path)
    assert not_an_lg_hg2(rec) is None


@needs_data
def test_a_voltage_outside_the_cells_window_does_not_fit_but_a_glitch_does() -> None:
    rec = import_file(LG / "2_formatted" / "0degC" / "589_US06_parsed.csv").slice(0, 20000)
    assert "outside its 2.45-4.25 V window" in not_an_lg_hg2(replace(rec, voltage_V=rec.voltage_V + 0.1))
    glitch = rec.voltage_V.copy()
    glitch[[0, 5000]] = 0.0
    assert not_an_lg_hg2(replace(rec, voltage_V=glitch)) is None
