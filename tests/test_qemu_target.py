"""The bare-metal firmware on QEMU's mps2-an386 (Cortex-M4F) in the loop,
over SLCAN on its UART: it agrees with the host target, counts its own
instructions, keeps its state across a warm reset and starts fresh after a
simulated power loss. Short slices of real recordings; the full-length run
over every drive cycle is `bmsfil hil run --target qemu ...` (docs/firmware.md)."""

from __future__ import annotations

import numpy as np
import pytest

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.importers import import_file
from bmsfil.params import bundled_params
from bmsfil_hil.expected import expected_soc
from bmsfil_hil.qemu import QemuTarget
from bmsfil_hil.replay import as_carried, replay_lockstep

from firmware_tools import needs_qemu
from shared_data import lg_drive_cycles, nasa_discharges, needs_data, needs_nasa

pytestmark = [needs_qemu, pytest.mark.qemu]
PARAMS = bundled_params()


def _run(rec, cells: int = 1, timeout_s: float = 10.0, **kw):
    target = QemuTarget(PARAMS)
    bus = target.start()
    try:
        return replay_lockstep(bus, [rec] * cells, timeout_s=timeout_s, **kw), target
    finally:
        target.stop()
        assert not target.alive(), "QEMU still running after stop()"


def _host(rec) -> np.ndarray:
    return SocEstimator(PARAMS).run(as_carried(rec)).soc


def test_lockstep_agrees_with_host_and_counts_instructions():
    rec = bundled_recording().slice(0, 1500)
    result, _ = _run(rec)
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert d.undecodable == 0 and d.unexpected == 0 and not d.target_faults
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= 1e-4
    # Every sample's TargetStatus reports the instructions of its cell step,
    # counted on the emulated Cortex-M4F: a real, stable number.
    ipcs = np.array(d.instructions_per_cell_step)
    assert len(ipcs) == len(rec)
    assert 300 < np.median(ipcs) < 20000
    # Steps in which R0 learns from a current step cost a few hundred more;
    # every second sample (even sequence) also runs a sub-step of the
    # state-of-power search, about 600 instructions (docs/power.md). The
    # core-temperature filter runs on every sample (about 970 instructions,
    # docs/thermal.md): it raises both halves alike, not the spread.
    plain, searching = ipcs[1::2], ipcs[0::2]
    assert plain.max() - plain.min() < 0.3 * np.median(plain)
    assert 300 < np.median(searching) - np.median(plain) < 1200
    assert searching.max() < 2 * np.median(plain)
    # Each sample's TargetProfile times the parts of the same steps: every
    # part ran on every sample (the recording has temperatures from its
    # first), and the parts add up to the whole within the rounding of
    # each (a few instructions).
    assert len(d.profiles) == len(rec)
    parts = np.array([[p.soc_filter, p.monitor, p.health_and_power, p.core_temp] for p in d.profiles], dtype=float)
    assert np.all(parts > 0)
    assert np.max(np.abs(parts.sum(axis=1) - ipcs)) <= 4
    # Only the capacity, R0 and state-of-power part moves with the search's
    # sub-step on even samples; the SOC filter's own step is steady.
    filt, health = parts[:, 0], parts[:, 2]
    assert filt.max() - filt.min() < 0.05 * np.median(filt)
    assert 300 < np.median(health[0::2]) - np.median(health[1::2]) < 1200


@needs_data
@pytest.mark.parametrize("path", lg_drive_cycles()[::4], ids=lambda p: p.name)
def test_drive_cycle_slices_agree_with_host(path):
    rec = import_file(path)
    start = len(rec) // 3
    rec = rec.slice(start, start + 600)
    result, _ = _run(rec)
    assert result.delivery.fault is None
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= 1e-4


@needs_nasa
def test_a_gap_the_bus_cannot_carry_restarts_the_firmware():
    """Three NASA discharges, 3 h apart: longer than MeasPack's dt_s carries,
    so sent as no valid interval; the firmware restarts each discharge from
    the rested full cell's voltage, as the host does."""
    rec, starts = nasa_discharges(3)
    result, _ = _run(rec)
    assert result.delivery.fault is None and result.samples_done == len(rec)
    soc = result.soc[:, 0]
    for k in starts:
        assert soc[k - 1] < 0.2 and soc[k] > 0.9, f"sample {k}: {soc[k - 1]} -> {soc[k]}"
    assert np.max(np.abs(soc - _host(rec))) <= 1e-4


