"""`bmsfil fit`: a cell's parameter set from whatever characterisation it has.

Roles of the input recordings (any file `bmsfil import` reads or wrote):

- ``ocv``: low-rate (C/20 or so) discharge and charge tests: OCV(SOC) at
  their temperature (`ocv.ocv_from_low_rate`, the two legs averaged; one leg
  alone is accepted with a warning) and the capacity of the discharge leg;
- ``pulse``: pulse (HPPC) tests: the dynamic model (R0, two RC pairs,
  hysteresis) at their temperature; and, when no low-rate test is given, the
  OCV from the voltage at the end of each rest;
- ``capacity``: capacity tests (a discharge from full to the cut-off):
  capacity where no low-rate test gives one;
- ``dynamic``: any other recording with a known start (drive cycles): the
  dynamic model too.

The temperature grid is every temperature a model-bearing recording was taken
at (merged within MERGE_C). A temperature without its own OCV test takes the
curve of the nearest one that has it, and a temperature without any dynamic
data takes its resistances from its neighbours (the fit's smoothing across
temperature); the fit says so (`FitReport.assumptions`).

The SOC of each dynamic sample comes from the recording's charge counter
(or the integral of its current) and its starting SOC: the recording's
``reference_initial_soc`` when set, else the OCV of the voltage at the end of
its first rest (a leading soak is fine), else the fit refuses and says which
recording and what to set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from bmsfil.current_sign import wrong_sign
from bmsfil.ocv import REST_CURRENT_A, OcvCurve, OcvFitError, anchor_full, ocv_from_low_rate
from bmsfil.params import MAX_TEMPS, OCV_MAX_POINTS, CellParams, FilterTuning, ParameterSet, bundled_params
from bmsfil.params_match import AMBIENT_MARGIN_K, WorkingTemperature
from bmsfil.recording import Recording

#: Temperatures closer than this are one grid temperature, °C.
MERGE_C = 3.0
#: Hysteresis rate and current-dependent resistance saturation: not
#: identifiable from a few tests, held at the values found for the LG HG2.
HYST_GAMMA = 50.0
RN_SAT_PER_A = 1.0
#: A rest that ends with at least this long without current gives an OCV point, s.
MIN_REST_S = 300.0
#: A recording that starts with a rest this long starts at the OCV of its
#: voltage at the end of that rest, s.
MIN_START_REST_S = 30.0
#: A first sample below this C-rate is a cell still at rest (a drive cycle's
#: first sample is often the profile's first small step).
FULL_REST_C_RATE = 0.05
#: |current| below this C-rate (and below ocv.REST_CURRENT_A) is a rest.
REST_C_RATE = 0.01
#: Grid of the RC tables over SOC.
RC_POINTS = 11
#: A resistance at most this is at the fit's lower bound, 0 (Ω): far below any cell's.
AT_ZERO_OHM = 1e-6
#: A temperature whose R0, R1 or R2 sits at 0 over this share of the SOC grid or more gets a warning.
ZERO_SHARE = 0.5
#: What would measure a time constant found at an end of the fit's search.
TIME_CONSTANT_HINTS = {
    ("tau1", "shortest"): "a pulse test sampled at 1 s or faster there would resolve it",
    ("tau1", "longest"): "a pulse test sampled at 1 s with a few minutes' rest after each pulse there would resolve it",
    ("tau2", "shortest"): "rests of 30 min or more after a discharge step (an HPPC test's) there would resolve it",
    ("tau2", "longest"): "rests of an hour or more after a discharge step there would resolve it",
}
#: An OCV test discharging faster than this C-rate is no low-rate test: its
#: voltage holds the resistive drop (C/20 is usual).
OCV_MAX_C_RATE = 0.1


class FitError(ValueError):
    """The inputs cannot give a parameter set; the message says what is missing."""


@dataclass(frozen=True)
class FitInputs:
    ocv: list[Recording] = field(default_factory=list)
    pulse: list[Recording] = field(default_factory=list)
    capacity: list[Recording] = field(default_factory=list)
    dynamic: list[Recording] = field(default_factory=list)


#: The roles of the inputs, as FitInputs names them (and the command line).
ROLES = ("ocv", "pulse", "capacity", "dynamic")


@dataclass
class FitReport:
    """What the fit did, assumed and could not identify, for the user and the file's notes."""

    temps_C: list[float] = field(default_factory=list)
    capacity_Ah: list[float] = field(default_factory=list)
    ocv_from: dict[float, str] = field(default_factory=dict)
    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_identified: list[str] = field(default_factory=list)
    #: Temperatures whose OCV is a discharge leg alone: the loaded voltage, not a rested cell's.
    loaded_ocv_C: list[float] = field(default_factory=list)
    residual_V: float = float("nan")
    residual_by_recording_V: dict[str, float] = field(default_factory=dict)


