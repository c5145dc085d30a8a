"""The lock-step replay over CAN to in-process targets."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import can
import numpy as np
import pytest

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.core import SocEstimator
from bmsfil.importers import import_file
from bmsfil.params import bundled_params
from bmsfil_hil.logreplay import read_log
from bmsfil_hil.replay import as_carried, open_log, replay_lockstep
from bmsfil_hil.targets import InlineBus, make_target

from shared_data import lg_drive_cycles, nasa_discharges, needs_data, needs_nasa

SLICE = 3000


@pytest.fixture(scope="module")
def rec():
    return bundled_recording().slice(0, SLICE)


@pytest.mark.parametrize("target_name", ["host", "reference"])
def test_lockstep_reproduces_eval_of_what_the_bus_carries(rec, target_name):
    target = make_target(target_name, bundled_params())
    bus = target.start()
    try:
        result = replay_lockstep(bus, [rec])
    finally:
        target.stop()
    assert result.delivery.fault is None
    assert result.samples_done == SLICE
    direct = SocEstimator(bundled_params()).run(as_carried(rec)).soc
    # The C target matches eval to the contract's SOC resolution; the
    # float64 reference matches the float32 core to the cross-target bar.
    tol = 1e-6 if target_name == "host" else 1e-4
    assert np.max(np.abs(result.soc[:, 0] - direct)) <= tol


@needs_nasa
@pytest.mark.parametrize("target_name", ["host", "reference"])
def test_a_gap_the_bus_cannot_carry_restarts_the_target(tmp_path: Path, target_name):
    """Three NASA discharges with 3 h gaps between them, longer than MeasPack's
    dt_s carries: the frames say "no valid interval", the target takes it as
    time it did not see and starts each discharge again from the rested full
    cell's voltage, as eval of what the bus carries does, and as the C core
    does on the recording rebuilt from the log (hil score)."""
    rec, starts = nasa_discharges(3)
    target = make_target(target_name, bundled_params())
    log = open_log(tmp_path / "run.blf")
    bus = target.start()
    try:
        result = replay_lockstep(bus, [rec], log=log)
    finally:
        target.stop()
        log.stop()
    assert result.delivery.fault is None and result.samples_done == len(rec)
    soc = result.soc[:, 0]
    for k in starts:
        assert soc[k - 1] < 0.2 and soc[k] > 0.9, f"sample {k}: {soc[k - 1]} -> {soc[k]}"
    tol = 1e-6 if target_name == "host" else 1e-4
    direct = SocEstimator(bundled_params()).run(as_carried(rec)).soc
    assert np.max(np.abs(soc - direct)) <= tol
    (logged,) = read_log(tmp_path / "run.blf")
    rebuilt = SocEstimator(bundled_params()).run(logged.cells[0]).soc
    assert np.max(np.abs(rebuilt - logged.logged_soc[:, 0])) <= tol


@pytest.mark.parametrize("target_name", ["host", "reference"])
def test_a_gap_within_dt_max_is_integrated_as_eval_does(rec, target_name):
    """A 10-minute gap (a logger that stopped), longer than dt_s carries at
    1 ms but within the filter's dt_max_s: sent in whole seconds, the target
    integrates it as eval of the recording does, no restart."""
    from dataclasses import replace

    part = rec.slice(0, 400)
    k = 200
    gapped = replace(part, time_s=part.time_s + np.where(np.arange(len(part)) >= k, 600.0, 0.0))
    target = make_target(target_name, bundled_params())
    bus = target.start()
    try:
        result = replay_lockstep(bus, [gapped])
    finally:
        target.stop()
    assert result.delivery.fault is None and not result.delivery.sent_invalid
    assert not np.any(result.flags[:, 0] & cc.FLAG_DT_INVALID)
    direct = SocEstimator(bundled_params()).run(gapped)
    assert not np.any(direct.flags & cc.FLAG_DT_INVALID)
    assert np.max(np.abs(result.soc[:, 0] - direct.soc)) <= (1e-4 if target_name == "host" else 2e-4)
    carried = as_carried(gapped)
    assert carried.dt_s[k] == 600.0  # 600.1 s, in whole seconds


def test_a_replay_reports_its_progress(rec):
    from bmsfil_hil.replay import PROGRESS_EVERY, replay_realtime

    for run in (lambda bus, seen: replay_lockstep(bus, [rec], progress=seen.append),
                lambda bus, seen: replay_realtime(bus, [rec], speed=1000.0, progress=seen.append)):
        target = make_target("host", bundled_params())
        bus = target.start()
        seen: list[int] = []
        try:
            run(bus, seen)
        finally:
            target.stop()
        assert seen == list(range(0, SLICE, PROGRESS_EVERY))


def test_silent_target_ends_the_run_with_a_fault_and_keeps_what_arrived(rec):
    channel = "bmsfil-test-silent"
    harness = can.Bus(interface="virtual", channel=channel)
    device = can.Bus(interface="virtual", channel=channel)
    answered = threading.Event()

    def answer_first_ten():
        for _ in range(20):  # ten samples: a MeasPack and a MeasCell each
            msg = device.recv(timeout=2.0)
            if msg is not None and msg.arbitration_id == cc.FrameId.MEAS_CELL:
                cell = cc.decode(msg)
                device.send(cc.encode_est_cell(cell.sequence, 0, 0.5, 0.01))
        answered.set()

    thread = threading.Thread(target=answer_first_ten, daemon=True)
    thread.start()
    try:
        result = replay_lockstep(harness, [rec], timeout_s=0.3)
    finally:
        thread.join(timeout=3)
        harness.shutdown()
        device.shutdown()
    assert result.samples_done == 10
    assert "did not answer sample 10" in result.delivery.fault
    assert np.all(result.soc[:10, 0] == 0.5) and np.all(np.isnan(result.soc[10:, 0]))


def test_garbled_and_stray_frames_are_counted_not_fatal(rec):
    channel = "bmsfil-test-garbled"
    harness = can.Bus(interface="virtual", channel=channel)
    device = can.Bus(interface="virtual", channel=channel)

    def noisy_answers():
        while True:
            msg = device.recv(timeout=1.0)
            if msg is None:
                return
            if msg.arbitration_id == cc.FrameId.MEAS_CELL:
                cell = cc.decode(msg)
                device.send(can.Message(arbitration_id=cc.FrameId.EST_CELL, data=b"\x01\x02", is_extended_id=False))
                device.send(cc.encode_est_cell((cell.sequence + 7) % cc.SEQUENCE_MODULUS, 0, 0.4, 0.01))  # stale sequence
                device.send(cc.encode_est_cell(cell.sequence, 0, 0.5, 0.01))
                device.send(cc.encode_est_cell(cell.sequence, 0, 0.5, 0.01))  # duplicate

    thread = threading.Thread(target=noisy_answers, daemon=True)
    thread.start()
    try:
        result = replay_lockstep(harness, [rec.slice(0, 50)], timeout_s=0.5)
    finally:
        harness.shutdown()
        thread.join(timeout=3)
        device.shutdown()
    d = result.delivery
    assert d.fault is None and result.samples_done == 50
    assert d.undecodable >= 50 and d.unexpected >= 50
    assert any("truncated" in f for f in d.target_faults)


class _ProfilingFirmware:
    """What the bare-metal firmware sends per sample, on an InlineBus: its
    boot status first; then the EstCell, the TargetStatus that closes the sample and its
    TargetProfile (the core temperature measured from sample 5 on, the
    state of power's sub-step on even samples), and a stray second profile
    after sample 7; none for the samples in `dropped`."""

    def __init__(self, dropped: frozenset[int] = frozenset()) -> None:
        self.counter = 0
        self.dropped = dropped

    def answer(self, msg: can.Message) -> list[can.Message]:
        frame = cc.decode(msg)
        if isinstance(frame, cc.MeasPack) and self.counter == 0:
            self.counter += 1
            return [cc.encode_target_status(0, cc.TargetState.IDLE)]  # the boot status, as firmware sends it
        if not isinstance(frame, cc.MeasCell):
            return []
        seq = frame.sequence
        health = 1100 if seq % 2 == 0 else 500
        core = 970 if seq >= 5 else None
        self.counter += 1
        out = [cc.encode_est_cell(seq, 0, 0.5, 0.01),
               cc.encode_target_status(self.counter, cc.TargetState.RUNNING, seq, instructions_per_cell_step=(
                   1400 + 300 + health + (core or 0))),
               cc.encode_target_profile(1400, 300, health, core)]
        if seq in self.dropped:
            out.pop()
        return out + ([cc.encode_target_profile(1, 1, 1, 1)] if seq == 7 else [])


def test_target_profile_is_kept_per_sample(rec, tmp_path: Path):
    path = tmp_path / "profile.blf"
    log = open_log(path)
    firmware = _ProfilingFirmware()
    bus = InlineBus(firmware.answer)
    try:
        result = replay_lockstep(bus, [rec.slice(0, 20)], timeout_s=0.2, log=log)
    finally:
        bus.shutdown()
        log.stop()
    d = result.delivery
    assert d.fault is None and result.samples_done == 20
    assert len(d.profiles) == 20, "one profile per sample, the last one's too"
    assert d.unexpected == 1, "the stray second profile of sample 7"
    by_part = d.summary()["instructions_per_cell_step_by_part"]
    assert by_part["soc_filter"] == {"mean": 1400.0, "p50": 1400.0, "p99": 1400.0, "max": 1400, "samples": 20}
    assert by_part["health_and_power"]["mean"] == 800.0 and by_part["health_and_power"]["max"] == 1100
    assert by_part["core_temp"]["samples"] == 15, "not measured on samples 0-4"
    total = d.summary()["instructions_per_cell_step"]["mean"]
    assert sum(x["mean"] * x["samples"] for x in by_part.values()) / 20 == pytest.approx(total)
    # The log readers skip it.
    (logged,) = read_log(path)
    assert logged.undecodable == 0 and len(logged.cells[0]) == 20
    assert main(["hil", "score", str(path)]) == 0


@pytest.mark.parametrize("samples, dropped, kept, missing", [(1, frozenset(), 1, 0),
                                                          (20, frozenset({3, 19}), 18, 2)])
def test_target_profiles_of_one_sample_and_missing_ones(rec, samples, dropped, kept, missing):
    """A run of one sample still takes the profile behind its status; a
    sample closed without its profile is counted."""
    bus = InlineBus(_ProfilingFirmware(dropped).answer)
    try:
        result = replay_lockstep(bus, [rec.slice(0, samples)], timeout_s=0.2)
    finally:
        bus.shutdown()
    d = result.delivery
    assert len(d.profiles) == kept
    assert d.summary()["profiles_missing"] == missing


def test_target_without_profiles_has_none_by_part(rec):
    target = make_target("host", bundled_params())
    bus = target.start()
    try:
        result = replay_lockstep(bus, [rec.slice(0, 10)])
    finally:
        target.stop()
    assert result.delivery.summary()["instructions_per_cell_step_by_part"] is None


@pytest.mark.parametrize("suffix", [".blf", ".asc", ".log"])
def test_log_holds_the_whole_exchange(tmp_path: Path, rec, suffix):
    path = tmp_path / f"run{suffix}"
    log = open_log(path)
    target = make_target("host", bundled_params())
    bus = target.start()
    try:
        replay_lockstep(bus, [rec.slice(0, 100)], log=log)
    finally:
        target.stop()
        log.stop()
    messages = list(can.LogReader(str(path)))
    frames = [cc.decode(m) for m in messages]
    assert sum(isinstance(f, cc.MeasPack) for f in frames) == 100
    assert sum(isinstance(f, cc.EstCell) for f in frames) == 100
    times = np.array([m.timestamp for m in messages])
    assert np.all(np.diff(times) >= 0), "a log's times never go back"


def test_hil_run_command(tmp_path: Path, rec, capsys):
    src = rec.slice(0, 500).save(tmp_path / "r.npz")
    code = main(["hil", "run", str(src), "--target", "host", "--out-dir", str(tmp_path / "o"),
                 "--json", str(tmp_path / "h.json"), "--log", str(tmp_path / "x.blf"), "--no-plot"])
    assert code == 0
    assert (tmp_path / "o" / f"{rec.meta.name}.csv").exists()
    out = capsys.readouterr().out
    assert "HIL lock-step replay" in out and "warning" not in out  # the bundled recording states its start


def test_hil_run_says_when_the_reference_start_is_not_stated(tmp_path: Path, rec, capsys):
    from dataclasses import replace

    unstated = replace(rec.slice(0, 300), meta=replace(rec.meta, reference_initial_soc=None))
    src = unstated.save(tmp_path / "r.npz")
    assert main(["hil", "run", str(src), "--target", "host", "--out-dir", str(tmp_path / "o"), "--no-plot",
                 "--json", str(tmp_path / "h.json")]) == 0
    out = capsys.readouterr().out
    assert "warning" in out and "reference_initial_soc=SOC" in out
    (entry,) = json.loads((tmp_path / "h.json").read_text())["recordings"]
    assert "does not state" in entry["cells"][0]["warnings"][0]


def test_hil_run_without_a_reference_keeps_the_estimates(tmp_path: Path, rec, capsys):
    """A recording with no reference SOC (no Ah counter: a field log, a
    NASA life) is replayed, not scored: its estimates are still written."""
    from dataclasses import replace

    bare = replace(rec.slice(0, 200), ah=None)
    src = bare.save(tmp_path / "bare.npz")
    js = tmp_path / "h.json"
    assert main(["hil", "run", str(src), "--target", "host", "--out-dir", str(tmp_path / "o"), "--json", str(js),
                 "--no-plot"]) == 0
    rows = (tmp_path / "o" / f"{bare.meta.name}.csv").read_text().splitlines()
    assert rows[0] == "time_s,soc,soc_sigma" and len(rows) == 201
    direct = SocEstimator(bundled_params()).run(as_carried(bare)).soc
    assert abs(float(rows[-1].split(",")[1]) - direct[-1]) <= 1e-6
    import json

    cell = json.loads(js.read_text())["recordings"][0]["cells"][0]
    assert "no reference SOC" in cell["not_scored"]
    capsys.readouterr()


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("path", lg_drive_cycles(), ids=lambda p: p.name)
def test_every_drive_cycle_full_length_through_host(path):
    """The issue's bar, full length: lock-step through `host` gives the
    estimates of `bmsfil eval` on the recording as the bus carries it."""
    full = import_file(path)
    target = make_target("host", bundled_params())
    bus = target.start()
    try:
        result = replay_lockstep(bus, [full], timeout_s=5.0)
    finally:
        target.stop()
    assert result.delivery.fault is None and result.samples_done == len(full)
    direct = SocEstimator(bundled_params()).run(as_carried(full)).soc
    assert np.max(np.abs(result.soc[:, 0] - direct)) <= 1e-6


def test_a_log_or_an_unmapped_table_given_as_recording_says_what_to_do(tmp_path: Path, rec, capsys):
    log = tmp_path / "run.blf"
    assert main(["hil", "run", str(rec.slice(0, 50).save(tmp_path / "r.npz")), "--target", "host", "--log", str(log),
                 "--out-dir", str(tmp_path / "o"), "--no-plot"]) == 0
    capsys.readouterr()
    assert main(["hil", "run", str(log), "--target", "host"]) == 2
    assert f"--from-log {log}" in capsys.readouterr().err
    table = tmp_path / "tester.csv"
    table.write_text("t,I,U\n0,0,4.1\n1,0,4.1\n")
    assert main(["hil", "run", str(table), "--target", "host"]) == 2
    assert "import this one first" in capsys.readouterr().err


@pytest.mark.parametrize("target_name", ["host", "reference"])
def test_target_starts_at_the_first_plausible_voltage(target_name):
    """A 0.0 V first sample is answered without an estimate; the filter
    starts from the next one's OCV, as eval does."""
    from dataclasses import replace

    good = bundled_recording().slice(0, 300)
    v = good.voltage_V.copy()
    v[0] = 0.0
    bad = replace(good, voltage_V=v)
    target = make_target(target_name, bundled_params())
    bus = target.start()
    try:
        result = replay_lockstep(bus, [bad])
    finally:
        target.stop()
    assert np.isnan(result.soc[0, 0])
    direct = SocEstimator(bundled_params()).run(as_carried(bad)).soc
    tol = 1e-6 if target_name == "host" else 1e-4
    assert np.max(np.abs(result.soc[1:, 0] - direct[1:])) <= tol


def test_hil_run_warns_of_a_current_positive_on_discharge(tmp_path: Path, rec, capsys):
    """The check import and eval make: a discharge-positive file replayed as it is."""
    from dataclasses import replace

    flipped = replace(rec, current_A=-rec.current_A)
    src = flipped.save(tmp_path / "f.npz")
    js = tmp_path / "h.json"
    assert main(["hil", "run", str(src), "--target", "host", "--out-dir", str(tmp_path / "o"), "--no-plot",
                 "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert out.count("looks positive on discharge") == 1 and "--current-sign discharge-positive" in out
    (cell,) = json.loads(js.read_text())["recordings"][0]["cells"]
    assert "looks positive on discharge" in cell["warnings"][0]


def test_hil_run_warns_of_a_parameter_set_of_another_cell_once_a_pack(tmp_path: Path, rec, capsys):
    """As eval does: a set of another cell runs, with a warning, once for a
    synthetic pack of such cells, not once a cell."""
    src = rec.slice(0, 300).save(tmp_path / "r.npz")
    js = tmp_path / "h.json"
    assert main(["hil", "run", str(src), "--target", "host", "--params", "nasa-pcoe-18650", "--cells", "3",
                 "--out-dir", str(tmp_path / "o"), "--no-plot", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert out.count("is of a 2 Ah cell") == 1, out
    cells = json.loads(js.read_text())["recordings"][0]["cells"]
    assert ["is of a 2 Ah cell" in " ".join(c.get("warnings", [])) for c in cells] == [True, False, False]


@pytest.mark.parametrize("extra, said", [
    (["--warm-reset-at", "299"], "no sample would follow it"),
    (["--warm-reset-at", "100", "--power-cycle-at", "100"], "both at sample 100"),
])
def test_hil_run_refuses_a_reset_that_would_not_happen(tmp_path: Path, rec, capsys, extra, said):
    """A reset after the last sample (or two at one sample) never came, and
    the run passed as if it had been tested: refused before any target starts."""
    src = rec.slice(0, 300).save(tmp_path / "r.npz")
    assert main(["hil", "run", str(src), "--target", "qemu", "--out-dir", str(tmp_path / "o"), "--no-plot",
                 *extra]) == 2
    assert said in capsys.readouterr().out


class _RefusingBus(can.BusABC):
    """A harness-side bus whose adapter stays bus-off: every send raises, as python-can's do."""

    def __init__(self) -> None:
        self.tries = 0
        super().__init__(channel="refusing")

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        self.tries += 1
        raise can.CanOperationError("Transmit buffer full")

    def _recv_internal(self, timeout: float | None) -> tuple[can.Message | None, bool]:
        return None, False


def test_a_bus_that_stays_refusing_ends_the_run_naming_the_sample_and_how_long(rec, monkeypatch):
    import bmsfil_hil.replay as replay_module

    monkeypatch.setattr(replay_module, "BUS_RECOVER_S", 0.1)
    bus = _RefusingBus()
    result = replay_lockstep(bus, [rec], timeout_s=0.3)
    bus.shutdown()
    assert result.samples_done == 0 and bus.tries > 2
    assert result.delivery.fault.startswith("bus error sending sample 0 (sequence 0), refused for 0.1")
    assert "Transmit buffer full" in result.delivery.fault and result.delivery.bus_outages == []


def test_a_bus_off_that_recovers_loses_nothing_and_is_reported(rec):
    """The host target behind an adapter bus-off for 0.2 s from the 100th sample: every sample answered,
    estimates as without the outage, the outage kept with its sample and how long it lasted."""
    from bmsfil_hil.faults import FaultyBus

    cells = rec.slice(0, 300)
    clean_target = make_target("host", bundled_params())
    try:
        clean = replay_lockstep(clean_target.start(), [cells], timeout_s=2.0)
    finally:
        clean_target.stop()
    target = make_target("host", bundled_params())
    sent = [0]

    def active() -> bool:
        sent[0] += 1
        return sent[0] > 200  # two frames per sample: from sample 100 on

    try:
        faulty = FaultyBus(target.start(), active, bus_off_s=0.2)
        result = replay_lockstep(faulty, [cells], timeout_s=2.0)
        faulty.shutdown()
    finally:
        target.stop()
    assert result.delivery.fault is None and result.samples_done == 300
    np.testing.assert_array_equal(result.soc, clean.soc)
    (outage,) = result.delivery.bus_outages
    assert outage["sample"] == 100 and 0.2 <= outage["retried_s"] < 1.0 and "bus-off" in outage["error"]
    summary = result.delivery.summary()
    assert summary["bus_outages"] == 1 and summary["bus_outage_first"] == outage


def test_a_bus_off_in_real_time_is_not_the_targets_latency(rec):
    """Paced replay through an adapter bus-off for 0.3 s: the outage shows as the harness's send lag and
    in bus_outages, not as the target's latency; nothing lost."""
    from bmsfil_hil.faults import FaultyBus
    from bmsfil_hil.replay import replay_realtime

    cells = rec.slice(0, 200)
    target = make_target("host", bundled_params())
    sent = [0]

    def active() -> bool:
        sent[0] += 1
        return sent[0] > 100

    try:
        faulty = FaultyBus(target.start(), active, bus_off_s=0.3)
        result, timing = replay_realtime(faulty, [cells], speed=20.0)
        faulty.shutdown()
    finally:
        target.stop()
    assert result.delivery.fault is None and timing.lost == 0 and np.isfinite(result.soc).all()
    (outage,) = result.delivery.bus_outages
    assert outage["sample"] == 50 and outage["retried_s"] >= 0.3
    assert max(timing.latency_s) < 0.15, max(timing.latency_s)
    assert max(timing.send_lag_s) >= 0.25


def test_a_command_the_bus_keeps_refusing_ends_the_run_naming_it(rec, monkeypatch):
    import bmsfil_hil.replay as replay_module

    monkeypatch.setattr(replay_module, "BUS_RECOVER_S", 0.1)
    bus = _RefusingBus()
    result = replay_lockstep(bus, [rec], timeout_s=0.2, commands={-1: cc.HostCommandCode.WARM_RESET})
    bus.shutdown()
    assert result.samples_done == 0 and bus.tries > 2
    assert result.delivery.fault.startswith("bus error sending warm_reset before the first sample, refused for 0.1")


class _ResettingTarget:
    """A target on an InlineBus that answers every sample and comes back
    from each HostCommand as told: `starts` maps a command to the start and
    fault its first TargetStatus reports."""

    def __init__(self, starts: dict[cc.HostCommandCode, tuple[cc.TargetStart, cc.FaultCode]]) -> None:
        self.starts = starts
        self.counter = 0

    def answer(self, msg: can.Message) -> list[can.Message]:
        frame = cc.decode(msg)
        if isinstance(frame, cc.HostCommand):
            start, fault = self.starts[frame.command]
            self.counter = 0
            return [cc.encode_target_status(0, cc.TargetState.IDLE, fault_code=fault, start=start)]
        if not isinstance(frame, cc.MeasCell):
            return []
        self.counter += 1
        return [cc.encode_est_cell(frame.sequence, 0, 0.5, 0.01),
                cc.encode_target_status(self.counter, cc.TargetState.RUNNING, frame.sequence)]


_AS_CONTRACTED = {cc.HostCommandCode.WARM_RESET: (cc.TargetStart.RESTORED, cc.FaultCode.NONE),
                  cc.HostCommandCode.POWER_CYCLE: (cc.TargetStart.SAVED_STATE_BAD, cc.FaultCode.PERSIST_ERROR)}


@pytest.mark.parametrize("starts, faults", [
    (_AS_CONTRACTED, []),
    ({**_AS_CONTRACTED, cc.HostCommandCode.POWER_CYCLE: (cc.TargetStart.RESTORED, cc.FaultCode.NONE)},
     ["after sample 12: power_cycle: the target started restored, expected saved_state_bad",
      "after sample 12: power_cycle: the target did not report persist_error for the saved state it lost"]),
    ({**_AS_CONTRACTED, cc.HostCommandCode.WARM_RESET: (cc.TargetStart.SAVED_STATE_BAD, cc.FaultCode.PERSIST_ERROR)},
     ["sample 5: target reports PERSIST_ERROR",
      "after sample 5: warm_reset: the target started saved_state_bad, expected restored"]),
])
def test_a_reset_is_checked_against_how_the_contract_says_the_target_comes_back(rec, starts, faults):
    """A power cycle's persist_error is the outcome asked for, not a fault;
    a target that restores a state a power loss scrambled, or loses its state
    in a warm reset, is one."""
    bus = InlineBus(_ResettingTarget(starts).answer)
    try:
        result = replay_lockstep(bus, [rec.slice(0, 20)], timeout_s=0.2,
                                 commands={5: cc.HostCommandCode.WARM_RESET, 12: cc.HostCommandCode.POWER_CYCLE})
    finally:
        bus.shutdown()
    d = result.delivery
    assert d.fault is None and result.samples_done == 20
    assert d.target_starts == [f"after sample 5: warm_reset -> {starts[cc.HostCommandCode.WARM_RESET][0].name.lower()}",
                               f"after sample 12: power_cycle -> {starts[cc.HostCommandCode.POWER_CYCLE][0].name.lower()}"]
    assert d.target_faults == faults


def test_a_log_keeps_the_runs_resets_and_judges_how_the_target_came_back(rec, tmp_path: Path, capsys):
    """The log reader takes the HostCommands the harness logged (what `hil
    score` and `--from-log` need to compare with a target that had to start
    afresh) and judges the restarts as the replay does."""
    wrong = {**_AS_CONTRACTED, cc.HostCommandCode.POWER_CYCLE: (cc.TargetStart.RESTORED, cc.FaultCode.NONE)}
    runs = []
    for starts in (_AS_CONTRACTED, wrong):
        path = tmp_path / f"run{len(runs)}.blf"
        log = open_log(path)
        bus = InlineBus(_ResettingTarget(starts).answer)
        try:
            replay_lockstep(bus, [rec.slice(0, 20)], timeout_s=0.2, log=log,
                            commands={5: cc.HostCommandCode.WARM_RESET, 12: cc.HostCommandCode.POWER_CYCLE})
        finally:
            bus.shutdown()
            log.stop()
        (run,) = read_log(path)
        runs.append(run)
    good, bad = runs
    assert good.commands == ((5, cc.HostCommandCode.WARM_RESET), (12, cc.HostCommandCode.POWER_CYCLE))
    assert good.power_cycles() == [12] and len(good.cells[0]) == 20
    assert not any("fault" in note for note in good.sequence_notes), "the power cycle's persist_error is asked for"
    (note,) = [note for note in bad.sequence_notes if "fault" in note]
    assert "after sample 12: power_cycle: the target started restored, expected saved_state_bad" in note
    # Replayed to the desktop target, which has no reset: said, and compared with the log up to the power cycle.
    assert main(["hil", "run", "--from-log", str(tmp_path / "run0.blf"), "--no-plot", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ("warning: the logged run was reset (warm_reset after sample 5, power_cycle after sample 12); target host "
            "runs on the desktop and has no reset") in out
    assert "over 13 estimates" in out
