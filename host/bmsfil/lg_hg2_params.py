"""Identify the bundled LG INR18650HG2 parameter set from the shared recordings.

    python -m bmsfil.lg_hg2_params DATA_DIR [-o host/bmsfil/data/lg_hg2.json]

DATA_DIR is the LG HG2 folder of the shared data (with 1_raw/, 2_formatted/,
3_processed_csv/). Steps:

1. OCV(SOC, T) from the C/20 discharge-and-charge test at each temperature
   (`ocv.ocv_from_low_rate`), capacity(T) from its discharge leg, the top of
   the curve anchored at the rested voltage of the fully charged cell seen
   at the start of the drive cycles at that temperature (`ocv.anchor_full`);
2. R0, two RC pairs, Rn and hysteresis from all the drive cycles and the
   pulse test, with SOC from the cycler's charge counter (`ecm_fit.fit_dynamic`);
3. the filter's noise settings from the drive cycles, each scored with the
   model fitted without its cycle type (leave-one-type-out), so that the
   filter is tuned for the model's error on data it has not seen
   (`tuning.tune_filter`, seeded, starting from the FilterTuning defaults;
   without the voltage-offset runs, `Targets.model_error_weight` 0: those
   held-out models carry their error already);
4. the thermal model (the set's ``thermal`` section: core temperature) from
   the surface temperature of the tests at 25 °C that heat the cell and are
   not drive cycles (the pulse test and the 1C capacity tests: the drive
   cycles stay held out), with the heat from the set just fitted
   (`thermal_fit.fit_thermal`, Cc fixed).

Which files are used is decided from their content (a low-rate discharge
and charge for OCV; a start from full charge for the dynamic fit), not from
their names.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.progress import Progress, TextColumn

from bmsfil.ecm_fit import fit_dynamic
from bmsfil.importers import import_file
from bmsfil.ocv import OcvCurve, anchor_full, ocv_from_low_rate, rested_full_voltage
from bmsfil.params import CellParams, FilterTuning, ParameterSet, PowerLimits
from bmsfil.recording import Recording
from bmsfil.thermal_fit import fit_thermal
from bmsfil.tuning import Targets, tune_filter

HYST_GAMMA = 50.0
#: kn of the current-dependent resistance Rn i / (1 + kn |i|): Rn halves at 1 A.
RN_SAT_PER_A = 1.0
#: The thermal model is fitted at this chamber temperature (docs/thermal.md: the 25 °C fit).
THERMAL_FIT_TEMP_C = 25.0
#: Longest median sample interval of a thermal training recording: the model's fast mode (Rc Cc) is
#: tens of seconds, and the tests logged once a minute alias the heating.
THERMAL_MAX_INTERVAL_S = 15.0
#: Smallest rise of the surface temperature of a thermal training recording (the logger reads 0.105 K steps).
THERMAL_MIN_RISE_K = 0.5


def is_low_rate(rec: Recording) -> bool:
    i = np.abs(rec.current_A[np.abs(rec.current_A) > 0.01])
    return bool(i.size) and float(np.median(i)) < 0.1 * (rec.meta.nominal_capacity_Ah or 3.0) and rec.time_s[-1] > 36000


def starts_full(rec: Recording) -> bool:
    return rec.meta.reference_initial_soc == 1.0 and rec.ah is not None and rec.meta.reference_capacity_Ah is not None


def heats_quickly_logged(rec: Recording) -> bool:
    """A surface temperature that rises enough, logged often enough, to fit the thermal model on."""
    ok = np.isfinite(rec.temp_C)
    if ok.sum() < 10:
        return False
    rise = float(np.max(rec.temp_C[ok]) - rec.temp_C[np.flatnonzero(ok)[0]])
    return rise >= THERMAL_MIN_RISE_K and float(np.median(np.diff(rec.time_s))) <= THERMAL_MAX_INTERVAL_S


def full_anchored(curve: OcvCurve, at_temp: list[Recording]) -> np.ndarray:
    """The curve with its top anchored at the rested voltage of the fully
    charged recordings at that temperature, when there are any."""
    rested = [v for v in map(rested_full_voltage, at_temp) if v is not None]
    return anchor_full(curve.ocv_V, curve.soc, float(np.median(rested))) if rested else curve.ocv_V


@dataclass(frozen=True)
class TrainingData:
    """The shared recordings sorted by what they can teach."""

    temps_C: np.ndarray
    ocv_V: np.ndarray            # (temps, 101), anchored at the rested full charge
    capacity_Ah: np.ndarray
    ocv_from: list[Recording]    # the low-rate tests, one per temperature
    drive: list[Recording]       # drive cycles from full charge
    pulse: list[Recording]       # pulse (HPPC) tests from full charge
    thermal: list[Recording]     # at THERMAL_FIT_TEMP_C, not drive cycles, heating and quickly logged


def load_training(data_dir: Path) -> TrainingData:
    files = sorted(p for p in data_dir.rglob("*") if p.is_file() and p.suffix in (".csv", ".gz"))
    recs = [import_file(p) for p in files]
    low_rate = {r.meta.ambient_temp_C: r for r in recs if is_low_rate(r)}
    temps = np.array(sorted(t for t in low_rate if t is not None))
    curves = [ocv_from_low_rate(low_rate[t]) for t in temps]
    full = [r for r in recs if starts_full(r) and not is_low_rate(r)]
    pulse = [r for r in full if r.meta.test == "HPPC"]
    drive = [r for r in full if r.meta.test != "HPPC"]
    ocv = np.array([full_anchored(c, [r for r in full if r.meta.ambient_temp_C == t]) for c, t in zip(curves, temps)])
    thermal = [r for r in recs if r.meta.ambient_temp_C == THERMAL_FIT_TEMP_C and not is_low_rate(r)
               and not any(r is d for d in drive) and heats_quickly_logged(r)]
    return TrainingData(temps, ocv, np.array([c.capacity_Ah for c in curves]), [low_rate[t] for t in temps], drive, pulse,
                        thermal)


def fit_cell(data: TrainingData, dynamic: list[Recording]) -> tuple[CellParams, float]:
    """The cell model from the OCV tests and the given dynamic recordings; and the fit's residual."""
    start = FilterTuning()
    fit = fit_dynamic(
        dynamic, data.temps_C, data.ocv_V, data.capacity_Ah, gamma=HYST_GAMMA,
        overpotential_weight=start.r_overpotential_rel2_s / start.r_voltage_V2_s, rn_sat_per_A=RN_SAT_PER_A,
    )
    cell = CellParams(
        temp_C=data.temps_C, ocv_V=data.ocv_V, r0_ohm=fit.r0_ohm, r1_ohm=fit.r1_ohm, tau1_s=fit.tau1_s,
        r2_ohm=fit.r2_ohm, tau2_s=fit.tau2_s, capacity_Ah=data.capacity_Ah, hyst_m0_V=fit.hyst_m0_V,
        hyst_m_V=fit.hyst_m_V, hyst_gamma=np.full(len(data.temps_C), HYST_GAMMA), eta_charge=1.0,
        v_min_V=2.5, v_max_V=4.2, i_max_A=30.0, nominal_capacity_Ah=3.0, rn_ohm=fit.rn_ohm,
        rn_sat_per_A=RN_SAT_PER_A,
    )
    return cell, fit.rms_residual_V


