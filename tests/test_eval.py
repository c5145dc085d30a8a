"""`bmsfil eval` and its scoring: known answers on short slices of real drive cycles."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.eval_plot import TimeAxis, envelope
from bmsfil.evaluate import evaluate
from bmsfil.inject import InjectSpecError, SensorErrors
from bmsfil.metrics import score_soc
from bmsfil.params import bundled_params

#: 20 minutes of the bundled US06 at 25 °C (0.1 s samples).
SLICE = 12000


@pytest.fixture(scope="module")
def us06_slice():
    return bundled_recording().slice(0, SLICE)


def test_reference_soc_of_bundled_cycle_follows_the_cycler_counter():
    rec = bundled_recording()
    ref = rec.reference_soc()
    assert ref[0] == 1.0
    # The cycle discharges to 95 % of the 1C capacity: about 7 % SOC left at 25 °C.
    assert 0.0 < ref[-1] < 0.1


def test_ekf_tracks_reference_on_real_slice(us06_slice):
    ev = evaluate(us06_slice, bundled_params())
    assert ev.score.rmse < 0.01
    assert ev.score.within_3sigma >= 0.95
    assert np.all((ev.trace.soc >= 0) & (ev.trace.soc <= 1))


def test_started_30_points_off_converges_within_10_minutes(us06_slice):
    ev = evaluate(us06_slice, bundled_params(), initial_soc=0.7)
    assert ev.score.convergence_time_s <= 600.0
    assert abs(ev.score.final_error) < 0.02


def test_injected_sensor_errors_beat_coulomb_counting(us06_slice):
    errors = SensorErrors.parse("current_offset_A=0.1,voltage_noise_V=0.004,temp_offset_C=2")
    ev = evaluate(us06_slice, bundled_params(), errors=errors, seed=3)
    assert ev.score.rmse < 0.015
    # +0.1 A (charge-positive) makes the counter drift high; the EKF must not follow it.
    assert ev.coulomb_score.final_error > 0.01
    assert abs(ev.score.final_error) < abs(ev.coulomb_score.final_error)


def test_injection_is_deterministic_for_a_seed(us06_slice):
    errors = SensorErrors.parse("voltage_noise_V=0.004,current_noise_A=0.05")
    a, b, c = (errors.apply(us06_slice, s) for s in (1, 1, 2))
    assert np.array_equal(a.voltage_V, b.voltage_V)
    assert not np.array_equal(a.voltage_V, c.voltage_V)
    assert np.array_equal(a.ah, us06_slice.ah)  # the reference is never touched


@pytest.mark.parametrize(
    "spec, message",
    [("current_offset_A", "not key=value"), ("bogus=1", "unknown error 'bogus'"), ("voltage_noise_V=abc", "expected a number")],
)
def test_bad_inject_spec_is_named(spec, message):
    with pytest.raises(InjectSpecError, match=message):
        SensorErrors.parse(spec)


def test_score_convergence_is_when_error_last_leaves_the_band():
    t = np.arange(10.0)
    ref = np.full(10, 0.5)
    soc = ref + np.array([0.3, 0.1, 0.03, 0.01, 0.0, 0.025, 0.0, 0.0, 0.0, 0.0])
    s = score_soc(t, soc, ref, sigma=np.full(10, 0.01))
    assert s.convergence_time_s == 6.0
    assert s.within_3sigma == pytest.approx(0.7)


def test_eval_command_writes_csv_plot_and_json(tmp_path: Path, us06_slice, capsys):
    rec_path = us06_slice.save(tmp_path / "slice.npz")
    out = tmp_path / "out"
    assert main(["eval", str(rec_path), "--out-dir", str(out), "--json", str(tmp_path / "e.json")]) == 0
    rows = list(csv.reader((out / f"{us06_slice.meta.name}.csv").open()))
    assert rows[0] == ["time_s", "soc", "soc_sigma"]
    assert len(rows) == SLICE + 1
    assert float(rows[1][0]) == 0.0
    assert (out / f"{us06_slice.meta.name}.png").stat().st_size > 10_000
    doc = json.loads((tmp_path / "e.json").read_text())
    assert doc["recordings"][0]["ekf"]["rmse"] < 0.01
    printed = capsys.readouterr().out
    assert "RMSE" in printed
    # The state of power along the recording, per horizon: a longer pulse
    # allows less power, and the cell (about 3 Ah, 2.5-4.2 V) some tens of watts.
    power = doc["recordings"][0]["power"]
    assert list(power) == ["2s", "10s", "30s"]
    assert power["2s"]["discharge_W_median"] > power["10s"]["discharge_W_median"] > power["30s"]["discharge_W_median"]
    assert 20 < power["30s"]["discharge_W_median"] < 150 and power["2s"]["charge_W_max"] > 0
    # The core temperature: the US06's heat keeps the core above the case
    # (by tenths of a kelvin to a few kelvin, docs/thermal.md), on the table's
    # line and in the JSON.
    core = doc["recordings"][0]["core_temperature"]
    case = us06_slice.temp_C
    assert 0.1 < core["core_above_case_mean_K"] < 2.0 < core["core_above_case_max_K"] + 1.0
    assert np.nanmax(case) < core["core_max_C"] < np.nanmax(case) + 4.0
    assert 0 < core["core_sigma_end_C"] < 0.5 and core["readings_gated_share"] < 0.01
    assert "core temperature up to" in printed
    # Health and the state of power at the end, each on a line of its own, the numbers the JSON has.
    name, health = us06_slice.meta.name, doc["recordings"][0]["health"]
    assert f"{name}: state of power at the end over 2s / 10s / 30s: discharge {power['2s']['discharge_W_end']:.1f} / " \
        in " ".join(printed.split())
    line = next(x for x in printed.splitlines() if x.startswith(f"{name}: capacity") or x.startswith(f"{name}: R0"))
    assert health["r0_steps"] > 0  # the US06's current steps
    assert f"R0 {health['r0_ohm'] * 1e3:.1f} ± {health['r0_sigma_ohm'] * 1e3:.1f} mΩ from {health['r0_steps']} current" \
            in line


def test_eval_without_a_thermal_model_reports_no_core_temperature(tmp_path: Path, us06_slice):
    rec_path = us06_slice.slice(0, 600).save(tmp_path / "slice.npz")
    params_path = tmp_path / "set.json"
    replace(bundled_params(), thermal=None).save(params_path)
    assert main(["eval", str(rec_path), "--params", str(params_path), "--out-dir", str(tmp_path / "out"),
                 "--json", str(tmp_path / "e.json"), "--no-plot"]) == 0
    assert "core_temperature" not in json.loads((tmp_path / "e.json").read_text())["recordings"][0]


def test_a_temperature_the_thermal_filter_refuses_leaves_the_soc_score(tmp_path: Path, us06_slice):
    # 25 + 130 °C: beyond the thermal filter's range (and no real cell's): no
    # core temperature, the SOC still scored (it failed the recording).
    rec_path = us06_slice.slice(0, 600).save(tmp_path / "slice.npz")
    assert main(["eval", str(rec_path), "--inject", "temp_offset_C=130", "--out-dir", str(tmp_path / "out"),
                 "--json", str(tmp_path / "e.json"), "--no-plot"]) == 0
    summary = json.loads((tmp_path / "e.json").read_text())["recordings"][0]
    assert summary["ekf"]["rmse"] < 0.05 and "core_temperature" not in summary


def test_eval_names_a_broken_input(tmp_path: Path, capsys):
    bad = tmp_path / "broken.csv"
    bad.write_text("Time [s],Current [A],Voltage [V],Temperature [degC]\n0,1,3.7,25\n1,1,abc,25\n")
    assert main(["eval", str(bad), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "broken.csv:3" in err and "Voltage" in err


def _png_height_in(path: Path) -> float:
    import matplotlib.image

    return matplotlib.image.imread(path).shape[0] / 100.0  # saved at 100 dpi


def test_eval_plot_has_a_panel_for_every_estimate(tmp_path: Path, us06_slice):
    """Issue 7: capacity, R0, the plausibility monitor, state of power and
    core temperature are in eval's figure, each in a panel of its own (2.5
    inches each after the SOC's 5 and the error's 2.5), also for a recording
    without a reference SOC, whose figure has the estimates alone."""
    rec = us06_slice.slice(0, 3000)
    scored, unscored = tmp_path / "scored", tmp_path / "unscored"
    assert main(["eval", str(rec.save(tmp_path / "a.npz")), "--out-dir", str(scored)]) == 0
    assert _png_height_in(scored / f"{rec.meta.name}.png") == pytest.approx(2.5 * 7 - 1.0)
    no_ref = replace(rec, ah=None, meta=replace(rec.meta, name="no_reference"))
    assert main(["eval", str(no_ref.save(tmp_path / "b.npz")), "--out-dir", str(unscored)]) == 0
    # SOC without a reference, the monitor, capacity and R0, core temperature.
    assert _png_height_in(unscored / "no_reference.png") == pytest.approx(2.5 * 5 - 1.0)
    assert main(["eval", str(tmp_path / "b.npz"), "--no-plot", "--out-dir", str(tmp_path / "none")]) == 0
    assert not list((tmp_path / "none").glob("*.png"))


@pytest.mark.parametrize("name, stem", [("../../escaped", "_.._escaped"), ("LG HG2/#1", "LG_HG2_#1")])
def test_a_name_given_by_the_user_stays_inside_the_output_folder(tmp_path: Path, us06_slice, name, stem):
    """`--meta name=` is the user's text: as a file name it must not climb out
    of --out-dir or make folders (a red team wrote ../../escaped.csv)."""
    rec = replace(us06_slice.slice(0, 600), meta=replace(us06_slice.meta, name=name))
    out = tmp_path / "a" / "b" / "out"
    assert main(["eval", str(rec.save(tmp_path / "named.npz")), "--out-dir", str(out), "--json",
                 str(tmp_path / "e.json")]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.csv", f"{stem}.png"]
    assert not any(p.suffix in (".csv", ".png") for p in (tmp_path / "a").rglob("*") if p.parent != out)
    assert json.loads((tmp_path / "e.json").read_text())["recordings"][0]["name"] == name


def test_plot_lines_break_at_gaps_only_for_what_moves_unseen():
    """A life's unrecorded charges: SOC is not drawn across them (a straight
    line would be a SOC nobody estimated), a held estimate (capacity, R0) is."""
    t = np.concatenate([np.arange(0.0, 100.0), 20_000.0 + np.arange(0.0, 100.0)])
    axis = TimeAxis(t)
    k = np.arange(t.size)
    y = np.linspace(0.0, 1.0, t.size)
    tk, yk = axis.points(k, y)
    assert tk.size == t.size + 1 and np.isnan(yk[100]) and np.isnan(tk[100])
    assert np.array_equal(yk[~np.isnan(yk)], y)
    held_t, held_y = axis.points(k, y, held=True)
    assert np.array_equal(held_y, y) and axis.unit == "h" and held_t[-1] == pytest.approx(t[-1] / 3600.0)
    # A regular record has no gap, and under three hours is drawn in minutes.
    short = TimeAxis(np.arange(0.0, 600.0, 0.1))
    assert short.gaps.size == 0 and short.unit == "min"


@given(st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=0, max_size=30_000),
       st.integers(4, 3000))
def test_plot_envelope_keeps_every_bins_extremes_in_order(values, points):
    y = np.array(values, dtype=float)
    k = envelope(y, points)
    assert np.all(np.diff(k) > 0) and (k.size == 0 or (k[0] >= 0 and k[-1] < y.size))
    if y.size <= 2 * (points // 2):
        assert k.size == y.size
        return
    assert k.size <= points + y.size // (points // 2)  # at most two a bin, and the tail
    finite = np.isfinite(y)
    if finite.any():
        assert np.nanmax(y) in y[k] and np.nanmin(y) in y[k], "the spikes are drawn"


def _with_voltage(rec, voltage):
    from dataclasses import replace

    return replace(rec, voltage_V=np.asarray(voltage, dtype=float))


def test_a_first_voltage_the_cell_cannot_have_is_not_the_start(us06_slice):
    """A logger's 0.0 V first sample: the OCV start is taken from the first
    plausible voltage (the bad samples still predict with their current)."""
    rec = us06_slice.slice(0, 3000)
    v = rec.voltage_V.copy()
    v[:3] = (0.0, 9.0, np.nan)
    ev = evaluate(_with_voltage(rec, v), bundled_params())
    clean = evaluate(rec.slice(3, 3000), bundled_params())
    assert np.max(np.abs(ev.trace.soc[3:] - clean.trace.soc)) < 1e-3
    assert ev.score.rmse < 0.01


def test_a_recording_without_a_plausible_voltage_cannot_start_from_ocv(us06_slice):
    from bmsfil.recording import RecordingError

    rec = us06_slice.slice(0, 50)
    with pytest.raises(RecordingError, match=r"no sample to start from its OCV.*\[2(\.\d+)?, 4\.\d+\] V"):
        evaluate(_with_voltage(rec, np.zeros(50)), bundled_params())


def _started_at(rec, soc0):
    from dataclasses import replace

    return replace(rec, meta=replace(rec.meta, reference_initial_soc=soc0))


def test_a_reference_leaving_0_1_is_not_scored(us06_slice, tmp_path: Path, capsys):
    """A recording that does not start at the SOC its metadata states (here
    0.05 stated for a cell that starts full): refused at the first sample
    where the reference leaves [-0.15, 1.15], naming it and what to do; eval
    of several files keeps the others."""
    from bmsfil.recording import RecordingError

    wrong = _started_at(us06_slice, 0.05)
    k = int(np.flatnonzero(wrong.reference_soc() < -0.15)[0])
    with pytest.raises(RecordingError, match=rf"leaves \[-0.15, 1.15\] at sample {k} .*reference_initial_soc=SOC"):
        evaluate(wrong, bundled_params())
    bad, good = wrong.save(tmp_path / "bad.npz"), us06_slice.slice(0, 600).save(tmp_path / "good.npz")
    js = tmp_path / "e.json"
    assert main(["eval", str(bad), str(good), "--out-dir", str(tmp_path / "o"), "--no-plot", "--json", str(js)]) == 2
    err = capsys.readouterr().err
    assert f"at sample {k}" in err and "1 of 2 recordings failed" in err
    assert [r["source"] for r in json.loads(js.read_text())["recordings"]] == [str(good)]


def test_a_streamed_reference_leaving_0_1_names_the_files_sample(us06_slice, tmp_path: Path):
    from bmsfil.chunked import evaluate_streaming, save_parquet
    from bmsfil.recording import RecordingError

    wrong = _started_at(us06_slice, 0.05)
    k = int(np.flatnonzero(wrong.reference_soc() < -0.15)[0])
    path = save_parquet(wrong, tmp_path / "w.parquet", rows_per_group=2500)
    with pytest.raises(RecordingError, match=rf"at sample {k} "):
        evaluate_streaming(path, bundled_params(), "ocv", tmp_path, rows=1000)


def test_tune_refuses_a_reference_leaving_0_1(us06_slice, tmp_path: Path, capsys):
    train = _started_at(us06_slice.slice(0, 2000), 1.25).save(tmp_path / "t.npz")
    assert main(["tune", "--params", "lg-hg2", "--train", str(train), "--iterations", "1",
                 "-o", str(tmp_path / "t.json")]) == 2
    assert "leaves [-0.15, 1.15] at sample 0" in capsys.readouterr().err


def test_a_known_start_is_kept_a_guessed_one_is_not():
    """10 minutes from the middle of the bundled US06, started under load
    (its first voltage is no OCV): the exact start SOC as a guess (sigma
    sqrt(p0_soc) = 0.5) is pulled off by the voltage; known to within 1 %
    (KnownSoc, --initial-soc-sigma) it is kept."""
    from bmsfil.core import KnownSoc

    rec = bundled_recording().slice(20000, 26000)
    z0 = float(rec.reference_soc()[0])
    guessed = evaluate(rec, bundled_params(), z0)
    known = evaluate(rec, bundled_params(), KnownSoc(z0, 0.01))
    assert guessed.trace.soc_sigma[0] > 0.4 and known.trace.soc_sigma[0] == pytest.approx(0.01, rel=1e-3)
    assert known.score.rmse < 0.015 < 0.04 < guessed.score.rmse


def test_init_soc_takes_a_sigma_in_the_c_core_and_the_reference():
    from bmsfil.core import SocEstimator
    from bmsfil.reference import ReferenceSocEstimator

    for est in (SocEstimator(bundled_params()), ReferenceSocEstimator(bundled_params())):
        est.init_soc(0.5, 25.0, sigma=0.02)
        assert est.P[0, 0] == pytest.approx(4e-4, rel=1e-6)
        est.init_soc(0.5, 25.0)
        assert est.P[0, 0] == pytest.approx(bundled_params().filter.p0_soc)
        with pytest.raises(ValueError, match=r"sigma: expected a number in \(0, 1\]"):
            est.init_soc(0.5, 25.0, sigma=0.0)


def test_eval_initial_soc_sigma(tmp_path: Path, capsys):
    src = bundled_recording().slice(0, 300).save(tmp_path / "r.npz")
    out = ["--out-dir", str(tmp_path / "o"), "--no-plot"]
    assert main(["eval", str(src), "--initial-soc", "1.0", "--initial-soc-sigma", "0.01", *out]) == 0
    assert "initial SOC 1.0 ± 0.01" in capsys.readouterr().out
    assert main(["eval", str(src), "--initial-soc-sigma", "0.01", *out]) == 2
    assert "give the start too, --initial-soc SOC" in capsys.readouterr().err