def test_a_gap_within_dt_max_is_integrated_as_the_host_does():
    """A 10-minute gap, carried in whole seconds: the firmware integrates it
    (no restart) as the C core does."""
    from dataclasses import replace

    part = bundled_recording().slice(0, 300)
    gapped = replace(part, time_s=part.time_s + np.where(np.arange(len(part)) >= 150, 600.0, 0.0))
    result, _ = _run(gapped)
    assert result.delivery.fault is None
    assert not np.any(result.flags[:, 0] & cc.FLAG_DT_INVALID)
    assert np.max(np.abs(result.soc[:, 0] - _host(gapped))) <= 1e-4


def test_a_first_voltage_the_cell_cannot_have_is_no_start():
    """A 0.0 V first reading: the firmware answers it without an estimate
    (bf_soc_ekf_init_ocv says BF_E_RANGE) and starts from the next reading's
    OCV, as the host does; it used to start at SOC 0."""
    from dataclasses import replace

    part = bundled_recording().slice(0, 300)
    bad = replace(part, voltage_V=np.where(np.arange(len(part)) == 0, 0.0, part.voltage_V))
    result, _ = _run(bad)
    assert result.delivery.fault is None and result.samples_done == len(bad)
    assert np.isnan(result.soc[0, 0]) and result.flags[0, 0] & cc.FLAG_VOLTAGE_INVALID
    assert np.max(np.abs(result.soc[1:, 0] - _host(bad)[1:])) <= 1e-4


def test_warm_reset_restores_and_power_cycle_starts_fresh():
    rec = bundled_recording().slice(0, 500)
    result, _ = _run(rec, commands={150: cc.HostCommandCode.WARM_RESET, 350: cc.HostCommandCode.POWER_CYCLE})
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert d.target_starts == ["after sample 150: warm_reset -> restored",
                               "after sample 350: power_cycle -> saved_state_bad"]
    flags = result.flags[:, 0]
    restored = np.flatnonzero(flags & cc.FLAG_RESTORED)
    assert restored.tolist() == [151], "only the first estimate after the warm reset says restored"
    assert d.target_faults == [], "the power cycle's persist_error is the outcome asked for"
    host = _host(rec)
    # The warm reset loses nothing: the estimates go on as if it had not happened.
    assert np.max(np.abs(result.soc[:351, 0] - host[:351])) <= 1e-4
    # After the simulated power loss the cell starts again from its next
    # voltage, as a fresh estimator would: under load there (-2.9 A), as an
    # unknown SOC (bf_soc_ekf_start), stepped with the interval the bus
    # carried for it (expected_soc; a recording cut there would start with 0,
    # and the start's large variance makes the first correction weigh it:
    # 2.4e-3 apart).
    assert np.max(np.abs(result.soc[:, 0] - expected_soc(as_carried(rec), PARAMS, [350]))) <= 1e-4


def test_hil_run_with_resets_passes_when_the_target_comes_back_as_it_must(tmp_path, capsys):
    """From the command line: a commanded power cycle is scored against the
    C core started afresh where the target had to start afresh, and its
    persist_error is not a fault (both failed every such run)."""
    import json
    import xml.etree.ElementTree as ET

    from bmsfil.cli import main

    js, xml, log = tmp_path / "run.json", tmp_path / "run.xml", tmp_path / "run.blf"
    assert main(["hil", "run", "--target", "qemu", "--samples", "400", "--warm-reset-at", "100",
                 "--power-cycle-at", "250", "--no-plot", "--out-dir", str(tmp_path), "--json", str(js),
                 "--junit", str(xml), "--log", str(log)]) == 0
    (entry,) = json.loads(js.read_text())["recordings"]
    assert entry["target_starts"] == ["after sample 100: warm_reset -> restored",
                                      "after sample 250: power_cycle -> saved_state_bad"]
    assert entry["delivery"]["target_faults"] == []
    assert entry["cells"][0]["max_abs_soc_difference_vs_eval"] <= 1e-4
    assert ET.parse(xml).getroot().get("failures") == "0"
    # Its log scored: the power cycle read from the log (was: 9e-2 "from the C core" and a fault warning).
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "power-cycled after sample 250" in out and "PERSIST_ERROR" not in out
    (doc,) = json.loads(js.read_text())["recordings"]
    assert doc["power_cycled_after"] == [250] and doc["cells_scored"][0]["max_abs_soc_difference_vs_core"] <= 1e-4
    # Replayed from the log, the run's resets are sent again and its estimates come back.
    assert main(["hil", "run", "--target", "qemu", "--from-log", str(log), "--json", str(js), "--no-plot",
                 "--out-dir", str(tmp_path / "f")]) == 0
    assert "resets, sent again: warm_reset after sample 100, power_cycle after sample 250" in capsys.readouterr().out
    (entry,) = json.loads(js.read_text())["recordings"]
    assert entry["max_abs_soc_difference_vs_log"] <= 1e-6 and entry["delivery"]["target_faults"] == []


