"""`bmsfil export --format pybamm`: the written module builds PyBaMM
parameter values whose Thevenin model reproduces bmsfil's cell model.

Checked in PyBaMM itself (skipped without it: `pip install -e '.[pybamm]'`):
its tables and the current-dependent resistance at chosen points, Plett's
hysteresis as an RC element against bmsfil's hysteresis states, and a
drive-cycle slice of the bundled LG HG2 US06 recording simulated in PyBaMM,
its terminal voltage compared with the recording and with bmsfil's model
run open loop."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.ecm_fit import hysteresis_states
from bmsfil.export_pybamm import params_to_pybamm
from bmsfil.params import ParameterSet, bundled_params
from bmsfil.report import model_voltage
from bmsfil.table_lookup import bilinear

PARAMS = bundled_params()


def _constants(source: str) -> dict[str, Any]:
    """The module's plain constants, read without running it (so without PyBaMM)."""
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Call) and getattr(value.func, "attr", "") == "array":
                value = value.args[0]
            try:
                out[node.targets[0].id] = ast.literal_eval(value)
            except ValueError:
                continue
    return out


def test_the_module_holds_the_parameter_sets_values_exactly() -> None:
    consts = _constants(params_to_pybamm(PARAMS))
    c = PARAMS.cell
    for name in ("temp_C", "ocv_V", "r0_ohm", "r1_ohm", "tau1_s", "r2_ohm", "tau2_s", "capacity_Ah",
                 "hyst_m0_V", "hyst_m_V", "hyst_gamma", "rn_ohm"):
        assert np.array_equal(np.array(consts[name.upper()]), getattr(c, name)), name
    assert consts["NAME"] == PARAMS.name and consts["RN_SAT_PER_A"] == c.rn_sat_per_A
    # the LG HG2 set has both hysteresis terms: two RC pairs and two hysteresis elements
    assert (consts["NUMBER_OF_RC_ELEMENTS"], consts["HYST_ELEMENT"], consts["HYST_SIGN_ELEMENT"]) == (4, 3, 4)


def test_a_cell_without_hysteresis_gets_the_two_rc_pairs_only() -> None:
    data = PARAMS.to_json()
    n = len(PARAMS.cell.temp_C)
    data["cell"].update(hyst_m0_V=[0.0] * n, hyst_m_V=[0.0] * n)  # type: ignore[union-attr]
    consts = _constants(params_to_pybamm(ParameterSet.from_json(data)))
    assert (consts["NUMBER_OF_RC_ELEMENTS"], consts["HYST_ELEMENT"], consts["HYST_SIGN_ELEMENT"]) == (2, None, None)


def test_cli_writes_a_module_named_after_its_file(tmp_path: Path) -> None:
    params = PARAMS.save(tmp_path / "cell.json")
    out = tmp_path / "hg2_pybamm.py"
    assert main(["export", str(params), "--format", "pybamm", "-o", str(out)]) == 0
    text = out.read_text()
    compile(text, str(out), "exec")
    assert "import hg2_pybamm" in text and "(from cell.json)" in text


def test_any_name_makes_a_module_that_compiles() -> None:
    odd = ParameterSet.from_json({**PARAMS.to_json(), "name": 'cell """ with \\ quotes\''})
    source = params_to_pybamm(odd, source='dir/"""x.json')
    compile(source, "<export>", "exec")
    assert _constants(source)["NAME"] == odd.name


