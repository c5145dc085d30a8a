"""Write docs/health.md: capacity and R0 over the NASA PCoE cells' lives.

    .venv/bin/python scripts/health_report.py [--data ../shared/data] [-o docs/health.md]

Every NASA PCoE discharge file in the data folder is replayed as one
continuous life (all discharges in order, the unrecorded charges between
them as gaps) through the C core's health estimator with the bundled
parameter set `nasa-pcoe-18650` (fitted by scripts/nasa_params.sh to B0005's
first two discharges) and the default tunings; each discharge is scored as
`bmsfil health` scores it. Then the sensitivity of the scores to the two
memories (capacity and R0), to show what the defaults trade.
"""

from __future__ import annotations

import argparse
import re
import time
from dataclasses import replace
from pathlib import Path

from bmsfil.health import CapacityTuning, HealthEstimator, R0Tuning
from bmsfil.health_eval import EARLY_FRACTION, check_r0, file_sweeps, score_discharges, summarise
from bmsfil.importers import import_file
from bmsfil.params import params_arg

SKIP = 5


def run(path: Path, capacity: CapacityTuning | None = None, r0: R0Tuning | None = None):
    params = params_arg("nasa-pcoe-18650")
    rec = import_file(path)
    est = HealthEstimator(params, capacity=capacity, r0=r0)
    t0 = time.perf_counter()
    trace = est.run(rec)
    elapsed = time.perf_counter() - t0
    scores = score_discharges(rec, trace, est.capacity.gap_s, est.capacity.rated_Ah)
    _, selection = file_sweeps(rec)  # as bmsfil health takes them
    r0 = check_r0(rec, trace, selection.kept) if selection and selection.kept else None
    return rec, trace, scores, summarise(scores, skip=SKIP), r0, elapsed


