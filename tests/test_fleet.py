"""Many recordings on Dask (bmsfil.fleet): same results in the same order as
one process, failures reported with their cause and the rest kept, a worker
that dies retried, an existing scheduler used."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bmsfil.bundled import bundled_recording
from bmsfil.fleet import FleetError, claim_outputs, evaluate_path, expand_inputs, run_many
from bmsfil.params import ParameterSet, bundled_params
from bmsfil.recording import Recording

pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Four short recordings (.npz) and a broken file in the middle."""
    d = tmp_path_factory.mktemp("fleet")
    rec = bundled_recording()
    paths = []
    for k in range(4):
        part = rec.slice(k * 3000, k * 3000 + 2500)
        part = replace(part, meta=replace(part.meta, name=f"part{k}"))
        paths.append(str(part.save(d / f"part{k}.npz")))
    bad = d / "broken.csv"
    bad.write_text("time,current\n0,1\n")
    paths.insert(2, str(bad))
    return paths


def test_expand_inputs(tmp_path: Path, slices: list[str]):
    folder = Path(slices[0]).parent
    assert [p.name for p in expand_inputs([folder])] == ["broken.csv"] + [f"part{k}.npz" for k in range(4)]
    assert [p.name for p in expand_inputs([str(folder / "part*.npz"), slices[0]])] == [f"part{k}.npz" for k in range(4)]
    with pytest.raises(FleetError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.blf")])
    with pytest.raises(FleetError, match="no such file"):
        expand_inputs([tmp_path / "missing.csv"])
    with pytest.raises(FleetError, match="a directory without recordings"):
        expand_inputs([tmp_path])
    # A zip of one file is a recording given by name, and in a folder too (it was passed over).
    import zipfile

    with zipfile.ZipFile(tmp_path / "556_Mixed8_parsed.zip", "w") as z:
        z.writestr("556_Mixed8_parsed.csv", "Time,Current\n")
    with zipfile.ZipFile(tmp_path / "dataset_download.zip", "w") as z:  # an archive of many: not one recording
        z.writestr("a.csv", "Time,Current\n")
        z.writestr("b.csv", "Time,Current\n")
    assert [p.name for p in expand_inputs([tmp_path])] == ["556_Mixed8_parsed.zip"]


def _eval_args(out: Path) -> tuple[object, ...]:
    return (bundled_params(), "ocv", None, 0, str(out), False)


@pytest.mark.slow
def test_dask_gives_the_serial_results_in_order_and_reports_the_bad_file(tmp_path: Path, slices: list[str]):
    serial = run_many(evaluate_path, slices, _eval_args(tmp_path))
    done: list[int] = []
    parallel = run_many(evaluate_path, slices, _eval_args(tmp_path), workers=2,
                        progress=lambda n, _o: done.append(n))
    assert done == [1, 2, 3, 4, 5]
    assert [o.source for o in parallel] == slices
    for s, p in zip(serial, parallel):
        assert (s.failure is None) == (p.failure is None)
        if s.result is not None:
            assert p.result == s.result  # the same summaries, to the last digit
    bad = parallel[2].failure
    # A bad recording's error as its message says it (file, line, cause), from a worker as at home.
    assert bad is not None and bad.cause.startswith(f"{slices[2]}: ") and "RecordingError" not in bad.cause
    assert bad.cause == serial[2].failure.cause  # type: ignore[union-attr]
    # Each input wrote under a name of its own; the caller names them (as eval does when each arrives).
    claimed: dict[str, str] = {}
    for outcome in parallel:
        if outcome.result is not None:
            claim_outputs(dict(outcome.result), tmp_path, claimed)
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == [f"part{k}.csv" for k in range(4)]


def _die_on_part1(source: str) -> str:
    if source.endswith("part1.npz"):
        os._exit(3)  # the worker process dies, as when killed
    return Path(source).name


@pytest.mark.slow
def test_a_worker_that_dies_is_retried_then_reported(slices: list[str]):
    good = [s for s in slices if s.endswith(".npz")]
    out = run_many(_die_on_part1, good, workers=2)
    assert [o.result for o in out] == ["part0.npz", None, "part2.npz", "part3.npz"]
    assert out[1].failure is not None and "KilledWorker" in out[1].failure.cause


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_an_existing_scheduler_on_loopback(tmp_path: Path, slices: list[str]):
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the dask command is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, DASK_DISTRIBUTED__WORKER__DAEMON="False")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)]
    try:
        time.sleep(2.0)
        procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        good = [s for s in slices if s.endswith(".npz")]
        out = run_many(evaluate_path, good, _eval_args(tmp_path), scheduler=address)
        serial = run_many(evaluate_path, good, _eval_args(tmp_path))
        assert [o.result for o in out] == [o.result for o in serial]
        assert all(np.isfinite(o.result["ekf"]["rmse"]) for o in out)  # type: ignore[index]
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=20)