def held_out_cells(data: TrainingData, extra: list[Recording] | None = None) -> dict[str, CellParams]:
    """For each drive-cycle type, the model fitted on the other types and the pulse test (and `extra`)."""
    return {
        cycle: fit_cell(data, [r for r in data.drive if r.meta.test != cycle] + data.pulse + (extra or []))[0]
        for cycle in sorted({r.meta.test for r in data.drive})
    }


#: The operating limits of LG's product specification for the INR18650HG2:
#: charge to 4.20 V, discharge to 2.5 V, 20 A continuous discharge, 4 A
#: maximum charge. The state of power works within them (without them it
#: took the cell's plausible range, i_max_A 30 A both ways: a 120 W charge
#: for an 18650), its operating temperature (cell surface), -20 to 75 °C,
#: outside which neither direction is allowed, and its charge temperature
#: range, 0 to 50 °C (below 0 °C a charge plates lithium): outside it the
#: charge power is 0 W.
DATASHEET_LIMITS = PowerLimits(v_min_V=2.5, v_max_V=4.2, i_discharge_max_A=20.0, i_charge_max_A=4.0,
                               temp_min_C=-20.0, temp_max_C=75.0, temp_charge_min_C=0.0, temp_charge_max_C=50.0)
DATASHEET_NOTE = ("LG INR18650HG2 product specification: charge to 4.20 V at up to 4 A, discharge to 2.5 V at up to "
                  "20 A continuous; operating (cell surface) from -20 to 75 °C, charge from 0 to 50 °C")


