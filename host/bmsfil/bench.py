"""`bmsfil bench`: cell-steps per second of every implementation of the SOC
EKF, on the same model and data, measured side by side in one run.

- c_batch: the C core, a whole array per call (`bf_soc_ekf_run`);
- c_step: the C core, one cffi call per sample;
- reference: the float64 Python twin (`reference.py`);
- filterpy: filterpy's ExtendedKalmanFilter on the same model, the way a
  Python user would first write it;
- pack (`run_pack_bench`): the multi-cell call (`bf_soc_ekf_pack_run`) on a
  synthetic pack of N cells at 1 Hz, against the single-cell batch call on
  the same cells' data, one cell at a time, in the same run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from filterpy.kalman import ExtendedKalmanFilter

from bmsfil.core import SocEstimator
from bmsfil.pack import Spread, synthetic_pack
from bmsfil.pack_estimator import PackEstimator, PackTrace
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording
from bmsfil.reference import CellModel, ReferenceSocEstimator, sign


class FilterpySocEstimator:
    """The same model and noise as the C core, on filterpy's EKF (no gating,
    no guards): the baseline the C core's speed is compared with."""

    def __init__(self, params: ParameterSet, soc: float) -> None:
        self.p = params
        self.model = CellModel(params)
        t = params.filter
        self.ekf = ExtendedKalmanFilter(dim_x=4, dim_z=1)
        self.ekf.x = np.array([[soc], [0.0], [0.0], [0.0]])
        self.ekf.P = np.diag([t.p0_soc_ocv, t.p0_irc_A2, t.p0_irc_A2, t.p0_hyst])
        self.hyst_sign = 0.0

    def step(self, dt: float, current: float, voltage: float, temp: float) -> float:
        m, t, ekf = self.model, self.p.filter, self.ekf
        at = m.locate(float(ekf.x[0, 0]), temp)
        dz = current * dt / (m.row("capacity_Ah", at) * 3600.0)
        a1 = math.exp(-dt / m.rc("tau1_s", at))
        a2 = math.exp(-dt / m.rc("tau2_s", at))
        ah = math.exp(-abs(dz * m.row("hyst_gamma", at)))
        ekf.F = np.diag([1.0, a1, a2, ah])
        ekf.Q = np.diag([t.q_soc_per_s, t.q_irc_A2_per_s, t.q_irc_A2_per_s, t.q_hyst_per_s]) * dt
        ekf.Q[0, 0] += (t.hold_sigma_c_rate * dt / 3600.0) ** 2
        ekf.x = ekf.F @ ekf.x + np.array([[dz], [(1 - a1) * current], [(1 - a2) * current], [(1 - ah) * sign(current)]])
        ekf.P = ekf.F @ ekf.P @ ekf.F.T + ekf.Q
        if abs(current) > t.hyst_current_A:
            self.hyst_sign = sign(current)

        def h_of(x: np.ndarray) -> np.ndarray:
            a = m.locate(float(x[0, 0]), temp)
            eta = (
                m.rc("r0_ohm", a) * current
                + m.row("rn_ohm", a) * current / (1.0 + self.p.cell.rn_sat_per_A * abs(current))
                + m.rc("r1_ohm", a) * x[1, 0] + m.rc("r2_ohm", a) * x[2, 0]
            )
            return np.array([[m.ocv(a)[0] + m.row("hyst_m0_V", a) * self.hyst_sign + m.row("hyst_m_V", a) * x[3, 0] + eta]])

        def jac(x: np.ndarray) -> np.ndarray:
            a = m.locate(float(x[0, 0]), temp)
            return np.array([[m.ocv(a)[1], m.rc("r1_ohm", a), m.rc("r2_ohm", a), m.row("hyst_m_V", a)]])

        ekf.R = np.array([[t.r_voltage_V2_s / max(dt, t.r_dt_min_s)]])
        ekf.update(np.array([[voltage]]), jac, h_of)
        return float(ekf.x[0, 0])


@dataclass(frozen=True)
class BenchResult:
    c_batch_steps_per_s: float
    c_step_steps_per_s: float
    reference_steps_per_s: float
    filterpy_steps_per_s: float
    samples: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {
            "c_batch_steps_per_s": self.c_batch_steps_per_s,
            "c_step_steps_per_s": self.c_step_steps_per_s,
            "reference_steps_per_s": self.reference_steps_per_s,
            "filterpy_steps_per_s": self.filterpy_steps_per_s,
            "c_batch_over_filterpy": self.c_batch_steps_per_s / self.filterpy_steps_per_s,
            "c_batch_over_reference": self.c_batch_steps_per_s / self.reference_steps_per_s,
            "samples": self.samples,
        }


def _best_rate(fn, n: int, min_time_s: float) -> float:
    """Best steps per second over repeats lasting at least min_time_s in all."""
    best, spent = 0.0, 0.0
    while spent < min_time_s or best == 0.0:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        spent += dt
        best = max(best, n / dt)
    return best