def temperature_of(rec: Recording) -> float:
    """The recording's ambient temperature, else the median of its measured temperature."""
    if rec.meta.ambient_temp_C is not None and np.isfinite(rec.meta.ambient_temp_C):
        return float(rec.meta.ambient_temp_C)
    t = rec.temp_C[np.isfinite(rec.temp_C)]
    if not t.size:
        raise FitError(f"{rec.meta.name}: no temperature: neither ambient_temp_C in its metadata nor a measured value "
                       "(set it with bmsfil import --meta ambient_temp_C=...)")
    return float(np.round(np.median(t)))


def _grid(temps: list[float]) -> list[float]:
    """Temperatures merged within MERGE_C (each cluster at its mean), ascending."""
    clusters: list[list[float]] = []
    for t in sorted(temps):
        if clusters and t - clusters[-1][0] <= MERGE_C:
            clusters[-1].append(t)
        else:
            clusters.append([t])
    return [float(np.round(np.mean(c), 1)) for c in clusters]


def _nearest(grid: list[float], t: float) -> int:
    return int(np.argmin(np.abs(np.asarray(grid) - t)))


def charge_counter(rec: Recording) -> np.ndarray:
    """The recording's Ah counter, else the trapezoid integral of its current (Ah, 0 at the start)."""
    if rec.ah is not None and np.all(np.isfinite(rec.ah)):
        return rec.ah - rec.ah[0]
    i = np.nan_to_num(rec.current_A)
    return np.concatenate(([0.0], np.cumsum(0.5 * (i[1:] + i[:-1]) * np.diff(rec.time_s)) / 3600.0))


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of every run of True."""
    padded = np.concatenate(([False], mask, [False]))
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def _rest_runs(rec: Recording, rest_A: float) -> list[tuple[int, int]]:
    """[start, stop) of every run of samples at rest."""
    return _runs(np.abs(np.nan_to_num(rec.current_A, nan=np.inf)) < rest_A)


def _rest_threshold(rec: Recording, capacity_Ah: float) -> float:
    """|current| below which a sample is at rest: above a tester's noise and
    offset at rest (10 mA and a few mA on a 5 Ah cell), below any C/20 test."""
    return max(REST_CURRENT_A, REST_C_RATE * capacity_Ah)


def rest_points(rec: Recording, capacity_Ah: float, soc0: float) -> tuple[np.ndarray, np.ndarray]:
    """(SOC, voltage) at the end of each long rest, ascending in SOC: the
    relaxed points of a pulse test. A rest counts when it lasts MIN_REST_S and
    at least half the longest rest between two steps of the recording (the
    rests between SOC steps, not the short ones between pulses), whatever
    lengths a test uses; a leading soak or closing rest, however long, does
    not set that length."""
    ah = charge_counter(rec)
    runs = [(a, b) for a, b in _rest_runs(rec, _rest_threshold(rec, capacity_Ah)) if np.isfinite(rec.voltage_V[b - 1])]
    durations = np.array([rec.time_s[b - 1] - rec.time_s[a] for a, b in runs])
    if not len(runs):
        return np.empty(0), np.empty(0)
    between = [d for (a, b), d in zip(runs, durations) if a > 0 and b < len(rec)]
    longest = max(between) if between else float(durations.max())
    keep = durations >= max(MIN_REST_S, 0.5 * longest)
    z = np.array([soc0 + ah[b - 1] / capacity_Ah for (a, b), k in zip(runs, keep) if k])
    v = np.array([float(rec.voltage_V[b - 1]) for (a, b), k in zip(runs, keep) if k])
    order = np.argsort(z)
    return z[order], v[order]


def ocv_from_rests(z: np.ndarray, v: np.ndarray, name: str, n_points: int = OCV_MAX_POINTS) -> np.ndarray:
    """OCV on a uniform SOC grid through rest points: linear between them,
    the end slopes held beyond the first and last, never falling."""
    if len(z) < 4:
        raise FitError(f"{name}: only {len(z)} rests of {MIN_REST_S:.0f} s or more; an OCV curve from rests needs "
                       "at least 4 (or give a low-rate test with --ocv)")
    z, keep = np.unique(np.clip(z, -0.05, 1.05), return_index=True)
    v = np.maximum.accumulate(v[keep])
    grid = np.linspace(0.0, 1.0, n_points)
    out = np.interp(grid, z, v)
    lo_slope = (v[1] - v[0]) / max(z[1] - z[0], 1e-6)
    hi_slope = (v[-1] - v[-2]) / max(z[-1] - z[-2], 1e-6)
    out = np.where(grid < z[0], v[0] + (grid - z[0]) * lo_slope, out)
    out = np.where(grid > z[-1], v[-1] + (grid - z[-1]) * hi_slope, out)
    return np.maximum.accumulate(out)


def temperature_shift(z_t: np.ndarray, v_t: np.ndarray, z_ref: np.ndarray, v_ref: np.ndarray,
                      ocv_ref_V: np.ndarray) -> np.ndarray | None:
    """How much the rest voltages at one temperature sit above those at the
    reference temperature, on the OCV grid (held flat beyond the common SOC
    range); None when the two share fewer than 3 points of SOC. Both sets
    carry the same hysteresis and relaxation, so their difference is the
    OCV's change with temperature. Between its rests the reference is read
    along the shape of its OCV curve `ocv_ref_V` (uniform in SOC): the rests'
    offset from the curve is smooth, the curve is not (near empty it bends
    more between two 10 % steps than the OCV moves with temperature)."""
    if len(z_ref) < 2 or len(z_t) < 3:
        return None
    inside = (z_t >= z_ref.min()) & (z_t <= z_ref.max())
    if inside.sum() < 3:
        return None
    grid = np.linspace(0.0, 1.0, len(ocv_ref_V))
    offset_ref = v_ref - np.interp(z_ref, grid, ocv_ref_V)
    expected = np.interp(z_t[inside], grid, ocv_ref_V) + np.interp(z_t[inside], z_ref, offset_ref)
    return np.interp(np.linspace(0.0, 1.0, OCV_MAX_POINTS), z_t[inside], v_t[inside] - expected)


def discharge_capacity(rec: Recording) -> float:
    """Ah of the longest (in time) run of discharge current in the recording."""
    ah = charge_counter(rec)
    runs = _runs(np.nan_to_num(rec.current_A) < -REST_CURRENT_A)
    if not runs:
        raise FitError(f"{rec.meta.name}: no discharge found (current is positive on charge, negative on discharge)")
    a, b = max(runs, key=lambda r: rec.time_s[r[1] - 1] - rec.time_s[r[0]])
    return float(ah[a] - ah[b - 1])


def invert_ocv(ocv_V: np.ndarray, voltage: float) -> float:
    """SOC at which the (non-decreasing) curve reaches `voltage`, clamped to [0, 1]."""
    grid = np.linspace(0.0, 1.0, len(ocv_V))
    return float(np.interp(voltage, ocv_V, grid))


def initial_soc(rec: Recording, ocv_V: np.ndarray, capacity_Ah: float) -> tuple[float, str]:
    """The SOC at the first sample and how it is known."""
    if rec.meta.reference_initial_soc is not None:
        return float(rec.meta.reference_initial_soc), "metadata reference_initial_soc"
    runs = _rest_runs(rec, _rest_threshold(rec, capacity_Ah))
    if runs and runs[0][0] == 0 and rec.time_s[runs[0][1] - 1] >= MIN_START_REST_S:
        end = runs[0][1] - 1
        return invert_ocv(ocv_V, float(rec.voltage_V[end])), f"OCV at the end of its first rest ({rec.time_s[end]:.0f} s)"
    raise FitError(f"{rec.meta.name}: its starting SOC is unknown: it does not start with a rest of {MIN_START_REST_S:.0f} s or more; "
                   "set it with bmsfil import --meta reference_initial_soc=1 (for a test from full charge)")


def _describe(rec: Recording) -> str:
    return f"{rec.meta.name} ({temperature_of(rec):g} °C)"


def _c_rate(rate: float) -> str:
    """A C-rate as one writes it: 1.1C, C/5."""
    return f"{rate:.1f}C" if rate >= 1.0 else f"C/{1.0 / rate:.0f}"


def _ocv_rate_warning(rec: Recording, curve: OcvCurve, nominal_capacity_Ah: float | None) -> str | None:
    """A warning when an `--ocv` test discharges above OCV_MAX_C_RATE of the
    largest capacity known for its cell (its own discharge, its metadata's
    nominal, --nominal-capacity), else None."""
    capacities = {"its measured capacity": curve.capacity_Ah, "its metadata's nominal_capacity_Ah":
                  rec.meta.nominal_capacity_Ah or 0.0, "--nominal-capacity": nominal_capacity_Ah or 0.0}
    basis, q = max(capacities.items(), key=lambda kv: kv[1])
    rate = curve.discharge_current_A / q
    if rate <= OCV_MAX_C_RATE:
        return None
    return (f"{_describe(rec)}, given as --ocv, discharges at {curve.discharge_current_A:.3g} A, {_c_rate(rate)} of "
            f"{basis} ({q:.3g} Ah): no low-rate test (C/20, at most {_c_rate(OCV_MAX_C_RATE)}). Its 'OCV' is the "
            "voltage under that current, below the true OCV by the resistive drop, and the resistances fitted "
            "against it come out too small (down to 0): the SOC read at rest and the state of power will be wrong. "
            "Give a C/20 discharge and charge with --ocv (or a pulse test with --pulse, whose rests give the OCV); "
            "a capacity test belongs under --capacity")


def _full_to_empty(rec: Recording, ocv_V: np.ndarray, capacity_Ah: float) -> float | None:
    """Ah discharged by a test that starts full (SOC >= 0.95) and ends empty
    (its last voltage, on the curve, at SOC <= 0.05), else None."""
    try:
        soc0, _how = initial_soc(rec, ocv_V, capacity_Ah)
    except FitError:
        return None
    ah = charge_counter(rec)
    end_soc = invert_ocv(ocv_V, float(rec.voltage_V[np.flatnonzero(np.isfinite(rec.voltage_V))[-1]]))
    if soc0 < 0.95 or end_soc > 0.05:
        return None
    return float((ah[0] - ah[-1]) / (soc0 - end_soc))


def fit(inputs: FitInputs, name: str, nominal_capacity_Ah: float | None = None,
        progress: Callable[[str], None] | None = None) -> tuple[ParameterSet, FitReport]:
    """Identify a cell from the inputs (see the module docstring)."""
    say = progress or (lambda _msg: None)
    report = FitReport()
    model_recs = inputs.ocv + inputs.pulse + inputs.dynamic
    if not model_recs:
        raise FitError("nothing to fit: give at least --ocv or --pulse recordings")
    dyn = inputs.pulse + inputs.dynamic
    if not dyn:
        raise FitError("no pulse or dynamic recording: R0 and the RC pairs cannot be identified from an OCV test "
                       "alone; give --pulse (or --dynamic)")
    for rec in model_recs + inputs.capacity:
        if (why := wrong_sign(rec)) is not None:
            raise FitError(why)
    grid = _grid([temperature_of(r) for r in model_recs])
    if len(grid) > MAX_TEMPS:
        raise FitError(f"{len(grid)} temperatures ({', '.join(f'{t:g}' for t in grid)} °C); the model holds at most "
                       f"{MAX_TEMPS}: leave some recordings out")
    report.temps_C = grid
    at = {id(r): _nearest(grid, temperature_of(r)) for r in model_recs + inputs.capacity}
    nt = len(grid)

    # 1. OCV and capacity from the low-rate tests.
    say("OCV from the low-rate tests")
    ocv = np.full((nt, OCV_MAX_POINTS), np.nan)
    capacity = np.full(nt, np.nan)
    cap_from = [""] * nt
    for k in range(nt):
        mine = [r for r in inputs.ocv if at[id(r)] == k]
        curves = []
        for rec in mine:
            try:
                curves.append(ocv_from_low_rate(rec))
            except OcvFitError as exc:
                raise FitError(str(exc)) from None
            if (why := _ocv_rate_warning(rec, curves[-1], nominal_capacity_Ah)) is not None:
                report.warnings.append(why)
            if curves[-1].legs != "both":
                if grid[k] not in report.loaded_ocv_C:
                    report.loaded_ocv_C.append(grid[k])
                report.warnings.append(f"{rec.meta.name}: only a discharge leg: its OCV includes the resistive drop "
                                       "and the hysteresis of discharge (a charge leg after it would cancel them)")
        if curves:
            ocv[k] = np.mean([c.ocv_V for c in curves], axis=0)
            capacity[k] = float(np.mean([c.capacity_Ah for c in curves]))
            cap_from[k] = "low-rate test"
            report.ocv_from[grid[k]] = ", ".join(r.meta.name for r in mine)
    with_ocv = [k for k in range(nt) if np.isfinite(ocv[k]).all()]

    # 2. Without any low-rate test: OCV from the rests of the pulse tests.
    if not with_ocv:
        say("OCV from the rests of the pulse tests")
        for rec in inputs.pulse:
            k = at[id(rec)]
            soc0 = rec.meta.reference_initial_soc
            if soc0 is None:
                soc0 = 1.0
                report.assumptions.append(f"{rec.meta.name}: assumed to start fully charged (no reference_initial_soc)")
            cap = capacity[k] if np.isfinite(capacity[k]) else discharge_capacity_total(rec)
            capacity[k], cap_from[k] = cap, "pulse test's total discharge"
            z, v = rest_points(rec, cap, soc0)
            ocv[k] = ocv_from_rests(z, v, rec.meta.name)
            report.ocv_from[grid[k]] = f"rests of {rec.meta.name}"
            report.warnings.append(f"OCV at {grid[k]:g} °C from the rests of a pulse test: each point holds the "
                                   "hysteresis of the pulse before it (a low-rate test with --ocv is better)")
        with_ocv = [k for k in range(nt) if np.isfinite(ocv[k]).all()]
        if not with_ocv:
            raise FitError("no OCV: give a low-rate discharge and charge (--ocv) or a pulse test with rests (--pulse)")

    # 3. Temperatures without their own curve: the nearest curve, shifted by
    # how the pulse tests' rests there differ from those at its temperature.
    for k in range(nt):
        if k in with_ocv:
            continue
        j = min(with_ocv, key=lambda h: abs(grid[h] - grid[k]))
        ocv[k] = ocv[j]
        shift = None
        for rec_t in (r for r in inputs.pulse if at[id(r)] == k):
            for rec_ref in (r for r in inputs.pulse if at[id(r)] == j):
                soc_t, _ = initial_soc(rec_t, ocv[j], capacity[j] if np.isfinite(capacity[j]) else 1.0)
                soc_r, _ = initial_soc(rec_ref, ocv[j], capacity[j])
                cap_t = _full_to_empty(rec_t, ocv[j], capacity[j]) or capacity[j]
                shift = temperature_shift(*rest_points(rec_t, cap_t, soc_t), *rest_points(rec_ref, capacity[j], soc_r),
                                          ocv[j])
                if shift is not None:
                    ocv[k] = np.maximum.accumulate(ocv[j] + shift)
                    report.assumptions.append(
                        f"OCV at {grid[k]:g} °C: the curve of {grid[j]:g} °C shifted by the difference of the rests of "
                        f"{rec_t.meta.name} and {rec_ref.meta.name} (from {shift.min() * 1e3:+.0f} to "
                        f"{shift.max() * 1e3:+.0f} mV)")
                    break
            if shift is not None:
                break
        if shift is None:
            report.assumptions.append(f"OCV at {grid[k]:g} °C taken from {grid[j]:g} °C (OCV assumed independent "
                                      "of temperature there; a pulse test with rests at both would measure the change)")

    # 4. Capacity where no low-rate test measured it: a pulse test from full
    # to empty there, else a capacity test there, else the nearest known.
    for k in range(nt):
        if np.isfinite(capacity[k]):
            continue
        guess = capacity[with_ocv[0]] if np.isfinite(capacity[with_ocv[0]]) else (nominal_capacity_Ah or np.nan)
        for rec in (r for r in inputs.pulse if at[id(r)] == k):
            q = _full_to_empty(rec, ocv[k], guess if np.isfinite(guess) else discharge_capacity_total(rec))
            if q is not None:
                capacity[k], cap_from[k] = q, f"pulse test {rec.meta.name} (full to empty)"
                break
        if not np.isfinite(capacity[k]):
            tests = [discharge_capacity(r) for r in inputs.capacity if at[id(r)] == k]
            if tests:
                capacity[k], cap_from[k] = float(np.mean(tests)), "capacity test"
    for rec in inputs.capacity:
        k = at[id(rec)]
        if cap_from[k] != "capacity test":
            far = abs(grid[k] - temperature_of(rec)) > MERGE_C
            report.warnings.append(
                f"capacity test {rec.meta.name} ({temperature_of(rec):.0f} °C) not used: "
                + (f"the model has no temperature near its own (give an OCV or pulse test at {temperature_of(rec):.0f} "
                   f"°C), and at the nearest, {grid[k]:g} °C, " if far else f"at {grid[k]:g} °C ")
                + (f"the capacity comes from the {cap_from[k]}" if cap_from[k] else "a pulse test gives it"))
    known = np.flatnonzero(np.isfinite(capacity))
    if not known.size:
        if not nominal_capacity_Ah:
            raise FitError("no capacity: give a low-rate test (--ocv), a pulse test from full to empty, a capacity "
                           "test (--capacity) or --nominal-capacity AH")
        capacity[:] = nominal_capacity_Ah
        report.assumptions.append(f"capacity {nominal_capacity_Ah:g} Ah at every temperature, from --nominal-capacity")
    else:
        for k in np.flatnonzero(~np.isfinite(capacity)):
            j = int(known[np.argmin(np.abs(known - k))])
            capacity[k] = capacity[j]
            report.assumptions.append(f"capacity at {grid[k]:g} °C taken from {grid[j]:g} °C ({cap_from[j]})")
    for k in range(nt):
        if cap_from[k] and cap_from[k] != "low-rate test":
            report.assumptions.append(f"capacity at {grid[k]:g} °C from the {cap_from[k]}")
    report.capacity_Ah = capacity.tolist()

    # 5. The top of each curve at the rested voltage of a cell known to be full.
    for k in range(nt):
        rested = [float(r.voltage_V[0]) for r in dyn
                  if at[id(r)] == k and r.meta.reference_initial_soc == 1.0 and len(r)
                  and abs(r.current_A[0]) < FULL_REST_C_RATE * capacity[k] and np.isfinite(r.voltage_V[0])]
        if rested:
            ocv[k] = anchor_full(ocv[k], np.linspace(0, 1, OCV_MAX_POINTS), float(np.median(rested)))

    # 6. The dynamic model.
    prepared = []
    for rec in dyn:
        k = at[id(rec)]
        soc0, how = initial_soc(rec, ocv[k], capacity[k])
        prepared.append(replace(rec, ah=charge_counter(rec), meta=replace(
            rec.meta, reference_initial_soc=soc0, reference_capacity_Ah=float(capacity[k]))))
        if how != "metadata reference_initial_soc":
            report.assumptions.append(f"{rec.meta.name}: starting SOC {soc0:.3f} from the {how}")
    say(f"R0, RC pairs and hysteresis from {len(dyn)} recording(s)")
    # scipy: imported when a fit runs, not with the command line
    from bmsfil.ecm_fit import IDENTIFIED_MIN_S, TAU1_GRID_S, TAU2_GRID_S, fit_dynamic
    # Samples weighed as a filter with the default settings would (as
    # bmsfil.lg_hg2_params fits the bundled set); the filter itself starts
    # from the bundled set's tuning, a sound start for `bmsfil tune`.
    weigh = FilterTuning()
    start = bundled_params().filter
    d = fit_dynamic(prepared, np.asarray(grid), ocv, capacity, n_rc=RC_POINTS, gamma=HYST_GAMMA,
                    overpotential_weight=weigh.r_overpotential_rel2_s / weigh.r_voltage_V2_s,
                    rn_sat_per_A=RN_SAT_PER_A)
    report.residual_V = d.rms_residual_V
    report.residual_by_recording_V = d.residual_by_recording_V
    for k in range(nt):
        if d.seconds_under_load[k] >= IDENTIFIED_MIN_S:
            continue
        what = ("no pulse or dynamic data there" if d.seconds_under_load[k] == 0 else
                f"only {d.seconds_under_load[k]:.0f} s under load measured near it")
        j = int(d.carried_from[k])
        source = f"carried over from {grid[j]:g} °C" if j >= 0 else "fitted from what there is (no temperature has more)"
        report.not_identified.append(f"R0, RC pairs and hysteresis at {grid[k]:g} °C ({what}): {source}")
    for k in range(nt):
        if d.carried_from[k] >= 0:
            continue
        if d.hyst_from is not None and d.hyst_from[k] >= 0:
            report.not_identified.append(
                f"hysteresis M0, M at {grid[k]:g} °C (current only one way near it, as in a capacity test, so "
                f"it cannot be told from the resistive drop): taken from {grid[int(d.hyst_from[k])]:g} °C")
        if d.rn_from is not None and d.rn_from[k] >= 0:
            report.not_identified.append(
                f"current-dependent resistance Rn at {grid[k]:g} °C (one level of current near it, so it cannot be "
                f"told from R0): taken from {grid[int(d.rn_from[k])]:g} °C")
        if d.weak is not None and d.weak[k]:
            src = [j for j in range(nt) if not d.weak[j]]
            taus = (f"; time constants taken from {grid[min(src, key=lambda j: abs(grid[j] - grid[k]))]:g} °C"
                    if src else "")
            floor = f"each held no lower than at {grid[k + 1]:g} °C" if k + 1 < nt else "as fitted"
            report.not_identified.append(
                f"the split of the resistance into R0 and the RC pairs at {grid[k]:g} °C (current one way at one "
                f"level near it): {floor}{taus}")
    report.not_identified.append(f"hysteresis rate gamma (held at {HYST_GAMMA:g}) and the saturation of the "
                                 f"current-dependent resistance (held at {RN_SAT_PER_A:g} /A)")

    volts = np.concatenate([r.voltage_V[np.isfinite(r.voltage_V)] for r in model_recs + inputs.capacity])
    amps = np.concatenate([np.abs(r.current_A[np.isfinite(r.current_A)]) for r in model_recs + inputs.capacity])
    nominal, how = _nominal(model_recs + inputs.capacity, nominal_capacity_Ah, capacity)
    if (odd := _nominal_disagreement(model_recs + inputs.capacity)) is not None:
        report.warnings.append(odd)
    i_max, rule = _current_limit(nominal, float(amps.max()))
    report.assumptions += [how, rule]
    cell = CellParams(
        temp_C=np.asarray(grid), ocv_V=ocv, capacity_Ah=capacity, hyst_gamma=np.full(nt, HYST_GAMMA),
        r0_ohm=d.r0_ohm, r1_ohm=d.r1_ohm, tau1_s=d.tau1_s, r2_ohm=d.r2_ohm, tau2_s=d.tau2_s,
        hyst_m0_V=d.hyst_m0_V, hyst_m_V=d.hyst_m_V, rn_ohm=d.rn_ohm, rn_sat_per_A=RN_SAT_PER_A,
        eta_charge=1.0, v_min_V=float(np.floor(volts.min() * 20) / 20), v_max_V=float(np.ceil(volts.max() * 20) / 20),
        i_max_A=i_max, nominal_capacity_Ah=nominal,
    )
    report.assumptions.append(
        f"v_min_V {cell.v_min_V:g} V and v_max_V {cell.v_max_V:g} V: the lowest and highest voltage in the inputs, "
        "rounded out to 50 mV; the state of power keeps the cell within them: set the datasheet's limits in the "
        "file (cell.v_min_V, cell.v_max_V) if it gives them")
    report.warnings += _zero_resistance_warnings(cell)
    report.warnings += _time_constant_warnings(cell, TAU1_GRID_S, TAU2_GRID_S)
    report.warnings += _capacity_warnings(float(np.max(capacity)), float(amps.max()), nominal_capacity_Ah)
    params = ParameterSet(name, cell, start, {})
    report.warnings += _ambient_warnings(model_recs + inputs.capacity, params)
    return params, report


#: Currents above this many C of the fitted capacity are no cell's: the capacity (or the time) is off.
PLAUSIBLE_C_RATE = 30.0


def _capacity_warnings(measured_Ah: float, peak_A: float, given_Ah: float | None) -> list[str]:
    """A fitted capacity that the inputs' own currents, or the rated capacity given, contradict."""
    found = []
    if peak_A > PLAUSIBLE_C_RATE * measured_Ah:
        found.append(f"the fitted capacity is {measured_Ah:.3g} Ah, and the inputs draw up to {peak_A:.3g} A, "
                     f"{peak_A / measured_Ah:.0f} C: a time column in another unit than its header says (minutes "
                     "under [s]), or a current in another (A under [mA])? Check the files with bmsfil import")
    if given_Ah and not 0.5 <= measured_Ah / given_Ah <= 1.5:
        found.append(f"the fitted capacity is {measured_Ah:.3g} Ah, {measured_Ah / given_Ah:.2g} times the rated "
                     f"{given_Ah:g} Ah given with --nominal-capacity: another cell's rating, or inputs in another unit?")
    return found


