"""`bmsfil report`: the HTML page of a fitted set, its figures and its inputs' check."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.fit import FitInputs, fit
from bmsfil.importers import import_file
from bmsfil.params import ParameterSet
from bmsfil.report import model_voltage, recording_soc
from shared_data import LG, needs_data

C20_25 = LG / "1_raw" / "25degC" / "549_C20DisCh.csv"
HPPC_25 = LG / "2_formatted" / "25degC" / "549_HPPC_parsed.csv"


def _images(page: str) -> list[str]:
    return re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,', page)


@needs_data
def test_report_of_a_fitted_set(tmp_path: Path):
    # Copies, so that the test can change one after the fit.
    c20, hppc = tmp_path / C20_25.name, tmp_path / HPPC_25.name
    shutil.copy(C20_25, c20)
    shutil.copy(HPPC_25, hppc)
    params = tmp_path / "cell.json"
    assert main(["fit", "--ocv", str(c20), "--pulse", str(hppc), "-o", str(params)]) == 0
    (tmp_path / "evals").mkdir()
    rec = tmp_path / "evals" / "us06.npz"
    bundled_recording().slice(0, 6000).save(rec)
    page_path = tmp_path / "report.html"
    # --eval takes a folder, as eval does (it was refused as "a directory").
    assert main(["report", str(params), "--eval", str(rec.parent), "-o", str(page_path)]) == 0
    page = page_path.read_text()
    # Inputs found from the notes: OCV, the pulse test's voltage fit, the maps, the evaluation.
    assert _images(page) == ["OCV", "549_HPPC_25degC", "parameter maps", "551_US06_25degC"]
    assert "sha256:" in page and "<td>551_US06_25degC</td>" in page
    residual = float(re.search(r"<td>549_HPPC_25degC</td><td>25</td><td>([0-9.]+)</td>", page).group(1))
    assert 5.0 < residual < 30.0  # mV rms, the open-loop model on the pulse test it was fitted to
    # An input changed since the fit is named and left out.
    with open(hppc, "a") as f:
        f.write("\n")
    assert main(["report", str(params), "-o", str(page_path)]) == 0
    page = page_path.read_text()
    assert "changed since the fit" in page and "549_HPPC_25degC" not in _images(page)


@needs_data
def test_model_voltage_follows_the_pulse_test():
    hppc = import_file(HPPC_25)
    params, report = fit(FitInputs(ocv=[import_file(C20_25)], pulse=[hppc]), "x")
    v = model_voltage(params, hppc, recording_soc(params, hppc))
    ok = np.isfinite(hppc.voltage_V)
    rms = float(np.sqrt(np.mean((v - hppc.voltage_V)[ok] ** 2)))
    # The fit's own residual is weighted and strided; the open-loop model is
    # the same equation on every sample.
    assert rms == pytest.approx(report.residual_V, rel=1.5)
    assert rms < 0.03


def test_report_without_inputs_still_draws_the_set(tmp_path: Path):
    from bmsfil.params import bundled_params

    params = tmp_path / "p.json"
    bundled_params().save(params)
    out = tmp_path / "r.html"
    assert main(["report", str(params), "-o", str(out)]) == 0
    assert _images(out.read_text()) == ["OCV", "parameter maps"]
    ParameterSet.load(params)


def test_an_evaluation_without_reference_is_said_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from dataclasses import replace

    from bmsfil.bundled import bundled_recording

    good = bundled_recording().slice(0, 3000)
    bad = replace(good, meta=replace(good.meta, name="no_reference", reference_capacity_Ah=None))
    good.save(tmp_path / "good.npz")
    bad.save(tmp_path / "bad.npz")
    out = tmp_path / "r.html"
    assert main(["report", "lg-hg2", "--eval", str(tmp_path / "bad.npz"), str(tmp_path / "good.npz"),
                 "-o", str(out)]) == 0
    page = out.read_text()
    assert "no_reference not evaluated" in page and "no_reference not evaluated" in capsys.readouterr().err
    assert good.meta.name in _images(page)


def test_an_evaluation_is_warned_of_a_set_of_another_cell(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """As eval: the parameter set's mismatch on the terminal and beside the recording's scores."""
    from dataclasses import replace

    rec = bundled_recording().slice(0, 3000)
    replace(rec, meta=replace(rec.meta, nominal_capacity_Ah=2.0)).save(tmp_path / "other_cell.npz")
    out = tmp_path / "r.html"
    assert main(["report", "lg-hg2", "--eval", str(tmp_path / "other_cell.npz"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "bmsfil report: warning: 551_US06_25degC: its cell's nominal capacity is 2 Ah" in err
    row = re.search(r"<tr><td>551_US06_25degC</td>.*?</tr>", out.read_text()).group(0)
    assert "nominal capacity is 2 Ah" in row and "3 Ah cell" in row
