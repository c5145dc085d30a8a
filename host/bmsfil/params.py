"""Parameter sets: the cell model and the filter tuning, as one JSON file.

A parameter set is what `bmsfil fit`/`tune` write and every target loads.
Tables sit on uniform SOC grids from 0 to 1 (the grid is implied by the
number of columns) and on an ascending list of temperatures, exactly as the
C struct `bf_cell_params_t` holds them.
"""

from __future__ import annotations

import json
import re
import warnings
import zipfile
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import TypeVar

import numpy as np

from .frozen import frozen_array, restore_frozen
from .recording import SAMPLE_LIMITS

FORMAT_TAG = "bmsfil-params/1"
MAX_TEMPS = 8
OCV_MAX_POINTS = 101
RC_MAX_POINTS = 21
RC_TABLES = ("r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")
#: As BF_MIN_CAPACITY_AH and BF_MIN_TAU_S in cell_model.h.
MIN_CAPACITY_AH = 1e-3
MIN_TAU_S = 1e-3
TEMP_ROWS = ("capacity_Ah", "hyst_m0_V", "hyst_m_V", "hyst_gamma", "rn_ohm")
#: The fields of a cell that are tables or rows of numbers; the others are single numbers.
CELL_ARRAYS = ("temp_C", "ocv_V") + RC_TABLES + TEMP_ROWS
CELL_SCALARS = ("eta_charge", "v_min_V", "v_max_V", "i_max_A", "nominal_capacity_Ah", "rn_sat_per_A")
#: A parameter file holds a few KB; anything this big is not one.
MAX_FILE_BYTES = 16 << 20
_TOP_LEVEL = ("format", "name", "notes", "cell", "filter", "thermal", "power")
#: Accepted range of the thermal parameters, as BF_THERMAL_MIN/MAX_* in thermal.h.
THERMAL_J_PER_K = (1e-2, 1e6)
THERMAL_K_PER_W = (1e-3, 1e4)
#: How far outside [v_min_V, v_max_V] a voltage is still a reading of the
#: cell (BF_VOLTAGE_MARGIN_V in cell_model.h; the filter's step flags anything beyond).
VOLTAGE_MARGIN_V = 0.5
#: The temperatures the filters take as readings (BF_TEMP_MIN_C, BF_TEMP_MAX_C in cell_model.h).
TEMP_MIN_C, TEMP_MAX_C = -60.0, 120.0


class ParamsError(ValueError):
    """A parameter file or value that cannot be used, naming the field."""


class ParamsWarning(UserWarning):
    """A parameter file that loads but holds a value it likely should not, naming the field and why."""


