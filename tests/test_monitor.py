"""`bmsfil monitor`: the pack view a log or a bus is decoded into."""

from __future__ import annotations

import itertools
import json
import math
import threading

import can
import pytest
from rich.console import Console

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.params import bundled_params
from bmsfil_hil.monitor import PackView, render
from bmsfil_hil.replay import open_log, replay_lockstep
from bmsfil_hil.targets import make_target


def _at(msg: can.Message, t: float) -> can.Message:
    msg.timestamp = t
    return msg


def _garble(message: can.Message, **raw_changes: int) -> can.Message:
    """The frame with some raw signal values replaced (bypassing range checks)."""
    msg = cc.database().get_message_by_frame_id(message.arbitration_id)
    raw = msg.decode(bytes(message.data), decode_choices=False, scaling=False)
    raw.update(raw_changes)
    return can.Message(arbitration_id=message.arbitration_id, is_extended_id=False,
                       data=msg.encode(raw, scaling=False, strict=False))


def test_log_of_a_three_cell_replay_shows_the_last_estimates(tmp_path, capsys):
    rec = bundled_recording().slice(0, 50)
    log_path = tmp_path / "run.blf"
    target = make_target("host", bundled_params())
    bus = target.start()
    log = open_log(log_path)
    try:
        result = replay_lockstep(bus, [rec, rec, rec], log=log)
    finally:
        target.stop()
        log.stop()
    assert result.delivery.fault is None and result.samples_done == 50

    out = tmp_path / "out.json"
    assert main(["monitor", "--log", str(log_path), "--once", "--json", str(out)]) == 0
    snap = json.loads(out.read_text())
    cells = snap["cells"]
    assert [c["cell_index"] for c in cells] == [0, 1, 2]
    for c in cells:
        assert c["soc"] == pytest.approx(result.soc[-1, c["cell_index"]], abs=1e-6)
        assert c["soc_sigma"] == pytest.approx(result.soc_sigma[-1, c["cell_index"]], abs=2e-4)
        assert c["sequence"] == 49 and not c["stale"]
        assert c["voltage_V"] == pytest.approx(rec.voltage_V[-1], abs=1e-5)
        assert c["temp_C"] == pytest.approx(rec.temp_C[-1], abs=0.01)
    pack = snap["pack"]
    assert pack["cells_seen"] == 3 and pack["n_cells"] == 3 and pack["sequence"] == 49
    assert pack["current_A"] == pytest.approx(rec.current_A[-1], abs=1e-3)
    # 50 samples of MeasPack + 3 MeasCell + 3 EstCell + 3 EstCellFlags + 3 EstCellHealth
    # + 3 EstCellPower.
    assert pack["frames_decoded"] == 50 * 16
    # The state of power's first result comes after about 170 samples: none yet.
    assert all(c["power_latest"] is None and c["power"] == {} for c in cells)
    assert all(c["plausibility"] == [] and c["unseen_current_A"] is not None for c in cells)
    assert pack["frames_not_in_contract"] == pack["frames_undecodable"] == 0
    assert pack["last_error"] is None
    printed = capsys.readouterr().out
    assert "3 cells seen" in printed and "STALE" not in printed
    assert "\x1b[" not in printed  # not a terminal: plain text


def test_garbage_frames_are_counted_not_raised():
    view = PackView()
    good = cc.encode_est_cell(7, 0, 0.5, 0.01)
    garbage = [
        can.Message(arbitration_id=0x123, is_extended_id=False, data=bytes(8)),  # unknown ID
        can.Message(arbitration_id=cc.FrameId.EST_CELL, is_extended_id=True, data=bytes(8)),  # extended
        can.Message(arbitration_id=cc.FrameId.MEAS_PACK, is_extended_id=False, data=bytes(3)),  # wrong DLC
        _garble(cc.encode_est_cell(1, 0, math.nan, math.nan), soc_sigma=5),  # soc_valid 0, sigma not 0
    ]
    for t, msg in enumerate([good, *garbage]):
        view.feed(_at(msg, float(t)))
    pack = view.snapshot()["pack"]
    assert pack["frames_decoded"] == 1
    assert pack["frames_not_in_contract"] == 2
    assert pack["frames_undecodable"] == 2
    assert "0x200 (EstCell)" in pack["last_error"] and "soc_sigma" in pack["last_error"]
    # Each kind counted, with where the first was (only the last error was kept, without where).
    assert [(e["kind"], e["count"], e["first_at"], e["in_contract"]) for e in pack["decode_errors"]] == [
        ("ID 0x123, not in the contract", 1, 1.0, False), ("29-bit (extended) IDs", 1, 2.0, False),
        ("0x100 MeasPack: truncated: expected DLC 8, got DLC 3 with 3 data bytes", 1, 3.0, True),
        ("0x200 EstCell, field soc_sigma", 1, 4.0, True)]
    # The garbled EstCell did not overwrite the good estimate.
    (cell,) = view.snapshot()["cells"]
    assert cell["soc"] == 0.5 and cell["sequence"] == 7
    view.feed(_at(can.Message(arbitration_id=0x123, is_extended_id=False, data=bytes(8)), 5.0))
    text = " ".join(_text(view).split())
    assert "3 not in the contract, 2 undecodable" in text
    assert ("not decoded: 2 × ID 0x123, not in the contract (first at 1.000); 1 × 29-bit (extended) IDs (first at "
            "2.000); 1 × 0x100 MeasPack: truncated: expected DLC 8, got DLC 3 with 3 data bytes (first at 3.000); "
            "1 more kind(s), each in --json") in text
    error = view.snapshot()["pack"]["decode_errors"][-1]
    assert error["field"] == "soc_sigma" and "soc_sigma" in error["first_error"]


