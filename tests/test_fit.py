"""`bmsfil fit` and `bmsfil tune` on the LG HG2 characterisation files.

Known answers from the data: the C/20 capacity at 25 °C (the data README's
Q_ref), the OCV of the pulse test's rests against the C/20 curve, and the
accuracy the fitted set reaches on a drive cycle the fit never saw. The
robustness test re-exports the pulse test as another tester would (other
column names, mA and mV, 1 s sampling, a two-hour leading soak, no metadata)
and checks the fit from it agrees with the fit from the original.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.evaluate import evaluate
from bmsfil.fit import (
    FitError,
    FitInputs,
    fit,
    ocv_from_rests,
    rest_points,
    temperature_shift,
)
from bmsfil.importers import import_file
from bmsfil.params import ParameterSet
from bmsfil.recording import Recording, RecordingMeta
from shared_data import LG, needs_data

C20_25 = LG / "1_raw" / "25degC" / "549_C20DisCh.csv"
HPPC_25 = LG / "2_formatted" / "25degC" / "549_HPPC_parsed.csv"
Q_REF_25 = 2.7807  # ../shared/data/README.md


@pytest.fixture(scope="module")
def lg_minimal() -> tuple[ParameterSet, object]:
    """The least a user may have: one C/20 test and one pulse test, at 25 °C."""
    return fit(FitInputs(ocv=[import_file(C20_25)], pulse=[import_file(HPPC_25)]), "LG HG2 minimal")


@needs_data
def test_capacity_is_the_c20_discharge(lg_minimal):
    params, report = lg_minimal
    assert params.cell.temp_C.tolist() == [25.0]
    assert params.cell.capacity_Ah[0] == pytest.approx(Q_REF_25, abs=0.01)
    assert report.ocv_from[25.0] == "549_C20DisCh_25degC"
    assert 0.005 < report.residual_V < 0.02
    assert not any("given as --ocv" in w for w in report.warnings)  # a C/20 test is a low-rate test


@needs_data
def test_nominal_capacity_is_the_one_the_files_state(lg_minimal):
    """The raw files' headers say 3 Ah; the C/20 test measured 2.78 (which
    made it 2.8, and bmsfil eval then took this cell's recordings for another's)."""
    params, report = lg_minimal
    assert params.cell.nominal_capacity_Ah == 3.0
    assert "nominal capacity 3 Ah from the metadata (nominal_capacity_Ah) of 2 of the 2 inputs" in report.assumptions[-3]
    assert report.assumptions[-2].startswith("i_max_A 36 A: the larger of 10 C (30 A) and twice the largest current")
    assert report.assumptions[-1].startswith("v_min_V 2.75 V and v_max_V 4.25 V: the lowest and highest voltage in "
                                             "the inputs, rounded out to 50 mV")


@needs_data
def test_fitted_set_is_accurate_on_a_drive_cycle_it_never_saw(lg_minimal):
    params, _ = lg_minimal
    rec = bundled_recording()  # US06 at 25 °C: not an input of the fit
    s = evaluate(rec.slice(0, 12000), params, "ocv").score
    assert s.rmse <= 0.015  # the bar of the fit issue for an unseen cell at 25 °C
    assert s.within_3sigma >= 0.95


@needs_data
def test_ocv_from_pulse_rests_agrees_with_the_c20_curve(lg_minimal):
    params, _ = lg_minimal
    hppc = import_file(HPPC_25)
    z, v = rest_points(hppc, Q_REF_25, 1.0)
    assert len(z) >= 9  # one per 10 % SOC step, not the short rests between pulses
    curve = ocv_from_rests(z, v, hppc.meta.name)
    grid = np.linspace(0, 1, len(curve))
    mid = (grid >= 0.1) & (grid <= 0.9)
    # The rests sit a little below the averaged C/20 curve: the discharge
    # hysteresis and an hour's incomplete relaxation.
    diff = curve[mid] - params.cell.ocv_V[0][mid]
    assert -0.025 < np.median(diff) < 0.0
    assert np.all(np.abs(diff) < 0.045)  # the most at low SOC, where the curve bends between 10 % steps


@needs_data
def test_pulse_test_alone_gives_a_usable_set():
    params, report = fit(FitInputs(pulse=[import_file(HPPC_25)]), "pulse only")
    assert params.cell.capacity_Ah[0] == pytest.approx(Q_REF_25, abs=0.03)
    assert any("rests of a pulse test" in w for w in report.warnings)
    s = evaluate(bundled_recording().slice(0, 12000), params, "ocv").score
    assert s.rmse <= 0.02


def _as_other_tester(rec: Recording, path: Path) -> None:
    """The pulse test as another tester exports it: 1 s samples, a 2 h soak
    first, columns in mA/mV with its own names, time in minutes, current
    positive on discharge, no Ah counter, no metadata."""
    t = np.arange(0.0, rec.time_s[-1], 1.0)
    soak = np.arange(0.0, 7200.0, 1.0)
    cur = np.interp(t, rec.time_s, rec.current_A)
    volt = np.interp(t, rec.time_s, rec.voltage_V)
    temp = np.interp(t, rec.time_s, rec.temp_C)
    t_all = np.concatenate([soak, t + 7200.0])
    cur_all = np.concatenate([np.zeros(len(soak)), cur])
    volt_all = np.concatenate([np.full(len(soak), volt[0]), volt])
    temp_all = np.concatenate([np.full(len(soak), temp[0]), temp])
    with open(path, "w") as f:
        f.write("Test Time (min);Amps Disch [mA];Cell U [mV];Can T [degC]\n")
        for row in zip(t_all / 60.0, -cur_all * 1e3, volt_all * 1e3, temp_all):
            f.write("%.5f;%.1f;%.2f;%.2f\n" % row)


@needs_data
def test_generic_csv_with_another_rate_and_a_leading_soak(tmp_path: Path, lg_minimal):
    original, _ = lg_minimal
    src = tmp_path / "pulse_25C.csv"
    _as_other_tester(import_file(HPPC_25), src)
    out = tmp_path / "cell.json"
    argv = ["fit", "--ocv", str(C20_25), "--name", "other tester"]
    assert main(argv + ["-o", str(out)]) == 2  # the C/20 alone: no dynamic data, refused
    assert not out.exists()
    pulse = tmp_path / "pulse.npz"
    assert main(["import", str(src), "--map",
                 "time=Test Time (min),current=Amps Disch [mA],voltage=Cell U [mV],temperature=Can T [degC]",
                 "--current-sign", "discharge-positive", "-o", str(pulse)]) == 0
    assert main(argv + ["--pulse", str(pulse), "-o", str(out)]) == 0
    params = ParameterSet.load(out)
    doc = json.loads(out.read_text())
    notes = doc["notes"]
    assert "sha256:" in notes["pulse_from"] and "sha256:" in notes["ocv_from"]
    assert notes["command"].startswith("bmsfil fit") and notes["written_by"].startswith("bmsfil ")
    # The start is found from the end of the soak; R0 over 20-80 % SOC agrees
    # with the fit from the original 0.1 s file (at 1 s some of it moves into
    # the fast RC pair).
    assert "starting SOC 0.999 from the OCV at the end of its first rest (7209 s)" in notes["assumptions"]
    assert params.cell.r0_ohm[0, 2:9].mean() == pytest.approx(original.cell.r0_ohm[0, 2:9].mean(), rel=0.2)
    s = evaluate(bundled_recording().slice(0, 12000), params, "ocv").score
    assert s.rmse <= 0.015


@needs_data
def test_errors_name_what_is_missing(tmp_path: Path):
    with pytest.raises(FitError, match="nothing to fit"):
        fit(FitInputs(), "x")
    n = 200
    rec = Recording(
        time_s=np.arange(n, dtype=float), current_A=np.full(n, -1.0), voltage_V=np.linspace(4.0, 3.9, n),
        temp_C=np.full(n, 25.0), meta=RecordingMeta(name="mid_discharge"),
    )
    c20 = import_file(C20_25)
    with pytest.raises(FitError, match="no pulse or dynamic recording"):
        fit(FitInputs(ocv=[c20]), "x")
    with pytest.raises(FitError, match="mid_discharge: its starting SOC is unknown.*reference_initial_soc"):
        fit(FitInputs(ocv=[c20], dynamic=[rec]), "x")
    with pytest.raises(FitError, match="mid_discharge: only 0 rests.*--ocv"):
        fit(FitInputs(pulse=[rec]), "x")


@settings(max_examples=50, deadline=None)
@given(
    shift_mV=st.floats(-50, 50),
    z=st.lists(st.floats(0.02, 0.98), min_size=4, max_size=12, unique=True),
)
def test_temperature_shift_recovers_a_uniform_offset(shift_mV: float, z: list[float]):
    z_ref = np.sort(np.asarray(z))
    v_ref = 3.4 + 0.8 * z_ref
    curve = 3.4 + 0.8 * np.linspace(0.0, 1.0, 101)
    d = temperature_shift(z_ref, v_ref + shift_mV * 1e-3, z_ref, v_ref, curve)
    assert d is not None
    np.testing.assert_allclose(d, shift_mV * 1e-3, atol=1e-9)
    assert temperature_shift(z_ref[:2], v_ref[:2], z_ref, v_ref, curve) is None


@needs_data
def test_tune_improves_its_cost_and_writes_a_loadable_set(tmp_path: Path, lg_minimal):
    params, _ = lg_minimal
    start = tmp_path / "fit.json"
    params.save(start)
    train = tmp_path / "train.npz"
    bundled_recording().slice(0, 9000).save(train)
    out = tmp_path / "tuned.json"
    assert main(["tune", "--params", str(start), "--train", str(train), "--iterations", "6", "-o", str(out)]) == 0
    tuned = ParameterSet.load(out)
    assert tuned.cell.capacity_Ah.tolist() == params.cell.capacity_Ah.tolist()  # only the filter moves
    assert "bmsfil tune, 6 iterations" in tuned.notes["tuning"]


@needs_data
def test_tune_refuses_a_recording_without_reference(tmp_path: Path, lg_minimal, capsys):
    params, _ = lg_minimal
    start = tmp_path / "fit.json"
    params.save(start)
    rec = bundled_recording().slice(0, 2000)
    rec = replace(rec, meta=replace(rec.meta, reference_capacity_Ah=None))
    train = tmp_path / "noref.npz"
    rec.save(train)
    assert main(["tune", "--params", str(start), "--train", str(train), "-o", str(tmp_path / "t.json")]) == 2
    assert "reference_capacity_Ah" in capsys.readouterr().err


@needs_data
def test_a_pulse_test_at_another_temperature_shifts_the_ocv(lg_minimal):
    """The unseen-cell workflow's shape: one low-rate test at 25 °C, pulse
    tests at 25 °C and at another temperature. The second pulse test is the
    first one relabelled 10 °C with its voltage raised by 20 mV (and without
    metadata, as from another tester): the OCV at 10 °C must come out as the
    25 °C curve plus 20 mV, and its capacity from that test's full-to-empty
    discharge."""
    hppc = import_file(HPPC_25)
    soak = 600  # 10 min at rest first, 1 s apart: its start is read from the OCV
    warm = Recording(
        time_s=np.concatenate([np.arange(soak, dtype=float), hppc.time_s + soak]),
        current_A=np.concatenate([np.zeros(soak), hppc.current_A]),
        voltage_V=np.concatenate([np.full(soak, hppc.voltage_V[0]), hppc.voltage_V]) + 0.020,
        temp_C=np.concatenate([np.full(soak, hppc.temp_C[0]), hppc.temp_C]) - 15.0,
        meta=RecordingMeta(name="pulse_10C", ambient_temp_C=10.0),
    )
    params, report = fit(FitInputs(ocv=[import_file(C20_25)], pulse=[hppc, warm]), "two temperatures")
    c = params.cell
    assert c.temp_C.tolist() == [10.0, 25.0]
    mid = slice(10, 91)
    # (The start read from the OCV and the capacity from the test move the
    # rests a little along SOC: a few mV where the curve is steep.)
    np.testing.assert_allclose(c.ocv_V[0][mid] - c.ocv_V[1][mid], 0.020, atol=0.003)
    assert any("OCV at 10 °C: the curve of 25 °C shifted" in a for a in report.assumptions)
    assert c.capacity_Ah[0] == pytest.approx(Q_REF_25, abs=0.05)
    assert any("capacity at 10 °C from the pulse test pulse_10C" in a for a in report.assumptions)


@needs_data
def test_tune_holds_out_the_training_recordings_the_fit_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]):
    """A training recording the fit used is tuned on with the model refitted
    without it (bmsfil.held_out); one the fit did not use, with the model as
    fitted; --in-sample turns it off; a fit that cannot be repeated is said."""
    import bmsfil.cli as cli

    used, other = tmp_path / "used.npz", tmp_path / "other.npz"
    bundled_recording().slice(0, 6000).save(used)
    bundled_recording().slice(6000, 9000).save(other)
    start = tmp_path / "fit.json"
    assert main(["fit", "--ocv", str(C20_25), "--pulse", str(HPPC_25), "--dynamic", str(used), "-o", str(start)]) == 0
    params = ParameterSet.load(start)
    seen: list[object] = []
    real = cli.tune_filter

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("cells"))
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "tune_filter", spy)
    out = tmp_path / "tuned.json"
    assert main(["tune", "--params", str(start), "--train", str(used), str(other), "--iterations", "2",
                 "-o", str(out)]) == 0
    cells = seen[-1]
    without, _ = fit(FitInputs(ocv=[import_file(C20_25)], pulse=[import_file(HPPC_25)]), "fitted cell")
    assert np.array_equal(cells[0].r0_ohm, without.cell.r0_ohm)
    assert not np.array_equal(cells[0].r0_ohm, params.cell.r0_ohm)
    assert cells[1] is params.cell or np.array_equal(cells[1].r0_ohm, params.cell.r0_ohm)
    assert "1 of the training recordings held out of the fit" in ParameterSet.load(out).notes["tuning"]

    assert main(["tune", "--params", str(start), "--train", str(used), "--iterations", "1", "--in-sample",
                 "-o", str(out)]) == 0
    assert seen[-1] is None
    assert main(["tune", "--params", str(start), "--train", str(other), "--iterations", "1", "-o", str(out)]) == 0
    assert seen[-1] is None  # the fit did not use it: nothing to hold out

    # Another file with the same samples (as a CSV and the .npz imported from
    # it are): recognised as the fit's input by the sha256 of its samples.
    from dataclasses import replace

    from bmsfil.fit import file_sha256
    from bmsfil.recording import Recording

    again = Recording.load(used)
    renamed = replace(again, meta=replace(again.meta, name="the same samples")).save(tmp_path / "renamed.npz")
    assert file_sha256(renamed) != file_sha256(used)
    assert main(["tune", "--params", str(start), "--train", str(renamed), "--iterations", "1", "-o", str(out)]) == 0
    assert np.array_equal(seen[-1][0].r0_ohm, without.cell.r0_ohm)  # type: ignore[index]

    used.with_name("moved.npz").write_bytes(used.read_bytes())
    used.unlink()
    capsys.readouterr()
    assert main(["tune", "--params", str(start), "--train", str(tmp_path / "moved.npz"), "--iterations", "1",
                 "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"dynamic input {used} of the fit is not there" in err and "--in-sample" in err


@needs_data
def test_tune_and_report_find_the_fit_inputs_of_a_moved_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]):
    """A project folder (data/ and params/, the fit run from the project with
    relative paths) moved or copied elsewhere: tune's held-out refits looked for
    the inputs only from here and refused ("not there"); report looked from the
    notes' run_in and the set's folder. Both now look from the set's folder and
    those above it too, and take only a file whose sha256 the notes hold."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "params").mkdir()
    bundled_recording().slice(0, 6000).save(project / "data" / "used.npz")
    monkeypatch.chdir(project)
    assert main(["fit", "--ocv", str(C20_25), "--pulse", str(HPPC_25), "--dynamic", "data/used.npz",
                 "-o", "params/fit.json"]) == 0
    moved = tmp_path / "elsewhere" / "copy"
    moved.parent.mkdir()
    project.rename(moved)
    (tmp_path / "decoy" / "data").mkdir(parents=True)  # same name, other samples: never taken
    bundled_recording().slice(6000, 9000).save(tmp_path / "decoy" / "data" / "used.npz")
    monkeypatch.chdir(tmp_path / "decoy")
    capsys.readouterr()
    out = moved / "params" / "tuned.json"
    assert main(["tune", "--params", str(moved / "params" / "fit.json"), "--train", str(moved / "data" / "used.npz"),
                 "--iterations", "1", "-o", str(out)]) == 0
    assert "1 of the training recordings held out of the fit" in ParameterSet.load(out).notes["tuning"]
    page = tmp_path / "report.html"
    assert main(["report", str(moved / "params" / "fit.json"), "-o", str(page)]) == 0
    assert "not there" not in capsys.readouterr().err


