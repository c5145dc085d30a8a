"""The C core (float32) against the float64 reference, over random parameter
sets and random input sequences (strategies.py: a few hundred steps, voltages
from a simulated cell plus noise and outliers, currents within +-i_max,
temperatures across and beyond the table, dt 0..60 s including 0, and in
some scenarios a fraction of absurd samples).

Both sides get bit-identical inputs: every parameter and sample is a float32
value, so only the arithmetic differs. Two comparisons, each a pass over the
scenario:

Lock-step (per step, from the same state)
    Before each sample the reference is loaded with the C core's exact state
    (x, P, last current/temperature, hysteresis sign); both take the step.
    What differs is one step of float32 rounding, and the criterion is that
    the C result is the reference result for inputs float32 cannot tell apart
    (backward error): the hull of reference runs with the measured voltage
    moved by +-DV_ULPS = 8 ulp, the OCV slope by +-SLOPE_ULPS = 4 ulp(OCV) x
    (n_ocv - 1), SOC by +-DZ = 4.8e-7 (8 ulp below 1.0) or, within DZ of a
    node of the OCV or RC tables, onto the node from either side (float32
    and float64 may take different cells' slopes there), or the gate by 1e-5,
    plus the two sides of the gate when it lies within +-8 ulp (the update
    turns there: K innov below, PH gate^2/innov above), plus the start P
    moved by +-P_EPS = 8 eps32 per element towards a larger or smaller HPH'.
    Why a hull and not a plain tolerance: the correction multiplies the
    rounding of v_pred (measured: <= 6.4 ulp) by the Kalman gain, which
    reaches 50 SOC/V when SOC and hysteresis are strongly correlated and the
    innovation is microvolts (raw one-step differences seen: 8e-5 in SOC,
    1.5e-3 in h); the slope (hi - lo)*(n-1) of a fine float32 OCV table is
    good to only ~1e-4 relative, and PH = P H can cancel 100-fold on it; at a
    grid node a float32 SOC can sit in the other cell than its float64 twin,
    so H[0] jumps (raw sigma difference seen: 16 %); a gated update sets
    S = innov^2/gate^2, so P depends on the innovation's rounding too; and
    when SOC and hysteresis are 0.999 correlated HPH' is a difference of
    terms 500x larger, so float32 gets S to ~1e-4 only (seen: P_22 off by
    1.2e-3 of itself; the same step emulated in float32 is off by 1.2e-3
    with the core's product form and 3e-4 even with an explicit
    (I-KH) P (I-KH)'), which the P perturbation reproduces.

    * v_pred: |dv| <= TOL_V = 4e-6 V (measured worst 1.2e-6 V, 6.4 ulp).
    * x = [SOC, i_R1, i_R2, h]: within TOL_X = [1e-6, 1e-6 i_max, 1e-6 i_max,
      1e-6] of the hull.
    * sigma within TOL_SIGMA_STEP = 1e-4 relative of the hull, every P_ij
      within TOL_P_STEP = 1e-4 sqrt(P_ii P_jj) of it (raw differences,
      before the hull: typically < 1e-3, 16 % at a node). A stable float32
      update of one step is good to ~1e-6 where nothing cancels.
    * flags: the validation bits (voltage/current/temperature/dt invalid) must
      be identical. GATED and SOC_CLAMPED may differ only if a perturbed run
      reproduces the C bit, or (clamp) both SOCs end within DZ of the same
      bound. COV_REPAIRED may differ only if both covariances sit on the same
      bound (a floor, a ceiling, |corr| = 0.999) to 1e-5 relative: e.g. P_ii
      exactly at its floor, where float64 takes off 1e-20 and float32 cannot.
      Measured: ~5 such borderline flag differences per scenario, all of them
      explained; none unexplained.

Free-running (end to end, forward error)
    C core and reference each run the whole sequence on their own state.
    At every step |dSOC| <= TOL_FREE_SOC + TWIN_FACTOR * spread and relative
    |dsigma| <= TOL_FREE_SIGMA + TWIN_FACTOR * spread_sigma, with
    TOL_FREE_SOC = 1e-4, TOL_FREE_SIGMA = 1e-3, TWIN_FACTOR = 10. Float32
    rounding alone gives ~3e-8 per step in SOC (half an ulp near 1) and the
    innovation rounding above is fed back, so 1e-4 is ~10x the accumulation
    over N <= 400 well-conditioned steps. But some scenarios amplify any
    difference (strongly correlated states, an innovation on the gate, SOC
    dwelling near a node): there "spread" is the largest distance so far of
    two float64 twins from the reference, twins whose state, voltage and OCV
    slope are jittered by float32-sized random amounts every step (Monte
    Carlo arithmetic). It measures what float32 rounding can do in this
    scenario; the C core must stay within 10x of it. Two branch decisions
    depend on the state, and where the C core and the free reference take
    different branches because their states have drifted apart, the step is
    counted (events "ocv_node", "gate") and the reference re-synchronised to
    the C state: the OCV cell (the slope H[0] jumps at every node; measured:
    a 4e-6 SOC difference became 1e-3 in one gated step), and gating.

Measured over ~3,000 random scenarios (core 09000c0, product-form Joseph
update): where the twins stay near 1e-5 the free-running C core stayed
within 6.3e-5 of the reference in SOC; in amplifying scenarios it drifted
up to 2.8e-3 while the twins spread 1.1e-3..1.2e-2; the largest share of
the allowed bound used was 0.40. Node and gate re-synchronisations: ~0.14
and ~0.01 per scenario. Run time: default selection ~9 s, the two slow
variants (600 scenarios each) ~75 s.

Also: init_soc/init_ocv agree (SOC to TOL_INIT_OCV = 1e-5 for init_ocv: 24
bisection steps resolve 3e-8, and the float32 OCV (~1e-6 V) maps to
1e-6/slope in SOC with the strategies' slope floor of 0.1 V per unit SOC;
measured worst 6.6e-7 over 3,000 cases); both refuse non-finite starts;
and the step API and the batch API (bf_soc_ekf_run via run_arrays, split
anywhere) agree bit for bit.

A bug these tests found in the core before 09000c0 is pinned by
test_covariance_update_keeps_float32_precision: the covariance correction
was the expanded Joseph form, which cancels in float32 (one sample: sigma 39 %
off; with random tunings P went indefinite, unflagged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from bmsfil._core import lib
from bmsfil.core import CoreError, SocEstimator, describe_flags
from bmsfil.params import CellParams, FilterTuning, ParameterSet, bundled_params
from bmsfil.reference import ReferenceSocEstimator
from strategies import Scenario, f32, float32_params, parameter_sets, scenarios, start

FLAG_V = lib.BF_FLAG_VOLTAGE_INVALID
FLAG_I = lib.BF_FLAG_CURRENT_INVALID
FLAG_T = lib.BF_FLAG_TEMP_INVALID
FLAG_DT = lib.BF_FLAG_DT_INVALID
FLAG_GATED = lib.BF_FLAG_GATED
FLAG_CLAMPED = lib.BF_FLAG_SOC_CLAMPED
FLAG_REPAIRED = lib.BF_FLAG_COV_REPAIRED
VALIDATION_FLAGS = FLAG_V | FLAG_I | FLAG_T | FLAG_DT

# --- tolerances (see the module docstring) ---------------------------------
TOL_V = 4e-6  # v_pred, volts
DV_ULPS = 8  # voltage perturbation of the hull, ulp of the sample
DZ = 4 * 2.0**-23  # SOC perturbation of the hull: 4.8e-7 (4 ulp just above 1.0, 8 below)
SLOPE_ULPS = 4  # OCV slope perturbation: ulp of the OCV times (n_ocv - 1)
GATE_REL = 1e-5  # gate perturbation for the GATED flag
P_EPS = 8  # start covariance perturbation, eps32 per element, towards larger/smaller HPH'
TOL_X_REL = 1e-6  # x tolerance: SOC and h absolute, i_R1/i_R2 times i_max
TOL_SIGMA_STEP = 1e-4  # sigma, relative, one step
TOL_P_STEP = 1e-4  # P_ij / sqrt(P_ii P_jj), one step
BOUND_REL = 1e-5  # "on a covariance bound" for COV_REPAIRED
TOL_FREE_SOC = 1e-4
TOL_FREE_SIGMA = 1e-3
TWIN_FACTOR = 10.0  # free-running: allowed multiple of the twins' spread
TWIN_REL = 2.0**-24  # twins: relative jitter of every x_i and P_ij per step
TWIN_V_ULPS = 2  # twins: voltage jitter, ulp
TWIN_SLOPE_ULPS = 2  # twins: OCV slope jitter, ulp of the OCV times (n_ocv - 1)
TOL_INIT_OCV = 1e-5

P_MAX_SOC, P_MAX_HYST, CORR_MAX = 1.0, 4.0, 0.999  # soc_ekf.c (RC current variances: i_max^2)

# The default run does not shrink: a failure is reported with the scenario and
# the offending steps as found (shrinking a 400-step scenario through the
# lock-step comparison takes minutes). The slow variants shrink.
FAST = settings(
    max_examples=20, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- state transfer ----------------------------------------------------------


@dataclass
class State:
    x: np.ndarray
    P: np.ndarray
    last_current_A: float
    last_temp_C: float
    hyst_sign: float


def c_state(est: SocEstimator) -> State:
    s = est._state
    return State(
        np.array(list(s.x), dtype=np.float64),
        np.array([list(row) for row in s.P], dtype=np.float64),
        float(s.last_current_A),
        float(s.last_temp_C),
        float(s.hyst_sign),
    )


def ref_state(ref: ReferenceSocEstimator) -> State:
    return State(ref.x.copy(), ref.P.copy(), ref.last_current_A, ref.last_temp_C, ref.hyst_sign)


def set_ref_state(ref: ReferenceSocEstimator, s: State) -> None:
    ref.x, ref.P = s.x.copy(), s.P.copy()
    ref.last_current_A, ref.last_temp_C, ref.hyst_sign = s.last_current_A, s.last_temp_C, s.hyst_sign


class OcvSpy:
    """Records which OCV grid cell the reference's correction used, and how
    far (in SOC) it was from the nearest node of the grid."""

    def __init__(self, ref: ReferenceSocEstimator) -> None:
        self._ocv = ref.model.ocv
        self._n = ref.model.n_ocv
        self.cell: int | None = None
        self.node_distance = math.inf
        ref.model.ocv = self  # instance attribute shadows the method

    def __call__(self, at):
        self.cell = at.k_ocv
        # Distance to the nearest interior node (SOC 0 and 1 are ends, not kinks).
        lower = at.w_ocv if at.k_ocv > 0 else math.inf
        upper = 1.0 - at.w_ocv if at.k_ocv < self._n - 2 else math.inf
        self.node_distance = min(lower, upper) / (self._n - 1)
        return self._ocv(at)


def ulp32(v: float) -> float:
    return float(np.spacing(np.float32(abs(v))))


# --- one step, compared ------------------------------------------------------


@dataclass
class Outcome:
    soc: float
    sigma: float
    v_pred: float
    flags: int
    state: State


def ref_step(ref: ReferenceSocEstimator, start_state: State, row, dv: float = 0.0, dz: float = 0.0,
             slope_ulps: float = 0.0, gate_scale: float = 1.0) -> Outcome:
    """The reference's step from `start_state`, optionally with the measured
    voltage moved by dv, the SOC by dz, the OCV slope by slope_ulps ulp of the
    OCV times (n_ocv - 1) (the float32 rounding of (hi - lo)*(n-1)), or the
    gate scaled."""
    s = replace(start_state)
    if dz:
        s.x = s.x.copy()
        s.x[0] = min(max(s.x[0] + dz, 0.0), 1.0)
    set_ref_state(ref, s)
    tuning = ref.t
    if gate_scale != 1.0:
        ref.t = replace(tuning, gate_sigma=tuning.gate_sigma * gate_scale)
    if slope_ulps:
        model = ref.model
        ocv_fn = model.ocv

        def ocv_moved(at):
            v, slope = ocv_fn(at)
            return v, slope + slope_ulps * ulp32(v) * (model.n_ocv - 1)

        model.ocv = ocv_moved
    try:
        dt, i, v, t = row
        o = ref.step(dt, i, v + dv, t)
    finally:
        ref.t = tuning
        if slope_ulps:
            model.ocv = ocv_fn
    return Outcome(float(o.soc), float(o.soc_sigma), float(o.voltage_pred_V), int(o.flags), ref_state(ref))


def perturbed_runs(ref: ReferenceSocEstimator, s: State, row) -> list[Outcome]:
    """The reference step for inputs float32 cannot tell apart from the real
    ones: the corners of (voltage +-DV_ULPS, OCV slope +-SLOPE_ULPS), SOC
    +-DZ, gate +-GATE_REL, and, if the gate lies between -DV and +DV, the
    two sides of the gate itself. The update is monotone in the innovation
    on either side of the gate but turns there (K innov below, PH gate^2 /
    innov above), so the extremes of that interval sit on the gate."""
    v = row[2]
    runs = []
    dv = DV_ULPS * ulp32(v) if math.isfinite(v) else 0.0
    for sign_v in ((1, -1) if dv else (0,)):
        for slope in (SLOPE_ULPS, -SLOPE_ULPS):
            runs.append(ref_step(ref, s, row, dv=sign_v * dv, slope_ulps=slope))
    runs += [ref_step(ref, s, row, dz=DZ), ref_step(ref, s, row, dz=-DZ)]
    runs += [ref_step(ref, s, row, gate_scale=1 + GATE_REL), ref_step(ref, s, row, gate_scale=1 - GATE_REL)]
    # HPH' can be a small difference of large terms (SOC and hysteresis, or
    # SOC and an RC current, nearly collinear in the measurement): float32
    # computes it as if P were off by a few eps per element. Move the start
    # P by +-P_EPS eps per element in the direction that raises or lowers HPH'.
    # Within DZ of a node of the OCV or RC tables, float32 and float64 may
    # take different cells' slopes for the same SOC: the node itself, from
    # either side, with the SOC not otherwise moved.
    prior = ref_step(ref, s, (row[0], row[1], math.nan, row[3])).state.x[0]
    for n in {ref.model.n_ocv, ref.model.n_rc}:
        j = round(prior * (n - 1))
        node = j / (n - 1)
        if 0 < j < n - 1 and abs(prior - node) <= DZ:  # an inner node: a cell on either side
            runs += [ref_step(ref, s, row, dz=node - prior + side) for side in (-1e-12, 0.0, 1e-12)]
    H = measurement_row(ref, s, row)
    if H is not None:
        push = P_EPS * 2.0**-24 * np.abs(s.P) * np.sign(np.outer(H, H))
        for sign_p in (1, -1):
            moved = replace(s, P=s.P + sign_p * push)
            runs.append(ref_step(ref, moved, row))
    if dv:
        lo, hi = ref_step(ref, s, row, dv=-dv), ref_step(ref, s, row, dv=dv)
        if (lo.flags ^ hi.flags) & FLAG_GATED:
            a, b = -dv, dv
            for _ in range(30):  # bisect the voltage at which the gate flips
                mid = 0.5 * (a + b)
                if (ref_step(ref, s, row, dv=mid).flags ^ lo.flags) & FLAG_GATED:
                    b = mid
                else:
                    a = mid
            runs += [ref_step(ref, s, row, dv=a), ref_step(ref, s, row, dv=b)]
    return runs


def measurement_row(ref: ReferenceSocEstimator, s: State, row) -> np.ndarray | None:
    """H = [dOCV/dSOC, R1, R2, M] where the reference's correction evaluates it
    (after the prediction), or None if there is no correction."""
    prior = ref_step(ref, s, (row[0], row[1], math.nan, row[3]))
    if prior.flags & FLAG_DT:
        return None
    t = row[3] if math.isfinite(row[3]) and -60.0 <= row[3] <= 120.0 else s.last_temp_C
    m = ref.model
    at = m.locate(prior.state.x[0], t)
    return np.array([m.ocv(at)[1], m.rc("r1_ohm", at), m.rc("r2_ohm", at), m.row("hyst_m_V", at)])


def x_tolerance(i_max: float) -> np.ndarray:
    return np.array([TOL_X_REL, TOL_X_REL * i_max, TOL_X_REL * i_max, TOL_X_REL])


def hull_excess(value: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    """How far each element of `value` lies outside [min, max] of the candidates (0 inside)."""
    stack = np.stack(candidates)
    return np.maximum(0.0, np.maximum(stack.min(axis=0) - value, value - stack.max(axis=0)))


def scaled_p_error(Pc: np.ndarray, Pr: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.abs(np.diag(Pr)))
    return np.abs(Pc - Pr) / np.maximum(np.outer(d, d), 1e-300)


def on_same_bound(Pc: np.ndarray, Pr: np.ndarray, tuning, i_max: float) -> bool:
    """Both covariances sit on one of the repair bounds to BOUND_REL."""
    floors = [tuning.p_floor_soc, tuning.p_floor_irc_A2, tuning.p_floor_irc_A2, tuning.p_floor_hyst]
    near = lambda a, b: abs(a - b) <= BOUND_REL * abs(b)  # noqa: E731
    for i, f in enumerate(floors):
        if near(Pc[i, i], f) and near(Pr[i, i], f):
            return True
    irc_max = float(np.float32(i_max) * np.float32(i_max))
    for i, ceiling in enumerate([P_MAX_SOC, irc_max, irc_max, P_MAX_HYST]):
        if near(Pc[i, i], ceiling) and near(Pr[i, i], ceiling):
            return True
    for i in range(4):
        for j in range(i + 1, 4):
            cc = abs(Pc[i, j]) / math.sqrt(Pc[i, i] * Pc[j, j])
            cr = abs(Pr[i, j]) / math.sqrt(Pr[i, i] * Pr[j, j])
            if near(cc, CORR_MAX) and near(cr, CORR_MAX):
                return True
    return False


@dataclass
class Comparison:
    scenario: Scenario
    state_failures: list[str] = field(default_factory=list)
    covariance_failures: list[str] = field(default_factory=list)
    free_soc_failures: list[str] = field(default_factory=list)
    free_sigma_failures: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=lambda: {"ocv_node": 0, "gate": 0, "borderline_flags": 0})
    worst: dict[str, float] = field(default_factory=dict)
    worst_at: dict[str, int] = field(default_factory=dict)
    step: int = 0

    def note(self, name: str, value: float) -> None:
        if value > self.worst.get(name, 0.0):
            self.worst[name] = float(value)
            self.worst_at[name] = self.step

    def n_failures(self) -> int:
        return sum(map(len, (self.state_failures, self.covariance_failures, self.free_soc_failures,
                             self.free_sigma_failures)))


def _diagnosis(ref: ReferenceSocEstimator, s: State, row, after: Outcome) -> str:
    """How much the correction shrank each variance: a covariance update that
    subtracts prior-sized terms to get the posterior (the expanded Joseph form
    the core used before 09000c0) loses eps32 * prior/posterior."""
    prior = ref_step(ref, s, (row[0], row[1], math.nan, row[3]))
    shrink = np.diag(prior.state.P) / np.maximum(np.diag(after.state.P), 1e-300)
    k = int(np.argmax(shrink))
    text = f"the correction shrank P_{k}{k} by {shrink[k]:.3g}x (prior {prior.state.P[k, k]:.3g}, posterior {after.state.P[k, k]:.3g})"
    if shrink[k] * 2.0**-24 > TOL_SIGMA_STEP / 10:
        text += (
            f"; an update that cancels prior-sized terms would be off by ~eps32 * {shrink[k]:.3g} = "
            f"{shrink[k] * 2.0**-24:.2g} relative here (is the covariance correction still the product-form Joseph?)"
        )
    return text


def lockstep(sc: Scenario, max_failures: int = 3) -> Comparison:
    """Step the C core through the scenario; before every sample load the
    reference with the C state and compare the two results of that one step."""
    params = sc.params
    out = Comparison(sc)
    i_max = float(params.cell.i_max_A)
    tol_x = x_tolerance(i_max)
    core = SocEstimator(params)
    lock = ReferenceSocEstimator(params)
    scratch = ReferenceSocEstimator(params)
    start(core, sc)

    for k, row in enumerate(sc.rows()):
        out.step = k
        before = c_state(core)
        ref = ref_step(lock, before, row)
        r = core.step(*row)
        after = c_state(core)
        where = f"step {k} {row} from the C state x={before.x.tolist()}"

        # v_pred
        if not r.flags & FLAG_DT:
            dv = abs(r.voltage_pred_V - ref.v_pred)
            out.note("lock_v", dv)
            out.note("lock_v_ulps", dv / ulp32(ref.v_pred))
            if dv > TOL_V:
                out.state_failures.append(f"{where}: v_pred C {r.voltage_pred_V!r} vs reference {ref.v_pred!r}")

        # state x, against the reference and, where that is not enough, the
        # hull of the reference under float32-sized perturbations
        dx = np.abs(after.x - ref.state.x)
        out.note("lock_soc", dx[0])
        out.note("lock_irc_per_imax", max(dx[1], dx[2]) / i_max)
        out.note("lock_h", dx[3])
        sig_err = abs(r.soc_sigma / ref.sigma - 1.0)
        p_err = float(scaled_p_error(after.P, ref.state.P).max())
        out.note("lock_sigma_rel", sig_err)
        out.note("lock_P_scaled", p_err)
        runs: list[Outcome] = []
        if (dx > tol_x).any() or sig_err > TOL_SIGMA_STEP or p_err > TOL_P_STEP or r.flags != ref.flags:
            runs = [ref] + perturbed_runs(scratch, before, row)
        x_resid = hull_excess(after.x, [o.state.x for o in runs]) if runs else dx
        if (x_resid > tol_x).any():
            lo, hi = np.min([o.state.x for o in runs], 0), np.max([o.state.x for o in runs], 0)
            out.state_failures.append(
                f"{where}: x C {after.x.tolist()} vs reference {ref.state.x.tolist()}; the reference "
                f"under float32-sized perturbations spans {lo.tolist()} .. {hi.tolist()} (+- {tol_x.tolist()})"
            )

        # flags
        if (r.flags ^ ref.flags) & VALIDATION_FLAGS:
            out.state_failures.append(
                f"{where}: validation flags C {describe_flags(r.flags)} vs reference {describe_flags(ref.flags)}"
            )
        for bit in (FLAG_GATED, FLAG_CLAMPED):
            if not (r.flags ^ ref.flags) & bit:
                continue
            on_bound = bit == FLAG_CLAMPED and any(
                abs(after.x[0] - b) <= DZ and abs(ref.state.x[0] - b) <= DZ for b in (0.0, 1.0)
            )
            if on_bound or any(not (o.flags ^ r.flags) & bit for o in runs):
                out.events["borderline_flags"] += 1
            else:
                out.state_failures.append(
                    f"{where}: flag {describe_flags(bit)}: C {describe_flags(r.flags)} vs reference "
                    f"{describe_flags(ref.flags)}, not reproduced under any float32-sized perturbation"
                )

        # covariance, likewise against the hull
        d = np.sqrt(np.abs(np.diag(ref.state.P)))
        if runs:
            sig_resid = float(hull_excess(np.array([r.soc_sigma]), [np.array([o.sigma]) for o in runs])[0]) / ref.sigma
            p_resid = float((hull_excess(after.P, [o.state.P for o in runs]) / np.maximum(np.outer(d, d), 1e-300)).max())
        else:
            sig_resid, p_resid = sig_err, p_err
        out.note("lock_sigma_resid", sig_resid)
        out.note("lock_P_resid", p_resid)
        if sig_resid > TOL_SIGMA_STEP or p_resid > TOL_P_STEP:
            out.covariance_failures.append(
                f"{where}: sigma C {r.soc_sigma!r} vs reference {ref.sigma!r} (relative {sig_err:.3g}, "
                f"{sig_resid:.3g} outside the perturbed runs), largest P_ij error {p_err:.3g} of sqrt(P_ii P_jj) "
                f"({p_resid:.3g} outside); " + _diagnosis(scratch, before, row, ref)
            )
        if (r.flags ^ ref.flags) & FLAG_REPAIRED:
            if on_same_bound(after.P, ref.state.P, params.filter, i_max):
                out.events["borderline_flags"] += 1
            else:
                out.covariance_failures.append(
                    f"{where}: cov_repaired: C {bool(r.flags & FLAG_REPAIRED)} vs reference "
                    f"{bool(ref.flags & FLAG_REPAIRED)} with no covariance bound active in both "
                    f"(diag P: C {np.diag(after.P).tolist()}, reference {np.diag(ref.state.P).tolist()}); "
                    + _diagnosis(scratch, before, row, ref)
                )
        if out.n_failures() >= max_failures:
            break
    return out


class Twin:
    """A float64 reference whose state, measured voltage and OCV slope are
    perturbed by float32-sized random amounts every step (Monte Carlo
    arithmetic): its distance from the unperturbed reference is how much
    float32 rounding alone moves this scenario's result."""

    def __init__(self, params, rng: np.random.Generator) -> None:
        self.ref = ReferenceSocEstimator(params)
        self.rng = rng
        model = self.ref.model
        ocv_fn = model.ocv

        def ocv_jittered(at):
            v, slope = ocv_fn(at)
            return v, slope + TWIN_SLOPE_ULPS * ulp32(v) * (model.n_ocv - 1) * self.rng.uniform(-1, 1)

        model.ocv = ocv_jittered

    def step(self, row):
        ref, u = self.ref, self.rng.uniform
        ref.x = ref.x * (1 + TWIN_REL * u(-1, 1, 4))
        noise = TWIN_REL * u(-1, 1, (4, 4))
        ref.P = ref.P * (1 + 0.5 * (noise + noise.T))
        dt, i, v, t = row
        return ref.step(dt, i, v + TWIN_V_ULPS * ulp32(v) * u(-1, 1) if math.isfinite(v) else v, t)