def identify(data_dir: Path, tune_iterations: int = 300) -> ParameterSet:
    data = load_training(data_dir)
    dynamic = data.drive + data.pulse
    cell, residual = fit_cell(data, dynamic)
    notes = {
        "source": "Kollmeyer et al. (2020), LG 18650HG2 Li-ion Battery Data, Mendeley Data V3, doi:10.17632/cp3473x7xv.3",
        "command": "python -m bmsfil.lg_hg2_params DATA_DIR -o host/bmsfil/data/lg_hg2.json",
        "ocv_from": ", ".join(r.meta.name for r in data.ocv_from),
        "dynamic_from": ", ".join(r.meta.name for r in dynamic),
        "fit_rms_residual_V": f"{residual:.4f}",
        "power_from": DATASHEET_NOTE,
    }
    params = ParameterSet("LG INR18650HG2", cell, FilterTuning(), notes, power=DATASHEET_LIMITS)
    if tune_iterations:
        held_out = held_out_cells(data)
        with Progress(*Progress.get_default_columns(), TextColumn("cost {task.fields[cost]:.4f}")) as bar:
            task = bar.add_task("tuning the filter", total=tune_iterations, cost=float("nan"))
            params, cost = tune_filter(
                params, data.drive, iterations=tune_iterations,
                progress=lambda i, c: bar.update(task, completed=i + 1, cost=c),
                cells=[held_out[r.meta.test] for r in data.drive], targets=Targets(model_error_weight=0.0),
            )
        notes["tuning_cost"] = f"{cost:.4f}"
        notes["tuning"] = (
            f"tuning.tune_filter, {tune_iterations} iterations, seed 0, on the drive cycles, "
            "each with the model fitted without its cycle type"
        )
    return with_thermal(params, data)


def with_thermal(params: ParameterSet, data: TrainingData) -> ParameterSet:
    """The set with its thermal section fitted on `data.thermal`, the heat from the set's own model and filter."""
    thermal, report = fit_thermal(data.thermal, params)
    notes = dict(params.notes) | {"thermal_from": ", ".join(r.meta.name for r in data.thermal)} | report.notes()
    return replace(params, thermal=thermal, notes=notes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bmsfil.lg_hg2_params", description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=Path("host/bmsfil/data/lg_hg2.json"))
    ap.add_argument("--tune-iterations", type=int, default=300, help="filter tuning steps (0: keep the defaults)")
    ap.add_argument("--thermal-only", action="store_true",
                    help="refit only the thermal section (step 4) of the set already in OUTPUT, keeping its cell and "
                         "filter as they are")
    args = ap.parse_args(argv)
    if args.thermal_only:
        if not args.output.is_file():
            raise SystemExit(f"--thermal-only: no parameter set at {args.output} to add the thermal section to")
        params = with_thermal(ParameterSet.load(args.output), load_training(args.data_dir))
        params.save(args.output)
        print(f"wrote {args.output}: thermal section {params.notes['thermal_fitted']}")
        return 0
    params = identify(args.data_dir, args.tune_iterations)
    params.save(args.output)
    print(f"wrote {args.output}: fit residual {params.notes['fit_rms_residual_V']} V rms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
