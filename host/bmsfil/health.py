"""State of health: capacity (AWTLS over SOC anchors) and R0 (least squares
on current steps) beside the SOC filter, running the C core (health.h,
capacity.h, resistance.h).

Use (params a ParameterSet, recording a Recording)::

    est = HealthEstimator(params)
    trace = est.run(recording)
    trace.capacity_Ah[-1], trace.capacity_sigma_Ah[-1], trace.r0_ohm[-1]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from bmsfil._core import ffi, lib
from bmsfil.core import SocEstimator, _check, as_f32, expect_params, pack_cell_params, pack_settings, pack_tuning
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording

if TYPE_CHECKING:
    from bmsfil.reference import CellModel

#: Event bits of `HealthTrace.events`, as bf_health_run packs them.
EVENT_NAMES = {
    lib.BF_CAP_ANCHOR_FULL: "anchor_full",
    lib.BF_CAP_ANCHOR_EMPTY: "anchor_empty",
    lib.BF_CAP_ANCHOR_REST: "anchor_rest",
    lib.BF_CAP_UPDATED: "capacity_updated",
    lib.BF_CAP_BROKEN: "count_broken",
    lib.BF_HEALTH_GAP << 5: "gap",
    lib.BF_HEALTH_RESTARTED << 5: "restarted",
    lib.BF_R0_UPDATED << 7: "r0_updated",
}


def rated_capacity(params: ParameterSet) -> float:
    """The set's nominal capacity, else its largest table capacity."""
    cell = params.cell
    return cell.nominal_capacity_Ah or float(np.max(cell.capacity_Ah))


#: A rest this long gives an anchor: never (about 32 years; bf_capacity_tuning_check takes
#: only a finite time).
REST_ANCHORS_OFF_S = 1e9


@dataclass(frozen=True)
class CapacityTuning:
    """Settings of the capacity fit (`bf_capacity_tuning_t`); see capacity.h.

    `for_params` gives defaults that are statements about the cell and its
    sensors, not fits to a recording:

    - prior: the rated capacity, 1 sigma 10 % (a new cell's spread and a
      rating's optimism);
    - memory: the sums decay by e per half an equivalent full cycle. A pair
      of anchors from full to empty measures the capacity to about 0.5 %,
      while a cell's capacity can move by several percent between two cycles
      (recovery after a long rest), so the newest pair should count most;
      a pair one full cycle old weighs e^-2 = 0.14 of a new one;
    - rest: |i| <= C/50 is rest (a CV charge tapers to C/20-C/100); an hour's
      rest relaxes a cell to within a few mV of its OCV, and gives an anchor at
      the SOC filter's SOC, unless the set's OCV is a loaded curve
      (`ParameterSet.ocv_loaded`): a rested cell's voltage does not read as its
      SOC there (a rested empty NASA cell reads 0.2-0.5), so no rest gives an
      anchor (`REST_ANCHORS_OFF_S`);
    - full: within 30 mV of OCV(1) at rest; empty: a discharge of at least
      C/10 ending within 0.1 V of OCV(0), with the filter's SOC below 0.2;
      each known to 0.5 % of SOC;
    - pairs at least 0.2 apart in SOC;
    - current sensor: 10 mA random per sample, 10 mA offset bound;
    - an interval longer than 10 minutes is a gap in the record.
    """

    rated_Ah: float
    prior_sigma_rel: float = 0.10
    memory_cycles: float = 0.5
    rest_current_A: float = 0.04
    rest_anchor_s: float = 3600.0
    full_margin_V: float = 0.03
    full_sigma: float = 0.005
    empty_V: float = 3.0
    empty_current_A: float = 0.2
    empty_soc_max: float = 0.2
    empty_sigma: float = 0.005
    min_dsoc: float = 0.2
    current_sigma_A: float = 0.01
    current_bias_A: float = 0.01
    gap_s: float = 600.0

    @classmethod
    def for_params(cls, params: ParameterSet) -> "CapacityTuning":
        cell = params.cell
        rated = rated_capacity(params)
        ocv_empty = float(np.min(np.asarray(cell.ocv_V)[:, 0]))
        return cls(
            rated_Ah=rated,
            rest_anchor_s=REST_ANCHORS_OFF_S if params.ocv_loaded else cls.rest_anchor_s,
            rest_current_A=rated / 50.0,
            empty_current_A=rated / 10.0,
            empty_V=ocv_empty + 0.1,
        )

    def packed(self) -> "ffi.CData":
        return pack_settings(self, "bf_capacity_tuning_t", lib.bf_capacity_tuning_check, "capacity tuning")


