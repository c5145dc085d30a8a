#!/usr/bin/env python3
"""What a current-sensor gain error does to the R0 estimate: the bundled US06
recording (first 24,000 samples, 40 min) through the capacity and R0
estimators (bmsfil.health.HealthEstimator), clean and with the measured
current reading GAIN too high from sample 400 on. A gain error scales every
current step the R0 estimator sees, so R0 falls by about the gain at once;
the question is whether that step stands out of R0's own movement.

    .venv/bin/python scripts/gain_r0_check.py [--gain 0.05]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from bmsfil.bundled import bundled_recording
from bmsfil.health import HealthEstimator
from bmsfil.params import bundled_params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gain", type=float, default=0.05)
    args = ap.parse_args(argv)
    params, rec = bundled_params(), bundled_recording().slice(0, 24000)
    current = rec.current_A.copy()
    current[400:] *= 1.0 + args.gain
    clean = HealthEstimator(params).run(rec).r0_ohm
    faulty = HealthEstimator(params).run(dataclasses.replace(rec, current_A=current)).r0_ohm
    ok = np.isfinite(clean) & np.isfinite(faulty)
    ratio = faulty[ok] / clean[ok]
    after = ok[400:].nonzero()[0] + 400
    print(f"R0 with a {args.gain * 100:g} % gain error against clean, after the fault: "
          f"median {np.median(faulty[after] / clean[after]):.4f}, at the end {ratio[-1]:.4f}")
    print(f"R0 on the clean recording over the same 40 min: {np.nanmin(clean[after]) * 1e3:.2f} to "
          f"{np.nanmax(clean[after]) * 1e3:.2f} mOhm (median {np.nanmedian(clean[after]) * 1e3:.2f})")
    growth = HealthEstimator(params).run(rec).r0_growth
    growth = growth[np.isfinite(growth) & (growth > 0)]
    print(f"R0 against the parameter set's R0 at the step's SOC and temperature (growth), clean: 5th to 95th "
          f"percentile {np.percentile(growth, 5):.2f} to {np.percentile(growth, 95):.2f}")
    # The fault matrix's window (docs/faults.md): the middle sixth of the first 1200 samples.
    short = rec.slice(0, 1200)
    n = len(short)
    w = slice(n // 3, n // 3 + n // 6)
    cur = short.current_A.copy()
    cur[w] *= 1.0 + args.gain
    c_short = HealthEstimator(params).run(short).r0_ohm
    f_short = HealthEstimator(params).run(dataclasses.replace(short, current_A=cur)).r0_ohm
    print(f"In the fault matrix's {short.time_s[w.stop - 1] - short.time_s[w.start]:.0f} s window: R0 with the "
          f"gain error against clean at its end {f_short[w.stop - 1] / c_short[w.stop - 1]:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
