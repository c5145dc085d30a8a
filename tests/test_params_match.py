"""Warnings of a parameter set that does not fit the recording (params_match)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.params import bundled_params
from bmsfil.params_match import parameter_warnings

from shared_data import LG, needs_data


@pytest.fixture(scope="module")
def rec():
    return bundled_recording().slice(0, 600)


def test_the_bundled_recording_fits_its_set(rec):
    assert parameter_warnings(rec, bundled_params()) == []


def test_another_cells_capacity_is_named(rec):
    (w,) = parameter_warnings(replace(rec, meta=replace(rec.meta, nominal_capacity_Ah=2.0)), bundled_params())
    assert "2 Ah" in w and "3 Ah cell" in w and "--params" in w
    # The NASA set is of a 2 Ah cell: the LG HG2 recording is 50 % off it.
    (w,) = parameter_warnings(rec, bundled_params("nasa-pcoe-18650"))
    assert "3 Ah" in w and "2 Ah cell" in w


def test_a_temperature_outside_the_grid_is_named(rec):
    hot = replace(rec, temp_C=rec.temp_C + 40.0, meta=replace(rec.meta, ambient_temp_C=65.0))
    (w,) = parameter_warnings(hot, bundled_params())
    assert "outside the temperatures" in w and "-20 to 40 °C" in w


def test_a_stated_ambient_far_from_the_measured_one_is_named(rec, tmp_path: Path, capsys):
    """The redteam's case: a 0 °C cycle filed under 25degC, its Q_ref the 25 °C one."""
    cold = replace(rec, temp_C=rec.temp_C - 24.0)
    src = cold.save(tmp_path / "cold.npz")
    js = tmp_path / "e.json"
    assert main(["eval", str(src), "--out-dir", str(tmp_path / "o"), "--no-plot", "--json", str(js)]) == 0
    err = capsys.readouterr().err
    assert err.count("stated ambient 25 °C") == 1 and "reference_capacity_Ah" in err
    (w,) = json.loads(js.read_text())["recordings"][0]["warnings"]
    said = float(w.split("median temperature in discharge ")[1].split(" °C")[0])
    assert abs(said - float(np.median(cold.temp_C[cold.current_A < 0]))) < 1.0


def test_tune_warns_of_a_training_recording_of_another_cell(rec, tmp_path: Path, capsys):
    """As eval: tune names a training recording the parameter set does not fit."""
    train = replace(rec, meta=replace(rec.meta, nominal_capacity_Ah=2.0)).save(tmp_path / "other_cell.npz")
    assert main(["tune", "--params", "lg-hg2", "--train", str(train), "--iterations", "1",
                 "-o", str(tmp_path / "t.json")]) == 0
    assert "bmsfil tune: warning: 551_US06_25degC: its cell's nominal capacity is 2 Ah" in capsys.readouterr().err


@needs_data
def test_a_charge_at_room_temperature_before_a_cold_test_is_not_its_temperature():
    """The LG HG2 raw 2C tests: hours of charge and rest at room temperature,
    then 25 minutes of discharge in the chamber. The temperature a test ran
    at is the discharge's (the data set's own files raised 6 false warnings
    when it was the median over all samples)."""
    from bmsfil.importers import import_file
    from bmsfil.params import bundled_params
    from bmsfil.params_match import parameter_warnings

    path = LG / "1_raw" / "n20degC" / "607_Dis_2C.csv"
    assert parameter_warnings(import_file(path), bundled_params()) == []


def test_time_not_recorded_between_discharges_weighs_nothing():
    """A life logged as its discharges only (the NASA PCoE files): the hours
    between two discharges are no time at the temperature of the sample
    before them, the last and hottest of its discharge. Weighed as such,
    B0007's median read 39.4 °C instead of 32.2 °C and its stated 24 °C
    ambient was called mislabelled."""
    from bmsfil.params_match import WorkingTemperature

    params = bundled_params()
    load = -params.cell.nominal_capacity_Ah  # 1C discharge
    t_one = np.arange(0.0, 3000.0, 10.0)
    temps = np.linspace(25.0, 40.0, t_one.size)  # each discharge warms the cell from 25 to 40 °C
    gap = 5 * params.filter.dt_max_s  # then hours unrecorded before the next discharge
    time_s = np.r_[t_one, t_one + t_one[-1] + gap]
    at = WorkingTemperature(params)
    at.add(time_s, np.full(time_s.size, load), np.r_[temps, temps])
    assert at.value() == pytest.approx(32.5, abs=0.1)


