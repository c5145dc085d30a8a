"""Sensor and cell plausibility beside the SOC EKF, running the C core
(`csrc/include/bmsfil/plausibility.h`).

`run_monitored` runs the EKF and the monitor together over a recording and
returns the SOC trace (bit for bit what `SocEstimator.run` gives) and the
monitor's per-sample flags with their evidence: the unseen current (what the
current sensor reported minus what the cell received) with its sigma, and how
long the voltage reading has been frozen and how far the model says it
should have moved meanwhile.

The alarm thresholds are z-values of one-sided tests, set here from a false
alarm probability per look (`z_for`), not fitted to any recording; see
docs/plausibility.md for the statistics and what they can and cannot detect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist

import numpy as np

from bmsfil._core import ffi, lib
from bmsfil.core import InitialSoc, SocEstimator, SocTrace, _check, as_f32, pack_settings, start_estimator
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording

FLAG_NAMES = {
    lib.BF_PLAUS_CURRENT_OFFSET: "current_offset",
    lib.BF_PLAUS_SELF_DISCHARGE: "self_discharge",
    lib.BF_PLAUS_VOLTAGE_STUCK: "voltage_stuck",
    lib.BF_PLAUS_VOLTAGE_RANGE: "voltage_range",
    lib.BF_PLAUS_CURRENT_RANGE: "current_range",
    lib.BF_PLAUS_TEMP_RANGE: "temp_range",
}


def z_for(false_alarm: float) -> float:
    """One-sided standard-normal quantile: P(Z > z) = false_alarm."""
    return float(NormalDist().inv_cdf(1.0 - false_alarm))


@dataclass(frozen=True)
class PlausibilityConfig:
    """Settings of the monitor (`bf_plaus_config_t`). Every default is a
    statement about the sensors or a chosen false-alarm rate, not a fit.

    - unseen_tau_s: memory of the unseen-current estimate (a day, as a
      self-discharge check takes: a leak is slow, and only a long memory
      makes it significant; an offset that drifts is tracked a day late).
    - offset_tol_A / leak_tol_A: what the current sensor's and the cell's
      specifications tolerate; 0 flags any significant unseen current.
    - unseen_z: z of the unseen-current alarms, for a false-alarm
      probability of 1e-5 per look.
    - voltage_noise_V: 1-sigma noise of a BMS voltage channel (1 mV).
    - voltage_stuck_tol_V: readings closer than this are "unchanged" (1 mV,
      a few LSB of a BMS front end).
    - model_change_rel: the model's predicted voltage change may be wrong by
      up to half (R0 in the cold is known to a factor, not a percent).
    - stuck_z: z of the stuck-voltage alarm, 1e-6 per look.
    - converged_sigma_soc: a sample's SOC correction counts towards the
      unseen current only if the filter's SOC sigma before it was below
      this (3 % SOC: three times the LG HG2 set's 1 % floor, above the 2 %
      it starts with from a rested cell's OCV, far below the 50 % it starts
      with from a given SOC). Until then the filter is converging from a
      guessed SOC, and its corrections are the guess's error taken back,
      not charge the sensor missed.
    """

    unseen_tau_s: float = 24 * 3600.0
    offset_tol_A: float = 0.0
    leak_tol_A: float = 0.0
    unseen_z: float = z_for(1e-5)
    voltage_noise_V: float = 1e-3
    voltage_stuck_tol_V: float = 1e-3
    model_change_rel: float = 0.5
    stuck_z: float = z_for(1e-6)
    converged_sigma_soc: float = 0.03

    def packed(self) -> "ffi.CData":
        return pack_settings(self, "bf_plaus_config_t", lib.bf_plaus_config_check, "plausibility config")

    @property
    def stuck_threshold_V(self) -> float:
        """Predicted change over a run of unchanged readings that raises VOLTAGE_STUCK."""
        return (self.voltage_stuck_tol_V + self.stuck_z * math.sqrt(2.0) * self.voltage_noise_V) / (
            1.0 - self.model_change_rel
        )


def describe_flags(flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


@dataclass(frozen=True)
class FlagEvent:
    """The first sample a flag was raised at, and the evidence then."""

    flag: str
    index: int
    time_s: float
    samples: int                    # how many samples carried the flag in all
    unseen_current_A: float
    unseen_current_sigma_A: float
    stuck_for_s: float
    stuck_pred_change_V: float

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"flag": self.flag, "first_time_s": round(self.time_s, 3), "samples": self.samples}
        if self.flag in ("current_offset", "self_discharge"):
            d["unseen_current_A"] = round(self.unseen_current_A, 4)
            d["unseen_current_sigma_A"] = round(self.unseen_current_sigma_A, 4)
        elif self.flag == "voltage_stuck":
            d["stuck_for_s"] = round(self.stuck_for_s, 2)
            d["stuck_pred_change_V"] = round(self.stuck_pred_change_V, 4)
        return d

    def short(self) -> str:
        return describe_flag(self.as_dict())


def describe_flag(event: dict[str, object]) -> str:
    """One line for a flag event as `FlagEvent.as_dict` (and the eval JSON) gives it."""
    if "unseen_current_A" in event:
        ev = f"{event['unseen_current_A']:+.3f}±{event['unseen_current_sigma_A']:.3f} A"
    elif "stuck_for_s" in event:
        ev = f"{event['stuck_for_s']:.1f} s, model moved {float(event['stuck_pred_change_V']) * 1e3:.0f} mV"  # type: ignore[arg-type]
    else:
        ev = f"{event['samples']} samples"
    return f"{event['flag']}@{event['first_time_s']:.0f}s ({ev})"


@dataclass(frozen=True)
class PlausibilityTrace:
    """Per-sample output of the monitor."""

    time_s: np.ndarray
    flags: np.ndarray
    unseen_current_A: np.ndarray
    unseen_current_sigma_A: np.ndarray
    stuck_for_s: np.ndarray
    stuck_pred_change_V: np.ndarray

    def events(self) -> list[FlagEvent]:
        """Each flag raised at least once, at its first sample, in order of time."""
        out = []
        for bit, name in FLAG_NAMES.items():
            hit = np.flatnonzero(self.flags & bit)
            if hit.size:
                k = int(hit[0])
                out.append(FlagEvent(
                    name, k, float(self.time_s[k] - self.time_s[0]), int(hit.size),
                    float(self.unseen_current_A[k]), float(self.unseen_current_sigma_A[k]),
                    float(self.stuck_for_s[k]), float(self.stuck_pred_change_V[k]),
                ))
        return sorted(out, key=lambda e: e.index)

    def first_time_s(self, flag: str) -> float:
        """Seconds from the start to the first sample with `flag`; inf if never."""
        bit = next((b for b, n in FLAG_NAMES.items() if n == flag), None)
        if bit is None:
            raise ValueError(f"no flag {flag!r}; expected one of {', '.join(FLAG_NAMES.values())}")
        hit = np.flatnonzero(self.flags & bit)
        return float(self.time_s[hit[0]] - self.time_s[0]) if hit.size else math.inf

    def summary(self) -> dict[str, object]:
        last = len(self.flags) - 1
        sig = float(self.unseen_current_sigma_A[last]) if last >= 0 else math.inf
        return {
            "flags": [e.as_dict() for e in self.events()],
            "unseen_current_end_A": float(self.unseen_current_A[last]) if last >= 0 else None,
            "unseen_current_sigma_end_A": sig if math.isfinite(sig) else None,
        }


class PlausibilityMonitor:
    """The monitor for one cell, stepped after each `SocEstimator.step`."""

    def __init__(self, config: PlausibilityConfig | None = None) -> None:
        self.config = config or PlausibilityConfig()
        self._config = self.config.packed()
        self._state = ffi.new("bf_plaus_t *")
        self._out = ffi.new("bf_plaus_out_t *")
        self.reset()

    def reset(self) -> None:
        _check(lib.bf_plaus_init(self._state, self._config), "plausibility init")

    def filter_restarted(self) -> None:
        """The SOC filter beside it started again outside its step (a new
        segment of a life): its SOC is the new temperature's share of the
        capacity, so no capacity change is expected of its corrections across
        the restart (as the monitor does itself where the filter's step
        restarts it, after an interval beyond dt_max_s). The evidence is kept."""
        self._state.have_q_last = 0

    def step(self, estimator: SocEstimator, dt_s: float, voltage_V: float) -> "ffi.CData":
        """Judge the estimator's last step (same dt and voltage as it was given)."""
        _check(lib.bf_plaus_step(self._state, self._config, dt_s, voltage_V, estimator._out, self._out), "plausibility step")
        return self._out