def free_running(sc: Scenario, max_failures: int = 3, twins: int = 2) -> Comparison:
    """Run the C core and the reference each on its own state; compare every
    step against TOL_FREE_* plus TWIN_FACTOR x the spread of float32-perturbed
    twins, and re-synchronise at OCV grid nodes (see the module docstring)."""
    params = sc.params
    out = Comparison(sc)
    core = SocEstimator(params)
    free = ReferenceSocEstimator(params)
    lock = ReferenceSocEstimator(params)  # the reference from the C state: which OCV cell would it use?
    free_spy, lock_spy = OcvSpy(free), OcvSpy(lock)
    rng = np.random.default_rng(20240601)
    ensemble = [Twin(params, rng) for _ in range(twins)]
    for est in [core, free] + [t.ref for t in ensemble]:
        start(est, sc)
    spread_soc = spread_sigma = 0.0

    for k, row in enumerate(sc.rows()):
        out.step = k
        lock_spy.cell = free_spy.cell = None
        lock_spy.node_distance = math.inf
        ref_step(lock, c_state(core), row)
        r = core.step(*row)
        fo = free.step(*row)
        outs = [t.step(row) for t in ensemble]
        # Within DZ of a node, float32 may put the C state on the other side
        # than the reference loaded with it: ambiguous, treated as a crossing.
        node = lock_spy.cell is not None and free_spy.cell is not None and (
            lock_spy.cell != free_spy.cell or lock_spy.node_distance <= DZ
        )
        gate = (r.flags ^ fo.flags) & FLAG_GATED
        if node or gate:
            # The two filters took different branches because their states
            # have drifted apart: different OCV grid cells (slopes H[0]) on
            # either side of a node, or one innovation inside the gate and
            # the other outside. Compare from here on anew.
            out.events["ocv_node" if node else "gate"] += 1
            synced = c_state(core)
            for est in [free] + [t.ref for t in ensemble]:
                set_ref_state(est, synced)
            spread_soc = spread_sigma = 0.0
            continue
        soc_f, sigma_f = float(fo.soc), float(fo.soc_sigma)
        spread_soc = max([spread_soc] + [abs(float(o.soc) - soc_f) for o in outs])
        spread_sigma = max([spread_sigma] + [abs(float(o.soc_sigma) / sigma_f - 1.0) for o in outs])
        dsoc = abs(r.soc - soc_f)
        dsig = abs(r.soc_sigma / sigma_f - 1.0)
        out.note("free_soc", dsoc)
        out.note("free_sigma_rel", dsig)
        out.note("twin_spread_soc", spread_soc)
        out.note("twin_spread_sigma", spread_sigma)
        out.note("free_soc_beyond_spread", dsoc / (TOL_FREE_SOC + TWIN_FACTOR * spread_soc))
        if dsoc > TOL_FREE_SOC + TWIN_FACTOR * spread_soc:
            hint = ""
            if out.worst.get("free_sigma_rel", 0.0) > TOL_FREE_SIGMA:
                hint = (
                    f"; NB sigma already differed by {out.worst['free_sigma_rel']:.3g} relative at step "
                    f"{out.worst_at['free_sigma_rel']}, so the gains differ (see test_lockstep_covariance)"
                )
            out.free_soc_failures.append(
                f"step {k} {row}: SOC C {r.soc!r} vs reference {soc_f!r} (|d| {dsoc:.3g}); float32-perturbed "
                f"twins moved it by at most {spread_soc:.3g}" + hint
            )
        if (r.flags ^ fo.flags) & VALIDATION_FLAGS:
            out.free_soc_failures.append(
                f"step {k} {row}: validation flags C {describe_flags(r.flags)} vs reference {describe_flags(fo.flags)}"
            )
        if dsig > TOL_FREE_SIGMA + TWIN_FACTOR * spread_sigma:
            out.free_sigma_failures.append(
                f"step {k} {row}: sigma C {r.soc_sigma!r} vs reference {sigma_f!r} (relative {dsig:.3g}); "
                f"float32-perturbed twins moved it by at most {spread_sigma:.3g} relative"
            )
        if out.n_failures() >= max_failures:
            break
    return out


