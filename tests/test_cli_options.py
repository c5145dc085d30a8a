"""What the commands do with the options a user may get slightly wrong: an
output in a directory that is not there yet, an export without --format, a
bundled set named where a file is expected, a NASA file without --params,
injected errors that cannot be, a data set's README in a directory of
recordings."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bmsfil.bundled import bundled_path, bundled_recording
from bmsfil.cli import main
from bmsfil.fleet import expand_inputs
from bmsfil.inject import InjectSpecError, SensorErrors
from shared_data import DATA, NASA_B0005, needs_data


def test_outputs_go_into_directories_made_for_them(tmp_path: Path) -> None:
    c_file = tmp_path / "new" / "deeper" / "lg.c"
    assert main(["export", "lg-hg2", "-o", str(c_file)]) == 0  # a bundled set's name, format from the suffix
    assert "fw_params_cell" in c_file.read_text()
    rec = tmp_path / "recs" / "us06.npz"
    bundled_recording().slice(0, 500).save(tmp_path / "src.npz")
    assert main(["import", str(tmp_path / "src.npz"), "-o", str(rec)]) == 0
    assert rec.is_file()


def test_export_takes_its_format_from_the_name_or_asks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "lg-hg2", "-o", str(tmp_path / "p.json")]) == 0
    assert "micropython" in capsys.readouterr().out.lower()
    assert main(["export", "lg-hg2", "-o", str(tmp_path / "lg.c")]) == 0
    out = capsys.readouterr().out
    assert f"PARAMS_C={tmp_path / 'lg.c'}" in out.replace("\n", "")  # a path make finds from any directory
    assert main(["export", "lg-hg2", "-o", str(tmp_path / "p.txt")]) == 2
    assert "--format c|micropython|pybamm" in capsys.readouterr().err
    assert not (tmp_path / "p.txt").exists()
    # C code in a file named as the MicroPython port's JSON: refused, not written
    assert main(["export", "lg-hg2", "--format", "c", "-o", str(tmp_path / "q.json")]) == 2
    assert "its name says micropython (.json), --format says c" in capsys.readouterr().err
    assert not (tmp_path / "q.json").exists()


def test_an_output_that_cannot_be_written_is_said_before_the_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A red team's: -o into a folder that takes no new files, or a name too long for
    the file system, was a Python traceback, and only after the work (a fit's, a
    tune's). Now said up front, naming the option, the file and why; a write that
    fails later still names the file, without a traceback."""
    import bmsfil.cli as cli

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(cli.os, "access", lambda path, mode: Path(path) != locked)  # as a user other than root
    assert main(["export", "lg-hg2", "-o", str(locked / "lg.c")]) == 2
    err = capsys.readouterr().err
    assert f"-o {locked / 'lg.c'}: cannot be written: its folder {locked} does not take new files" in err
    for length in (252, 300):  # its NAME.part too long; the name itself too long
        too_long = tmp_path / ("x" * (length - 5) + ".json")
        assert main(["export", "lg-hg2", "-o", str(too_long)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert "cannot be written: its name is longer than its folder's file system takes" in err
    # A JSON output is written straight to what is not a regular file, whatever its folder;
    # another output would be renamed over it (a pipe or a device replaced): refused.
    assert cli._unwritable(Path("/dev/stdout"), straight=True) is None
    os.mkfifo(tmp_path / "fifo.c")
    assert main(["export", "lg-hg2", "-o", str(tmp_path / "fifo.c")]) == 2
    assert "not a regular file" in capsys.readouterr().err and not (tmp_path / "fifo.c").is_file()

    def full(self: Path, *args: object, **kwargs: object) -> int:
        self.write_bytes(b"half")  # what a full disk leaves
        raise OSError(28, "No space left on device", str(self))

    small = bundled_recording().slice(0, 300).save(tmp_path / "small.npz")
    monkeypatch.setattr(Path, "write_text", full)
    assert main(["export", "lg-hg2", "-o", str(tmp_path / "lg.c")]) == 2
    assert f"error: {tmp_path / 'lg.c'}: No space left on device" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "lg.c.part").exists(), "no half-written file left behind"
    monkeypatch.chdir(tmp_path)  # a relative --json, written beside where it resolves (a review's)
    assert main(["eval", str(small), "--no-plot", "--out-dir", "o", "--json", "r.json"]) == 2
    assert "error: r.json: No space left on device" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "r.json.part").exists()