def _ambient_warnings(recs: list[Recording], params: ParameterSet) -> list[str]:
    """Inputs whose stated ambient temperature, under which the fit files them, is far from the
    temperature the cell was measured at (as bmsfil eval warns of them)."""
    found = []
    for rec in recs:
        ambient = rec.meta.ambient_temp_C
        if ambient is None:
            continue
        at = WorkingTemperature(params)
        at.add(rec.time_s, rec.current_A, rec.temp_C)
        median = at.value()
        if median is not None and abs(median - ambient) > AMBIENT_MARGIN_K:
            found.append(f"{rec.meta.name}: fitted under its stated ambient {ambient:g} °C, and its median "
                         f"temperature in discharge is {median:.1f} °C: a mislabelled file? (bmsfil import --meta "
                         "ambient_temp_C=T relabels it)")
    return found


def _stated_nominals(recs: list[Recording]) -> dict[float, list[Recording]]:
    """The inputs by the nominal_capacity_Ah their metadata state (4
    figures), smallest first; inputs that state none are left out."""
    stated: dict[float, list[Recording]] = {}
    for r in recs:
        if r.meta.nominal_capacity_Ah:
            stated.setdefault(float(f"{r.meta.nominal_capacity_Ah:.4g}"), []).append(r)
    return dict(sorted(stated.items()))