@needs_data
def test_a_capacity_test_the_fit_cannot_use_is_said():
    cap_0 = LG / "1_raw" / "0degC" / "589_Cap_1C.csv"
    _, report = fit(FitInputs(ocv=[import_file(C20_25)], pulse=[import_file(HPPC_25)], capacity=[import_file(cap_0)]),
                    "LG HG2 with a cold capacity test")
    assert any("capacity test 589_Cap_1C_0degC (0 °C) not used" in w and "give an OCV or pulse test at 0 °C" in w
               for w in report.warnings)


def test_tuning_knows_how_wrong_the_model_is_on_each_recording():
    """`tuning.model_error_V`, the voltage offset the tuning makes its filter
    bear: the RMS of the model's open-loop voltage error on the recording."""
    from bmsfil.params import bundled_params
    from bmsfil.report import model_voltage
    from bmsfil.tuning import model_error_V

    params = bundled_params()
    rec = bundled_recording().slice(0, 3000)
    exact = replace(rec, voltage_V=model_voltage(params, rec, rec.reference_soc()))
    assert model_error_V(exact, params.cell) == pytest.approx(0.0, abs=1e-9)
    off = replace(exact, voltage_V=exact.voltage_V - 0.02)
    assert model_error_V(off, params.cell) == pytest.approx(0.02, rel=1e-6)
    assert 0.001 < model_error_V(rec, params.cell) < 0.05


