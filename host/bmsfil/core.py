"""The C state-of-charge EKF through cffi: `SocEstimator`.

This is the same code that runs in the firmware, compiled with the same
single-precision arithmetic; the float64 twin in `reference.py` is what it is
checked against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import NamedTuple, Protocol

import numpy as np

from bmsfil._core import ffi, lib
from bmsfil.params import RC_TABLES, TEMP_ROWS, VOLTAGE_MARGIN_V, FilterTuning, ParameterSet
from bmsfil.recording import Recording, RecordingError

STATUS_NAMES = {
    lib.BF_OK: "ok",
    lib.BF_E_NULL: "null pointer",
    lib.BF_E_PARAMS: "parameter set rejected by bf_cell_params_check",
    lib.BF_E_TUNING: "filter tuning rejected by bf_soc_ekf_tuning_check",
    lib.BF_E_RANGE: "argument out of range",
    lib.BF_E_NUMERIC: "state became non-finite",
    lib.BF_E_CONFIG: "monitor config rejected by bf_plaus_config_check",
}

FLAG_NAMES = {
    lib.BF_FLAG_VOLTAGE_INVALID: "voltage_invalid",
    lib.BF_FLAG_CURRENT_INVALID: "current_invalid",
    lib.BF_FLAG_TEMP_INVALID: "temp_invalid",
    lib.BF_FLAG_DT_INVALID: "dt_invalid",
    lib.BF_FLAG_GATED: "gated",
    lib.BF_FLAG_SOC_CLAMPED: "soc_clamped",
    lib.BF_FLAG_COV_REPAIRED: "cov_repaired",
}


class CoreError(RuntimeError):
    """The C core returned an error status."""


def _check(status: int, what: str) -> None:
    if status != lib.BF_OK:
        raise CoreError(f"{what}: {STATUS_NAMES.get(status, f'status {status}')}")


def pack_cell_params(params: ParameterSet) -> "ffi.CData":
    """The cell model as the C struct `bf_cell_params_t`."""
    cell = params.cell
    c = ffi.new("bf_cell_params_t *")
    nt = len(cell.temp_C)
    c.n_temps = nt
    c.n_ocv = cell.ocv_V.shape[1]
    c.n_rc = cell.r0_ohm.shape[1]
    for i in range(nt):
        c.temp_C[i] = cell.temp_C[i]
        c.ocv_V[i][0 : c.n_ocv] = cell.ocv_V[i].tolist()
        for name in RC_TABLES:
            getattr(c, name)[i][0 : c.n_rc] = getattr(cell, name)[i].tolist()
        for name in TEMP_ROWS:
            getattr(c, name)[i] = getattr(cell, name)[i]
    c.eta_charge = cell.eta_charge
    c.v_min_V = cell.v_min_V
    c.v_max_V = cell.v_max_V
    c.i_max_A = cell.i_max_A
    c.rn_sat_per_A = cell.rn_sat_per_A
    _check(lib.bf_cell_params_check(c), "cell parameters")
    return c


def pack_settings(settings: object, ctype: str, check: Callable[["ffi.CData"], int], what: str) -> "ffi.CData":
    """A settings dataclass as the C struct `ctype` of the same field names,
    checked by the module's own check function."""
    c = ffi.new(f"{ctype} *")
    for f in fields(settings):  # type: ignore[arg-type]
        setattr(c, f.name, getattr(settings, f.name))
    _check(check(c), what)
    return c


def pack_tuning(tuning: FilterTuning) -> "ffi.CData":
    return pack_settings(tuning, "bf_soc_ekf_tuning_t", lib.bf_soc_ekf_tuning_check, "filter tuning")


def start_variance(params: ParameterSet, sigma: float | None) -> float:
    """The SOC variance of a start at a given SOC: sigma² if it is known to
    within sigma, else an unknown start's (the tuning's p0_soc)."""
    if sigma is None:
        return params.filter.p0_soc
    if not (0.0 < sigma <= 1.0):
        raise ValueError(f"initial SOC sigma: expected a number in (0, 1], got {sigma!r}")
    return sigma * sigma


