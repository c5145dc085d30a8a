"""Fitting the dynamic part of the cell model to measured data.

Given the OCV tables, the terminal voltage of the model is linear in R0, R1,
R2, M0 and M once the time constants and the hysteresis rate are fixed:

    v - OCV(z, T) = R0(z,T) i + R1(z,T) i_R1 + R2(z,T) i_R2 + M0(T) s + M(T) h
                    + Rn(T) i / (1 + kn |i|)

with every table value entering through the same bilinear weights the C
core interpolates with. So the fit is a bounded linear least-squares problem
(scipy's lsq_linear on a sparse design matrix, resistances >= 0), with a
small second-difference penalty that keeps the tables smooth and fills grid
cells the data never visited. The time constants are chosen per
temperature by a grid search on the recordings nearest that temperature.
SOC comes from the recordings' reference (the tester's charge counter).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy.optimize import lsq_linear
from scipy.signal import lfilter

from bmsfil.recording import Recording
from bmsfil.table_lookup import bilinear, interp_weights

TAU1_GRID_S = (2.0, 5.0, 10.0, 20.0, 40.0)
TAU2_GRID_S = (60.0, 120.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0)
#: |current| above which the instantaneous hysteresis sign follows it, A.
HYST_CURRENT_A = 0.05
#: |current| below which a sample counts as rest when choosing time constants, A.
REST_CURRENT_A = 0.05


@dataclass(frozen=True)
class DynamicFit:
    r0_ohm: np.ndarray      # (n_temps, n_rc)
    r1_ohm: np.ndarray
    tau1_s: np.ndarray
    r2_ohm: np.ndarray
    tau2_s: np.ndarray
    hyst_m0_V: np.ndarray   # (n_temps,)
    hyst_m_V: np.ndarray
    rn_ohm: np.ndarray
    rms_residual_V: float
    residual_by_recording_V: dict[str, float]
    #: per grid temperature: seconds of recording under load measured near it;
    #: below IDENTIFIED_MIN_S its tables are its nearest identified neighbour's
    seconds_under_load: np.ndarray
    #: per grid temperature: the index of the one its tables were carried over
    #: from, -1 for its own (or when no temperature has enough: all as fitted)
    carried_from: np.ndarray
    #: per grid temperature: the index of the one its hysteresis (M0, M) was
    #: taken from, -1 for its own: it needs current both ways (see _excited)
    hyst_from: np.ndarray | None = None
    #: the same for the current-dependent resistance Rn: it needs current at
    #: more than one level
    rn_from: np.ndarray | None = None
    #: per grid temperature: whether its data (current one way, at one level)
    #: could not split the resistance, which is then held no lower than at
    #: the next warmer temperature (see _colder_not_lower), its time constants
    #: those of the nearest temperature whose data can
    weak: np.ndarray | None = None


#: Seconds under load a grid temperature needs for tables of its own: fewer
#: (a recording labelled with that temperature that cooled away from it, say)
#: fit noise there, and the tables are carried over from the nearest
#: temperature that has them. Two minutes: a few pulses, well short of
#: any pulse or drive test.
IDENTIFIED_MIN_S = 120.0
#: A current this many times above or below a temperature's median current
#: under load counts as another level of current (for Rn), a ratio.
LEVEL_RATIO = 1.5


def rc_current(current: np.ndarray, dt: np.ndarray, tau: np.ndarray | float) -> np.ndarray:
    """Current through the resistor of an RC pair, as the C core propagates it."""
    a = np.exp(-dt / tau)
    if np.ndim(tau) == 0 and np.allclose(dt[1:], dt[1]):
        return lfilter([1 - a[1]], [1, -a[1]], current)
    out = np.empty_like(current)
    x = 0.0
    for k, (ak, ik) in enumerate(zip(a.tolist(), current.tolist())):
        x = ak * x + (1 - ak) * ik
        out[k] = x
    return out


def hysteresis_states(current: np.ndarray, dt: np.ndarray, capacity_Ah: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Instantaneous sign s and dynamic state h (Plett's ESC model, charge positive)."""
    sgn = np.sign(current)
    big = np.abs(current) > HYST_CURRENT_A
    idx = np.where(big, np.arange(len(current)), 0)
    np.maximum.accumulate(idx, out=idx)
    s = np.where(big[idx] | big, sgn[idx], 0.0)
    a = np.exp(-np.abs(current * dt * gamma / (3600.0 * capacity_Ah)))
    h = np.empty_like(current)
    x = 0.0
    for k, (ak, sk) in enumerate(zip(a.tolist(), sgn.tolist())):
        x = ak * x + (1 - ak) * sk
        h[k] = x
    return s, h