def _nominal(recs: list[Recording], given: float | None, capacity: np.ndarray) -> tuple[float, str]:
    """The nominal capacity and, for the assumptions, where it comes from:
    --nominal-capacity, else the nominal_capacity_Ah of the inputs' metadata
    when all that carry one agree (the LG HG2 raw files' headers give it),
    else the largest measured capacity to 2 figures (3.0 Ah, 0.045 Ah)."""
    if given:
        return given, f"nominal capacity {given:g} Ah from --nominal-capacity"
    measured = float(f"{np.max(capacity):.2g}")
    stated = _stated_nominals(recs)
    if len(stated) == 1:
        (value, rs), = stated.items()
        return value, (f"nominal capacity {value:g} Ah from the metadata (nominal_capacity_Ah) of "
                       f"{len(rs)} of the {len(recs)} inputs (measured: {np.max(capacity):.3g} Ah at most)")
    listed = ", ".join(f"{q:g} Ah in " + (", ".join(r.meta.name for r in rs) if len(rs) <= 3 else f"{len(rs)} inputs")
                       for q, rs in stated.items())
    why = (f"the inputs' metadata disagree on nominal_capacity_Ah ({listed})" if stated else
           "no input's metadata gives a nominal_capacity_Ah")
    return measured, (f"nominal capacity {measured:g} Ah: the largest measured capacity, to 2 figures, since {why}; "
                      "give the cell's rated capacity with --nominal-capacity (bmsfil eval warns about recordings "
                      "whose metadata name another nominal capacity)")


