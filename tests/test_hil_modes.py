"""Packs, bus load, real-time mode, replaying a log and the JUnit report of
`bmsfil hil run`, on the desktop targets (fast)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.core import SocEstimator
from bmsfil.pack import Spread, synthetic_pack
from bmsfil.params import bundled_params
from bmsfil_hil.logreplay import LogError, read_log
from bmsfil_hil.replay import as_carried, open_log, replay_lockstep, replay_realtime
from bmsfil_hil.targets import make_target

PARAMS = bundled_params()


@pytest.fixture(scope="module")
def rec():
    return bundled_recording().slice(0, 400)


def test_synthetic_pack_is_labelled_bounded_and_reproducible(rec):
    cells = synthetic_pack(rec, 12, PARAMS, Spread(capacity=0.05, resistance=0.2, soc=0.03), seed=7)
    again = synthetic_pack(rec, 12, PARAMS, Spread(capacity=0.05, resistance=0.2, soc=0.03), seed=7)
    assert np.array_equal(cells[0].voltage_V, rec.voltage_V), "cell 0 is the recorded cell"
    for c, d in zip(cells, again):
        assert np.array_equal(c.voltage_V, d.voltage_V)
        assert "synthetic" in c.meta.extra and c.meta.name.startswith(rec.meta.name + "#cell")
        z = c.reference_soc()
        assert z.min() >= 0.0 and z.max() <= 1.0
        assert abs(c.meta.reference_capacity_Ah / rec.meta.reference_capacity_Ah - 1) <= 0.05
        assert np.array_equal(c.current_A, rec.current_A), "cells in series carry one current"
    assert len({round(float(c.voltage_V[200]), 6) for c in cells}) == 12, "the cells differ"
    with pytest.raises(ValueError, match="resistance"):
        Spread.parse("resistance=0.9")
    with pytest.raises(ValueError, match="expected"):
        Spread.parse("mass=1")


def test_bus_load_arithmetic():
    assert cc.frame_bits() == (111, 135)
    # 96 cells every 0.1 s: 194 frames of at most 135 bits, at 500 kbit/s.
    assert cc.bus_load(96, 0.1, 500_000) == pytest.approx(194 * 135 / 50_000)
    with pytest.raises(ValueError):
        cc.bus_load(1, 0.0, 500_000)


def test_overfull_bus_is_refused_in_real_time(tmp_path, capsys):
    # 200 cells every 0.1 s at 2x: 402 frames of 135 bits per 50 ms, more than 1 Mbit/s.
    status = main(["hil", "run", "--samples", "20", "--cells", "200", "--mode", "realtime", "--speed", "2",
                   "--out-dir", str(tmp_path)])
    assert status == 2
    assert "refused" in capsys.readouterr().out


@pytest.mark.parametrize("rate", [["--bitrate", "125000"], ["--bus-option", "bitrate=125000"]])
def test_the_bus_load_is_checked_at_the_bitrate_the_bus_is_given(tmp_path, capsys, rate):
    """A bit rate given as a python-can bus option is the bus's too: the load
    check took 500 kbit/s and let 60 cells on a 125 kbit/s bus through."""
    status = main(["hil", "run", "--target", "board", "--interface", "virtual", "--channel", f"rate-{tmp_path.name}",
                   "--cells", "60", *rate, "--samples", "5", "--out-dir", str(tmp_path)])
    assert status == 2
    assert "take 261 % of a 125 kbit/s bus" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("mode", [[], ["--mode", "lockstep"]])
def test_speed_is_refused_in_lock_step(tmp_path, capsys, monkeypatch, mode):
    """--speed paces a real-time replay; in lock-step (the default mode) it
    changed nothing, silently: refused, naming the option and the mode that takes it."""
    import bmsfil_hil.cli as hil_cli

    monkeypatch.setattr(hil_cli, "_replay_pack", None)  # never reached
    assert main(["hil", "run", "--samples", "20", "--speed", "10", *mode, "--out-dir", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "--speed 10 paces a real-time replay" in out and "add --mode realtime" in out
    assert len(out.strip().splitlines()) == 1


def test_realtime_mode_reports_latency_and_matches_lockstep(rec):
    target = make_target("host", PARAMS)
    bus = target.start()
    try:
        result, timing = replay_realtime(bus, [rec], speed=50.0, timeout_s=2.0)
    finally:
        target.stop()
    s = timing.summary()
    assert result.delivery.fault is None and timing.lost == 0
    assert len(timing.latency_s) == len(rec)
    assert 0 < s["latency_p50_ms"] <= s["latency_p99_ms"] <= s["latency_max_ms"]
    # Paced or not, the estimates are the estimator's.
    assert np.max(np.abs(result.soc[:, 0] - SocEstimator(PARAMS).run(as_carried(rec)).soc)) <= 1e-6


def test_a_logged_run_replays_to_the_same_estimates(rec, tmp_path):
    cells = synthetic_pack(rec, 3, PARAMS)
    log_path = tmp_path / "run.blf"
    log = open_log(log_path)
    target = make_target("host", PARAMS)
    bus = target.start()
    try:
        first = replay_lockstep(bus, cells, log=log)
    finally:
        target.stop()
        log.stop()
    (logged,) = read_log(log_path)
    assert len(logged.cells) == 3 and len(logged.cells[0]) == len(rec)
    assert np.array_equal(logged.logged_soc, first.soc)
    target = make_target("host", PARAMS)
    bus = target.start()
    try:
        again = replay_lockstep(bus, logged.cells)
    finally:
        target.stop()
    assert np.array_equal(again.soc, first.soc), "the log's measurements give the same estimates"
    with pytest.raises(LogError, match="no such log"):
        read_log(tmp_path / "missing.blf")
    empty = tmp_path / "empty.asc"
    empty.write_text("date Sun Nov 22 08:00:00.000 am 2026\nbase hex  timestamps absolute\n")
    with pytest.raises(LogError, match="no MeasPack"):
        read_log(empty)


def test_cli_pack_log_junit_and_from_log(tmp_path):
    log_path, js, xml = tmp_path / "pack.asc", tmp_path / "pack.json", tmp_path / "pack.xml"
    assert main(["hil", "run", "--samples", "120", "--cells", "4", "--log", str(log_path), "--json", str(js),
                 "--junit", str(xml), "--out-dir", str(tmp_path / "out"), "--no-plot"]) == 0
    doc = json.loads(js.read_text())["recordings"][0]
    assert len(doc["cells"]) == 4 and doc["bus_load"] == pytest.approx(cc.bus_load(4, 0.1, 500_000, 4), rel=0.05)
    assert all(c["plausibility_over_can"]["flags"] == [] for c in doc["cells"])
    suite = ET.parse(xml).getroot()
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    names = {p.get("name") for p in suite.iter("property")}
    assert {"rmse", "within_3sigma", "max_abs_soc_difference_vs_eval", "round_trip_p99_ms"} <= names
    assert sorted(p.name for p in (tmp_path / "out").glob("*.csv")) == [
        f"551_US06_25degC#cell00{i}.csv" for i in range(4)]
    again = tmp_path / "again.json"
    assert main(["hil", "run", "--from-log", str(log_path), "--json", str(again),
                 "--out-dir", str(tmp_path / "out2")]) == 0
    replayed = json.loads(again.read_text())["recordings"][0]
    assert replayed["max_abs_soc_difference_vs_log"] == 0.0 and replayed["flag_samples_unlike_log"] == 0
    assert replayed["flag_samples_compared"] == 4 * 120


def test_96_cell_pack_end_to_end_and_the_monitor_shows_it(tmp_path):
    log_path, js, snap = tmp_path / "pack96.blf", tmp_path / "run.json", tmp_path / "snap.json"
    assert main(["hil", "run", "--samples", "30", "--cells", "96", "--log", str(log_path), "--json", str(js),
                 "--out-dir", str(tmp_path / "out"), "--no-plot"]) == 0
    run = json.loads(js.read_text())["recordings"][0]
    assert len(run["cells"]) == 96 and run["delivery"]["estimates_received"] == 30 * 96
    assert main(["monitor", "--log", str(log_path), "--once", "--json", str(snap)]) == 0
    view = json.loads(snap.read_text())
    cells = view["cells"]
    assert len(cells) == 96
    assert all(not c["stale"] for c in cells)


def test_a_target_that_never_answers_is_a_fault_not_a_traceback(tmp_path, capsys):
    """A board on a bus where nothing answers: exit 1, the JSON says why,
    and the command does not claim a CSV it did not write."""
    js = tmp_path / "nobody.json"
    assert main(["hil", "run", "--target", "board", "--interface", "virtual", "--channel", f"nobody-{tmp_path.name}",
                 "--samples", "5", "--timeout", "0.2", "--json", str(js), "--out-dir", str(tmp_path / "out")]) == 1
    doc = json.loads(js.read_text())["recordings"][0]
    assert "did not come back" in doc["delivery"]["fault"]
    rmse = doc["cells"][0]["rmse"]
    assert rmse is None or math.isnan(rmse)  # nothing to score
    assert "csv" not in doc["cells"][0] and not list((tmp_path / "out").glob("*.csv"))
    assert "no estimate came back: no CSV written" in capsys.readouterr().out


def test_a_fault_the_target_reports_fails_the_run(tmp_path, capsys):
    """A board that answers every sample but reports a fault in its
    TargetStatus (here SEQUENCE_GAP at sequence 20): the fault was only in
    the JSON, the run 'passed' (exit 0, JUnit failures 0). Now it is printed,
    in the table, and fails the run and its test case."""
    import threading

    import can

    channel = f"faulty-{tmp_path.name}"
    device = can.Bus(interface="virtual", channel=channel)
    target = make_target("host", bundled_params())
    inline = target.start()
    stop = threading.Event()

    def board() -> None:
        counter = 0
        while not stop.is_set():
            msg = device.recv(timeout=0.1)
            if msg is None or msg.arbitration_id >= 0x200:
                continue
            if msg.arbitration_id == cc.FrameId.HOST_COMMAND:
                device.send(cc.encode_target_status(0, cc.TargetState.IDLE, None))
                continue
            inline.send(msg)
            answered = False
            while (out := inline.recv(timeout=0)) is not None:
                answered = True
                device.send(can.Message(arbitration_id=out.arbitration_id, data=out.data, is_extended_id=False))
            if answered and msg.arbitration_id == cc.FrameId.MEAS_CELL:
                seq = cc.decode(msg).sequence
                counter = (counter + 1) % 256
                device.send(cc.encode_target_status(counter, cc.TargetState.RUNNING, seq,
                                                    cc.FaultCode.SEQUENCE_GAP if seq == 20 else cc.FaultCode.NONE))

    thread = threading.Thread(target=board, daemon=True)
    thread.start()
    js, junit = tmp_path / "run.json", tmp_path / "run.xml"
    try:
        status = main(["hil", "run", "--target", "board", "--interface", "virtual", "--channel", channel,
                       "--samples", "40", "--json", str(js), "--junit", str(junit), "--out-dir", str(tmp_path / "o"),
                       "--no-plot"])
    finally:
        stop.set()
        thread.join(timeout=3)
        device.shutdown()
        target.stop()
    out = " ".join(capsys.readouterr().out.split())
    assert status == 1
    assert "the target reported 1 fault(s), the first: sample" in out and "(its last sequence 20): target reports " \
        "SEQUENCE_GAP" in out
    delivery = json.loads(js.read_text())["recordings"][0]["delivery"]
    assert delivery["fault"] is None and len(delivery["target_faults"]) == 1
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "1" and "SEQUENCE_GAP" in suite.find(".//failure").get("message")


def _interrupt_at(monkeypatch, module, name: str, call: int) -> None:
    """Make the `call`-th call of `module.name` raise KeyboardInterrupt, as Ctrl-C there would."""
    real = getattr(module, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_an_interrupted_run_keeps_what_was_done(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the second recording's replay: the first recording's
    results and the second's so far are in the table, the JSON and the
    JUnit (an error for the interrupted case), exit 130."""
    import bmsfil_hil.replay as replay_module

    _interrupt_at(monkeypatch, replay_module, "measurement_frames", 200 + 151)  # sample 150 of the second
    js, xml, rec = tmp_path / "run.json", tmp_path / "run.xml", bundled_recording().slice(0, 200)
    inputs = [str(rec.save(tmp_path / "a.npz")), str(rec.save(tmp_path / "b.npz"))]
    assert main(["hil", "run", *inputs, "--json", str(js), "--junit", str(xml), "--out-dir", str(tmp_path / "out"),
                 "--no-plot"]) == 130
    out = capsys.readouterr().out
    assert "bmsfil hil run: interrupted" in out and str(js) in out
    doc = json.loads(js.read_text())
    assert doc["interrupted"] is True and len(doc["recordings"]) == 2
    first, second = (r["delivery"] for r in doc["recordings"])
    assert first["interrupted"] is False and first["fault"] is None
    assert second["interrupted"] is True and second["fault"] == "interrupted at sample 150 of 200"
    assert second["samples_sent"] == 150
    assert doc["recordings"][1]["cells"][0]["max_abs_soc_difference_vs_eval"] <= 1e-6
    suite = ET.parse(xml).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "1")
    assert suite.findall("testcase")[1].find("error").get("type") == "interrupted"