@dataclass(frozen=True)
class R0Tuning:
    """Settings of the R0 tracker (`bf_r0_tuning_t`); see resistance.h.

    Defaults from `for_params`: steps of at least C/4 within 30 s (a test
    rig logging every 10-20 s still gives one per load change) at SOC 0.2
    or more, a memory of 10 steps (R0 moves with temperature within minutes
    of driving; on a test rig with one load step per cycle that is 10
    cycles), 2 mV of voltage noise, starting from the parameter set's R0 at
    SOC 0.5 and 25 °C (1 sigma the larger of that and 50 mOhm).
    """

    r0_init_ohm: float
    r0_init_sigma_ohm: float
    step_min_A: float = 0.5
    step_max_s: float = 30.0
    forget_steps: float = 10.0
    soc_min: float = 0.2
    voltage_sigma_V: float = 0.002

    @classmethod
    def for_params(cls, params: ParameterSet) -> "R0Tuning":
        cell = params.cell
        rated = rated_capacity(params)
        temps = np.asarray(cell.temp_C)
        row = int(np.argmin(np.abs(temps - 25.0)))
        table = np.asarray(cell.r0_ohm)[row]
        r0 = float(np.interp(0.5, np.linspace(0.0, 1.0, len(table)), table))
        return cls(r0_init_ohm=r0, r0_init_sigma_ohm=max(r0, 0.05), step_min_A=rated / 4.0)

    def packed(self) -> "ffi.CData":
        return pack_settings(self, "bf_r0_tuning_t", lib.bf_r0_tuning_check, "R0 tuning")


@dataclass(frozen=True)
class HealthTrace:
    """Per-sample output of a health run."""

    time_s: np.ndarray
    soc: np.ndarray
    soc_sigma: np.ndarray
    capacity_Ah: np.ndarray
    capacity_sigma_Ah: np.ndarray
    r0_ohm: np.ndarray
    r0_sigma_ohm: np.ndarray
    r0_growth: np.ndarray
    events: np.ndarray
    rated_Ah: float
    #: What ran: the parameter set and the capacity tuning (health_eval reads the cell's voltage
    #: at a discharge's ends as the capacity estimator does: full near OCV(1), empty at empty_V,
    #: the model's instantaneous drop taken out).
    params: ParameterSet | None = None
    capacity_tuning: CapacityTuning | None = None

    @cached_property
    def model(self) -> "CellModel | None":
        """The set's cell model for table lookups (float64), built once; None without the set."""
        from bmsfil.reference import CellModel

        return None if self.params is None else CellModel(self.params)

    @property
    def soh(self) -> np.ndarray:
        return self.capacity_Ah / self.rated_Ah

    def where(self, event: str) -> np.ndarray:
        """Sample indices where an event of `EVENT_NAMES` happened."""
        bit = next((b for b, name in EVENT_NAMES.items() if name == event), None)
        if bit is None:
            raise ValueError(f"no event {event!r}; expected one of {', '.join(EVENT_NAMES.values())}")
        return np.flatnonzero(self.events & bit)