def explain(c: Comparison, failures: list[str], what: str) -> str:
    sc = c.scenario
    return (
        f"{what}: {len(failures)} violation(s) in {sc.describe()}\n"
        f"  filter tuning: {sc.params.filter}\n  "
        + "\n  ".join(failures[:3])
    )


# --- a bug these tests found (fixed in 09000c0), pinned down ----------------


def joseph_reproducer() -> Scenario:
    """A plain cell (linear OCV 3.0..4.2 V, 20/10/10 mOhm, no hysteresis), SOC
    unknown at the start (p0_soc = 0.1) and a good voltmeter (1 mV at 1 s):
    one rested sample 60 s later shrinks P_00 ~1e7-fold."""
    table = lambda v: np.full((1, 2), v)  # noqa: E731
    cell = CellParams(
        temp_C=[25.0], ocv_V=[[3.0, 4.2]], r0_ohm=table(0.02), r1_ohm=table(0.01), tau1_s=table(10.0),
        r2_ohm=table(0.01), tau2_s=table(1000.0), capacity_Ah=[3.0], hyst_m0_V=[0.0], hyst_m_V=[0.0],
        hyst_gamma=[0.0], nominal_capacity_Ah=3.0,
    )
    tuning = FilterTuning(
        p0_soc=0.1, r_voltage_V2_s=1e-6, r_overpotential_rel2_s=0.0, q_irc_A2_per_s=0.0, p0_irc_A2=1e-8,
        p0_hyst=1e-8, p_floor_soc=1e-12, p_floor_irc_A2=1e-12, p_floor_hyst=1e-12,
    )
    params = float32_params(ParameterSet("joseph-reproducer", cell, tuning, {}))
    one = lambda value: np.array([float(value)])  # noqa: E731
    return Scenario(params, ("soc", 0.5, 25.0), one(60.0), one(0.0), one(f32(3.61)), one(25.0), one(0.5))


