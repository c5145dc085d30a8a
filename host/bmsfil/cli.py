"""The `bmsfil` command."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import shlex
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable
from contextlib import nullcontext, redirect_stderr
from dataclasses import fields, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console
from rich.progress import Progress, TextColumn
from rich.table import Table

from bmsfil import jsonout
from bmsfil.argtypes import at_least, capacity_ah, non_negative_float, positive_float
from bmsfil.export_c import params_to_c
from bmsfil.export_micropython import params_to_micropython
from bmsfil.export_pybamm import params_to_pybamm
from bmsfil.bundled import bundled_path, bundled_recording
from bmsfil.chunked import save_parquet
from bmsfil.core import InitialSoc, KnownSoc
from bmsfil.reference import LOADED_C_RATE
from bmsfil.current_sign import wrong_sign
from bmsfil.evaluate import checked_reference
from bmsfil.fit import ROLES, FitError, FitInputs, bmsfil_version, file_sha256, fit, provenance
from bmsfil.fleet import (Failed, FleetError, Outcome, claim_outputs, claim_stem, cost_pool, evaluate_path,
                          expand_inputs, run_many)
from bmsfil.gaps import gap_warning
from bmsfil.held_out import FitRecipe, RecipeError, fit_digests, fit_inputs_among, held_out_cells
from bmsfil.importers import CURRENT_SIGNS, FORMATS, import_cycles, import_file, load_any, load_as_is
from bmsfil.importers.names import output_stem
from bmsfil.importers.textfile import is_npz
from bmsfil.inject import InjectSpecError, SensorErrors
from bmsfil.params import (BUNDLED_SETS, OCV_LOADED_NOTE, CellParams, ParameterSet, ParamsError, ParamsWarning,
                           params_arg, params_for)
from bmsfil.outdirs import output_dir_problem
from bmsfil.params_match import parameter_warnings
from bmsfil.plausibility import describe_flag
from bmsfil.recording import Recording, RecordingError, RecordingWarning
from bmsfil.tuning import SEARCH_SPACE, Targets, at_search_bounds, tune_filter

if TYPE_CHECKING:
    from bmsfil.health import CapacityTuning

#: Tables written to a file or a pipe are not cut to 80 columns (a terminal's own width, or COLUMNS, wins).
_WIDTH = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160
console = Console(highlight=False, markup=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, markup=False, width=_WIDTH)


def parse_pairs(items: list[str] | None, what: str, sep: str = ",") -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(sep))):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise RecordingError(f"{what}: {part!r} is not key=value")
            key, value = key.strip(), value.strip()
            if out.get(key, value) != value:
                raise RecordingError(f"{what}: {key} given twice, as {out[key]!r} and as {value!r}: which one?")
            out[key] = value
    return out


def initial_soc_arg(text: str) -> float | str:
    if text == "ocv":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'ocv' or a SOC between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a SOC between 0 and 1, got {value}")
    return value


def _params_for(value: str | Path | None, sources: list[str]) -> ParameterSet:
    params, chosen, unknown = params_for(value, sources)
    if chosen is not None:
        console.print(f"parameters: the bundled {chosen} set, for these recordings (--params to choose)")
    elif unknown:
        # A tester's own file: no bundled set is known to be its cell's (a red team's CSV life of a
        # 2 Ah cell read as an LG HG2's 3 Ah, SOH 59 % for 88 %, without a word).
        err_console.print(f"bmsfil: warning: no --params, and no bundled set known for these recordings' cell: the bundled "
                          f"{params.name} set ({params.cell.nominal_capacity_Ah:g} Ah) is used; give your cell's set "
                          "with --params (bmsfil fit makes one)", soft_wrap=True)
    return params


def cmd_import(args: argparse.Namespace) -> int:
    if args.output.suffix not in (".npz", ".parquet"):
        raise RecordingError(f"-o {args.output}: a recording is written as .npz or .parquet")
    options = dict(
        fmt=args.format,
        column_map=parse_pairs(args.map, "--map") or None,
        current_sign=args.current_sign,
        meta=parse_pairs(args.meta, "--meta", sep="\0") or None,
    )
    if args.cycle is None:
        rec = import_file(args.file, **options)
    else:
        cycles = import_cycles(args.file, **options)
        numbers = [c.meta.extra.get("cycle_idx") for c in cycles]
        if str(args.cycle) not in numbers:
            listed = [n for n in numbers if n is not None]
            raise RecordingError(
                f"{args.file}: no cycle {args.cycle}"
                + (f" (its cycles are {_number_ranges(listed)})" if listed else " (the file has no numbered cycles)")
            )
        rec = cycles[numbers.index(str(args.cycle))]
    out = save_parquet(rec, args.output) if args.output.suffix == ".parquet" else rec.save(args.output)
    console.print(
        f"{args.file} -> {out}: {len(rec)} samples, {rec.time_s[-1]:.0f} s, "
        f"format {rec.meta.extra.get('format', '?')}, name {rec.meta.name}"
    )
    if (why := wrong_sign(rec)) is not None:
        err_console.print(f"bmsfil import: warning: {why}", soft_wrap=True)
    return 0


def _fmt_pct(v: float | None) -> str:
    """A share in %; None (a summary's non-finite value) as '-'."""
    return f"{v * 100:.2f}" if v is not None and math.isfinite(v) else "-"


def _fmt_s(v: float | None) -> str:
    return f"{v:.0f}" if v is not None and math.isfinite(v) else "never"


def _initial_soc(args: argparse.Namespace) -> InitialSoc:
    """eval's start: --initial-soc, known to within --initial-soc-sigma if that is given."""
    if args.initial_soc_sigma is None:
        return args.initial_soc
    if args.initial_soc == "ocv":
        raise RecordingError("--initial-soc-sigma is the sigma of a known start: give the start too, "
                             "--initial-soc SOC (a start from the OCV has its own, p0_soc_ocv)")
    if args.initial_soc_sigma > 1.0:
        raise RecordingError(f"--initial-soc-sigma {args.initial_soc_sigma:g}: a SOC's sigma is at most 1")
    return KnownSoc(args.initial_soc, args.initial_soc_sigma)


def cmd_eval(args: argparse.Namespace) -> int:
    errors = SensorErrors.parse(args.inject) if args.inject else None
    try:
        sources = [str(p) for p in expand_inputs(args.inputs)] if args.inputs else [str(bundled_path())]
    except FleetError as exc:
        raise RecordingError(str(exc)) from None
    if args.scheduler is not None:
        # Paths travel to workers that may run elsewhere, from another folder: absolute.
        sources, args.out_dir = [str(Path(s).resolve()) for s in sources], args.out_dir.resolve()
    params = _params_for(args.params, sources)
    if args.out_dir.exists() and not args.out_dir.is_dir():
        raise RecordingError(f"--out-dir {args.out_dir}: a file, not a folder for the per-recording CSV and PNG")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, object]] = _done_before(args, params, sources) if args.resume else {}
    todo = [s for s in sources if s not in results]
    failures: list[Failed] = []
    order = {source: k for k, source in enumerate(sources)}  # the JSON lists inputs in the command's order
    # The output names taken, by the inputs done before (--resume) and as each arrives.
    claimed: dict[str, str] = {Path(str(out)).stem: source for source, summary in results.items()
                               for out in (summary.get("outputs") or {}).values()}  # type: ignore[union-attr]
    task_args = (params, _initial_soc(args), errors, args.seed, str(args.out_dir), not args.no_plot)
    with Progress(*Progress.get_default_columns(), console=err_console, transient=True,
                  disable=len(todo) < 2) as bar:
        task = bar.add_task("evaluating", total=len(todo))

        def arrived(done: int, outcome: Outcome[dict[str, object]]) -> None:
            bar.update(task, completed=done)
            if outcome.failure is not None:
                failures.append(outcome.failure)
            else:
                assert outcome.result is not None
                renamed = claim_outputs(outcome.result, args.out_dir, claimed)
                if renamed:
                    outcome.result["warnings"] = [*outcome.result.get("warnings", []), renamed]  # type: ignore[list-item]
                results[outcome.source] = outcome.result
            if args.json:
                write_json(args.json, params, args, [results[s] for s in sources if s in results],
                           sorted(failures, key=lambda f: order[f.source]))

        try:
            run_many(evaluate_path, todo, task_args, workers=args.workers, scheduler=args.scheduler, progress=arrived)
        except FleetError as exc:
            err_console.print(f"bmsfil eval: error: {exc}", soft_wrap=True)
            return 2
    if results:
        _print_eval_table(results, sources, params, args, errors)
    if args.initial_soc == "ocv":
        _warn_loaded_starts(results.values(), params)
    for summary in results.values():
        for warning in summary.get("warnings") or []:
            err_console.print(f"bmsfil eval: warning: {warning}", soft_wrap=True)
    for failure in failures:
        err_console.print(f"bmsfil eval: error: {failure.cause}", soft_wrap=True)
    if failures:
        err_console.print(f"bmsfil eval: {len(failures)} of {len(sources)} recordings failed; {len(results)} scored"
                          + (" (rerun with --resume to do only the rest)" if args.json else ""))
        return 2
    return 0


