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

import difflib
import hashlib
import json
import math
import warnings
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .frozen import frozen_array, restore_frozen

FORMAT_TAG = "bmsfil-recording/1"
SUFFIX = ".npz"

#: What one cell's samples can be, in a Recording's units: every sample that is
#: not NaN lies inside these (importers and `Recording.load` check it, to catch
#: wrong units and swapped columns).
SAMPLE_LIMITS = {
    "voltage": (0.0, 10.0),
    "current": (-1000.0, 1000.0),
    "temperature": (-80.0, 150.0),
    "ah": (-1000.0, 1000.0),
}
_ARRAYS = {"time_s": "time", "current_A": "current", "voltage_V": "voltage", "temp_C": "temperature", "ah": "ah"}
_REQUIRED_ARRAYS = ("time_s", "current_A", "voltage_V", "temp_C")
# Deflate compresses at most about 1032:1; a member that claims more than this
# many bytes per compressed byte is corrupt (or a zip bomb).
_MAX_DEFLATE_RATIO = 1100


class RecordingError(ValueError):
    """A recording file or array that cannot be used, with where and why."""


class RecordingWarning(UserWarning):
    """Something an importer assumed or changed in a file that it could still read, with where and why."""


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
        """Apply ``key=value`` overrides (as from ``--meta``); unknown keys go to ``extra``, with a
        RecordingWarning if one is close to a field's name (a typo: the field stays unset)."""
        known = {f.name: f for f in fields(self) if f.name != "extra"}
        changes: dict[str, object] = {}
        extra = dict(self.extra)
        for key, value in updates.items():
            if key in known:
                if key in _FLOAT_FIELDS:
                    try:
                        number = float(value)
                    except ValueError:
                        raise RecordingError(
                            f"metadata {key}: expected a number, got {value!r}"
                        ) from None
                    changes[key] = _checked_field(key, number, value)
                else:
                    changes[key] = value
            else:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
                if close:
                    warnings.warn(
                        f"metadata {key}={value!r}: not a metadata field, kept in extra and not used; "
                        f"did you mean {close[0]}?",
                        RecordingWarning,
                        stacklevel=2,
                    )
                extra[key] = value
        return replace(self, extra=extra, **changes)  # type: ignore[arg-type]

    def unlogged_charge_warning(self) -> str | None:
        """The import's note that the tester's counter moved over a gap in the log (charge the
        reference counts and the estimator never saw), as a warning, or None."""
        note = self.extra.get("ah_unlogged")
        return (f"{self.name}: the reference SOC counts charge the log does not show ({note}); the estimate "
                "cannot have seen it") if note else None

    def reference_start_warning(self) -> str | None:
        """What a score against the reference SOC assumes but the recording
        does not state (its start), or None."""
        if self.reference_initial_soc is not None:
            return None
        return (f"{self.name}: its reference SOC assumes a start from full charge, which the recording "
                "does not state (bmsfil import --meta reference_initial_soc=SOC)")


_FLOAT_FIELDS = {
    "nominal_capacity_Ah",
    "ambient_temp_C",
    "reference_capacity_Ah",
    "reference_initial_soc",
}


def _checked_field(key: str, number: float, text: str) -> float:
    """A metadata number as given, refused (naming the field) where no cell can have it: a
    recording imported with it would fail later, far from the cause."""
    if key == "reference_initial_soc":
        if not 0.0 <= number <= 1.0:
            hint = f" (a percentage? write {number / 100:g} for {number:g} %)" if 1.0 < number <= 100.0 else ""
            raise RecordingError(f"metadata {key}: expected a SOC in [0, 1], got {text!r}{hint}")
    elif key == "ambient_temp_C":
        lo, hi = SAMPLE_LIMITS["temperature"]
        if not lo <= number <= hi:
            raise RecordingError(f"metadata {key}: expected a temperature in [{lo:g}, {hi:g}] °C, got {text!r}")
    elif not (math.isfinite(number) and number > 0.0):
        raise RecordingError(f"metadata {key}: expected a capacity above 0 Ah, got {text!r}")
    elif number > SAMPLE_LIMITS["ah"][1]:
        raise RecordingError(f"metadata {key}: expected a capacity in Ah, up to {SAMPLE_LIMITS['ah'][1]:g}, got "
                             f"{text!r} (mAh? write {number / 1000:g} for {number:g} mAh)")
    return number


#: Entries of `RecordingMeta.extra` that hold times on the recording's axis, as
#: `shift_times` writes them: NASA PCoE's impedance sweeps ("t:Re;t:Re...", s and ohm) and the
#: starts of discharges its metadata lists that the file does not hold ("t,t,...").
TIMED_EXTRA = ("impedance_sweeps", "discharges_not_held_s")