def test_covariance_update_keeps_float32_precision():
    """REGRESSION of a bug these tests found (soc_ekf.c before 09000c0): the
    covariance correction P + (-K PH' - PH K' + K K' (HPH'+R)), the expanded
    Joseph form, subtracts numbers of the size of the prior to get the
    posterior, so its float32 error is eps32 * prior/posterior. On this
    sample it left sigma 39 % too large (1.50e-4 vs 1.08e-4); with random
    tunings it also left P with a negative eigenvalue, unflagged. The product
    form (I-KH) P (I-KH)' + K R K' now used is good to ~1e-8 here."""
    sc = joseph_reproducer()
    core, ref = SocEstimator(sc.params), ReferenceSocEstimator(sc.params)
    start(core, sc)
    start(ref, sc)
    row = next(iter(sc.rows()))
    rc, rr = core.step(*row), ref.step(*row)
    eig_c, eig_r = np.linalg.eigvalsh(core.P).min(), np.linalg.eigvalsh(ref.P).min()
    rel = rc.soc_sigma / rr.soc_sigma - 1.0
    problems = []
    if abs(rel) > TOL_SIGMA_STEP:
        problems.append(f"sigma C {rc.soc_sigma!r} vs reference {rr.soc_sigma!r} (relative {rel:.3g})")
    if not eig_c > 0:
        problems.append(
            f"C covariance not positive definite: smallest eigenvalue {eig_c:.3g} (reference {eig_r:.3g}), "
            f"flags {describe_flags(rc.flags)}"
        )
    ls = lockstep(sc)
    assert not problems, (
        "float32 covariance update loses precision (expanded Joseph form): " + "; ".join(problems)
        + "\n  " + "\n  ".join(ls.covariance_failures[:1])
    )


