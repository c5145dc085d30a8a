"""The pure-MicroPython core-temperature filter (firmware/micropython/
bmsfil_thermal.py, in CPython: float64) against the C core's (thermal.c,
float32): the filter alone on the same heat, with invalid intervals, heat,
surface and ambient among the samples; and beside the pure-MicroPython SOC
filter on a real drive cycle, against the C core's SOC and thermal filters
run as the host target runs them."""

from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.params import bundled_params
from bmsfil.thermal import CellThermal, CoreTempEstimator
from firmware_tools import micropython_app

PARAMS = bundled_params()


@pytest.fixture(scope="module")
def mp():
    with micropython_app("bmsfil_ekf", "bmsfil_thermal") as modules:
        yield modules


def test_the_tuning_is_the_c_cores_default(mp) -> None:
    from bmsfil.thermal import ThermalTuning

    assert mp[1].THERMAL_TUNING == astuple(ThermalTuning())


samples = st.tuples(
    st.one_of(st.floats(0.01, 30.0), st.sampled_from([0.0, -1.0, math.nan, 4000.0])),   # dt_s
    st.one_of(st.floats(-5.0, 20.0), st.sampled_from([math.nan, 150.0])),               # heat_W
    st.one_of(st.floats(-20.0, 60.0), st.sampled_from([math.nan, 200.0])),              # surface_C
    st.one_of(st.floats(-20.0, 45.0), st.sampled_from([math.nan, -100.0])),             # ambient_C
)


@settings(max_examples=60, deadline=None)
@given(start=st.floats(-20.0, 45.0), steps=st.lists(samples, min_size=1, max_size=60))
def test_the_filter_alone_is_the_c_filter(mp, start: float, steps: list[tuple[float, float, float, float]]) -> None:
    _, bt = mp
    mine = bt.ThermalFilter(astuple(PARAMS.thermal))
    assert mine.init(start, start)
    c = CoreTempEstimator(PARAMS)
    c.start_thermal(start, start)
    dt, heat, surface, ambient = (np.array(x, dtype=np.float64) for x in zip(*steps))
    theirs = c.run_heat(dt, heat, surface, ambient).core_C
    got = [mine.step(*s) for s in steps]
    # float64 against float32: a few ulps of the float32 per step, grown by the filter's memory.
    np.testing.assert_allclose(got, theirs, atol=2e-3, rtol=0)


def test_beside_the_soc_filter_on_a_drive_cycle_it_is_the_c_cores(mp) -> None:
    """3,000 samples of the bundled US06 at 25 °C: the core warms by over
    0.5 K, and the pure-MicroPython pair follows the C pair to 0.01 K."""
    be, bt = mp
    rec = bundled_recording().slice(0, 3000)
    ekf = be.SocEkf(be.Params(PARAMS.to_json()))
    ekf.init_ocv(float(rec.voltage_V[0]), float(rec.temp_C[0]))
    mine = bt.CellThermal(ekf.p)
    est = SocEstimator(PARAMS)
    est.init_ocv(float(rec.voltage_V[0]), float(rec.temp_C[0]))
    theirs = CellThermal(est, PARAMS.thermal)
    got, want = [], []
    for sample in zip(rec.dt_s.tolist(), rec.current_A.tolist(), rec.voltage_V.tolist(), rec.temp_C.tolist()):
        ekf.step(*sample)
        got.append(mine.step(ekf, *sample))
        est.step(*sample)
        want.append(theirs.step(*sample))
    got_a, want_a = np.array(got), np.array(want)
    assert np.isfinite(want_a).all()
    assert np.max(want_a - rec.temp_C) > 0.5
    np.testing.assert_allclose(got_a, want_a, atol=0.01, rtol=0)


def test_no_temperature_reading_yet_gives_nan(mp) -> None:
    be, bt = mp
    ekf = be.SocEkf(be.Params(PARAMS.to_json()))
    ekf.init_ocv(3.9, 25.0)
    cell = bt.CellThermal(ekf.p)
    ekf.step(0.1, -1.0, 3.9, math.nan)
    assert math.isnan(cell.step(ekf, 0.1, -1.0, 3.9, math.nan))
    ekf.step(0.1, -1.0, 3.9, 24.0)
    assert cell.step(ekf, 0.1, -1.0, 3.9, 24.0) == pytest.approx(24.0, abs=0.01)