def shift_times(text: str, by_s: float) -> str:
    """A TIMED_EXTRA entry with each time moved by `by_s` (the rest of each item kept)."""
    sep = ";" if ":" in text else ","
    items = [item.split(":", 1) for item in text.split(sep) if item]
    try:
        return sep.join(":".join([f"{float(first) + by_s:.3f}", *rest]) for first, *rest in items)
    except ValueError:
        raise RecordingError(f"a list of times on the recording's axis expected ({', '.join(TIMED_EXTRA)}), got "
                             f"{text[:60]!r}") from None


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
        if not isinstance(self.meta, RecordingMeta):
            raise TypeError(f"Recording: meta: expected a RecordingMeta (RecordingMeta(name=...)), got "
                            f"{type(self.meta).__name__}")
        for name in ("time_s", "current_A", "voltage_V", "temp_C") + (("ah",) if self.ah is not None else ()):
            object.__setattr__(self, name, self._column(name))
        n = len(self.time_s)
        for name in ("current_A", "voltage_V", "temp_C") + (("ah",) if self.ah is not None else ()):
            if len(getattr(self, name)) != n:
                raise RecordingError(
                    f"recording {self.meta.name!r}: {name} has {len(getattr(self, name))} "
                    f"samples, time_s has {n}"
                )
        if n:
            nan = np.flatnonzero(np.isnan(self.time_s))
            if nan.size:
                raise RecordingError(
                    f"recording {self.meta.name!r}: time_s is NaN at sample {int(nan[0])} (every sample needs its time)"
                )
            dt = np.diff(self.time_s)
            bad = np.flatnonzero(~(dt >= 0))
            if bad.size:
                i = int(bad[0]) + 1
                raise RecordingError(
                    f"recording {self.meta.name!r}: time goes backwards at sample {i} "
                    f"({float(self.time_s[i - 1])!r} s then {float(self.time_s[i])!r} s)"
                )

    def __setstate__(self, state: dict[str, object]) -> None:
        restore_frozen(self, state)

    def _column(self, name: str) -> np.ndarray:
        """A field as a read-only 1-D float64 array (`frozen_array`), or a RecordingError naming it."""
        value = getattr(self, name)
        where = f"recording {self.meta.name!r}: {name}"
        try:
            a = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise RecordingError(f"{where}: expected an array of numbers, got {type(value).__name__} ({exc})") from None
        if a.ndim != 1:
            column = " (a table's column: .ravel() it, or take df['name'].to_numpy())" if a.ndim == 2 and 1 in a.shape else ""
            raise RecordingError(f"{where}: expected one value per sample (a 1-D array), got shape {a.shape}{column}")
        if a.dtype.kind in "mM":  # timedelta64 is an integer to numpy: ns read as seconds
            raise RecordingError(f"{where}: expected seconds as numbers, got {a.dtype} (divide by "
                                 "np.timedelta64(1, 's'), or subtract the first date-time and divide)")
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == bool):
            raise RecordingError(f"{where}: expected real numbers, got an array of {a.dtype}")
        return frozen_array(a)

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
                ("an Ah counter (bmsfil import --map ...,ah=COLUMN)", self.ah is not None),
                ("its reference capacity (bmsfil import --meta reference_capacity_Ah=AH)",
                 self.meta.reference_capacity_Ah),
            )
            if not ok
        ]
        if missing and self.ah is None and len(self.cycle_starts() or []) > 1:
            # A life of discharges (NASA PCoE's): its files have no counter to map.
            raise RecordingError(
                f"recording {self.meta.name!r} is a life of {len(self.cycle_starts() or [])} discharges with no "
                "Ah counter, so no reference SOC; what can be scored is its capacity per discharge (bmsfil health, "
                "or eval's capacity_cycles)"
            )
        if missing:
            raise RecordingError(
                f"recording {self.meta.name!r} has no reference SOC: it needs " + " and ".join(missing)
            )
        soc0 = self.meta.reference_initial_soc
        soc0 = 1.0 if soc0 is None else soc0
        assert self.ah is not None and self.meta.reference_capacity_Ah
        return soc0 + self.ah / self.meta.reference_capacity_Ah

    def cycle_starts(self) -> list[int] | None:
        """Sample indices at which the cycles of a multi-cycle recording start
        (``extra['cycle_starts']``, as the NASA importer writes it), ascending,
        from 0, within the recording; None if it does not list any."""
        listed = self.meta.extra.get("cycle_starts")
        if not listed:
            return None
        try:
            starts = {int(k) for k in listed.split(",") if k.strip()}
        except ValueError:
            raise RecordingError(f"recording {self.meta.name!r}: cycle_starts {listed[:60]!r} is not a list of "
                                 "sample indices") from None
        return sorted({0, *(k for k in starts if 0 < k < len(self))})

    def data_sha256(self) -> str:
        """sha256 of the samples (time, current, voltage, temperature as
        float64): the same for a file and for the .npz `bmsfil import` made
        of it, which a file's own sha256 is not."""
        h = hashlib.sha256()
        for array in (self.time_s, self.current_A, self.voltage_V, self.temp_C):
            h.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        return h.hexdigest()

    def slice(self, start: int, stop: int) -> "Recording":
        """Samples [start, stop), with time and Ah re-zeroed at the new first
        sample (and a multi-cycle recording's cycle starts moved with them)."""
        t = self.time_s[start:stop]
        ah = None if self.ah is None else self.ah[start:stop]
        meta = self.meta
        if ah is not None and len(ah):
            soc0 = meta.reference_initial_soc
            soc0 = 1.0 if soc0 is None else soc0
            if meta.reference_capacity_Ah:
                meta = replace(meta, reference_initial_soc=soc0 + ah[0] / meta.reference_capacity_Ah)
            ah = ah - ah[0]
        if "cycle_starts" in meta.extra:
            # The cycles of a multi-cycle recording, moved to the slice (the
            # cycle in progress at its first sample included).
            starts = self.cycle_starts() or [0]
            kept = sorted({0, *(k - start for k in starts if start < k < stop)}) if stop > start else []
            extra = {**meta.extra, "cycle_starts": ",".join(map(str, kept))}
            if meta.extra.get("cycle_numbers"):  # each cycle's own number (NASA cycle_idx), moved alike
                numbers = dict(zip(starts, meta.extra["cycle_numbers"].split(",")))
                first = max((k for k in starts if k <= start), default=0)
                extra["cycle_numbers"] = ",".join([numbers.get(first, ""), *(numbers.get(k, "") for k in starts
                                                                          if start < k < stop)][:len(kept)])
            meta = replace(meta, extra=extra)
        if len(t) and t[0] != 0.0 and any(key in meta.extra for key in TIMED_EXTRA):
            # Times on the recording's axis (NASA's impedance sweeps): moved with it.
            meta = replace(meta, extra={**meta.extra, **{key: shift_times(meta.extra[key], -float(t[0]))
                                                         for key in TIMED_EXTRA if key in meta.extra}})
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
        """Read the canonical format; any problem is a RecordingError naming the file and what is wrong."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                magic = fh.read(6)
            if not magic:
                raise RecordingError(f"{path}: the file is empty")
            if magic == b"\x93NUMPY":
                raise RecordingError(f"{path}: a single NumPy array (.npy), not a bmsfil recording (.npz)")
            if not magic.startswith(b"PK"):
                raise RecordingError(f"{path}: not a bmsfil recording (an .npz is a zip archive; this is not one)")
            with np.load(path, allow_pickle=False) as archive:
                if "header" not in archive.files:
                    raise RecordingError(f"{path}: not a bmsfil recording (no header array)")
                _member_header(path, archive, "header")
                header = _read_header(path, archive["header"])
                missing = [k for k in _REQUIRED_ARRAYS if k not in archive.files]
                if missing:
                    raise RecordingError(f"{path}: missing arrays {', '.join(missing)}")
                # Arrays of other names are not part of the format: not read.
                arrays = {k: _read_array(path, archive, k) for k in _ARRAYS if k in archive.files}
        except RecordingError:
            raise
        except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise RecordingError(
                f"{path}: not a readable bmsfil recording: the archive is truncated or corrupt ({exc})"
            ) from exc
        except (OSError, ValueError, RuntimeError, NotImplementedError) as exc:
            # RuntimeError: an encrypted member; NotImplementedError: a compression zipfile lacks.
            raise RecordingError(f"{path}: not a readable bmsfil recording ({exc})") from exc
        meta = _read_meta(path, header["meta"])
        try:
            recording = cls(
                time_s=arrays["time_s"],
                current_A=arrays["current_A"],
                voltage_V=arrays["voltage_V"],
                temp_C=arrays["temp_C"],
                ah=arrays.get("ah"),
                meta=meta,
            )
        except RecordingError as exc:
            raise RecordingError(f"{path}: {exc}") from None
        if not len(recording):
            raise RecordingError(f"{path}: no samples (time_s is empty)")
        _check_samples(path, arrays)
        return recording


def _read_header(path: Path, array: np.ndarray) -> dict:
    """The header array's JSON: a format tag and a metadata object."""
    if array.dtype.kind != "U" or array.shape != ():
        raise RecordingError(f"{path}: header: expected a JSON text, got an array of {array.dtype} {array.shape}")
    try:
        header = json.loads(str(array))
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{path}: header: not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise RecordingError(f"{path}: header: expected a JSON object, got {type(header).__name__}")
    if header.get("format") != FORMAT_TAG:
        raise RecordingError(f"{path}: format {header.get('format')!r}, expected {FORMAT_TAG!r}")
    if not isinstance(header.get("meta"), dict):
        got = "nothing" if "meta" not in header else type(header["meta"]).__name__
        raise RecordingError(f"{path}: header: 'meta' must be an object of metadata, got {got}")
    return header