def _print_eval_table(results: dict[str, dict[str, object]], sources: list[str], params: ParameterSet,
                      args: argparse.Namespace, errors: SensorErrors | None) -> None:
    sigma = "" if args.initial_soc_sigma is None else f" ± {args.initial_soc_sigma:g}"
    table = Table(title=f"SOC EKF (C core) vs reference, params {params.name}, initial SOC {args.initial_soc}{sigma}"
                  + (f", injected {errors.describe()}" if errors else ""))
    for col in ("recording", "T/°C", "RMSE %", "max >10 min %", "in ±3σ %", "conv. s", "CC RMSE %", "bad",
                "plausibility"):
        table.add_column(col, justify="right" if col != "recording" else "left", no_wrap=col == "recording")
    unscored, lives = [], []
    for summary in (results[s] for s in sources if s in results):
        s, c = summary["ekf"], summary["coulomb_counter"]
        t = summary["ambient_temp_C"]
        scores = (["—"] * 4 if s is None else
                  [_fmt_pct(s["rmse"]), _fmt_pct(s["max_error_after_settle"]), f"{s['within_3sigma'] * 100:.1f}",
                   _fmt_s(s["convergence_time_s"])])
        table.add_row(str(summary["name"]), f"{t:g}" if t is not None else "?", *scores,
                      "—" if c is None else _fmt_pct(c["rmse"]), str(summary["flagged_samples"]),
                      _plausibility_cell(summary.get("plausibility")))
        if s is None:
            unscored.append(f"{summary['name']}: SOC not scored ({summary.get('not_scored')})")
        if isinstance(summary.get("health"), dict):
            lives.append(_health_line(summary))
        if len(summary.get("capacity_cycles") or []) > LIFE_SKIP:  # type: ignore[arg-type]
            lives.append(_life_line(summary))
        if isinstance(summary.get("power"), dict):
            lives.append(_power_line(summary))
        if isinstance(summary.get("core_temperature"), dict):
            lives.append(_core_temp_line(summary))
    console.print(table)
    for line in unscored + lives:
        console.print(line, soft_wrap=True)
    console.print(
        "max >10 min: largest error after the first 10 minutes; conv.: time after which the error stays "
        "within 2 points; CC: a coulomb counter fed the same data; bad: samples flagged unusable and skipped; "
        "plausibility: each monitor flag at its first raising, with its evidence (unseen current ± sigma, "
        "or how long the voltage was frozen while the model's ohmic drop moved), then the unseen-current "
        "estimate at the end"
    )
    plotted = any("png" in (results[s].get("outputs") or {}) for s in sources if s in results)  # type: ignore[operator]
    console.print(f"per-recording CSV{' and PNG' if plotted else ''} in {args.out_dir}/"
                  + ("" if plotted or args.no_plot else " (a streamed recording is not plotted)"))


def _health_line(summary: dict[str, object]) -> str:
    """Capacity and R0 where the recording ends, in one line (the JSON's health)."""
    h = summary["health"]
    assert isinstance(h, dict)
    pairs, steps = h["capacity_pairs"], h["r0_steps"]
    capacity = ("capacity: no pair of anchors (full, empty or a long rest) learned from, the set's rated capacity kept"
                if not pairs or h["capacity_Ah"] is None else
                f"capacity {h['capacity_Ah']:.3f} ± {h['capacity_sigma_Ah']:.3f} Ah (SOH {h['soh'] * 100:.1f} %, "
                f"{pairs} pair(s) of anchors)")
    r0 = ("R0: no current step seen" if not steps or h["r0_ohm"] is None else
          f"R0 {h['r0_ohm'] * 1e3:.1f} ± {h['r0_sigma_ohm'] * 1e3:.1f} mΩ from {steps} current steps")
    return f"{summary['name']}: {capacity}; {r0}"


def _power_line(summary: dict[str, object]) -> str:
    """The state of power at the recording's end per horizon, in one line (the JSON's power)."""
    power = summary["power"]
    assert isinstance(power, dict)

    def watts(key: str) -> str:
        return " / ".join("—" if v.get(key) is None else f"{v[key]:.1f}" for v in power.values())

    return (f"{summary['name']}: state of power at the end over {' / '.join(power)}: discharge "
            f"{watts('discharge_W_end')} W, charge {watts('charge_W_end')} W")


def _core_temp_line(summary: dict[str, object]) -> str:
    """The core temperature in one line (the JSON's core_temperature)."""
    c = summary["core_temperature"]
    assert isinstance(c, dict)
    if c["core_max_C"] is None:
        return f"{summary['name']}: core temperature: no valid temperature reading to start from"
    above = ("" if c["core_above_case_max_K"] is None else
             f", at most {c['core_above_case_max_K']:+.1f} K from the case (mean {c['core_above_case_mean_K']:+.2f} K)")
    return (f"{summary['name']}: core temperature up to {c['core_max_C']:.1f} °C{above}, {c['core_end_C']:.1f} "
            f"± {c['core_sigma_end_C']:.2f} °C at the end; {c['readings_gated_share'] * 100:.1f} % of readings "
            "beyond the filter's gate")


#: A life's first discharges teach the capacity estimator the cell: eval's life line scores those
#: after them (bmsfil health --skip's default).
LIFE_SKIP = 5


def _life_line(summary: dict[str, object]) -> str:
    """A life's capacity in one line (the JSON has every discharge under capacity_cycles)."""
    cycles = summary["capacity_cycles"]
    assert isinstance(cycles, list)
    tests = [c for c in cycles[LIFE_SKIP:] if c["capacity_test"]]
    end = [abs(c["estimate_end_Ah"] / c["measured_Ah"] - 1.0) for c in tests]
    early = [abs(c["estimate_20pct_Ah"] / c["measured_Ah"] - 1.0) for c in tests]
    return (f"{summary['name']}: {len(cycles)} discharges, {sum(c['capacity_test'] for c in cycles)} of them from "
            f"full to the cut-off; of those after the first {LIFE_SKIP}, capacity at the end within 1 % on "
            f"{sum(e <= 0.01 for e in end)} of {len(end)}, after 20 % of its duration within 3 % on "
            f"{sum(e <= 0.03 for e in early)} (JSON: capacity_cycles; bmsfil health scores a life in full)")


