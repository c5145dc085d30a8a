"""The thermal model's parameters from recordings that measure the surface
temperature (`bmsfil fit --thermal REC ...`).

What such data can identify. With the ambient constant (a chamber), the
surface temperature answers the heat through
    Ts/Q = Ru / (Rc Ru Cc Cs s^2 + (Ru (Cc + Cs) + Rc Cc) s + 1),
three numbers (the gain Ru and two time constants) for four parameters; and
the whole answer is unchanged if the heat is scaled by 1/k and the
resistances by k and the capacities by 1/k, so the heat's absolute size (here
i (v - OCV), measured) sets them. One parameter must be fixed: the core's heat
capacity Cc, from the cell's mass and specific heat (an 18650's jelly roll is
about 42 g at about 0.95 J/(g K): 40 J/K, `CORE_HEAT_CAPACITY_J_PER_K`; give
another with --core-heat-capacity). Cs then takes whatever else the heat
warms (the can and, on a test rig, the holder and its wiring); Ru, Cs and Rc
are fitted, with one ambient offset per recording (the sensor reads within
±1 K; a cell still warm from its charge starts above its surroundings).

Rc is the weakest of the three: the fast time constant lies under the
sensor's resolution, and the fit can have two branches (a heavy surface and a
small Rc, or a light surface and a large Rc) within a few hundredths of a
kelvin of each other. The fit starts from both and reports both
(`ThermalFitReport.alternatives`): the gap between them is how much the data
say about the core.

Heat per sample is i (v - OCV(SOC, T)) at the SOC of the C SOC filter run on
the recording (the heat the online filter uses); the model is fitted on a
uniform grid of max(1 s, the recording's median interval) with the heat
averaged per cell of the grid (energy kept).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bmsfil.fit import FitError
from bmsfil.params import ParameterSet, ThermalParams
from bmsfil.recording import Recording

#: Core heat capacity held fixed by the fit, J/K (see the module docstring).
CORE_HEAT_CAPACITY_J_PER_K = 40.0
#: Starts of the fit (Cs J/K, Rc K/W, Ru K/W): a light surface with a large Rc, a heavy one with a small Rc.
STARTS = ((5.0, 3.0, 3.0), (80.0, 0.5, 3.0))
#: Bounds of the fitted parameters (Cs, Rc, Ru) and of an ambient offset (K).
BOUNDS = ((0.5, 0.02, 0.1), (2000.0, 50.0, 100.0))
AMBIENT_OFFSET_K = 3.0
#: A fitted parameter within this share of a bound ended at it (the search spans factors of 1000 and more).
AT_BOUND_REL = 0.1
#: A 1-sigma relative uncertainty above this: the parameter is not identified.
MAX_REL_SIGMA = 1.0
#: The fitted parameters: name in the report, unit, and the data that would identify each.
FITTED = (
    ("Cs", "J/K", "recordings that heat and then cool for 30 min or more (a drive cycle or pulse test at 1C or "
                  "more with long rests), which show the surface's slow response"),
    ("Rc", "K/W", "a fast rise of the surface when the heat steps (high-rate pulses, sampled at 1 s with a 0.1 K "
                  "sensor), or a measured core temperature"),
    ("Ru", "K/W", "a recording that heats the cell to a steady temperature above the ambient and lets it cool back "
                  "(a long discharge at 1C or more, then a rest)"),
)


class ThermalFitError(FitError):
    """The recordings cannot give a thermal model; the message says why."""


@dataclass(frozen=True)
class ThermalData:
    """One recording on a uniform grid: heat over each cell, surface reading at its end."""

    name: str
    step_s: float
    heat_W: np.ndarray
    surface_C: np.ndarray
    start_C: float


@dataclass
class ThermalFitReport:
    params: ThermalParams | None = None
    fixed: dict[str, str] = field(default_factory=dict)
    rms_C: float = float("nan")
    rms_by_recording_C: dict[str, float] = field(default_factory=dict)
    ambient_offset_C: dict[str, float] = field(default_factory=dict)
    #: 1 sigma of log(Cs), log(Rc), log(Ru) from the fit's Jacobian (relative errors).
    rel_sigma: dict[str, float] = field(default_factory=dict)
    #: Other local optima: (rms °C, parameters).
    alternatives: list[tuple[float, ThermalParams]] = field(default_factory=list)
    #: Parameters the data did not identify (at a search bound, or too uncertain), for the user and the notes.
    warnings: list[str] = field(default_factory=list)

    def notes(self) -> dict[str, str]:
        """The file's notes: what was fitted, fixed and how well."""
        p = self.params
        assert p is not None
        alt = "; ".join(f"Cs {a.cs_J_per_K:.1f} J/K, Rc {a.rc_K_per_W:.2f} K/W, Ru {a.ru_K_per_W:.2f} K/W at "
                        f"{rms:.3f} °C rms" for rms, a in self.alternatives)
        return {
            "thermal_fitted": (f"Cs {p.cs_J_per_K:.1f} J/K (±{self.rel_sigma.get('cs', float('nan')) * 100:.0f} %), "
                               f"Rc {p.rc_K_per_W:.3f} K/W (±{self.rel_sigma.get('rc', float('nan')) * 100:.0f} %), "
                               f"Ru {p.ru_K_per_W:.3f} K/W (±{self.rel_sigma.get('ru', float('nan')) * 100:.0f} %) "
                               f"from the surface temperature alone; rms {self.rms_C:.3f} °C"),
            "thermal_fixed": "; ".join(f"{k} {v}" for k, v in self.fixed.items()),
            "thermal_not_identified": ("the core temperature is not measured: Rc and the Cc/Cs split are set by the "
                                       "fixed Cc and the surface's slow response; other optimum: " + (alt or "none")),
        } | ({"thermal_warnings": "\n".join(self.warnings)} if self.warnings else {})


