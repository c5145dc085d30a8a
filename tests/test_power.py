"""State of power (csrc/src/power.c): checked against the float64 cell model
(a constant-power pulse at the predicted limit reaches the voltage limit at
the end of the horizon, within 2 %), its other limits, and sane outputs for
any state."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil.core import CoreError, SocEstimator
from bmsfil.params import bundled_params
from bmsfil.power import SopLimits, state_of_power

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from power_check import check, model_params, overshoot  # noqa: E402


def test_pulse_at_the_limit_reaches_the_voltage_limit_at_the_horizon():
    cases = check(stride=8000)
    assert len(cases) >= 12
    assert {c[2] for c in cases} == {"discharge", "charge"}
    worst = max(abs(c[3]) for c in cases)
    assert worst <= 0.02, f"a pulse at the limit reached the voltage limit {worst * 100:.2f} % of the horizon off"


def test_a_pulse_at_the_limit_keeps_every_limit_over_the_whole_pulse():
    """At the predicted power, from states along a drive cycle and stressed
    ones (RC currents at +-i_max: right after a hard discharge or a
    regeneration, when the pulse's first instant is its worst), the voltage
    and the current stay within their limits over the whole pulse, up to
    what 4 sub-steps resolve (docs/power.md)."""
    cases = overshoot(stride=8000, steps_per_s=50.0)
    assert len(cases) >= 60
    assert max(c[3] for c in cases) <= 0.015, "voltage more than 15 mV beyond its limit"
    assert max(c[4] for c in cases) <= 0.01, "current more than 1 % beyond its limit"


def _estimator(soc: float) -> SocEstimator:
    est = SocEstimator(model_params())
    est.init_soc(soc, 25.0)
    return est


def test_other_limits_and_the_state_is_not_changed():
    params = model_params()  # the cell's ranges: the limits below are set one by one
    est = _estimator(0.5)
    x, P = est.x.copy(), est.P.copy()
    wide = state_of_power(est, 25.0, SopLimits.for_cell(params, 10.0))
    assert np.array_equal(est.x, x) and np.array_equal(est.P, P)
    tight = state_of_power(est, 25.0, SopLimits.for_cell(params, 10.0, i_dis_max_A=2.0, i_chg_max_A=1.0))
    assert tight.discharge_by == ("current",) and tight.charge_by == ("current",)
    assert tight.discharge_A <= 2.0 and tight.discharge_W < wide.discharge_W
    assert 2.0 * 3.0 < tight.discharge_W < 2.0 * 4.2  # about 2 A at the cell's voltage
    cold = state_of_power(est, -35.0, SopLimits.for_cell(params, 10.0))
    assert cold.discharge_W == cold.charge_W == 0.0 and cold.discharge_by == ("temperature",)
    empty = state_of_power(_estimator(0.0), 25.0, SopLimits.for_cell(params, 10.0, soc_min=0.05))
    assert empty.discharge_W == 0.0 and "soc" in empty.discharge_by and empty.charge_W > 0
    longer = state_of_power(est, 25.0, SopLimits.for_cell(params, 30.0))
    assert longer.discharge_W < wide.discharge_W and longer.charge_W < wide.charge_W
    with pytest.raises(CoreError):
        state_of_power(est, 25.0, SopLimits.for_cell(params, 0.0))


@settings(max_examples=60, deadline=None)
@given(soc=st.floats(0.0, 1.0), temp=st.floats(-40.0, 70.0), horizon=st.floats(0.5, 120.0),
       i1=st.floats(-30.0, 30.0))
def test_any_state_gives_finite_non_negative_powers(soc: float, temp: float, horizon: float, i1: float):
    est = _estimator(soc)
    est.step(1.0, i1, 3.7, temp)
    sop = state_of_power(est, temp, SopLimits.for_cell(bundled_params(), horizon))
    for value in (sop.discharge_W, sop.charge_W, sop.discharge_A, sop.charge_A):
        assert np.isfinite(value) and value >= 0.0


def test_the_bundled_set_works_within_the_cells_datasheet_limits():
    # LG's INR18650HG2 specification: 20 A continuous discharge, 4 A charge.
    # A warm half-full cell is held by them over 10 s, not by its voltage.
    est = SocEstimator(bundled_params())
    est.init_soc(0.5, 25.0)
    sop = state_of_power(est, 25.0, SopLimits.for_cell(bundled_params(), 10.0))
    assert sop.discharge_by == ("current",) and sop.charge_by == ("current",)
    assert 19.0 < sop.discharge_A <= 20.0 and 3.8 < sop.charge_A <= 4.0
    assert 15.0 < sop.charge_W < 4.0 * 4.2