def test_an_interrupted_fault_matrix_keeps_the_faults_run(tmp_path, monkeypatch, capsys):
    import bmsfil_hil.faults as faults_module

    _interrupt_at(monkeypatch, faults_module, "replay_lockstep", 4)  # the clean run, two faults, then Ctrl-C
    js, xml = tmp_path / "faults.json", tmp_path / "faults.xml"
    assert main(["hil", "faults", "--samples", "300", "--detect-samples", "0", "--json", str(js),
                 "--junit", str(xml)]) == 130
    assert "interrupted during" in capsys.readouterr().out
    doc = json.loads(js.read_text())
    assert len(doc["faults"]) == 2 and doc["interrupted_during"] not in {f["fault"] for f in doc["faults"]}
    suite = ET.parse(xml).getroot()
    assert (suite.get("tests"), suite.get("errors")) == ("3", "1")
    assert suite.findall("testcase")[-1].get("name") == doc["interrupted_during"]


def test_an_interrupted_score_keeps_the_recordings_scored(tmp_path, monkeypatch, capsys):
    import bmsfil_hil.cli as hil_cli

    rec = bundled_recording().slice(0, 100)
    inputs = [str(rec.save(tmp_path / "a.npz")), str(rec.save(tmp_path / "b.npz"))]
    log, js = tmp_path / "two.blf", tmp_path / "score.json"
    assert main(["hil", "run", *inputs, "--log", str(log), "--out-dir", str(tmp_path / "out"), "--no-plot"]) == 0
    _interrupt_at(monkeypatch, hil_cli, "expected_run", 2)
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "out")]) == 130
    assert "interrupted after 1 of 2 recording(s)" in capsys.readouterr().out
    doc = json.loads(js.read_text())
    assert doc["interrupted"] is True and [r["name"] for r in doc["recordings"]] == ["two-rec1"]