def heat_of(rec: Recording, params: ParameterSet) -> np.ndarray:
    """i (v - OCV) per sample at the SOC of the C SOC filter run on the recording (NaN where not computable)."""
    from bmsfil.core import SocEstimator
    from bmsfil.thermal import heat_W

    start: float | str = 1.0 if rec.meta.reference_initial_soc == 1.0 else "ocv"
    trace = SocEstimator(params).run(rec, initial_soc=start)
    return heat_W(params, trace.soc, rec.temp_C, rec.current_A, rec.voltage_V)


def thermal_data(rec: Recording, params: ParameterSet, step_s: float = 1.0) -> ThermalData:
    t = np.asarray(rec.time_s, dtype=np.float64)
    ok = np.isfinite(rec.temp_C)
    if len(t) < 10 or ok.sum() < 10:
        raise ThermalFitError(f"{rec.meta.name}: fewer than 10 surface temperature readings")
    q = np.nan_to_num(heat_of(rec, params))
    step = max(step_s, float(np.median(np.diff(t))))
    edges = np.arange(t[0], t[-1] + 0.5 * step, step)
    if len(edges) < 3:
        raise ThermalFitError(f"{rec.meta.name}: shorter than two grid steps of {step:g} s")
    energy = np.cumsum(q * np.diff(t, prepend=t[0]))
    heat = np.diff(np.interp(edges, t, energy)) / step
    surface = np.interp(edges[1:], t[ok], rec.temp_C[ok])
    return ThermalData(rec.meta.name, step, heat, surface, float(rec.temp_C[np.flatnonzero(ok)[0]]))


def simulate_surface(tp: ThermalParams, d: ThermalData, ambient_C: float) -> np.ndarray:
    """Surface temperature the model gives on the grid, from core and surface at the first reading (float64)."""
    from bmsfil.thermal import discretise

    a00, a01, a10, a11 = (float(v) for v in discretise(tp, d.step_s).ravel())
    ru, rc = tp.ru_K_per_W, tp.rc_K_per_W
    x0 = x1 = d.start_C
    out = np.empty(len(d.heat_W))
    for k, q in enumerate(d.heat_W.tolist()):
        s1 = ambient_C + ru * q
        s0 = s1 + rc * q
        y0, y1 = x0 - s0, x1 - s1
        x0, x1 = s0 + a00 * y0 + a01 * y1, s1 + a10 * y0 + a11 * y1
        out[k] = x1
    return out


def fit_thermal(recordings: list[Recording], params: ParameterSet,
                cc_J_per_K: float = CORE_HEAT_CAPACITY_J_PER_K) -> tuple[ThermalParams, ThermalFitReport]:
    """Cs, Rc and Ru (Cc fixed) by least squares on the surface temperature (see the module docstring)."""

    if not recordings:
        raise ThermalFitError("no recording with a surface temperature to fit the thermal model on")
    return fit_thermal_data([thermal_data(r, params) for r in recordings], cc_J_per_K)