def test_stop_ends_qemu_after_a_failed_run():
    target = QemuTarget(PARAMS)
    bus = target.start()
    try:
        with pytest.raises(ValueError):
            replay_lockstep(bus, [])
    finally:
        target.stop()
    assert not target.alive()
    target.stop()  # twice is harmless


def test_target_dying_mid_run_is_a_reported_fault():
    """QEMU gone (crash, kill) ends the replay with a fault naming the
    sample, keeps what arrived before, and stop() still cleans up."""
    rec = bundled_recording().slice(0, 300)
    target = QemuTarget(PARAMS)
    bus = target.start()
    try:
        first = replay_lockstep(bus, [rec.slice(0, 50)], timeout_s=10.0)
        assert first.delivery.fault is None
        target._proc.kill()  # noqa: SLF001 - the crash under test
        target._proc.wait(timeout=10)  # noqa: SLF001
        result = replay_lockstep(bus, [rec], timeout_s=2.0)
    finally:
        target.stop()
    assert result.delivery.fault is not None and "sample 0" in result.delivery.fault
    assert result.samples_done == 0
    assert not target.alive()


def _raw_exchange(port, data: bytes, until: bytes, timeout_s: float = 5.0) -> bytes:
    """Write raw bytes on the SLCAN link and read until `until` appears."""
    import time

    port.write(data)
    port.flush()
    got = b""
    deadline = time.monotonic() + timeout_s
    while until not in got and time.monotonic() < deadline:
        got += port.read(max(1, port.in_waiting))
    return got


def test_slcan_link_refuses_bad_lines_and_keeps_working():
    """The firmware's SLCAN parser answers malformed lines with BELL, frames
    of the contract with the wrong length with a frame_error fault, and the
    link carries a replay afterwards as if nothing had happened."""
    rec = bundled_recording().slice(0, 100)
    target = QemuTarget(PARAMS)
    bus = target.start()
    try:
        port = bus.serialPortOrig  # python-can's slcan bus: the pyserial port under it
        for bad in (b"Q\r", b"t1G08\r", b"t1009" + b"00" * 9 + b"\r", b"t10080011\r", b"S9\r", b"x" * 80 + b"\r"):
            assert b"\x07" in _raw_exchange(port, bad, b"\x07"), f"no BELL for {bad!r}"
        assert _raw_exchange(port, b"V\r", b"V1013\r").endswith(b"V1013\r")
        # A MeasPack with 4 data bytes: a well-formed SLCAN line, a broken contract frame.
        reply = _raw_exchange(port, b"t1004" + b"00" * 4 + b"\r", b"z\r")
        assert reply.endswith(b"z\r")
        result = replay_lockstep(bus, [rec], timeout_s=10.0)
    finally:
        target.stop()
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert any("FRAME_ERROR" in f for f in d.target_faults[:1]), d.target_faults
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= 1e-4


