"""Capacity, R0 and core temperature over CAN: every target but the float64
reference steps the capacity and R0 estimators after its filter and sends
EstCellHealth each sample. On the host target, the firmware in QEMU and the
MicroPython native module they are the same C (bf_capacity_step, bf_r0_step)
and agree to the bit with the host's `CellHealth`; the pure-MicroPython port
agrees to the frame's resolution. The same three C targets run the
core-temperature filter (bf_thermal_step) when the parameter set has a
thermal model and send the same core temperature to the bit, the
pure-MicroPython port (bmsfil_thermal.py) to the frame's resolution;
without one they send core_temp_valid 0. A
NASA discharge replayed from full to its cut-off teaches the capacity over
CAN."""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.health import CellHealth
from bmsfil.importers import import_cycles
from bmsfil.params import bundled_params, params_arg
from bmsfil.thermal import CoreTempEstimator
from bmsfil_hil.micropython import APP_DIR, micropython_executable
from bmsfil_hil.replay import as_carried, replay_lockstep
from bmsfil_hil.targets import make_target
from firmware_tools import needs_qemu
from shared_data import DATA

PARAMS = bundled_params()
NO_THERMAL = replace(PARAMS, thermal=None)
SAMPLES = 3000  # the first R0 steps come within 10 s of the bundled US06
NASA_B0005 = DATA / "nasa_pcoe" / "B0005_discharge_timeseries.csv"
needs_micropython = pytest.mark.skipif(micropython_executable() is None,
                                       reason="the micropython command (MicroPython's unix port) is not installed")


def _replay(target: str, cells, params=PARAMS, **kw):
    t = make_target(target, params, **kw)
    bus = t.start()
    try:
        return replay_lockstep(bus, cells, timeout_s=10.0)
    finally:
        t.stop()


def _direct(rec, params=PARAMS) -> tuple[np.ndarray, np.ndarray]:
    """CellHealth after SocEstimator on the recording as carried by CAN,
    quantised as EstCellHealth carries it."""
    est = SocEstimator(params)
    health = CellHealth(est)
    est.init_ocv(float(rec.voltage_V[0]), float(rec.temp_C[0]))
    out = []
    for sample in zip(rec.dt_s.tolist(), rec.current_A.tolist(), rec.voltage_V.tolist(), rec.temp_C.tolist()):
        est.step(*sample)
        out.append(health.step(*sample))
    cap, r0 = (np.array(c) for c in zip(*out))
    return np.round(cap * 1000) / 1000, np.minimum(np.round(r0 * 10000), 2047) / 10000


def _direct_core_temp(rec, params=PARAMS) -> np.ndarray:
    """The C thermal filter after the SOC filter (bf_thermal_run) on the
    recording as carried by CAN, started at its first sample (the ambient
    its first temperature reading), quantised as EstCellHealth carries it:
    0.5 °C steps from -40 °C, saturated at both ends."""
    core = CoreTempEstimator(params).run(rec).core_C
    raw = np.clip(np.round((np.float64(core.astype(np.float32)) + 40.0) / 0.5), 0, 255)
    return raw * 0.5 - 40.0


@given(seq=st.integers(0, 70000), cell=st.integers(0, 1023), cap=st.floats(0.0, 70.0) | st.just(math.nan),
       r0=st.floats(0.0, 0.3) | st.just(math.nan))
def test_micropython_encoder_agrees_with_the_contract(seq, cell, cap, r0) -> None:
    sys.path.insert(0, str(APP_DIR))
    try:
        import bmsfil_can as bc
    finally:
        sys.path.remove(str(APP_DIR))
    msg = cc.database().get_message_by_name("EstCellHealth")
    got = msg.decode(bc.encode_est_cell_health(seq, cell, cap, r0), decode_choices=False)
    assert (got["sequence"], got["cell_index"]) == (seq % cc.SEQUENCE_MODULUS, cell)
    assert got["capacity_valid"] == int(not math.isnan(cap)) and got["r0_valid"] == int(not math.isnan(r0))
    if not math.isnan(cap):
        assert abs(got["capacity_Ah"] - min(cap, 65.535)) <= 0.0005 + 1e-9
    if not math.isnan(r0):
        assert abs(got["r0_ohm"] - min(r0, 0.2047)) <= 0.00005 + 1e-9


@given(core=st.floats(-60.0, 100.0, width=32) | st.integers(-240, 440).map(lambda k: k / 4))
def test_micropython_encodes_the_core_temperature_as_the_host(core) -> None:
    """Ties (quarter degrees) included: both round half to even, saturating at -40 and 87.5 °C."""
    sys.path.insert(0, str(APP_DIR))
    try:
        import bmsfil_can as bc
    finally:
        sys.path.remove(str(APP_DIR))
    host = cc.encode_est_cell_health(3, 2, core_temp_C=cc.core_temp_on_frame(core)).data
    assert bc.encode_est_cell_health(3, 2, math.nan, math.nan, core) == bytes(host)


def test_host_target_sends_the_c_core_capacity_and_r0() -> None:
    rec = as_carried(bundled_recording().slice(0, SAMPLES))
    h = _replay("host", [rec]).health
    cap, r0 = _direct(rec)
    assert h.received.all()
    assert np.array_equal(np.isnan(h.r0_ohm[:, 0]), np.isnan(r0)) and np.isfinite(r0[-1])
    assert np.allclose(h.r0_ohm[:, 0], r0, atol=1e-9, equal_nan=True)
    assert np.isnan(h.capacity_Ah).all()  # a drive-cycle slice closes no pair of anchors
    assert 0.005 < r0[-1] < 0.05


