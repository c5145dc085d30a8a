"""Write docs/sparse_logs.md: the SOC and core-temperature filters on the LG HG2 tests logged once a minute.

    .venv/bin/python scripts/sparse_log_report.py [--data ../shared/data] [-o docs/sparse_logs.md]

The raw LG HG2 files of the constant-current discharges (0.5C, 2C) and the
1C capacity tests are sampled every 60 s, where the drive cycles the filter
was tuned on are sampled every 0.1 s. Between the legs of a test the chamber
goes to 25 °C and back, so a cell rests for an hour while its surroundings
warm or cool by up to 45 K. Per file: the SOC filter scored as `bmsfil eval`
scores it (started from the first sample, under load for the discharges:
an unknown start), and the core-temperature filter (ambient: the first
reading, the default), whose core should sit at the case's reading at the
end of a long rest.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from bmsfil.evaluate import evaluate
from bmsfil.importers import import_file
from bmsfil.params import bundled_params
from bmsfil.plausibility import PlausibilityTrace
from bmsfil.recording import Recording
from bmsfil.thermal import CoreTempEstimator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

#: A rest for the core-temperature check: |current| below this many C, for at least REST_S.
REST_C_RATE = 0.01
REST_S = 1800.0
GATED = 0x10


def long_rest_ends(rec: Recording) -> np.ndarray:
    """The last sample of each rest of REST_S or more."""
    rest = np.abs(rec.current_A) < REST_C_RATE * rec.meta.nominal_capacity_Ah
    ends = []
    start = None
    for k, r in enumerate(np.append(rest, False)):
        if r and start is None:
            start = k
        elif not r and start is not None:
            if rec.time_s[k - 1] - rec.time_s[start] >= REST_S:
                ends.append(k - 1)
            start = None
    return np.array(ends, dtype=int)


def monitor_text(plaus: PlausibilityTrace | None) -> str:
    """The plausibility monitor's flags on the file (a false one, on these
    clean tests) and its largest unseen-current statistic |u|/sigma."""
    if plaus is None:
        return "–"
    names = ", ".join(e["flag"] for e in plaus.summary()["flags"]) or "none"
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(plaus.unseen_current_A) / plaus.unseen_current_sigma_A
    z = z[np.isfinite(z)]
    return f"{names} / {z.max() if z.size else 0.0:.2f}"


def row(path: Path) -> str:
    rec = import_file(path)
    params = bundled_params()
    ev = evaluate(rec, params)
    s, plaus = ev.score, ev.plausibility
    tr = CoreTempEstimator(params).run(rec)
    ends = long_rest_ends(rec)
    off = f"{np.max(np.abs(tr.core_C - rec.temp_C)[ends]):.2f}" if ends.size else "–"
    swing = np.nanmax(rec.temp_C) - np.nanmin(rec.temp_C)
    conv = "never" if not np.isfinite(s.convergence_time_s) else f"{s.convergence_time_s:.0f}"
    return (f"| {rec.meta.name} | {np.median(rec.dt_s):.0f} | {s.rmse * 100:.2f} | {s.max_error_after_settle * 100:.2f} "
            f"| {s.within_3sigma * 100:.1f} | {conv} | {swing:.1f} | {ends.size} | {off} "
            f"| {np.mean(tr.flags & GATED > 0) * 100:.1f} | {monitor_text(plaus)} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("BMSFIL_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "sparse_logs.md")
    args = ap.parse_args()
    raw = args.data / "lg_hg2" / "1_raw"
    paths = sorted(p for p in raw.rglob("*.csv") if "_Dis_" in p.name or "_Cap_1C" in p.name)
    if not paths:
        raise SystemExit(f"sparse_log_report: no LG HG2 raw discharge or capacity file under {raw}")
    rows = [row(p) for p in paths]
    header = [
        "| recording | sampled every s | SOC RMSE % | max after 10 min % | in ±3σ % | converged after s "
        "| temperature swing K | rests ≥ 30 min | worst core - case at a rest's end K | thermal readings gated % "
        "| monitor flags / largest \\|û\\|/σ |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    table = "\n".join(header + rows)
    print(table)
    doc = args.out.read_text() if args.out.exists() else ""
    begin, end = "<!-- table -->", "<!-- /table -->"
    if begin in doc:
        head, _, rest = doc.partition(begin)
        _, _, tail = rest.partition(end)
        args.out.write_text(f"{head}{begin}\n{table}\n{end}{tail}")
    else:
        args.out.write_text(f"# Tests logged once a minute\n\n{begin}\n{table}\n{end}\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
