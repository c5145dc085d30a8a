"""Shared hypothesis strategies for the estimator tests.

Everything here is *physically valid* and *exactly representable in float32*:
the C core stores its parameters and takes its inputs as float32, so handing
the float64 reference the very same float32 values leaves only the arithmetic
of the two filters to compare (not the rounding of their inputs).

Big tables and long input sequences are not drawn value by value (that would
overrun hypothesis' buffer and make shrinking hopeless); hypothesis draws the
structure and the knobs that matter (sizes, scales, noise levels, fractions of
bad samples) plus one seed, and numpy fills in the bulk from that seed. A
failing example is therefore reproducible from what hypothesis prints.

Strategies
----------
cell_params()        random CellParams: 1..8 ascending temperatures, strictly
                     increasing OCV rows of 2..101 points between 2.5 and 4.3 V
                     (slope >= 0.1 V per unit SOC everywhere, see below),
                     resistances 1e-3..0.5 ohm, taus 0.5..5000 s, capacities
                     0.5..100 Ah, hysteresis, current-dependent resistance
                     Rn i/(1 + kn|i|), coulombic efficiency.
filter_tunings()     random FilterTuning within sane ranges (all the C core's
                     positivity requirements met).
parameter_sets()     ParameterSet of the two.
scenarios(...)       a parameter set plus a start (init_soc or init_ocv) and an
                     input sequence (dt, current, voltage, temperature) from a
                     simulated cell: voltages are the model's terminal voltage
                     of the simulated cell plus noise and the odd outlier,
                     currents within +-i_max, temperatures across and beyond
                     the table, dt from 0 to 60 s including 0; optionally a
                     fraction of samples replaced by absurd values.
bad_values           the absurd values used for fault injection.

The OCV slope floor (0.1 V per unit SOC) keeps the OCV inversion of init_ocv
well conditioned: float32 evaluates the OCV to ~1e-6 V, which maps to
1e-6/slope in SOC. Flat-plateau chemistries (LFP, ~0.05 V) are outside this.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from bmsfil.params import CellParams, FilterTuning, ParameterSet
from bmsfil.reference import CellModel, sign

TEMP_MIN_C, TEMP_MAX_C = -60.0, 120.0  # the core's sensor-fault limits (soc_ekf.c)


def f32(x):
    """Round to float32 and come back as float64 (arrays) or float (scalars)."""
    with np.errstate(over="ignore"):  # beyond float32's range is inf, as in C
        if np.ndim(x) == 0:
            return float(np.float32(x))
        return np.asarray(x, dtype=np.float64).astype(np.float32).astype(np.float64)


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """float32-representable value, log-uniform in [lo, hi]."""
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: f32(10.0**e))


def maybe_zero(s: st.SearchStrategy[float]) -> st.SearchStrategy[float]:
    return st.one_of(st.just(0.0), s)


# ---------------------------------------------------------------------------
# Cell parameters


def _ocv_row(rng: np.random.Generator, n: int) -> np.ndarray:
    """Strictly increasing OCV over n uniform SOC points, inside [2.5, 4.3] V,
    slope at least 0.1 V per unit SOC."""
    span = rng.uniform(0.5, 1.8)
    v0 = rng.uniform(2.5, 4.3 - span)
    w = np.exp(rng.uniform(-0.8, 0.8, size=n - 1))  # max/min weight ratio <= e^1.6 ~ 5
    steps = span * w / w.sum()  # slope = steps*(n-1) >= span/5 >= 0.1 V/SOC
    row = v0 + np.concatenate([[0.0], np.cumsum(steps)])
    return f32(np.minimum(row, 4.3))


def _table(rng: np.random.Generator, shape: tuple[int, int], scale: float, spread: float, lo: float, hi: float):
    return f32(np.clip(scale * np.exp(rng.uniform(-spread, spread, size=shape)), lo, hi))


@st.composite
def cell_params(draw: st.DrawFn, max_temps: int = 8) -> CellParams:
    nt = draw(st.integers(1, max_temps))
    n_ocv = draw(st.one_of(st.sampled_from([2, 3, 11, 21, 101]), st.integers(2, 101)))
    n_rc = draw(st.one_of(st.sampled_from([2, 11, 21]), st.integers(2, 21)))
    # Temperatures: multiples of 0.5 degC (exact in float32), 1..30 degC apart.
    t0 = draw(st.integers(-80, 60)) / 2.0
    steps = draw(st.lists(st.integers(2, 60), min_size=nt - 1, max_size=nt - 1))
    temps = t0 + np.concatenate([[0.0], np.cumsum(np.asarray(steps, dtype=float) / 2.0)])
    # Resistances as overpotential per C-rate (V per C), so that a 100 Ah cell
    # gets milliohms and a 0.5 Ah cell tenths of an ohm; clipped to 1e-3..0.5 ohm.
    r0_vc = draw(log_uniform(2e-3, 0.1))
    r1_vc = draw(log_uniform(1e-3, 0.05))
    r2_vc = draw(log_uniform(1e-3, 0.05))
    tau1 = draw(log_uniform(0.5, 200.0))
    tau2 = draw(log_uniform(5.0, 5000.0))
    spread = draw(st.sampled_from([0.0, 0.3, 1.0]))
    cap = draw(log_uniform(0.5, 100.0))
    m0 = draw(st.floats(0.0, 0.03))
    m = draw(st.floats(0.0, 0.1))
    gamma = draw(st.floats(0.0, 500.0))
    eta = draw(st.one_of(st.just(1.0), st.floats(0.9, 1.0).map(f32)))
    rn_vc = draw(st.one_of(st.just(0.0), log_uniform(1e-3, 0.1)))  # current-dependent Rn, V per C at i -> 0
    rn_sat_c = draw(st.one_of(st.just(0.0), log_uniform(0.01, 10.0)))  # kn, per C-rate
    i_max_c = draw(st.floats(1.0, 20.0))  # i_max as a C-rate (capped below)
    seed = draw(st.integers(0, 2**32 - 1))

    rng = np.random.default_rng(seed)
    r0, r1, r2, rn = r0_vc / cap, r1_vc / cap, r2_vc / cap, rn_vc / cap
    ocv = np.stack([_ocv_row(rng, n_ocv) for _ in range(nt)])
    shape = (nt, n_rc)
    capacity = f32(np.clip(cap * rng.uniform(0.8, 1.05, size=nt), 0.5, 100.0))
    # v_min/v_max on a 1/64 V grid: exact in float32, and so is +-0.5 V margin.
    v_min = math.floor(float(ocv.min()) * 64.0) / 64.0 - rng.integers(0, 16) / 64.0
    v_max = math.ceil(float(ocv.max()) * 64.0) / 64.0 + rng.integers(0, 16) / 64.0
    tables = {
        "r0_ohm": _table(rng, shape, r0, spread, 1e-3, 0.5),
        "r1_ohm": _table(rng, shape, r1, spread, 1e-3, 0.5),
        "tau1_s": _table(rng, shape, tau1, spread, 0.5, 5000.0),
        "r2_ohm": _table(rng, shape, r2, spread, 1e-3, 0.5),
        "tau2_s": _table(rng, shape, tau2, spread, 0.5, 5000.0),
    }
    rn_row = f32(np.clip(rn * rng.uniform(0.2, 1.0, size=nt), 0.0, 0.5))
    # i_max such that the largest possible overpotential stays below 2 V.
    r_sum = float((tables["r0_ohm"] + tables["r1_ohm"] + tables["r2_ohm"]).max() + rn_row.max())
    i_max = min(i_max_c * float(capacity.max()), 2.0 / r_sum)
    return CellParams(
        temp_C=temps,
        ocv_V=ocv,
        **tables,
        capacity_Ah=capacity,
        hyst_m0_V=f32(m0 * rng.uniform(0.5, 1.0, size=nt)),
        hyst_m_V=f32(m * rng.uniform(0.5, 1.0, size=nt)),
        hyst_gamma=f32(gamma * rng.uniform(0.5, 1.0, size=nt)),
        eta_charge=eta,
        v_min_V=v_min,
        v_max_V=v_max,
        i_max_A=f32(i_max),
        nominal_capacity_Ah=float(capacity.max()),
        rn_ohm=rn_row,
        rn_sat_per_A=f32(rn_sat_c / cap),
    )


@st.composite
def filter_tunings(draw: st.DrawFn) -> FilterTuning:
    """FilterTuning within sane ranges; all float32-representable and accepted by
    bf_soc_ekf_tuning_check (positive where the core needs > 0)."""
    return FilterTuning(
        q_soc_per_s=draw(maybe_zero(log_uniform(1e-12, 1e-6))),
        q_irc_A2_per_s=draw(maybe_zero(log_uniform(1e-8, 1e-1))),
        q_hyst_per_s=draw(maybe_zero(log_uniform(1e-9, 1e-3))),
        r_voltage_V2_s=draw(log_uniform(1e-6, 1e-2)),
        r_overpotential_rel2_s=draw(maybe_zero(log_uniform(1e-4, 1.0))),
        r_dt_min_s=draw(log_uniform(1e-3, 1.0)),
        p0_soc=draw(log_uniform(1e-6, 1e-1)),
        p0_soc_ocv=draw(log_uniform(1e-6, 1e-1)),
        p0_irc_A2=draw(log_uniform(1e-6, 1.0)),
        p0_hyst=draw(log_uniform(1e-4, 1.0)),
        p_floor_soc=draw(log_uniform(1e-12, 1e-7)),
        p_floor_irc_A2=draw(log_uniform(1e-12, 1e-6)),
        p_floor_hyst=draw(log_uniform(1e-12, 1e-6)),
        gate_sigma=draw(st.floats(1.0, 10.0).map(f32)),
        hyst_current_A=draw(maybe_zero(log_uniform(1e-3, 1.0))),
        dt_max_s=draw(st.one_of(st.just(3600.0), log_uniform(30.0, 36000.0))),
        hold_sigma_c_rate=draw(maybe_zero(log_uniform(1e-3, 10.0))),
    )


def parameter_sets(tunings: st.SearchStrategy[FilterTuning] | None = None) -> st.SearchStrategy[ParameterSet]:
    return st.builds(
        lambda cell, tuning: ParameterSet(name="hypothesis", cell=cell, filter=tuning, notes={}),
        cell_params(),
        tunings if tunings is not None else filter_tunings(),
    )


def float32_params(params: ParameterSet) -> ParameterSet:
    """A parameter set (e.g. the bundled one) with every number rounded to float32,
    i.e. exactly what the C core holds."""
    from dataclasses import asdict, fields, replace

    cell = params.cell
    changes = {}
    for f in fields(cell):
        v = getattr(cell, f.name)
        changes[f.name] = f32(v) if isinstance(v, (np.ndarray, float)) else v
    tuning = FilterTuning(**{k: f32(v) for k, v in asdict(params.filter).items()})
    return replace(params, cell=replace(cell, **changes), filter=tuning)


# ---------------------------------------------------------------------------
# Input sequences

#: Absurd sample values for fault injection, by field.
BAD_DT = [math.nan, math.inf, -math.inf, -1.0, -1e-3, 1e9, 1e30]
BAD_CURRENT = [math.nan, math.inf, -math.inf, 1e30, -1e30]
BAD_VOLTAGE = [math.nan, math.inf, -math.inf, 1e30, -1e30, 0.0, -5.0, 100.0]
BAD_TEMP = [math.nan, math.inf, -math.inf, -300.0, 1e6, 1e30, -1e30]
bad_values = {"dt": BAD_DT, "current": BAD_CURRENT, "voltage": BAD_VOLTAGE, "temp": BAD_TEMP}


@dataclass
class Scenario:
    """A parameter set, how to start the filter and what to feed it.

    All arrays hold float32-representable float64 values; `true_soc` is the
    simulated cell's SOC (for information, not compared)."""

    params: ParameterSet
    init: tuple  # ("soc", soc, temp_C) or ("ocv", voltage_V, temp_C)
    dt_s: np.ndarray
    current_A: np.ndarray
    voltage_V: np.ndarray
    temp_C: np.ndarray
    true_soc: np.ndarray

    def __len__(self) -> int:
        return len(self.dt_s)

    def rows(self):
        return zip(self.dt_s.tolist(), self.current_A.tolist(), self.voltage_V.tolist(), self.temp_C.tolist())

    def to_json(self) -> str:
        """Exact (floats by repr, NaN included): Scenario.from_json(s.to_json()) == s."""
        return json.dumps({
            "params": self.params.to_json(), "init": list(self.init), "dt_s": self.dt_s.tolist(),
            "current_A": self.current_A.tolist(), "voltage_V": self.voltage_V.tolist(),
            "temp_C": self.temp_C.tolist(), "true_soc": self.true_soc.tolist(),
        })

    @classmethod
    def from_json(cls, text: str) -> "Scenario":
        d = json.loads(text)
        arrays = [np.array(d[k], dtype=np.float64) for k in ("dt_s", "current_A", "voltage_V", "temp_C", "true_soc")]
        return cls(ParameterSet.from_json(d["params"]), tuple(d["init"]), *arrays)

    def _repr_pretty_(self, p, cycle) -> None:
        """How hypothesis prints a falsifying example: an exact, pasteable reproducer."""
        p.text(f"Scenario.from_json({self.to_json()!r})")

    def describe(self) -> str:
        return (
            f"Scenario(n={len(self)}, init={self.init}, n_temps={len(self.params.cell.temp_C)}, "
            f"n_ocv={self.params.cell.ocv_V.shape[1]}, n_rc={self.params.cell.r0_ohm.shape[1]})"
        )