# --- the tests ----------------------------------------------------------------


def _assert_clean(c: Comparison, kind: str, what: str) -> None:
    failures = getattr(c, kind)
    assert not failures, explain(c, failures, what)


def ocv_node_reproducer() -> Scenario:
    """Found by test_lockstep_many: the predicted SOC lands within 1e-8 of an
    OCV table node, where float32 takes the upper cell's slope and float64
    the lower's; with q = 0 and a 1 uV voltmeter the correction amplifies
    the difference (4e-5 in SOC, 4e-3 in h). Three samples."""
    return Scenario.from_json((Path(__file__).parent / "data" / "lockstep_ocv_node.json").read_text())


@FAST
@example(sc=ocv_node_reproducer())  # the OCV-node regression of the hull
@given(sc=scenarios())
def test_lockstep_state_and_flags(sc):
    """From the same state, the C step gives the reference's v_pred, state and
    flags up to float32 rounding."""
    _assert_clean(lockstep(sc), "state_failures", "C step vs reference step from the same state")


@FAST
@example(sc=joseph_reproducer())  # the expanded-Joseph regression
@given(sc=scenarios())
def test_lockstep_covariance(sc):
    """From the same state, the C step gives the reference's sigma and P up to
    float32 rounding (TOL_SIGMA_STEP, TOL_P_STEP of the perturbed hull)."""
    _assert_clean(lockstep(sc), "covariance_failures", "C covariance vs reference covariance, one step")


