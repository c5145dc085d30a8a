"""A log of more than one CAN channel is read one channel at a time (was:
two packs' frames merged into one stream and scored as garbage), and what
`hil score` refuses in a log is said on the terminal."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import can
import pytest

from bmsfil import can_contract as cc
from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.params import bundled_params
from bmsfil_hil.replay import open_log, replay_lockstep
from bmsfil_hil.targets import make_target


def _run_messages(tmp_path: Path, start: int, samples: int) -> list[can.Message]:
    """The frames of a host replay of `samples` samples of the bundled recording from `start`."""
    rec = bundled_recording().slice(start, start + samples)
    path = tmp_path / f"run{start}.blf"
    writer = open_log(path)
    target = make_target("host", bundled_params())
    try:
        replay_lockstep(target.start(), [rec], log=writer)
    finally:
        target.stop()
        writer.stop()
    return list(can.LogReader(str(path)))


def _write(path: Path, messages: list[can.Message]) -> Path:
    with can.Logger(str(path)) as out:
        for i, msg in enumerate(messages):
            msg.timestamp = i * 1e-4
            out.on_message_received(msg)
    return path


def _two_channel_log(tmp_path: Path, suffix: str) -> Path:
    """Two runs of 40 samples, one on channel 0 and one on channel 1, their frames interleaved."""
    parts = []
    for channel, start in ((0, 0), (1, 3000)):
        messages = _run_messages(tmp_path, start, 40)
        for msg in messages:
            msg.channel = channel
        parts.append(messages)
    return _write(tmp_path / f"two{suffix}", [m for pair in itertools.zip_longest(*parts) for m in pair if m])


@pytest.mark.parametrize("suffix", [".asc", ".blf"])
def test_a_log_of_two_channels_is_refused_without_a_channel_and_scored_with_one(tmp_path, capsys, suffix):
    log = _two_channel_log(tmp_path, suffix)
    out = str(tmp_path / "out")
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--out-dir", out]) == 2
    text = capsys.readouterr().out
    assert "more than one channel (0, 1" in text and "--channel 0 or --channel 1" in text, text
    for channel in ("0", "1"):
        js = tmp_path / f"score{channel}.json"
        assert main(["hil", "score", str(log), "--channel", channel, "--json", str(js), "--out-dir", out,
                     "--no-plot"]) == 0
        (doc,) = json.loads(js.read_text())["recordings"]
        assert doc["samples"] == 40 and doc["samples_fully_answered"] == 40
        assert doc["cells_scored"][0]["max_abs_soc_difference_vs_core"] <= 1e-6
    assert main(["hil", "score", str(log), "--channel", "7", "--out-dir", out]) == 2
    assert "--channel 7: no frame of the CAN contract on that channel; the log has them on 0, 1" \
        in capsys.readouterr().out


def test_from_log_takes_a_channel_of_its_own(tmp_path, capsys):
    """`hil run`'s --channel is the board's bus: the log's is --from-log-channel."""
    log = _two_channel_log(tmp_path, ".blf")
    out = str(tmp_path / "out")
    capsys.readouterr()
    assert main(["hil", "run", "--from-log", str(log), "--out-dir", out, "--no-plot"]) == 2
    assert "--from-log-channel 0 or --from-log-channel 1" in capsys.readouterr().out
    js = tmp_path / "run.json"
    assert main(["hil", "run", "--from-log", str(log), "--from-log-channel", "1", "--json", str(js),
                 "--out-dir", out, "--no-plot"]) == 0
    (entry,) = json.loads(js.read_text())["recordings"]
    assert entry["max_abs_soc_difference_vs_log"] == 0.0 and len(entry["cells"]) == 1
    assert main(["hil", "run", "--from-log-channel", "1", "--out-dir", out]) == 2
    assert "give --from-log" in capsys.readouterr().out


