"""What `bmsfil fit` says when what it wrote is not trustworthy.

The NASA PCoE recipe (scripts/nasa_params.sh: B0005's first 2 A discharge
as --ocv, its second as --dynamic) gives a set whose R0, R1 and R2 are 0
over most of the SOC range, whose time constants sit at the ends of the
fit's search, and whose surface temperature cannot identify a thermal
model; the LG HG2 1C capacity test given as --ocv gives an "OCV" under
load. Each is a warning naming the file, temperature and parameter. The
NASA cycles are 200 samples each: every fit here takes a second or two.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bmsfil.cli import main
from bmsfil.fit import FitInputs, FitReport, fit
from bmsfil.importers import import_file
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording
from bmsfil.thermal_fit import fit_thermal
from shared_data import LG, NASA_B0005, needs_data, needs_nasa

CAP_1C_25 = LG / "1_raw" / "25degC" / "551_Cap_1C.csv"
HPPC_25 = LG / "2_formatted" / "25degC" / "549_HPPC_parsed.csv"


@pytest.fixture(scope="module")
def nasa_cycles() -> list[Recording]:
    """B0005's first two discharges, each from full, as scripts/nasa_params.sh imports them."""
    rec = import_file(NASA_B0005)
    starts = rec.cycle_starts()
    assert starts is not None
    bounds = [(0, starts[1]), (starts[1], starts[2])]
    return [replace(rec.slice(a, b), meta=replace(rec.meta, name=f"B0005_c00{k + 1}", reference_initial_soc=1.0))
            for k, (a, b) in enumerate(bounds)]


@pytest.fixture(scope="module")
def nasa_fit(nasa_cycles: list[Recording]) -> tuple[ParameterSet, FitReport]:
    return fit(FitInputs(ocv=[nasa_cycles[0]], dynamic=[nasa_cycles[1]]), "nasa", 2.0)


def _one(lines: list[str], *parts: str) -> str:
    found = [line for line in lines if all(p in line for p in parts)]
    assert len(found) == 1, f"expected one line with {parts} in {lines}"
    return found[0]


@needs_nasa
def test_resistances_at_zero_are_warned_with_what_they_do_to_the_state_of_power(nasa_fit):
    params, report = nasa_fit
    line = _one(report.warnings, "resistances at 24 °C are 0 Ω")
    assert "R0 at 10 of 11 SOC points" in line and "R1 at 11 of 11" in line
    c = params.cell
    assert c.i_max_A == 20.0 and f"{c.i_max_A:.3g} A x 3.54 V = 71 W" in line  # SOP: the current limit times the OCV
    assert "overpotential" in line and "--pulse" in line


@needs_nasa
def test_a_1c_discharge_given_as_ocv_is_warned(nasa_fit):
    _, report = nasa_fit
    line = _one(report.warnings, "B0005_c001 (24 °C), given as --ocv")
    assert "discharges at 2.01 A, 1.0C" in line and "resistive drop" in line and "--capacity" in line


@needs_data
def test_the_lg_1c_capacity_test_given_as_ocv_is_warned():
    """The red-team case: 128 mV rms residual, and the set's R1 and R2 at 0."""
    _, report = fit(FitInputs(ocv=[import_file(CAP_1C_25)], pulse=[import_file(HPPC_25)]), "1C as OCV")
    assert report.residual_V > 0.1
    line = _one(report.warnings, "551_Cap_1C_25degC (25 °C), given as --ocv")
    assert "3 A, 1.0C of its metadata's nominal_capacity_Ah (3 Ah)" in line
    assert "R2 at 11 of 11 SOC points" in _one(report.warnings, "resistances at 25 °C are 0 Ω")


@needs_nasa
def test_time_constants_at_the_ends_of_the_search_are_warned(nasa_fit):
    params, report = nasa_fit
    assert params.cell.tau1_s[0, 0] == 40.0 and params.cell.tau2_s[0, 0] == 4000.0
    _one(report.warnings, "tau1 is 40 s at 24 °C, the longest the fit tries (2 to 40 s)")
    _one(report.warnings, "tau2 is 4000 s at 24 °C, the longest the fit tries (60 to 4000 s)")


@needs_nasa
def test_the_current_limit_and_the_nominal_capacity_are_assumptions(nasa_fit):
    _, report = nasa_fit
    _one(report.assumptions, "nominal capacity 2 Ah from --nominal-capacity")
    _one(report.assumptions, "i_max_A 20 A: the larger of 10 C (20 A) and twice the largest current in the inputs "
                             "(2 x 2.02 A)")