@FAST
@given(sc=scenarios())
def test_free_running_soc(sc):
    """Run on their own, C core and reference agree on SOC (and on the
    validation flags) at every step."""
    _assert_clean(free_running(sc), "free_soc_failures", "free-running SOC, C vs reference")


@FAST
@example(sc=joseph_reproducer())  # the expanded-Joseph regression
@given(sc=scenarios())
def test_free_running_sigma(sc):
    """Run on their own, C core and reference agree on sigma at every step."""
    _assert_clean(free_running(sc), "free_sigma_failures", "free-running sigma, C vs reference")


@pytest.mark.slow
@SLOW
@given(sc=scenarios())
def test_lockstep_many(sc):
    c = lockstep(sc)
    _assert_clean(c, "state_failures", "C step vs reference step from the same state")
    _assert_clean(c, "covariance_failures", "C covariance vs reference covariance, one step")


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="known divergence, not yet explained: with q = 0 and SOC pinned at the 0 clamp by voltages below "
    "OCV(0), a weakly observable slow RC current (R2 = 1 mOhm, tau2 ~ 3000 s) drifts apart between float32 and "
    "float64 until it hits its i_max clamp, and SOC follows by ~1e-4 (found by this test in CI runs; the "
    "lock-step test_lockstep_many passes on the same scenarios)",
)
@settings(SLOW, phases=[Phase.explicit, Phase.reuse, Phase.generate])  # no shrinking of the known divergence:
@given(sc=scenarios())                                                # it took most of this test's 200 s in CI
def test_free_running_many(sc):
    c = free_running(sc)
    _assert_clean(c, "free_soc_failures", "free-running SOC, C vs reference")
    _assert_clean(c, "free_sigma_failures", "free-running sigma, C vs reference")