@pytest.mark.parametrize("options, expected", [
    (["--mode", "realtime", "--speed", "0"], "argument --speed: expected a number above 0, got 0"),
    (["--speed", "-1"], "argument --speed: expected a number above 0"),
    (["--cells", "2000"], "argument --cells: expected 1 to 1024 cells"),
    (["--cells", "0"], "argument --cells: expected at least 1, got 0"),
    (["--cells", "-2"], "argument --cells: expected at least 1, got -2"),
    (["--samples", "-1"], "argument --samples: expected at least 0"),
    (["--timeout", "0"], "argument --timeout: expected a number above 0"),
])
def test_run_refuses_bad_numbers_up_front(capsys, options, expected):
    with pytest.raises(SystemExit) as done:
        main(["hil", "run", *options])
    assert done.value.code == 2 and expected in capsys.readouterr().err


@pytest.mark.parametrize("option, path, expected", [
    ("--log", "out.txt", "--log {path}: the format is taken from the suffix: expected one of .blf, .asc, .log, "
                         "got .txt"),
    ("--log", "afile/x.blf", "--log: {tmp}/afile is a file, not a directory"),
    ("--out-dir", "afile/out", "--out-dir: cannot make the directory {path} (Not a directory)"),
])
def test_run_refuses_outputs_it_cannot_write_before_the_replay(tmp_path, capsys, monkeypatch, option, path,
                                                               expected):
    import bmsfil_hil.cli as hil_cli

    monkeypatch.setattr(hil_cli, "_replay_pack", None)  # never reached
    (tmp_path / "afile").write_text("a file where a directory would go\n")
    assert main(["hil", "run", option, str(tmp_path / path)]) == 2
    out = capsys.readouterr().out
    assert expected.format(path=tmp_path / path, tmp=tmp_path) in out and len(out.strip().splitlines()) == 1