def test_host_target_sends_the_c_core_core_temperature() -> None:
    assert PARAMS.thermal is not None, "the bundled set carries a thermal model (bmsfil.lg_hg2_params)"
    rec = as_carried(bundled_recording().slice(0, SAMPLES))
    assert np.isfinite(rec.temp_C[0]) and np.isfinite(rec.voltage_V[0])
    h = _replay("host", [rec]).health
    assert h.received.all() and np.isfinite(h.core_temp_C).all()
    assert np.array_equal(h.core_temp_C[:, 0], _direct_core_temp(rec))
    # A US06 heats the core above its surface reading (the logger's 0.01 °C
    # steps; the frame's 0.5 °C steps on top).
    assert np.max(h.core_temp_C[:, 0] - rec.temp_C) > 0.5
    # What `bmsfil hil run --json` reports (health_over_can).
    summary = h.summary()[0]
    assert summary["core_temp_C"] == h.core_temp_C[-1, 0] and summary["core_temp_valid_from_sample"] == 0
    assert summary["core_temp_max_C"] == np.max(h.core_temp_C)


def test_a_set_without_thermal_model_sends_no_core_temperature() -> None:
    rec = as_carried(bundled_recording().slice(0, 200))
    h = _replay("host", [rec], params=NO_THERMAL).health
    assert h.received.all() and np.isnan(h.core_temp_C).all()
    assert np.isfinite(h.r0_ohm).any()  # the rest of EstCellHealth is still sent


@needs_qemu
@pytest.mark.qemu
def test_firmware_sends_what_the_host_target_sends() -> None:
    rec = as_carried(bundled_recording().slice(0, SAMPLES))
    fw, host = _replay("qemu", [rec]).health, _replay("host", [rec]).health
    assert fw.received.all()
    assert np.array_equal(fw.r0_ohm, host.r0_ohm, equal_nan=True)
    assert np.array_equal(fw.capacity_Ah, host.capacity_Ah, equal_nan=True)
    assert np.isfinite(host.core_temp_C).all()
    assert np.array_equal(fw.core_temp_C, host.core_temp_C)


@needs_qemu
@pytest.mark.qemu
def test_firmware_without_thermal_model_sends_no_core_temperature() -> None:
    rec = as_carried(bundled_recording().slice(0, 200))
    fw = _replay("qemu", [rec], params=NO_THERMAL).health
    assert fw.received.all() and np.isnan(fw.core_temp_C).all()


@needs_micropython
def test_micropython_sends_the_same_r0_to_the_frames_resolution() -> None:
    rec = as_carried(bundled_recording().slice(0, 1500))
    mp, host = _replay("micropython", [rec]).health, _replay("host", [rec]).health
    assert mp.received.all()
    assert np.array_equal(np.isnan(mp.r0_ohm), np.isnan(host.r0_ohm))
    assert np.nanmax(np.abs(mp.r0_ohm - host.r0_ohm)) <= 1e-4 + 1e-9


@needs_micropython
def test_micropython_sends_the_core_temperature_to_the_frames_resolution() -> None:
    """bmsfil_thermal.py in float64 against the C core's float32: the same
    0.5 °C code on all but a few samples, never more than one code apart;
    none without a thermal model."""
    rec = as_carried(bundled_recording().slice(0, 1500))
    mp, host = _replay("micropython", [rec]).health, _replay("host", [rec]).health
    assert mp.received.all() and np.isfinite(host.core_temp_C).all() and np.isfinite(mp.core_temp_C).all()
    apart = np.abs(mp.core_temp_C - host.core_temp_C)
    assert apart.max() <= 0.5 and np.count_nonzero(apart) <= 0.01 * apart.size
    bare = _replay("micropython", [rec.slice(0, 200)], params=NO_THERMAL).health
    assert bare.received.all() and np.isnan(bare.core_temp_C).all()


@needs_micropython
def test_micropython_native_sends_what_the_host_target_sends() -> None:
    """The native module runs the same C: the frames agree to the bit."""
    from bmsfil_hil import natmod

    if natmod.host_arch() != "x64" or natmod.missing_tools("x64"):
        pytest.skip("the native module cannot be built here: " + "; ".join(natmod.missing_tools("x64")))
    rec = as_carried(bundled_recording().slice(0, 1500))
    mp, host = _replay("micropython", [rec], variant="native").health, _replay("host", [rec]).health
    assert mp.received.all()
    assert np.array_equal(mp.r0_ohm, host.r0_ohm, equal_nan=True)
    assert np.array_equal(mp.capacity_Ah, host.capacity_Ah, equal_nan=True)
    assert np.isfinite(host.core_temp_C).all()
    assert np.array_equal(mp.core_temp_C, host.core_temp_C)
    bare = _replay("micropython", [rec.slice(0, 200)], params=NO_THERMAL,
                   variant="native").health
    assert bare.received.all() and np.isnan(bare.core_temp_C).all()


@pytest.mark.skipif(not NASA_B0005.is_file(), reason=f"NASA data not found at {DATA}")
def test_a_nasa_discharge_to_its_cut_off_teaches_the_capacity_over_can() -> None:
    """B0005's third discharge, from full to 2.7 V: when the load stops the
    host target sends the capacity it delivered (within 1 %)."""
    params = params_arg("nasa-pcoe-18650")
    rec = as_carried(import_cycles(NASA_B0005)[2])
    h = _replay("host", [rec], params=params).health
    delivered = -np.trapezoid(rec.current_A, rec.time_s) / 3600.0
    learned = h.capacity_Ah[:, 0]
    assert np.isnan(learned[0]) and np.isfinite(learned[-1])
    assert abs(learned[-1] - delivered) / delivered < 0.01