def start_tuning(params: ParameterSet, sigma: float | None, packed: "ffi.CData") -> "ffi.CData":
    """The tuning bf_soc_ekf_init_soc takes its start variance (p0_soc)
    from: `packed` (the set's) without a sigma, else a copy with sigma²."""
    if sigma is None:
        return packed
    return pack_tuning(replace(params.filter, p0_soc=start_variance(params, sigma)))


class StepResult(NamedTuple):
    """One step's outputs; the last five are what the plausibility monitor
    reads (`bf_soc_ekf_out_t`): the SOC the voltage correction moved and its
    variance if the model holds (0 without a correction), the capacity the
    prediction used, the instantaneous part of the overpotential and its
    resistance at the step's current (0 for a skipped sample). A named tuple, not a frozen dataclass: it is made on
    every per-sample call, and a frozen dataclass of eight fields took the
    cffi step from 975,000 to 628,000 calls a second (`bmsfil bench`
    c_step)."""

    soc: float
    soc_sigma: float
    voltage_pred_V: float
    flags: int
    soc_correction: float = 0.0
    soc_correction_var: float = 0.0
    capacity_Ah: float = 0.0
    ohmic_V: float = 0.0
    ohmic_R_ohm: float = 0.0


@dataclass(frozen=True)
class SocTrace:
    """Per-sample output of a run: SOC, its 1-sigma and the step flags."""

    soc: np.ndarray
    soc_sigma: np.ndarray
    flags: np.ndarray


def filter_restarted(flags: int, dt_s: float) -> bool:
    """Whether the step that reported `flags` for the interval dt_s started
    its filter again: an interval it refused that is a number (beyond
    dt_max_s, time it did not see). A NaN or negative one is skipped, the
    state kept. What was searched from the state before (the state of
    power) is then of another cell state."""
    return bool(flags & lib.BF_FLAG_DT_INVALID) and dt_s >= 0.0


def describe_flags(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


def as_f32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32)


def expect_params(params: object, who: str) -> ParameterSet:
    """`params` if it is a ParameterSet; else a TypeError that says how to get one."""
    if not isinstance(params, ParameterSet):
        raise TypeError(f"{who}: expected a ParameterSet (bmsfil.bundled_params(NAME) or "
                        f"bmsfil.ParameterSet.load(PATH)), got {type(params).__name__}")
    return params