def _ocv_probe(params, frac: float) -> float:
    lo, hi = float(params.cell.ocv_V.min()), float(params.cell.ocv_V.max())
    return f32(lo - 0.3 + frac * (hi - lo + 0.6))


@settings(max_examples=60, deadline=None)
@given(
    params=parameter_sets(),
    frac=st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0])),
    temp=st.one_of(st.floats(-80.0, 140.0).map(f32), st.sampled_from([-300.0, 1e6, -60.0, 120.0])),
)
def test_init_ocv_matches_reference(params, frac, temp):
    """init_ocv: the OCV inversion agrees to TOL_INIT_OCV, across and beyond the
    OCV table and the temperature table; the rest of the state is identical."""
    v = _ocv_probe(params, frac)
    core, ref = SocEstimator(params), ReferenceSocEstimator(params)
    cell = params.cell
    if not cell.v_min_V - 0.5 <= v <= cell.v_max_V + 0.5:  # no voltage the cell can have: both refuse it
        for est in (core, ref):
            with pytest.raises(CoreError, match="out of range"):
                est.init_ocv(v, temp)
        return
    core.init_ocv(v, temp)
    ref.init_ocv(v, temp)
    assert abs(core.x[0] - ref.x[0]) <= TOL_INIT_OCV, (
        f"init_ocv({v!r}, {temp!r}): SOC C {core.x[0]!r} vs reference {ref.x[0]!r}"
    )
    assert np.array_equal(core.x[1:], ref.x[1:]) and np.array_equal(core.P, f32(ref.P))
    s = c_state(core)
    assert (s.last_temp_C, s.last_current_A, s.hyst_sign) == (f32(ref.last_temp_C), ref.last_current_A, ref.hyst_sign)


