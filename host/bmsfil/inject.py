"""Realistic BMS sensor errors added to a recording, deterministic for a seed.

A laboratory cycler measures far better than a BMS does; `--inject` makes a
recording look like what a BMS would have seen, while the reference SOC stays
computed from the cycler's own charge counter.

Two faults for the plausibility monitor:

- ``voltage_stuck_at_s`` / ``voltage_stuck_for_s``: from that time (seconds
  from the first sample) the voltage reading stays frozen at the value it
  had then, for that long (0: to the end).
- ``leak_A``: a cell that loses ``leak_A`` internally (a soft internal short)
  which the current sensor does not see. A recording cannot be made to leak,
  so it is emulated from the other side: the measured current is made to
  read ``leak_A`` higher than the current the recorded cell received, at
  every sample, rests included. The emulated cell is one whose terminals
  carried the measured current while it lost ``leak_A`` inside; its charge,
  and so the reference SOC from the cycler's counter, is exactly the
  recorded one. Two approximations, both stated: the voltage is the recorded
  one, whose ohmic drop was made by the recorded current (R0 x leak_A, about
  1.5 mV for 50 mA on this cell, is missing); and at rest a real leaking cell
  reads 0 A while this one reads leak_A (a cell on a float charge that leaks
  it away). Seen from the BMS, a leak emulated so is the same as a
  current-sensor offset of +leak_A, which is what one current sensor can
  tell of a leak while current flows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from bmsfil.recording import Recording


class InjectSpecError(ValueError):
    pass


#: Settings that are a noise's 1-sigma or a duration.
NON_NEGATIVE = ("current_noise_A", "voltage_noise_V", "temp_noise_C", "voltage_stuck_at_s", "voltage_stuck_for_s")


@dataclass(frozen=True)
class SensorErrors:
    current_offset_A: float = 0.0
    current_gain: float = 0.0       # relative, 0.01 = reads 1 % high
    current_noise_A: float = 0.0    # 1-sigma white noise
    voltage_offset_V: float = 0.0
    voltage_noise_V: float = 0.0
    temp_offset_C: float = 0.0
    temp_noise_C: float = 0.0
    voltage_stuck_at_s: float = -1.0  # < 0: no stuck voltage
    voltage_stuck_for_s: float = 0.0  # 0: stuck to the end
    leak_A: float = 0.0             # charge lost inside the cell that the sensor does not see

    @classmethod
    def parse(cls, spec: str) -> "SensorErrors":
        """From ``key=value,key=value``, e.g. ``current_offset_A=0.1,voltage_noise_V=0.004``."""
        known = {f.name for f in fields(cls)}
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep:
                raise InjectSpecError(f"--inject: {item!r} is not key=value")
            if key not in known:
                raise InjectSpecError(f"--inject: unknown error {key!r}; known: {', '.join(sorted(known))}")
            if key in values:
                raise InjectSpecError(f"--inject: {key} given twice ({values[key]:g} and {value}); give it once")
            try:
                values[key] = float(value)
            except ValueError:
                raise InjectSpecError(f"--inject: {key}: expected a number, got {value!r}") from None
            if not np.isfinite(values[key]):
                raise InjectSpecError(f"--inject: {key}: expected a finite number, got {value!r}")
            if key in NON_NEGATIVE and values[key] < 0:
                raise InjectSpecError(f"--inject: {key}: a spread or a duration is not negative, got {value!r}")
        if "voltage_stuck_at_s" in values and "voltage_stuck_for_s" not in values:
            raise InjectSpecError("--inject: voltage_stuck_at_s needs voltage_stuck_for_s too (seconds the voltage "
                                  "stays frozen; 0: to the end of the recording)")
        if "voltage_stuck_for_s" in values and "voltage_stuck_at_s" not in values:
            raise InjectSpecError("--inject: voltage_stuck_for_s needs voltage_stuck_at_s too (seconds from the "
                                  "first sample at which the voltage freezes)")
        return cls(**values)

    def not_applied(self, rec: Recording) -> str | None:
        """Why a fault of this spec is not in the recording as injected, or None: a frozen
        voltage from a time after the recording ends."""
        if self.voltage_stuck_at_s >= 0 and len(rec) and self.stuck_span(rec) is None:
            duration = float(rec.time_s[-1] - rec.time_s[0])
            return (f"{rec.meta.name}: --inject voltage_stuck_at_s={self.voltage_stuck_at_s:g} is after its end "
                    f"({duration:.0f} s): no frozen voltage in this recording")
        return None

    def describe(self) -> str:
        return ",".join(
            f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if getattr(self, f.name) != f.default
        )

    def stuck_span(self, rec: Recording) -> tuple[int, int] | None:
        """Sample indices [start, end) of the frozen voltage, or None."""
        if self.voltage_stuck_at_s < 0:
            return None
        t = rec.time_s - rec.time_s[0]
        start = int(np.searchsorted(t, self.voltage_stuck_at_s))
        if start >= len(rec):
            return None
        end = len(rec) if self.voltage_stuck_for_s <= 0 else int(
            np.searchsorted(t, t[start] + self.voltage_stuck_for_s)
        )
        return start, max(end, start + 1)

    def apply(self, rec: Recording, seed: int) -> Recording:
        """The recording as the BMS would measure it; the Ah counter is untouched."""
        rng = np.random.default_rng(seed)
        n = len(rec)
        current = rec.current_A * (1.0 + self.current_gain) + self.current_offset_A + self.leak_A
        if self.current_noise_A:
            current = current + rng.normal(0.0, self.current_noise_A, n)
        voltage = rec.voltage_V + self.voltage_offset_V
        if self.voltage_noise_V:
            voltage = voltage + rng.normal(0.0, self.voltage_noise_V, n)
        span = self.stuck_span(rec)
        if span is not None:
            voltage = voltage.copy()
            voltage[span[0] : span[1]] = voltage[span[0]]
        temp = rec.temp_C + self.temp_offset_C
        if self.temp_noise_C:
            temp = temp + rng.normal(0.0, self.temp_noise_C, n)
        return replace(rec, current_A=current, voltage_V=voltage, temp_C=temp)