def _nominal_disagreement(recs: list[Recording]) -> str | None:
    """A warning when the inputs' metadata name more than one nominal
    capacity: an input from another cell (the LG HG2 set's 10 °C C/20 file
    names an MG1 of 2.9 Ah in its header) would be fitted as this one."""
    stated = _stated_nominals(recs)
    if len(stated) < 2:
        return None
    ranked = sorted(stated.items(), key=lambda kv: -len(kv[1]))
    most, rest = ranked[0], ranked[1:]
    odd = "; ".join(f"{', '.join(r.meta.name + (f' (cell {r.meta.cell_id})' if r.meta.cell_id else '') for r in rs)}: "
                    f"{q:g} Ah" for q, rs in rest)
    return (f"the inputs' metadata name {len(stated)} nominal capacities: {len(most[1])} of them {most[0]:g} Ah, "
            f"against {odd}. Inputs from another cell are fitted as this one: leave them out if they are, "
            "or give the rated capacity with --nominal-capacity if only their headers differ")


def _current_limit(nominal_Ah: float, peak_A: float) -> tuple[float, str]:
    """i_max_A, the larger of 10 C and twice the largest measured current,
    and the assumption that says so."""
    i_max = max(10.0 * nominal_Ah, 2.0 * peak_A)
    return i_max, (f"i_max_A {i_max:.3g} A: the larger of 10 C ({10.0 * nominal_Ah:.3g} A) and twice the largest "
                   f"current in the inputs (2 x {peak_A:.3g} A); the filter takes a current above it for a sensor "
                   "fault and the state of power asks for no more: set the cell's own limit in the file "
                   "(cell.i_max_A, or power.i_discharge_max_A and i_charge_max_A) if its datasheet gives one")