class HealthEstimator:
    """One cell's SOC filter, capacity fit and R0 tracker (the C core's bf_health_t)."""

    def __init__(
        self, params: ParameterSet, capacity: CapacityTuning | None = None, r0: R0Tuning | None = None
    ) -> None:
        self.params = expect_params(params, "HealthEstimator")
        self.capacity = capacity or CapacityTuning.for_params(params)
        self.r0 = r0 or R0Tuning.for_params(params)
        self._cell = pack_cell_params(params)
        self._filter = pack_tuning(params.filter)
        self._cap = self.capacity.packed()
        self._r0 = self.r0.packed()
        self._state = ffi.new("bf_health_t *")

    def start(self, soc: float, current_A: float, voltage_V: float, temp_C: float) -> None:
        """As bf_soc_ekf_start from this sample (under load: an unknown start
        at the SOC its voltage reads); from `soc` without a voltage."""
        _check(
            lib.bf_health_init(self._state, self._cell, self._filter, self._cap, self._r0, soc, current_A,
                               voltage_V, temp_C),
            "health init",
        )

    def run_arrays(
        self, time_s: np.ndarray, dt_s: np.ndarray, current_A: np.ndarray, voltage_V: np.ndarray,
        temp_C: np.ndarray,
    ) -> HealthTrace:
        """Step through arrays in one C call, continuing from the current state."""
        n = len(dt_s)
        inputs = [as_f32(a) for a in (dt_s, current_A, voltage_V, temp_C)]
        if any(len(a) != n for a in inputs):
            raise ValueError("run_arrays: dt_s, current_A, voltage_V and temp_C must have equal lengths")
        outs = [np.empty(n, dtype=np.float32) for _ in range(7)]
        events = np.empty(n, dtype=np.uint8)
        _check(
            lib.bf_health_run(
                self._state, self._cell, self._filter, self._cap, self._r0,
                *(ffi.from_buffer("float[]", a) for a in inputs), n,
                *(ffi.from_buffer("float[]", a) for a in outs), ffi.from_buffer("uint8_t[]", events),
            ),
            "health run",
        )
        soc, sigma, cap, cap_sigma, r0, r0_sigma, growth = (a.astype(np.float64) for a in outs)
        return HealthTrace(np.asarray(time_s, dtype=np.float64), soc, sigma, cap, cap_sigma, r0, r0_sigma,
                           growth, events, self.capacity.rated_Ah, self.params, self.capacity)

    def run(self, recording: Recording) -> HealthTrace:
        """Start at the first sample with a voltage and a temperature (`start`: its OCV, as each
        segment of a life starts) and run the whole recording. There is no start from a given SOC:
        the capacity's anchors need the filter to read its SOC from the cell (a recording without
        a voltage starts at SOC 1)."""
        ok = np.flatnonzero(np.isfinite(recording.voltage_V) & np.isfinite(recording.temp_C))
        k = int(ok[0]) if ok.size else 0
        self.start(1.0, float(recording.current_A[k]), float(recording.voltage_V[k]), float(recording.temp_C[k]))
        return self.run_arrays(recording.time_s, recording.dt_s, recording.current_A, recording.voltage_V,
                               recording.temp_C)



class CellHealth:
    """One cell's capacity and R0 estimators stepped after its SOC filter
    (`SocEstimator.step`), the way the firmware and the host HIL target run
    them (bf_capacity_step, then bf_r0_step; no gap restarts: the filter
    runs as it is). It reads the filter's parameter tables and step report
    in place."""

    def __init__(self, estimator: SocEstimator) -> None:
        self._est = estimator
        self._cap_t = CapacityTuning.for_params(estimator.params).packed()
        self._r0_t = R0Tuning.for_params(estimator.params).packed()
        self._cap = ffi.new("bf_capacity_t *")
        self._r0 = ffi.new("bf_r0_t *")
        self._co = ffi.new("bf_capacity_out_t *")
        self._ro = ffi.new("bf_r0_out_t *")
        _check(lib.bf_capacity_init(self._cap, self._cap_t), "capacity init")
        _check(lib.bf_r0_init(self._r0, self._r0_t), "R0 init")

    def step(self, dt_s: float, current_A: float, voltage_V: float, temp_C: float) -> tuple[float, float]:
        """After the filter's step of the same sample: (capacity in Ah, R0 in
        ohm), each nan until the estimator has learned from the data."""
        est = self._est
        _check(lib.bf_capacity_step(self._cap, est._cell, self._cap_t, dt_s, current_A, voltage_V, temp_C, est._out,
                                    self._co), "capacity step")
        _check(lib.bf_r0_step(self._r0, est._cell, self._r0_t, dt_s, current_A, voltage_V, temp_C, est._out.soc,
                              self._ro), "R0 step")
        capacity = self._co.capacity_Ah if self._cap.fit.updates > 0 else math.nan
        r0 = self._ro.r0_ohm if self._r0.updates > 0 else math.nan
        return float(capacity), float(r0)