def test_tuning_weighs_the_model_error_runs_as_told(monkeypatch):
    """`Targets.model_error_weight` scales the cost of the runs with the
    voltage offset by the model's error, linearly, and 0 leaves them out (as
    `lg_hg2_params` tunes the bundled set: its held-out models carry their
    error already)."""
    from bmsfil import tuning
    from bmsfil.params import bundled_params

    params = bundled_params()
    rec = bundled_recording().slice(0, 3000)
    monkeypatch.setattr(tuning, "model_error_V", lambda r, c: 0.08)
    costs = {w: tuning.recording_cost(rec, params, tuning.Targets(model_error_weight=w)) for w in (0.0, 0.5, 1.0)}
    assert costs[0.5] > costs[0.0]
    assert costs[1.0] - costs[0.0] == pytest.approx(2.0 * (costs[0.5] - costs[0.0]), rel=1e-9)

    def no_call(r, c):
        raise AssertionError("model_error_V called with weight 0")
    monkeypatch.setattr(tuning, "model_error_V", no_call)
    assert tuning.recording_cost(rec, params, tuning.Targets(model_error_weight=0.0)) == costs[0.0]


@needs_data
def test_report_reads_the_fit_inputs_as_the_fit_read_them(tmp_path: Path, capsys):
    """A pulse test from another tester, fitted with --map and
    --current-sign discharge-positive given to `fit` itself: `report` reads
    it back with those options (from the fit's command in the notes), not
    with its own, so the figures show the data the fit saw."""
    from bmsfil.cli import _fit_input_loader, build_parser

    src = tmp_path / "pulse_25C.csv"
    _as_other_tester(import_file(HPPC_25), src)
    out = tmp_path / "cell.json"
    assert main(["fit", "--pulse", str(src), "--map",
                 "time=Test Time (min),current=Amps Disch [mA],voltage=Cell U [mV],temperature=Can T [degC]",
                 "--current-sign", "discharge-positive", "--name", "other tester", "-o", str(out)]) == 0
    params = ParameterSet.load(out)
    args = build_parser().parse_args(["report", str(out), "-o", str(tmp_path / "r.html")])
    pulse = _fit_input_loader(params, args)(src)
    digest = params.notes["pulse_from"].rpartition(" data:")[2]
    assert digest and pulse.data_sha256().startswith(digest)
    assert np.nanmin(pulse.current_A) < -1.0  # the pulses discharge: charge-positive, as the fit read them
    capsys.readouterr()
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert "left out" not in capsys.readouterr().err


@needs_data
def test_report_finds_the_fit_inputs_from_another_folder(tmp_path: Path, capsys, monkeypatch):
    """The fit names its inputs as it was given them (relative to where it ran);
    `report` from another folder looked for them there and left every one out."""
    work = tmp_path / "fit in ü"
    work.mkdir()
    import_file(HPPC_25).slice(0, 20000).save(work / "pulse.npz")
    monkeypatch.chdir(work)
    assert main(["fit", "--pulse", "pulse.npz", "--name", "moved", "-o", str(tmp_path / "cell.json")]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["report", "cell.json", "-o", "r.html"]) == 0
    assert "left out" not in capsys.readouterr().err