def test_run_makes_the_directories_of_its_outputs(tmp_path):
    log, js, xml = tmp_path / "a" / "b" / "run.blf", tmp_path / "c" / "run.json", tmp_path / "d" / "run.xml"
    assert main(["hil", "run", "--samples", "20", "--log", str(log), "--json", str(js), "--junit", str(xml),
                 "--out-dir", str(tmp_path / "out"), "--no-plot"]) == 0
    assert log.is_file() and js.is_file() and xml.is_file()


@pytest.mark.parametrize("target", ["host", "reference"])
@pytest.mark.parametrize("option", ["--warm-reset-at", "--power-cycle-at"])
def test_resets_are_refused_on_the_desktop_targets(capsys, target, option):
    assert main(["hil", "run", "--target", target, option, "10", "--samples", "20"]) == 2
    out = capsys.readouterr().out
    assert f"target {target} runs on the desktop and has no reset" in out and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize("options", [["--interface", "socketcan"], ["--channel", "can0"],
                                     ["--bus-option", "fd=true"]])
def test_bus_options_without_target_board_are_refused(capsys, options):
    assert main(["hil", "run", *options, "--samples", "20"]) == 2
    out = capsys.readouterr().out
    assert f"{options[0]} open the bus of a board, and the target is host: add --target board" in out


