"""Read-only arrays for frozen dataclasses (recordings, parameter sets)."""

from __future__ import annotations

import numpy as np


def frozen_array(values: object) -> np.ndarray:
    """`values` as a float64 array nobody can write to: a frozen dataclass's arrays are
    read-only, so that `set.cell.r0_ohm *= 1.2` fails before it changes anything (it
    changed the set, and every set sharing its arrays, then raised). One already
    read-only and float64 is kept as it is (no copy); any other is copied."""
    a = np.asarray(values, dtype=np.float64)
    if a.flags.writeable:
        a = a.copy()
        a.flags.writeable = False
    return a


def restore_frozen(obj: object, state: dict[str, object]) -> None:
    """A frozen dataclass's `__setstate__`: its fields from an unpickled state (a worker's copy,
    `copy.deepcopy`), its arrays read-only again."""
    for key, value in state.items():
        object.__setattr__(obj, key, frozen_array(value) if isinstance(value, np.ndarray) else value)