class SocEstimator:
    """One cell's SOC EKF, running the C core. Until `init_ocv` or
    `init_soc` it holds SOC 1.0 with the variance of an unknown start
    (p0_soc), which its sigma says; `run` starts it itself.

    >>> from bmsfil.params import bundled_params
    >>> est = SocEstimator(bundled_params())
    >>> est.start(current_A=0.0, voltage_V=4.18, temp_C=25.0)
    >>> round(est.step(dt_s=0.1, current_A=-3.0, voltage_V=4.05, temp_C=25.0).soc, 3)
    0.998
    """

    def __init__(self, params: ParameterSet) -> None:
        self.params = expect_params(params, "SocEstimator")
        self._cell = pack_cell_params(params)
        self._tuning = pack_tuning(params.filter)
        self._state = ffi.new("bf_soc_ekf_t *")
        self._out = ffi.new("bf_soc_ekf_out_t *")
        self.init_soc(1.0, 25.0)

    def __copy__(self) -> "SocEstimator":
        """Another estimator in the same state, stepping on its own (a shallow copy shared the C
        state: stepping the copy moved the original)."""
        other = SocEstimator(self.params)
        ffi.memmove(other._state, self._state, ffi.sizeof("bf_soc_ekf_t"))
        return other

    def __deepcopy__(self, memo: dict[int, object]) -> "SocEstimator":
        return self.__copy__()

    def init_soc(self, soc: float, temp_C: float, sigma: float | None = None) -> None:
        """Start at `soc`, known to within `sigma` (1-sigma); without it a
        guess, with the variance of an unknown start (p0_soc)."""
        _check(lib.bf_soc_ekf_init_soc(self._state, self._cell, start_tuning(self.params, sigma, self._tuning), soc,
                                       temp_C), "init_soc")

    def init_ocv(self, voltage_V: float, temp_C: float) -> None:
        _check(lib.bf_soc_ekf_init_ocv(self._state, self._cell, self._tuning, voltage_V, temp_C), "init_ocv")

    def start(self, current_A: float, voltage_V: float, temp_C: float) -> None:
        """From a first sample (bf_soc_ekf_start): its voltage's OCV, with the
        variance of an unknown start if the cell is under load."""
        _check(lib.bf_soc_ekf_start(self._state, self._cell, self._tuning, current_A, voltage_V, temp_C), "start")

    def restart(self, rest_current_A: float, current_A: float, voltage_V: float, temp_C: float) -> bool:
        """Start again after time the filter did not see (a step does this
        itself at an interval it refuses, with a rest of C/50): from the
        voltage if |current_A| <= rest_current_A, else from the SOC it had
        with the variance of an unknown start. Returns whether it started
        from the voltage."""
        from_voltage = ffi.new("int *")
        _check(lib.bf_soc_ekf_restart(self._state, self._cell, self._tuning, rest_current_A, current_A, voltage_V,
                                      temp_C, from_voltage), "restart")
        return bool(from_voltage[0])

    def step(self, dt_s: float, current_A: float, voltage_V: float, temp_C: float) -> StepResult:
        """One sample, dt_s after the previous one. An interval over the
        tuning's dt_max_s restarts the filter (see `restart`), a NaN or
        negative one skips the sample; both are flagged dt_invalid."""
        _check(
            lib.bf_soc_ekf_step(self._state, self._cell, self._tuning, dt_s, current_A, voltage_V, temp_C, self._out),
            "step",
        )
        o = self._out
        return StepResult(o.soc, o.soc_sigma, o.voltage_pred_V, o.flags, o.soc_correction, o.soc_correction_var,
                          o.capacity_Ah, o.ohmic_V, o.ohmic_R_ohm)

    @property
    def x(self) -> np.ndarray:
        """State [SOC, i_R1, i_R2, h]."""
        return np.array(list(self._state.x), dtype=np.float64)

    @property
    def P(self) -> np.ndarray:
        return np.array([list(row) for row in self._state.P], dtype=np.float64)

    def run_arrays(
        self, dt_s: np.ndarray, current_A: np.ndarray, voltage_V: np.ndarray, temp_C: np.ndarray
    ) -> SocTrace:
        """Step through arrays in one C call (the batch API), continuing from the current state."""
        arrays = [as_f32(a) for a in (dt_s, current_A, voltage_V, temp_C)]
        for name, a in zip(("dt_s", "current_A", "voltage_V", "temp_C"), arrays):
            if a.ndim != 1:  # (n, 2) was read as its first n interleaved values
                raise ValueError(f"run_arrays: {name}: expected a 1-D array, got shape {a.shape}")
        n = len(arrays[0])
        if any(len(a) != n for a in arrays):
            raise ValueError("run_arrays: dt_s, current_A, voltage_V and temp_C must have equal lengths")
        soc = np.empty(n, dtype=np.float32)
        sigma = np.empty(n, dtype=np.float32)
        flags = np.empty(n, dtype=np.uint8)
        ptrs = [ffi.from_buffer("float[]", a) for a in arrays]
        _check(
            lib.bf_soc_ekf_run(
                self._state, self._cell, self._tuning, *ptrs, n,
                ffi.from_buffer("float[]", soc), ffi.from_buffer("float[]", sigma),
                ffi.from_buffer("uint8_t[]", flags),
            ),
            "run",
        )
        return SocTrace(soc.astype(np.float64), sigma.astype(np.float64), flags)

    def run(self, recording: Recording, initial_soc: InitialSoc = "ocv") -> SocTrace:
        """Initialise (from the first sample's OCV, or a given SOC) and run a whole recording."""
        start_estimator(self, recording, initial_soc)
        return self.run_arrays(recording.dt_s, recording.current_A, recording.voltage_V, recording.temp_C)


