"""The `Recording` type and its canonical on-disk format.

A recording is what a cell tester or a BMS logged: time, current (positive on
charge), terminal voltage, temperature and, where the tester kept one, its
amp-hour counter, plus the metadata that says what was tested. Every importer
produces one; every estimator and evaluation consumes one.

The canonical format is a compressed NumPy archive (``.npz``) holding the
arrays and a JSON metadata block, with a format tag so that a file from
elsewhere is recognised and rejected with a clear message.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

FORMAT_TAG = "bmsfil-recording/1"
SUFFIX = ".npz"


class RecordingError(ValueError):
    """A recording file or array that cannot be used, with where and why."""


@dataclass(frozen=True)
class RecordingMeta:
    """What was tested, as the Battery Data Genome asks for (primary metadata)."""

    name: str
    cell_id: str = ""
    chemistry: str = ""
    nominal_capacity_Ah: float | None = None
    ambient_temp_C: float | None = None
    #: Capacity that defines the reference SOC: SOC_ref = soc0 + Ah / this.
    reference_capacity_Ah: float | None = None
    #: SOC at the first sample that the reference counts from (1.0 after a full charge).
    reference_initial_soc: float | None = None
    source: str = ""
    test: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def with_updates(self, updates: dict[str, str]) -> "RecordingMeta":
        """Apply ``key=value`` overrides (as from ``--meta``); unknown keys go to ``extra``."""
        known = {f.name: f for f in fields(self) if f.name != "extra"}
        changes: dict[str, object] = {}
        extra = dict(self.extra)
        for key, value in updates.items():
            if key in known:
                if key in _FLOAT_FIELDS:
                    try:
                        changes[key] = float(value)
                    except ValueError:
                        raise RecordingError(
                            f"metadata {key}: expected a number, got {value!r}"
                        ) from None
                else:
                    changes[key] = value
            else:
                extra[key] = value
        return replace(self, extra=extra, **changes)  # type: ignore[arg-type]


_FLOAT_FIELDS = {
    "nominal_capacity_Ah",
    "ambient_temp_C",
    "reference_capacity_Ah",
    "reference_initial_soc",
}


@dataclass(frozen=True)
class Recording:
    """Sampled cell data. Arrays are float64 and of equal length.

    ``time_s`` is seconds since the recording's first sample and never
    decreases; ``current_A`` is positive on charge; ``ah`` is the tester's
    charge counter in Ah (0 at the first sample, positive on charge) or None.
    """

    time_s: np.ndarray
    current_A: np.ndarray
    voltage_V: np.ndarray
    temp_C: np.ndarray
    meta: RecordingMeta
    ah: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.time_s)
        for name in ("current_A", "voltage_V", "temp_C") + (("ah",) if self.ah is not None else ()):
            if len(getattr(self, name)) != n:
                raise RecordingError(
                    f"recording {self.meta.name!r}: {name} has {len(getattr(self, name))} "
                    f"samples, time_s has {n}"
                )
        if n:
            dt = np.diff(self.time_s)
            bad = np.flatnonzero(~(dt >= 0))
            if bad.size:
                i = int(bad[0]) + 1
                raise RecordingError(
                    f"recording {self.meta.name!r}: time goes backwards at sample {i} "
                    f"({self.time_s[i - 1]!r} s then {self.time_s[i]!r} s)"
                )

    def __len__(self) -> int:
        return len(self.time_s)

    @property
    def dt_s(self) -> np.ndarray:
        """Interval before each sample (0 for the first)."""
        return np.diff(self.time_s, prepend=self.time_s[:1])

    def reference_soc(self) -> np.ndarray:
        """SOC from the tester's charge counter: soc0 + Ah / Q_ref.

        Raises RecordingError if the recording lacks what the reference needs.
        """
        missing = [
            what
            for what, ok in (
                ("an Ah counter", self.ah is not None),
                ("reference_capacity_Ah", self.meta.reference_capacity_Ah),
            )
            if not ok
        ]
        if missing:
            raise RecordingError(
                f"recording {self.meta.name!r} has no reference SOC: it needs "
                + " and ".join(missing)
                + " (set metadata with --meta reference_capacity_Ah=...)"
            )
        soc0 = self.meta.reference_initial_soc
        soc0 = 1.0 if soc0 is None else soc0
        assert self.ah is not None and self.meta.reference_capacity_Ah
        return soc0 + self.ah / self.meta.reference_capacity_Ah

    def slice(self, start: int, stop: int) -> "Recording":
        """Samples [start, stop), with time and Ah re-zeroed at the new first sample."""
        t = self.time_s[start:stop]
        ah = None if self.ah is None else self.ah[start:stop]
        meta = self.meta
        if ah is not None and len(ah):
            soc0 = meta.reference_initial_soc
            soc0 = 1.0 if soc0 is None else soc0
            if meta.reference_capacity_Ah:
                meta = replace(meta, reference_initial_soc=soc0 + ah[0] / meta.reference_capacity_Ah)
            ah = ah - ah[0]
        return Recording(
            time_s=t - t[0] if len(t) else t,
            current_A=self.current_A[start:stop],
            voltage_V=self.voltage_V[start:stop],
            temp_C=self.temp_C[start:stop],
            meta=meta,
            ah=ah,
        )

    def save(self, path: str | Path) -> Path:
        """Write the canonical format; returns the path written."""
        path = Path(path)
        arrays = {
            "time_s": self.time_s,
            "current_A": self.current_A,
            "voltage_V": self.voltage_V,
            "temp_C": self.temp_C,
        }
        if self.ah is not None:
            arrays["ah"] = self.ah
        header = json.dumps({"format": FORMAT_TAG, "meta": asdict(self.meta)})
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, header=np.array(header), **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Recording":
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as archive:
                if "header" not in archive.files:
                    raise RecordingError(f"{path}: not a bmsfil recording (no header array)")
                header = json.loads(str(archive["header"]))
                if header.get("format") != FORMAT_TAG:
                    raise RecordingError(
                        f"{path}: format {header.get('format')!r}, expected {FORMAT_TAG!r}"
                    )
                missing = [k for k in ("time_s", "current_A", "voltage_V", "temp_C") if k not in archive.files]
                if missing:
                    raise RecordingError(f"{path}: missing arrays {', '.join(missing)}")
                arrays = {k: np.asarray(archive[k], dtype=np.float64) for k in archive.files if k != "header"}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, json.JSONDecodeError) as exc:
            if isinstance(exc, RecordingError):
                raise
            raise RecordingError(f"{path}: not a readable bmsfil recording ({exc})") from exc
        meta = RecordingMeta(**header["meta"])
        return cls(
            time_s=arrays["time_s"],
            current_A=arrays["current_A"],
            voltage_V=arrays["voltage_V"],
            temp_C=arrays["temp_C"],
            ah=arrays.get("ah"),
            meta=meta,
        )