def test_a_gap_under_load_is_warned_of():
    """A logger that stopped for 10 minutes in the middle of a drive: the
    filter integrates the gap as the next sample's current, eval says so;
    the bundled recording as it is has no such gap."""
    from dataclasses import replace

    from bmsfil.bundled import bundled_recording
    from bmsfil.gaps import gap_warning
    from bmsfil.params import bundled_params

    params = bundled_params()
    rec = bundled_recording().slice(0, 12000)
    assert gap_warning(rec, params) is None
    keep = np.r_[0:1000, 7000:12000]  # 6,000 samples of 0.1 s left out: 10 minutes
    cut = replace(rec, time_s=rec.time_s[keep], current_A=rec.current_A[keep], voltage_V=rec.voltage_V[keep],
                  temp_C=rec.temp_C[keep], ah=None if rec.ah is None else rec.ah[keep])
    assert np.diff(cut.time_s).max() == pytest.approx(600.0, abs=1.0)
    warning = gap_warning(cut, params)
    assert warning is not None and "1 gap(s)" in warning and "sample 999" in warning
    # a gap at rest is no warning: nothing flowed
    rest = replace(cut, current_A=np.zeros(len(cut)))
    assert gap_warning(rest, params) is None


def test_an_ocv_row_may_dip_below_a_millivolt_not_more():
    """Another tool's table with a rounding dip loads; a fall of 2 mV is refused."""
    import json as _json

    from bmsfil.params import ParameterSet, ParamsError, bundled_params

    doc = _json.loads(_json.dumps(bundled_params().to_json()))
    row = doc["cell"]["ocv_V"][2]
    for dip, loads in ((0.0005, True), (0.002, False)):
        changed = _json.loads(_json.dumps(doc))
        changed["cell"]["ocv_V"][2][41] = row[40] - dip
        if loads:
            ParameterSet.from_json(changed)
        else:
            with pytest.raises(ParamsError, match="falls by 2 mV"):
                ParameterSet.from_json(changed)


def test_a_reference_capacity_no_cell_of_the_set_has_is_named(rec):
    """2648.8 (mAh) as reference_capacity_Ah scored 57 % RMSE without a word."""
    (w,) = parameter_warnings(replace(rec, meta=replace(rec.meta, reference_capacity_Ah=2648.8)), bundled_params())
    assert "its reference_capacity_Ah 2648.8 Ah is 883 times the nominal capacity" in w and "mAh" in w
    aged = replace(rec, meta=replace(rec.meta, reference_capacity_Ah=2.1))  # a cell at 70 % of 3 Ah
    assert parameter_warnings(aged, bundled_params()) == []


def test_a_self_heated_cell_is_judged_by_its_ambient():
    """A NASA PCoE discharge: 24 °C ambient (the set's one temperature),
    its cell at 32 °C in discharge; it was 'extrapolated', also on the
    set's own training data. A mislabelled ambient is still judged by the
    measured temperature."""
    from bmsfil.recording import Recording, RecordingMeta

    n = 3000
    warm = Recording(np.arange(n, dtype=float), np.full(n, -2.0), np.linspace(4.1, 3.0, n), np.full(n, 32.7),
                     RecordingMeta(name="B0007_c001", ambient_temp_C=24.0, nominal_capacity_Ah=2.0))
    assert parameter_warnings(warm, bundled_params("nasa-pcoe-18650")) == []
    unlabelled = replace(warm, meta=replace(warm.meta, ambient_temp_C=None))
    (w,) = parameter_warnings(unlabelled, bundled_params("nasa-pcoe-18650"))
    assert "its median temperature in discharge 32.7 °C is outside the temperatures" in w