def test_an_output_that_cannot_be_imported_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = PARAMS.save(tmp_path / "cell.json")
    out = tmp_path / "lg-hg2.py"
    assert main(["export", str(params), "--format", "pybamm", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cell.json" in err and "'lg-hg2' cannot be imported as a Python module" in err
    assert not out.exists()
    # A keyword, and the name of a module the export imports (pybamm.py imported itself).
    for stem, why in (("class", "cannot be imported as a Python module"), ("pybamm", "would import itself")):
        assert main(["export", str(params), "-o", str(tmp_path / f"{stem}.py")]) == 2
        assert why in capsys.readouterr().err and not (tmp_path / f"{stem}.py").exists()


# --- in PyBaMM ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pybamm() -> ModuleType:
    return pytest.importorskip("pybamm", reason="PyBaMM is not installed: pip install -e '.[pybamm]'")


@pytest.fixture(scope="module")
def cell(pybamm: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The exported module for the bundled LG HG2 set, imported."""
    path = tmp_path_factory.mktemp("pybamm") / "lg_hg2_pybamm.py"
    path.write_text(params_to_pybamm(PARAMS, module=path.stem))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


def test_tables_and_the_current_dependent_resistance_match_bmsfils(pybamm: ModuleType, cell: ModuleType) -> None:
    c = PARAMS.cell
    for temp_C in (-30.0, -15.0, 4.0, 25.0, 31.5, 55.0):  # inside, between and beyond the table's temperatures
        values = cell.parameter_values(initial_soc=0.5, ambient_temp_C=temp_C)
        for soc in (0.0, 0.137, 0.5, 0.93, 1.0):
            for current_A in (-12.0, -0.5, 0.0, 3.0):  # PyBaMM's sign: discharge positive
                args = {"Cell temperature [degC]": pybamm.Scalar(temp_C), "Current [A]": pybamm.Scalar(current_A),
                        "SoC": pybamm.Scalar(soc)}
                r0 = values.evaluate(pybamm.FunctionParameter("R0 [Ohm]", args))
                t = np.array([temp_C])
                z = np.array([soc])
                rn = np.interp(temp_C, c.temp_C, c.rn_ohm) / (1.0 + c.rn_sat_per_A * abs(current_A))
                assert r0 == pytest.approx(bilinear(c.r0_ohm, c.temp_C, z, t)[0] + rn, rel=1e-12, abs=1e-15)
                for k, (r, tau) in ((1, (c.r1_ohm, c.tau1_s)), (2, (c.r2_ohm, c.tau2_s))):
                    rk = values.evaluate(pybamm.FunctionParameter(f"R{k} [Ohm]", args))
                    ck = values.evaluate(pybamm.FunctionParameter(f"C{k} [F]", args))
                    assert rk * ck == pytest.approx(bilinear(tau, c.temp_C, z, t)[0], rel=1e-9)
                    assert rk == pytest.approx(max(bilinear(r, c.temp_C, z, t)[0], 1e-9), rel=1e-9)
            ocv = values.evaluate(pybamm.FunctionParameter("Open-circuit voltage [V]", {"SoC": pybamm.Scalar(soc)}))
            assert ocv == pytest.approx(bilinear(c.ocv_V, c.temp_C, np.array([soc]), np.array([temp_C]))[0], rel=1e-12)
        capacity = values.evaluate(pybamm.Parameter("Cell capacity [A.h]"))
        assert capacity == pytest.approx(np.interp(temp_C, c.temp_C, c.capacity_Ah), rel=1e-12)


def test_hysteresis_elements_follow_bmsfils_hysteresis_states(pybamm: ModuleType, cell: ModuleType) -> None:
    """Discharge, rest, charge, a short discharge at 10 °C (where the LG HG2 set has both
    hysteresis terms): PyBaMM's hysteresis elements against bmsfil's h and s."""
    c, temp_C = PARAMS.cell, 10.0
    i_charge = np.concatenate([np.full(3000, -2.0), np.zeros(600), np.full(2400, 1.5), np.full(200, -0.8)])
    t = np.arange(len(i_charge)) * 0.5
    sim = pybamm.Simulation(cell.model(), parameter_values=cell.parameter_values(0.7, temp_C),
                            experiment=pybamm.Experiment([pybamm.step.current(np.column_stack([t, -i_charge]))]))
    sol = sim.solve()
    # bmsfil's states driven by the current PyBaMM applied (linear between the samples), finely sampled
    t_fine = np.arange(0.0, t[-1], 0.01)
    i_fine = -sol["Current [A]"](t_fine)
    s, h = hysteresis_states(i_fine, np.full(len(t_fine), 0.01), float(np.interp(temp_C, c.temp_C, c.capacity_Ah)),
                             c.hyst_gamma[3])
    m, m0 = np.interp(temp_C, c.temp_C, c.hyst_m_V), np.interp(temp_C, c.temp_C, c.hyst_m0_V)
    dynamic = sol[f"Element-{cell.HYST_ELEMENT} overpotential [V]"](t_fine)
    assert np.max(np.abs(dynamic - m * h)) <= 1e-3 * m
    k_end_discharge, k_end_charge = int(1500 / 0.01), int(3000 / 0.01)
    assert dynamic[k_end_discharge] < -0.5 * m and dynamic[k_end_charge] > 0.5 * m
    # the instantaneous term is a latch in bmsfil, a 1 A*s element here: equal once 10 A*s have passed
    latch = sol[f"Element-{cell.HYST_SIGN_ELEMENT} overpotential [V]"](t_fine)
    settled = np.ones(len(t_fine), dtype=bool)
    for start_s, current_A in ((0.0, 2.0), (1800.0, 1.5), (3000.0, 0.8)):
        settled[(t_fine >= start_s - 0.5) & (t_fine < start_s + 10.0 / current_A)] = False
    assert np.max(np.abs(latch[settled] - m0 * s[settled])) <= 1e-3 * m0


@pytest.mark.parametrize(
    "span, limits",
    [
        pytest.param((3000, 9000), (0.003, 0.025), id="10 min at SOC 92-77 %"),
        pytest.param((300, 38000), (0.015, 0.018), id="whole cycle", marks=pytest.mark.slow),
    ],
)
def test_a_drive_cycle_in_pybamm_matches_the_recording_and_bmsfils_model(
    pybamm: ModuleType, cell: ModuleType, span: tuple[int, int], limits: tuple[float, float],
    record_property: Any,
) -> None:
    """US06 at 25 °C, the current as a drive-cycle experiment (negated: PyBaMM's current is
    positive on discharge), the recorded cell temperature as the ambient the cell follows."""
    to_model_V, to_recording_V = limits
    rec = bundled_recording().slice(*span)
    t = rec.time_s - rec.time_s[0]
    soc_ref = rec.reference_soc()
    values = cell.parameter_values(initial_soc=float(soc_ref[0]), ambient_temp_C=(t, rec.temp_C))
    experiment = pybamm.Experiment([pybamm.step.current(np.column_stack([t, -rec.current_A]))])
    sol = pybamm.Simulation(cell.model(), parameter_values=values, experiment=experiment).solve()
    assert sol.t[-1] == pytest.approx(t[-1])
    v_pybamm = sol["Voltage [V]"](t)

    c = PARAMS.cell
    soc_own = soc_ref[0] + np.cumsum(rec.current_A * rec.dt_s / (3600.0 * np.interp(rec.temp_C, c.temp_C, c.capacity_Ah)))
    numbers = {
        "pybamm_vs_recording_V": _rms(v_pybamm - rec.voltage_V),
        "pybamm_vs_model_reference_soc_V": _rms(v_pybamm - model_voltage(PARAMS, rec, soc_ref)),
        "pybamm_vs_model_own_soc_V": _rms(v_pybamm - model_voltage(PARAMS, rec, soc_own)),
        "model_vs_recording_V": _rms(model_voltage(PARAMS, rec, soc_ref) - rec.voltage_V),
        "soc_pybamm_vs_model_own": float(np.max(np.abs(sol["SoC"](t) - soc_own))),
    }
    for key, value in numbers.items():
        record_property(key, value)
    print(numbers)
    assert numbers["soc_pybamm_vs_model_own"] <= 2e-4
    assert numbers["pybamm_vs_model_own_soc_V"] <= to_model_V
    assert numbers["pybamm_vs_recording_V"] <= to_recording_V
