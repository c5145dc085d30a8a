"""Parameter sets: the cell model and the filter tuning, as one JSON file.

A parameter set is what `bmsfil fit`/`tune` write and every target loads.
Tables sit on uniform SOC grids from 0 to 1 (the grid is implied by the
number of columns) and on an ascending list of temperatures, exactly as the
C struct `bf_cell_params_t` holds them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from importlib import resources
from pathlib import Path

import numpy as np

FORMAT_TAG = "bmsfil-params/1"
MAX_TEMPS = 8
OCV_MAX_POINTS = 101
RC_MAX_POINTS = 21
RC_TABLES = ("r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s")
#: As BF_MIN_CAPACITY_AH and BF_MIN_TAU_S in cell_model.h.
MIN_CAPACITY_AH = 1e-3
MIN_TAU_S = 1e-3
TEMP_ROWS = ("capacity_Ah", "hyst_m0_V", "hyst_m_V", "hyst_gamma", "rn_ohm")


class ParamsError(ValueError):
    """A parameter file or value that cannot be used, naming the field."""


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
    nominal_capacity_Ah: float = 0.0
    #: Resistance that falls with current, Rn(T) * i / (1 + rn_sat_per_A * |i|); None: zeros.
    rn_ohm: np.ndarray | None = None
    rn_sat_per_A: float = 0.0

    def __post_init__(self) -> None:
        if self.rn_ohm is None:
            object.__setattr__(self, "rn_ohm", np.zeros(len(np.atleast_1d(self.temp_C))))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (list, tuple, np.ndarray)):
                object.__setattr__(self, f.name, np.asarray(value, dtype=np.float64))
        self.validate()

    @property
    def ocv_soc(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.ocv_V.shape[1])

    @property
    def rc_soc(self) -> np.ndarray:
        return np.linspace(0.0, 1.0, self.r0_ohm.shape[1])

    def validate(self) -> None:
        nt = self.temp_C.shape[0] if self.temp_C.ndim == 1 else -1
        if not 1 <= nt <= MAX_TEMPS:
            raise ParamsError(f"cell.temp_C: expected 1..{MAX_TEMPS} temperatures, got shape {self.temp_C.shape}")
        if np.any(np.diff(self.temp_C) <= 0):
            raise ParamsError(f"cell.temp_C: must be strictly ascending, got {self.temp_C.tolist()}")
        if self.ocv_V.ndim != 2 or self.ocv_V.shape[0] != nt or not 2 <= self.ocv_V.shape[1] <= OCV_MAX_POINTS:
            raise ParamsError(
                f"cell.ocv_V: expected {nt} rows of 2..{OCV_MAX_POINTS} points, got shape {self.ocv_V.shape}"
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
            if not np.all(np.isfinite(table) & (table >= lower)):
                raise ParamsError(f"cell.{name}: every value must be finite and >= {lower}")
        for name in TEMP_ROWS:
            row = getattr(self, name)
            if row.shape != (nt,) or not np.all(np.isfinite(row)):
                raise ParamsError(f"cell.{name}: expected {nt} finite values, got {row.tolist()}")
        if not np.all(self.capacity_Ah >= MIN_CAPACITY_AH):
            raise ParamsError(f"cell.capacity_Ah: every capacity must be >= {MIN_CAPACITY_AH} Ah")
        if not np.all(np.isfinite(self.ocv_V)):
            raise ParamsError("cell.ocv_V: every value must be finite")
        if not (0 < self.eta_charge <= 1.5):
            raise ParamsError(f"cell.eta_charge: expected a value in (0, 1.5], got {self.eta_charge}")
        if not (self.v_max_V > self.v_min_V):
            raise ParamsError("cell.v_max_V must exceed cell.v_min_V")
        if not np.all(self.rn_ohm >= 0) or not (np.isfinite(self.rn_sat_per_A) and self.rn_sat_per_A >= 0):  # type: ignore[operator]
            raise ParamsError("cell.rn_ohm and cell.rn_sat_per_A must be finite and >= 0")
        if not self.i_max_A > 0:
            raise ParamsError("cell.i_max_A must be > 0")

    def to_json(self) -> dict[str, object]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FilterTuning:
    """Noise and guard settings of the SOC EKF (see csrc/include/bmsfil/soc_ekf.h).

    The defaults are those `tuning.tune_filter` found for the LG HG2 drive
    cycles; they are a sound start for other cells of similar size, and
    `python -m bmsfil.lg_hg2_params` starts its own search from them."""

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

    def __post_init__(self) -> None:
        for f in fields(self):
            value = float(getattr(self, f.name))
            if not np.isfinite(value) or value < 0:
                raise ParamsError(f"filter.{f.name}: expected a finite value >= 0, got {value}")
            object.__setattr__(self, f.name, value)


@dataclass(frozen=True)
class ParameterSet:
    name: str
    cell: CellParams
    filter: FilterTuning
    notes: dict[str, str]

    def with_filter(self, **changes: float) -> "ParameterSet":
        return replace(self, filter=replace(self.filter, **changes))

    def to_json(self) -> dict[str, object]:
        return {
            "format": FORMAT_TAG,
            "name": self.name,
            "notes": self.notes,
            "cell": self.cell.to_json(),
            "filter": asdict(self.filter),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def from_json(cls, data: dict[str, object], origin: str = "<json>") -> "ParameterSet":
        if not isinstance(data, dict) or data.get("format") != FORMAT_TAG:
            got = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ParamsError(f"{origin}: format {got!r}, expected {FORMAT_TAG!r}")
        try:
            cell_data = dict(data["cell"])  # type: ignore[arg-type]
            filter_data = dict(data.get("filter", {}))  # type: ignore[arg-type]
        except KeyError as exc:
            raise ParamsError(f"{origin}: missing section {exc}") from None
        known_cell = {f.name for f in fields(CellParams)}
        known_filter = {f.name for f in fields(FilterTuning)}
        for section, given, known in (("cell", cell_data, known_cell), ("filter", filter_data, known_filter)):
            unknown = sorted(set(given) - known)
            if unknown:
                raise ParamsError(f"{origin}: unknown {section} field(s) {', '.join(unknown)}")
        try:
            cell = CellParams(**cell_data)
            tuning = FilterTuning(**filter_data)
        except ParamsError as exc:
            raise ParamsError(f"{origin}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ParamsError(f"{origin}: {exc}") from None
        return cls(name=str(data.get("name", "")), cell=cell, filter=tuning, notes=dict(data.get("notes", {})))  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> "ParameterSet":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ParamsError(f"{path}: cannot read ({exc})") from None
        except json.JSONDecodeError as exc:
            raise ParamsError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        return cls.from_json(data, origin=str(path))


BUNDLED_PARAMS = "lg_hg2.json"


def bundled_params() -> ParameterSet:
    """The LG HG2 parameter set shipped with the package."""
    ref = resources.files("bmsfil") / "data" / BUNDLED_PARAMS
    return ParameterSet.from_json(json.loads(ref.read_text()), origin=f"bmsfil/data/{BUNDLED_PARAMS}")