def test_ctrl_c_before_the_replay_is_a_line_not_a_traceback(tmp_path, monkeypatch, capsys):
    import bmsfil_hil.cli as hil_cli

    _interrupt_at(monkeypatch, hil_cli, "load_as_is", 1)
    rec = bundled_recording().slice(0, 20).save(tmp_path / "a.npz")
    assert main(["hil", "run", str(rec), "--out-dir", str(tmp_path)]) == 130
    assert capsys.readouterr().out.strip() == "bmsfil hil run: interrupted"


def test_the_fault_matrix_exits_as_its_junit_says(tmp_path, capsys):
    """Without the long run (--detect-samples 0) the 0.5 A offset cannot show
    within 600 samples: its JUnit test case failed while the command exited
    0. Now both say so."""
    xml = tmp_path / "faults.xml"
    assert main(["hil", "faults", "--samples", "600", "--detect-samples", "0", "--junit", str(xml)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "faults that did not show on the bus (flags or delivery statistics): current_offset;" in out
    failed = [c.get("name") for c in ET.parse(xml).getroot().iter("testcase") if c.find("failure") is not None]
    assert failed == ["current_offset"]


@pytest.mark.parametrize("options", [["--seed", "3"], ["--spread", "capacity=0.3"]])
def test_a_synthetic_packs_shape_without_a_pack_is_refused(tmp_path, capsys, options):
    """--seed and --spread without --cells changed nothing, in silence."""
    assert main(["hil", "run", "--samples", "5", *options, "--out-dir", str(tmp_path)]) == 2
    assert ": for a synthetic pack of several cells, and there is one: add --cells N" in \
        " ".join(capsys.readouterr().out.split())


def test_a_target_process_that_ends_mid_run_is_quoted():
    """A MicroPython MemoryError on a large pack showed as 'socket disconnected' only."""
    from bmsfil_hil.cli import _ended_with

    class Ended:
        def alive(self) -> bool:
            return False

        def output(self) -> str:
            return "bmsfil micropython target: SLCAN on 127.0.0.1:1\nMemoryError: memory allocation failed\n"

    assert _ended_with(Ended()) == ("the target's process ended, its last words: bmsfil micropython target: SLCAN "
                                    "on 127.0.0.1:1 / MemoryError: memory allocation failed")
    assert _ended_with(object()) is None  # an in-process target


def test_samples_lost_in_real_time_fail_the_case(tmp_path):
    """A real-time run that lost a fifth of its samples passed, exit 0 and JUnit
    failures=0, its scores over the samples answered only."""
    from bmsfil_hil.junit import lost_in_real_time, write_junit

    delivery = {"fault": None, "target_faults": [], "samples_sent": 2000,
                "realtime": {"speed": 40.0, "latency_p50_ms": 900.0, "latency_p99_ms": 3027.0, "late_samples": 1588,
                             "lost_samples": 412}}
    assert lost_in_real_time(delivery) == ("412 of 2000 samples got no estimate in real time at 40x (the scores "
                                           "cover the others)")
    junit = tmp_path / "rt.xml"
    run = {"name": "rt", "delivery": delivery,
           "cells": [{"recording": "c0", "rmse": 0.01, "within_3sigma": 1.0, "max_abs_soc_difference_vs_eval": 0.0}]}
    write_junit(junit, [run], "micropython")
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "1" and "412 of 2000 samples" in suite.find("testcase/failure").get("message")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["realtime_lost_samples"] == "412" and props["realtime_latency_p99_ms"] == "3027"
    assert lost_in_real_time({**delivery, "realtime": {**delivery["realtime"], "lost_samples": 0}}) is None


def test_estimates_beyond_the_bar_fail_the_exit_status_as_the_junit(tmp_path, monkeypatch, capsys):
    """A target whose estimates drift from the C core's fails the command,
    not only its JUnit case (the exit status said 0 while the JUnit failed).
    The drift is made on the comparison's side: the desktop target is the C core."""
    import bmsfil_hil.cli as hil_cli

    real = hil_cli.expected_soc
    monkeypatch.setattr(hil_cli, "expected_soc", lambda rec, params, cycles: real(rec, params, cycles) + 2e-4)
    xml = tmp_path / "run.xml"
    assert main(["hil", "run", "--samples", "50", "--no-plot", "--out-dir", str(tmp_path), "--junit", str(xml)]) == 1
    assert "differ from the C core's by up to 2.0e-04 (551_US06_25degC), beyond the 0.0001" in capsys.readouterr().out
    assert ET.parse(xml).getroot().get("failures") == "1"
    monkeypatch.setattr(hil_cli, "expected_soc", lambda rec, params, cycles: real(rec, params, cycles) + 5e-5)
    assert main(["hil", "run", "--samples", "50", "--no-plot", "--out-dir", str(tmp_path), "--junit", str(xml)]) == 0
    assert ET.parse(xml).getroot().get("failures") == "0"
