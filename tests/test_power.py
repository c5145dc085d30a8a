"""State of power (csrc/src/power.c): checked against the float64 cell model
(a constant-power pulse at the predicted limit reaches the voltage limit at
the end of the horizon, within 2 %), its other limits, and sane outputs for
any state."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil.core import CoreError, SocEstimator
from bmsfil.lg_hg2_params import DATASHEET_LIMITS, DATASHEET_NOTE
from bmsfil.params import ParameterSet, PowerLimits, bundled_params
from bmsfil.power import PowerSearch, SopLimits, state_of_power

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


def _bundled_at(soc: float, temp_C: float, params: ParameterSet | None = None) -> SocEstimator:
    est = SocEstimator(params or bundled_params())
    est.init_soc(soc, temp_C)
    return est


def test_the_bundled_set_carries_the_datasheet_limits():
    """host/bmsfil/data/lg_hg2.json's power section is DATASHEET_LIMITS (edited by hand, not regenerated)."""
    params = bundled_params()
    assert params.power == DATASHEET_LIMITS and params.notes["power_from"] == DATASHEET_NOTE
    assert params.power.charge_window() == (0.0, 50.0)


@pytest.mark.parametrize("temp_C, charges", [(-20.0, False), (-10.0, False), (-0.01, False), (0.0, True),
                                             (25.0, True), (50.0, True), (55.0, False), (75.0, False)])
def test_outside_the_charge_window_only_the_charge_power_is_0(temp_C: float, charges: bool):
    """The bundled LG HG2 set charges from 0 to 50 °C (the edges included)
    and works both ways from -20 to 75 °C: outside the charge window the
    charge power is 0 W by temperature, the discharge power is searched."""
    params = bundled_params()
    sop = state_of_power(_bundled_at(0.5, temp_C), temp_C, SopLimits.for_cell(params, 10.0))
    assert sop.discharge_W > 0 and "temperature" not in sop.discharge_by
    if charges:
        assert sop.charge_W > 0 and "temperature" not in sop.charge_by
    else:
        assert sop.charge_W == sop.charge_A == 0.0 and sop.charge_by == ("temperature",)
    for outside in (-20.5, 75.5):  # beyond the operating range: neither direction
        sop = state_of_power(_bundled_at(0.5, outside), outside, SopLimits.for_cell(params, 10.0))
        assert sop.discharge_W == sop.charge_W == 0.0
        assert sop.discharge_by == sop.charge_by == ("temperature",)


def test_a_set_without_a_charge_window_charges_in_its_temperature_window():
    cell = bundled_params().cell
    assert PowerLimits().charge_window() == (-30.0, 60.0)
    limits = PowerLimits(temp_min_C=-20.0, temp_max_C=55.0).resolved(cell)
    assert (limits["temp_chg_min_C"], limits["temp_chg_max_C"]) == (-20.0, 55.0)
    limits = PowerLimits(temp_charge_min_C=5.0).resolved(cell)
    assert (limits["temp_chg_min_C"], limits["temp_chg_max_C"]) == (5.0, 60.0)
    # SopLimits without a charge window charges in its temperature window, narrowed or not.
    est = SocEstimator(replace(bundled_params(), power=None))
    est.init_soc(0.5, 25.0)
    narrowed = SopLimits.for_cell(replace(bundled_params(), power=None), 10.0, temp_min_C=-10.0, temp_max_C=40.0)
    assert (narrowed.packed().temp_chg_min_C, narrowed.packed().temp_chg_max_C) == (-10.0, 40.0)
    assert state_of_power(est, 25.0, narrowed).charge_W > 0 and state_of_power(est, 45.0, narrowed).charge_W == 0


def test_the_search_in_pieces_spends_no_sub_step_on_a_charge_it_knows():
    """Below the charge window a horizon's search is its discharge search:
    the same discharge power as with the charge searched too, in fewer
    sub-steps; outside the temperature window, none."""
    params = bundled_params()
    anywhere = replace(params, power=replace(params.power, temp_charge_min_C=None, temp_charge_max_C=None))
    searches = {}
    for name, p in (("window", params), ("anywhere", anywhere)):
        search = PowerSearch(_bundled_at(0.5, -10.0, p), (10.0,))
        assert search.step(budget=0) == 0
        searches[name] = search
    window, anywhere_ = searches["window"], searches["anywhere"]
    assert window.result(0).discharge_W == anywhere_.result(0).discharge_W > 0
    assert window.result(0).charge_W == 0 and anywhere_.result(0).charge_W > 0
    assert 0 < window.substeps < anywhere_.substeps
    frozen = PowerSearch(_bundled_at(0.5, -35.0), (10.0,))
    assert frozen.step(budget=1) == 0 and frozen.substeps == 0


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