def run_monitored(
    recording: Recording,
    params: ParameterSet,
    initial_soc: InitialSoc = "ocv",
    config: PlausibilityConfig | None = None,
    monitor: PlausibilityMonitor | None = None,
) -> tuple[SocTrace, PlausibilityTrace]:
    """The EKF and the monitor over a whole recording, in one C call.

    The EKF starts afresh (from `initial_soc`); the monitor too unless one is
    given, which then continues from its state: a cell's life as segments,
    the SOC re-initialised at each start and the monitor's evidence kept
    (from a given SOC, the monitor waits for the filter to converge again;
    see `PlausibilityConfig.converged_sigma_soc`)."""
    est = SocEstimator(params)
    start_estimator(est, recording, initial_soc)
    mon = monitor if monitor is not None else PlausibilityMonitor(config)
    mon.filter_restarted()
    return run_monitored_arrays(est, mon, recording.time_s, recording.dt_s, recording.current_A, recording.voltage_V,
                                recording.temp_C)


def run_monitored_arrays(est: SocEstimator, mon: PlausibilityMonitor, time_s: np.ndarray, dt_s: np.ndarray,
                         current_A: np.ndarray, voltage_V: np.ndarray,
                         temp_C: np.ndarray) -> tuple[SocTrace, PlausibilityTrace]:
    """The EKF and the monitor over the samples, in one C call, both
    continuing from their states (a recording read in chunks)."""
    n = len(time_s)
    arrays = [as_f32(a) for a in (dt_s, current_A, voltage_V, temp_C)]
    soc, sigma, unseen, unseen_sig, stuck, change = (np.empty(n, dtype=np.float32) for _ in range(6))
    ekf_flags = np.empty(n, dtype=np.uint8)
    flags = np.empty(n, dtype=np.uint8)
    f = lambda a: ffi.from_buffer("float[]", a)  # noqa: E731
    _check(
        lib.bf_plaus_run(
            est._state, est._cell, est._tuning, mon._state, mon._config, *(f(a) for a in arrays), n,
            f(soc), f(sigma), ffi.from_buffer("uint8_t[]", ekf_flags), ffi.from_buffer("uint8_t[]", flags),
            f(unseen), f(unseen_sig), f(stuck), f(change),
        ),
        "plausibility run",
    )
    trace = SocTrace(soc.astype(np.float64), sigma.astype(np.float64), ekf_flags)
    return trace, PlausibilityTrace(
        np.asarray(time_s, dtype=np.float64), flags, unseen.astype(np.float64),
        unseen_sig.astype(np.float64), stuck.astype(np.float64), change.astype(np.float64),
    )