def _warn_loaded_starts(summaries: Iterable[dict[str, object]], params: ParameterSet) -> None:
    limit = LOADED_C_RATE * float(params.cell.capacity_Ah[0])  # as bf_soc_ekf_start decides
    for summary in summaries:
        current = summary.get("start_current_A")
        if isinstance(current, float) and abs(current) > limit:
            err_console.print(f"bmsfil eval: warning: {summary['name']} starts under load ({current:+.2f} A): its first "
                              "voltage is not the cell's OCV, so the filter starts at the SOC that voltage reads with "
                              f"the sigma of an unknown start ({params.filter.p0_soc ** 0.5:.2g}) and converges as "
                              "from a guess; if the start is known, give it with --initial-soc SOC "
                              "--initial-soc-sigma S", soft_wrap=True)


def _done_before(args: argparse.Namespace, params: ParameterSet, sources: list[str]) -> dict[str, dict[str, object]]:
    """Summaries in an earlier run's --json of those of `sources` whose content
    is unchanged, by input, when it ran with the same settings."""
    if not args.json:
        raise RecordingError("--resume needs --json FILE: the results of the earlier run are read from it")
    if not args.json.is_file():
        return {}
    try:
        doc = json.loads(args.json.read_text())
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{args.json}: cannot resume from it: {exc}") from None
    differ = [k for k, v in _run_settings(args, params).items() if doc.get(k) != v]
    if differ:
        raise RecordingError(f"{args.json}: written with other settings ({', '.join(differ)} differ); "
                             "remove it or drop --resume")
    others = [str(r.get("source")) for r in doc.get("recordings", [])
              if isinstance(r, dict) and str(r.get("source")) not in sources]
    if others:
        raise RecordingError(f"{args.json}: written for other inputs too ({', '.join(others[:3])}"
                             f"{', ...' if len(others) > 3 else ''}), which this run would drop from it: give the "
                             "same inputs to --resume, or write another --json")
    done: dict[str, dict[str, object]] = {}
    for r in doc.get("recordings", []):
        if not isinstance(r, dict) or str(r.get("source")) not in sources:
            continue
        source = str(r["source"])
        # The path alone does not say the file is the one scored: one replaced
        # since (or an entry without a digest, from before they were written) is redone.
        if Path(source).is_file() and r.get("source_sha256") == file_sha256(Path(source)):
            done[source] = r
        else:
            why = ("its entry has no sha256 (written before they were)" if r.get("source_sha256") is None
                   else "its sha256 differs")
            err_console.print(f"bmsfil eval: {source} is not known to be the file {args.json} scored ({why}): "
                              "evaluating it again", soft_wrap=True)
    return done


def _run_settings(args: argparse.Namespace, params: ParameterSet) -> dict[str, object]:
    """What a --resume must find unchanged: the parameter set's contents (not
    only its file name), the start, the injected errors and their seed, and
    where the per-recording files go (those done before are there)."""
    digest = hashlib.sha256(json.dumps(params.to_json(), sort_keys=True).encode()).hexdigest()[:16]
    return {"params_file": str(args.params) if args.params else None, "params_sha256": digest,
            "initial_soc": args.initial_soc, "initial_soc_sigma": args.initial_soc_sigma, "inject": args.inject,
            "seed": args.seed, "out_dir": str(args.out_dir), "plots": not args.no_plot}


def _plausibility_cell(summary: object) -> str:
    """The plausibility column from a summary's "plausibility" entry."""
    if not isinstance(summary, dict):
        return "-"
    parts = [describe_flag(f) for f in summary.get("flags", [])]
    parts = parts or ["no flag"]
    sig = summary.get("unseen_current_sigma_end_A")
    if sig is not None:
        parts.append(f"unseen {summary['unseen_current_end_A']:+.3f}±{sig:.3f} A at end")
    return "\n".join(parts)


def write_json(path: Path, params: ParameterSet, args: argparse.Namespace, summaries: list[dict[str, object]],
               failures: list[Failed]) -> None:
    """The scored recordings and, under "failed", every input that gave no result, with the error
    (both in the order of the inputs)."""
    doc = ({"params": params.name} | _run_settings(args, params) | {"recordings": summaries}
           | {"failed": [{"input": f.source, "error": f.cause} for f in failures]})
    jsonout.write_json(path, doc)


def cmd_bench(args: argparse.Namespace) -> int:
    from bmsfil.bench import run_bench  # filterpy takes half a second to import: only here

    params = _params_for(args.params, [str(args.input)]) if args.input else params_arg(args.params)
    rec = _benchable(load_any(args.input), params) if args.input else bundled_recording()
    if args.cells > 0:
        try:
            rec.reference_soc()  # the synthetic pack's cells are drawn around it
        except RecordingError as exc:
            raise RecordingError(f"{exc}; --cells {args.cells} builds its synthetic pack from the reference SOC: "
                                 "give a recording with one, or --cells 0 for the single-cell benchmark") from None
    with console.status("benchmarking (C batch, C per-sample, float64 reference, filterpy)..."):
        result = run_bench(params, rec, python_samples=args.python_samples, min_time_s=args.min_time)
    d = result.as_dict()
    table = Table(title=f"SOC EKF cell-steps per second on {rec.meta.name}, one core")
    table.add_column("implementation")
    table.add_column("steps/s", justify="right")
    table.add_column("× filterpy", justify="right")
    for key in ("c_batch_steps_per_s", "c_step_steps_per_s", "reference_steps_per_s", "filterpy_steps_per_s"):
        table.add_row(key.removesuffix("_steps_per_s"), f"{d[key]:,.0f}", f"{d[key] / result.filterpy_steps_per_s:,.1f}")
    console.print(table)
    if args.cells > 0:
        from bmsfil.bench import run_pack_bench

        with console.status(f"benchmarking the multi-cell call ({args.cells:,} cells at 1 Hz)..."):
            pack = run_pack_bench(params, rec, n_cells=args.cells, min_time_s=args.min_time).as_dict()
        table = Table(title=f"multi-cell call, {args.cells:,} cells at 1 Hz ({pack['pack_samples']} samples), one core")
        table.add_column("implementation")
        table.add_column("cell-steps/s", justify="right")
        table.add_column("× single-cell batch", justify="right")
        table.add_column(f"≥ {pack['pack_target_steps_per_s'] / 1e6:.0f} M", justify="center")
        single = pack["pack_single_cell_batch_steps_per_s"]
        for name, rate in ((f"pack ({pack['pack_code_path']})", pack["pack_steps_per_s"]),
                           ("pack (portable)", pack["pack_portable_steps_per_s"]), ("single-cell batch", single)):
            meets = "yes" if rate >= pack["pack_target_steps_per_s"] else "no"
            table.add_row(name, f"{rate:,.0f}", f"{rate / single:.2f}", meets)
        console.print(table)
        console.print(f"≥ {pack['pack_target_steps_per_s'] / 1e6:.0f} M: whether the call reaches the pack target of "
                      f"{pack['pack_target_steps_per_s']:,.0f} cell-steps/s (docs/fleet.md)")
        d |= pack
    if args.json:
        jsonout.write_json(args.json, {"input": str(args.input) if args.input else "bundled: " + rec.meta.name,
                                       "params": params.name, **d})
    return 0