def _read_meta(path: Path, data: dict) -> RecordingMeta:
    """RecordingMeta from the header's 'meta', every field of the type it must have."""
    known = {f.name for f in fields(RecordingMeta)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecordingError(
            f"{path}: unknown metadata field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}"
        )
    if "name" not in data:
        raise RecordingError(f"{path}: metadata has no 'name'")
    values: dict[str, object] = {}
    for key, value in data.items():
        if key in _FLOAT_FIELDS:
            ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
            expected = "a number or null"
            value = value if value is None or not ok else float(value)
        elif key == "extra":
            ok = isinstance(value, dict)
            expected = "an object of key: text"
        else:
            ok = isinstance(value, str)
            expected = "a text"
        if not ok:
            raise RecordingError(f"{path}: metadata {key}: expected {expected}, got {value!r}")
        values[key] = value
    return RecordingMeta(**values)  # type: ignore[arg-type]


def _member_header(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """The shape and dtype an array claims, checked against the bytes its member holds before
    anything is allocated; None for .npy versions that np.load checks itself."""
    member = key + ".npy" if key + ".npy" in archive.zip.namelist() else key
    info = archive.zip.getinfo(member)
    with archive.zip.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            return None
        header_bytes = fh.tell()
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    present = info.file_size
    if info.compress_type == zipfile.ZIP_DEFLATED:
        present = min(present, info.compress_size * _MAX_DEFLATE_RATIO)
    elif info.compress_type == zipfile.ZIP_STORED:
        present = min(present, info.compress_size)
    present = max(present - header_bytes, 0)
    if claimed > present:
        raise RecordingError(
            f"{path}: array {key!r} claims shape {shape} of {dtype} ({claimed} bytes) but its member "
            f"holds at most {present} bytes: truncated or corrupt"
        )
    return shape, dtype


def _read_array(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """One array of samples as float64."""
    claimed = _member_header(path, archive, key)
    array = archive[key] if claimed is None else None
    shape, dtype = claimed if claimed is not None else (array.shape, array.dtype)  # type: ignore[union-attr]
    if len(shape) != 1 or dtype.kind not in "iuf":
        raise RecordingError(
            f"{path}: array {key!r}: expected one number per sample, got {dtype} of shape {shape}"
        )
    return np.asarray(archive[key] if array is None else array, dtype=np.float64)


def _check_samples(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Every sample finite where it is given and inside SAMPLE_LIMITS: wrong units or swapped arrays show here."""
    time = arrays["time_s"]
    bad = np.flatnonzero(~np.isfinite(time))
    if bad.size:
        raise RecordingError(f"{path}: array 'time_s', sample {int(bad[0])}: expected a finite time, got {time[bad[0]]:g}")
    units = {"voltage": "V", "current": "A", "temperature": "°C", "ah": "Ah"}
    hints = {
        "voltage": "millivolts stored as volts?",
        "current": "milliamps stored as amps?",
        "temperature": "kelvin stored as °C?",
        "ah": "mAh stored as Ah?",
    }
    for key, quantity in _ARRAYS.items():
        if quantity == "time" or key not in arrays:
            continue
        values = arrays[key]
        low, high = SAMPLE_LIMITS[quantity]
        outside = np.flatnonzero(~np.isnan(values) & ~((values >= low) & (values <= high)))
        if outside.size:
            i = int(outside[0])
            where = f"{path}: array {key!r}, sample {i}"
            if not np.isfinite(values[i]):
                raise RecordingError(f"{where}: expected a finite number, got {values[i]:g}")
            median = float(np.nanmedian(values))
            hint = hints[quantity] if abs(values[i]) > high else "a wrong unit or swapped arrays?"
            unit = units[quantity]
            raise RecordingError(
                f"{where}: {values[i]:g} {unit} is outside [{low:g}, {high:g}] {unit} "
                f"(median {median:g} {unit}): {hint}"
            )
