"""The plausibility monitor on every LG HG2 drive cycle, clean and with each
injected fault; writes docs/plausibility.md (the numbers section) and prints it.

    .venv/bin/python scripts/plausibility_report.py [--data ../shared/data] [--out docs/plausibility.md]

Per drive cycle: the flags raised on the clean recording (there must be none);
a +0.5 A current offset (time to the first current_offset flag, the estimate's
error at 10 minutes and at the end); a 50 mA leak the sensor does not see
(time to the first self_discharge flag, the estimate at the end); and the
voltage reading frozen for 30 s at 10, 30, 50, 70 and 90 % of the recording
(delay to the voltage_stuck flag; '-' if not flagged while frozen).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np

from bmsfil.importers import import_file
from bmsfil.inject import SensorErrors
from bmsfil.params import bundled_params
from bmsfil.plausibility import PlausibilityConfig, run_monitored

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
BEGIN, END = "<!-- plausibility_report: begin -->", "<!-- plausibility_report: end -->"
STUCK_AT = (0.1, 0.3, 0.5, 0.7, 0.9)
OFFSET_A, LEAK_A, STUCK_FOR_S = 0.5, 0.05, 30.0


def stuck_delays(rec, params) -> tuple[list[float], list[float]]:
    """Delay to the flag from the freeze, and from the moment the cell's real
    voltage had moved from the frozen value by the monitor's threshold (before
    that, a live reading would not have looked different enough)."""
    out, after_move = [], []
    duration = float(rec.time_s[-1] - rec.time_s[0])
    threshold = PlausibilityConfig().stuck_threshold_V
    for frac in STUCK_AT:
        err = SensorErrors(voltage_stuck_at_s=frac * duration, voltage_stuck_for_s=STUCK_FOR_S)
        a, b = err.stuck_span(rec)
        _, pl = run_monitored(err.apply(rec, 0), params)
        hit = np.flatnonzero(pl.flags[a:b] & 0x04)
        moved = np.flatnonzero(np.abs(rec.voltage_V[a:b] - rec.voltage_V[a]) > threshold)
        flagged = float(rec.time_s[a + hit[0]]) if hit.size else math.inf
        out.append(flagged - float(rec.time_s[a]))
        after_move.append(flagged - float(rec.time_s[a + moved[0]]) if moved.size else math.nan)
    return out, after_move


def cycle_row(path: Path, params) -> dict[str, object]:
    rec = import_file(path)
    t = rec.time_s - rec.time_s[0]
    _, clean = run_monitored(rec, params)
    _, off = run_monitored(SensorErrors(current_offset_A=OFFSET_A).apply(rec, 0), params)
    _, leak = run_monitored(SensorErrors(leak_A=LEAK_A).apply(rec, 0), params)
    k10 = int(np.searchsorted(t, 600.0))
    return {
        "name": rec.meta.name,
        "T": rec.meta.ambient_temp_C,
        "duration_min": t[-1] / 60.0,
        "clean_flags": [e.short() for e in clean.events()],
        "clean_max_z": float(np.nanmax(np.abs(clean.unseen_current_A) / clean.unseen_current_sigma_A)),
        "offset_flag_s": off.first_time_s("current_offset"),
        "offset_err_10min": float(off.unseen_current_A[k10] - OFFSET_A),
        "offset_sigma_10min": float(off.unseen_current_sigma_A[k10]),
        "offset_err_end": float(off.unseen_current_A[-1] - OFFSET_A),
        "offset_sigma_end": float(off.unseen_current_sigma_A[-1]),
        "leak_flag_s": leak.first_time_s("self_discharge"),
        "leak_end": float(leak.unseen_current_A[-1]),
        "leak_sigma_end": float(leak.unseen_current_sigma_A[-1]),
        "leak_max_z": float(np.nanmax(leak.unseen_current_A / leak.unseen_current_sigma_A)),
        **dict(zip(("stuck", "stuck_after_move"), stuck_delays(rec, params))),
    }


def life_rows(paths: list[Path], params) -> list[str]:
    """Every drive cycle at one temperature in a row, 50 mA leak, the monitor's
    state kept from one cycle to the next (the SOC EKF restarts at each,
    from the rested full cell, as it would after the unrecorded charge)."""
    from bmsfil.plausibility import PlausibilityMonitor

    by_temp: dict[object, list] = {}
    for p in paths:
        rec = import_file(p)
        by_temp.setdefault(rec.meta.ambient_temp_C, []).append(rec)
    groups = sorted(by_temp.items()) + [("all", [r for _, rs in sorted(by_temp.items()) for r in rs])]
    out = []
    for temp, recs in groups:
        mon, clean_mon = PlausibilityMonitor(), PlausibilityMonitor()
        hours, flagged, clean_flags = 0.0, math.inf, set()
        for rec in recs:
            _, cl = run_monitored(rec, params, monitor=clean_mon)
            clean_flags |= {e.flag for e in cl.events()}
            _, pl = run_monitored(SensorErrors(leak_A=LEAK_A).apply(rec, 0), params, monitor=mon)
            first = pl.first_time_s("self_discharge")
            if math.isfinite(first) and not math.isfinite(flagged):
                flagged = hours + first / 3600.0
            hours += float(rec.time_s[-1] - rec.time_s[0]) / 3600.0
        out.append(
            f"| {temp} | {' + '.join(r.meta.name for r in recs) if temp != 'all' else 'all of the above, coldest first'} "
            f"| {hours:.1f} | "
            f"{'-' if not math.isfinite(flagged) else f'{flagged:.1f}'} | "
            f"{pl.unseen_current_A[-1]:+.3f} ± {pl.unseen_current_sigma_A[-1]:.3f} | "
            f"{', '.join(sorted(clean_flags)) or 'none'} |"
        )
    return out


def fmt_s(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.0f}"


def table(rows: list[dict[str, object]]) -> str:
    cfg = PlausibilityConfig()
    lines = [
        f"Monitor defaults: unseen-current alarms at z = {cfg.unseen_z:.2f} (1e-5 per look), memory "
        f"{cfg.unseen_tau_s / 3600:g} h; stuck voltage when the model's ohmic drop grew by more than "
        f"{cfg.stuck_threshold_V * 1e3:.1f} mV over a run of readings within {cfg.voltage_stuck_tol_V * 1e3:g} mV "
        f"(z = {cfg.stuck_z:.2f}, 1e-6 per look; sensor noise {cfg.voltage_noise_V * 1e3:g} mV; model change "
        f"error up to {cfg.model_change_rel * 100:.0f} %).",
        "",
        "| drive cycle | T °C | min | clean: flags | clean: max z | +0.5 A: flagged at s | error at 10 min A | error at end A "
        "| 50 mA leak: flagged at s | estimate at end A | max z | stuck 30 s: delay s at 10/30/50/70/90 % "
        "| same, from when the real voltage moved |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        stuck = " / ".join(fmt_s(d) if not math.isfinite(d) else f"{d:.1f}" for d in r["stuck"])
        moved = " / ".join("n/a" if math.isnan(d) else (fmt_s(d) if not math.isfinite(d) else f"{d:.1f}")
                           for d in r["stuck_after_move"])
        lines.append(
            f"| {r['name']} | {r['T']:g} | {r['duration_min']:.0f} | {', '.join(r['clean_flags']) or 'none'} "
            f"| {r['clean_max_z']:.2f} | {fmt_s(r['offset_flag_s'])} "
            f"| {r['offset_err_10min']:+.3f} ± {r['offset_sigma_10min']:.3f} | {r['offset_err_end']:+.3f} ± {r['offset_sigma_end']:.3f} "
            f"| {fmt_s(r['leak_flag_s'])} | {r['leak_end']:+.3f} ± {r['leak_sigma_end']:.3f} | {r['leak_max_z']:.2f} | {stuck} | {moved} |"
        )
    n = len(rows)
    clean_ok = sum(not r["clean_flags"] for r in rows)
    off10 = sum(r["offset_flag_s"] <= 600 for r in rows)
    off_est = sum(abs(r["offset_err_end"]) <= 0.1 for r in rows)
    off_flag = sum(math.isfinite(r["offset_flag_s"]) for r in rows)
    leak = sum(math.isfinite(r["leak_flag_s"]) for r in rows)
    stuck_all = [d for r in rows for d in r["stuck"]]
    stuck5 = sum(d <= 5.0 for d in stuck_all)
    stuck_any = sum(math.isfinite(d) for d in stuck_all)
    moved_all = [d for r in rows for d in r["stuck_after_move"] if not math.isnan(d)]
    moved5 = sum(d <= 5.0 for d in moved_all)
    lines += [
        "",
        f"Summary over {n} drive cycles: clean recordings without any flag {clean_ok}/{n}; +0.5 A offset "
        f"flagged within 10 min {off10}/{n}, flagged at all {off_flag}/{n}, estimated within 0.1 A at the end "
        f"{off_est}/{n}; 50 mA leak flagged within the cycle {leak}/{n}; 30 s stuck voltage flagged within "
        f"5 s {stuck5}/{len(stuck_all)}, flagged at all while frozen {stuck_any}/{len(stuck_all)}; of the "
        f"{len(moved_all)} freezes during which the real voltage moved by the threshold, flagged within 5 s of "
        f"that {moved5} (a negative delay: flagged before the real voltage had moved that far; n/a: the real voltage never moved that far while frozen, "
        "e.g. at rest, where a frozen reading is indistinguishable from a live one).",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("BMSFIL_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "plausibility.md")
    args = ap.parse_args()
    os.environ["BMSFIL_DATA"] = str(args.data)
    from shared_data import lg_drive_cycles

    params = bundled_params()
    paths = lg_drive_cycles()
    rows = [cycle_row(p, params) for p in paths]
    text = table(rows) + "\n\n" + "\n".join([
        "A 50 mA leak over several drive cycles in a row (the monitor's state kept, the SOC EKF restarted at "
        "each cycle's rested full charge; the unrecorded charging between cycles is not counted):",
        "",
        "| T °C | cycles | hours driven | self_discharge flagged after h | estimate at the end A "
        "| same cycles clean: flags |",
        "| --- | --- | --- | --- | --- | --- |",
        *life_rows(paths, params),
    ])
    print(text)
    if args.out.exists() and BEGIN in args.out.read_text():
        doc = args.out.read_text()
        head, _, rest = doc.partition(BEGIN)
        _, _, tail = rest.partition(END)
        args.out.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    else:
        args.out.write_text(f"# Plausibility monitor: numbers\n\n{BEGIN}\n{text}\n{END}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