def _dt_sequence(rng: np.random.Generator, n: int, mode: str, p_zero: float) -> np.ndarray:
    if mode == "fast":
        dt = 0.1 * rng.uniform(0.9, 1.1, size=n)
    elif mode == "1s":
        dt = rng.uniform(0.95, 1.05, size=n)
    elif mode == "10s":
        dt = rng.uniform(5.0, 15.0, size=n)
    elif mode == "60s":
        dt = np.full(n, 60.0)
    else:  # mixed: log-uniform 1 ms .. 60 s, with exact 60 s now and then
        dt = 10.0 ** rng.uniform(-3.0, math.log10(60.0), size=n)
        dt[rng.random(n) < 0.05] = 60.0
    dt[rng.random(n) < p_zero] = 0.0
    return f32(dt)


def _current_sequence(rng: np.random.Generator, n: int, amp: float, i_max: float) -> np.ndarray:
    """Piecewise-constant current (rests, charge, discharge) with ripple;
    occasionally exactly at +-i_max."""
    out = np.empty(n)
    k = 0
    while k < n:
        seg = int(rng.integers(1, max(2, n // 4)))
        kind = rng.random()
        if kind < 0.25:
            level = 0.0
        elif kind < 0.3:
            level = float(rng.choice([-i_max, i_max]))
        else:
            level = amp * rng.uniform(-1.0, 0.6)  # mostly discharge
        out[k : k + seg] = level
        k += seg
    ripple = rng.uniform(0.0, 0.05) * amp * rng.standard_normal(n)
    return f32(np.clip(out + ripple, -i_max, i_max))


def _temp_sequence(rng: np.random.Generator, n: int, temps: np.ndarray) -> np.ndarray:
    """Piecewise linear through random knots across and beyond the table,
    inside the core's valid range [-60, 120] degC."""
    lo = max(TEMP_MIN_C, float(temps[0]) - 20.0)
    hi = min(TEMP_MAX_C, float(temps[-1]) + 20.0)
    n_knots = int(rng.integers(2, 6))
    knots_x = np.sort(np.concatenate([[0, n - 1], rng.integers(0, n, size=n_knots - 2)]))
    knots_y = rng.uniform(lo, hi, size=n_knots)
    if rng.random() < 0.3:  # constant temperature, possibly exactly on a table point
        knots_y[:] = float(rng.choice(temps)) if rng.random() < 0.5 else knots_y[0]
    return f32(np.interp(np.arange(n), knots_x, knots_y))


def simulate_voltage(params: ParameterSet, soc0: float, dt, current, temp, noise_V: float, rng, p_outlier: float):
    """Terminal voltage of a simulated cell with the model's own equations
    (float64), plus Gaussian noise and the odd outlier; and its SOC."""
    model = CellModel(params)
    cell = params.cell
    z, i1, i2, h, s = soc0, 0.0, 0.0, 0.0, 0.0
    volts, socs = np.empty(len(dt)), np.empty(len(dt))
    for k, (d, i, t) in enumerate(zip(dt.tolist(), current.tolist(), temp.tolist())):
        at = model.locate(z, t)
        cap = model.row("capacity_Ah", at) * 3600.0
        dz = (cell.eta_charge if i > 0 else 1.0) * i * d / cap
        a1 = math.exp(-d / model.rc("tau1_s", at))
        a2 = math.exp(-d / model.rc("tau2_s", at))
        ah = math.exp(-abs(dz * model.row("hyst_gamma", at)))
        z = min(max(z + dz, 0.0), 1.0)
        i1 = a1 * i1 + (1 - a1) * i
        i2 = a2 * i2 + (1 - a2) * i
        h = ah * h + (1 - ah) * sign(i)
        if abs(i) > 0.05:
            s = sign(i)
        at = model.locate(z, t)
        v = (
            model.ocv(at)[0]
            + model.row("hyst_m0_V", at) * s
            + model.row("hyst_m_V", at) * h
            + model.rc("r0_ohm", at) * i
            + model.row("rn_ohm", at) * i / (1.0 + cell.rn_sat_per_A * abs(i))
            + model.rc("r1_ohm", at) * i1
            + model.rc("r2_ohm", at) * i2
        )
        volts[k], socs[k] = v, z
    volts = volts + noise_V * rng.standard_normal(len(volts))
    outliers = rng.random(len(volts)) < p_outlier
    volts[outliers] += rng.choice([-1.0, 1.0], size=int(outliers.sum())) * rng.uniform(0.05, 0.6, size=int(outliers.sum()))
    return f32(volts), socs


def inject_bad(rng: np.random.Generator, arrays: dict[str, np.ndarray], fraction: float) -> None:
    """Replace about `fraction` of the samples, one field each, by absurd values (in place)."""
    n = len(arrays["dt"])
    for k in np.flatnonzero(rng.random(n) < fraction):
        field = str(rng.choice(list(bad_values)))
        arrays[field][k] = f32(float(rng.choice(bad_values[field])))


@st.composite
def scenarios(
    draw: st.DrawFn,
    params: st.SearchStrategy[ParameterSet] | None = None,
    min_steps: int = 100,
    max_steps: int = 400,
    bad_fractions: st.SearchStrategy[float] = st.sampled_from([0.0, 0.0, 0.005, 0.02]),
) -> Scenario:
    ps = draw(params if params is not None else parameter_sets())
    cell = ps.cell
    n = draw(st.integers(min_steps, max_steps))
    dt_mode = draw(st.sampled_from(["fast", "1s", "10s", "60s", "mixed"]))
    p_zero = draw(st.sampled_from([0.0, 0.02, 0.2]))
    excursion = draw(st.floats(0.05, 1.5))  # |SOC| swing the current amplitude aims at
    noise_V = draw(st.sampled_from([0.0, 1e-4, 1e-3, 5e-3, 2e-2]))
    p_outlier = draw(st.sampled_from([0.0, 0.01, 0.05]))
    bad = draw(bad_fractions)
    soc0 = draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0)))
    init_kind = draw(st.sampled_from(["soc", "ocv"]))
    soc_offset = draw(st.floats(-0.3, 0.3))
    seed = draw(st.integers(0, 2**32 - 1))

    rng = np.random.default_rng(seed)
    dt = _dt_sequence(rng, n, dt_mode, p_zero)
    temp = _temp_sequence(rng, n, cell.temp_C)
    cap_As = float(cell.capacity_Ah.min()) * 3600.0
    amp = min(float(cell.i_max_A), excursion * cap_As / max(float(dt.sum()), 1e-3))
    current = _current_sequence(rng, n, amp, float(cell.i_max_A))
    voltage, true_soc = simulate_voltage(ps, soc0, dt, current, temp, noise_V, rng, p_outlier)
    t_init = f32(float(temp[0]))  # before the fault injection: the start is clean
    arrays = {"dt": dt, "current": current, "voltage": voltage, "temp": temp}
    inject_bad(rng, arrays, bad)
    if init_kind == "soc":
        init = ("soc", f32(min(max(soc0 + soc_offset, 0.0), 1.0)), t_init)
    else:
        model = CellModel(ps)
        v_rest = model.ocv(model.locate(soc0, t_init))[0] + noise_V * float(rng.standard_normal())
        init = ("ocv", f32(v_rest), t_init)
    return Scenario(ps, init, arrays["dt"], arrays["current"], arrays["voltage"], arrays["temp"], true_soc)


def start(est, scenario: Scenario) -> None:
    """Initialise an estimator (C or reference) as the scenario says."""
    kind, a, temp = scenario.init
    if kind == "soc":
        est.init_soc(a, temp)
    else:
        est.init_ocv(a, temp)
