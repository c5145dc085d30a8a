"""The plausibility monitor over CAN: every target runs it beside its filter
and sends EstCellFlags each sample. Injected sensor faults come back flagged
(a 0.5 A current offset, a stuck voltage), a clean slice raises nothing,
and the flags are bit for bit the host monitor's (`bmsfil.plausibility`,
the same C) on the host target and on the firmware in QEMU.

The offset takes about half an hour of driving to show (docs/plausibility.md),
so its replay is 21,000 samples: 2 s on the host target, about a minute on
QEMU (marked qemu)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.params import bundled_params
from bmsfil.plausibility import run_monitored
from bmsfil_hil.faults import _alter, _stuck_voltage
from bmsfil_hil.replay import as_carried, replay_lockstep
from bmsfil_hil.targets import make_target
from monitor_agreement import assert_port_flags_agree

from bmsfil_hil.micropython import micropython_executable
from firmware_tools import needs_qemu

needs_micropython = pytest.mark.skipif(micropython_executable() is None,
                                       reason="the micropython command (MicroPython's unix port) is not installed")

PARAMS = bundled_params()
OFFSET_SAMPLES = 21000  # the 0.5 A offset from 20 s is flagged about 1,900 s later
STUCK = slice(400, 600)  # 40 s to 60 s of the bundled US06


# --- the frame ---------------------------------------------------------------


@given(seq=st.integers(0, 70000), cell=st.integers(0, 1023), flags=st.integers(0, 0x3F),
       u=st.floats(-20.0, 20.0), sigma=st.floats(0.0, 5.0), stuck=st.floats(0.0, 200.0), valid=st.booleans())
def test_est_cell_flags_roundtrip(seq, cell, flags, u, sigma, stuck, valid) -> None:
    if not valid:
        u, sigma = math.nan, math.nan
    msg = cc.encode_est_cell_flags(seq, cell, flags, u, sigma, stuck)
    assert msg.arbitration_id == 0x203 and msg.dlc == 8 and not msg.is_extended_id
    f = cc.decode(msg)
    assert isinstance(f, cc.EstCellFlags) and (f.sequence, f.cell_index, f.flags) == (seq % cc.SEQUENCE_MODULUS, cell, flags)
    assert bytes(cc.encode(f).data) == bytes(msg.data)
    # cantools reads the same bits.
    raw = cc.database().get_message_by_name("EstCellFlags").decode(bytes(msg.data), decode_choices=False)
    assert raw["unseen_current_valid"] == int(valid)
    assert [name for bit, name in cc.PLAUS_FLAGS.items() if raw[name]] == f.names()
    if valid:
        assert abs(f.unseen_current_A - min(max(u, -16.383), 16.383)) <= 0.0005 + 1e-12
        assert abs(f.unseen_current_sigma_A - min(sigma, 2.046)) <= 0.001 + 1e-12
    else:
        assert math.isnan(f.unseen_current_A) and math.isnan(f.unseen_current_sigma_A)
    assert f.stuck_for_s == min(round(stuck), 63)


def test_est_cell_flags_refuses_and_saturates() -> None:
    with pytest.raises(ValueError, match="PLAUS_"):
        cc.encode_est_cell_flags(1, 0, 0x40)
    with pytest.raises(ValueError, match="both are valid or both are nan"):
        cc.encode_est_cell_flags(1, 0, 0, 0.1, math.nan)
    # The monitor's "no window yet" (sigma +inf) is sent as not valid.
    assert not cc.decode(cc.encode_est_cell_flags(1, 0, 0, 0.0, math.inf)).unseen_current_valid
    f = cc.decode(cc.encode_est_cell_flags(1, 0, 0, -99.0, 7.0, 1e4))
    assert (f.unseen_current_A, f.unseen_current_sigma_A, f.stuck_for_s) == (-16.383, 2.046, 63.0)
    assert cc.PLAUS_FLAGS == {1: "current_offset", 2: "self_discharge", 4: "voltage_stuck", 8: "voltage_range",
                              16: "current_range", 32: "temp_range"}


def test_plaus_flags_are_the_cores() -> None:
    from bmsfil.plausibility import FLAG_NAMES

    assert cc.PLAUS_FLAGS == FLAG_NAMES


# --- over CAN ------------------------------------------------------------------


def _replay(target_name: str, rec, **kw):
    target = make_target(target_name, PARAMS, **kw)
    bus = target.start()
    try:
        result = replay_lockstep(bus, [rec], timeout_s=10.0)
    finally:
        target.stop()
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert d.unexpected == 0 and d.undecodable == 0
    assert result.plausibility.received[:, 0].all(), "an EstCellFlags for every sample"
    return result


def _host_monitor(rec):
    """The monitor on the host over what the contract carried (`bmsfil eval`'s view)."""
    return run_monitored(as_carried(rec), PARAMS)[1]


def _check_same_as_host(result, rec, port: bool = False) -> None:
    """Flags bit for bit the host monitor's; the evidence within the frame's
    rounding (C targets), or within the pure-MicroPython port's difference
    from the float32 core where CAN carries it (`port`: a few mA, 0.5 % of
    sigma; its flags may differ only where the host's unseen-current
    statistic is within 0.1 % of the alarm's z, where that difference decides)."""
    mon = _host_monitor(rec)
    p = result.plausibility
    if port:
        assert_port_flags_agree(p.flags[:, 0], mon.flags, mon.unseen_current_A, mon.unseen_current_sigma_A)
    else:
        np.testing.assert_array_equal(p.flags[:, 0], mon.flags)
    valid = np.isfinite(mon.unseen_current_sigma_A)
    assert np.array_equal(~np.isnan(p.unseen_current_A[:, 0]), valid)
    u = np.clip(mon.unseen_current_A[valid], -16.383, 16.383)
    s = np.minimum(mon.unseen_current_sigma_A[valid], 2.046)
    if port:
        inside = s < 2.0
        assert np.max(np.abs(p.unseen_current_A[valid, 0] - u)[inside], initial=0.0) <= 0.005
        assert np.max((np.abs(p.unseen_current_sigma_A[valid, 0] - s) - 0.001 - 0.005 * s)[inside],
                      initial=0.0) <= 1e-9
        return
    assert np.max(np.abs(p.unseen_current_A[valid, 0] - u)) <= 0.0005 + 1e-9
    assert np.max(np.abs(p.unseen_current_sigma_A[valid, 0] - s)) <= 0.001 + 1e-9


def _stuck(n: int):
    return _stuck_voltage(bundled_recording().slice(0, n), STUCK)


def _offset(n: int):
    rec = bundled_recording().slice(0, n)
    return _alter(rec, slice(200, n), current_A=lambda i: i + 0.5)


def _checks(target_name: str, offset: bool = True, port: bool = False, **kw) -> None:
    clean = bundled_recording().slice(0, 1200)
    result = _replay(target_name, clean, **kw)
    assert not result.plausibility.flags.any(), "no flag on a clean slice"
    _check_same_as_host(result, clean, port)

    rec = _stuck(1200)
    result = _replay(target_name, rec, **kw)
    k = result.plausibility.first(cc.PLAUS_VOLTAGE_STUCK, start=STUCK.start)
    assert k is not None and k < STUCK.stop, "the stuck voltage comes back flagged while frozen"
    assert rec.time_s[k] - rec.time_s[STUCK.start] <= 15.0
    assert result.plausibility.first(cc.PLAUS_VOLTAGE_STUCK) == k, "not before the freeze"
    _check_same_as_host(result, rec, port)

    if offset:
        rec = _offset(OFFSET_SAMPLES)
        result = _replay(target_name, rec, **kw)
        p = result.plausibility
        k = p.first(cc.PLAUS_CURRENT_OFFSET)
        assert k is not None and k > 200, "the 0.5 A offset comes back flagged, after it started"
        assert p.flags[-1, 0] & cc.PLAUS_CURRENT_OFFSET, "and stays flagged"
        # The evidence: the estimated offset, with its sigma, at the end.
        assert abs(p.unseen_current_A[-1, 0] - 0.5) < 0.15 and p.unseen_current_sigma_A[-1, 0] < 0.15
        _check_same_as_host(result, rec, port)


def test_host_target_flags_over_can():
    _checks("host")


@needs_qemu
@pytest.mark.qemu
def test_firmware_in_qemu_flags_over_can():
    _checks("qemu")


@needs_micropython
def test_micropython_python_variant_flags_over_can():
    """The pure-MicroPython monitor (bmsfil_plaus) on the unix port. The
    offset's 21,000-sample replay runs at about 2,000 samples/s there:
    slow-marked."""
    _checks("micropython", offset=False, port=True)


@needs_micropython
def test_micropython_native_variant_flags_over_can():
    """The C monitor in the native module: bit for bit the host's flags."""
    _checks("micropython", offset=False, variant="native")


@needs_micropython
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["python", "native"])
def test_micropython_offset_flagged_over_can(variant):
    _checks("micropython", port=variant == "python", variant=variant)


@needs_qemu
@pytest.mark.qemu
@pytest.mark.parametrize("variant", ["python", "native"])
def test_micropython_on_qemu_flags_over_can(variant):
    """MicroPython on the emulated Cortex-M4F (single-precision floats):
    the stuck voltage comes back flagged, the clean slice clean."""
    _checks("micropython", offset=False, port=variant == "python", variant=variant, on="qemu")