def _zero_resistance_warnings(cell: CellParams) -> list[str]:
    """A warning for each temperature where R0 or R1 sit at the fit's
    lower bound, 0, over ZERO_SHARE of the SOC grid or more (R2 named too
    when it also does)."""
    out = []
    z = np.linspace(0.0, 1.0, cell.r0_ohm.shape[1])
    mid = int(np.argmin(np.abs(z - 0.5)))
    for k, t in enumerate(cell.temp_C.tolist()):
        tables = {"R0": cell.r0_ohm[k], "R1": cell.r1_ohm[k], "R2": cell.r2_ohm[k]}
        zero = {name: r <= AT_ZERO_OHM for name, r in tables.items()}
        # Not R2 alone: the slow pair (tau2 of tens of minutes, often at the
        # search's end, warned of there) adds little within 30 s.
        flagged = [name for name, m in zero.items() if m.mean() >= ZERO_SHARE and name != "R2"]
        if flagged and zero["R2"].mean() >= ZERO_SHARE:
            flagged.append("R2")
        if not flagged:
            continue
        where = ", ".join(f"{name} at {int(zero[name].sum())} of {z.size} SOC points" for name in flagged)
        if all(m[mid] for m in zero.values()) and cell.rn_ohm[k] <= AT_ZERO_OHM:
            ocv = float(np.interp(0.5, np.linspace(0.0, 1.0, cell.ocv_V.shape[1]), cell.ocv_V[k]))
            sop = (f"no resistance at all at SOC 0.5, so the state of power there is the current limit times the "
                   f"OCV ({cell.i_max_A:.3g} A x {ocv:.2f} V = {cell.i_max_A * ocv:.0f} W)")
        elif "R0" in flagged:
            sop = "no instantaneous drop, so the state of power over short pulses is too high"
        else:
            sop = "the RC pairs' drop over seconds to minutes is missing, so the 10-30 s state of power is too high"
        out.append(f"resistances at {t:g} °C are 0 Ω, the fit's lower bound ({where}): the data there show "
                   f"no resistive drop (a constant current only, or an --ocv test that already holds it): {sop}, and "
                   "the filter's overpotential model misses the drop under load and reads it as a change of SOC. "
                   f"Give a pulse test (--pulse) or a drive cycle with current steps (--dynamic) at {t:g} °C")
    return out


