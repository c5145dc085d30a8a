"""What a target should send: the C core run on the desktop through the
resets a replay commands.

A warm reset loses nothing (the target restores its filter and monitor), so
the C core runs on as if it had not happened. A power cycle loses the saved
state: the target starts each cell afresh from its next sample, as
`bf_soc_ekf_start` does, with a fresh plausibility monitor, and steps that
sample with the interval the bus carries for it (the recording's interval
before it), where a recording cut there starts with 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bmsfil.core import SocEstimator, start_estimator
from bmsfil.params import ParameterSet
from bmsfil.plausibility import PlausibilityMonitor, run_monitored_arrays
from bmsfil.recording import Recording, RecordingError


def expected_run(rec: Recording, params: ParameterSet,
                 power_cycles: Iterable[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The SOC and the plausibility flags a target should answer for each
    sample of `rec`, with the target power-cycled after each sample in
    `power_cycles`.

    A stretch between power cycles with no sample to start from is NaN with
    no flags (no estimate: the target's cell waits for a plausible voltage).
    Raises RecordingError (a ValueError) if no stretch has one.
    """
    starts = [0, *sorted({k + 1 for k in power_cycles if 0 <= k + 1 < len(rec)})]
    soc = np.full(len(rec), np.nan)
    flags = np.zeros(len(rec), dtype=np.uint8)
    unstarted: list[RecordingError] = []
    for first, end in zip(starts, [*starts[1:], len(rec)]):
        part = rec.slice(first, end)
        est = SocEstimator(params)
        try:
            start_estimator(est, part, "ocv")
        except RecordingError as exc:
            unstarted.append(exc)
            continue
        dt = part.dt_s.copy()
        dt[0] = rec.dt_s[first]
        trace, monitored = run_monitored_arrays(est, PlausibilityMonitor(), part.time_s, dt, part.current_A,
                                                part.voltage_V, part.temp_C)
        soc[first:end], flags[first:end] = trace.soc, monitored.flags
    if len(unstarted) == len(starts):
        raise unstarted[0]
    return soc, flags


def expected_soc(rec: Recording, params: ParameterSet, power_cycles: Iterable[int] = ()) -> np.ndarray:
    """The SOC of `expected_run`."""
    return expected_run(rec, params, power_cycles)[0]