@needs_nasa
def test_nominal_capacity_from_the_metadata_when_the_inputs_agree(nasa_cycles):
    """Without --nominal-capacity: the recordings' own nominal (2 Ah), not the
    measured capacity (1.85 Ah, which made it 1.9); when their metadata
    disagree, the measured one, and the assumption says why."""
    params, report = fit(FitInputs(ocv=[nasa_cycles[0]], dynamic=[nasa_cycles[1]]), "nasa")
    assert params.cell.nominal_capacity_Ah == 2.0
    _one(report.assumptions, "nominal capacity 2 Ah from the metadata (nominal_capacity_Ah) of 2 of the 2 inputs")
    assert not [w for w in report.warnings if "nominal capacities" in w]
    other = replace(nasa_cycles[1], meta=replace(nasa_cycles[1].meta, nominal_capacity_Ah=2.5))
    params, report = fit(FitInputs(ocv=[nasa_cycles[0]], dynamic=[other]), "nasa")
    assert params.cell.nominal_capacity_Ah == 1.9
    _one(report.assumptions, "nominal capacity 1.9 Ah: the largest measured capacity",
         "disagree on nominal_capacity_Ah (2 Ah in B0005_c001, 2.5 Ah in B0005_c002)", "--nominal-capacity")
    # An input whose metadata name another cell's capacity is a warning too, naming it.
    _one(report.warnings, "the inputs' metadata name 2 nominal capacities: 1 of them 2 Ah, against B0005_c002",
         ": 2.5 Ah", "Inputs from another cell are fitted as this one")


@needs_nasa
def test_a_thermal_model_the_data_cannot_identify_is_warned(nasa_fit, nasa_cycles):
    """A 2 A discharge without a rest after it: Cs and Rc at the bounds of
    the search, every parameter uncertain by far more than itself."""
    _, report = fit_thermal([nasa_cycles[1]], nasa_fit[0])
    assert [w.split(" ")[1] for w in report.warnings] == ["Cs", "Rc", "Ru"]
    rc = _one(report.warnings, "thermal Rc 0.02 K/W ended at the lower bound of its search (0.02 to 50 K/W")
    assert "not identifiable from B0005_c002" in rc and "a measured core temperature" in rc
    assert "% (1 sigma)" in _one(report.warnings, "thermal Cs") and report.rel_sigma["cs"] > 1.0
    assert report.notes()["thermal_warnings"].split("\n") == report.warnings


@needs_nasa
def test_fit_prints_the_warnings_and_keeps_them_in_the_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    cycles = []
    for k in (1, 2):
        cycles.append(str(tmp_path / f"B0005_c00{k}.npz"))
        assert main(["import", str(NASA_B0005), "--cycle", str(k), "-o", cycles[-1]]) == 0
    out = tmp_path / "nasa.json"
    assert main(["fit", "--ocv", cycles[0], "--dynamic", cycles[1], "--thermal", cycles[1], "--nominal-capacity", "2",
                 "--meta", "reference_initial_soc=1", "-o", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps its lines
    assert "resistances at 24 °C are 0 Ω" in printed and "thermal Rc 0.02 K/W" in printed
    notes = json.loads(out.read_text())["notes"]
    assert "resistances at 24 °C are 0 Ω" in notes["warnings"] and "given as --ocv" in notes["warnings"]
    assert "thermal Rc" in notes["thermal_warnings"] and "thermal" not in notes["warnings"]
    assert "i_max_A 20 A" in notes["assumptions"]
    # A discharge leg alone: the set says its OCV is loaded, so that no rest anchors capacity under it.
    assert notes["ocv_loaded"].startswith("24 °C: the OCV is a discharge leg alone")
    assert ParameterSet.load(out).ocv_loaded


def test_capacity_and_ambient_that_the_inputs_contradict_are_warned_of() -> None:
    """A red team's fits: minutes under a [s] header gave a 0.046 Ah cell
    drawing 18 A pulses (390 C), and a 0 °C drive cycle labelled 25 °C was
    filed in the 25 °C table, both in silence."""
    from bmsfil.fit import _ambient_warnings, _capacity_warnings
    from bmsfil.params import bundled_params
    from bmsfil.recording import RecordingMeta

    (cut,) = _capacity_warnings(0.0463, 18.0, None)
    assert "the fitted capacity is 0.0463 Ah, and the inputs draw up to 18 A, 389 C" in cut
    (off,) = _capacity_warnings(2.78, 10.0, 0.3)
    assert "2.78 Ah, 9.3 times the rated 0.3 Ah given with --nominal-capacity" in off
    assert _capacity_warnings(2.78, 18.0, 3.0) == []
    n = 3600
    t = np.arange(n, dtype=float)
    rec = Recording(t, np.full(n, -3.0), np.linspace(4.1, 3.3, n), np.full(n, 1.8),
                    RecordingMeta(name="us06_0C", ambient_temp_C=25.0))
    (label,) = _ambient_warnings([rec], bundled_params())
    assert "us06_0C: fitted under its stated ambient 25 °C, and its median temperature in discharge is 1.8 °C" in label
    assert _ambient_warnings([replace(rec, meta=RecordingMeta(name="ok", ambient_temp_C=0.0))], bundled_params()) == []