def test_frames_outside_the_contract_on_another_channel_are_no_second_channel(tmp_path):
    messages = _run_messages(tmp_path, 0, 20)
    for msg in messages:
        msg.channel = 0
    other = [can.Message(arbitration_id=0x7DF, is_extended_id=False, data=bytes(8), channel=1) for _ in range(5)]
    log = _write(tmp_path / "foreign.asc", [*messages[:10], *other, *messages[10:]])
    assert main(["hil", "score", str(log), "--out-dir", str(tmp_path / "out"), "--no-plot"]) == 0


def test_score_names_the_frames_it_could_not_decode(tmp_path, capsys):
    """Only their count was said: which IDs, frames and fields, the most frequent first."""
    messages = _run_messages(tmp_path, 0, 20)
    other = [can.Message(arbitration_id=0x7DF, is_extended_id=False, data=bytes(8)) for _ in range(5)]
    extended = [can.Message(arbitration_id=0x18FF50E5, is_extended_id=True, data=bytes(8)) for _ in range(2)]
    short = [can.Message(arbitration_id=cc.FrameId.EST_CELL, is_extended_id=False, data=bytes(7)) for _ in range(3)]
    log = _write(tmp_path / "foreign.asc", [*messages[:10], *other, *short, *extended, *messages[10:]])
    js = tmp_path / "score.json"
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "out"), "--no-plot"]) == 0
    said = ("10 frame(s) that do not decode as frames of the CAN contract (5 × ID 0x7DF, not in the contract; "
            "3 × 0x200 EstCell: truncated: expected DLC 8, got DLC 7 with 7 data bytes; 2 × 29-bit (extended) IDs)")
    assert said in " ".join(capsys.readouterr().out.split())
    assert json.loads(js.read_text())["undecodable_kinds"][0] == {"kind": "ID 0x7DF, not in the contract",
                                                                  "frames": 5}


def test_score_says_how_many_frames_it_refused_for_their_crc(tmp_path, capsys):
    messages = _run_messages(tmp_path, 0, 40)
    cells = [m for m in messages if m.arbitration_id == cc.FrameId.MEAS_CELL]
    for msg in cells[10:13]:
        msg.data = bytearray([msg.data[0], msg.data[1] ^ 0x10, *msg.data[2:]])  # the crc nibble
    log = _write(tmp_path / "badcrc.asc", messages)
    js = tmp_path / "score.json"
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "out"), "--no-plot"]) == 0
    assert "3 measurement frame(s) (MeasPack, MeasCell) refused for their crc" in capsys.readouterr().out
    assert json.loads(js.read_text())["crc_failed_frames"] == 3


@pytest.mark.parametrize("command", [["hil", "score"], ["hil", "run", "--from-log"]])
def test_a_log_of_can_fd_frames_says_so(tmp_path, capsys, command):
    messages = _run_messages(tmp_path, 0, 20)
    for msg in messages:
        msg.is_fd = True
    log = _write(tmp_path / "fd.asc", messages)
    capsys.readouterr()
    assert main([*command, str(log), "--out-dir", str(tmp_path / "out")]) == 2
    text = capsys.readouterr().out
    assert "no MeasPack frame (0x100)" in text and "20 frame(s) with that ID do not decode" in text
    assert "a CAN FD frame; the contract is classic CAN" in text


@pytest.mark.parametrize("suffix, received_on", [(".log", "can0"), (".blf", "PCAN_USBBUS1"), (".asc", 1)])
def test_a_board_run_logged_on_two_channel_names_is_one_bus(tmp_path, capsys, suffix, received_on):
    """The harness logged what it sent without a channel (the writer's
    default: vcan0, or 1 in .asc/.blf) and what a board answered on the bus's
    (can0, a PCAN adapter): host frames on one name, target frames on
    another, one bus, scored as before."""
    messages = _run_messages(tmp_path, 0, 40)
    for msg in messages:
        msg.channel = received_on if msg.arbitration_id >= int(cc.FrameId.EST_CELL) else None
    log = _write(tmp_path / f"board{suffix}", messages)
    js = tmp_path / "s.json"
    assert main(["hil", "score", str(log), "--out-dir", str(tmp_path / "out"), "--json", str(js)]) == 0, \
        capsys.readouterr().out
    assert json.loads(js.read_text())["recordings"][0]["samples"] == 40

