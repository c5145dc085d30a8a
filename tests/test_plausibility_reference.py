"""The C plausibility monitor against its float64 reference
(bmsfil.plausibility_reference), as the SOC EKF is tested against reference.py:

- lock-step on random step reports (any flags, sigma, correction, capacity,
  ohmic drop, interval and voltage; frozen runs included): the same flags,
  except where the reference's statistic sits within float32 rounding of its
  threshold, and the same evidence within float32 accumulation;
- on the bundled recording, clean and with a 0.5 A offset, each fed the C
  EKF's own reports: the same flags at every sample and the same evidence;
- the reference EKF reports what the C step reports (the monitor's inputs).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmsfil import plausibility_reference as pr
from bmsfil._core import ffi, lib
from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator, StepResult, start_estimator
from bmsfil.inject import SensorErrors
from bmsfil.params import bundled_params
from bmsfil.plausibility import PlausibilityConfig, PlausibilityMonitor
from bmsfil.reference import ReferenceSocEstimator

PARAMS = bundled_params()
F32 = lambda x: float(np.float32(x))  # noqa: E731


def test_flag_bits_are_the_c_cores():
    assert (pr.CURRENT_OFFSET, pr.SELF_DISCHARGE, pr.VOLTAGE_STUCK, pr.VOLTAGE_RANGE, pr.CURRENT_RANGE,
            pr.TEMP_RANGE) == (lib.BF_PLAUS_CURRENT_OFFSET, lib.BF_PLAUS_SELF_DISCHARGE, lib.BF_PLAUS_VOLTAGE_STUCK,
                               lib.BF_PLAUS_VOLTAGE_RANGE, lib.BF_PLAUS_CURRENT_RANGE, lib.BF_PLAUS_TEMP_RANGE)


def c_step(mon: PlausibilityMonitor, report: StepResult, dt_s: float, voltage_V: float) -> "ffi.CData":
    """The C monitor judging a step report given field by field (bf_soc_ekf_out_t)."""
    out = ffi.new("bf_soc_ekf_out_t *")
    out.soc, out.soc_sigma, out.voltage_pred_V, out.flags = report.soc, report.soc_sigma, report.voltage_pred_V, report.flags
    out.soc_correction, out.soc_correction_var = report.soc_correction, report.soc_correction_var
    out.capacity_Ah, out.ohmic_V, out.ohmic_R_ohm = report.capacity_Ah, report.ohmic_V, report.ohmic_R_ohm
    assert lib.bf_plaus_step(mon._state, mon._config, dt_s, voltage_V, out, mon._out) == lib.BF_OK
    return mon._out


def near(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def agree(c: "ffi.CData", r: pr.MonitorStep, ref: pr.ReferencePlausibilityMonitor, rel: float = 2e-3) -> None:
    """C output `c` against the reference's `r`: evidence within `rel`, flags
    equal but where the reference's test is within `rel` of its threshold."""
    cfg = ref.config
    f32_max = float(np.finfo(np.float32).max)
    # Evidence float32 cannot hold (an interval of 1e-38 s) is none in C, and no flag of its.
    overflow = r.unseen_current_sigma_A > f32_max or abs(r.unseen_current_A) > f32_max
    if overflow:
        assert math.isinf(c.unseen_current_sigma_A) and c.unseen_current_A == 0.0
    else:
        scale = max(abs(r.unseen_current_A), r.unseen_current_sigma_A)
        assert abs(c.unseen_current_A - r.unseen_current_A) <= rel * scale + 1e-9
        assert near(c.unseen_current_sigma_A, r.unseen_current_sigma_A, rel)
    assert c.stuck_for_s == pytest.approx(r.stuck_for_s, rel=1e-4, abs=1e-4)
    assert c.stuck_pred_change_V == pytest.approx(r.stuck_pred_change_V, rel=1e-4, abs=1e-6)
    zs = cfg.unseen_z * r.unseen_current_sigma_A
    boundary = pr.CURRENT_OFFSET | pr.SELF_DISCHARGE if overflow else 0
    if math.isfinite(zs) and (near(abs(r.unseen_current_A) - cfg.offset_tol_A, zs, 4 * rel)
                              or near(r.unseen_current_A - cfg.leak_tol_A, zs, 4 * rel)):
        boundary |= pr.CURRENT_OFFSET | pr.SELF_DISCHARGE
    live_min = (1.0 - cfg.model_change_rel) * r.stuck_pred_change_V
    if near(live_min, cfg.voltage_stuck_tol_V + cfg.stuck_z * math.sqrt(2.0) * cfg.voltage_noise_V, 1e-3):
        boundary |= pr.VOLTAGE_STUCK | pr.CURRENT_OFFSET | pr.SELF_DISCHARGE  # a stuck sample counts no charge
    assert (c.flags ^ r.flags) & ~boundary == 0, (c.flags, r.flags)


