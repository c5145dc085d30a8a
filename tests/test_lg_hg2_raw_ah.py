"""LG HG2 raw exports whose Ah counter restarts at steps: known answers from the real files.

The Digatron counter of the 0.5C and 2C discharge tests (``*_Dis_0p5C``,
``*_Dis_2C``) restarts at 0 at the rest and charge steps after the discharge;
the importer joins the restarts so that ``ah`` is the charge since the first
sample and the reference SOC stays within [0, 1].
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from bmsfil.importers import import_file
from bmsfil.importers.lg_hg2 import join_step_restarts

from shared_data import LG, needs_data

DIS_FILES = sorted((LG / "1_raw").glob("*/*_Dis_*C.csv")) if LG.is_dir() else []


def _steps(path):
    """(step, status, first Capacity, last Capacity) of each step of a raw export, in order."""
    with open(path, encoding="latin-1", newline="") as fh:
        rows = list(csv.reader(fh))
    start = next(i for i, row in enumerate(rows) if row and row[0] == "Time Stamp")
    head = rows[start]
    step, status, cap = head.index("Step"), head.index("Status"), head.index("Capacity")
    steps: list[list] = []
    for row in rows[start + 2:]:
        if len(row) <= cap or not row[step]:
            continue
        key = (row[step], row[status])
        if not steps or steps[-1][0] != key:
            steps.append([key, float(row[cap]), float(row[cap])])
        steps[-1][2] = float(row[cap])
    return steps


@needs_data
def test_all_twelve_discharge_tests_are_found() -> None:
    assert len(DIS_FILES) == 12


@needs_data
@pytest.mark.parametrize("path", DIS_FILES, ids=lambda p: p.stem + "_" + p.parent.name)
def test_discharge_test_reference_soc_stays_in_range_and_matches_the_file(path) -> None:
    rec = import_file(path)
    assert rec.ah is not None and rec.ah[0] == 0.0
    soc = rec.reference_soc()
    assert soc.min() >= -0.005 and soc.max() <= 1.005, (soc.min(), soc.max())
    # The discharge step's own total: its counter from the first sample to its last
    # (the step is the file's first; the counter does not restart inside it).
    steps = _steps(path)
    (first_step, status), first_cap, last_cap = steps[0]
    assert status == "DCH"
    discharging = np.flatnonzero(rec.current_A < -0.01)
    assert rec.ah[discharging[-1]] == pytest.approx(last_cap - first_cap, abs=1e-9)
    # The charge step's counter starts at 0 (its first sample, a minute in at
    # 1C, reads about 0.05 Ah), so its last value is its total: the recording
    # ends at the discharge plus that charge (the rests after it add nothing).
    charged = [last for (_, st), first, last in steps if st == "CHA"]
    assert all(first == pytest.approx(0.05, abs=0.002) for (_, st), first, _ in steps if st == "CHA")
    assert rec.ah[-1] == pytest.approx(last_cap - first_cap + sum(charged), abs=1e-3)
    if charged:
        # Ends after the data set's full charge: the reference is 1 there.
        assert soc[-1] == pytest.approx(1.0, abs=1e-9)
        assert rec.meta.extra["ah_joined_steps"] in {"1", "2"}
    assert 0.9 < rec.meta.reference_initial_soc < 1.0


@needs_data
def test_2c_test_from_the_step_start_without_closing_charge() -> None:
    # 549_Dis_2C (25 °C) is the discharge step only, 60 s into it at 6 A: the
    # reference starts 0.1 Ah below full and its counter is taken as it is.
    rec = import_file(LG / "1_raw" / "25degC" / "549_Dis_2C.csv")
    assert rec.meta.reference_initial_soc == pytest.approx(1 - 5.99956 * 60.001 / 3600 / 2.7807, abs=1e-6)
    assert rec.ah[-1] == pytest.approx(-2.68077 + 0.09997, abs=1e-9)
    assert "ah_joined_steps" not in rec.meta.extra


@needs_data
def test_drive_cycle_counter_and_reference_unchanged() -> None:
    # 610_US06 (-20 °C): the profile step and the rest after it share one
    # counter (no restart): ah is the counter from zero, as before.
    path = LG / "1_raw" / "n20degC" / "610_US06.csv"
    rec = import_file(path)
    steps = _steps(path)
    assert [s[0][1] for s in steps] == ["TABLE", "PAU"]
    assert rec.ah[-1] == pytest.approx(steps[-1][2] - steps[0][1], abs=1e-12)
    assert rec.meta.reference_initial_soc == 1.0
    assert rec.reference_soc()[-1] == pytest.approx(1 - 1.58779 / 2.4948, abs=1e-5)
    assert "ah_joined_steps" not in rec.meta.extra


def test_join_step_restarts_known_answer() -> None:
    # Discharge to -1.0 Ah, then a rest and a charge whose counters restart at 0,
    # a rest that carries the charge's counter on, the stop step at 0.
    step = np.array([1, 1, 2, 2, 3, 3, 4, 5])
    ah = np.array([-0.5, -1.0, 0.0, 0.0, 0.25, 0.9, 0.9, 0.0])
    current = np.array([-1.0, -1.0, 0.0, 0.0, 1.0, 0.05, 0.0, 0.0])
    time = np.array([0.0, 1800, 1860, 3600, 4500, 6000, 6060, 6100])
    step_time = np.array([1800.0, 3600, 60, 1800, 900, 2400, 60, 0])
    joined, n = join_step_restarts(ah, step, current, time, step_time)
    # The charge step's restart is not one to join: the rest before it ended at 0.
    assert n == 2
    np.testing.assert_allclose(joined, [-0.5, -1.0, -1.0, -1.0, -0.75, -0.1, -0.1, -0.1])


def test_join_step_restarts_counts_the_tail_of_a_step_after_its_last_sample() -> None:
    # The last discharge sample is 60 s before the step ends (at -1 A): 1/60 Ah more.
    step = np.array([1, 1, 2])
    ah = np.array([-0.5, -1.0, 0.0])
    joined, n = join_step_restarts(ah, step, np.array([-1.0, -1.0, 0.0]), np.array([0.0, 1800, 1920]),
                                   np.array([1800.0, 3600, 60]))  # step 1 ends at 1920 - 60 = 1860 s
    assert n == 1
    assert joined[-1] == pytest.approx(-1.0 - 1 / 60)
