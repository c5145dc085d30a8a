"""Units as column headers write them, and how each converts to the units of a Recording."""

from __future__ import annotations

import re

#: The unit a Recording holds each quantity in.
SI = {"time": "s", "current": "A", "voltage": "V", "temperature": "degC", "ah": "Ah"}

# quantity -> normalised unit -> (scale, offset): value_SI = value * scale + offset.
_CONVERSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "time": {
        "s": (1.0, 0.0), "sec": (1.0, 0.0), "secs": (1.0, 0.0), "second": (1.0, 0.0),
        "seconds": (1.0, 0.0), "ms": (1e-3, 0.0), "min": (60.0, 0.0), "mins": (60.0, 0.0),
        "minute": (60.0, 0.0), "minutes": (60.0, 0.0), "h": (3600.0, 0.0), "hr": (3600.0, 0.0),
        "hrs": (3600.0, 0.0), "hour": (3600.0, 0.0), "hours": (3600.0, 0.0),
    },
    "current": {"a": (1.0, 0.0), "amp": (1.0, 0.0), "amps": (1.0, 0.0), "ma": (1e-3, 0.0)},
    "voltage": {"v": (1.0, 0.0), "volt": (1.0, 0.0), "volts": (1.0, 0.0), "mv": (1e-3, 0.0)},
    "temperature": {
        "c": (1.0, 0.0), "celsius": (1.0, 0.0), "k": (1.0, -273.15),
        "f": (5 / 9, -32 * 5 / 9), "fahrenheit": (5 / 9, -32 * 5 / 9),
    },
    "ah": {"ah": (1.0, 0.0), "mah": (1e-3, 0.0), "a.h": (1.0, 0.0), "ma.h": (1e-3, 0.0)},
}
_SHOWN = {
    "time": "s, ms, min, h (or hh:mm:ss values)",
    "current": "A, mA",
    "voltage": "V, mV",
    "temperature": "degC (°C, C), K, degF (°F, F)",
    "ah": "Ah, mAh",
}

_UNIT_IN_NAME = re.compile(r"^(?P<name>.*?)\s*[\[(]\s*(?P<unit>[^\[\]()]*?)\s*[\])]\s*$")
_BRACKETED = re.compile(r"^\s*[\[(][^\[\]()]*[\])]\s*$")


def split_unit(cell: str) -> tuple[str, str]:
    """``'Voltage [V]'`` -> ``('Voltage', 'V')``; ``'I (mA)'`` -> ``('I', 'mA')``; ``'I/mA'`` ->
    ``('I', 'mA')`` (EC-Lab and other exports write quantity/unit, where what follows the last
    ``/`` is a unit this module knows: ``'Charge/Discharge'`` stays a name); no unit -> ``''``."""
    match = _UNIT_IN_NAME.match(cell)
    if match and match["name"]:
        return match["name"].strip(), match["unit"]
    name, slash, unit = cell.strip().rpartition("/")
    if slash and name.strip() and _known(unit):
        return name.strip(), unit.strip()
    return cell.strip(), ""


def _known(unit: str) -> bool:
    key = normalise_unit(unit)
    return bool(key) and any(key in table for table in _CONVERSIONS.values())


def strip_brackets(cell: str) -> str:
    """``'[V]'`` -> ``'V'``, as a units row writes them."""
    cell = cell.strip()
    return cell[1:-1].strip() if _BRACKETED.match(cell) else cell


def normalise_unit(unit: str) -> str:
    # The "Â" is what a UTF-8 degree sign becomes when its file had to be read as latin-1.
    key = unit.strip().lower().replace("℃", "c").replace("°", "").replace("º", "").replace("â", "").strip()
    return key[3:].strip() if key.startswith("deg") else key


def is_unit(cell: str) -> bool:
    """True if the cell is bracketed, as in ``[Cnt]``, or a unit this module knows."""
    if _BRACKETED.match(cell):
        return True
    return _known(cell)


def conversion(quantity: str, unit: str) -> tuple[float, float] | None:
    """(scale, offset) to the SI unit, or None for a unit this quantity cannot have.

    A column without a unit is taken to be in the SI unit already.
    """
    key = normalise_unit(unit)
    if not key:
        return 1.0, 0.0
    return _CONVERSIONS[quantity].get(key)


def known_units(quantity: str) -> str:
    """The units of a quantity, for error messages."""
    return _SHOWN[quantity]