def run_bench(params: ParameterSet, rec: Recording, python_samples: int = 3000, min_time_s: float = 1.0) -> BenchResult:
    dt, cur, volt, temp = rec.dt_s, rec.current_A, rec.voltage_V, rec.temp_C
    v0, t0 = float(volt[0]), float(temp[0])
    est = SocEstimator(params)

    def c_batch() -> None:
        est.init_ocv(v0, t0)
        est.run_arrays(dt, cur, volt, temp)

    if python_samples < 1:
        raise ValueError(f"python_samples must be at least 1, got {python_samples}")
    lists = [a[:python_samples].tolist() for a in (dt, cur, volt, temp)]
    per_sample = len(lists[0])  # the recording's length where it is shorter

    def c_step() -> None:
        est.init_ocv(v0, t0)
        for args in zip(*lists):
            est.step(*args)

    ref = ReferenceSocEstimator(params)

    def reference() -> None:
        ref.init_ocv(v0, t0)
        for args in zip(*lists):
            ref.step(*args)

    def filterpy() -> None:
        f = FilterpySocEstimator(params, ref.model.soc_from_ocv(v0, t0))
        for args in zip(*lists):
            f.step(*args)

    n = len(rec)
    return BenchResult(
        c_batch_steps_per_s=_best_rate(c_batch, n, min_time_s),
        c_step_steps_per_s=_best_rate(c_step, per_sample, min_time_s),
        reference_steps_per_s=_best_rate(reference, per_sample, min_time_s),
        filterpy_steps_per_s=_best_rate(filterpy, per_sample, min_time_s),
        samples={"c_batch": n, "python": per_sample},
    )


#: The issue-9 bar for the multi-cell call on a 10,000-cell pack, one core.
PACK_TARGET_STEPS_PER_S = 20e6


@dataclass(frozen=True)
class PackBenchResult:
    n_cells: int
    samples: int
    code_path: str              # the lane code the call took ("portable", "avx2", "avx512")
    pack_steps_per_s: float
    portable_steps_per_s: float  # the same call forced onto the portable C99 code (SSE2 on x86-64)
    single_steps_per_s: float   # bf_soc_ekf_run on the same cells' columns, one cell per call

    def as_dict(self) -> dict[str, object]:
        return {
            "pack_n_cells": self.n_cells,
            "pack_samples": self.samples,
            "pack_code_path": self.code_path,
            "pack_steps_per_s": self.pack_steps_per_s,
            "pack_portable_steps_per_s": self.portable_steps_per_s,
            "pack_single_cell_batch_steps_per_s": self.single_steps_per_s,
            "pack_over_single_cell_batch": self.pack_steps_per_s / self.single_steps_per_s,
            "pack_portable_over_single_cell_batch": self.portable_steps_per_s / self.single_steps_per_s,
            "pack_target_steps_per_s": PACK_TARGET_STEPS_PER_S,
            "pack_meets_target": self.pack_steps_per_s >= PACK_TARGET_STEPS_PER_S,
            "pack_portable_meets_target": self.portable_steps_per_s >= PACK_TARGET_STEPS_PER_S,
        }


def pack_inputs(params: ParameterSet, rec: Recording, n_cells: int, samples: int = 600, seed: int = 0,
                temp_spread_C: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """dt (n,), current (n,), voltage and temperature (n, N) float32 of a synthetic pack at 1 Hz.

    The recording is resampled to 1 Hz (the sample at or after each whole
    second), `pack.synthetic_pack` spreads capacity, resistance and initial
    SOC with its default spreads, and each cell's temperature is offset by a
    seeded uniform +-temp_spread_C (a string does not sit at one temperature).
    """
    stop = np.searchsorted(rec.time_s, rec.time_s[0] + samples + 1)
    idx = np.unique(np.searchsorted(rec.time_s, rec.time_s[0] + np.arange(0.0, samples + 1)))
    idx = idx[idx < min(stop, len(rec))][: samples + 1]
    ah = None if rec.ah is None else rec.ah[idx]
    one_hz = Recording(rec.time_s[idx] - rec.time_s[idx[0]], rec.current_A[idx], rec.voltage_V[idx],
                       rec.temp_C[idx], rec.meta, ah)
    cells = synthetic_pack(one_hz, n_cells, params, Spread(), seed=seed)
    volt = np.stack([c.voltage_V for c in cells], axis=1).astype(np.float32)
    offsets = np.random.default_rng(seed).uniform(-temp_spread_C, temp_spread_C, n_cells)
    temp = (one_hz.temp_C[:, None] + offsets[None, :]).astype(np.float32)
    return (one_hz.dt_s.astype(np.float32), one_hz.current_A.astype(np.float32), volt, temp)


def run_pack_bench(params: ParameterSet, rec: Recording, n_cells: int = 10_000, samples: int = 600,
                   min_time_s: float = 1.0, single_cells: int = 200) -> PackBenchResult:
    """Cell-steps per second of the multi-cell call on N cells at 1 Hz, and of the
    single-cell batch call over the same data (`single_cells` of the cells, one call each)."""
    dt, cur, volt, temp = pack_inputs(params, rec, n_cells, samples)
    n = len(dt)
    # Every output (SOC, sigma, flags) is written, into arrays allocated once:
    # a fresh 54 MB of numpy output per repeat would time the kernel's page
    # faults too (about 10 % here), not the call.
    out = PackTrace(np.empty((n, n_cells), np.float32), np.empty((n, n_cells), np.float32),
                    np.empty((n, n_cells), np.uint8))

    def pack_rate(code: str) -> tuple[str, float]:
        pk = PackEstimator(params, n_cells, code=code)

        def pack() -> None:
            pk.init_ocv(volt[0], temp[0])
            pk.run(dt, cur, volt, temp, out=out)

        return pk.code_path, _best_rate(pack, n * n_cells, min_time_s)

    m = min(single_cells, n_cells)
    cols = [(np.ascontiguousarray(volt[:, c]), np.ascontiguousarray(temp[:, c])) for c in range(m)]
    est = SocEstimator(params)

    def single() -> None:
        for v, t in cols:
            est.init_ocv(float(v[0]), float(t[0]))
            est.run_arrays(dt, cur, v, t)

    single_rate = _best_rate(single, n * m, min_time_s)
    path, rate = pack_rate("auto")
    portable = rate if path == "portable" else pack_rate("portable")[1]
    return PackBenchResult(n_cells=n_cells, samples=n, code_path=path, pack_steps_per_s=rate,
                           portable_steps_per_s=portable, single_steps_per_s=single_rate)