def _time_constant_warnings(cell: CellParams, tau1_grid: tuple[float, ...], tau2_grid: tuple[float, ...]) -> list[str]:
    """A warning for each time constant at an end of the values the fit searches."""
    out = []
    for name, taus, search in (("tau1", cell.tau1_s[:, 0], tau1_grid), ("tau2", cell.tau2_s[:, 0], tau2_grid)):
        for end, word in ((min(search), "shortest"), (max(search), "longest")):
            at = [f"{t:g} °C" for t, tau in zip(cell.temp_C.tolist(), taus.tolist()) if tau == end]
            if at:
                out.append(f"{name} is {end:g} s at {', '.join(at)}, the {word} the fit tries ({min(search):g} to "
                           f"{max(search):g} s): the cell's own may lie beyond, and with it the split of the drop "
                           "between R0 and the RC pairs, so the filter's overpotential relaxes at the wrong pace "
                           f"after a load step; {TIME_CONSTANT_HINTS[(name, word)]}")
    return out


def discharge_capacity_total(rec: Recording) -> float:
    """Ah discharged from the start to the lowest point of the charge counter."""
    return float(-np.min(charge_counter(rec)))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bmsfil_version() -> str:
    try:
        return version("bmsfil")
    except PackageNotFoundError:
        return "unknown"


def provenance(files: dict[str, list[Path]], command: str,
               recordings: dict[str, list[Recording]] | None = None) -> dict[str, str]:
    """Notes that say where a parameter set came from: every input with its
    sha256 (and, given its recordings, that of its samples:
    `Recording.data_sha256`, the same for the .npz an import made of it), the
    command, the folder it ran in (which relative paths are from), the writer."""
    notes = {"command": command, "run_in": str(Path.cwd()), "written_by": f"bmsfil {bmsfil_version()}"}
    for role, paths in files.items():
        if paths:
            recs = (recordings or {}).get(role) or []
            data = [f" data:{r.data_sha256()[:16]}" for r in recs] if len(recs) == len(paths) else [""] * len(paths)
            notes[f"{role}_from"] = "; ".join(f"{p} sha256:{file_sha256(p)[:16]}{d}" for p, d in zip(paths, data))
    return notes