def test_a_cell_whose_estimate_is_older_than_stale_is_stale():
    view = PackView(stale_s=5.0)
    view.feed(_at(cc.encode_est_cell(1, 0, 0.40, 0.01), 100.0))
    view.feed(_at(cc.encode_est_cell(1, 1, 0.60, 0.01, cc.FLAG_GATED | cc.FLAG_TEMP_INVALID), 100.0))
    view.feed(_at(cc.encode_est_cell_health(1, 1, capacity_Ah=2.9, r0_ohm=0.0213, core_temp_C=31.5), 100.0))
    view.feed(_at(cc.encode_est_cell_power(1, 1, 20.5, 96.0, cc.PowerHorizon.PEAK_10S), 100.0))
    view.feed(_at(cc.encode_est_cell_power(1, 0), 100.0))  # no result yet
    view.feed(_at(cc.encode_meas_cell(2, 2, 3.7, 25.0), 103.0))  # a cell without any estimate yet
    view.feed(_at(cc.encode_est_cell(9, 1, 0.61, 0.01), 104.0))
    view.feed(_at(cc.encode_target_status(3, cc.TargetState.RUNNING, 9, instructions_per_cell_step=1392), 105.5))
    snap = view.snapshot()
    c0, c1, c2 = snap["cells"]
    assert c0["age_s"] == pytest.approx(5.5) and c0["stale"]
    assert c1["age_s"] == pytest.approx(1.5) and not c1["stale"]
    assert c1["capacity_Ah"] == pytest.approx(2.9) and c1["flags"] == [] and c1["sequence"] == 9
    assert c1["core_temp_C"] == pytest.approx(31.5) and c0["core_temp_C"] is None
    assert c1["r0_ohm"] == pytest.approx(0.0213) and c0["r0_ohm"] is None
    assert c1["power"] == {"peak_10s": {"discharge_W": pytest.approx(96.0), "charge_W": pytest.approx(20.5)}}
    assert c1["power_latest"] == "peak_10s" and c0["power_latest"] is None
    assert c2["age_s"] is None and c2["stale"] and c2["soc"] is None and c2["voltage_V"] == pytest.approx(3.7)
    assert snap["pack"]["soc_min"] == pytest.approx(0.40) and snap["pack"]["soc_max"] == pytest.approx(0.61)
    assert snap["pack"]["target_status"] == {
        "state": "running", "fault": "none", "start": "power_on", "last_sequence": 9, "crc_errors": 0,
        "instructions_per_cell_step": 1392, "counter": 3,
    }
    assert snap["pack"]["target_profile"] is None
    view.feed(_at(cc.encode_target_profile(1414, 287, 828, None), 105.5))
    assert view.snapshot()["pack"]["target_profile"] == {
        "soc_filter": 1414, "monitor": 287, "health_and_power": 828, "core_temp": None}
    assert "1392 instr/cell step (SOC filter / monitor / capacity, R0, power / core temp. 1414 / 287 / 828 / -)" \
        in " ".join(_text(view).split())
    # Ages may also be taken at another time (a live bus uses the host's clock).
    assert not view.snapshot(now=104.5)["cells"][0]["stale"]
    rows = {line.split("│")[1].strip(): line for line in _text(view).splitlines() if line.count("│") > 2}
    assert "STALE" in rows["0"] and "STALE" not in rows["1"] and "no estimate" in rows["2"]
    assert "31.5" in rows["1"] and "core °C" in _text(view)
    assert "21.3" in rows["1"] and "R0 mΩ" in _text(view)
    assert "96/20 10s" in rows["1"]
    view.feed(_at(cc.encode_est_cell(10, 0, 0.41, 0.01, cc.FLAG_GATED | cc.FLAG_TEMP_INVALID), 106.0))
    assert view.snapshot()["cells"][0]["flags"] == ["temp_invalid", "gated"]


def test_target_profile_is_decoded_and_changes_only_the_profile():
    view = PackView()
    view.feed(_at(cc.encode_est_cell(4, 0, 0.5, 0.01), 10.0))
    view.feed(_at(cc.encode_target_status(1, cc.TargetState.RUNNING, 4, instructions_per_cell_step=3470), 10.0))
    before = view.snapshot()
    view.feed(_at(cc.encode_target_profile(1412, 285, 802, 973), 10.0))
    after = view.snapshot()
    assert after["pack"]["frames_decoded"] == before["pack"]["frames_decoded"] + 1
    assert after["pack"]["frames_not_in_contract"] == 0 and after["pack"]["last_error"] is None
    assert after["pack"].pop("target_profile") == {
        "soc_filter": 1412, "monitor": 285, "health_and_power": 802, "core_temp": 973}
    before["pack"].pop("target_profile")
    after["pack"]["frames_decoded"] = before["pack"]["frames_decoded"]
    assert after == before