def _benchable(rec: Recording, params: ParameterSet) -> Recording:
    """The recording as the benchmark times it: from its first sample the filter can start on
    (a plausible voltage and a finite temperature; eval starts there too), every value after it
    finite (filterpy's filter takes no missing value, and all four implementations run the same
    samples), at least two samples."""
    from bmsfil.core import first_start_sample

    first = first_start_sample(params, rec)
    if first is None:
        raise RecordingError(f"{rec.meta.name}: no sample to start the filter from (a plausible voltage and a "
                             "finite temperature)")
    if first > 0:
        err_console.print(f"bmsfil bench: note: {rec.meta.name}: timed from sample {first}, the first the "
                          "filter can start from", soft_wrap=True)
        rec = rec.slice(first, len(rec))
    for column, values in (("current_A", rec.current_A), ("voltage_V", rec.voltage_V), ("temp_C", rec.temp_C)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise RecordingError(f"{rec.meta.name}: {column} is missing (NaN) at {bad.size} sample(s), the first "
                                 f"{int(bad[0]) + first}: the benchmark runs every implementation on the same samples, "
                                 "and filterpy's takes no missing value; bench a recording without gaps (eval scores "
                                 "one with them)")
    if len(rec) < 2:
        raise RecordingError(f"{rec.meta.name}: {len(rec)} sample to time: a rate needs at least 2")
    return rec


#: What `bmsfil export` writes when --format is not given, by the output's suffix.
EXPORT_SUFFIXES = {".c": "c", ".json": "micropython", ".py": "pybamm"}


def cmd_export(args: argparse.Namespace) -> int:
    params = params_arg(args.params)
    fmt = args.format or EXPORT_SUFFIXES.get(args.output.suffix)
    named = EXPORT_SUFFIXES.get(args.output.suffix)
    if args.format and named and named != args.format:
        raise ParamsError(f"-o {args.output}: its name says {named} ({args.output.suffix}), --format says "
                          f"{args.format}: name the file for what it holds, or drop --format")
    if fmt is None:
        raise ParamsError(f"-o {args.output}: say which target with --format c|micropython|pybamm (from the name: "
                          + ", ".join(f"{suffix} {f}" for suffix, f in EXPORT_SUFFIXES.items()) + ")")
    try:
        if fmt == "c":
            text = params_to_c(params, source=args.params.name)
            done = ("as C (fw_params_cell, fw_params_tuning, fw_params_name; firmware/baremetal/include/fw/params.h); "
                    f"build with make -C firmware/baremetal BOARD=... PARAMS_C={shlex.quote(str(args.output.resolve()))}")
        elif fmt == "micropython":
            text = params_to_micropython(params)
            notes = "of the notes only ocv_loaded" if params.ocv_loaded else "no notes"
            done = (f"compact for the MicroPython port ({len(text.encode())} bytes, float32 values, {notes}); "
                    "load with bmsfil_ekf.load_params")
        else:
            text = params_to_pybamm(params, source=args.params.name, module=args.output.stem)
            done = (f"as PyBaMM parameter values ({args.output.stem}.model(), {args.output.stem}.parameter_values(); "
                    "docs/fitting.md says what PyBaMM's ECM approximates)")
    except ValueError as exc:  # a value the target cannot hold, or an output name it cannot import
        raise ParamsError(f"{args.params}: {exc}") from None
    tmp = args.output.with_name(args.output.name + ".part")
    tmp.write_text(text)
    tmp.replace(args.output)
    console.print(f"wrote {args.output}: {params.name} {done}")
    return 0


def _load_role(paths: list[Path] | None, args: argparse.Namespace) -> list[Recording]:
    """Recordings given for one role of `bmsfil fit` / `tune` / `report`, read with the command's import
    options; --format, --map and --current-sign are for the tester's files among them: a bmsfil
    recording (.npz: already mapped and charge-positive) takes only --meta, so the two mix."""
    meta = parse_pairs(args.meta, "--meta", sep="\0") or None
    options = dict(fmt=args.format, column_map=parse_pairs(args.map, "--map") or None, current_sign=args.current_sign)
    return [
        import_file(p, meta=meta, **({} if is_npz(Path(p)) else options))  # type: ignore[arg-type]
        for p in paths or []
    ]


def cmd_health(args: argparse.Namespace) -> int:
    from bmsfil.health import CapacityTuning

    try:
        sources = [str(p) for p in expand_inputs(args.inputs)]
    except FleetError as exc:
        raise RecordingError(str(exc)) from None
    params = _params_for(args.params, sources)
    capacity = CapacityTuning.for_params(params)
    if args.rated_capacity is not None:
        capacity = replace(capacity, rated_Ah=args.rated_capacity)
    if not args.no_plot:
        _make_out_dir(args.out_dir)
    table = Table(title=f"state of health: {params.name}")
    for col in ("recording", "discharges", "end ≤1 %", "20 % ≤3 %", "in ±3σ", "end max err %",
                "capacity Ah (SOH)", "R0 mΩ", "R0 vs Re r"):
        table.add_column(col, justify="left" if col == "recording" else "right")
    results: list[dict[str, object]] = []
    failed: list[dict[str, str]] = []
    claimed: dict[str, str] = {}
    try:
        for source in sources:
            try:
                row, result = _health_of(source, params, capacity, args, claimed)
            except (RecordingError, OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
                # A file that does not read (a truncated .npz): named, the others go on, as in eval.
                cause = str(exc) if isinstance(exc, RecordingError) else f"{source}: {type(exc).__name__}: {exc}"
                err_console.print(f"bmsfil health: error: {cause}", soft_wrap=True)
                failed.append({"input": source, "error": cause})
            else:
                table.add_row(*row)
                results.append(result)
            if args.json:
                _write_health_json(args, params, capacity, results, failed)
    finally:
        if table.row_count:
            console.print(table)
            if not args.no_plot:
                console.print(f"plots in {args.out_dir}/")
    if args.json:
        console.print(f"wrote {args.json}")
    if failed:
        err_console.print(f"bmsfil health: {len(failed)} of {len(sources)} recordings failed; {len(results)} scored")
        return 2
    return 0


def _health_of(source: str, params: ParameterSet, capacity: CapacityTuning, args: argparse.Namespace,
               claimed: dict[str, str]) -> tuple[list[str], dict[str, object]]:
    """One life through the capacity and R0 estimators, scored: its table row and JSON entry
    (warnings printed as they come)."""
    from bmsfil.health import HealthEstimator
    from bmsfil.health_eval import check_r0, file_sweeps, score_discharges, summarise, write_life_plot

    rec = load_as_is(source, "health")
    warn = lambda text: err_console.print(f"bmsfil health: warning: {text}", soft_wrap=True)  # noqa: E731
    for found in parameter_warnings(rec, params):
        warn(found)
    trace = HealthEstimator(params, capacity=capacity).run(rec)
    scores = score_discharges(rec, trace, capacity.gap_s, capacity.rated_Ah)
    summary = summarise(scores, skip=args.skip)
    partial = [sc.cycle for sc in scores[summary.scored_from:] if not sc.capacity_test]
    unmeasured = [sc.cycle for sc in scores[summary.scored_from:] if sc.capacity_test and not sc.measured]
    if partial:
        warn(f"{rec.meta.name}: discharge(s) {_numbers(partial)}: not from a full cell to the cut-off as the set "
             f"reads them (no full anchor since the discharge before, or an end above its empty threshold "
             f"{capacity.empty_V:.2f} V without an empty anchor), so the charge delivered is not the capacity: "
             "not scored")
    if unmeasured:
        warn(f"{rec.meta.name}: discharge(s) {_numbers(unmeasured)}: the current is missing for more "
             "than 1 % of the discharge, so its capacity is not measured: not scored")
    if not scores:
        warn(f"{rec.meta.name}: no discharge to score in it (a stretch that delivered charge, between gaps "
             f"longer than {capacity.gap_s:g} s or recorded charges)")
    listed, selection = file_sweeps(rec)
    sweeps = selection.kept if selection else []
    r0 = check_r0(rec, trace, sweeps) if sweeps else None
    if selection and selection.dropped:
        between = ", ".join(f"{a} and {b}" for a, b in selection.unrecorded)
        err_console.print(f"bmsfil health: note: {rec.meta.name}: {selection.dropped} of {len(listed)} impedance "
                          f"sweeps left out of R0 vs Re: they fall between discharges {between}, with "
                          "discharges between those that the file does not hold", soft_wrap=True)
    pairs = int(trace.where("capacity_updated").size)
    learned = pairs > 0
    if not learned:
        warn(f"{rec.meta.name}: the capacity estimator found no pair of SOC anchors (a long rest, a full charge or "
             "the cut-off, as this set's cell model reads them): nothing learned; a recording without two of them "
             "teaches none (a drive cycle alone), one with them under another cell's model neither (--params)")
    base = output_stem(rec.meta.name)
    stem = claim_stem(base, source, claimed)
    if stem != base:
        warn(f"{source}: its recording is named {rec.meta.name}, as {claimed[base]}'s is: its plot is "
             f"{args.out_dir}/{stem}_health.png")
    name = rec.meta.name if stem == base else f"{rec.meta.name} ({source})"
    result: dict[str, object] = {
        "source": source,
        "name": rec.meta.name,
        "final": {"capacity_Ah": float(trace.capacity_Ah[-1]), "capacity_sigma_Ah": float(trace.capacity_sigma_Ah[-1]),
                  "soh": float(trace.soh[-1]), "capacity_pairs": pairs, "capacity_learned": learned,
                  "r0_ohm": float(trace.r0_ohm[-1]), "r0_sigma_ohm": float(trace.r0_sigma_ohm[-1])},
        "summary": summary.as_dict(),
        "r0_vs_impedance": r0.as_dict() if r0 else None,
        "impedance_sweeps": selection.as_dict() if selection else None,
        "discharges": [sc.as_dict() for sc in scores],
    }
    if not args.no_plot:
        plot = args.out_dir / f"{stem}_health.png"
        write_life_plot(rec.meta.name, scores, rec, trace, sweeps, plot)
        result["plot"] = str(plot)
    row = [name, str(summary.discharges), f"{summary.end_within_1pct}/{summary.scored}",
           f"{summary.early_within_3pct}/{summary.scored}", f"{summary.within_3_sigma}/{summary.scored}",
           _fmt_pct(summary.end_max_abs_error),
           (f"{trace.capacity_Ah[-1]:.3f} ± {trace.capacity_sigma_Ah[-1]:.3f} ({trace.soh[-1] * 100:.1f} %)"
            if learned else "not learned"),
           f"{trace.r0_ohm[-1] * 1e3:.1f}", f"{r0.pearson_r:.2f}" if r0 else "-"]
    return row, result


def _numbers(cycles: list[int]) -> str:
    """Discharge numbers for a warning: the first ten, and how many more."""
    return ", ".join(map(str, cycles[:10])) + (f" and {len(cycles) - 10} more" if len(cycles) > 10 else "")


def _write_health_json(args: argparse.Namespace, params: ParameterSet, capacity: CapacityTuning,
                       results: list[dict[str, object]], failed: list[dict[str, str]]) -> None:
    """`health --json`, rewritten after each recording: what was done is kept if a later one fails or
    the run is interrupted."""
    jsonout.write_json(args.json, {
        "command": args.command_line, "params": params.name, "skip": args.skip,
        "capacity_tuning": {f.name: getattr(capacity, f.name) for f in fields(capacity)},
        "recordings": results, "failed": failed,
    })


def _make_out_dir(out_dir: Path) -> None:
    """Make --out-dir before the work, or refuse saying why it cannot be."""
    if (problem := output_dir_problem("--out-dir", out_dir)) is not None:
        raise RecordingError(problem)


def cmd_fit(args: argparse.Namespace) -> int:
    roles = {"ocv": args.ocv, "pulse": args.pulse, "capacity": args.capacity, "dynamic": args.dynamic}
    with console.status("reading the recordings..."):
        inputs = FitInputs(**{role: _load_role(paths, args) for role, paths in roles.items()})
        thermal_recs = _load_role(args.thermal, args)
    with console.status("fitting...") as status:
        params, report = fit(inputs, args.name, args.nominal_capacity, progress=lambda msg: status.update(msg + "..."))
    notes = provenance({role: paths or [] for role, paths in roles.items()} | {"thermal": args.thermal or []},
                       args.command_line, {role: getattr(inputs, role) for role in roles} | {"thermal": thermal_recs})
    notes["fit_rms_residual_V"] = f"{report.residual_V:.4f}"
    # One per line: the messages have semicolons of their own.
    notes["assumptions"] = "\n".join(report.assumptions)
    notes["not_identified"] = "\n".join(report.not_identified)
    if report.warnings:
        notes["warnings"] = "\n".join(report.warnings)
    if report.loaded_ocv_C:
        notes[OCV_LOADED_NOTE] = (
            f"{', '.join(f'{t:g}' for t in report.loaded_ocv_C)} °C: the OCV is a discharge leg alone (the loaded "
            "voltage, with the resistive drop and the discharge hysteresis in it), so a rested cell's voltage does "
            "not read as its SOC: the capacity estimator takes no anchor from a rest with this set (a charge and a "
            "discharge leg of a low-rate test, --ocv, would give a rested OCV)")
    warnings = list(report.warnings)
    if thermal_recs:
        from bmsfil.thermal_fit import fit_thermal

        with console.status("fitting the thermal model..."):
            thermal, thermal_report = fit_thermal(thermal_recs, params, args.core_heat_capacity)
        params = replace(params, thermal=thermal)
        notes.update(thermal_report.notes())  # its warnings under thermal_warnings
        warnings += thermal_report.warnings
    params = replace(params, notes=notes)
    _save_params(params, args.output)
    table = Table(title=f"{params.name}: cell model fitted")
    for col in ("T/°C", "capacity Ah", "OCV from", "R0 mΩ (SOC 0.5)", "τ1 s", "τ2 s"):
        table.add_column(col, justify="right" if col != "OCV from" else "left")
    c = params.cell
    mid = c.r0_ohm.shape[1] // 2
    for k, t in enumerate(c.temp_C):
        table.add_row(f"{t:g}", f"{c.capacity_Ah[k]:.4f}", report.ocv_from.get(float(t), "(from another temperature)"),
                      f"{c.r0_ohm[k, mid] * 1e3:.1f}", f"{c.tau1_s[k, 0]:g}", f"{c.tau2_s[k, 0]:g}")
    console.print(table)
    console.print(f"voltage fit residual {report.residual_V * 1e3:.1f} mV rms")
    if params.thermal is not None:
        for key in ("thermal_fitted", "thermal_fixed", "thermal_not_identified"):
            console.print(f"{key.replace('_', ' ')}: {notes[key]}")
    for title, lines in (("warnings", warnings), ("assumed", report.assumptions),
                         ("not identified", report.not_identified)):
        if lines:
            console.print(f"{title}:")
            for line in lines:
                console.print(f"  - {line}")
    console.print(f"wrote {args.output}; next: bmsfil tune --params {args.output} --train REC ... -o PARAMS")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    params = params_arg(args.params)
    with console.status("reading the recordings..."):
        train = _load_role(args.train, args)
    for rec in train:
        if (why := wrong_sign(rec)) is not None:
            raise RecordingError(why)
        checked_reference(rec)  # a training recording needs a reference in [0, 1]; the error says what is wrong
    for rec in train:  # as eval warns: a tuning on another cell's recordings fits the filter to the wrong model
        for warning in filter(None, [*parameter_warnings(rec, params), gap_warning(rec, params)]):
            err_console.print(f"bmsfil tune: warning: {warning}", soft_wrap=True)
    before = params.filter
    cells, models = _tuning_models(params, args, train)
    targets = Targets()
    on_dask = args.workers is not None or args.scheduler is not None
    try:
        with cost_pool(train, targets, args.workers, args.scheduler) if on_dask else nullcontext() as pool, \
                Progress(*Progress.get_default_columns(), TextColumn("cost {task.fields[cost]:.4f}"),
                         console=console) as bar:
            task = bar.add_task("tuning the filter", total=args.iterations, cost=float("nan"))
            tuned, cost = tune_filter(params, train, iterations=args.iterations, seed=args.seed, targets=targets,
                                      progress=lambda i, c: bar.update(task, completed=i + 1, cost=c), cells=cells,
                                      pool=pool, checks=False)  # checked and warned of above
    except FleetError as exc:
        err_console.print(f"bmsfil tune: error: {exc}")
        return 2
    notes = dict(params.notes)
    notes["tuning"] = (f"bmsfil tune, {args.iterations} iterations, seed {args.seed}, cost {cost:.4f}, {models}, on "
                       + "; ".join(f"{p} sha256:{file_sha256(p)[:16]}" for p in args.train))
    notes["tune_command"] = args.command_line
    tuned = replace(tuned, notes=notes, name=args.name or params.name)
    _save_params(tuned, args.output)
    table = Table(title=f"{tuned.name}: filter settings")
    for col in ("setting", "before", "after"):
        table.add_column(col, justify="left" if col == "setting" else "right")
    for f in fields(before):
        old, new = getattr(before, f.name), getattr(tuned.filter, f.name)
        if old != new:
            table.add_row(f.name, f"{old:.3g}", f"{new:.3g}")
    console.print(table)
    console.print(f"tuning cost {cost:.4f} (lower is better; 0 meets every target with margin)")
    for name, value, bound, side in at_search_bounds(tuned.filter):
        err_console.print(f"bmsfil tune: warning: {name} ended at {value:.3g}, at the {side} bound {bound:g} of its "
                          f"search ({SEARCH_SPACE[name][0]:g} to {SEARCH_SPACE[name][1]:g}, log-scaled): its best "
                          "value may lie beyond what the search reaches (bmsfil.tuning.SEARCH_SPACE)", soft_wrap=True)
    console.print(f"wrote {args.output}; score it on recordings it has not seen: bmsfil eval --params {args.output} REC ...")
    return 0


def _tuning_models(params: ParameterSet, args: argparse.Namespace,
                   train: list[Recording]) -> tuple[list[CellParams] | None, str]:
    """The cell model each training recording is tuned with, and what that was
    (for the notes): held out (bmsfil.held_out) where the fit used the
    recording, unless --in-sample."""
    if not any(d for paths in fit_digests(params).values() for d in paths.values()):
        console.print("the set's notes do not list the files it was fitted on with their sha256 (it was not made "
                      "by bmsfil fit): tuned on its model as it is; if the training recordings are among those "
                      "files, the filter will trust the model more than new data bears")
        return None, "fit inputs unknown (no sha256 in the notes)"
    in_fit = fit_inputs_among(params, args.train, train)
    used = sum(d is not None for d in in_fit)
    if not used:
        return None, "none of the training recordings was a fit input"
    if args.in_sample:
        return None, f"{used} of the training recordings fit inputs, tuned on the model as fitted (--in-sample)"
    try:
        recipe = replace(_fit_recipe(params), beside=_params_folder(args.params))
        with console.status("holding the training recordings out of the fit...") as status:
            cells = held_out_cells(params, recipe, args.train, in_fit, progress=lambda msg: status.update(msg + "..."))
    except RecipeError as exc:
        raise FitError(f"{used} of the training recordings were inputs of the fit, and the fit cannot be repeated "
                       f"without them: {exc}; give --in-sample to tune on the model as fitted") from None
    console.print(f"{used} of the {len(args.train)} training recordings were inputs of the fit: each is tuned on "
                  "with the model refitted without it, so that the filter learns the model's error on data it has "
                  "not seen (--in-sample: on the model as fitted)")
    return cells, f"{used} of the training recordings held out of the fit"


def _fit_recipe(params: ParameterSet) -> FitRecipe:
    """The `bmsfil fit` command in the set's notes, read as `bmsfil fit` read it."""
    command = params.notes.get("command", "")
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    if words[:2] != ["bmsfil", "fit"]:
        raise RecipeError(f"the set's notes hold no `bmsfil fit` command (command: {command!r})")
    try:
        with redirect_stderr(io.StringIO()) as errors:
            fa = build_parser().parse_args(words[1:])
    except SystemExit:
        raise RecipeError(f"the fit command in the notes does not parse: {errors.getvalue().strip()}") from None
    # The inputs as the notes list them (each with its sha256); the command gives the options.
    return FitRecipe(inputs={role: [Path(p) for p in paths] for role, paths in fit_digests(params).items()},
                     nominal_capacity_Ah=fa.nominal_capacity, name=fa.name,
                     load=lambda paths: _load_role(paths, fa))


def _params_folder(given: str | Path | None) -> Path | None:
    """The folder of a --params that is a file (not a bundled set's name), where its fit's inputs are looked for too."""
    return Path(given).resolve().parent if given is not None and Path(given).is_file() else None


def _fit_input_loader(params: ParameterSet, args: argparse.Namespace) -> Callable[[Path], Recording]:
    """How to read the fit's inputs named in the notes: with the import
    options of the `bmsfil fit` command there (a file the fit read with
    --current-sign or --map is drawn as the fit saw it), else with this
    command's."""
    try:
        recipe_load = _fit_recipe(params).load
    except RecipeError:
        return lambda path: _load_role([path], args)[0]
    if getattr(args, "map", None) or getattr(args, "current_sign", None) or getattr(args, "meta", None):
        err_console.print(f"bmsfil {args.command}: the fit's own inputs (from the set's notes) are read with the "
                          "import options of the fit's command; --map, --current-sign and --meta here apply to the "
                          "files given on this command line", soft_wrap=True)
    return lambda path: recipe_load([path])[0]


def cmd_report(args: argparse.Namespace) -> int:
    from bmsfil.report import ReportInputs, build_report, inputs_from_notes, with_fit_inputs

    params = params_arg(args.params)
    load = _fit_input_loader(params, args)
    with console.status("reading the recordings..."):
        if args.no_inputs_from_notes:
            found, notices = FitInputs(), []
        else:
            found, notices = inputs_from_notes(params, load, _params_folder(args.params))
        given = FitInputs(**{role: _load_role(getattr(args, role), args) for role in ROLES})
        try:
            evaluated = expand_inputs(args.eval) if args.eval else []  # folders and patterns, as eval takes them
        except FleetError as exc:
            raise RecordingError(f"--eval: {exc}") from None
        inputs = ReportInputs(with_fit_inputs(found, given), _load_role(evaluated, args), notices)
    with console.status("drawing...") as status:
        page = build_report(params, inputs, progress=lambda msg: status.update(msg + "..."))
    tmp = args.output.with_name(args.output.name + ".part")
    tmp.write_text(page)
    tmp.replace(args.output)
    for notice in notices:
        err_console.print(f"bmsfil report: {notice}", soft_wrap=True)
    console.print(f"wrote {args.output} ({len(page) / 1e6:.1f} MB, figures inside)")
    return 0


def _save_params(params: ParameterSet, path: Path) -> None:
    tmp = path.with_name(path.name + ".part")
    params.save(tmp)
    ParameterSet.load(tmp)  # what is written must load
    tmp.replace(path)


def _import_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="format of the inputs (default: recognised)")
    p.add_argument("--map", action="append", metavar="time=COL,current=COL,...",
                   help="column map for generic CSV inputs: time, current, voltage, temperature, ah, state (a cycler's "
                        "step-type column: the sign of a current logged as a magnitude)")
    p.add_argument("--current-sign", choices=CURRENT_SIGNS, default=None,
                   help="sign convention of the inputs' current (default: the format's own, or charge-positive)")
    p.add_argument("--meta", action="append", metavar="key=value", help="metadata to set on every input (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bmsfil", description="Firmware-in-the-loop tools for battery-management estimators.")
    ap.add_argument("--version", action="version", version=f"bmsfil {bmsfil_version()}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="convert a tester's file into a bmsfil recording (.npz)")
    p.add_argument("file", type=Path)
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS)
    p.add_argument("--map", action="append", metavar="time=COL,current=COL,...",
                   help="column map for generic CSV: time, current, voltage, temperature, ah, state (a cycler's "
                        "step-type column: the sign of a current logged as a magnitude)")
    p.add_argument("--current-sign", choices=CURRENT_SIGNS, default=None,
                   help="sign convention of the file's current (default: the format's own, or charge-positive)")
    p.add_argument("--meta", action="append", metavar="key=value", help="metadata to set (repeatable)")
    p.add_argument("--cycle", type=int, metavar="N",
                   help="of a file holding many cycles (NASA PCoE), only cycle N (default: all, end to end)")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("eval", help="run the SOC EKF (C core) on recordings and score it against the reference")
    p.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                   help="recordings (.npz or any file `bmsfil import` reads), directories or quoted glob patterns; "
                   "none: the bundled LG HG2 US06 at 25 °C")
    p.add_argument("--params", type=Path, help="parameter set, a file or a bundled set's name (default: the bundled "
                   "set of the inputs' data set: nasa-pcoe-18650 for NASA PCoE files, else lg-hg2)")
    p.add_argument("--initial-soc", type=initial_soc_arg, default="ocv",
                   help="'ocv' (from the first plausible sample) or a SOC in [0, 1], a guess (the variance of an "
                   "unknown start, p0_soc) unless --initial-soc-sigma says how well it is known")
    p.add_argument("--initial-soc-sigma", type=positive_float, metavar="S",
                   help="1-sigma of a known --initial-soc, e.g. 0.01 (default: a guess, sqrt(p0_soc)); no less than "
                   "the filter's floor, sqrt(p_floor_soc) (0.01 in the bundled set)")
    p.add_argument("--inject", help="sensor errors, e.g. current_offset_A=0.1,voltage_noise_V=0.004,temp_offset_C=2; "
                   "faults: voltage_stuck_at_s=600,voltage_stuck_for_s=30, leak_A=0.05 (see bmsfil/inject.py)")
    p.add_argument("--seed", type=at_least(0), default=0, help="seed of the injected noise")
    p.add_argument("--out-dir", type=Path, default=Path("bmsfil-eval"))
    p.add_argument("--json", type=Path, help="write a summary as JSON")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    p.add_argument("--workers", type=int, metavar="N",
                   help="run on Dask with a local cluster of N worker processes (default: in this process)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on an existing Dask scheduler")
    p.add_argument("--resume", action="store_true",
                   help="skip the recordings already in --json (from an earlier run with the same settings)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="cell-steps per second: C batch, C per-sample, float64 reference, filterpy")
    p.add_argument("input", nargs="?", type=Path, help="recording to run on (default: the bundled one)")
    p.add_argument("--params", type=Path)
    p.add_argument("--python-samples", type=at_least(1), default=3000,
                   help="samples for the per-sample Python paths (at most the recording's)")
    p.add_argument("--min-time", type=non_negative_float, default=1.0,
                   help="seconds to repeat each measurement for (0: once)")
    p.add_argument("--cells", type=at_least(0), default=10_000, metavar="N",
                   help="cells of the synthetic pack for the multi-cell call (0: skip it; needs a recording "
                        "with a reference SOC)")
    p.add_argument("--json", type=Path)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("health", help="capacity and R0 over a cell's life (C core), scored against its capacity tests")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="recordings of many discharges (a NASA PCoE file is one cell's life)")
    p.add_argument("--params", help=f"a bundled set ({', '.join(BUNDLED_SETS)}) or a parameter file "
                   "(default: the bundled set for what the recordings were imported from: nasa-pcoe-18650 for "
                   "NASA PCoE files, else lg-hg2)")
    p.add_argument("--rated-capacity", type=capacity_ah, metavar="AH",
                   help="rated capacity (default: the set's nominal)")
    p.add_argument("--skip", type=at_least(0), default=LIFE_SKIP, metavar="N",
                   help=f"discharges not scored at the start (default {LIFE_SKIP})")
    p.add_argument("--out-dir", type=Path, default=Path("bmsfil-health"))
    p.add_argument("--json", type=Path, help="write per-discharge scores as JSON")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG plots")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("fit", help="a cell's parameter set from its characterisation tests (OCV, pulse, capacity, dynamic)")
    p.add_argument("--ocv", nargs="+", type=Path, metavar="REC", help="low-rate discharge/charge tests (OCV and capacity)")
    p.add_argument("--pulse", nargs="+", type=Path, metavar="REC", help="pulse (HPPC) tests (dynamics; OCV from rests)")
    p.add_argument("--capacity", nargs="+", type=Path, metavar="REC", help="capacity tests (where no OCV test gives one)")
    p.add_argument("--dynamic", nargs="+", type=Path, metavar="REC", help="other recordings with a known start (drive cycles)")
    p.add_argument("--nominal-capacity", type=capacity_ah, metavar="AH", help="rated capacity, Ah")
    p.add_argument("--thermal", nargs="+", type=Path, metavar="REC",
                   help="recordings with a surface temperature that heats: the thermal model (core temperature)")
    p.add_argument("--core-heat-capacity", type=float, default=40.0, metavar="J_PER_K",
                   help="core heat capacity held fixed by --thermal, J/K (default 40: an 18650's jelly roll)")
    p.add_argument("--name", default="fitted cell", help="name of the parameter set")
    _import_options(p)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("tune", help="choose the filter's noise settings from training recordings")
    p.add_argument("--params", type=Path, required=True, help="parameter set to start from (from bmsfil fit)")
    p.add_argument("--train", nargs="+", type=Path, required=True, metavar="REC",
                   help="recordings with a reference SOC (an Ah counter and reference_capacity_Ah)")
    p.add_argument("--iterations", type=at_least(1), default=200,
                   help="search steps, each running every training recording 3-4 times (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="new name for the parameter set")
    p.add_argument("--in-sample", action="store_true",
                   help="tune on the model as fitted even with training recordings the fit used (default: each "
                   "such recording with the model refitted without it)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="score the training recordings on a local Dask cluster of N processes (same result)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="score them on an existing Dask scheduler")
    _import_options(p)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="one self-contained HTML page of a parameter set: OCV, voltage fits, maps, evaluations")
    p.add_argument("params", type=Path, help="parameter set (.json)")
    for role in ROLES:
        p.add_argument(f"--{role}", nargs="+", type=Path, metavar="REC", help=f"{role} recordings of the fit (besides those in its notes)")
    p.add_argument("--no-inputs-from-notes", action="store_true", help="do not look for the fit's inputs listed in the notes")
    p.add_argument("--eval", nargs="+", type=Path, metavar="REC", help="recordings to score and plot (need a reference SOC)")
    _import_options(p)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="a parameter set as what a target loads (firmware C, MicroPython, PyBaMM)")
    p.add_argument("params", type=Path, help="parameter set (.json)")
    p.add_argument("--format", choices=("c", "micropython", "pybamm"), default=None,
                   help="default from -o's suffix (.c, .json, .py); c: const tables for firmware/baremetal (bit for bit the host's floats); "
                        "micropython: compact parameter file for firmware/micropython (float32, no notes but ocv_loaded); "
                        "pybamm: a Python module building pybamm.ParameterValues for PyBaMM's Thevenin model")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(func=cmd_export)
    # Other distributions (the HIL harness) add their commands here.
    for ep in entry_points(group="bmsfil.commands"):
        ep.load()(sub)
    return ap