@dataclass
class StreamedFlags:
    """`PlausibilityTrace.summary` of a recording whose trace comes in chunks."""

    t0: float = math.nan
    seen: int = 0
    first: dict[str, FlagEvent] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    unseen_current_end_A: float | None = None
    unseen_current_sigma_end_A: float | None = None

    def update(self, chunk: PlausibilityTrace) -> None:
        n = len(chunk.flags)
        if not n:
            return
        if math.isnan(self.t0):
            self.t0 = float(chunk.time_s[0])
        for e in chunk.events():
            self.samples[e.flag] = self.samples.get(e.flag, 0) + e.samples
            if e.flag not in self.first:
                self.first[e.flag] = replace(e, index=self.seen + e.index, time_s=float(chunk.time_s[e.index]) - self.t0)
        self.seen += n
        whole = chunk.summary()
        self.unseen_current_end_A = whole["unseen_current_end_A"]  # type: ignore[assignment]
        self.unseen_current_sigma_end_A = whole["unseen_current_sigma_end_A"]  # type: ignore[assignment]

    def summary(self) -> dict[str, object]:
        events = sorted((replace(e, samples=self.samples[e.flag]) for e in self.first.values()), key=lambda e: e.index)
        return {"flags": [e.as_dict() for e in events], "unseen_current_end_A": self.unseen_current_end_A,
                "unseen_current_sigma_end_A": self.unseen_current_sigma_end_A}
