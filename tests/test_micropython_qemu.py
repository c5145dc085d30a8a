"""The MicroPython application on the emulated Cortex-M4F: MicroPython 1.23
built for QEMU's mps2-an386 (firmware/micropython/port-mps2, single-precision
floats) with the application frozen in, driven over SLCAN on its UART by the
same lock-step replay as every target (hil/bmsfil_hil/micropython_qemu.py).

Both estimator variants: `python` (bmsfil_ekf, pure MicroPython, in float32
here) and `native` (the C core as the native module bmsfil_c.mpy for
armv7emsp, loaded from the image). Short slices; the numbers for longer runs
are in firmware/micropython/README.md."""

from __future__ import annotations

import numpy as np
import pytest

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.importers import import_file
from bmsfil.pack import synthetic_pack
from bmsfil.params import bundled_params
from bmsfil_hil import natmod
from bmsfil_hil.firmware import Image
from bmsfil_hil.micropython_qemu import MicroPythonQemuError, MicroPythonQemuTarget
from bmsfil_hil.targets import make_target
from bmsfil_hil.replay import as_carried, replay_lockstep

from firmware_tools import REQUIRED, needs_qemu
from shared_data import lg_drive_cycles, nasa_discharges, needs_data, needs_nasa

pytestmark = [needs_qemu, pytest.mark.qemu]
PARAMS = bundled_params()
#: The issue's bar for MicroPython against the C core.
BAR = 1e-3


def _host(rec) -> np.ndarray:
    return SocEstimator(PARAMS).run(as_carried(rec)).soc


def _run(rec, variant="python", **kw):
    """Lock-step replay of one recording, or of a pack (a list of recordings, one per cell)."""
    target = MicroPythonQemuTarget(PARAMS, variant=variant)
    bus = target.start()
    try:
        return replay_lockstep(bus, rec if isinstance(rec, list) else [rec], timeout_s=20.0, **kw)
    finally:
        target.stop()
        assert not target.alive(), "QEMU still running after stop()"


def _needs_natmod() -> None:
    missing = natmod.missing_tools("armv7emsp")
    if missing:
        why = "cannot build the native module for armv7emsp: " + "; ".join(missing)
        if REQUIRED:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


@pytest.mark.parametrize("variant", ["python", "native"])
def test_lockstep_agrees_with_host_and_counts_instructions(variant):
    if variant == "native":
        _needs_natmod()
    rec = bundled_recording().slice(0, 200)
    result = _run(rec, variant)
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert d.undecodable == 0 and d.unexpected == 0 and not d.target_faults
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= BAR
    # Instructions per cell step, counted on the emulated MCU (SysTick under -icount).
    ipcs = np.array(d.instructions_per_cell_step)
    assert len(ipcs) == len(rec)
    # The native variant's filter, monitor, capacity and R0 estimators, state
    # of power and core temperature are the C core's (docs/micropython.md:
    # median about 19,400 instructions without the core temperature, 25,100
    # with it, on these 200 samples).
    low, high = (2_000, 30_000) if variant == "native" else (50_000, 5_000_000)
    assert low < np.median(ipcs) < high, np.median(ipcs)
    # The core temperature: the native variant's is the C core's, bit for bit
    # the host target's on this single-precision port too; the python
    # variant's (bmsfil_thermal.py, in this port's float32) to the frame's 0.5 °C.
    host = make_target("host", PARAMS)
    bus = host.start()
    try:
        want = replay_lockstep(bus, [rec], timeout_s=10.0).health.core_temp_C
    finally:
        host.stop()
    if variant == "native":
        assert np.isfinite(want).all() and np.array_equal(result.health.core_temp_C, want)
    else:
        apart = np.abs(result.health.core_temp_C - want)
        assert np.isfinite(want).all() and apart.max() <= 0.5 and np.count_nonzero(apart) <= 0.02 * apart.size


@needs_nasa
def test_a_gap_the_bus_cannot_carry_restarts_the_native_module():
    """Two NASA discharges, 3 h apart, sent with no valid interval between
    them: the C core in the native module restarts the second from the
    rested full cell's voltage (the pure-Python filter is checked on the
    unix port: test_micropython_target)."""
    _needs_natmod()
    rec, (k,) = nasa_discharges(2)
    result = _run(rec, "native")
    assert result.delivery.fault is None and result.samples_done == len(rec)
    soc = result.soc[:, 0]
    assert soc[k - 1] < 0.2 and soc[k] > 0.9, f"sample {k}: {soc[k - 1]} -> {soc[k]}"
    assert np.max(np.abs(soc - _host(rec))) <= BAR


def test_a_pack_of_cells_is_stepped_cell_by_cell():
    rec = bundled_recording().slice(0, 60)
    cells = synthetic_pack(rec, 3, PARAMS)
    result = _run(cells)
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec) and not d.target_faults
    assert d.estimates_received == 3 * len(rec)
    for i, cell in enumerate(cells):
        assert np.max(np.abs(result.soc[:, i] - _host(cell))) <= BAR
    assert not np.allclose(result.soc[:, 0], result.soc[:, 1])


@needs_data
def test_drive_cycle_slice_agrees_with_host():
    paths = lg_drive_cycles()
    if not paths:
        pytest.skip("no LG HG2 drive cycles in the shared data")
    rec = import_file(paths[0])
    start = len(rec) // 3
    rec = rec.slice(start, start + 300)
    result = _run(rec)
    assert result.delivery.fault is None and result.samples_done == len(rec)
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= BAR


def test_warm_reset_keeps_the_cells_and_restart_fresh_starts_again():
    rec = bundled_recording().slice(0, 160)
    result = _run(rec, commands={60: cc.HostCommandCode.WARM_RESET})
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert d.target_starts == ["after sample 60: warm_reset -> restored"]
    assert np.flatnonzero(result.flags[:, 0] & cc.FLAG_RESTORED).tolist() == [61]
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= BAR


def test_stop_ends_qemu_after_a_failed_run():
    target = MicroPythonQemuTarget(PARAMS)
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
    sample, and stop() still cleans up."""
    rec = bundled_recording().slice(0, 100)
    target = MicroPythonQemuTarget(PARAMS)
    bus = target.start()
    try:
        first = replay_lockstep(bus, [rec.slice(0, 20)], timeout_s=20.0)
        assert first.delivery.fault is None
        target._proc.kill()  # noqa: SLF001 - the crash under test
        target._proc.wait(timeout=10)  # noqa: SLF001
        result = replay_lockstep(bus, [rec], timeout_s=2.0)
    finally:
        target.stop()
    assert result.delivery.fault is not None and "sample 0" in result.delivery.fault
    assert not target.alive()


def test_a_broken_image_is_an_error_naming_qemu_and_leaves_nothing_running(tmp_path):
    broken = tmp_path / "firmware.elf"
    broken.write_bytes(b"not an ELF")
    target = MicroPythonQemuTarget(PARAMS, image=Image("qemu-mps2-an386-micropython", broken, tmp_path, {}),
                                   connect_timeout_s=3.0)
    try:
        bus = target.start()  # QEMU listens before it loads the image ...
        result = replay_lockstep(bus, [bundled_recording().slice(0, 5)], timeout_s=2.0)
        assert result.delivery.fault is not None  # ... and is gone once it tried
    except MicroPythonQemuError as exc:
        assert "QEMU" in str(exc)
    finally:
        target.stop()
    assert not target.alive()


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant"):
        MicroPythonQemuTarget(PARAMS, variant="viper")
