"""HIL regression suite: ``pytest hil/ --hil-target NAME`` (host, reference,
qemu, micropython, board; bmsfil_hil/pytest_plugin.py has the options).

Each test runs once per recording (--hil-recording, default the bundled
US06 at 25 °C, cut to --hil-samples, default 2000). A recording is replayed
once through the target in lock-step and the run shared by the tests; each
test case carries the run's metrics as JUnit properties (--junitxml).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bmsfil import can_contract as cc

#: Largest |SOC(target) - SOC(host C core)| on the recording as the bus
#: carries it (bmsfil_hil.replay.as_carried), by target:
#: - host: the same C core behind the bus: only the EstCell's SOC
#:   resolution (1e-6) separates them (measured 5.0e-7).
#: - reference: the float64 model against the float32 core; the cross-target
#:   bar of tests/test_hil_replay.py (measured 1.7e-6 on the default slice,
#:   more over a long recording).
#: - qemu, board: the same C source built by arm-none-eabi-gcc for the
#:   Cortex-M4F, the bar of tests/test_qemu_target.py and docs/firmware.md.
#:   Both builds use -ffp-contract=off and no libm, so in practice they
#:   agree to the SOC resolution (measured 5.0e-7); the bar leaves room for
#:   another compiler's float32 rounding (libgcc, reordering).
#: - micropython: the filter re-written in MicroPython (double precision on
#:   the unix port) against the float32 core: the reference's bar
#:   (measured 1.2e-6 on 1000 samples, 7.4e-6 on the whole bundled cycle).
#:   With --hil-variant native it runs the C core itself as a native module
#:   (x64, the same float32 arithmetic): the host's bar (measured 5.0e-7,
#:   the SOC resolution).
AGREEMENT = {"host": 1e-6, "reference": 1e-4, "qemu": 1e-4, "micropython": 1e-4, "board": 1e-4}
AGREEMENT_BY_VARIANT = {("micropython", "native"): 1e-6}

#: Instructions per cell step, counted by the firmware on the emulated
#: Cortex-M4F (real boards send none), each part of the cell step against a
#: budget of its own, mean over the run: the firmware times the parts apart
#: and sends them in a TargetProfile after each TargetStatus. The SOC
#: filter's step has DESIGN.md's bar of 1,500 (issue 4); the plausibility
#: monitor a budget of its own, 400, as it has in flash; capacity, R0 and
#: the state of power's sub-step (on every second sample) together the
#: issue's 1,000 (issue 7); the core-temperature filter, when the parameter
#: set has a thermal model (the bundled one has), 1,100 (docs/thermal.md).
#: Measured by the firmware's own TargetProfile on the default slice
#: (the first 2000 samples of the bundled US06 at 25 °C, 2026-12-06): SOC
#: filter 1,412 mean (max 1,417), monitor 285 (309), capacity, R0 and power
#: 802 (2,103), core temperature 973 (978); in all 3,470 (4,786), the
#: parts adding up to the TargetStatus count within a few instructions.
#: Over the whole cycle (40,155 samples): docs/firmware.md. The filter
#: was 1,394 when measured alone by hand (2026-11-22); since then its step
#: also reports its correction, innovation and ohmic drop to the monitor
#: (2026-12-05). The one step of a discharge in which a pair of SOC
#: anchors closes also solves the capacity fit's quartic (about 4,500 more
#: in the capacity, R0 and power part: 5,524 there, 8,184 in all, on the
#: whole cycle): the largest step may take that much more than the budget.
INSTRUCTION_BUDGETS = {"soc_filter": 1500, "monitor": 400, "health_and_power": 1000, "core_temp": 1100}
INSTRUCTION_BUDGET = sum(INSTRUCTION_BUDGETS.values())
CAPACITY_SOLVE_INSTRUCTIONS = 5000


@pytest.fixture
def run(hil_replay, hil_recording):
    return hil_replay(hil_recording)


def test_every_sample_answered(run):
    d = run.delivery
    assert d["fault"] is None
    assert run.result.samples_done == len(run.recording)
    assert d["estimates_received"] == len(run.recording)
    assert np.all(np.isfinite(run.soc)), "a sample without a valid estimate"


def test_no_delivery_faults(run):
    d = run.delivery
    assert d["fault"] is None, d["fault"]
    assert d["undecodable_frames"] == 0
    assert d["unexpected_frames"] == 0
    assert d["target_faults"] == []


def test_agrees_with_host_c_core(run):
    assert run.result.samples_done, f"no estimate arrived: {run.delivery['fault']}"
    tol = AGREEMENT_BY_VARIANT.get((run.target, run.variant), AGREEMENT[run.target])
    assert run.max_abs_dsoc_vs_host <= tol, (
        f"target {run.target} ({run.variant or 'default'}) differs from the host C core by {run.max_abs_dsoc_vs_host:.2e} (bar {tol:.0e})")


def test_accuracy_against_reference_soc(run):
    """DESIGN.md's bar, as tests/test_acceptance_lg_hg2.py applies it to
    full-length recordings: RMSE <= 1 % at 0 °C and above (2 % below), the
    largest error after 10 minutes <= 3 % (when the replay is that long),
    >= 95 % of samples inside ±3σ."""
    if run.not_scored is not None:
        pytest.skip(f"not scored: {run.not_scored}")
    assert run.evaluation is not None, f"no estimate arrived: {run.delivery['fault']}"
    s = run.evaluation.score
    ambient = run.recording.meta.ambient_temp_C
    cold = (ambient if ambient is not None else float(np.nanmedian(run.recording.temp_C))) < 0
    assert s.rmse <= (0.02 if cold else 0.01)
    if not math.isnan(s.max_error_after_settle):
        assert s.max_error_after_settle <= 0.03
    assert s.within_3sigma >= 0.95


def test_instructions_per_cell_step(run):
    ipcs = run.delivery["instructions_per_cell_step"]
    if ipcs is None:
        if run.target == "qemu":
            pytest.fail("the qemu target reports instructions per cell step in every TargetStatus")
        pytest.skip(f"target {run.target} does not count instructions")
    assert ipcs["samples"] == len(run.recording), "one count per sample"
    assert ipcs["mean"] <= INSTRUCTION_BUDGET
    assert ipcs["max"] <= INSTRUCTION_BUDGET + CAPACITY_SOLVE_INSTRUCTIONS


def test_instructions_per_part_of_the_cell_step(run):
    """Each part of the cell step within its own budget (mean over the run),
    as the firmware times it (TargetProfile); the parts add up to the
    whole."""
    by_part = run.delivery["instructions_per_cell_step_by_part"]
    if by_part is None:
        if run.target == "qemu":
            pytest.fail("the qemu target sends a TargetProfile after every TargetStatus")
        pytest.skip(f"target {run.target} does not time the parts of its cell step")
    measured = {part: x for part, x in by_part.items() if x is not None}
    if not measured:
        pytest.skip(f"target {run.target} sends a TargetProfile but counts no instructions")
    over = {part: round(x["mean"]) for part, x in measured.items() if x["mean"] > INSTRUCTION_BUDGETS[part]}
    assert not over, f"parts over their budgets {INSTRUCTION_BUDGETS}: {over}"
    if run.target == "qemu":
        assert all(part in measured and measured[part]["samples"] == len(run.recording)
                   for part in INSTRUCTION_BUDGETS), "every part of the default firmware, on every sample"
    ipcs = run.delivery["instructions_per_cell_step"]
    total = sum(x["mean"] * x["samples"] for x in measured.values()) / ipcs["samples"]
    assert abs(total - ipcs["mean"]) <= 5, f"parts add up to {total:.0f}, the whole step is {ipcs['mean']:.0f}"


def test_health_estimates_answer(run):
    """Every target but the float64 reference steps the capacity and R0
    estimators and sends an EstCellHealth for every cell of every sample;
    on a drive cycle R0 is learned from its current steps (docs/health.md)."""
    h = run.result.health
    if run.target == "reference" or (run.target == "board" and not h.sent and run.result.samples_done):
        pytest.skip(f"target {run.target} estimates no capacity or R0")
    assert h.received.all(), "an EstCellHealth for every cell of every sample"
    if len(run.recording) < 1000:
        pytest.skip("too short for R0 to be learned from current steps")
    r0 = h.r0_ohm[np.isfinite(h.r0_ohm)]
    assert r0.size and 0.0 < r0[-1] < 0.2


def test_plausibility_monitor_answers_and_stays_quiet(run):
    """Every target but the float64 reference runs the plausibility monitor
    beside its filter and sends an EstCellFlags for every cell of every
    sample; on a clean recording it raises no flag (docs/plausibility.md)."""
    p = run.result.plausibility
    if run.target == "reference" or (run.target == "board" and not p.sent and run.result.samples_done):
        pytest.skip(f"target {run.target} runs no plausibility monitor")
    assert p.received.all(), "an EstCellFlags for every cell of every sample"
    raised = [name for bit, name in cc.PLAUS_FLAGS.items() if np.any(p.flags & bit)]
    assert raised == [], f"false plausibility flags on a clean recording: {raised}"


def test_power_estimates_answer(run):
    """Every target but the float64 reference searches the state of power
    and sends an EstCellPower for every cell of every sample, each horizon's
    latest result in turn (docs/power.md): within the default 2,000 samples
    every horizon has had results, and a cell of a few amp-hours can deliver
    tens of watts for 2 s."""
    p = run.result.power
    if run.target == "reference" or (run.target == "board" and not p.sent and run.result.samples_done):
        pytest.skip(f"target {run.target} estimates no state of power")
    assert p.received.all(), "an EstCellPower for every cell of every sample"
    if len(run.recording) < 1000:
        pytest.skip("too short for a result of every horizon")
    summary = p.summary()[0]
    for horizon in ("peak_2s", "peak_10s", "peak_30s"):
        assert summary[horizon] is not None, f"no {horizon} result"
    assert summary["peak_2s"]["discharge_W"] > summary["peak_30s"]["discharge_W"] > 0.0