#: Options that name a file a command writes: their directory is made before the work starts.
OUTPUT_OPTIONS = ("output", "json", "junit")


#: (command, input) a command may rewrite in place: tune's parameter set (the output is that set,
#: tuned, its notes kept: README's synopsis), import's recording (an .npz given new metadata).
IN_PLACE = {("tune", "parameter set"), ("import", "input")}


def _number_ranges(numbers: list[str]) -> str:
    """``1..6, 8..167`` for cycle numbers with 7 missing (numbers as the file writes them)."""
    runs: list[list[str]] = []
    for n in numbers:
        if runs and n.isdigit() and runs[-1][-1].isdigit() and int(n) == int(runs[-1][-1]) + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}..{run[-1]}" for run in runs)


def _make_output_dirs(args: argparse.Namespace) -> None:
    """Check each output file option before the work: not a directory, not one of the command's
    inputs (which writing it would destroy); and make its directory."""
    given = _input_files(args)
    for name in OUTPUT_OPTIONS:
        path = getattr(args, name, None)
        if not isinstance(path, Path):
            continue
        option = "-o" if name == "output" else f"--{name}"
        if problem := _name_too_long(path):  # before anything asks the file system about it
            raise RecordingError(f"{option} {path}: cannot be written: {problem}")
        if path.is_dir():
            raise RecordingError(f"{option} {path}: a directory; give the file to write")
        same = [which for which, other in given if path.exists() and path.samefile(other)
                and (args.command, which) not in IN_PLACE]
        if same:
            raise RecordingError(f"{option} {path}: that is this command's {same[0]}: writing it would destroy it; "
                                 "write to another file")
        if not path.parent.is_dir():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RecordingError(f"{option} {path}: cannot make its directory ({exc.strerror or exc})") from None
        if problem := _unwritable(path, straight=name == "json"):
            raise RecordingError(f"{option} {path}: cannot be written: {problem}")


