"""The multi-cell call (bf_soc_ekf_pack_run, `PackEstimator`) gives every cell
exactly what the single-cell core gives it, on real data and on hostile inputs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil.bundled import bundled_recording
from bmsfil.core import SocEstimator
from bmsfil.pack import synthetic_pack
from bmsfil.pack_estimator import PACK_FIELDS, PackEstimator
from bmsfil.params import bundled_params
from shared_data import lg_drive_cycles, needs_data

HEADER = Path(__file__).resolve().parent.parent / "csrc" / "include" / "bmsfil" / "soc_ekf_pack.h"


@pytest.fixture(scope="module")
def params():
    return bundled_params()


#: Every lane code the module has (on a CPU without AVX2/AVX-512 these all
#: run the portable one).
CODES = ["portable", "avx2", "auto"]


@pytest.fixture(scope="module", params=CODES)
def code(request):
    return request.param


def single_runs(params, dt, cur, volt, temp, init_v, init_t):
    """Each cell alone through bf_soc_ekf_run: (soc, sigma, flags) as float32/uint8 (n, N)."""
    n, N = volt.shape
    soc = np.empty((n, N), np.float32)
    sig = np.empty((n, N), np.float32)
    flags = np.empty((n, N), np.uint8)
    for c in range(N):
        est = SocEstimator(params)
        est.init_ocv(float(init_v[c]), float(init_t[c]))
        tr = est.run_arrays(dt, cur, volt[:, c], temp[:, c])
        soc[:, c], sig[:, c], flags[:, c] = tr.soc, tr.soc_sigma, tr.flags
    return soc, sig, flags


def assert_same_bits(pack, single):
    soc, sig, flags = single
    np.testing.assert_array_equal(pack.flags, flags)
    np.testing.assert_array_equal(pack.soc.view(np.uint32), soc.view(np.uint32))
    np.testing.assert_array_equal(pack.soc_sigma.view(np.uint32), sig.view(np.uint32))


def test_fields_match_header():
    text = HEADER.read_text()
    assert int(re.search(r"#define BF_SOC_EKF_PACK_FIELDS (\d+)", text).group(1)) == PACK_FIELDS


@pytest.mark.parametrize("n_cells", [1, 8, 13])
def test_pack_equals_single_cells_on_recorded_pack(params, code, n_cells):
    """A synthetic string from the bundled LG HG2 US06 (25 degC), cells spread over
    the temperature rows, with bad samples in: the same bits and flags as N single runs."""
    rec = bundled_recording().slice(2000, 5000)
    cells = synthetic_pack(rec, n_cells, params, seed=3)
    dt, cur = rec.dt_s.copy(), rec.current_A.copy()
    volt = np.stack([c.voltage_V for c in cells], 1)
    temp = np.stack([c.temp_C for c in cells], 1) + np.linspace(-45.0, 20.0, n_cells)[None, :]
    volt[100:110, n_cells // 2] = np.nan
    volt[150, 0] = 9.0
    temp[200:205, n_cells - 1] = np.nan
    temp[210, 0] = 500.0
    cur[300:303] = np.nan
    dt[400] = -1.0
    dt[401] = np.inf
    pk = PackEstimator(params, n_cells, code=code)
    pk.init_ocv(volt[0], temp[0])
    trace = pk.run(dt, cur, volt, temp)
    assert_same_bits(trace, single_runs(params, dt, cur, volt, temp, volt[0], temp[0]))
    assert np.all((trace.soc >= 0) & (trace.soc <= 1))


def test_two_calls_equal_one(params, code):
    rec = bundled_recording().slice(0, 2000)
    cells = synthetic_pack(rec, 11, params, seed=5)
    volt = np.stack([c.voltage_V for c in cells], 1)
    temp = np.stack([c.temp_C for c in cells], 1)
    a = PackEstimator(params, 11, code=code)
    a.init_ocv(volt[0], temp[0])
    whole = a.run(rec.dt_s, rec.current_A, volt, temp)
    b = PackEstimator(params, 11, code=code)
    b.init_ocv(volt[0], temp[0])
    first = b.run(rec.dt_s[:777], rec.current_A[:777], volt[:777], temp[:777])
    second = b.run(rec.dt_s[777:], rec.current_A[777:], volt[777:], temp[777:])
    np.testing.assert_array_equal(np.concatenate([first.soc, second.soc]), whole.soc)
    np.testing.assert_array_equal(np.concatenate([first.flags, second.flags]), whole.flags)
    np.testing.assert_array_equal(a.data, b.data)
    # The state read back per cell is the single-cell state after the same samples.
    est = SocEstimator(params)
    est.init_ocv(float(volt[0, 4]), float(temp[0, 4]))
    est.run_arrays(rec.dt_s, rec.current_A, volt[:, 4], temp[:, 4])
    s = a.cell_state(4)
    np.testing.assert_array_equal(np.array(list(s.x), np.float32), est.x.astype(np.float32))
    np.testing.assert_array_equal(np.array([list(r) for r in s.P], np.float32), est.P.astype(np.float32))


finite_or_bad = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 5.0, -5.0, 100.0]),
)


@settings(max_examples=40, deadline=None)
@given(
    n_cells=st.integers(1, 19),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
    bad=st.lists(finite_or_bad, min_size=8, max_size=8),
)
def test_pack_equals_single_cells_on_random_inputs(params, code, n_cells, n, seed, bad):
    """Random plausible inputs with hostile values sprinkled in (NaN, inf,
    huge, subnormal, out of range): the same bits and flags, SOC in [0, 1]."""
    rng = np.random.default_rng(seed)
    dt = rng.choice([0.1, 1.0, 10.0, 0.0], n)
    cur = rng.uniform(-20.0, 20.0, n)
    volt = rng.uniform(2.8, 4.3, (n, n_cells))
    temp = rng.uniform(-30.0, 50.0, (n, n_cells))
    for arr in (dt, cur, volt, temp):
        flat = arr.reshape(-1)
        hits = rng.integers(0, flat.size, size=max(1, flat.size // 6))
        flat[hits] = rng.choice(np.array(bad, dtype=np.float64), hits.size)
    init_v = rng.uniform(3.0, 4.2, n_cells)
    init_t = rng.uniform(-20.0, 40.0, n_cells)
    pk = PackEstimator(params, n_cells, code=code)
    pk.init_ocv(init_v, init_t)
    with np.errstate(all="ignore"):
        trace = pk.run(dt, cur, volt, temp)
    assert not np.any(pk.failed_steps)
    assert_same_bits(trace, single_runs(params, dt, cur, volt, temp, init_v, init_t))
    assert np.all((trace.soc >= 0) & (trace.soc <= 1))


def test_shapes_are_checked(params):
    pk = PackEstimator(params, 4)
    with pytest.raises(ValueError):
        pk.run(np.ones(3), np.zeros(3), np.full((3, 5), 3.7), np.full((3, 5), 25.0))


def test_empty_pack_and_no_samples(params):
    PackEstimator(params, 0).run(np.ones(2), np.zeros(2), np.zeros((2, 0)), np.zeros((2, 0)))
    tr = PackEstimator(params, 3).run(np.ones(0), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))
    assert tr.soc.shape == (0, 3)


def _set_both(params, pk, ests, cell, x, P, last_i=0.0, last_t=25.0, hs=0.0):
    from bmsfil._core import ffi, lib

    s = ffi.new("bf_soc_ekf_t *")
    for i in range(4):
        s.x[i] = x[i]
        for j in range(4):
            s.P[i][j] = P[i][j]
    s.last_current_A, s.last_temp_C, s.hyst_sign = last_i, last_t, hs
    assert lib.bf_soc_ekf_pack_set(pk._pack, cell, s) == lib.BF_OK
    ffi.buffer(ests[cell]._state)[:] = ffi.buffer(s)[:]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_rare_repairs_match(params, code, seed):
    """States whose covariance needs the square-root repairs (variances above
    their ceilings, correlations beyond 0.999, non-finite entries): the pack's
    scalar pass gives the same bits as bf_soc_ekf_step (a failed step too: its
    outputs, the state left as it was, the failure counted)."""
    rng = np.random.default_rng(seed)
    n_cells, n = 9, 5
    pk = PackEstimator(params, n_cells, code=code)
    ests = [SocEstimator(params) for _ in range(n_cells)]
    for c in range(n_cells):
        a = rng.normal(size=(4, 4)) * rng.choice([1e-3, 1.0, 30.0, 1e4], size=4)[:, None]
        P = a @ a.T
        if c % 3 == 1:
            P[0, 1] = P[1, 0] = 1.5 * np.sqrt(P[0, 0] * P[1, 1])   # beyond the correlation bound
        if c % 4 == 2:
            P[2, 2] = np.inf
        x = [rng.uniform(0, 1), rng.normal() * 3, rng.normal() * 3, rng.uniform(-1, 1)]
        _set_both(params, pk, ests, c, x, P.astype(np.float32), hs=float(rng.choice([-1.0, 0.0, 1.0])))
    dt = rng.choice([0.1, 1.0], n)
    cur = rng.uniform(-10, 10, n)
    volt = rng.uniform(3.3, 4.1, (n, n_cells))
    temp = rng.uniform(0, 40, (n, n_cells))
    from bmsfil._core import ffi, lib
    from bmsfil.core import CoreError

    try:
        trace = pk.run(dt, cur, volt, temp)
    except CoreError as exc:   # some of these states cannot be stepped: compared below
        trace = exc.trace
    out = ffi.new("bf_soc_ekf_out_t *")
    for c, est in enumerate(ests):
        fails = 0
        for k in range(n):
            # bf_soc_ekf_step, going on after a failed step (which left the state as it was)
            st_ = lib.bf_soc_ekf_step(est._state, est._cell, est._tuning, dt[k], cur[k], volt[k, c], temp[k, c], out)
            assert st_ in (lib.BF_OK, lib.BF_E_NUMERIC)
            fails += st_ == lib.BF_E_NUMERIC
            assert trace.flags[k, c] == out.flags
            assert trace.soc[k, c] == np.float32(out.soc)
            assert trace.soc_sigma[k, c] == np.float32(out.soc_sigma)
        assert pk.failed_steps[c] == fails
        s = pk.cell_state(c)
        np.testing.assert_array_equal(np.array([list(r) for r in s.P], np.float32), est.P.astype(np.float32))


def test_numeric_failure_keeps_the_cell_and_reports(params, code):
    """A cell whose step cannot stay finite keeps its state (as a failed
    bf_soc_ekf_step leaves it), its failures are counted, the other cells carry
    on, and the call reports BF_E_NUMERIC naming the cell."""
    from bmsfil.core import CoreError

    pk = PackEstimator(params, 10, code=code)
    ests = [SocEstimator(params) for _ in range(10)]
    P = np.diag([1e-3, 1e-2, 1e-2, 1e-2]).astype(np.float32)
    for c in range(10):
        x = [0.5, np.nan if c == 3 else 0.0, 0.0, 0.0]
        _set_both(params, pk, ests, c, x, P)
    before = pk.data.copy()
    with pytest.raises(CoreError) as info:
        pk.run(np.ones(3), np.full(3, -2.0), np.full((3, 10), 3.7), np.full((3, 10), 25.0))
    trace = info.value.trace
    assert list(info.value.cells) == [3] and "cell(s): 3" in str(info.value)
    assert list(pk.failed_steps) == [0, 0, 0, 3, 0, 0, 0, 0, 0, 0]
    np.testing.assert_array_equal(pk.data[:-1, 3], before[:-1, 3])
    for c in (0, 9):
        tr = ests[c].run_arrays(np.ones(3), np.full(3, -2.0), np.full(3, 3.7), np.full(3, 25.0))
        np.testing.assert_array_equal(trace.soc[:, c], tr.soc.astype(np.float32))
    with pytest.raises(CoreError):
        ests[3].step(1.0, -2.0, 3.7, 25.0)
    assert np.array_equal(trace.soc[:, 3], np.full(3, np.float32(0.5)))


def test_out_arrays_are_reused(params):
    from bmsfil.pack_estimator import PackTrace

    rec = bundled_recording().slice(0, 300)
    volt = np.repeat(rec.voltage_V[:, None], 5, axis=1)
    temp = np.repeat(rec.temp_C[:, None], 5, axis=1)
    a, b = PackEstimator(params, 5), PackEstimator(params, 5)
    for pk in (a, b):
        pk.init_ocv(volt[0], temp[0])
    fresh = a.run(rec.dt_s, rec.current_A, volt, temp)
    out = PackTrace(np.empty((300, 5), np.float32), np.empty((300, 5), np.float32), np.empty((300, 5), np.uint8))
    got = b.run(rec.dt_s, rec.current_A, volt, temp, out=out)
    assert got.soc is out.soc
    np.testing.assert_array_equal(out.soc, fresh.soc)
    np.testing.assert_array_equal(out.flags, fresh.flags)
    with pytest.raises(ValueError):
        b.run(rec.dt_s, rec.current_A, volt, temp, out=PackTrace(out.soc.astype(np.float64), out.soc_sigma, out.flags))


def test_code_paths(params):
    from bmsfil.pack_estimator import CODE_OPTIONS

    assert PackEstimator(params, 2, code="portable").code_path == "portable"
    assert PackEstimator(params, 2, code="avx2").code_path in ("portable", "avx2")
    assert PackEstimator(params, 2).code_path in ("portable", "avx2", "avx512")
    with pytest.raises(ValueError):
        PackEstimator(params, 2, code="sse9")
    assert set(CODE_OPTIONS) == set(CODES)


def test_pack_bench_runs(params, tmp_path):
    """`bmsfil bench`'s pack part on a small pack: 1 Hz inputs of the right
    shapes, rates for the call (its code path and the portable one) and the
    single-cell baseline."""
    from bmsfil.bench import pack_inputs, run_pack_bench

    rec = bundled_recording()
    dt, cur, volt, temp = pack_inputs(params, rec, 12, samples=40)
    assert volt.shape == temp.shape == (41, 12) and dt.shape == cur.shape == (41,)
    assert np.all(np.abs(dt[1:] - 1.0) < 0.3)
    d = run_pack_bench(params, rec, n_cells=12, samples=40, min_time_s=0.0, single_cells=3).as_dict()
    assert d["pack_code_path"] in ("portable", "avx2", "avx512")
    assert d["pack_steps_per_s"] > 0 and d["pack_portable_steps_per_s"] > 0
    assert d["pack_single_cell_batch_steps_per_s"] > 0


@needs_data
@pytest.mark.parametrize("index", [0, 2, 7])
def test_pack_equals_single_cells_on_lg_hg2_cycles(params, code, index):
    """Drive cycles of the shared LG HG2 data (-10, 0 and 40 degC): a 4000-sample
    slice as a string of 11 cells (the recorded voltage offset by up to
    +-20 mV and the temperature by up to +-3 degC per cell), every cell the
    same bits as its single-cell run."""
    from bmsfil.importers import load_any

    rec = load_any(lg_drive_cycles()[index])
    sl = slice(len(rec) // 3, len(rec) // 3 + 4000)
    rng = np.random.default_rng(index)
    volt = rec.voltage_V[sl, None] + rng.uniform(-0.02, 0.02, (1, 11))
    temp = rec.temp_C[sl, None] + rng.uniform(-3.0, 3.0, (1, 11))
    dt, cur = rec.dt_s[sl], rec.current_A[sl]
    pk = PackEstimator(params, 11, code=code)
    pk.init_ocv(volt[0], temp[0])
    trace = pk.run(dt, cur, volt, temp)
    assert_same_bits(trace, single_runs(params, dt, cur, volt, temp, volt[0], temp[0]))


def test_one_cell_with_no_voltage_to_start_from_changes_no_cell():
    """bf_soc_ekf_pack_init_ocv checks every cell before it writes any: a
    0.0 V reading on one cell (no OCV to start from) leaves the whole pack as
    it was, instead of the cells before it started and those after not."""
    from bmsfil.core import CoreError

    pk = PackEstimator(bundled_params(), 3)
    pk.init_soc(np.full(3, 0.2), np.full(3, 25.0))
    with pytest.raises(CoreError, match="out of range"):
        pk.init_ocv(np.array([4.1, 0.0, 4.1]), np.full(3, 25.0))
    assert np.array_equal(pk.soc, np.full(3, np.float32(0.2)))
    pk.init_ocv(np.array([4.1, 4.1, 4.1]), np.full(3, 25.0))
    assert np.all(pk.soc > 0.9)