@dataclass(frozen=True)
class CellParams:
    """Equivalent-circuit model of one cell type (see csrc/include/bmsfil/cell_model.h)."""

    temp_C: np.ndarray
    ocv_V: np.ndarray
    r0_ohm: np.ndarray
    r1_ohm: np.ndarray
    tau1_s: np.ndarray
    r2_ohm: np.ndarray
    tau2_s: np.ndarray
    capacity_Ah: np.ndarray
    hyst_m0_V: np.ndarray
    hyst_m_V: np.ndarray
    hyst_gamma: np.ndarray
    eta_charge: float = 1.0
    v_min_V: float = 2.5
    v_max_V: float = 4.2
    i_max_A: float = 50.0
    #: The capacity on the cell's data sheet (C-rates, start-current checks,
    #: the parameter-set match): required, as no default fits every cell.
    nominal_capacity_Ah: float = field(kw_only=True)
    #: Resistance that falls with current, Rn(T) * i / (1 + rn_sat_per_A * |i|); None: zeros.
    rn_ohm: np.ndarray | None = None
    rn_sat_per_A: float = 0.0

    def __post_init__(self) -> None:
        if self.rn_ohm is None:
            object.__setattr__(self, "rn_ohm", np.zeros(len(np.atleast_1d(self.temp_C))))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (list, tuple, np.ndarray)):
                object.__setattr__(self, f.name, frozen_array(value))
        self.validate()

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_frozen(self, state)

    @property
    def ocv_soc(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.ocv_V.shape[1])

    @property
    def rc_soc(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.r0_ohm.shape[1])

    def validate(self) -> None:
        """Every check of bf_cell_params_check, made on the values as the C
        core holds them (single precision), each naming its field; and more
        than the core checks (an OCV row must not fall, a nominal capacity)."""
        nt = self.temp_C.shape[0] if self.temp_C.ndim == 1 else -1
        if not 1 <= nt <= MAX_TEMPS:
            raise ParamsError(f"cell.temp_C: expected 1..{MAX_TEMPS} temperatures, got shape {self.temp_C.shape}")
        single: dict[str, np.ndarray] = {}
        for f in fields(self):
            value = np.asarray(getattr(self, f.name), dtype=np.float64)
            if not np.all(np.isfinite(value)):
                what = "expected a finite number" if value.ndim == 0 else "every value must be finite"
                raise ParamsError(f"cell.{f.name}: {what}, got {_first_bad(value, np.isfinite(value))}")
            with np.errstate(over="ignore"):
                single[f.name] = value.astype(np.float32)
            if not np.all(np.isfinite(single[f.name])):
                raise ParamsError(f"cell.{f.name}: {_first_bad(value, np.isfinite(single[f.name]))} is beyond single "
                                  "precision (3.4e+38), in which the C core holds it")
        c = single
        if np.any(np.diff(c["temp_C"]) <= 0):
            raise ParamsError(f"cell.temp_C: must be strictly ascending (in single precision), got {self.temp_C.tolist()}")
        if self.ocv_V.ndim != 2 or self.ocv_V.shape[0] != nt or not 2 <= self.ocv_V.shape[1] <= OCV_MAX_POINTS:
            raise ParamsError(
                f"cell.ocv_V: expected {nt} rows of 2..{OCV_MAX_POINTS} points, got shape {self.ocv_V.shape}"
            )
        # The SOC from a voltage (bf_cell_soc_from_ocv) is a bisection on an
        # OCV that does not fall as SOC rises; `bmsfil fit` makes such rows
        # (flat steps at most), a row that falls is a table edited or swapped.
        # A dip below OCV_DIP_V (another tool's rounding) moves the inverse by
        # less than a point where the curve is flattest; a larger one is refused.
        falls = np.argwhere(np.diff(c["ocv_V"], axis=1) < -np.float32(OCV_DIP_V))  # as bf_cell_params_check
        if falls.size:
            i, j = (int(k) for k in falls[0])
            soc = self.ocv_soc
            drop_mV = (float(c["ocv_V"][i, j]) - float(c["ocv_V"][i, j + 1])) * 1e3
            raise ParamsError(
                f"cell.ocv_V: the row at {self.temp_C[i]:g} °C (row {i}) falls by {drop_mV:.3g} mV from "
                f"{self.ocv_V[i, j]:.6f} V at index {j} (SOC {soc[j]:.3g}) to {self.ocv_V[i, j + 1]:.6f} V at index "
                f"{j + 1} (SOC {soc[j + 1]:.3g}): the OCV must not fall as SOC rises by more than "
                f"{OCV_DIP_V * 1e3:g} mV (the SOC from a voltage is its inverse; a table listed from 100 % to 0 %? "
                "reverse it)"
            )
        n_rc = self.r0_ohm.shape[1] if self.r0_ohm.ndim == 2 else -1
        for name in RC_TABLES:
            table = getattr(self, name)
            if table.shape != (nt, n_rc) or not 2 <= n_rc <= RC_MAX_POINTS:
                raise ParamsError(
                    f"cell.{name}: expected {nt} rows of the same 2..{RC_MAX_POINTS} points as r0_ohm, "
                    f"got shape {table.shape}"
                )
            lower = MIN_TAU_S if name.startswith("tau") else 0.0
            if not np.all(c[name] >= np.float32(lower)):
                raise ParamsError(f"cell.{name}: every value must be finite and >= {lower}")
        for name in TEMP_ROWS:
            if getattr(self, name).shape != (nt,):
                raise ParamsError(f"cell.{name}: expected {nt} finite values, got {getattr(self, name).tolist()}")
        if not np.all(c["capacity_Ah"] >= np.float32(MIN_CAPACITY_AH)):
            raise ParamsError(f"cell.capacity_Ah: every capacity must be >= {MIN_CAPACITY_AH} Ah")
        if not c["nominal_capacity_Ah"] >= np.float32(MIN_CAPACITY_AH):
            raise ParamsError(f"cell.nominal_capacity_Ah: must be >= {MIN_CAPACITY_AH} Ah, "
                              f"got {self.nominal_capacity_Ah:g}")
        if not (0 < c["eta_charge"] <= 1.5):
            raise ParamsError(f"cell.eta_charge: expected a value in (0, 1.5], got {self.eta_charge}")
        if not (c["v_max_V"] > c["v_min_V"]):
            raise ParamsError("cell.v_max_V must exceed cell.v_min_V (in single precision)")
        if not np.all(c["rn_ohm"] >= 0) or not c["rn_sat_per_A"] >= 0:
            raise ParamsError("cell.rn_ohm and cell.rn_sat_per_A must be finite and >= 0")
        if not np.all(c["hyst_gamma"] >= 0):
            raise ParamsError(f"cell.hyst_gamma: every value must be >= 0, got {self.hyst_gamma.tolist()}")
        if not c["i_max_A"] > 0:
            raise ParamsError(f"cell.i_max_A must be > 0 (in single precision), got {self.i_max_A}")

    def to_json(self) -> dict[str, object]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


