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
from bmsfil.pack_estimator import FLAG_NUMERIC, PACK_FIELDS, PackEstimator
from bmsfil.params import bundled_params

HEADER = Path(__file__).resolve().parent.parent / "csrc" / "include" / "bmsfil" / "soc_ekf_pack.h"


@pytest.fixture(scope="module")
def params():
    return bundled_params()


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
def test_pack_equals_single_cells_on_recorded_pack(params, n_cells):
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
    pk = PackEstimator(params, n_cells)
    pk.init_ocv(volt[0], temp[0])
    trace = pk.run(dt, cur, volt, temp)
    assert_same_bits(trace, single_runs(params, dt, cur, volt, temp, volt[0], temp[0]))
    assert np.all((trace.soc >= 0) & (trace.soc <= 1))


def test_two_calls_equal_one(params):
    rec = bundled_recording().slice(0, 2000)
    cells = synthetic_pack(rec, 11, params, seed=5)
    volt = np.stack([c.voltage_V for c in cells], 1)
    temp = np.stack([c.temp_C for c in cells], 1)
    a = PackEstimator(params, 11)
    a.init_ocv(volt[0], temp[0])
    whole = a.run(rec.dt_s, rec.current_A, volt, temp)
    b = PackEstimator(params, 11)
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
def test_pack_equals_single_cells_on_random_inputs(params, n_cells, n, seed, bad):
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
    pk = PackEstimator(params, n_cells)
    pk.init_ocv(init_v, init_t)
    with np.errstate(all="ignore"):
        trace = pk.run(dt, cur, volt, temp)
    assert not np.any(trace.flags & FLAG_NUMERIC)
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
