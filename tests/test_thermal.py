"""Core temperature (thermal.h through bmsfil.thermal): the C filter against
its float64 reference, the parameter file's thermal section, and the
identification of the thermal model from surface temperature."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmsfil.bundled import bundled_recording
from bmsfil.params import ParameterSet, ParamsError, ThermalParams, bundled_params
from bmsfil.thermal import (
    CoreTempEstimator,
    ReferenceThermalFilter,
    ThermalTuning,
    describe_thermal_flags,
    simulate,
)
from bmsfil.thermal_fit import ThermalData, fit_thermal_data, simulate_surface

from shared_data import LG, needs_data

#: An 18650 as the literature gives it (Lin et al. 2013 scaled; Forgez et al. 2010).
LITERATURE_18650 = ThermalParams(cc_J_per_K=40.0, cs_J_per_K=5.0, rc_K_per_W=2.0, ru_K_per_W=4.0)

#: C (float32) against the float64 reference: temperatures within this, K.
#: A float32 temperature near 40 °C is good to 4e-6 K; thousands of steps
#: of rounding in the state and in e^{A dt} stay well inside 5 mK.
TOL_C = 5e-3


def f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def test_model_alone_matches_the_float64_model():
    """No surface reading: the C filter's prediction is the model, exact for any interval."""
    rng = np.random.default_rng(1)
    n = 5000
    dt = f32(rng.uniform(0.05, 5.0, n))
    heat = f32(np.repeat(rng.uniform(0.0, 6.0, n // 50), 50))
    est = CoreTempEstimator(bundled_params(), LITERATURE_18650)
    est.start_thermal(25.0, 25.0)
    trace = est.run_heat(dt, heat, np.full(n, np.nan), np.full(n, 25.0))
    ref = simulate(LITERATURE_18650, dt, heat, 25.0, (25.0, 25.0))
    assert np.max(np.abs(trace.core_C - ref[:, 0])) < TOL_C
    assert np.max(np.abs(trace.surface_C - ref[:, 1])) < TOL_C
    assert all(f & 0x01 for f in trace.flags)  # surface_invalid every sample


@st.composite
def thermal_scenarios(draw):
    """Random (valid) thermal parameters, intervals, heat and surface readings
    from the model itself with sensor noise, some readings missing or absurd."""
    tp = ThermalParams(
        cc_J_per_K=float(np.float32(draw(st.floats(5.0, 200.0)))),
        cs_J_per_K=float(np.float32(draw(st.floats(1.0, 100.0)))),
        rc_K_per_W=float(np.float32(draw(st.floats(0.2, 10.0)))),
        ru_K_per_W=float(np.float32(draw(st.floats(0.5, 30.0)))),
    )
    seed = draw(st.integers(0, 2**31 - 1))
    n = draw(st.integers(10, 800))
    bad = draw(st.sampled_from([0.0, 0.05]))
    rng = np.random.default_rng(seed)
    dt = f32(rng.choice([0.1, 1.0, 10.0], n) * rng.uniform(0.5, 1.5, n))
    dt[rng.random(n) < 0.01] = 5000.0  # a gap over dt_max_s: both filters start again there
    heat = f32(np.repeat(rng.uniform(0.0, 8.0, n // 10 + 1), 10)[:n])
    true = simulate(tp, dt, heat, 25.0, (25.0, 25.0))
    surface = true[:, 1] + rng.normal(0.0, 0.05, n)
    surface[rng.random(n) < bad] = np.nan
    surface[rng.random(n) < bad] = 1e9
    return tp, dt, heat, f32(surface)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(thermal_scenarios())
def test_c_filter_follows_the_float64_reference(scenario):
    tp, dt, heat, surface = scenario
    tuning = ThermalTuning()
    est = CoreTempEstimator(bundled_params(), tp, tuning)
    est.start_thermal(float(surface[0]) if np.isfinite(surface[0]) and abs(surface[0]) < 100 else 25.0, 25.0)
    trace = est.run_heat(dt, heat, surface, np.full(len(dt), 25.0))
    ref = ReferenceThermalFilter(tp, tuning, float(surface[0]) if np.isfinite(surface[0]) and abs(surface[0]) < 100
                                 else 25.0, 25.0)
    worst = 0.0
    for k in range(len(dt)):
        core, sigma, surf, flags = ref.step(float(dt[k]), float(heat[k]), float(surface[k]), 25.0)
        # Which samples were refused must agree exactly; gating and repairs at their thresholds may not.
        assert (flags & 0x0F) == (trace.flags[k] & 0x0F), (k, describe_thermal_flags(flags),
                                                           describe_thermal_flags(int(trace.flags[k])))
        worst = max(worst, abs(core - trace.core_C[k]), abs(surf - trace.surface_C[k]),
                    abs(sigma - trace.core_sigma_C[k]))
    assert worst < TOL_C
    assert np.all(np.isfinite(trace.core_C)) and np.all(trace.core_sigma_C > 0)


def test_estimator_on_the_bundled_drive_cycle_is_plausible():
    rec = bundled_recording()
    params = replace(bundled_params(), thermal=LITERATURE_18650)
    trace = CoreTempEstimator(params).run(rec)
    assert np.all(np.isfinite(trace.core_C)) and np.all(np.isfinite(trace.core_sigma_C))
    diff = trace.core_minus_surface_C
    # Heat flows out of the core on average while the cell is driven.
    assert 0.0 < float(np.mean(diff)) < 3.0
    assert np.sqrt(np.mean((trace.surface_C - trace.surface_meas_C) ** 2)) < 0.3
    assert np.nanmean(trace.heat_W) > 0.1


def test_estimator_needs_a_thermal_model():
    with pytest.raises(ValueError, match="no thermal model"):
        CoreTempEstimator(replace(bundled_params(), thermal=None))


def test_the_bundled_set_carries_the_25_degC_fit():
    """bmsfil.lg_hg2_params fits the thermal section (docs/thermal.md, the 25 °C fit)."""
    tp = bundled_params().thermal
    assert tp is not None and tp.cc_J_per_K == 40.0
    assert (round(tp.cs_J_per_K, 1), round(tp.rc_K_per_W, 2), round(tp.ru_K_per_W, 2)) == (52.6, 1.20, 2.16)


def test_parameter_file_thermal_section_round_trips(tmp_path: Path):
    plain = replace(bundled_params(), thermal=None)
    assert "thermal" not in plain.to_json()  # files without it stay as they were
    with_thermal = replace(plain, thermal=LITERATURE_18650)
    path = with_thermal.save(tmp_path / "p.json")
    assert ParameterSet.load(path).thermal == LITERATURE_18650
    data = json.loads(path.read_text())
    data["thermal"]["rc_K_per_W"] = -1.0
    with pytest.raises(ParamsError, match="thermal.rc_K_per_W"):
        ParameterSet.from_json(data)
    data["thermal"] = {"cc_J_per_K": 40.0}
    with pytest.raises(ParamsError, match="missing thermal field"):
        ParameterSet.from_json(data)


def test_fit_recovers_what_surface_data_identify():
    """Simulated surface readings (0.1 K quantised) of a known cell: Ru and
    the slow response are recovered; with Cc fixed at its true value, so are
    Cs and Rc (within what the quantisation leaves)."""
    true = ThermalParams(cc_J_per_K=40.0, cs_J_per_K=20.0, rc_K_per_W=1.5, ru_K_per_W=3.0)
    rng = np.random.default_rng(3)
    data = []
    for i in range(2):
        n = 4000
        heat = np.repeat(rng.choice([0.0, 0.5, 3.0, 6.0], n // 120 + 1), 120)[:n]
        d0 = ThermalData(f"sim{i}", 1.0, heat, np.zeros(n), 25.0)
        clean = simulate_surface(true, d0, 25.3)
        data.append(replace(d0, surface_C=np.round(clean / 0.1) * 0.1))
    fitted, report = fit_thermal_data(data, cc_J_per_K=40.0)
    assert fitted.ru_K_per_W == pytest.approx(true.ru_K_per_W, rel=0.03)
    assert fitted.cs_J_per_K == pytest.approx(true.cs_J_per_K, rel=0.3)
    assert fitted.rc_K_per_W == pytest.approx(true.rc_K_per_W, rel=0.3)
    assert report.rms_C < 0.05
    assert all(abs(off - 0.3) < 0.05 for off in report.ambient_offset_C.values())
    notes = report.notes()
    assert "Cc 40 J/K" in notes["thermal_fixed"]
    assert report.warnings == [] and "thermal_warnings" not in notes  # every parameter identified


@pytest.mark.slow
@needs_data
def test_bmsfil_fit_thermal_writes_the_thermal_section(tmp_path: Path):
    from bmsfil.cli import main

    out = tmp_path / "p.json"
    c20 = LG / "1_raw" / "25degC" / "549_C20DisCh.csv"
    hppc = LG / "2_formatted" / "25degC" / "549_HPPC_parsed.csv"
    cap = LG / "1_raw" / "25degC" / "551_Cap_1C.csv"
    assert main(["fit", "--ocv", str(c20), "--pulse", str(hppc), "--thermal", str(hppc), str(cap),
                 "-o", str(out)]) == 0
    params = ParameterSet.load(out)
    assert params.thermal is not None and params.thermal.cc_J_per_K == 40.0
    assert 0.5 < params.thermal.ru_K_per_W < 10.0
    assert "thermal_from" in params.notes and "thermal_fixed" in params.notes
