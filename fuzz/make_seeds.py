#!/usr/bin/env python3
"""Write the seed inputs of the fuzz corpus from the bundled recording:
realistic sessions the fuzzer mutates from. Run once; the seeds are kept
in fuzz/corpus/ with what fuzzing found.

    .venv/bin/python fuzz/make_seeds.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.pack import synthetic_pack
from bmsfil.params import bundled_params
from bmsfil_hil.replay import measurement_frames

HERE = Path(__file__).resolve().parent


def slcan(msg) -> bytes:
    return f"t{msg.arbitration_id:03X}{msg.dlc}{bytes(msg.data).hex().upper()}\r".encode()


def main() -> None:
    rec = bundled_recording().slice(1000, 1040)
    cells = synthetic_pack(bundled_recording(), 2, bundled_params())
    cells = [c.slice(1000, 1040) for c in cells]
    out = bytearray(b"V\rO\r")
    for k in range(len(rec)):
        volts = np.array([c.voltage_V[k] for c in cells])
        temps = np.array([c.temp_C[k] for c in cells])
        for msg in measurement_frames(k, float(rec.dt_s[k]), float(rec.current_A[k]), volts, temps):
            out += slcan(msg)
        if k == 15:
            out += slcan(cc.encode_host_command(cc.HostCommandCode.WARM_RESET))
        if k == 30:
            out += slcan(cc.encode_host_command(cc.HostCommandCode.POWER_CYCLE))
    (HERE / "corpus" / "slcan_app").mkdir(parents=True, exist_ok=True)
    (HERE / "corpus" / "slcan_app" / "seed_two_cells_with_resets").write_bytes(bytes(out))
    steps = [np.float32(rec.voltage_V[0]), np.float32(rec.temp_C[0])]
    for k in range(len(rec)):
        steps += [rec.dt_s[k] or 0.1, rec.current_A[k], rec.voltage_V[k], rec.temp_C[k]]
    (HERE / "corpus" / "ekf_step").mkdir(parents=True, exist_ok=True)
    (HERE / "corpus" / "ekf_step" / "seed_us06_40_samples").write_bytes(np.asarray(steps, dtype="<f4").tobytes())


if __name__ == "__main__":
    main()