def _first_bad(values: np.ndarray, ok: np.ndarray) -> str:
    """The first value where `ok` is False, as a message shows it."""
    return f"{float(np.ravel(values)[np.flatnonzero(~np.ravel(ok))[0]]):g}"


@dataclass(frozen=True)
class FilterTuning:
    """Noise and guard settings of the SOC EKF (see csrc/include/bmsfil/soc_ekf.h).

    The defaults are those `tuning.tune_filter` found for the LG HG2 drive
    cycles; they are a sound start for other cells of similar size, and
    `python -m bmsfil.lg_hg2_params` starts its own search from them.
    `hold_sigma_c_rate` is a prior, not searched: 10 Hz drive cycles cannot
    tell its value (docs/estimator.md)."""

    q_soc_per_s: float = 9.59e-09
    q_irc_A2_per_s: float = 4.84e-06
    q_hyst_per_s: float = 7.98e-08
    r_voltage_V2_s: float = 0.0548
    r_overpotential_rel2_s: float = 4.91
    r_dt_min_s: float = 0.05
    p0_soc: float = 0.25
    p0_soc_ocv: float = 4e-4
    p0_irc_A2: float = 1e-2
    p0_hyst: float = 0.25
    p_floor_soc: float = 5.21e-05
    p_floor_irc_A2: float = 1e-8
    p_floor_hyst: float = 1e-8
    gate_sigma: float = 4.0
    hyst_current_A: float = 0.05
    dt_max_s: float = 3600.0
    #: 1 sigma, in C, of an interval's mean current about the sample that
    #: ends it: the current is sampled, not integrated, so each step adds
    #: (hold_sigma_c_rate * dt / 3600 s)^2 to the SOC variance (docs/estimator.md).
    hold_sigma_c_rate: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = float(getattr(self, f.name))
            with np.errstate(over="ignore"):
                single = np.float32(value)  # what the C core holds (bf_soc_ekf_tuning_check)
            if not np.isfinite(single) or value < 0 or (f.name in _POSITIVE_TUNING and not single > 0):
                want = "> 0" if f.name in _POSITIVE_TUNING else ">= 0"
                raise ParamsError(f"filter.{f.name}: expected a value {want} that single precision holds "
                                  f"(float32: from 1.4e-45 to 3.4e+38), got {value}")
            if f.name == "gate_sigma" and single < np.float32(GATE_SIGMA_MIN):
                raise ParamsError(f"filter.gate_sigma: expected a gate of at least {GATE_SIGMA_MIN:g} sigma "
                                  f"(the filter divides by its square), got {value}")
            object.__setattr__(self, f.name, value)


#: The largest fall of an OCV row between two neighbouring points that loads (V; BF_OCV_DIP_V).
OCV_DIP_V = 1e-3

#: The smallest gate_sigma the C core takes (BF_GATE_SIGMA_MIN, soc_ekf.h).
GATE_SIGMA_MIN = 1e-3

#: FilterTuning fields the C core needs above zero (the rest may be 0).
_POSITIVE_TUNING = frozenset({"r_voltage_V2_s", "r_dt_min_s", "p0_soc", "p0_soc_ocv", "p0_irc_A2", "p0_hyst",
                              "p_floor_soc", "p_floor_irc_A2", "p_floor_hyst", "gate_sigma", "dt_max_s"})


@dataclass(frozen=True)
class ThermalParams:
    """Two-state lumped thermal model of the cell (`bf_thermal_params_t`,
    csrc/include/bmsfil/thermal.h): core and surface heat capacities, J/K;
    conduction core to surface and convection surface to ambient, K/W.
    Optional in a parameter set (its ``thermal`` section); `bmsfil fit
    --thermal` identifies it and its notes say what was fixed."""

    cc_J_per_K: float
    cs_J_per_K: float
    rc_K_per_W: float
    ru_K_per_W: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = float(getattr(self, f.name))
            low, high = THERMAL_J_PER_K if f.name.endswith("J_per_K") else THERMAL_K_PER_W
            if not (np.isfinite(value) and low <= value <= high):
                raise ParamsError(f"thermal.{f.name}: expected a value in [{low:g}, {high:g}], got {value}")
            object.__setattr__(self, f.name, value)


