"""bmsfil: battery-management estimators in C, run on the desktop through cffi.

The Python API, from the package's top level (each name is imported when
first used, so `import bmsfil` stays light):

    >>> import bmsfil
    >>> params = bmsfil.bundled_params()                  # the LG HG2 set
    >>> rec = bmsfil.bundled_recording()                  # LG HG2 US06 at 25 °C
    >>> trace = bmsfil.SocEstimator(params).run(rec)      # the C core, whole recording
    >>> ev = bmsfil.evaluate_recording(rec, params)       # scored against the reference
    >>> round(ev.score.rmse, 3)
    0.001

A recording without a reference SOC (a field log, a NASA life) is evaluated
without a score by `evaluate_unscored(rec, params)`: a dict as `bmsfil eval
--json` writes, with the monitor, capacity and R0 (and a life's discharges).

Recordings of other testers come in through `load_any` / `import_file`;
parameter sets through `ParameterSet.load`, `fit_cell` and `tune_filter`.
(`bmsfil.evaluate` and `bmsfil.fit` are the modules that define
`evaluate_recording` and `fit_cell`: a package's submodule takes its name.)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

#: Public name -> the module that defines it (under the name `_ALIASES` gives, if any).
_API = {
    "Recording": "bmsfil.recording",
    "RecordingMeta": "bmsfil.recording",
    "RecordingError": "bmsfil.recording",
    "RecordingWarning": "bmsfil.recording",
    "load_any": "bmsfil.importers",
    "import_file": "bmsfil.importers",
    "bundled_recording": "bmsfil.bundled",
    "ParameterSet": "bmsfil.params",
    "ParamsError": "bmsfil.params",
    "bundled_params": "bmsfil.params",
    "SocEstimator": "bmsfil.core",
    "SocTrace": "bmsfil.core",
    "KnownSoc": "bmsfil.core",
    "ReferenceSocEstimator": "bmsfil.reference",
    "PackEstimator": "bmsfil.pack_estimator",
    "HealthEstimator": "bmsfil.health",
    "CoreTempEstimator": "bmsfil.thermal",
    "PlausibilityMonitor": "bmsfil.plausibility",
    "run_monitored": "bmsfil.plausibility",
    "state_of_power": "bmsfil.power",
    "SopLimits": "bmsfil.power",
    "SensorErrors": "bmsfil.inject",
    "evaluate_recording": "bmsfil.evaluate",
    "evaluate_unscored": "bmsfil.evaluate",
    "Evaluation": "bmsfil.evaluate",
    "fit_cell": "bmsfil.fit",
    "FitInputs": "bmsfil.fit",
    "tune_filter": "bmsfil.tuning",
}

_ALIASES = {"evaluate_recording": "evaluate", "fit_cell": "fit"}

__all__ = sorted(_API)


def __getattr__(name: str) -> object:
    if name in _API:
        value = getattr(import_module(_API[name]), _ALIASES.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bmsfil' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))


if TYPE_CHECKING:
    from bmsfil.bundled import bundled_recording
    from bmsfil.core import KnownSoc, SocEstimator, SocTrace
    from bmsfil.evaluate import Evaluation
    from bmsfil.evaluate import evaluate as evaluate_recording
    from bmsfil.evaluate import evaluate_unscored
    from bmsfil.fit import FitInputs
    from bmsfil.fit import fit as fit_cell
    from bmsfil.health import HealthEstimator
    from bmsfil.importers import import_file, load_any
    from bmsfil.inject import SensorErrors
    from bmsfil.pack_estimator import PackEstimator
    from bmsfil.params import ParameterSet, ParamsError, bundled_params
    from bmsfil.plausibility import PlausibilityMonitor, run_monitored
    from bmsfil.power import SopLimits, state_of_power
    from bmsfil.recording import Recording, RecordingError, RecordingMeta, RecordingWarning
    from bmsfil.reference import ReferenceSocEstimator
    from bmsfil.thermal import CoreTempEstimator
    from bmsfil.tuning import tune_filter