def test_board_target_on_a_running_firmware_restarts_it_fresh_per_recording():
    """`--target board` opens any python-can bus to a target that is already
    running (here the firmware in a QEMU started by hand, over plain
    socket://) and restarts it fresh before each recording, so each one is
    scored as the desktop targets score it."""
    import subprocess
    import time

    import can

    from bmsfil_hil.firmware import build
    from bmsfil_hil.qemu import BOARD, _free_port
    from bmsfil_hil.targets import BusOpenError, make_target

    image = build(BOARD)
    port = _free_port()
    qemu = QemuTarget(PARAMS, image=image)
    proc = subprocess.Popen(qemu.command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rec = bundled_recording()
    first, second = rec.slice(0, 200), rec.slice(200, 400)
    try:
        config = {"interface": "slcan", "channel": f"socket://127.0.0.1:{port}", "sleep_after_open": 0}
        results = []
        for part in (first, second):
            target = make_target("board", PARAMS, config)
            for _ in range(200):
                try:
                    bus = target.start()
                    break
                except BusOpenError:
                    time.sleep(0.05)
            try:
                results.append(replay_lockstep(bus, [part], timeout_s=10.0,
                                               commands={-1: cc.HostCommandCode.RESTART_FRESH}))
            finally:
                target.stop()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for part, result in zip((first, second), results):
        assert result.delivery.fault is None, result.delivery.fault
        assert result.delivery.target_starts == ["before the first sample: restart_fresh -> power_on"]
        assert not result.delivery.target_faults
        assert np.max(np.abs(result.soc[:, 0] - _host(part))) <= 1e-4
    with pytest.raises(ValueError, match="--interface and --channel"):
        make_target("board", PARAMS, {"interface": None, "channel": None})
    with pytest.raises(BusOpenError, match="could not open the CAN bus"):
        make_target("board", PARAMS, {"interface": "slcan", "channel": "socket://127.0.0.1:1",
                                      "sleep_after_open": 0}).start()
    assert can  # python-can is what opens every bus here


def test_exported_parameters_compile_into_the_firmware_and_match_the_host(tmp_path):
    """Another parameter set (capacity -10 %, a different filter tuning),
    saved, exported with `bmsfil export --format c`, built into the firmware:
    its estimates are the host's with that set, and not the bundled set's."""
    from dataclasses import replace

    from bmsfil.cli import main
    from bmsfil.params import ParameterSet
    from bmsfil_hil.firmware import build
    from bmsfil_hil.qemu import BOARD

    other = replace(PARAMS, name="LG HG2 aged", cell=replace(PARAMS.cell, capacity_Ah=PARAMS.cell.capacity_Ah * 0.9))
    other = other.with_filter(q_soc_per_s=PARAMS.filter.q_soc_per_s * 4)
    path = other.save(tmp_path / "aged.json")
    c_file = tmp_path / "aged.c"
    assert main(["export", str(path), "--format", "c", "-o", str(c_file)]) == 0
    loaded = ParameterSet.load(path)
    image = build(BOARD, loaded)
    # The same tables (the first line names the source, which differs).
    assert (image.build_dir / "params.c").read_text().split("\n", 1)[1] == c_file.read_text().split("\n", 1)[1]
    rec = bundled_recording().slice(0, 600)
    target = QemuTarget(loaded, image=image)
    bus = target.start()
    try:
        result = replay_lockstep(bus, [rec], timeout_s=10.0)
    finally:
        target.stop()
    soc = result.soc[:, 0]
    assert np.max(np.abs(soc - SocEstimator(loaded).run(as_carried(rec)).soc)) <= 1e-4
    assert np.max(np.abs(soc - _host(rec))) > 3e-4, "the firmware ran the exported set, not the bundled one"


def test_a_pack_of_the_boards_most_cells_is_answered_in_full():
    """A red team's: 24 cells and more stalled for good at a random sample. The
    RX interrupt left a byte in the UART when its ring was full, QEMU sends the
    next only once that one is read, and nothing read it. 256 cells (the board's
    limit) now answer every sample."""
    rec = bundled_recording().slice(0, 12)
    result, _ = _run(rec, cells=256, timeout_s=20.0)
    assert result.delivery.fault is None and result.samples_done == len(rec)
    assert result.delivery.estimates_received == 256 * len(rec)


def test_a_pack_larger_than_the_board_is_named_as_such():
    """257 cells: the target said SEQUENCE_GAP (each MeasCell of the sample it
    refused to open overwrote N_CELLS_UNSUPPORTED). Its first fault now names
    the cause; the cells that follow are still counted as a gap."""
    result, _ = _run(bundled_recording().slice(0, 3), cells=257, timeout_s=3.0)
    faults = result.delivery.target_faults
    assert faults and faults[0].endswith("target reports N_CELLS_UNSUPPORTED"), faults