@dataclass(frozen=True)
class PowerLimits:
    """The operating limits within which the state of power is computed
    (`bf_sop_limits_t` without its horizon; csrc/include/bmsfil/power.h):
    a BMS's own, usually narrower than the cell's plausible ranges. Optional
    in a parameter set (its ``power`` section), every field too: a field not
    given is the cell's (``v_min_V``, ``v_max_V``, ``i_max_A`` for both
    currents) or the default below. A limit beyond what the filter reads of
    the cell is refused, one beyond the cell's voltage range that it still
    reads warned of (`beyond_cell`, docs/power.md). The charge window
    (``temp_charge_min_C``, ``temp_charge_max_C``; the temperature window
    where not given) lies inside the temperature window: outside it the
    charge power is 0 W, the discharge power is still computed."""

    v_min_V: float | None = None
    v_max_V: float | None = None
    i_discharge_max_A: float | None = None
    i_charge_max_A: float | None = None
    soc_min: float = 0.0
    soc_max: float = 1.0
    temp_min_C: float = -30.0
    temp_max_C: float = 60.0
    temp_charge_min_C: float | None = None
    temp_charge_max_C: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            value = float(value)
            if not np.isfinite(value):
                raise ParamsError(f"power.{f.name}: expected a finite number, got {value}")
            object.__setattr__(self, f.name, value)
        for name in ("v_min_V", "v_max_V", "i_discharge_max_A", "i_charge_max_A"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ParamsError(f"power.{name}: expected a value > 0, got {value}")
        if self.v_min_V is not None and self.v_max_V is not None and not self.v_min_V < self.v_max_V:
            raise ParamsError(f"power: v_min_V {self.v_min_V} must be below v_max_V {self.v_max_V}")
        if not 0.0 <= self.soc_min < self.soc_max <= 1.0:
            raise ParamsError(f"power: expected 0 <= soc_min < soc_max <= 1, got {self.soc_min} and {self.soc_max}")
        if not self.temp_min_C < self.temp_max_C:
            raise ParamsError(f"power: temp_min_C {self.temp_min_C} must be below temp_max_C {self.temp_max_C}")
        self._check_charge_window()

    def charge_window(self) -> tuple[float, float]:
        """The charge temperature window (°C): the one given, else the temperature window."""
        return (self.temp_charge_min_C if self.temp_charge_min_C is not None else self.temp_min_C,
                self.temp_charge_max_C if self.temp_charge_max_C is not None else self.temp_max_C)

    def _check_charge_window(self) -> None:
        """The charge window inside the temperature window and in order, compared
        in single precision as bf_sop_limits_check compares them."""
        f32 = np.float32
        low, high = self.charge_window()
        if f32(low) < f32(self.temp_min_C) or f32(low) >= f32(self.temp_max_C):
            raise ParamsError(f"power.temp_charge_min_C: {low:g} °C is outside [temp_min_C, temp_max_C) = "
                              f"[{self.temp_min_C:g}, {self.temp_max_C:g}) °C: the charge window must lie inside "
                              "the temperature window, outside which neither direction is allowed")
        if f32(high) > f32(self.temp_max_C) or f32(high) <= f32(self.temp_min_C):
            raise ParamsError(f"power.temp_charge_max_C: {high:g} °C is outside (temp_min_C, temp_max_C] = "
                              f"({self.temp_min_C:g}, {self.temp_max_C:g}] °C: the charge window must lie inside "
                              "the temperature window, outside which neither direction is allowed")
        if not f32(low) < f32(high):
            raise ParamsError(f"power: temp_charge_min_C {low:g} °C must be below temp_charge_max_C {high:g} °C")

    def resolved(self, cell: "CellParams") -> dict[str, float]:
        """Every limit, the ones not given taken from the cell (bf_sop_limits_t's names)."""
        out = {
            "v_min_V": self.v_min_V if self.v_min_V is not None else cell.v_min_V,
            "v_max_V": self.v_max_V if self.v_max_V is not None else cell.v_max_V,
            "i_dis_max_A": self.i_discharge_max_A if self.i_discharge_max_A is not None else cell.i_max_A,
            "i_chg_max_A": self.i_charge_max_A if self.i_charge_max_A is not None else cell.i_max_A,
            "soc_min": self.soc_min, "soc_max": self.soc_max,
            "temp_min_C": self.temp_min_C, "temp_max_C": self.temp_max_C,
        } | dict(zip(("temp_chg_min_C", "temp_chg_max_C"), self.charge_window()))
        if not out["v_min_V"] < out["v_max_V"]:
            low, high = (f"{'power' if given is not None else 'cell'}.{name} {out[name]:g} V"
                         for name, given in (("v_min_V", self.v_min_V), ("v_max_V", self.v_max_V)))
            raise ParamsError(f"{low} must be below {high} (a power limit not given is the cell's)")
        errors = self.beyond_cell(cell)[0]
        if errors:
            raise ParamsError("; ".join(errors))
        return out

    def beyond_cell(self, cell: "CellParams") -> tuple[list[str], list[str]]:
        """The limits given beyond the cell's own ranges, as errors and
        warnings, each naming the field, its value and the cell's (compared
        in single precision, as bf_sop_limits_cell_check compares them).
        Errors: a limit that lets the state of power count on readings the
        filter takes for sensor faults (a voltage more than VOLTAGE_MARGIN_V
        outside the cell's [v_min_V, v_max_V], a current above its i_max_A, a
        temperature outside [TEMP_MIN_C, TEMP_MAX_C]; the charge window lies
        inside the temperature window, checked on construction). Warnings: a
        voltage limit outside the cell's range that the filter still reads."""
        f32 = np.float32
        errors: list[str] = []
        cautions: list[str] = []
        for name, high, what in (("v_max_V", True, "charge"), ("v_min_V", False, "discharge")):
            value, bound = getattr(self, name), getattr(cell, name)
            if value is None:
                continue
            side, most = ("above", "at most") if high else ("below", "at least")
            read = f32(bound) + f32(VOLTAGE_MARGIN_V if high else -VOLTAGE_MARGIN_V)  # the filter's last reading
            if f32(value) > read if high else f32(value) < read:
                errors.append(f"power.{name}: {value:g} V is {side} cell.{name} {bound:g} V by more than "
                              f"{VOLTAGE_MARGIN_V:g} V, where the filter takes a reading for a sensor fault "
                              f"(voltage_range): the state of power would {what} the cell to voltages it cannot "
                              f"read; expected {most} {float(read):g} V, usually within cell.{name}")
            elif f32(value) > f32(bound) if high else f32(value) < f32(bound):
                cautions.append(f"power.{name}: {value:g} V is {side} cell.{name} {bound:g} V: the state of power "
                                f"lets a {what} pulse take the cell outside its own voltage range (the filter still "
                                f"reads voltages to {float(read):g} V); a BMS's limit is usually within the cell's")
        for name in ("i_discharge_max_A", "i_charge_max_A"):
            value = getattr(self, name)
            if value is not None and f32(value) > f32(cell.i_max_A):
                errors.append(f"power.{name}: {value:g} A is above cell.i_max_A {cell.i_max_A:g} A, beyond which the "
                              "filter takes a current for a sensor fault (current_range): the state of power would "
                              f"ask for currents it cannot read; expected at most {cell.i_max_A:g} A")
        for name, high, bound in (("temp_min_C", False, TEMP_MIN_C), ("temp_max_C", True, TEMP_MAX_C)):
            value = getattr(self, name)
            if f32(value) > f32(bound) if high else f32(value) < f32(bound):
                errors.append(f"power.{name}: {value:g} °C is {'above' if high else 'below'} {bound:g} °C, where the "
                              "filter takes a temperature for a sensor fault (temp_range) and keeps its last one: the "
                              f"limit is never reached; expected {'at most' if high else 'at least'} {bound:g} °C")
        return errors, cautions


#: The notes key `bmsfil fit` writes when an OCV is a discharge leg alone (the loaded voltage):
#: its value names the temperatures and says what follows (`ParameterSet.ocv_loaded`).
OCV_LOADED_NOTE = "ocv_loaded"


@dataclass(frozen=True)
class ParameterSet:
    name: str
    cell: CellParams
    filter: FilterTuning
    notes: dict[str, str]
    #: The thermal model, when the set has one (files without it load as before).
    thermal: ThermalParams | None = None
    #: The state of power's operating limits, when the set has them (else the cell's).
    power: PowerLimits | None = None

    @property
    def ocv_loaded(self) -> bool:
        """Whether the set's OCV is, at some temperature, a discharge curve rather than a rested
        cell's voltage (`OCV_LOADED_NOTE` in its notes): a rested cell's voltage then does not
        read as its SOC."""
        return OCV_LOADED_NOTE in self.notes

    def power_limits(self) -> dict[str, float]:
        """The state of power's limits (bf_sop_limits_t's fields but the horizon)."""
        return (self.power or PowerLimits()).resolved(self.cell)

    def with_filter(self, **changes: float) -> "ParameterSet":
        return replace(self, filter=replace(self.filter, **changes))

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT_TAG,
            "name": self.name,
            "notes": self.notes,
            "cell": self.cell.to_json(),
            "filter": asdict(self.filter),
        } | ({"thermal": asdict(self.thermal)} if self.thermal is not None else {}) | (
            {"power": {k: v for k, v in asdict(self.power).items() if v is not None}} if self.power is not None else {})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def from_json(cls, data: dict[str, object], origin: str = "<json>") -> "ParameterSet":
        """A parameter set from its JSON object; any problem is a ParamsError naming ``origin`` and the field."""
        if not isinstance(data, dict):
            raise ParamsError(
                f"{origin}: expected a JSON object ({', '.join(_TOP_LEVEL)}), got {_json_type(data)}"
            )
        if data.get("format") != FORMAT_TAG:
            raise ParamsError(f"{origin}: format {data.get('format')!r}, expected {FORMAT_TAG!r}")
        unknown = sorted(set(data) - set(_TOP_LEVEL))
        if unknown:
            raise ParamsError(f"{origin}: unknown field(s) {', '.join(unknown)}; expected {', '.join(_TOP_LEVEL)}")
        if "cell" not in data:
            raise ParamsError(f"{origin}: missing section 'cell'")
        cell_data = _section(origin, data, "cell")
        filter_data = _section(origin, data, "filter")
        notes = _section(origin, data, "notes")
        name = data.get("name", "")
        if not isinstance(name, str):
            raise ParamsError(f"{origin}: name: expected a text, got {_shown(name)}")
        thermal = _optional_section(origin, data, "thermal", ThermalParams, True) if "thermal" in data else None
        power = _optional_section(origin, data, "power", PowerLimits, False) if "power" in data else None
        known_cell = {f.name for f in fields(CellParams)}
        known_filter = {f.name for f in fields(FilterTuning)}
        for section, given, known in (("cell", cell_data, known_cell), ("filter", filter_data, known_filter)):
            unknown = sorted(set(given) - known)
            if unknown:
                raise ParamsError(f"{origin}: unknown {section} field(s) {', '.join(unknown)}")
        required = [f.name for f in fields(CellParams) if f.default is MISSING and f.default_factory is MISSING]
        missing = [field_name for field_name in required if field_name not in cell_data]
        if missing:
            raise ParamsError(f"{origin}: missing cell field(s) {', '.join(missing)}")
        cell_values = {key: _value(origin, "cell", key, value) for key, value in cell_data.items()}
        filter_values = {key: _value(origin, "filter", key, value) for key, value in filter_data.items()}
        try:
            cell = CellParams(**cell_values)  # type: ignore[arg-type]
            tuning = FilterTuning(**filter_values)  # type: ignore[arg-type]
        except ParamsError as exc:
            raise ParamsError(f"{origin}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ParamsError(f"{origin}: {exc}") from None
        result = cls(name=name, cell=cell, filter=tuning, notes=dict(notes), thermal=thermal,  # type: ignore[arg-type]
                     power=power)
        try:
            result.power_limits()
        except ParamsError as exc:
            raise ParamsError(f"{origin}: {exc}") from None
        for caution in power.beyond_cell(cell)[1] if power is not None else []:
            warnings.warn(f"{origin}: {caution}", ParamsWarning, stacklevel=2)
        return result

    @classmethod
    def load(cls, path: str | Path) -> "ParameterSet":
        """A parameter file (UTF-8 JSON), its values checked as from_json does and their units as well."""
        path = Path(path)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ParamsError(
                    f"{path}: {size} bytes, not a parameter set (those hold a few KB; at most {MAX_FILE_BYTES})"
                )
            raw = path.read_bytes()
        except OSError as exc:
            raise ParamsError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return cls.from_bytes(raw, str(path))

    @classmethod
    def from_bytes(cls, raw: bytes, origin: str = "<bytes>") -> "ParameterSet":
        """A parameter file's bytes (UTF-8 JSON) as `load` reads them; any
        problem is a ParamsError naming ``origin`` (and the line or field)."""
        if not raw.strip():
            raise ParamsError(f"{origin}: the file is empty; expected a JSON parameter set ({FORMAT_TAG})")
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ParamsError(f"{origin}: UTF-16 text; a parameter file must be UTF-8: save it as UTF-8")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ParamsError(
                f"{origin}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): "
                "a parameter file is UTF-8 JSON"
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            exported = re.search(r"written by bmsfil\.export_\w+", text[:500])
            hint = (f"; this is an export of a parameter set ({exported.group(0)}), for firmware: give the JSON set "
                    "it was exported from" if exported else "")
            raise ParamsError(f"{origin}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}){hint}") from None
        except RecursionError:
            raise ParamsError(f"{origin}: not valid JSON for a parameter set (nested too deeply)") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise ParamsError(f"{origin}: not valid JSON for a parameter set ({exc})") from None
        params = cls.from_json(data, origin=origin)
        _check_units(origin, params.cell)
        return params


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a text", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def _shown(value: object, limit: int = 60) -> str:
    """A JSON value as a message shows it: its type and, shortened, the value."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    text = repr(value) if isinstance(value, float) else json.dumps(value)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text if isinstance(value, (int, float)) else f"{_json_type(value)} {text}"


def _section(origin: str, data: dict[str, object], key: str) -> dict[str, object]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ParamsError(f"{origin}: {key}: expected an object of fields, got {_shown(value)}")
    return value


_Section = TypeVar("_Section", ThermalParams, PowerLimits)


def _optional_section(origin: str, data: dict[str, object], name: str, cls: type[_Section],
                      all_required: bool) -> _Section:
    """An optional section made into `cls`: its fields known, numbers, and
    (`all_required`) all given; the dataclass checks the ranges."""
    given = _section(origin, data, name)
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ParamsError(f"{origin}: unknown {name} field(s) {', '.join(unknown)}; expected {', '.join(known)}")
    missing = [k for k in known if k not in given]
    if all_required and missing:
        raise ParamsError(f"{origin}: missing {name} field(s) {', '.join(missing)}")
    values = {key: _value(origin, name, key, value) for key, value in given.items()}
    try:
        return cls(**values)  # type: ignore[arg-type]
    except ParamsError as exc:
        raise ParamsError(f"{origin}: {exc}") from None


def _value(origin: str, section: str, key: str, value: object) -> object:
    """A field's value, checked for the JSON type it must have (the range is checked later)."""
    where = f"{origin}: {section}.{key}"
    if section == "cell" and key in CELL_ARRAYS:
        if value is None and key == "rn_ohm":
            return None
        if not isinstance(value, list):
            raise ParamsError(f"{where}: expected a list of numbers, got {_shown(value)}")
        problem = _not_numbers(value)
        if problem:
            raise ParamsError(f"{where}: {problem}")
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamsError(f"{where}: expected a number, got {_shown(value)}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _not_numbers(value: list[object]) -> str:
    """What is wrong with a row of numbers or a table (a list of equal rows); '' if nothing."""
    if all(isinstance(row, list) for row in value) and value:
        for i, row in enumerate(value):
            if len(row) != len(value[0]):  # type: ignore[arg-type]
                return f"row {i} has {len(row)} values, row 0 has {len(value[0])}: a table's rows must be equally long"  # type: ignore[arg-type]
            bad = next((j for j, cell in enumerate(row) if not _is_number(cell)), None)  # type: ignore[arg-type]
            if bad is not None:
                return f"row {i}, value {bad}: expected a number, got {_shown(row[bad])}"  # type: ignore[index]
        return ""
    bad = next((j for j, cell in enumerate(value) if not _is_number(cell)), None)
    return "" if bad is None else f"value {bad}: expected a number, got {_shown(value[bad])}"


def _check_units(origin: str, cell: CellParams) -> None:
    """The values of a cell in V, A, °C and Ah: a table in mV, mA, K or mAh shows here."""
    checks = (
        ("ocv_V", cell.ocv_V, "voltage", "V", "millivolts?"),
        ("v_min_V", cell.v_min_V, "voltage", "V", "millivolts?"),
        ("v_max_V", cell.v_max_V, "voltage", "V", "millivolts?"),
        ("temp_C", cell.temp_C, "temperature", "°C", "kelvin?"),
        ("capacity_Ah", cell.capacity_Ah, "ah", "Ah", "mAh?"),
        ("nominal_capacity_Ah", cell.nominal_capacity_Ah, "ah", "Ah", "mAh?"),
        ("i_max_A", cell.i_max_A, "current", "A", "milliamps?"),
    )
    for name, values, quantity, unit, hint in checks:
        low, high = SAMPLE_LIMITS[quantity]
        if quantity == "ah":
            low = 0.0
        flat = np.ravel(values)
        outside = flat[(flat < low) | (flat > high)]
        if outside.size:
            value = float(outside[0])
            why = hint if value > high else "not a value a cell has"
            raise ParamsError(
                f"{origin}: cell.{name}: {value:g} {unit} is outside [{low:g}, {high:g}] {unit}: {why}"
            )


#: Parameter sets shipped with the package, by name.
BUNDLED_SETS = {
    "lg-hg2": "lg_hg2.json",  # LG HG2 3 Ah, fitted to the McMaster recordings
    "nasa-pcoe-18650": "nasa_pcoe_18650.json",  # NASA PCoE 2 Ah 18650s (scripts/nasa_params.sh)
}


def bundled_params(name: str = "lg-hg2") -> ParameterSet:
    """A parameter set shipped with the package (`BUNDLED_SETS`); the LG HG2 set by default."""
    if name not in BUNDLED_SETS:
        raise ParamsError(f"no bundled parameter set {name!r}; the bundled sets are {', '.join(BUNDLED_SETS)}")
    ref = resources.files("bmsfil") / "data" / BUNDLED_SETS[name]
    return ParameterSet.from_json(json.loads(ref.read_text()), origin=f"bmsfil/data/{BUNDLED_SETS[name]}")


#: The bundled set for the data sets the importers recognise, by import format
#: (`bmsfil import --format`); any other recording gets the LG HG2 set.
BUNDLED_FOR_FORMAT = {"nasa-pcoe": "nasa-pcoe-18650"}
#: What `params_for` calls a readable recording that records no format (saved through the API).
UNKNOWN_FORMAT = "unknown"
#: Formats of the data sets a bundled set was fitted on: the LG HG2's (the default set) and BUNDLED_FOR_FORMAT's.
KNOWN_CELL_FORMATS = frozenset({"lg-hg2-raw", "lg-hg2-formatted", "lg-hg2-processed", *BUNDLED_FOR_FORMAT})


def params_for(value: str | Path | None, sources: list[str]) -> tuple[ParameterSet, str | None, bool]:
    """--params, or without it the bundled set for the recordings' data set
    (BUNDLED_FOR_FORMAT: the NASA PCoE set for NASA files); also the name of
    the bundled set taken for them when it is not the LG HG2 default, for the
    command to say so, and whether the set was taken without knowing the cell
    (no --params, and recordings of no data set a bundled set was fitted on:
    a tester's CSV)."""
    if value is not None:
        return params_arg(value), None, False
    from bmsfil.importers import detect_format
    from bmsfil.recording import RecordingError

    def format_of(source: str) -> str | None:
        try:
            if source.endswith(".parquet"):
                from bmsfil.chunked import ChunkedRecording

                # the format it was imported from; one made through the API records none
                return ChunkedRecording(source).meta.extra.get("format") or UNKNOWN_FORMAT
            fmt = detect_format(source)
            if fmt == "bmsfil":  # the format it was imported from, in its header (its arrays not read)
                with np.load(source, allow_pickle=False) as archive:
                    extra = json.loads(str(archive["header"])).get("meta", {}).get("extra", {})
                return (extra.get("format") or UNKNOWN_FORMAT) if isinstance(extra, dict) else None
            return fmt
        except (RecordingError, OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile, EOFError):
            return None  # the run itself says what is wrong with it (a truncated .npz, say)

    formats = {s: format_of(s) for s in sources}  # what no importer reads fails on its own
    sets: dict[str, list[str]] = {}
    for source, fmt in formats.items():
        if fmt is not None:
            sets.setdefault(BUNDLED_FOR_FORMAT.get(fmt, "lg-hg2"), []).append(source)
    if len(sets) > 1:
        listed = "; ".join(f"{name} for {', '.join(Path(s).name for s in found[:2])}{', ...' if len(found) > 2 else ''}"
                           for name, found in sets.items())
        raise ParamsError(f"these recordings are of cells the bundled sets tell apart ({listed}): give --params, or "
                          "run them apart")
    fmt = next((f for f in formats.values() if f is not None), None)
    unknown = any(f is not None and f not in KNOWN_CELL_FORMATS for f in formats.values())
    return params_arg(None, fmt), BUNDLED_FOR_FORMAT.get(fmt or ""), unknown


def params_arg(value: str | Path | None, fmt: str | None = None) -> ParameterSet:
    """A parameter set named on a command line: a bundled set's name, or a
    file; None gives the bundled set for recordings of format `fmt`."""
    if value is None:
        return bundled_params(BUNDLED_FOR_FORMAT.get(fmt or "", "lg-hg2"))
    if str(value) in BUNDLED_SETS:
        return bundled_params(str(value))
    if not Path(value).exists():
        raise ParamsError(f"{value}: no such parameter file, and not a bundled set ({', '.join(BUNDLED_SETS)})")
    return ParameterSet.load(value)
