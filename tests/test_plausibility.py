"""The plausibility monitor (csrc/src/plausibility.c through bmsfil.plausibility).

Fast tests run on slices of the bundled LG HG2 US06 recording at 25 °C and on
synthetic samples; the slow ones run the issue's bars on every LG HG2 drive
cycle in the shared data (docs/plausibility.md has the same numbers, from
scripts/plausibility_report.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmsfil._core import lib
from bmsfil.bundled import bundled_recording
from bmsfil.cli import main as cli_main
from bmsfil.core import CoreError, SocEstimator, start_estimator
from bmsfil.inject import InjectSpecError, SensorErrors
from bmsfil.params import bundled_params
from bmsfil.plausibility import PlausibilityConfig, PlausibilityMonitor, run_monitored

from shared_data import lg_drive_cycles, needs_data

PARAMS = bundled_params()
STUCK = lib.BF_PLAUS_VOLTAGE_STUCK


def sliced(rec, start_s: float, end_s: float):
    t = rec.time_s - rec.time_s[0]
    k = (t >= start_s) & (t < end_s)
    return replace(
        rec,
        time_s=rec.time_s[k],
        current_A=rec.current_A[k],
        voltage_V=rec.voltage_V[k],
        temp_C=rec.temp_C[k],
        ah=None if rec.ah is None else rec.ah[k],
    )


@pytest.fixture(scope="module")
def us06():
    return bundled_recording()


def test_soc_is_the_ekfs_bit_for_bit(us06):
    rec = sliced(us06, 0, 1200)
    trace, _ = run_monitored(rec, PARAMS)
    alone = SocEstimator(PARAMS).run(rec)
    assert np.array_equal(trace.soc, alone.soc)
    assert np.array_equal(trace.soc_sigma, alone.soc_sigma)
    assert np.array_equal(trace.flags, alone.flags)


def test_step_api_matches_batch(us06):
    rec = sliced(us06, 0, 120)
    _, batch = run_monitored(rec, PARAMS)
    est = SocEstimator(PARAMS)
    start_estimator(est, rec, "ocv")
    mon = PlausibilityMonitor()
    for k, sample in enumerate(zip(rec.dt_s.tolist(), rec.current_A.tolist(), rec.voltage_V.tolist(),
                                   rec.temp_C.tolist())):
        est.step(*sample)
        out = mon.step(est, sample[0], sample[2])
        assert out.flags == batch.flags[k]
        assert np.float32(out.unseen_current_A) == np.float32(batch.unseen_current_A[k])


def test_no_flag_on_a_clean_slice(us06):
    _, pl = run_monitored(sliced(us06, 0, 1500), PARAMS)
    assert not pl.flags.any(), [e.short() for e in pl.events()]


UNGATED = PlausibilityConfig(converged_sigma_soc=1e30)  # every correction counted, as before the gate


@pytest.mark.parametrize("span", [(0, 400), (1200, 1600)])
def test_wrong_initial_soc_is_not_unseen_current(us06, span):
    """From a guessed SOC (0.7, the cell near 0.8-0.9) the filter's first
    corrections take back the guess; the monitor waits for its SOC sigma to
    fall below converged_sigma_soc and then reports what it does from OCV."""
    rec = sliced(us06, *span)  # 4,000 samples
    _, ocv = run_monitored(rec, PARAMS, "ocv")
    _, guessed = run_monitored(rec, PARAMS, 0.7)
    assert not guessed.flags.any(), [e.short() for e in guessed.events()]
    sigma = ocv.unseen_current_sigma_A[-1]
    assert abs(guessed.unseen_current_A[-1] - ocv.unseen_current_A[-1]) < min(0.1, 0.2 * sigma)
    assert guessed.unseen_current_sigma_A[-1] < 2 * sigma
    # Counting the convergence read it as amperes of unseen current.
    _, ungated = run_monitored(rec, PARAMS, 0.7, UNGATED)
    assert abs(ungated.unseen_current_A[-1] - ocv.unseen_current_A[-1]) > 0.5


def test_wrong_initial_soc_with_offset(us06):
    """A 0.1 A offset from a guessed SOC is estimated as it is from OCV (the
    user journey: `bmsfil eval --initial-soc 0.7 --inject current_offset_A=0.1`)."""
    rec = SensorErrors(current_offset_A=0.1).apply(us06, 0)
    _, ocv = run_monitored(rec, PARAMS, "ocv")
    _, guessed = run_monitored(rec, PARAMS, 0.7)
    assert guessed.unseen_current_A[-1] == pytest.approx(0.1, abs=0.05)
    assert abs(guessed.unseen_current_A[-1] - ocv.unseen_current_A[-1]) < 0.01
    assert guessed.unseen_current_sigma_A[-1] < 1.5 * ocv.unseen_current_sigma_A[-1]
    assert not guessed.flags.any()


def test_restart_from_a_guess_under_a_kept_monitor(us06):
    """A cell's life as segments, the filter restarted from a guessed SOC at
    the second while the monitor keeps its evidence: the restart's
    convergence is not counted either."""
    first, second = sliced(us06, 0, 400), sliced(us06, 400, 800)
    _, whole = run_monitored(sliced(us06, 0, 800), PARAMS)
    results = {}
    for name, config in (("gated", None), ("ungated", UNGATED)):
        mon = PlausibilityMonitor(config)
        run_monitored(first, PARAMS, monitor=mon)
        _, results[name] = run_monitored(second, PARAMS, 0.3, monitor=mon)
    pl = results["gated"]
    assert not pl.flags.any(), [e.short() for e in pl.events()]
    assert abs(pl.unseen_current_A[-1] - whole.unseen_current_A[-1]) < 1.5 * pl.unseen_current_sigma_A[-1]
    assert results["ungated"].first_time_s("current_offset") < math.inf


def test_from_ocv_every_correction_counts(us06):
    """From a rested cell's OCV the filter starts with sigma 0.02, below the
    threshold: the gate changes nothing there."""
    rec = sliced(us06, 0, 600)
    _, gated = run_monitored(rec, PARAMS)
    _, ungated = run_monitored(rec, PARAMS, "ocv", UNGATED)
    assert np.array_equal(gated.unseen_current_A, ungated.unseen_current_A)
    assert np.array_equal(gated.unseen_current_sigma_A, ungated.unseen_current_sigma_A)


@pytest.mark.parametrize("at_s", [300.0, 900.0, 1500.0])
def test_stuck_voltage_flagged_within_5_s(us06, at_s):
    """Frozen while driving (at 600, 1200, ... s this US06 pauses for ~10 s, and a
    frozen reading is flagged only once the current moves again: test_stuck_in_a_pause)."""
    rec = sliced(us06, 0, at_s + 120)
    err = SensorErrors(voltage_stuck_at_s=at_s, voltage_stuck_for_s=30)
    a, b = err.stuck_span(rec)
    _, pl = run_monitored(err.apply(rec, 0), PARAMS)
    hit = np.flatnonzero(pl.flags[a:b] & STUCK)
    assert hit.size, "a voltage frozen for 30 s in a US06 drive was never flagged"
    delay = rec.time_s[a + hit[0]] - rec.time_s[a]
    assert delay <= 5.0
    assert not (pl.flags[:a] & STUCK).any() and not (pl.flags[b + 1 :] & STUCK).any()
    event = next(e for e in pl.events() if e.flag == "voltage_stuck")
    assert event.stuck_pred_change_V >= PlausibilityConfig().stuck_threshold_V


def test_stuck_in_a_pause_flagged_when_the_current_returns(us06):
    err = SensorErrors(voltage_stuck_at_s=1200.0, voltage_stuck_for_s=30)
    rec = sliced(us06, 0, 1300)
    a, b = err.stuck_span(rec)
    _, pl = run_monitored(err.apply(rec, 0), PARAMS)
    hit = np.flatnonzero(pl.flags[a:b] & STUCK)
    moving = np.flatnonzero(np.abs(rec.current_A[a:b]) > 1.0)
    assert hit.size and moving.size
    assert moving[0] <= hit[0] <= moving[0] + 20  # within 2 s of the current moving


def test_constant_voltage_at_rest_is_not_stuck():
    n = 6000  # 10 minutes at 0.1 s, nothing flowing, the reading never moves
    est = SocEstimator(PARAMS)
    est.init_soc(0.5, 25.0)
    mon = PlausibilityMonitor()
    for _ in range(n):
        est.step(0.1, 0.0, 3.7, 25.0)
        assert not mon.step(est, 0.1, 3.7).flags & STUCK


def test_voltage_held_by_a_charger_is_not_stuck():
    """Constant-voltage charging: the reading is held while the current tapers."""
    est = SocEstimator(PARAMS)
    est.init_soc(0.95, 25.0)
    mon = PlausibilityMonitor()
    for k in range(3000):
        i = 1.5 * math.exp(-k / 600.0)
        est.step(0.1, i, 4.2, 25.0)
        assert not mon.step(est, 0.1, 4.2).flags & STUCK


def test_offset_estimated_and_flagged(us06):
    _, pl = run_monitored(SensorErrors(current_offset_A=0.5).apply(us06, 0), PARAMS)
    assert abs(pl.unseen_current_A[-1] - 0.5) <= 0.1
    assert 0 < pl.unseen_current_sigma_A[-1] < 0.1
    assert math.isfinite(pl.first_time_s("current_offset"))
    assert math.isfinite(pl.first_time_s("self_discharge"))  # + : charge the cell never got
    _, neg = run_monitored(SensorErrors(current_offset_A=-0.5).apply(us06, 0), PARAMS)
    assert math.isfinite(neg.first_time_s("current_offset"))
    assert not math.isfinite(neg.first_time_s("self_discharge"))  # charge appearing is no leak


def test_clean_whole_bundled_recording(us06):
    _, pl = run_monitored(us06, PARAMS)
    assert not pl.flags.any(), [e.short() for e in pl.events()]
    assert abs(pl.unseen_current_A[-1]) < 3 * pl.unseen_current_sigma_A[-1]


def test_range_flags_mirror_the_ekf(us06):
    rec = sliced(us06, 0, 60)
    v = rec.voltage_V.copy()
    v[100] = np.nan
    temp = rec.temp_C.copy()
    temp[200] = 500.0
    _, pl = run_monitored(replace(rec, voltage_V=v, temp_C=temp), PARAMS)
    assert pl.flags[100] & lib.BF_PLAUS_VOLTAGE_RANGE
    assert pl.flags[200] & lib.BF_PLAUS_TEMP_RANGE
    assert {e.flag for e in pl.events()} == {"voltage_range", "temp_range"}


def test_inject_spec(us06):
    err = SensorErrors.parse("voltage_stuck_at_s=10,voltage_stuck_for_s=30,leak_A=0.05")
    rec = sliced(us06, 0, 100)
    got = err.apply(rec, 0)
    a, b = err.stuck_span(rec)
    assert rec.time_s[a] - rec.time_s[0] == pytest.approx(10.0, abs=0.11)
    assert rec.time_s[b - 1] - rec.time_s[a] == pytest.approx(30.0, abs=0.11)
    assert np.all(got.voltage_V[a:b] == rec.voltage_V[a])
    assert np.array_equal(got.voltage_V[b:], rec.voltage_V[b:])
    assert np.allclose(got.current_A - rec.current_A, 0.05)
    assert np.array_equal(got.ah, rec.ah)  # the reference stays the cycler's counter
    assert "leak_A=0.05" in err.describe() and "voltage_stuck_at_s=10" in err.describe()
    assert SensorErrors().describe() == ""
    with pytest.raises(InjectSpecError):
        SensorErrors.parse("leak=0.05")
    # a red team's: accepted, shown in eval's title, and not applied
    with pytest.raises(InjectSpecError, match="voltage_stuck_for_s needs voltage_stuck_at_s too"):
        SensorErrors.parse("voltage_stuck_for_s=600")
    with pytest.raises(InjectSpecError, match="voltage_stuck_at_s: a spread or a duration is not negative"):
        SensorErrors.parse("voltage_stuck_at_s=-5,voltage_stuck_for_s=30")
    late = SensorErrors.parse("voltage_stuck_at_s=99999,voltage_stuck_for_s=30")
    assert "voltage_stuck_at_s=99999 is after its end (100 s): no frozen voltage" in late.not_applied(rec)
    assert err.not_applied(rec) is None


def test_eval_reports_flags(tmp_path, us06):
    rec_path = tmp_path / "slice.npz"
    sliced(us06, 0, 900).save(rec_path)
    out = tmp_path / "e.json"
    assert cli_main(["eval", str(rec_path), "--no-plot", "--out-dir", str(tmp_path),
                     "--inject", "voltage_stuck_at_s=300,voltage_stuck_for_s=30", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    flags = doc["recordings"][0]["plausibility"]["flags"]
    stuck = next(f for f in flags if f["flag"] == "voltage_stuck")
    assert 300 <= stuck["first_time_s"] <= 305
    assert stuck["stuck_pred_change_V"] > 0


def test_config_rejected():
    with pytest.raises(CoreError):
        PlausibilityMonitor(PlausibilityConfig(model_change_rel=1.0))
    with pytest.raises(CoreError):
        PlausibilityMonitor(PlausibilityConfig(unseen_tau_s=0.0))
    with pytest.raises(CoreError):
        PlausibilityMonitor(PlausibilityConfig(converged_sigma_soc=0.0))
    with pytest.raises(CoreError):
        PlausibilityMonitor(PlausibilityConfig(converged_sigma_soc=math.nan))


# --- any input ---------------------------------------------------------------------

ABSURD = [math.nan, math.inf, -math.inf, 1e30, -1e30, 0.0, -0.0, 1e-40]
values = lambda lo, hi: st.one_of(st.floats(lo, hi, width=32), st.sampled_from(ABSURD))  # noqa: E731
samples = st.tuples(values(0.0, 100.0), values(-40.0, 40.0), values(2.0, 4.5), values(-40.0, 80.0))
configs = st.builds(
    PlausibilityConfig,
    unseen_tau_s=st.floats(1.0, 1e6),
    offset_tol_A=st.floats(0.0, 1.0),
    leak_tol_A=st.floats(0.0, 1.0),
    unseen_z=st.floats(0.5, 10.0),
    voltage_noise_V=st.floats(0.0, 0.1),
    voltage_stuck_tol_V=st.floats(0.0, 0.1),
    model_change_rel=st.floats(0.0, 0.99),
    stuck_z=st.floats(0.5, 10.0),
    converged_sigma_soc=st.floats(1e-4, 1e30),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, seq=st.lists(st.one_of(samples, st.tuples(st.just(0.1), st.floats(-5, 5), st.just(3.7),
                                                                   st.just(25.0))), min_size=1, max_size=300),
       soc0=st.floats(0.0, 1.0))
def test_any_input_keeps_the_monitor_sane(config, seq, soc0):
    est = SocEstimator(PARAMS)
    est.init_soc(soc0, 25.0)
    mon = PlausibilityMonitor(config)
    for dt, i, v, t in seq:
        try:
            est.step(dt, i, v, t)
        except CoreError:
            continue
        out = mon.step(est, dt, v)
        assert math.isfinite(out.unseen_current_A)
        assert out.unseen_current_sigma_A > 0 and not math.isnan(out.unseen_current_sigma_A)
        assert math.isfinite(out.stuck_for_s) and out.stuck_for_s >= 0
        assert math.isfinite(out.stuck_pred_change_V)
        assert out.flags & ~0x3F == 0
        s = mon._state
        assert all(math.isfinite(x) for x in (s.unseen_charge_As, s.window_s, s.sigma2_past, s.run_s))
        assert s.window_s >= 0 and s.sigma2_past >= 0


# --- the bars on every LG HG2 drive cycle (slow) ------------------------------

CYCLES = lg_drive_cycles()
#: Bars the monitor does not meet, with why (docs/plausibility.md). strict: remove when one passes.
KNOWN_MISSES = {
    "offset_10min": "the EKF's SOC sigma (floor 1 %) bounds what 10 minutes of corrections can prove: "
    "a 0.5 A offset is 3 % of SOC in 10 min against sqrt(2) x 1 %, z ~ 2, below the 1e-5 alarm "
    "(flagged after 30-42 min; docs/plausibility.md)",
    "leak": "50 mA over one drive cycle is 1.5-6 % of SOC, at most 2.2 sigma of the EKF's own uncertainty "
    "(flagged after 7.3 h of driving with the monitor kept across cycles; docs/plausibility.md)",
}


@pytest.fixture(scope="module", params=CYCLES, ids=[p.name for p in CYCLES])
def cycle(request):
    from bmsfil.importers import import_file

    return import_file(request.param)


@pytest.mark.slow
@needs_data
def test_no_false_flag_on_clean_cycles(cycle):
    _, pl = run_monitored(cycle, PARAMS)
    assert not pl.flags.any(), [e.short() for e in pl.events()]


@pytest.mark.slow
@needs_data
def test_offset_bar(cycle):
    _, pl = run_monitored(SensorErrors(current_offset_A=0.5).apply(cycle, 0), PARAMS)
    assert math.isfinite(pl.first_time_s("current_offset")), "a 0.5 A offset was never flagged"
    if abs(pl.unseen_current_A[-1] - 0.5) > 0.1 and pl.first_time_s("current_offset") > 600:
        pytest.xfail(KNOWN_MISSES["offset_10min"] + f"; end estimate {pl.unseen_current_A[-1]:.3f} A")


@pytest.mark.slow
@needs_data
def test_leak_bar(cycle):
    _, pl = run_monitored(SensorErrors(leak_A=0.05).apply(cycle, 0), PARAMS)
    # Whatever the verdict, the estimate points the right way and the truth is inside 3 sigma.
    assert pl.unseen_current_A[-1] > 0
    assert abs(pl.unseen_current_A[-1] - 0.05) <= 3 * pl.unseen_current_sigma_A[-1]
    if not math.isfinite(pl.first_time_s("self_discharge")):
        pytest.xfail(KNOWN_MISSES["leak"])


@pytest.mark.slow
@needs_data
def test_stuck_bar(cycle):
    """Frozen for 30 s at 10..70 % of the cycle (the last 10 % holds the final rest, where a
    frozen reading is indistinguishable from a live one): flagged while frozen, never outside."""
    duration = float(cycle.time_s[-1] - cycle.time_s[0])
    delays = []
    for frac in (0.1, 0.3, 0.5, 0.7):
        err = SensorErrors(voltage_stuck_at_s=frac * duration, voltage_stuck_for_s=30)
        a, b = err.stuck_span(cycle)
        _, pl = run_monitored(err.apply(cycle, 0), PARAMS)
        assert not (pl.flags[:a] & STUCK).any()
        hit = np.flatnonzero(pl.flags[a:b] & STUCK)
        delays.append(float(cycle.time_s[a + hit[0]] - cycle.time_s[a]) if hit.size else math.inf)
    if max(delays) > 5.0:
        pytest.xfail(f"flag delays {delays} s: the current did not move enough within 5 s for the "
                     "model's ohmic drop to prove the reading frozen (docs/plausibility.md)")


@needs_data
def test_a_noisy_temperature_reading_does_not_make_a_live_voltage_stuck():
    """0.3 K of white noise on each 10 Hz temperature reading moved the model's
    ohmic drop through R0(T) by itself: under a steady -5.1 A on the 0 °C
    HWFET, 18 mV in 0.3 s with the voltage still, a false voltage_stuck at
    304 s. The stuck test compares currents at one resistance now; a reading
    really frozen still flags."""
    from bmsfil.importers import import_file
    from shared_data import LG

    full = import_file(LG / "2_formatted" / "0degC" / "589_HWFET_parsed.csv")
    noise = np.random.default_rng(0).normal(0.0, 0.3, len(full))
    rec = replace(full, temp_C=full.temp_C + noise).slice(0, 4000)
    _, trace = run_monitored(rec, bundled_params())
    assert not (trace.flags & lib.BF_PLAUS_VOLTAGE_STUCK).any()
    frozen = rec.voltage_V.copy()
    frozen[3000:3300] = frozen[3000]
    _, trace = run_monitored(replace(rec, voltage_V=frozen), bundled_params())
    stuck = np.flatnonzero(trace.flags & lib.BF_PLAUS_VOLTAGE_STUCK)
    assert stuck.size and 3000 < stuck[0] < 3050