@dataclass
class _Prepared:
    name: str
    current: np.ndarray
    dt: np.ndarray
    soc: np.ndarray
    temp: np.ndarray
    target: np.ndarray  # v - OCV
    s: np.ndarray
    h: np.ndarray
    sel: np.ndarray     # samples that enter the fit
    weight: np.ndarray  # per sample, as the filter will weigh it


def _prepare(rec: Recording, ocv_V: np.ndarray, temp_grid: np.ndarray, capacity_Ah: float,
             gamma: float, stride: int) -> _Prepared:
    soc = rec.reference_soc()
    ok = np.isfinite(rec.voltage_V) & np.isfinite(rec.current_A) & np.isfinite(rec.temp_C)
    current = np.where(ok, rec.current_A, 0.0)
    dt = rec.dt_s
    s, h = hysteresis_states(current, dt, capacity_Ah, gamma)
    target = rec.voltage_V - bilinear(ocv_V, temp_grid, soc, rec.temp_C)
    keep = ok & (soc >= 0.0) & (soc <= 1.0)
    keep[0] = False
    return _Prepared(
        rec.meta.name, current, dt, soc, rec.temp_C, target, s, h, np.flatnonzero(keep)[::stride], np.ones(len(rec))
    )


def _design(
    preps: list[_Prepared], tau1: np.ndarray, tau2: np.ndarray, temp_grid: np.ndarray, n_rc: int, rn_sat_per_A: float
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sparse design matrix for [R0 | R1 | R2 tables (T x SOC) | M0, M, Rn rows (T)]."""
    nt = len(temp_grid)
    n_tab = nt * n_rc
    rows, cols, vals, target = [], [], [], []
    offset = 0
    zgrid = np.linspace(0, 1, n_rc)
    for p in preps:
        sel = p.sel
        kt, wt = interp_weights(p.temp, temp_grid)
        kt1 = np.minimum(kt + 1, nt - 1)
        tau1_k = tau1[kt] + wt * (tau1[kt1] - tau1[kt])
        tau2_k = tau2[kt] + wt * (tau2[kt1] - tau2[kt])
        i1 = rc_current(p.current, p.dt, tau1_k if nt > 1 else float(tau1[0]))
        i2 = rc_current(p.current, p.dt, tau2_k if nt > 1 else float(tau2[0]))
        kz, wz = interp_weights(p.soc, zgrid)
        n = len(sel)
        r_idx = offset + np.arange(n)
        root_w = np.sqrt(p.weight)
        corner = [(kt, kz, (1 - wt) * (1 - wz)), (kt1, kz, wt * (1 - wz)), (kt, kz + 1, (1 - wt) * wz), (kt1, kz + 1, wt * wz)]
        for block, signal in enumerate((p.current, i1, i2)):
            for ti, zi, w in corner:
                rows.append(r_idx)
                cols.append(block * n_tab + ti[sel] * n_rc + zi[sel])
                vals.append((root_w * w * signal)[sel])
        saturating = p.current / (1.0 + rn_sat_per_A * np.abs(p.current))
        for block, signal in enumerate((p.s, p.h, saturating)):
            for ti, w in ((kt, 1 - wt), (kt1, wt)):
                rows.append(r_idx)
                cols.append(3 * n_tab + block * nt + ti[sel])
                vals.append((root_w * w * signal)[sel])
        target.append((root_w * p.target)[sel])
        offset += n
    n_cols = 3 * n_tab + 3 * nt
    A = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(offset, n_cols)
    )
    return A, np.concatenate(target)


def _smoothing(nt: int, n_rc: int, weight: float) -> sp.csr_matrix:
    """Second differences along SOC and first differences along T of each table."""
    blocks = []
    eye_t, eye_z = sp.identity(nt), sp.identity(n_rc)
    d2z = sp.diags([1.0, -2.0, 1.0], [0, 1, 2], shape=(n_rc - 2, n_rc))
    blocks.append(sp.kron(eye_t, d2z))
    if nt > 1:
        d1t = sp.diags([-1.0, 1.0], [0, 1], shape=(nt - 1, nt))
        blocks.append(0.3 * sp.kron(d1t, eye_z))
    one = sp.vstack(blocks)
    tables = sp.block_diag([one, one, one])
    return (weight * sp.hstack([tables, sp.csr_matrix((tables.shape[0], 3 * nt))])).tocsr()


def fit_dynamic(
    recordings: list[Recording],
    temp_grid: np.ndarray,
    ocv_V: np.ndarray,
    capacity_Ah: np.ndarray,
    n_rc: int = 11,
    gamma: float = 50.0,
    stride: int = 2,
    smooth_weight: float = 0.05,
    overpotential_weight: float = 0.0,
    rn_sat_per_A: float = 1.0,
) -> DynamicFit:
    """Fit R0, R1, R2 over (T, SOC), tau1, tau2 per T and M0, M, Rn per T."""
    nt = len(temp_grid)
    cap = float(np.mean(capacity_Ah))
    preps = [_prepare(r, ocv_V, temp_grid, cap, gamma, stride) for r in recordings]
    n_tab = nt * n_rc
    hyst_ok, rn_ok = _excited(preps, temp_grid)
    hyst_from, rn_from = _borrow(hyst_ok, temp_grid), _borrow(rn_ok, temp_grid)
    weak = ~(hyst_ok | rn_ok)
    held = {}
    for k in range(nt):
        if hyst_from[k] >= 0:
            held[3 * n_tab + k] = 3 * n_tab + hyst_from[k]
            held[3 * n_tab + nt + k] = 3 * n_tab + nt + hyst_from[k]
        if rn_from[k] >= 0:
            held[3 * n_tab + 2 * nt + k] = 3 * n_tab + 2 * nt + rn_from[k]
    tau1, tau2, x = _fit_pass(preps, temp_grid, n_rc, smooth_weight, rn_sat_per_A, held, weak)
    if overpotential_weight:
        # Refit weighting each sample as the filter will: by 1 / (1 + k eta^2),
        # eta the overpotential the first pass predicts. The model is then
        # most accurate where the filter listens to it, near rest.
        A, _ = _design(preps, tau1, tau2, temp_grid, n_rc, rn_sat_per_A)
        resistive = np.ones(len(x), dtype=bool)
        resistive[3 * nt * n_rc : 3 * nt * n_rc + 2 * nt] = False  # not the hysteresis
        eta = A[:, resistive] @ x[resistive]
        start = 0
        for p in preps:
            n = len(p.sel)
            p.weight[p.sel] = 1.0 / (1.0 + overpotential_weight * eta[start : start + n] ** 2)
            start += n
        tau1, tau2, x = _fit_pass(preps, temp_grid, n_rc, smooth_weight, rn_sat_per_A, held, weak)
    loaded = _seconds_under_load(preps, temp_grid)
    identified = loaded >= IDENTIFIED_MIN_S
    carried_from = np.full(nt, -1)
    if identified.any():
        have = np.flatnonzero(identified)
        n_tab = nt * n_rc
        x = x.copy()
        for k in np.flatnonzero(~identified):
            j = int(have[np.argmin(np.abs(temp_grid[have] - temp_grid[k]))])
            carried_from[k] = j
            for t in range(3):
                x[t * n_tab + k * n_rc : t * n_tab + (k + 1) * n_rc] = x[t * n_tab + j * n_rc : t * n_tab + (j + 1) * n_rc]
            x[3 * n_tab + np.array([0, nt, 2 * nt]) + k] = x[3 * n_tab + np.array([0, nt, 2 * nt]) + j]
            tau1[k], tau2[k] = tau1[j], tau2[j]
    # The residual of the model returned, carried-over temperatures included.
    A, b = _design(preps, tau1, tau2, temp_grid, n_rc, rn_sat_per_A)
    tables = [x[i * n_tab : (i + 1) * n_tab].reshape(nt, n_rc) for i in range(3)]
    m0 = x[3 * n_tab : 3 * n_tab + nt]
    m = x[3 * n_tab + nt : 3 * n_tab + 2 * nt]
    rn = x[3 * n_tab + 2 * nt :]
    resid = A @ x - b
    per_rec: dict[str, float] = {}
    start = 0
    for p in preps:
        n = len(p.sel)
        per_rec[p.name] = float(np.sqrt(np.mean(resid[start : start + n] ** 2)))
        start += n
    return DynamicFit(
        r0_ohm=tables[0], r1_ohm=tables[1], tau1_s=np.repeat(tau1[:, None], n_rc, axis=1),
        r2_ohm=tables[2], tau2_s=np.repeat(tau2[:, None], n_rc, axis=1),
        hyst_m0_V=m0, hyst_m_V=m, rn_ohm=rn, rms_residual_V=float(np.sqrt(np.mean(resid**2))),
        residual_by_recording_V=per_rec, seconds_under_load=loaded, carried_from=carried_from,
        hyst_from=hyst_from, rn_from=rn_from, weak=weak,
    )


def _borrow(ok: np.ndarray, temp_grid: np.ndarray) -> np.ndarray:
    """Per grid temperature, the nearest one that is `ok` when it is not, else -1
    (-1 everywhere when none is: then every one is as fitted)."""
    out = np.full(len(ok), -1)
    have = np.flatnonzero(ok)
    if have.size:
        for k in np.flatnonzero(~ok):
            out[k] = int(have[np.argmin(np.abs(temp_grid[have] - temp_grid[k]))])
    return out


def _seconds_under_load(preps: list[_Prepared], temp_grid: np.ndarray) -> np.ndarray:
    """Per grid temperature, the time with current flowing inside the SOC
    range the fit uses (gaps counted up to a minute), each sample shared between the two grid temperatures its
    measured one lies between."""
    out = np.zeros(len(temp_grid))
    for p in preps:
        on = np.flatnonzero((np.abs(p.current) >= REST_CURRENT_A) & np.isfinite(p.temp) & (p.soc >= 0.0)
                            & (p.soc <= 1.0))
        kt, wt = interp_weights(p.temp[on], temp_grid)
        seconds = np.clip(np.nan_to_num(p.dt[on]), 0.0, 60.0)
        np.add.at(out, kt, seconds * (1.0 - wt))
        np.add.at(out, np.minimum(kt + 1, len(temp_grid) - 1), seconds * wt)
    return out



def _excited(preps: list[_Prepared], temp_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per grid temperature, whether the data near it can tell the hysteresis
    and Rn from the resistances. Under current of one sign only (a capacity
    test), the hysteresis offset M0 s + M h moves with the resistive drop:
    it needs IDENTIFIED_MIN_S both on charge and on discharge. Under one level
    of current, Rn i / (1 + kn |i|) is a resistance like R0: it needs
    IDENTIFIED_MIN_S at a current LEVEL_RATIO away from the median one."""
    nt = len(temp_grid)
    charge, discharge, off_level = np.zeros(nt), np.zeros(nt), np.zeros(nt)
    mags: list[list[np.ndarray]] = [[] for _ in range(nt)]
    parts = []
    for p in preps:
        on = np.flatnonzero((np.abs(p.current) >= REST_CURRENT_A) & np.isfinite(p.temp) & (p.soc >= 0.0)
                            & (p.soc <= 1.0))
        kt, wt = interp_weights(p.temp[on], temp_grid)
        seconds = np.clip(np.nan_to_num(p.dt[on]), 0.0, 60.0)
        near = np.where(wt < 0.5, kt, np.minimum(kt + 1, nt - 1))
        parts.append((p.current[on], near, seconds))
        for k in range(nt):
            mags[k].append(np.abs(p.current[on][near == k]))
    median = np.array([np.median(np.concatenate(m)) if sum(len(x) for x in m) else np.nan for m in mags])
    for i, near, seconds in parts:
        np.add.at(charge, near, seconds * (i > 0))
        np.add.at(discharge, near, seconds * (i < 0))
        ratio = np.abs(i) / median[near]
        np.add.at(off_level, near, seconds * ((ratio > LEVEL_RATIO) | (ratio < 1.0 / LEVEL_RATIO)))
    return (charge >= IDENTIFIED_MIN_S) & (discharge >= IDENTIFIED_MIN_S), off_level >= IDENTIFIED_MIN_S


def _fit_pass(
    preps: list[_Prepared], temp_grid: np.ndarray, n_rc: int, smooth_weight: float, rn_sat_per_A: float,
    held: dict[int, int] | None = None, weak: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time constants by grid search per temperature, then every table jointly.
    `held` maps unknowns the data cannot identify to the one whose value they
    take (its own temperature's, fitted first); `weak` marks the grid
    temperatures whose data cannot split the resistance into its parts."""
    nt = len(temp_grid)
    # For each grid temperature, the pair that fits best the recordings whose
    # mean temperature is nearest to it.
    nearest = [int(np.argmin(np.abs(temp_grid - np.nanmean(p.temp)))) for p in preps]
    tau1 = np.full(nt, 10.0)
    tau2 = np.full(nt, 250.0)
    for ti in range(nt):
        mine = [p for p, n in zip(preps, nearest) if n == ti]
        if not mine:
            continue
        best = (np.inf, tau1[ti], tau2[ti])
        one_t = np.array([temp_grid[ti]])
        for t1, t2 in itertools.product(TAU1_GRID_S, TAU2_GRID_S):
            if t2 <= t1:
                continue
            local = [replace(p, temp=np.full_like(p.temp, temp_grid[ti]), sel=p.sel[::4]) for p in mine]
            A, b = _design(local, np.array([t1]), np.array([t2]), one_t, n_rc, rn_sat_per_A)
            x = bounded_lstsq(A, b, _bounds(1, n_rc))
            resid = A @ x - b
            rest = np.concatenate([np.abs(p.current[p.sel]) < REST_CURRENT_A for p in local])
            # The filter listens hardest at rest, where the slow relaxation
            # shows; the whole-recording error alone barely tells time
            # constants of minutes from hours apart.
            cost = float(np.mean(resid**2)) + (float(np.mean(resid[rest] ** 2)) if rest.any() else 0.0)
            if cost < best[0]:
                best = (cost, t1, t2)
        tau1[ti], tau2[ti] = best[1], best[2]
    # Temperatures no recording was near take their neighbours' values.
    have = np.array(sorted(set(nearest)))
    tau1 = np.interp(temp_grid, temp_grid[have], tau1[have])
    tau2 = np.interp(temp_grid, temp_grid[have], tau2[have])
    # Nor the time constants, where the data cannot split the resistance
    # (a constant-current test gives one step at each end): those of the
    # nearest temperature whose data can.
    if weak is not None:
        src = _borrow(~weak, temp_grid)
        for k in np.flatnonzero(src >= 0):
            tau1[k], tau2[k] = tau1[src[k]], tau2[src[k]]
    A, b = _design(preps, tau1, tau2, temp_grid, n_rc, rn_sat_per_A)
    L = _smoothing(nt, n_rc, smooth_weight * np.sqrt(A.shape[0]) * 1e-2)
    # Solved for y >= 0 with x = P y: at a `weak` temperature the resistances
    # are not lower than at the next warmer one (see _colder_not_lower).
    P = _colder_not_lower(weak if weak is not None else np.zeros(nt, dtype=bool), n_rc, A.shape[1])
    M = (sp.vstack([A, L]) @ P).tocsr()
    rhs = np.concatenate([b, np.zeros(L.shape[0])])
    lo, hi = _bounds(nt, n_rc)
    if not held:
        return tau1, tau2, np.clip(P @ bounded_lstsq(M, rhs, (lo, hi)), lo, hi)
    # The sources first, without the unknowns that borrow from them; then
    # everything else with the borrowed values fixed (P leaves those as they are).
    fixed = np.array(sorted(held))
    free = np.setdiff1d(np.arange(M.shape[1]), fixed)
    y = np.zeros(M.shape[1])
    y[free] = bounded_lstsq(M[:, free], rhs, (lo[free], hi[free]))
    y[fixed] = [y[held[c]] for c in fixed]
    y[free] = bounded_lstsq(M[:, free], rhs - M[:, fixed] @ y[fixed], (lo[free], hi[free]))
    return tau1, tau2, np.clip(P @ y, lo, hi)


def _colder_not_lower(weak: np.ndarray, n_rc: int, n_cols: int) -> sp.csr_matrix:
    """x = P y: at a `weak` grid temperature each of the R0, R1, R2 tables is
    the one at the next warmer temperature plus y's step there (y >= 0 by
    the bounds), at every SOC; every other unknown is y's own. A cell's
    resistances do not fall as it cools (ohmic, charge transfer and
    diffusion alike). Data that cannot split the resistance into its parts
    (a constant-current capacity test, sampled every 10 s) otherwise split
    it at random: R0 came out 0 at 10 °C and 8 mOhm at -10 °C, against 23
    at 25 °C, in the LG HG2 `char` fit."""
    nt = len(weak)
    chain = np.eye(nt)
    for k in range(nt):
        j = k
        while weak[j] and j + 1 < nt:
            j += 1
            chain[k, j] = 1.0
    tables = sp.kron(sp.csr_matrix(chain), sp.identity(n_rc))
    return sp.block_diag([tables, tables, tables, sp.identity(n_cols - 3 * nt * n_rc)]).tocsr()


def bounded_lstsq(A: sp.csr_matrix, b: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """min ||Ax - b|| within bounds, through the normal equations: with
    A'A = R'R the problem is min ||Rx - R'^-1 A'b||, which BVLS solves on a
    matrix as small as the number of unknowns rather than of samples."""
    ata = (A.T @ A).toarray()
    atb = A.T @ b
    ata[np.diag_indices_from(ata)] += 1e-12 * max(float(np.trace(ata)), 1.0) / len(ata)
    R = np.linalg.cholesky(ata).T
    d = np.linalg.solve(R.T, atb)
    # BVLS may land a rounding error outside a bound; the C core refuses that.
    return np.clip(lsq_linear(R, d, bounds=bounds, method="bvls").x, *bounds)


def _bounds(nt: int, n_rc: int) -> tuple[np.ndarray, np.ndarray]:
    n_tab = nt * n_rc
    lo = np.zeros(3 * n_tab + 3 * nt)
    hi = np.concatenate([np.full(3 * n_tab, 2.0), np.full(2 * nt, 0.2), np.full(nt, 2.0)])
    return lo, hi