def test_import_refuses_an_output_it_would_misname(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundled_recording().slice(0, 100).save(tmp_path / "src.npz")
    assert main(["import", str(tmp_path / "src.npz"), "-o", str(tmp_path / "out.csv")]) == 2
    assert ".npz or .parquet" in capsys.readouterr().err


def test_a_params_name_that_is_neither_file_nor_bundled_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--params", "nasa", "--no-plot"]) == 2
    assert "not a bundled set (lg-hg2, nasa-pcoe-18650)" in capsys.readouterr().err


def test_tune_wants_at_least_one_iteration(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["tune", "--params", "lg-hg2", "--train", "x.npz", "--iterations", "0", "-o", "t.json"])
    assert "expected at least 1" in capsys.readouterr().err


def test_injected_errors_that_cannot_be() -> None:
    with pytest.raises(InjectSpecError, match="not negative"):
        SensorErrors.parse("voltage_noise_V=-0.004")
    with pytest.raises(InjectSpecError, match="needs voltage_stuck_for_s"):
        SensorErrors.parse("voltage_stuck_at_s=600")
    assert SensorErrors.parse("voltage_stuck_at_s=600,voltage_stuck_for_s=0").voltage_stuck_for_s == 0.0


def test_a_directory_search_passes_over_the_data_sets_readme(tmp_path: Path) -> None:
    bundled_recording().slice(0, 100).save(tmp_path / "a.npz")
    (tmp_path / "README_dataset.txt").write_text("about the data\n")
    (tmp_path / "b.txt").write_text("time,current\n")
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.npz", "b.txt"]


@pytest.mark.skipif(not NASA_B0005.is_file(), reason=f"NASA data not found at {DATA}")
def test_a_nasa_file_without_params_gets_the_nasa_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "h.json"
    assert main(["health", str(NASA_B0005), "--no-plot", "--json", str(out)]) == 0
    assert "the bundled nasa-pcoe-18650 set, for these recordings" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["params"] == "nasa-pcoe-18650"
    assert doc["recordings"][0]["summary"]["end_within_1pct"] == 163  # docs/health.md; 0 with the LG HG2 set


def test_eval_from_a_given_soc_counts_coulombs_from_it(tmp_path: Path) -> None:
    """The coulomb counter beside the filter starts where the filter was told to
    start (0.7 here, the reference near 1.0), not at the filter's first update."""
    bundled_recording().slice(0, 3000).save(tmp_path / "us06.npz")
    out = tmp_path / "e.json"
    assert main(["eval", str(tmp_path / "us06.npz"), "--initial-soc", "0.7", "--no-plot", "--out-dir",
                 str(tmp_path / "ev"), "--json", str(out)]) == 0
    rec = json.loads(out.read_text())["recordings"][0]
    assert rec["coulomb_counter"]["rmse"] == pytest.approx(0.3, abs=0.02)


def test_a_start_under_load_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = bundled_recording()
    k = int(np.flatnonzero(np.abs(full.current_A) > 3.0)[0])
    for name, part in (("loaded", full.slice(k, k + 2000)), ("rested", full.slice(0, 2000))):
        replace(part, meta=replace(part.meta, name=name)).save(tmp_path / f"{name}.npz")
    assert main(["eval", str(tmp_path / "loaded.npz"), str(tmp_path / "rested.npz"), "--no-plot", "--out-dir",
                 str(tmp_path / "ev")]) == 0
    err = capsys.readouterr().err
    assert "loaded" in err and "starts under load" in err and "rested" not in err


def test_a_current_of_the_wrong_sign_is_said_by_import_and_eval(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    rec = bundled_recording().slice(0, 6000)
    replace(rec, current_A=-rec.current_A, ah=-rec.ah).save(tmp_path / "flipped.npz")
    # Its reference (the Ah counter flipped with it) leaves [0, 1]: not scored, the sign named as the cause.
    assert main(["eval", str(tmp_path / "flipped.npz"), "--no-plot", "--out-dir", str(tmp_path / "ev")]) == 2
    assert "reference SOC leaves" in (err := capsys.readouterr().err) and "looks positive on discharge" in err
    assert main(["import", str(tmp_path / "flipped.npz"), "-o", str(tmp_path / "again.npz")]) == 0
    assert "its current looks positive on discharge" in capsys.readouterr().err


def test_a_reference_that_guesses_its_start_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = bundled_recording().slice(0, 2000)
    replace(rec, meta=replace(rec.meta, reference_initial_soc=None)).save(tmp_path / "unstated.npz")
    assert main(["eval", str(tmp_path / "unstated.npz"), "--no-plot", "--out-dir", str(tmp_path / "ev")]) == 0
    assert "assumes a start from full charge" in capsys.readouterr().err
    assert main(["eval", "--no-plot", "--out-dir", str(tmp_path / "ev")]) == 0  # the bundled one states it
    assert "assumes a start" not in capsys.readouterr().err


def test_resume_refuses_results_of_another_parameter_set_in_the_same_file(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from bmsfil.params import bundled_params

    bundled_recording().slice(0, 2000).save(tmp_path / "a.npz")
    params = tmp_path / "cell.json"
    bundled_params().save(params)
    args = ["eval", str(tmp_path / "a.npz"), "--params", str(params), "--no-plot", "--out-dir", str(tmp_path / "ev"),
            "--json", str(tmp_path / "r.json"), "--resume"]
    assert main(args) == 0
    assert main(args) == 0  # the same set: resumed
    doc = json.loads(params.read_text())
    doc["name"] = "edited"
    params.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(args) == 2
    assert "params_sha256 differ" in capsys.readouterr().err


def test_export_onto_its_own_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`export set.json -o set.json` would replace the set with its compact
    form and lose its notes: refused, the file as it was."""
    own = tmp_path / "set.json"
    own.write_bytes((Path(__file__).resolve().parents[1] / "host" / "bmsfil" / "data" / "lg_hg2.json").read_bytes())
    before = own.read_bytes()
    assert main(["export", str(own), "-o", str(own)]) == 2
    assert f"-o {own}: that is this command's parameter set: writing it would destroy it" in capsys.readouterr().err
    assert own.read_bytes() == before


def test_a_start_under_load_starts_as_an_unknown_soc(tmp_path: Path) -> None:
    """bf_soc_ekf_start: under load (more than C/4) the first voltage is not
    the OCV, so the filter starts at the SOC it reads with the sigma of an
    unknown start, the C core and the float64 reference alike; at rest (or
    within C/4) from the OCV with its own small sigma. A slice of the
    bundled US06 that starts in a 3 A pulse: the estimate then keeps the
    reference inside its 3 sigma (it was 2 %, and the start off by more)."""
    from bmsfil.core import SocEstimator, start_estimator
    from bmsfil.evaluate import evaluate
    from bmsfil.params import bundled_params
    from bmsfil.reference import ReferenceSocEstimator

    params = bundled_params()
    c_rate = float(params.cell.capacity_Ah[0])
    for est in (SocEstimator(params), ReferenceSocEstimator(params)):
        for current, sigma in ((-0.5 * c_rate, params.filter.p0_soc ** 0.5), (float("nan"), params.filter.p0_soc ** 0.5),
                               (-0.24 * c_rate, params.filter.p0_soc_ocv ** 0.5)):
            est.start(current, 3.7, 25.0)
            assert float(est.P[0][0]) ** 0.5 == pytest.approx(sigma, rel=1e-6), (type(est).__name__, current)
    full = bundled_recording()
    k = int(np.flatnonzero(np.abs(full.current_A) > 3.0)[0])
    loaded = full.slice(k, k + 6000)
    est = SocEstimator(params)
    start_estimator(est, loaded, "ocv")
    assert float(est.P[0][0]) ** 0.5 == pytest.approx(params.filter.p0_soc ** 0.5, rel=1e-6)
    assert evaluate(loaded, params).score.within_3sigma > 0.95


def test_fit_inputs_mix_recordings_and_tester_files(tmp_path: Path) -> None:
    """`bmsfil fit --ocv A.npz --pulse B.csv --map ... --current-sign
    discharge-positive`: the map and the sign are the tester file's; the
    .npz, already a bmsfil recording, was refused ('not a text CSV', or
    'drop current_sign') so the two could not be given together."""
    from bmsfil.cli import _load_role, build_parser

    rec = bundled_recording().slice(0, 300)
    npz = rec.save(tmp_path / "a.npz")
    csv_path = tmp_path / "b.csv"
    csv_path.write_text("t [s],I [mA],U [V],T [degC]\n" + "".join(
        f"{t:.3f},{-i * 1000:.3f},{v:.5f},{c:.2f}\n"
        for t, i, v, c in zip(rec.time_s, rec.current_A, rec.voltage_V, rec.temp_C)))
    args = build_parser().parse_args(["fit", "--ocv", str(npz), "--pulse", str(csv_path), "--map",
                                      "time=t [s],current=I [mA],voltage=U [V],temperature=T [degC]",
                                      "--current-sign", "discharge-positive", "-o", str(tmp_path / "p.json")])
    a, b = _load_role([npz, csv_path], args)
    assert np.array_equal(a.current_A, rec.current_A)
    assert np.allclose(b.current_A, rec.current_A, atol=1e-6) and np.allclose(b.voltage_V, rec.voltage_V, atol=1e-5)


@needs_data
def test_the_bundled_set_follows_what_a_recording_was_imported_from(tmp_path: Path, capsys) -> None:
    """A NASA file got the NASA set, the same data imported to .npz the LG HG2 set
    (a false current_offset of +0.9 A); beside an LG HG2 file it got the LG HG2 set
    in silence."""
    npz = tmp_path / "b5.npz"
    assert main(["import", str(NASA_B0005), "--cycle", "1", "-o", str(npz)]) == 0
    capsys.readouterr()
    assert main(["eval", str(npz), "--no-plot", "--out-dir", str(tmp_path / "o")]) == 0
    assert "the bundled nasa-pcoe-18650 set" in capsys.readouterr().out
    assert main(["eval", str(npz), str(bundled_path()), "--no-plot", "--out-dir", str(tmp_path / "o")]) == 2
    assert "of cells the bundled sets tell apart (nasa-pcoe-18650 for b5.npz; lg-hg2 for" in \
        " ".join(capsys.readouterr().err.split())


def test_import_and_tune_may_rewrite_their_input_in_place(tmp_path: Path) -> None:
    """The refusal of an output that is an input spares what the commands are
    for: a recording given new metadata, a parameter set tuned (README's
    `tune --params PARAMS.json ... -o PARAMS.json`)."""
    import numpy as np

    from bmsfil.bundled import bundled_recording
    from bmsfil.recording import Recording

    rec = tmp_path / "m.npz"
    bundled_recording().slice(0, 50).save(rec)
    assert main(["import", str(rec), "--meta", "cell_id=A1", "-o", str(rec)]) == 0
    again = Recording.load(rec)
    assert again.meta.cell_id == "A1" and len(np.asarray(again.time_s)) == 50