def test_an_unreachable_scheduler_is_a_clear_error(slices: list[str]):
    with pytest.raises(FleetError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_many(evaluate_path, slices[:1], _eval_args(Path(".")), scheduler="tcp://127.0.0.1:9")


def test_eval_keeps_the_others_and_resumes(tmp_path: Path, slices: list[str], capsys: pytest.CaptureFixture[str]):
    from bmsfil.cli import main

    out, doc_path = tmp_path / "out", tmp_path / "eval.json"
    argv = ["eval", *slices[:3], "--no-plot", "--out-dir", str(out), "--json", str(doc_path)]
    assert main(argv) == 2  # the broken file fails, the others are scored and kept
    err = capsys.readouterr().err
    assert "broken.csv" in err and "1 of 3 recordings failed; 2 scored" in err
    import json

    doc = json.loads(doc_path.read_text())
    assert [r["source"] for r in doc["recordings"]] == slices[:2]
    # The broken input is in the JSON too, with its error: a reader of the JSON alone sees it failed.
    (failed,) = doc["failed"]
    assert failed["input"] == slices[2] and "broken.csv" in failed["error"]
    csv_file = out / "part0.csv"
    before = csv_file.stat().st_mtime_ns
    assert main(argv + ["--resume"]) == 2  # only the broken one runs again
    assert csv_file.stat().st_mtime_ns == before
    assert "1 of 3 recordings failed; 2 scored" in capsys.readouterr().err
    assert main(["eval", *slices[:2], "--no-plot", "--out-dir", str(out), "--json", str(doc_path), "--resume",
                 "--seed", "4"]) == 2  # other settings: refused, nothing overwritten
    assert "written with other settings" in capsys.readouterr().err


def test_resume_evaluates_again_a_file_replaced_since(tmp_path: Path, slices: list[str],
                                                     capsys: pytest.CaptureFixture[str]):
    import json

    from bmsfil.cli import main

    path = tmp_path / "cell.npz"
    shutil.copy(slices[0], path)
    argv = ["eval", str(path), "--no-plot", "--out-dir", str(tmp_path / "out"), "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    first = json.loads((tmp_path / "r.json").read_text())["recordings"][0]
    shutil.copy(slices[1], path)  # another recording under the same path
    assert main(argv + ["--resume"]) == 0
    assert "is not known to be the file" in capsys.readouterr().err
    again = json.loads((tmp_path / "r.json").read_text())["recordings"][0]
    assert again["name"] == "part1" and again["source_sha256"] != first["source_sha256"]
    assert again["ekf"] != first["ekf"]


@pytest.mark.slow
def test_eval_on_two_workers_writes_the_serial_json(tmp_path: Path, slices: list[str]):
    from bmsfil.cli import main

    good = [s for s in slices if s.endswith(".npz")]
    docs = []
    for extra in ([], ["--workers", "2"]):
        doc_path = tmp_path / f"eval{len(extra)}.json"
        assert main(["eval", *good, "--no-plot", "--out-dir", str(tmp_path / "o"), "--json", str(doc_path), *extra]) == 0
        docs.append(doc_path.read_text())
    assert docs[0] == docs[1]


@pytest.mark.slow
def test_tune_on_two_workers_writes_the_serial_parameter_set(tmp_path: Path, slices: list[str]):
    """`bmsfil tune --workers 2` scores the training recordings on Dask and
    chooses exactly what the serial search chooses."""
    from bmsfil.cli import main

    start = tmp_path / "start.json"
    bundled_params().save(start)
    good = [s for s in slices if s.endswith(".npz")][:2]
    outs = []
    for extra in ([], ["--workers", "2"]):
        out = tmp_path / f"tuned{len(extra)}.json"
        assert main(["tune", "--params", str(start), "--train", *good, "--iterations", "3", "-o", str(out), *extra]) == 0
        outs.append(ParameterSet.load(out))
    assert outs[0].filter == outs[1].filter
    assert outs[0].notes["tuning"] == outs[1].notes["tuning"]


def _estimates(doc_path: Path) -> list[dict[str, object]]:
    """A `hil run` JSON without what timing changes (delivery, round trips, speed)."""
    import json

    out = []
    for entry in json.loads(doc_path.read_text())["recordings"]:
        cells = [{k: v for k, v in c.items() if k != "delivery"} for c in entry["cells"]]
        out.append({"name": entry["name"], "cells": cells})
    return out


@pytest.mark.slow
def test_hil_run_on_two_workers_gives_the_serial_estimates(tmp_path: Path, slices: list[str]):
    from bmsfil.cli import main

    good = [s for s in slices if s.endswith(".npz")]
    docs = []
    for extra in ([], ["--workers", "2"]):
        doc_path = tmp_path / f"hil{len(extra)}.json"
        assert main(["hil", "run", *good, "--no-plot", "--out-dir", str(tmp_path / "o"), "--json", str(doc_path),
                     *extra]) == 0
        docs.append(_estimates(doc_path))
    assert [d["name"] for d in docs[0]] == [f"part{k}" for k in range(4)]
    assert docs[0] == docs[1]


@pytest.mark.slow
def test_hil_run_on_two_workers_keeps_same_name_cells_apart(tmp_path: Path, slices: list[str]):
    """Two inputs whose recordings share a name (a/rec.npz, b/rec.npz): on Dask each
    worker named its files on its own, so both wrote part0.csv and the JSON gave both
    cells one file. As without workers: part0 and part0-2, each the estimates of its
    own input, and nothing left under a worker's name."""
    import json

    from bmsfil.cli import main

    for folder, k in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        other = Recording.load(slices[0] if k == 0 else slices[1])
        replace(other, meta=replace(other.meta, name="part0")).save(tmp_path / folder / "rec.npz")
    inputs = [str(tmp_path / "a" / "rec.npz"), str(tmp_path / "b" / "rec.npz")]
    files = {}
    for extra in ([], ["--workers", "2"]):
        out, doc = tmp_path / f"o{len(extra)}", tmp_path / f"hil{len(extra)}.json"
        assert main(["hil", "run", *inputs, "--out-dir", str(out), "--json", str(doc), *extra]) == 0
        cells = [entry["cells"][0] for entry in json.loads(doc.read_text())["recordings"]]
        assert [c["csv"] for c in cells] == [str(out / "part0.csv"), str(out / "part0-2.csv")]
        assert sorted(p.name for p in out.iterdir()) == ["part0-2.csv", "part0-2.png", "part0.csv", "part0.png"]
        files[len(extra)] = [(out / name).read_text() for name in ("part0.csv", "part0-2.csv")]
    assert files[0][0] != files[0][1], "two inputs, two traces"
    assert files[0] == files[2]


def test_hil_run_on_dask_refuses_what_workers_cannot_share(tmp_path: Path, slices: list[str], capsys):
    from bmsfil.cli import main

    good = [s for s in slices if s.endswith(".npz")]
    assert main(["hil", "run", *good, "--workers", "2", "--target", "qemu"]) == 2
    assert "only the desktop targets (host, reference) run on Dask, not qemu" in capsys.readouterr().out
    assert main(["hil", "run", *good, "--workers", "2", "--log", str(tmp_path / "x.blf")]) == 2
    assert "one CAN log per run cannot be shared by workers" in capsys.readouterr().out
    assert main(["hil", "run", "--workers", "2"]) == 2
    assert "give the recordings" in capsys.readouterr().out


def test_inputs_that_share_a_name_keep_their_own_files(tmp_path: Path, slices: list[str], capsys):
    """Two recordings named alike (a/rec.npz, b/rec.npz): one CSV survived, the other
    overwritten, and on Dask the two workers' renames raced (FileNotFoundError). Each
    now has its files, the later one under name-2, said in a warning and in the JSON;
    the same file given twice (a link) is one input."""
    from bmsfil.cli import main

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(slices[0], tmp_path / folder / "rec.npz")
    (tmp_path / "link.npz").symlink_to(tmp_path / "a" / "rec.npz")
    inputs = [str(tmp_path / "a" / "rec.npz"), str(tmp_path / "b" / "rec.npz"), str(tmp_path / "link.npz")]
    assert [p.name for p in expand_inputs(inputs)] == ["rec.npz", "rec.npz"]
    out, doc = tmp_path / "out", tmp_path / "eval.json"
    assert main(["eval", *inputs, "--no-plot", "--out-dir", str(out), "--json", str(doc)]) == 0
    assert "b/rec.npz: its recording is named part0, as " in " ".join(capsys.readouterr().err.split())
    import json

    entries = json.loads(doc.read_text())["recordings"]
    assert [e["outputs"]["csv"] for e in entries] == [str(out / "part0.csv"), str(out / "part0-2.csv")]
    assert sorted(p.name for p in out.iterdir()) == ["part0-2.csv", "part0.csv"], "no file left under a working name"


def test_the_csv_counts_time_from_the_first_sample(tmp_path: Path, slices: list[str]):
    """A recording whose clock starts at 1000 s (made through the API): the CSV's
    time_s started at 1000, where the README says seconds since the first sample."""
    from bmsfil.cli import main
    from bmsfil.recording import Recording

    rec = Recording.load(slices[0])
    late = replace(rec, time_s=rec.time_s + 1000.0).save(tmp_path / "late.npz")
    assert main(["eval", str(late), "--no-plot", "--out-dir", str(tmp_path / "o")]) == 0
    first = (tmp_path / "o" / "part0.csv").read_text().splitlines()[1]
    assert first.startswith("0.000,")


def test_eval_refuses_what_it_would_ignore_or_lose(tmp_path: Path, slices: list[str], capsys):
    """A red team's: --resume with fewer inputs dropped the others from the JSON, and
    with another --out-dir left the earlier ones without files there; --seed -1 failed
    every recording; --workers beside --scheduler was ignored; an --out-dir that is a
    file crashed; a NASA folder's metadata.csv was evaluated as a recording."""
    from bmsfil.cli import main

    doc = tmp_path / "eval.json"
    base = ["eval", "--no-plot", "--json", str(doc)]
    assert main([*base, slices[0], slices[1], "--out-dir", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    assert main([*base, slices[1], "--out-dir", str(tmp_path / "o"), "--resume"]) == 2
    assert "written for other inputs too" in capsys.readouterr().err
    assert main([*base, slices[0], slices[1], "--out-dir", str(tmp_path / "elsewhere"), "--resume"]) == 2
    assert "out_dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", slices[0], "--seed", "-1"])
    assert main(["eval", slices[0], "--workers", "2", "--scheduler", "tcp://127.0.0.1:1", "--out-dir",
                 str(tmp_path / "w")]) == 2
    assert "--workers 2 starts a local cluster, and --scheduler" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["eval", slices[0], "--out-dir", str(tmp_path / "file")]) == 2
    assert "a file, not a folder" in capsys.readouterr().err
    folder = tmp_path / "nasa"
    folder.mkdir()
    shutil.copy(slices[0], folder / "B0005.npz")
    (folder / "metadata.csv").write_text("type,battery_id\n")
    assert [p.name for p in expand_inputs([folder])] == ["B0005.npz"]


def test_an_interrupted_eval_says_so_without_a_traceback(tmp_path: Path, slices: list[str], capsys, monkeypatch):
    from bmsfil import cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "run_many", interrupted)
    assert cli.main(["eval", slices[0], "--json", str(tmp_path / "e.json"), "--out-dir", str(tmp_path)]) == 130
    assert "bmsfil eval: interrupted; what was done is in its --json, and --resume does the rest" in \
        " ".join(capsys.readouterr().err.split())


def test_a_failed_worker_leaves_no_file_under_its_own_name(tmp_path: Path, slices: list[str], monkeypatch):
    """A worker's files are named by the command only when it succeeds: one that fails
    after writing some left them in --out-dir under its hidden working name."""
    import argparse

    import bmsfil_hil.cli as hil_cli

    def fails(args, *rest):  # type: ignore[no-untyped-def]
        (args.out_dir / f"{args.private_stem}.csv").write_text("half")
        raise RuntimeError("a cell could not be scored")

    monkeypatch.setattr(hil_cli, "_replay_pack", fails)
    monkeypatch.setattr(hil_cli, "_packs_of", lambda recs, args, params: [("part0", recs)])
    args = argparse.Namespace(out_dir=tmp_path)
    with pytest.raises(RuntimeError):
        hil_cli._replay_source(slices[0], args, bundled_params(), {}, {}, 500000, 1.0)
    assert list(tmp_path.iterdir()) == []