def test_missing_log_is_exit_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "no-such-run.blf"
    assert main(["monitor", "--log", str(missing), "--once"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such log file" in err


@pytest.mark.parametrize("source, expected", [
    (["--interface", "virtual", "--channel", "bmsfil-test-speed", "--once", "--window", "0.1"],
     "a live bus (--interface) comes at its own pace"),
    (["--log", "run.blf", "--once"], "--once reads the whole log at once"),
])
def test_speed_where_nothing_is_paced_is_refused(capsys, source, expected):
    """--speed paces the play of a log; on a live bus or with --once it changed nothing, silently."""
    assert main(["monitor", *source, "--speed", "4"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("bmsfil monitor: --speed 4 paces the play of a log (--log, without --once); ") and expected in err


@pytest.mark.parametrize("source, expected", [
    (["--log", "run.blf", "--once"], "a log (--log) is not listened to but read"),
    (["--log", "run.blf"], "a log (--log) is not listened to but read"),
    (["--interface", "virtual", "--channel", "bmsfil-test-window"], "without --once the view runs until Ctrl-C"),
])
def test_window_where_nothing_listens_for_it_is_refused(capsys, source, expected):
    """--window is how long --once listens to a live bus; with --log or without --once it changed nothing."""
    assert main(["monitor", *source, "--window", "3"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("bmsfil monitor: --window 3 is how long --once listens to a live bus") and expected in err


def test_unopenable_bus_is_exit_2_with_one_line(capsys):
    assert main(["monitor", "--interface", "no-such-interface", "--channel", "can0", "--once"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bmsfil monitor: --interface 'no-such-interface': python-can has no such interface")
    assert "\n" not in err


def test_once_on_a_live_bus_collects_for_the_window(tmp_path):
    channel = "bmsfil-test-monitor"
    sender = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    out = tmp_path / "live.json"

    def send_soon():
        for k in range(5):
            sender.send(cc.encode_est_cell(k, 0, 0.3, 0.02))

    timer = threading.Timer(0.2, send_soon)
    timer.start()
    try:
        assert main(["monitor", "--interface", "virtual", "--channel", channel, "--once",
                     "--window", "0.6", "--json", str(out)]) == 0
    finally:
        timer.join()
        sender.shutdown()
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["soc"] == pytest.approx(0.3) and cell["sequence"] == 4 and not cell["stale"]


def _text(view: PackView) -> str:
    console = Console(width=140, color_system=None)
    with console.capture() as capture:
        console.print(render(view.snapshot()))
    return capture.get()


def test_a_text_log_cut_off_mid_line_is_read_up_to_the_cut(tmp_path, capsys):
    """As hil score reads it: the frames before the cut, and a warning that
    its last (half) line is skipped; printed to a pipe at full width (no '4.0…')."""
    rec = bundled_recording().slice(0, 40)
    log_path = tmp_path / "run.log"
    target = make_target("host", bundled_params())
    bus = target.start()
    log = open_log(log_path)
    try:
        replay_lockstep(bus, [rec], log=log)
    finally:
        target.stop()
        log.stop()
    lines = log_path.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.log"
    cut.write_text("".join(lines[:150]) + lines[150][:14])
    out = tmp_path / "out.json"
    assert main(["monitor", "--log", str(cut), "--once", "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 line(s) python-can cannot read, skipped (line 151: " in captured.err and str(cut) in captured.err
    assert json.loads(out.read_text())["pack"]["frames_decoded"] == 150
    voltage = json.loads(out.read_text())["cells"][0]["voltage_V"]
    assert f"{voltage:.4f}" in captured.out and "…" not in captured.out


def _lockstep_frames(samples: int, cells: int, silent_cell: int, silent_after: int, channel: int = 0,
                     soc: float = 0.5) -> list[can.Message]:
    """The frames of a lock-step replay at 0.1 s per sample, written in 0.1 ms
    per sample of the log's clock; `silent_cell` sends no estimate after sample `silent_after`."""
    frames = []
    for k in range(samples):
        seq = k % cc.SEQUENCE_MODULUS
        sample = [cc.encode_meas_pack(seq, 0.1, -1.0, cells)]
        sample += [cc.encode_meas_cell(seq, i, 3.7, 25.0) for i in range(cells)]
        sample += [cc.encode_est_cell(seq, i, soc, 0.01) for i in range(cells) if i != silent_cell or k <= silent_after]
        for msg in sample:
            msg.timestamp, msg.channel = k * 1e-4, channel
        frames += sample
    return frames


def test_a_cell_silent_in_a_lockstep_log_is_stale_by_the_samples_it_missed(tmp_path, capsys):
    """The log's clock says 0.02 s passed; the contract's samples say 10 s
    (9.9 s of them complete before the newest)."""
    log = tmp_path / "lockstep.blf"
    with can.Logger(str(log)) as out:
        for msg in _lockstep_frames(200, 3, silent_cell=1, silent_after=99):
            out.on_message_received(msg)
    js = tmp_path / "snap.json"
    assert main(["monitor", "--log", str(log), "--once", "--json", str(js)]) == 0
    snap = json.loads(js.read_text())
    c0, c1, c2 = snap["cells"]
    assert c1["age_s"] < 0.02 and c1["behind_s"] == pytest.approx(9.9) and c1["stale"] and c1["sequence"] == 99
    assert c1["behind_samples"] == 99 and c0["behind_samples"] == 0
    assert c0["behind_s"] == c2["behind_s"] == 0.0 and not c0["stale"] and not c2["stale"]
    assert snap["pack"]["cells_stale"] == 1
    assert "1 STALE" in capsys.readouterr().out
    # Within --stale of the newest sample, by the same count: fresh.
    assert main(["monitor", "--log", str(log), "--once", "--json", str(js), "--stale", "11"]) == 0
    assert not json.loads(js.read_text())["cells"][1]["stale"]


def test_contract_time_skips_a_repeated_measpack_and_wraps_with_the_sequence():
    view = PackView(stale_s=5.0)
    for msg in _lockstep_frames(5000, 2, silent_cell=1, silent_after=4950):
        view.feed(msg)
    view.feed(_at(cc.encode_meas_pack(4999 % cc.SEQUENCE_MODULUS, 0.1, -1.0, 2), 0.5))  # a repeat
    c0, c1 = view.snapshot()["cells"]
    assert c0["behind_s"] == 0.0 and c1["behind_s"] == pytest.approx(4.8) and not c1["stale"]
    assert c1["behind_samples"] == 48, "counted across the 12-bit wrap"


def test_cells_not_yet_answered_in_the_newest_sample_are_not_stale():
    """Samples 9.4 s apart (a NASA life) replayed in lock-step, the log's
    clock a millisecond a sample: right after cell 0's estimate of a sample,
    cells 1 and 2 have not answered it yet; they missed nothing (they were
    shown 9.4 s behind, stale)."""
    view = PackView(stale_s=5.0)
    for k in range(3):
        view.feed(_at(cc.encode_meas_pack(k, 9.4, -2.0, 3), k * 1e-3))
        for i in range(3):
            view.feed(_at(cc.encode_meas_cell(k, i, 3.7, 25.0), k * 1e-3))
        for i in range(3 if k < 2 else 1):
            view.feed(_at(cc.encode_est_cell(k, i, 0.5, 0.01), k * 1e-3 + 1e-4))
    cells = view.snapshot()["cells"]
    assert [c["behind_s"] for c in cells] == [0.0, 0.0, 0.0] and not any(c["stale"] for c in cells)


def test_a_log_of_two_channels_is_shown_one_channel_at_a_time(tmp_path, capsys):
    frames = [m for pair in itertools.zip_longest(_lockstep_frames(20, 1, -1, 0, channel=0, soc=0.25),
                                                  _lockstep_frames(20, 2, -1, 0, channel=1, soc=0.75))
              for m in pair if m is not None]
    log = tmp_path / "two.asc"
    with can.Logger(str(log)) as out:
        for msg in frames:
            out.on_message_received(msg)
    capsys.readouterr()
    assert main(["monitor", "--log", str(log), "--once"]) == 2
    err = capsys.readouterr().err
    assert "more than one channel (0, 1" in err and "--channel 0 or --channel 1" in err, err
    js = tmp_path / "snap.json"
    assert main(["monitor", "--log", str(log), "--once", "--channel", "1", "--json", str(js)]) == 0
    snap = json.loads(js.read_text())
    assert [c["soc"] for c in snap["cells"]] == [pytest.approx(0.75)] * 2 and snap["pack"]["n_cells"] == 2


@pytest.mark.parametrize("command", [["monitor", "--once"], ["hil", "run", "--target", "board", "--samples", "5"]])
def test_an_interface_missing_its_settings_is_one_line_not_a_traceback(tmp_path, capsys, command):
    """python-can raises TypeError for an interface that needs settings it
    was not given (serial without a port): hil run --target board printed a
    traceback where monitor said what was wrong."""
    argv = [*command, "--interface", "serial", "--channel", "0"]
    if command[0] == "hil":
        argv += ["--out-dir", str(tmp_path)]
    assert main(argv) in (1, 2)
    captured = capsys.readouterr()
    err = " ".join((captured.err + captured.out).split())
    assert "could not open the CAN bus (interface='serial', channel=0): Must specify a serial port." in err
    assert "--bus-option KEY=VALUE" in err and "Traceback" not in err


def test_a_cell_of_the_pack_that_never_speaks_and_one_outside_it_are_shown():
    """A pack of 3 (MeasPack's n_cells) whose cell 1 never answered was shown
    as two cells and nothing STALE; a frame of cell 7 made a seventh row
    as if the pack had one."""
    view = PackView()
    view.feed(_at(cc.encode_meas_pack(0, 0.1, -1.0, 3), 10.0))
    for index in (0, 2, 7):
        view.feed(_at(cc.encode_est_cell(0, index, 0.5, 0.01), 10.0))
    snap = view.snapshot()
    cells = {c["cell_index"]: c for c in snap["cells"]}
    assert sorted(cells) == [0, 1, 2, 7]
    assert cells[1]["stale"] and not cells[1]["heard"] and cells[1]["age_s"] is None and cells[1]["in_pack"]
    assert not cells[0]["stale"] and cells[0]["in_pack"] and cells[7]["in_pack"] is False
    pack = snap["pack"]
    assert (pack["cells_seen"], pack["cells_silent"], pack["cells_outside_pack"], pack["cells_stale"]) == (3, 1, 1, 0)
    cells[7]["soc"] = None  # (the summary's SOC is the pack's cells')
    view.feed(_at(cc.encode_est_cell(1, 7, 0.9, 0.01), 10.0))
    assert view.snapshot()["pack"]["soc_max"] == pytest.approx(0.5)
    console = Console(width=200, color_system=None)
    with console.capture() as capture:
        console.print(render(snap))
    text = capture.get()
    assert "STALE SILENT" in text and "NOT IN PACK" in text
    assert "1 of the pack SILENT" in text and "1 NOT IN PACK (beyond the 3 cells MeasPack declares)" in text


def test_a_target_that_stopped_answering_leaves_every_cell_stale():
    """Every cell silent from sample 100 on while the measurements go on to
    199: each is 9.9 s behind the newest sample sent (it was judged against
    the newest sample estimated, so all looked fresh)."""
    frames = [m for m in _lockstep_frames(200, 3, silent_cell=-1, silent_after=199)
              if not (m.arbitration_id == cc.FrameId.EST_CELL and cc.decode(m).sequence > 99)]
    view = PackView(stale_s=5.0)
    for msg in frames:
        view.feed(msg)
    snap = view.snapshot()
    assert [c["behind_s"] for c in snap["cells"]] == pytest.approx([9.9] * 3)
    assert snap["pack"]["cells_stale"] == 3


def test_the_view_keeps_the_faults_a_target_reported_and_marks_a_cell_without_a_valid_soc():
    view = PackView()
    for msg in _lockstep_frames(20, 2, silent_cell=-1, silent_after=19):
        view.feed(msg)
    for counter, (fault, crc) in enumerate([(cc.FaultCode.CRC_ERROR, 1), (cc.FaultCode.CRC_ERROR, 3),
                                            (cc.FaultCode.NONE, 3)], start=1):
        view.feed(_at(cc.encode_target_status(counter, cc.TargetState.RUNNING, 19, fault, crc_errors=crc), 0.1))
    view.feed(_at(cc.encode_est_cell(20, 1, math.nan, math.nan, cc.FLAG_VOLTAGE_INVALID), 0.1))
    nan_time = cc.encode_est_cell(20, 0, 0.5, 0.01)
    nan_time.timestamp = math.nan  # a log line's time damaged: no time of its own, not a crash of --json
    view.feed(nan_time)
    snap = view.snapshot()
    pack = snap["pack"]
    assert pack["faults_reported"] == {"crc_error": 2} and pack["crc_errors"] == 3
    assert pack["target_status"]["fault"] == "none", "the last status alone said nothing was wrong"
    assert pack["cells_without_valid_soc"] == 1 and pack["soc_min"] == pack["soc_max"] == 0.5
    json.dumps(snap, allow_nan=False)
    text = _text(view)
    assert "faults reported: crc_error ×2 · 3 measurement frame(s) refused" in text and "NO VALID SOC" in text


def test_a_cell_measured_but_never_answered_is_silent():
    """The harness's own MeasCell is no word from the target: a cell whose
    target never answered was STALE with 'no estimate', not SILENT (README)."""
    view = PackView()
    for msg in _lockstep_frames(10, 3, silent_cell=2, silent_after=-1):
        view.feed(msg)
    snap = view.snapshot()
    assert [c["heard"] for c in snap["cells"]] == [True, True, False]
    assert snap["pack"]["cells_silent"] == 1 and snap["cells"][2]["voltage_V"] == pytest.approx(3.7)
    assert "SILENT" in _text(view)


def test_playing_a_log_does_not_wait_out_a_long_pause(monkeypatch):
    """--speed 1 over a log with a week's pause sat for the week; the pause is
    cut to 10 s of log time, as the real-time replay cuts a recording's gaps."""
    import bmsfil_hil.monitor as monitor

    clock = [0.0]
    monkeypatch.setattr(monitor.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(monitor.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))

    class _Live:
        def update(self, *args, **kwargs) -> None:
            pass

    times = [0.0, 0.5, 0.5 + 7 * 86400, 1.5 + 7 * 86400]
    frames = [_at(cc.encode_est_cell(k, 0, 0.5, 0.01), t) for k, t in enumerate(times)]
    monitor._play(frames, PackView(), _Live(), "t", speed=1.0)
    assert clock[0] == pytest.approx(0.5 + 10.0 + 1.0)


def test_a_repeated_or_following_status_counts_its_crc_errors_once():
    """A status repeated (a bus's echo) or one after a lost one was taken for a
    restart and its whole count added again (9 for 3)."""
    view = PackView()
    for counter in (0, 1, 1, 3):
        state = cc.TargetState.IDLE if counter == 0 else cc.TargetState.RUNNING
        view.feed(_at(cc.encode_target_status(counter, state, None, cc.FaultCode.CRC_ERROR if counter == 1 else 0,
                                              crc_errors=3), 1.0))
    pack = view.snapshot()["pack"]
    assert pack["crc_errors"] == 3 and pack["faults_reported"] == {"crc_error": 1}


def test_lost_samples_skipped_estimates_and_lost_statuses_are_counted():
    """Jumps of the MeasPack sequence, of a cell's EstCell sequence and of the
    TargetStatus counter went unsaid; a repeat, and the harness starting
    again at sequence 0 (a status at counter 0, not running: the target
    restarting), are no loss."""
    def lost(m: can.Message) -> bool:
        frame = cc.decode(m)
        return 10 <= frame.sequence < 15 or (isinstance(frame, cc.EstCell) and frame.cell_index == 1
                                             and 30 <= frame.sequence < 33)

    view = PackView()
    for msg in _lockstep_frames(60, 2, silent_cell=-1, silent_after=59):
        if not lost(msg):
            view.feed(msg)
    view.feed(_at(cc.encode_meas_pack(59, 0.1, -1.0, 2), 0.006))  # a repeat
    for msg in _lockstep_frames(3, 2, silent_cell=-1, silent_after=2):  # the harness starts again
        view.feed(_at(msg, msg.timestamp + 0.01))
    for counter, state in [(0, cc.TargetState.IDLE), (1, cc.TargetState.RUNNING), (2, cc.TargetState.RUNNING),
                           (5, cc.TargetState.RUNNING), (0, cc.TargetState.BOOTING), (1, cc.TargetState.RUNNING)]:
        view.feed(_at(cc.encode_target_status(counter, state, None), 0.02 + counter * 1e-3))
    snap = view.snapshot()
    assert snap["pack"]["samples_lost"] == {"count": 5, "first": [{"after": 9, "missing": 5,
                                                                   "at": pytest.approx(15e-4)}], "reordered": 0}
    c0, c1 = snap["cells"]
    assert c0["estimates_skipped"] == {"count": 5, "first": [{"after": 9, "missing": 5, "at": pytest.approx(15e-4)}],
                                       "reordered": 0}
    assert c1["estimates_skipped"]["count"] == 8
    assert [(g["after"], g["missing"]) for g in c1["estimates_skipped"]["first"]] == [(9, 5), (29, 3)]
    assert snap["pack"]["status_frames_lost"] == {"count": 2, "first": [{"after": 2, "missing": 2,
                                                                         "at": pytest.approx(0.025)}], "reordered": 0}
    text = " ".join(_text(view).split())
    assert "LOST: 5 sample(s) missing from the MeasPack sequence (5 after sequence 9 at 0.002)" in text
    assert "2 cell(s) skipped estimates (lost, or not sent): cell 0: 5 (5 after sequence 9" in text
    assert "cell 1: 8 (5 after sequence 9 at 0.002, 3 after sequence 29 at 0.003)" in text
    assert "LOST: 2 TargetStatus frame(s) missing from its counter (2 after counter 2 at 0.025)" in text


def test_where_a_loss_or_an_error_was_is_said_from_the_first_frame():
    """A bus's timestamps (seconds since 1970) were given as they are: 'at 1765150000.123'."""
    view = PackView()
    t0 = 1_765_150_000.0
    for k in (100, 101, 104):
        view.feed(_at(cc.encode_meas_pack(k, 0.1, -1.0, 1), t0 + (k - 100) * 0.1))
    view.feed(can.Message(arbitration_id=0x7DF, is_extended_id=False, data=bytes(8), timestamp=t0 + 0.5))
    pack = view.snapshot()["pack"]
    assert pack["samples_lost"]["first"] == [{"after": 101, "missing": 2, "at": pytest.approx(0.4)}]
    assert pack["decode_errors"][0]["first_at"] == pytest.approx(0.5)
    text = " ".join(_text(view).split())
    assert "(2 after sequence 101 at 0.400)" in text and "(first at 0.500)" in text


def test_a_sample_put_back_in_order_is_not_lost_and_an_old_estimate_not_shown():
    """Sample 11 logged before 10 read as 'LOST 1' and a cell's '1 after sequence 9, 1 after
    10' (counted twice), and the older EstCell overwrote the SOC shown (a review's)."""
    view = PackView()
    order = [*range(100, 110), 111, 110, *range(112, 120)]  # (one of the first 64 going back is a restart)
    for k in order:
        view.feed(_at(cc.encode_meas_pack(k, 0.1, -1.0, 1), k * 1e-3))
        view.feed(_at(cc.encode_est_cell(k, 0, 0.4 + k * 1e-3, 0.01), k * 1e-3))
        if k == 111:  # an old estimate again, long behind: late, and no loss taken back
            view.feed(_at(cc.encode_est_cell(103, 0, 0.9, 0.01), k * 1e-3))
    snap = view.snapshot()
    assert snap["pack"]["samples_lost"] == {"count": 0, "first": [], "reordered": 1}
    (cell,) = snap["cells"]
    assert cell["estimates_skipped"] == {"count": 0, "first": [], "reordered": 1}
    assert cell["estimates_late"] == 2 and cell["sequence"] == 119 and cell["soc"] == pytest.approx(0.519)
    view.feed(_at(cc.encode_est_cell(111, 0, 0.9, 0.01), 0.2))  # after 119: behind its last, not shown
    assert view.snapshot()["cells"][0]["soc"] == pytest.approx(0.519)
    text = " ".join(_text(view).split())
    assert "LOST" not in text and "skipped estimates" not in text
    assert "1 MeasPack(s) out of order (after a later one, put back on the bus): not lost" in text
    assert ("1 cell(s) with EstCells behind their last (out of order, or old ones again: counted, not shown): "
            "cell 0: 3, 1 of them counted skipped a moment before") in text
    # Of a gap of 3, one arrives late: 2 lost, the gap said as 2.
    view = PackView()
    for k in [100, 101, 105, 103, 106]:
        view.feed(_at(cc.encode_meas_pack(k, 0.1, -1.0, 1), k * 1e-3))
    assert view.snapshot()["pack"]["samples_lost"] == {"count": 2, "first": [{"after": 101, "missing": 2,
                                                                              "at": pytest.approx(0.005)}],
                                                       "reordered": 1}


def test_two_targets_statuses_interleaved_are_said_not_counted_lost():
    """Two boards each sending TargetStatus, their counters interleaved (10, 200, 11, 201, ...),
    were counted as thousands of frames lost (a review's); a status put back in order is
    neither lost nor interleaved."""
    view = PackView()
    for k in range(100):
        for i, counter in enumerate((10 + k, 200 + k)):
            view.feed(_at(cc.encode_target_status(counter % 256, cc.TargetState.RUNNING, k), k * 0.02 + i * 0.01))
    pack = view.snapshot()["pack"]
    assert pack["status_frames_lost"]["count"] == 0 and pack["status_counters_interleaved"] == 198
    text = " ".join(_text(view).split())
    assert "TargetStatus counters interleaved (two targets?): 198 status(es)" in text and "LOST" not in text
    view = PackView()
    for k, counter in enumerate([1, 3, 2, 4, 5, 60, 61]):
        view.feed(_at(cc.encode_target_status(counter, cc.TargetState.RUNNING, k), k * 0.1))
    pack = view.snapshot()["pack"]
    assert pack["status_counters_interleaved"] == 0
    assert pack["status_frames_lost"] == {"count": 54, "first": [{"after": 5, "missing": 54, "at": pytest.approx(0.5)}],
                                          "reordered": 1}


def test_two_targets_answering_for_one_cell_are_not_mixed():
    """A second board answering for cell 1 overwrote the first's estimate
    sample by sample, in silence; an echo of the same estimate is none."""
    view = PackView()
    for k in range(3):
        view.feed(_at(cc.encode_est_cell(k, 1, 0.50, 0.01), k + 0.1))
        view.feed(_at(cc.encode_est_cell(k, 1, 0.50, 0.01), k + 0.2))  # an echo
        view.feed(_at(cc.encode_est_cell(k, 1, 0.30, 0.01), k + 0.3))
    (cell,) = view.snapshot()["cells"]
    assert cell["soc"] == pytest.approx(0.50) and cell["sequence"] == 2
    assert cell["conflicts"] == {"count": 3, "first": {"sequence": 0, "at": pytest.approx(0.2),  # after the first
                                                        "soc_kept": pytest.approx(0.50),
                                                        "soc_other": pytest.approx(0.30)}}
    assert view.snapshot()["pack"]["cells_with_conflicts"] == 1
    text = " ".join(_text(view).split())
    assert ("cell 1: 3 EstCell(s) for a sequence it had an estimate of, with another SOC (first: sequence 0 at 0.200, "
            "SOC 50.00 % kept, then 30.00 %): two targets answering for cell 1?") in text
    assert "TWO ANSWERS" in text
    for index in range(2, 6):  # a second board for a whole module: the first three cells named, the others counted
        view.feed(_at(cc.encode_est_cell(0, index, 0.50, 0.01), 5.0))
        view.feed(_at(cc.encode_est_cell(0, index, 0.30, 0.01), 5.0))
    text = " ".join(_text(view).split())
    assert "two targets answering for cell 3?" in text and "cell 4:" not in text
    assert "... and 2 more cell(s) answered twice (each in --json)" in text


def test_health_power_and_plausibility_whose_frames_stopped_are_old_not_current():
    """A target that stops sending EstCellHealth, EstCellPower and EstCellFlags
    (a firmware fault, a filter on the bus) left their last values shown as
    current for ever: old by their sequence behind the cell's EstCells, or by
    the clock."""
    view = PackView(stale_s=5.0)
    for k in range(20):
        view.feed(_at(cc.encode_est_cell(k, 0, 0.5, 0.01), 100.0 + k * 0.01))
        if k < 10:
            view.feed(_at(cc.encode_est_cell_health(k, 0, capacity_Ah=2.9, r0_ohm=0.02, core_temp_C=30.0), 100.0))
            view.feed(_at(cc.encode_est_cell_power(k, 0, 20.5, 96.0, cc.PowerHorizon.PEAK_10S), 100.0))
            view.feed(_at(cc.encode_est_cell_flags(k, 0, cc.PLAUS_VOLTAGE_STUCK), 100.0))
        else:
            view.feed(_at(cc.encode_est_cell_power(k, 0, 20.5, 96.0, cc.PowerHorizon.PEAK_10S), 100.0 + k * 0.01))
    (cell,) = view.snapshot()["cells"]
    assert cell["old_answers"] == ["health", "plausibility"] and not cell["stale"]
    assert cell["capacity_Ah"] == pytest.approx(2.9), "the last value received is kept, marked old"
    assert view.snapshot()["pack"]["cells_with_old_answers"] == 1
    console = Console(width=200, color_system=None)
    with console.capture() as capture:
        console.print(render(view.snapshot()))
    text = capture.get()
    (row,) = [line for line in text.splitlines() if line.count("│") > 2 and line.split("│")[1].strip() == "0"]
    assert "(2.900)" in row and "(20.0)" in row and "(voltage_stuck)" in row and "OLD health/plausibility" in row
    assert "96/20 10s" in row and "(96/20" not in row
    assert "1 with OLD health, power or plausibility" in " ".join(text.split())
    # On the clock: the power frames of sample 19 are older than --stale at 106 s.
    assert view.snapshot(now=106.0)["cells"][0]["old_answers"] == ["health", "plausibility", "power"]


def test_a_cell_far_behind_in_a_log_of_estimates_alone_is_stale_by_samples(tmp_path, capsys):
    """A pack's own BMS logged (no MeasPack: no contract time), 200 samples in
    0.02 s of log time: a cell whose estimates stopped 99 samples before the
    others' was shown as current. Across the 12-bit wrap too."""
    log = tmp_path / "estimates.blf"
    with can.Logger(str(log)) as out:
        for msg in _lockstep_frames(4200, 3, silent_cell=1, silent_after=4000):
            if msg.arbitration_id == cc.FrameId.EST_CELL:
                out.on_message_received(msg)
    js = tmp_path / "snap.json"
    assert main(["monitor", "--log", str(log), "--once", "--json", str(js)]) == 0
    c0, c1, c2 = json.loads(js.read_text())["cells"]
    assert c1["behind_samples"] == 198 and c1["behind_s"] is None and c1["age_s"] < 0.05 and c1["stale"]
    assert c0["behind_samples"] == c2["behind_samples"] == 0 and not c0["stale"] and not c2["stale"]
    assert "no MeasPack: or 50 samples behind the one before the newest estimated" in " ".join(
        capsys.readouterr().out.split())
    # Counted from the sample before the newest (4198), as the help and the README say (a review
    # found them saying 'the newest'): 198 behind is stale with 197, not with 198.
    for limit, stale in ((197, True), (198, False)):
        assert main(["monitor", "--log", str(log), "--once", "--json", str(js), "--stale-samples", str(limit)]) == 0
        assert json.loads(js.read_text())["cells"][1]["stale"] is stale
    with pytest.raises(SystemExit):
        main(["monitor", "--help"])
    assert "N samples behind the sample before the newest any cell was estimated for" in " ".join(
        capsys.readouterr().out.split())


@pytest.mark.parametrize("sent, said", [
    ([], "no frame at all: check the channel and the bit rate"),
    ([can.Message(arbitration_id=0x7DF, is_extended_id=False, data=bytes(8))],
     "1 frame(s) arrived, none decoded as the contract (1 × ID 0x7DF, not in the contract"),
])
def test_once_on_a_live_bus_that_carries_nothing_of_the_contract_fails(tmp_path, capsys, sent, said):
    """A wrong channel or bit rate printed an empty snapshot and exited 0."""
    channel = "bmsfil-test-monitor-silent"
    sender = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
    timer = threading.Timer(0.1, lambda: [sender.send(msg) for msg in sent])
    timer.start()
    out = tmp_path / "live.json"
    try:
        assert main(["monitor", "--interface", "virtual", "--channel", channel, "--once", "--window", "0.4",
                     "--json", str(out)]) == 1
    finally:
        timer.join()
        sender.shutdown()
    err = " ".join(capsys.readouterr().err.split())
    assert (f"bmsfil monitor: warning: no frame of the CAN contract arrived on virtual {channel} in 0.4 s: "
            f"{said}") in err
    assert json.loads(out.read_text())["pack"]["frames_decoded"] == 0


def test_an_asc_log_without_a_header_keeps_its_first_frame(tmp_path):
    """python-can's .asc reader takes the first line after its header as the
    header's end: in an .asc of frames alone, that was the first frame, lost
    in silence."""
    full = tmp_path / "full.asc"
    with can.Logger(str(full)) as out:
        for msg in _lockstep_frames(5, 2, silent_cell=-1, silent_after=4):
            out.on_message_received(msg)
    lines = full.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if " 100 " in line)
    bare = tmp_path / "bare.asc"
    bare.write_text("".join(lines[first:-1]))  # no header, no End TriggerBlock
    js = tmp_path / "snap.json"
    assert main(["monitor", "--log", str(bare), "--once", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["pack"]["frames_decoded"] == 5 * (1 + 2 + 2)
    assert json.loads(js.read_text())["pack"]["samples_lost"]["count"] == 0
    # A header python-can wrote is read as before: every frame, its times from the trigger block.
    assert main(["monitor", "--log", str(full), "--once", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["pack"]["frames_decoded"] == 5 * (1 + 2 + 2)