# --- lock-step on random step reports ------------------------------------------------

EKF_FLAGS = st.sets(st.sampled_from([0x01, 0x02, 0x04, 0x08, 0x20])).map(sum)
f32 = lambda lo, hi: st.floats(lo, hi).map(F32)  # noqa: E731
reports = st.builds(
    lambda flags, sigma, corr, var, cap, ohmic, r_ohm: StepResult(0.5, sigma, 3.7, flags, corr, var, cap, ohmic,
                                                                   r_ohm),
    st.one_of(st.just(0), EKF_FLAGS),
    st.one_of(f32(0.002, 0.05), f32(1e-6, 0.6)),  # a filter's sigma: above its floor, not subnormal
    st.one_of(f32(-1e-4, 1e-4), f32(-0.05, 0.05), st.just(0.0)),
    st.one_of(st.just(0.0), f32(0.0, 1e-4)),
    st.one_of(st.just(3.0), f32(0.01, 5.0), st.just(0.0), st.just(math.nan)),
    st.one_of(f32(-0.3, 0.3), st.just(math.nan)),
    st.one_of(f32(0.01, 0.2), st.just(0.0)),  # the resistance at the step's current (0: a skipped sample)
)
#: Voltages 0.3 mV apart: never within float32 rounding of the 1 mV tolerance.
voltages = st.integers(0, 8).map(lambda k: F32(3.7 + 0.0003 * k))
samples = st.tuples(st.one_of(st.just(0.1), f32(0.0, 10.0), st.just(math.nan), st.just(-1.0)), voltages, reports)
configs = st.builds(
    PlausibilityConfig,
    unseen_tau_s=st.sampled_from([60.0, 3600.0, 86400.0]),
    offset_tol_A=st.sampled_from([0.0, 0.05]),
    leak_tol_A=st.sampled_from([0.0, 0.02]),
    unseen_z=st.sampled_from([1.0, 4.26]),
    model_change_rel=st.sampled_from([0.0, 0.5]),
    converged_sigma_soc=st.sampled_from([0.03, 1.0]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, seq=st.lists(samples, min_size=1, max_size=200))
def test_c_monitor_follows_the_reference_on_any_report(config, seq):
    c_mon = PlausibilityMonitor(config)
    # the settings as the C monitor holds them (float32), so that a sigma drawn
    # at the convergence gate is on the same side of it in both
    ref = pr.ReferencePlausibilityMonitor(replace(config, **{f.name: F32(getattr(config, f.name))
                                                             for f in fields(config)}))
    for dt, v, report in seq:
        # both read the float32 values the C step would have reported
        rep = StepResult(*(F32(x) if isinstance(x, float) else x for x in
                           (report.soc, report.soc_sigma, report.voltage_pred_V, report.flags, report.soc_correction,
                            report.soc_correction_var, report.capacity_Ah, report.ohmic_V, report.ohmic_R_ohm)))
        agree(c_step(c_mon, rep, F32(dt), v), ref.step(rep, F32(dt), v), ref)


def test_frozen_reading_under_a_growing_drop_flags_in_both():
    """A constructed case whose answer is known: the reading frozen while the
    ohmic drop grows by 1 mV a sample; the threshold is 15.4 mV, the change
    judged one sample late, so the 17th frozen sample flags, in both."""
    cfg = PlausibilityConfig()
    c_mon, ref = PlausibilityMonitor(cfg), pr.ReferencePlausibilityMonitor(cfg)
    first = None
    for k in range(30):
        rep = StepResult(0.5, 0.01, 3.7, 0, 0.0, 0.0, 3.0, -0.001 * k, 0.05)
        c, r = c_step(c_mon, rep, 0.1, 3.7), ref.step(rep, 0.1, 3.7)
        agree(c, r, ref)
        if first is None and r.flags & pr.VOLTAGE_STUCK:
            first = k
    assert first == 17
    assert cfg.stuck_threshold_V == pytest.approx(0.0154, abs=1e-4)


# --- on the bundled recording ------------------------------------------------------------

@pytest.mark.parametrize("offset_A", [0.0, 0.5])
def test_c_monitor_follows_the_reference_on_the_recording(offset_A):
    rec = bundled_recording()
    rec = SensorErrors(current_offset_A=offset_A).apply(rec, 0) if offset_A else rec.slice(0, 6000)
    est = SocEstimator(PARAMS)
    start_estimator(est, rec, "ocv")
    c_mon, ref = PlausibilityMonitor(), pr.ReferencePlausibilityMonitor()
    raised = 0
    for dt, i, v, t in zip(rec.dt_s.tolist(), rec.current_A.tolist(), rec.voltage_V.tolist(), rec.temp_C.tolist()):
        dt, i, v, t = F32(dt), F32(i), F32(v), F32(t)
        rep = est.step(dt, i, v, t)
        c, r = c_step(c_mon, rep, dt, v), ref.step(rep, dt, v)
        agree(c, r, ref)
        raised |= r.flags
    assert bool(raised & pr.CURRENT_OFFSET) == (offset_A > 0)


def test_reference_ekf_reports_what_the_c_step_reports():
    """The monitor's inputs from reference.py: the voltage correction and its
    variance, the capacity and the ohmic drop, as the C step gives them."""
    rec = bundled_recording().slice(0, 3000)
    c_est, r_est = SocEstimator(PARAMS), ReferenceSocEstimator(PARAMS)
    start_estimator(c_est, rec, "ocv")
    start_estimator(r_est, rec, "ocv")
    corrections = 0
    for dt, i, v, t in zip(rec.dt_s.tolist(), rec.current_A.tolist(), rec.voltage_V.tolist(), rec.temp_C.tolist()):
        c, r = c_est.step(dt, i, v, t), r_est.step(dt, i, v, t)
        assert r.capacity_Ah == pytest.approx(c.capacity_Ah, rel=1e-5)
        assert r.ohmic_V == pytest.approx(c.ohmic_V, rel=1e-3, abs=2e-5)
        assert r.soc_correction == pytest.approx(c.soc_correction, abs=2e-6)
        # the gate reads sigma^2 + this: compared on that scale
        assert r.soc_correction_var == pytest.approx(c.soc_correction_var, rel=2e-2, abs=1e-3 * c.soc_sigma**2)
        corrections += c.soc_correction != 0.0
    assert corrections > len(rec) // 2


def _capacity_life(restart: bool) -> list[tuple[StepResult, float]]:
    """Step reports of a cell at 30 % SOC, its filter converged (sigma 1 %):
    an hour at 2.78 Ah, then either a restart of the filter after two hours
    unseen in the cold (2.56 Ah; its SOC read afresh there) or a warm-up from
    2.56 Ah with the corrections the capacity's change brings and nothing
    else, then an hour at the new capacity."""
    def report(soc: float, q: float, correction: float = 0.0, flags: int = 0) -> StepResult:
        return StepResult(soc, 0.01, 3.6, flags, correction, 1e-6, q, 0.0)
    steps = [(report(0.3, 2.78), 1.0) for _ in range(3600)]
    if restart:
        steps.append((StepResult(0.3, 0.02, 0.0, lib.BF_FLAG_DT_INVALID), 7200.0))
        q = 2.56
    else:
        steps = [(report(0.3, 2.56), 1.0) for _ in range(3600)]
        soc, q = 0.3, 2.56
        for k in range(600):  # 2.56 -> 2.78 Ah over ten minutes, the charge unchanged
            q_new = 2.56 + 0.22 * (k + 1) / 600
            moved = (1.0 - soc) * (1.0 - q / q_new)
            soc, q = soc + moved, q_new
            steps.append((report(soc, q, moved), 1.0))
    steps += [(report(steps[-1][0].soc if not restart else 0.3, q), 1.0) for _ in range(3600)]
    return steps


@pytest.mark.parametrize("restart", [False, True])
def test_a_capacity_change_is_no_unseen_charge(restart: bool) -> None:
    """The SOC is a share of the capacity at the cell's temperature: a warm-up
    at 30 % SOC moves it by 2.5 points with no charge, and the corrections that
    follow are expected (plausibility.c); across a restart of the filter
    nothing is (its SOC is read afresh at the new temperature). Without the
    term, or with it across the restart, either reads as 0.3 A of charge
    from nowhere over these 2 hours."""
    mon, ref = PlausibilityMonitor(), pr.ReferencePlausibilityMonitor()
    for report, dt in _capacity_life(restart):
        c, r = c_step(mon, report, dt, 3.6), ref.step(report, dt, 3.6)
    assert abs(r.unseen_current_A) < 1e-9 and abs(c.unseen_current_A) < 1e-4
    assert c.flags == r.flags == 0