@settings(max_examples=60, deadline=None)
@given(
    params=parameter_sets(),
    soc=st.one_of(st.floats(-2.0, 3.0).map(f32), st.sampled_from([0.0, 1.0, -1e30, 1e30])),
    temp=st.one_of(st.floats(-80.0, 140.0).map(f32), st.sampled_from([math.nan, math.inf, -300.0, 1e6])),
)
def test_init_soc_matches_reference(params, soc, temp):
    """init_soc: identical state (SOC clamped to [0, 1], temperature clamped or 25 degC if not finite)."""
    core, ref = SocEstimator(params), ReferenceSocEstimator(params)
    core.init_soc(soc, temp)
    ref.init_soc(soc, temp)
    a, b = c_state(core), ref_state(ref)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.P, f32(b.P))
    assert (a.last_temp_C, a.last_current_A, a.hyst_sign) == (f32(b.last_temp_C), b.last_current_A, b.hyst_sign)


@pytest.mark.parametrize("call, args", [
    ("init_soc", (math.nan, 25.0)),
    ("init_soc", (math.inf, 25.0)),
    ("init_soc", (-math.inf, 25.0)),
    ("init_ocv", (math.nan, 25.0)),
    ("init_ocv", (math.inf, 25.0)),
    ("init_ocv", (0.0, 25.0)),  # a voltage the cell cannot have
    ("init_ocv", (9.9, 25.0)),
    ("init_ocv", (3.7, math.nan)),
    ("init_ocv", (3.7, -math.inf)),
])
def test_init_rejects_non_finite_like_the_core(call, args):
    """Non-finite starting values: the core returns BF_E_RANGE (CoreError) and
    keeps its state; so must the reference (it used to start from NaN)."""
    params = float32_params(bundled_params())
    for est in (SocEstimator(params), ReferenceSocEstimator(params)):
        est.init_soc(0.5, 25.0)
        with pytest.raises(CoreError, match="out of range"):
            getattr(est, call)(*args)
        assert est.x[0] == 0.5


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sc=scenarios(bad_fractions=st.sampled_from([0.0, 0.02, 0.2])), cuts=st.lists(st.integers(0, 400), max_size=3))
def test_step_api_matches_batch_api_bit_for_bit(sc, cuts):
    """bf_soc_ekf_step one sample at a time and bf_soc_ekf_run over arrays
    (split anywhere, continuing from the state) give identical bits."""
    stepper, batch = SocEstimator(sc.params), SocEstimator(sc.params)
    start(stepper, sc)
    start(batch, sc)
    steps = [stepper.step(*row) for row in sc.rows()]
    bounds = [0] + sorted(min(c, len(sc)) for c in cuts) + [len(sc)]
    parts = [
        batch.run_arrays(sc.dt_s[a:b], sc.current_A[a:b], sc.voltage_V[a:b], sc.temp_C[a:b])
        for a, b in zip(bounds[:-1], bounds[1:])
    ]
    soc = np.concatenate([p.soc for p in parts])
    sigma = np.concatenate([p.soc_sigma for p in parts])
    flags = np.concatenate([p.flags for p in parts])
    assert np.array_equal(soc, [s.soc for s in steps]), "SOC differs between step and run"
    assert np.array_equal(sigma, [s.soc_sigma for s in steps]), "sigma differs between step and run"
    assert np.array_equal(flags, [s.flags for s in steps]), "flags differ between step and run"
    a, b = c_state(stepper), c_state(batch)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.P, b.P)
    assert (a.last_current_A, a.last_temp_C, a.hyst_sign) == (b.last_current_A, b.last_temp_C, b.hyst_sign)