def fit_thermal_data(data: list[ThermalData],
                     cc_J_per_K: float = CORE_HEAT_CAPACITY_J_PER_K) -> tuple[ThermalParams, ThermalFitReport]:
    """fit_thermal on recordings already on their grids."""
    from scipy.optimize import least_squares  # imported when a fit runs, not with the command line

    flat = [d.name for d in data if np.ptp(d.surface_C) < 0.5]
    if len(flat) == len(data):
        raise ThermalFitError(f"{', '.join(flat)}: the surface temperature moves by less than 0.5 °C: no heating "
                              "to identify a thermal model from (give recordings at a higher rate)")
    n = len(data)

    def residuals(theta: np.ndarray) -> np.ndarray:
        cs, rc, ru = np.exp(theta[:3])
        tp = ThermalParams(cc_J_per_K, cs, rc, ru)
        return np.concatenate([simulate_surface(tp, d, d.start_C + theta[3 + i]) - d.surface_C
                               for i, d in enumerate(data)])

    lo = np.r_[np.log(BOUNDS[0]), np.full(n, -AMBIENT_OFFSET_K)]
    hi = np.r_[np.log(BOUNDS[1]), np.full(n, AMBIENT_OFFSET_K)]
    solutions = []
    for start in STARTS:
        sol = least_squares(residuals, np.r_[np.log(start), np.zeros(n)], bounds=(lo, hi), x_scale=1.0)
        solutions.append((float(np.sqrt(np.mean(sol.fun**2))), sol))
    solutions.sort(key=lambda s: s[0])
    rms, best = solutions[0]
    cs, rc, ru = np.exp(best.x[:3])
    tp = ThermalParams(cc_J_per_K, float(cs), float(rc), float(ru))
    report = ThermalFitReport(params=tp, rms_C=rms)
    report.fixed["Cc"] = f"{cc_J_per_K:g} J/K (the core's heat capacity: not identifiable from the surface alone)"
    report.fixed["entropic heat"] = "left out (heat = i (v - OCV))"
    J = best.jac
    try:
        cov = np.linalg.inv(J.T @ J) * np.mean(best.fun**2)
        report.rel_sigma = dict(zip(("cs", "rc", "ru"), np.sqrt(np.diag(cov))[:3].tolist()))
    except np.linalg.LinAlgError:
        report.rel_sigma = {}
    names = ", ".join(d.name for d in data)
    report.warnings = [w for i, (name, _unit, _needs) in enumerate(FITTED)
                       if (w := unidentified_warning(i, float(best.x[i]), report.rel_sigma.get(name.lower()), names))
                       is not None]
    res = best.fun
    k = 0
    for i, d in enumerate(data):
        m = len(d.heat_W)
        report.rms_by_recording_C[d.name] = float(np.sqrt(np.mean(res[k:k + m] ** 2)))
        report.ambient_offset_C[d.name] = float(best.x[3 + i])
        k += m
    for other_rms, sol in solutions[1:]:
        a = np.exp(sol.x[:3])
        alt = ThermalParams(cc_J_per_K, float(a[0]), float(a[1]), float(a[2]))
        if abs(alt.rc_K_per_W - tp.rc_K_per_W) > 0.05 * tp.rc_K_per_W:
            report.alternatives.append((other_rms, alt))
    return tp, report


def unidentified_warning(i: int, log_value: float, rel_sigma: float | None, names: str) -> str | None:
    """A warning when fitted parameter i (of FITTED, at exp(log_value),
    fitted on the recordings `names`) ended at a bound of BOUNDS or its 1-sigma
    relative uncertainty exceeds MAX_REL_SIGMA (or could not be computed), else None."""
    name, unit, identify = FITTED[i]
    value, lo, hi = float(np.exp(log_value)), BOUNDS[0][i], BOUNDS[1][i]
    why = []
    for bound, side in ((lo, "lower"), (hi, "upper")):
        if abs(log_value - np.log(bound)) < np.log1p(AT_BOUND_REL):
            why.append(f"ended at the {side} bound of its search ({lo:g} to {hi:g} {unit}, within "
                       f"{AT_BOUND_REL:.0%})")
    if rel_sigma is None or not np.isfinite(rel_sigma):
        why.append("has no uncertainty (the fit's Jacobian is singular)")
    elif rel_sigma > MAX_REL_SIGMA:
        why.append(f"is uncertain by ±{rel_sigma * 100:,.0f} % (1 sigma)")
    if not why:
        return None
    return (f"thermal {name} {value:.3g} {unit} " + " and ".join(why) + f": not identifiable from {names}; the core "
            f"temperature the filter estimates rests on it. {name} needs {identify}")