def _unwritable(path: Path, straight: bool) -> str | None:
    """Why a file could not be written where it is named (checked before the work, which a
    failed write at the end would lose), or None. Outputs are written beside themselves as
    NAME.part, then renamed over the name: its folder must take new files, and what is there
    must be a file (a link is replaced). A JSON output (`straight`, bmsfil.jsonout) is written
    straight to what is not a regular file (/dev/stdout, a pipe), and beside where a link leads."""
    if path.exists() and not path.is_file():
        if straight:
            return None
        return ("not a regular file: it is written as a new file beside it and renamed over it, which would "
                "replace a pipe or a device; write to a file")
    folder = (path.resolve() if straight else path.absolute()).parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"its folder {folder} does not take new files (permissions, or a read-only file system)"
    return _name_too_long(path)


def _name_too_long(path: Path) -> str | None:
    """Why the name of a file to write (and of its NAME.part) is too long for its folder's file system, or None."""
    folder = next((f for f in path.parents if f.is_dir()), Path("."))
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    if len(os.fsencode(path.name + ".part")) > longest:
        return f"its name is longer than its folder's file system takes ({longest} bytes)"
    return None


def _input_files(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """The existing files among the values of a command's options that are not outputs, each
    with what it is ("parameter set", "input", "--eval")."""
    found = []
    for name, value in vars(args).items():
        if name in OUTPUT_OPTIONS or name in ("func", "command_line", "command"):
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, Path)) and str(item) and Path(item).is_file():
                what = {"params": "parameter set", "input": "input", "inputs": "input", "file": "input",
                        "log": "log"}.get(name)
                found.append((what or "--" + name.replace("_", "-"), Path(item)))
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["bmsfil", *(sys.argv[1:] if argv is None else argv)])
    try:
        _make_output_dirs(args)
        with warnings.catch_warnings():
            warnings.simplefilter("always", RecordingWarning)
            warnings.simplefilter("default", ParamsWarning)  # once: a command may load its set more than once
            warnings.showwarning = _show_warning(args.command, warnings.showwarning)
            return int(args.func(args))
    except (RecordingError, ParamsError, InjectSpecError, FitError) as exc:
        err_console.print(f"bmsfil {args.command}: error: {exc}", soft_wrap=True)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise
        # A file the work could not read or write after the checks (a disk that filled, a folder
        # whose permissions changed): named, not a traceback; an output's NAME.part (written, then
        # renamed) is named as the output and not left behind.
        name = str(exc.filename)
        outputs = [getattr(args, option) for option in OUTPUT_OPTIONS if isinstance(getattr(args, option, None), Path)]
        parts = {str(q.with_name(q.name + ".part")): str(o) for o in outputs for q in (o, o.resolve())}
        if name in parts:
            try:
                Path(name).unlink(missing_ok=True)
            except OSError:
                pass  # named below all the same
            name = parts[name]
        err_console.print(f"bmsfil {args.command}: error: {name}: {exc.strerror or exc}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        kept = ("; what was done is in its --json" + (", and --resume does the rest" if args.command == "eval" else "")
                if args.command in ("eval", "health") and getattr(args, "json", None) else "")
        err_console.print(f"bmsfil {args.command}: interrupted{kept}", soft_wrap=True)
        return 130


def _show_warning(command: str, other: Callable[..., None]) -> Callable[..., None]:
    """warnings.showwarning that prints a RecordingWarning or a ParamsWarning
    as ``bmsfil CMD: warning: ...``, others as before."""

    def show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        if issubclass(category, (RecordingWarning, ParamsWarning)):
            err_console.print(f"bmsfil {command}: warning: {message}", soft_wrap=True)
        else:
            other(message, category, *args, **kwargs)

    return show


if __name__ == "__main__":
    sys.exit(main())