def lg_section(data: Path) -> list[str]:
    """What one LG HG2 recording teaches the capacity estimator (bundled set, default tuning)."""
    files = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix in (".csv", ".gz"))
    if not files:
        return []
    params = params_arg("lg-hg2")
    rows = []
    for path in files:
        rec = import_file(path)
        tr = HealthEstimator(params).run(rec)
        counts = {e: tr.where(e).size for e in ("anchor_full", "anchor_empty", "anchor_rest", "capacity_updated")}
        q_ref = rec.meta.reference_capacity_Ah
        rows.append(
            f"| {rec.meta.name} | {rec.meta.ambient_temp_C:g} | {q_ref:.3f} | " if q_ref else
            f"| {rec.meta.name} | {rec.meta.ambient_temp_C:g} | - | ")
        rows[-1] += (f"{counts['anchor_full']} / {counts['anchor_empty']} / {counts['anchor_rest']} | "
                     f"{counts['capacity_updated']} | {tr.capacity_Ah[-1]:.3f} ± {tr.capacity_sigma_Ah[-1]:.3f} |")
    return [
        "## LG HG2: what one recording teaches",
        "",
        "Each LG HG2 recording in the shared data alone through the same estimator (bundled set",
        "`lg-hg2`, rated 3.0 Ah, default tunings). Q_ref is that temperature's C/20 capacity (the",
        "reference SOC's, `../shared/data/README.md`); a capacity learned is the charge to the cut-off",
        "at that recording's load (a 1C test at -10 °C: about 2.25 Ah), and 3.000 ± 0.300 is the prior",
        "(rated, 10 %): nothing learned. Anchors: samples that took a full, empty or rest anchor (a",
        "CV charge's taper takes a full one at every sample); pairs learned.",
        "",
        "| recording | T °C | Q_ref Ah | anchors full / empty / rest | pairs | capacity Ah |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "The drive cycles (US06, HWFET, UDDS) each end at 95 % of the 1C capacity, at SOC 0.06-0.17,",
        "some under a pulse that takes the voltage below the cut-off: they learn nothing, as they",
        "should (one discharge from full to a stop mid-way is no pair). Before the cut-off was",
        "compared without the ohmic drop (2026-12-07), their last pulse was taken for empty and the",
        "US06 cycles taught 2.13-2.59 Ah with sigma 0.011-0.015 Ah (SOH 0.71-0.86 for a new cell, in",
        "`bmsfil eval`'s JSON and table), and 607_Dis_2C_n20degC (2C at -20 °C, cut off at a",
        "reference SOC of 0.47; then the chamber warms) taught 300 Ah: the cold cut-off taken for",
        "empty, then the warm rest's OCV reading half the SOC back with no charge counted, a pair",
        "that drove the fit to the end of its range. Such a pair (its own capacity below a quarter",
        "or above four times the rating) is no longer learned either.",
        "",
        "The price: a constant load's cut-off is empty only if the voltage without its ohmic drop",
        "is near OCV(0). At 1C it is (the 1C capacity tests learn 2.47-2.73 Ah, their charge to the",
        "cut-off), at 2C mostly not (585_Dis_2C_0degC stops at SOC 0.09 under 6 A: its capacity comes",
        "from the rest-to-full pair, the charge put back, 2.78 Ah against Q_ref 2.60 Ah). A capacity",
        "learned from cut-offs is the capacity at moderate loads, not at any load.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("-o", "--output", type=Path, default=Path("docs/health.md"))
    args = ap.parse_args()
    files = sorted((args.data / "nasa_pcoe").glob("B*_discharge_timeseries.csv"))
    if not files:
        raise SystemExit(f"no NASA PCoE discharge files under {args.data / 'nasa_pcoe'}")
    params = params_arg("nasa-pcoe-18650")
    defaults = CapacityTuning.for_params(params)
    r0_defaults = R0Tuning.for_params(params)

    lines = [
        "# State of health: capacity and R0 over a cell's life",
        "",
        "Generated by `.venv/bin/python scripts/health_report.py` (rerun it to check these numbers;",
        "the same scores per recording come from `bmsfil health FILE --params nasa-pcoe-18650`). It",
        "rewrites the sections it makes and keeps the others, written by hand, where they are.",
        "",
        "## What runs",
        "",
        "The C core's `bf_health_step` (csrc/include/bmsfil/health.h) steps three estimators per sample:",
        "",
        "- the SOC filter (soc_ekf.h), unchanged;",
        "- **capacity** by recursive approximate weighted total least squares (AWTLS, Plett 2011;",
        "  capacity.h has the equations) over pairs of *anchors*, moments whose SOC is known: a full",
        "  cell (at rest or tapering within 30 mV of OCV(1)), the end of a discharge at its cut-off",
        "  (SOC 0 at that load), and the filter's SOC after an hour's rest (not under a set whose OCV",
        "  is a loaded curve: \"Lives whose charges were recorded\"). Between two anchors at",
        "  least 0.2 apart the charge counted (sigma from the current sensor's noise and offset) and",
        "  the SOC change (sigma from both anchors) make one pair; AWTLS weighs each pair by both",
        "  uncertainties, forgets per equivalent full cycle, and reports sigma from the cost's curvature.",
        "  AWTLS rather than a dual or joint EKF: capacity moves over hundreds of cycles and SOC in",
        "  seconds; AWTLS learns only where SOC is known, with each pair's own uncertainty, and costs",
        "  a few additions a sample between pairs.",
        "- **R0** by recursive least squares on current steps (dV = R0 dI across steps of at least",
        "  C/4 within 30 s, at SOC 0.2 or more), with its ratio to the parameter set's R0. A reading",
        "  the SOC filter refuses (a voltage or temperature outside the plausible range, a current",
        "  beyond the cell's) is no step: a finite 0 V once read as an R0 of ohms.",
        "  The ratio (`r0_growth` in `bmsfil eval --json`) compares two resistances",
        "  measured differently, so it is a trend, not an ageing figure by itself:",
        "  the tracker reads the voltage step within one sample (0.1 s on the LG",
        "  HG2 drive cycles), the set's R0 is what a fit with RC pairs of seconds",
        "  and more leaves in R0, the sub-second dynamics included. On the bundled",
        "  US06 at 25 °C, the recording the set was fitted on, the tracker reads",
        "  11.0 ± 0.4 mΩ against the set's 18.7 mΩ there: 0.56× for a cell that has",
        "  not aged. Its change over a life is the ageing (the NASA cells' R0 follows",
        "  their impedance sweeps' Re, below).",
        "",
        "`bmsfil eval` prints both where a recording ends, under its table (one line:",
        "capacity ± σ with SOH and the pairs it came from, R0 ± σ with the steps), and",
        "a life's capacity per discharge (`capacity_cycles`) instead.",
        "",
        "An interval longer than 10 minutes is a gap (here: the charges NASA did not record): the",
        "filter restarts from the voltage if the cell rests, and the open anchor is dropped.",
        "",
        "The capacity learned is the charge from full to the cut-off at the load the cell is used",
        "with, which is how the data set measures it (the integral of each 2 A discharge's current).",
        "It depends on that load, so a cut-off counts as empty only where the voltage is at it",
        "once the model's instantaneous drop (R0 i + Rn i / (1 + kn |i|)) is taken out: the last",
        "pulse of a drive cycle, or a cold cell's resistance, takes the voltage below the cut-off",
        "long before the cell is empty (LG HG2 below). Taking the SOC filter's SOC at the cut-off instead of 0",
        "would give a load-independent capacity when the cell model is right, and was tried: the",
        "filter counts charge with the parameter set's capacity, so its SOC at the cut-off carries",
        "the very error the pair should measure (a simulated cell that had lost 17 % was reported",
        "at 94 % of the set's capacity instead of 83 %). Anchors must not depend on the capacity",
        "being learned; SOC 0 at the cut-off does not.",
        "",
        "## NASA PCoE cells, each replayed as one continuous life",
        "",
        f"Parameter set `{params.name}` (scripts/nasa_params.sh: `bmsfil fit` on B0005's first two",
        "discharges; rated 2.0 Ah). Default tunings. Scored from the "
        f"{SKIP + 1}th discharge on (the first {SKIP} teach the estimator the cell).",
        f"\"20 %\" is the capacity reported once {EARLY_FRACTION:.0%} of the discharge's charge was delivered.",
        "",
        "| cell | discharges | end within 1 % | 20 % within 3 % | measured in ±3σ | end max / rms error | "
        "20 % max error | final capacity (SOH) | R0 vs Re: r (sweeps) | replay time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    misses: list[str] = []
    for path in files:
        rec, trace, scores, s, r0, elapsed = run(path)
        kept = s.scored
        r0_text = f"{r0.pearson_r:.2f} ({r0.sweeps})" if r0 else "-"
        lines.append(
            f"| {rec.meta.cell_id} | {s.discharges} | {s.end_within_1pct}/{kept} | {s.early_within_3pct}/{kept} | "
            f"{s.within_3_sigma}/{kept} | {s.end_max_abs_error * 100:.2f} % / {s.end_rms_error * 100:.2f} % | "
            f"{s.early_max_abs_error * 100:.2f} % | {trace.capacity_Ah[-1]:.3f} ± {trace.capacity_sigma_Ah[-1]:.3f} Ah "
            f"({trace.soh[-1] * 100:.1f} %) | {r0_text} | {elapsed:.2f} s |"
        )
        for sc in scores[SKIP:]:
            if abs(sc.end_error) > 0.01 or abs(sc.early_error) > 0.03 or not sc.within_3_sigma:
                misses.append(
                    f"| {rec.meta.cell_id} | {sc.index + 1} | {sc.measured_Ah:.3f} | {sc.end_error * 100:+.2f} % | "
                    f"{sc.early_error * 100:+.2f} % | {sc.start_s / 86400:.1f} |"
                )
    lines += [
        "",
        "Discharges outside a bar (numbered from 1; the day is when the discharge started):",
        "",
        "| cell | discharge | measured Ah | end error | 20 % error | day |",
        "|---|---|---|---|---|---|",
        *(misses or ["| - | none | | | | |"]),
        "",
        "Every miss of the 20 % bar is a discharge in which the cell had *recovered* capacity",
        "(the known regeneration of these cells after a long rest: on B0005 the data set paused",
        "72 h before discharge 48 and 33 h before discharge 90, where the median pause is 4 h).",
        "After 20 % of such a discharge the estimator still reports what the",
        "previous discharges taught it; the discharge itself corrects it when it ends. Nothing in",
        "the first 20 % of a 2 A discharge from full tells the capacity to 3 % on its own: the",
        "only information there is the voltage's shape, which the cell model does not tie to",
        "capacity.",
        "",
        "The cells kept aside for this check (B0006, discharged to 2.5 V and faded to about 57 %;",
        "B0018, 132 discharges) are not here; stand-ins built from these two (cut at 2.5 V, faded",
        "to 56-57 %, every other discharge) meet the same bars with the same kind of misses:",
        "docs/nasa_standins.md (`.venv/bin/python scripts/nasa_standins.py`).",
        "",
        *lg_section(args.data / "lg_hg2"),
        "## Sensitivity to the memories",
        "",
        "Capacity memory (equivalent full cycles for the sums to decay by e; default "
        f"{defaults.memory_cycles}): the newest full-to-empty pair measures the capacity to about",
        "0.5 %, while the capacity of these cells moves by up to 6 % between two discharges, so",
        "a short memory wins at the end of a discharge; a long one smooths the noise of partial pairs.",
        "",
        "| memory / cycles | cell | end within 1 % | 20 % within 3 % | in ±3σ | end max error |",
        "|---|---|---|---|---|---|",
    ]
    for memory in (0.25, 0.5, 1.0, 2.0):
        for path in files:
            _, _, _, s, _, _ = run(path, capacity=replace(defaults, memory_cycles=memory))
            kept = s.scored
            lines.append(
                f"| {memory} | {path.name[:5]} | {s.end_within_1pct}/{kept} | {s.early_within_3pct}/{kept} | "
                f"{s.within_3_sigma}/{kept} | {s.end_max_abs_error * 100:.2f} % |"
            )
    lines += [
        "",
        f"R0 memory (steps; default {r0_defaults.forget_steps:g}). These files log every 9.4 or 18.7 s,",
        "so each load step's dV/dI includes the part of the RC response that relaxed within the",
        "interval (the estimate is about twice the sweeps' Re), and the interval changed from",
        "18.7 s to 9.4 s after about 30 discharges, which moves the estimate by itself; with one",
        "usable step per discharge (the load switching on at full; the step at cut-off is at SOC 0),",
        "a long memory mostly averages over that change:",
        "",
        "| memory / steps | cell | R0 vs Re: r | R0 first / last sweep | Re first / last sweep |",
        "|---|---|---|---|---|",
    ]
    for steps in (5.0, 10.0, 50.0):
        for path in files:
            _, _, _, _, r0, _ = run(path, r0=replace(r0_defaults, forget_steps=steps))
            if r0:
                lines.append(
                    f"| {steps:g} | {path.name[:5]} | {r0.pearson_r:.2f} | {r0.r0_first_ohm * 1e3:.1f} / "
                    f"{r0.r0_last_ohm * 1e3:.1f} mΩ | {r0.re_first_ohm * 1e3:.1f} / {r0.re_last_ohm * 1e3:.1f} mΩ |"
                )
    lines += [
        "",
        "## On every target",
        "",
        "The host HIL target, the bare-metal firmware and the MicroPython application step the",
        "capacity and R0 estimators after the SOC filter and the plausibility monitor and send",
        "EstCellHealth each sample (capacity once a pair of anchors has closed, R0 once a current",
        "step has been seen). The host target, the firmware and the MicroPython native module run",
        "the same C and agree to the bit; the pure-MicroPython variant runs bmsfil_health.py and",
        "agrees to the frame's resolution (tests/test_health_over_can.py). Cost",
        "on the emulated Cortex-M4F: about 510 instructions per cell step on average, 4,324 bytes of",
        "flash, 116 bytes of state per cell (docs/firmware.md).",
        "",
        "## Not yet",
        "",
        "- The capacity estimate does not feed back into the SOC filter (which uses the parameter",
        "  set's capacity): measured, it would make these lives' SOC worse (\"Capacity fed back to",
        "  the SOC filter\", below).",
        "- Every target sends the core temperature in EstCellHealth when the set has a thermal model",
        "  (docs/thermal.md, \"On the targets\"), as it sends the state of power (docs/power.md); the",
        "  pure-MicroPython variant (bmsfil_thermal.py) to the frame's resolution.",
        "",
    ]
    made = "\n".join(lines)
    old = args.output.read_text() if args.output.is_file() else ""
    args.output.write_text(merge_sections(old, made))
    print(f"wrote {args.output}")
    for head in sorted(set(re.findall(r"(?m)^## .*$", old)) & GENERATED - set(re.findall(r"(?m)^## .*$", made))):
        print(f"kept from before, not made this time (its data not given?): {head}")


#: The sections this script makes (the others in docs/health.md are written by hand).
GENERATED = frozenset({"## What runs", "## NASA PCoE cells, each replayed as one continuous life",
                       "## LG HG2: what one recording teaches", "## Sensitivity to the memories",
                       "## On every target", "## Not yet"})


def merge_sections(old: str, made: str) -> str:
    """`made`'s title block and its sections (from one '## ' heading to the next) in place of
    `old`'s of the same heading; `old`'s other sections (written by hand) kept where they were;
    a section new to `made` after them."""
    def split(text: str) -> list[tuple[str, str]]:
        parts = re.split(r"(?m)^(?=## )", text)
        return [(part.splitlines()[0] if part.startswith("## ") else "", part) for part in parts]

    ours = dict(split(made))
    kept = split(old)
    out = [ours.get("", "")]
    out += [ours.get(head, body) for head, body in kept if head]
    out += [body for head, body in split(made) if head and head not in {h for h, _ in kept}]
    return "".join(part.rstrip("\n") + "\n\n" for part in out if part.strip()).rstrip("\n") + "\n"


if __name__ == "__main__":
    main()
