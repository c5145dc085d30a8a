"""Realistic BMS sensor errors added to a recording, deterministic for a seed.

A laboratory cycler measures far better than a BMS does; `--inject` makes a
recording look like what a BMS would have seen, while the reference SOC stays
computed from the cycler's own charge counter.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from bmsfil.recording import Recording


class InjectSpecError(ValueError):
    pass


@dataclass(frozen=True)
class SensorErrors:
    current_offset_A: float = 0.0
    current_gain: float = 0.0       # relative, 0.01 = reads 1 % high
    current_noise_A: float = 0.0    # 1-sigma white noise
    voltage_offset_V: float = 0.0
    voltage_noise_V: float = 0.0
    temp_offset_C: float = 0.0
    temp_noise_C: float = 0.0

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
            try:
                values[key] = float(value)
            except ValueError:
                raise InjectSpecError(f"--inject: {key}: expected a number, got {value!r}") from None
            if not np.isfinite(values[key]):
                raise InjectSpecError(f"--inject: {key}: expected a finite number, got {value!r}")
        return cls(**values)

    def describe(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self) if getattr(self, f.name))

    def apply(self, rec: Recording, seed: int) -> Recording:
        """The recording as the BMS would measure it; the Ah counter is untouched."""
        rng = np.random.default_rng(seed)
        n = len(rec)
        current = rec.current_A * (1.0 + self.current_gain) + self.current_offset_A
        if self.current_noise_A:
            current = current + rng.normal(0.0, self.current_noise_A, n)
        voltage = rec.voltage_V + self.voltage_offset_V
        if self.voltage_noise_V:
            voltage = voltage + rng.normal(0.0, self.voltage_noise_V, n)
        temp = rec.temp_C + self.temp_offset_C
        if self.temp_noise_C:
            temp = temp + rng.normal(0.0, self.temp_noise_C, n)
        return replace(rec, current_A=current, voltage_V=voltage, temp_C=temp)
