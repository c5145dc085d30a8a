"""What a target should send: the C core run on the desktop through the
resets a replay commands.

A warm reset loses nothing (the target restores its filter), so the C core
runs on as if it had not happened. A power cycle loses the saved state: the
target starts each cell afresh from its next sample, as `bf_soc_ekf_start`
does, and steps that sample with the interval the bus carries for it (the
recording's interval before it), where a recording cut there starts with 0.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from bmsfil.core import SocEstimator, start_estimator
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording, RecordingError


def expected_soc(rec: Recording, params: ParameterSet, power_cycles: Iterable[int] = ()) -> np.ndarray:
    """The SOC a target should answer for each sample of `rec`, with the
    target power-cycled after each sample in `power_cycles`.

    A stretch between power cycles with no sample to start from is NaN (no
    estimate: the target's cell waits for a plausible voltage). Raises
    RecordingError (a ValueError) if no stretch has one.
    """
    starts = [0, *sorted({k + 1 for k in power_cycles if 0 <= k + 1 < len(rec)})]
    soc = np.empty(len(rec))
    unstarted: list[RecordingError] = []
    for first, end in zip(starts, [*starts[1:], len(rec)]):
        part = rec.slice(first, end)
        est = SocEstimator(params)
        try:
            start_estimator(est, part, "ocv")
        except RecordingError as exc:
            unstarted.append(exc)
            soc[first:end] = np.nan
            continue
        dt = part.dt_s.copy()
        dt[0] = rec.dt_s[first]
        soc[first:end] = est.run_arrays(dt, part.current_A, part.voltage_V, part.temp_C).soc
    if len(unstarted) == len(starts):
        raise unstarted[0]
    return soc