def plausible_voltage(params: ParameterSet, voltage_V: np.ndarray | float) -> np.ndarray:
    """Whether each voltage is one the C core's step accepts for this cell:
    inside [v_min_V - 0.5, v_max_V + 0.5] (NaN is not)."""
    v = np.asarray(voltage_V, dtype=np.float64)
    return (v >= params.cell.v_min_V - VOLTAGE_MARGIN_V) & (v <= params.cell.v_max_V + VOLTAGE_MARGIN_V)


@dataclass(frozen=True)
class KnownSoc:
    """A start SOC known to within `sigma` (1-sigma). A bare number as
    initial_soc is a guess: the filter gives it the variance of an unknown
    start (p0_soc; sigma 0.5 in the bundled set) and lets the voltage pull it.
    A sigma below the filter's floor, sqrt(p_floor_soc), starts at the floor."""

    soc: float
    sigma: float


#: How a run starts: "ocv" (from the first plausible voltage), a guessed SOC, or a KnownSoc.
InitialSoc = float | str | KnownSoc


def given_soc(initial_soc: InitialSoc) -> float | None:
    """The SOC a run was told to start at, None for a start from the OCV."""
    if isinstance(initial_soc, KnownSoc):
        return initial_soc.soc
    return None if initial_soc == "ocv" else float(initial_soc)


class Initialisable(Protocol):
    params: ParameterSet

    def init_soc(self, soc: float, temp_C: float, sigma: float | None = None) -> None: ...
    def init_ocv(self, voltage_V: float, temp_C: float) -> None: ...
    def start(self, current_A: float, voltage_V: float, temp_C: float) -> None: ...


def first_start_sample(params: ParameterSet, recording: Recording) -> int | None:
    """The first sample a filter can start from: a voltage plausible for the cell and a finite
    temperature; None if none is."""
    ok = np.flatnonzero(plausible_voltage(params, recording.voltage_V) & np.isfinite(recording.temp_C))
    return int(ok[0]) if ok.size else None


def start_estimator(est: Initialisable, recording: Recording, initial_soc: InitialSoc) -> None:
    """Initialise from the first sample whose voltage is plausible for the
    cell (`plausible_voltage`) and whose temperature is finite: from its OCV
    (`start`: under load with the variance of an unknown start),
    or at `initial_soc` at its temperature (25 °C if there is none), a
    KnownSoc with its sigma."""
    if isinstance(initial_soc, str):
        if initial_soc != "ocv":
            raise ValueError(f"initial_soc {initial_soc!r}: expected 'ocv', a SOC between 0 and 1 or a KnownSoc")
    elif not 0.0 <= (soc := float(given_soc(initial_soc) or 0.0)) <= 1.0:  # 85 for 85 % was clamped to 1.0
        hint = f" (a fraction: {soc:g} % is {soc / 100:g})" if 1.0 < soc <= 100.0 else ""
        raise ValueError(f"initial_soc {soc:g}: expected a SOC between 0 and 1{hint}")
    found = first_start_sample(est.params, recording)
    first = 0 if found is None else found
    temp = 25.0 if found is None else float(recording.temp_C[first])
    if initial_soc == "ocv":
        if found is None:
            cell = est.params.cell
            raise RecordingError(f"recording {recording.meta.name!r}: no sample to start from its OCV: none has a voltage "
                             f"in [{cell.v_min_V - VOLTAGE_MARGIN_V:g}, {cell.v_max_V + VOLTAGE_MARGIN_V:g}] V "
                             f"(the cell's range in {est.params.name} +- {VOLTAGE_MARGIN_V:g} V) and a finite "
                             "temperature")
        est.start(float(recording.current_A[first]), float(recording.voltage_V[first]), temp)
    elif isinstance(initial_soc, KnownSoc):
        est.init_soc(initial_soc.soc, temp, initial_soc.sigma)
    else:
        est.init_soc(float(initial_soc), temp)
