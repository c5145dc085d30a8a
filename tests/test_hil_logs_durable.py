"""No data lost: a harness killed mid-run leaves a log that reads back and
that `bmsfil hil score` scores, flags, health and power included; Ctrl-C
closes the log and says so."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import can
import numpy as np
import pytest

from bmsfil.bundled import bundled_recording
from bmsfil.cli import main
from bmsfil.inject import SensorErrors
from bmsfil.params import bundled_params
from bmsfil_hil.logreplay import LogError, LogRead, read_log
from bmsfil_hil.micropython import micropython_executable
from bmsfil_hil.replay import open_log, replay_lockstep
from bmsfil_hil.targets import make_target

BUNDLED = Path(__file__).resolve().parents[1] / "host" / "bmsfil" / "data" / "551_US06_25degC.npz"

BMSFIL = [sys.executable, "-m", "bmsfil.cli"]


#: Log bytes that hold well over 1,000 frames (about 11 bytes a frame in a .blf, 62 in an .asc).
ENOUGH_BYTES = {".blf": 20_000, ".asc": 80_000}


def _run_then(sig: int, log: Path, tmp_path: Path, after_s: float = 0.5) -> subprocess.CompletedProcess:
    # Paced at 20x the recording's clock: a run of 200 s, whatever the machine;
    # the signal comes once the log holds over 1,000 frames, however busy the machine.
    proc = subprocess.Popen([*BMSFIL, "hil", "run", "--mode", "realtime", "--speed", "20", "--log", str(log),
                             "--no-plot", "--out-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while (not log.exists() or log.stat().st_size < ENOUGH_BYTES[log.suffix]) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(after_s)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


@pytest.mark.parametrize("suffix", [".blf", ".asc"])
def test_killed_harness_leaves_a_log_that_scores(tmp_path, suffix):
    log = tmp_path / f"run{suffix}"
    done = _run_then(signal.SIGKILL, log, tmp_path)
    assert done.returncode == -signal.SIGKILL
    assert sum(1 for _ in can.LogReader(str(log))) > 1000
    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log), "--recording", str(BUNDLED), "--json", str(js),
                 "--out-dir", str(tmp_path / "score"), "--no-plot"]) == 0
    doc = json.loads(js.read_text())["recordings"][0]
    cell = doc["cells_scored"][0]
    assert 50 < doc["samples"] < 40155, "a run cut short"
    assert cell["estimates"] >= doc["samples"] - 1  # the last sample's estimate may not have been logged
    assert cell["max_abs_soc_difference_vs_core"] <= 1e-6
    assert cell["ekf"]["rmse"] < 0.01


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_ctrl_c_closes_the_log_and_says_so(tmp_path):
    log = tmp_path / "run.blf"
    done = _run_then(signal.SIGINT, log, tmp_path, after_s=1.0)
    assert done.returncode == 130, done.stdout
    assert "interrupted" in done.stdout and "bmsfil hil score" in done.stdout
    assert sum(1 for _ in can.LogReader(str(log))) > 1000


@pytest.mark.parametrize("name, content, expected", [
    ("missing.blf", None, "no such log file"),
    ("empty.blf", b"", "empty file"),
    ("text.blf", b"hello, not a BLF file at all", "cannot read it as a .blf log"),
    ("table.log", b"time,current,voltage\n0,1.0,3.7\n", "cannot read it as a .log log"),
    ("noframes.asc", b"date Sun Nov 22 08:00:00.000 am 2026\nbase hex  timestamps absolute\n", "no MeasPack"),
])
@pytest.mark.parametrize("command", [["hil", "score"], ["hil", "run", "--from-log"]])
def test_score_and_from_log_refuse_what_they_cannot_read(tmp_path, capsys, name, content, expected, command):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main([*command, str(path), "--out-dir", str(tmp_path / "out")]) == 2
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and str(path) in out and expected in out, out


def test_a_text_log_cut_mid_line_scores_up_to_the_cut(tmp_path, capsys):
    """A harness killed while writing a line leaves a .log that ends in half
    a record: read up to it, and the half line said to be skipped."""
    log = tmp_path / "run.log"
    assert main(["hil", "run", "--samples", "50", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    text = log.read_text()
    log.write_text(text[: text.index("\n", len(text) // 2) + 8])
    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1 line(s) python-can cannot read, skipped (line " in out, out
    doc = json.loads(js.read_text())["recordings"][0]
    assert 20 < doc["samples"] < 50 and doc["cells_scored"][0]["max_abs_soc_difference_vs_core"] <= 1e-6


@pytest.mark.parametrize("suffix", [".log", ".asc"])
@pytest.mark.parametrize("command", ["score", "from-log"])
def test_one_damaged_line_in_a_text_log_loses_one_frame_not_the_rest(tmp_path, capsys, suffix, command):
    """A data byte that is not hex in the middle of a log (a red team's
    'G0'): python-can's reader fails on that line, and everything after it
    was lost with it ('ends in a record ... cut short?', half the samples
    scored). Now that line is skipped and named, and the rest read: the
    sample whose MeasPack it held is lost, as a frame lost on the bus."""
    log = tmp_path / f"run{suffix}"
    assert main(["hil", "run", "--samples", "300", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    lines = log.read_text().splitlines(keepends=True)
    pack = " 100#" if suffix == ".log" else " 100 "  # MeasPack, 0x100
    k = next(i for i in range(len(lines) // 2, len(lines)) if pack in lines[i])
    head, tail = lines[k].rstrip("\n").split("#") if suffix == ".log" else (lines[k].rstrip("\n"), "")
    damaged = (f"{head}#{tail[:14]}G0{tail[16:]}" if suffix == ".log" else head[:-2] + "G0") + "\n"
    log.write_text("".join(lines[:k] + [damaged] + lines[k + 1:]))
    js = tmp_path / "out.json"
    capsys.readouterr()
    argv = (["hil", "score", str(log)] if command == "score" else ["hil", "run", "--from-log", str(log)])
    assert main([*argv, "--json", str(js), "--out-dir", str(tmp_path / command), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert f"1 line(s) python-can cannot read, skipped (line {k + 1}: ValueError" in out, out
    doc = json.loads(js.read_text())
    run = doc["recordings"][0]
    sent = run["samples"] if command == "score" else run["delivery"]["samples_sent"]
    assert sent == 299, "one MeasPack lost, every other sample read"


@pytest.mark.parametrize("damage", ["body", "signature", "size", "size a little", "type"])
def test_one_damaged_container_in_a_blf_loses_its_frames_not_the_rest(tmp_path, capsys, damage):
    """A damaged byte in a .blf container (its compressed body, or its header's
    signature, size or type): python-can stops there, and everything after it was
    lost ('cut short', the bytes after it not read). The container is now skipped
    and named, by the byte it began at, and the next read: its frames are lost,
    as on the bus. (A review found the first version looking for the next
    container on 4-byte boundaries only, where half of them start at 2 mod 4,
    and missing a damaged size or type; the container damaged here starts at
    2 mod 4.)"""
    log = tmp_path / "run.blf"
    assert main(["hil", "run", "--samples", "600", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    data = bytearray(log.read_bytes())
    starts = [i for i in range(144, len(data) - 15) if data[i:i + 4] == b"LOBJ" and data[i + 12] == 10]
    at = next(i for i in starts[len(starts) // 2:] if i % 4 == 2)
    size = int.from_bytes(data[at + 8:at + 12], "little")
    if damage == "body":
        data[at + 48:at + 64] = bytes(16)
    elif damage == "signature":
        data[at:at + 4] = b"XXXX"
    elif damage.startswith("size"):
        data[at + 8:at + 12] = (size + (256 if damage == "size a little" else 0x10000)).to_bytes(4, "little")
    else:
        # An object of another type between containers is passed over, as python-can passes
        # it: the damage is found, and named, at the next container, which began inside it.
        data[at + 12] ^= 0x40
        at = starts[starts.index(at) + 1]
    log.write_bytes(bytes(data))
    js = tmp_path / "score.json"
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "s"), "--no-plot"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"1 container(s) python-can cannot read, skipped (at byte {at:,}:" in out, out
    doc = json.loads(js.read_text())
    assert [c["byte"] for c in doc["skipped_containers"]] == [at] and doc["cut_short"] is None
    run = doc["recordings"][0]
    assert 560 <= run["samples"] < 600, "the samples of one container lost, those after it read"
    # The C core steps over the lost samples as one interval, the target stepped each: close, not equal.
    assert run["cells_scored"][0]["max_abs_soc_difference_vs_core"] <= 1e-3


def test_a_blf_cut_in_a_container_keeps_what_python_can_reads(tmp_path):
    """A log cut short (a killed harness) inside a container: its frames up to the
    cut are read, as python-can reads them (the first BlfLog dropped them)."""
    log = tmp_path / "run.blf"
    assert main(["hil", "run", "--samples", "600", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    data = log.read_bytes()
    for cut in (len(data) * 3 // 4, len(data) * 3 // 4 + 301):
        short = tmp_path / f"cut{cut}.blf"
        short.write_bytes(data[:cut])
        read = LogRead(short)
        assert sum(1 for _ in read) == sum(1 for _ in can.LogReader(str(short)))
        assert read.skipped == [] and read.cut_short


@pytest.mark.parametrize("suffix", [".log", ".asc"])
def test_a_text_log_with_an_unreadable_tail_keeps_every_record_before_it(tmp_path, capsys, suffix):
    """Bytes that are not text after the last good line: every sample
    before them is read (was: the lines decoded with them, ~18 samples, lost)."""
    log = tmp_path / f"run{suffix}"
    assert main(["hil", "run", "--samples", "300", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    body = log.read_bytes()
    if suffix == ".asc":
        body = body[: body.rindex(b"End TriggerBlock")]
    log.write_bytes(body + np.random.default_rng(1).integers(128, 256, 3000, dtype=np.uint8).tobytes())
    js = tmp_path / "score.json"
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    # python-can's .asc reader passes over lines it does not know; its .log reader fails on one, skipped.
    assert suffix == ".asc" or f"line {len(body.splitlines()) + 1}: " in out, out
    doc = json.loads(js.read_text())["recordings"][0]
    assert doc["samples"] == doc["samples_fully_answered"] == 300


def test_score_against_a_recording_without_reference_says_so(tmp_path, capsys):
    from dataclasses import replace

    rec = bundled_recording().slice(0, 50)
    log_path = tmp_path / "run.blf"
    log = open_log(log_path)
    target = make_target("host", bundled_params())
    try:
        replay_lockstep(target.start(), [rec], log=log)
    finally:
        target.stop()
        log.stop()
    bare = replace(rec, ah=None).save(tmp_path / "bare.npz")
    capsys.readouterr()
    assert main(["hil", "score", str(log_path), "--recording", str(bare)]) == 2
    out = capsys.readouterr().out
    assert "bare.npz" in out and "no reference SOC" in out and "Ah counter" in out


def test_score_reports_the_flags_health_and_power_the_log_holds(tmp_path):
    """What `hil run --json` reports of EstCellFlags, EstCellHealth and
    EstCellPower, `hil score` finds again in the run's log, and the flags
    agree sample by sample with the C core's monitor on the logged data."""
    rec = SensorErrors(voltage_stuck_at_s=300.0, voltage_stuck_for_s=30).apply(
        bundled_recording().slice(0, 4000), 0)
    log_path = tmp_path / "run.blf"
    log = open_log(log_path)
    target = make_target("host", bundled_params())
    try:
        result = replay_lockstep(target.start(), [rec], log=log)
    finally:
        target.stop()
        log.stop()
    (logged,) = read_log(log_path)
    for sent, found in ((result.plausibility, logged.plausibility), (result.health, logged.health),
                        (result.power, logged.power)):
        assert sent.sent and np.array_equal(sent.received, found.received)
    assert np.array_equal(result.plausibility.flags, logged.plausibility.flags)
    assert np.array_equal(result.power.discharge_W, logged.power.discharge_W, equal_nan=True)
    assert np.array_equal(result.health.r0_ohm, logged.health.r0_ohm, equal_nan=True)

    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log_path), "--json", str(js), "--out-dir", str(tmp_path / "s"),
                 "--no-plot"]) == 0
    cell = json.loads(js.read_text())["recordings"][0]["cells_scored"][0]
    raised = {e["flag"]: e for e in cell["plausibility_over_can"]["flags"]}
    assert set(raised) == {"voltage_stuck"}
    assert 300.0 <= raised["voltage_stuck"]["first_time_s"] <= 305.0
    assert cell["flag_samples_unlike_core"] == 0 and cell["flag_samples_compared"] == len(rec)
    assert cell["health_over_can"] == result.health.summary()[0]
    assert cell["power_over_can"] == result.power.summary()[0]


def test_a_log_of_several_recordings_scores_and_replays_each(tmp_path, capsys):
    """Each recording of a run starts again at sequence 0: `hil score` and
    `--from-log` take them one by one (was: one continuous cell, false
    differences from the C core)."""
    full = bundled_recording()
    a = full.slice(0, 300).save(tmp_path / "a.npz")
    b = full.slice(2000, 2400).save(tmp_path / "b.npz")
    log, out = tmp_path / "two.blf", str(tmp_path / "out")
    assert main(["hil", "run", str(a), str(b), "--log", str(log), "--out-dir", out, "--no-plot"]) == 0
    runs = read_log(log)
    assert [run.name for run in runs] == ["two-rec1", "two-rec2"]
    assert [len(run.cells[0]) for run in runs] == [300, 400]
    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log), "--recording", str(a), "--recording", str(b), "--json", str(js),
                 "--out-dir", out, "--no-plot"]) == 0
    docs = json.loads(js.read_text())["recordings"]
    assert [d["samples"] for d in docs] == [300, 400]
    for d in docs:
        cell = d["cells_scored"][0]
        assert cell["max_abs_soc_difference_vs_core"] <= 1e-6 and cell["flag_samples_unlike_core"] == 0
        assert math.isfinite(cell["ekf"]["rmse"])
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--recording", str(a), "--out-dir", out]) == 2
    assert "holds 2 recording(s)" in capsys.readouterr().out
    js = tmp_path / "again.json"
    assert main(["hil", "run", "--from-log", str(log), "--json", str(js), "--out-dir", out, "--no-plot"]) == 0
    again = json.loads(js.read_text())["recordings"]
    assert [len(x["cells"]) for x in again] == [1, 1]
    assert all(x["max_abs_soc_difference_vs_log"] == 0.0 for x in again)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    """Whether `pid` has ended (a zombie left to an init that does not reap counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")
@pytest.mark.parametrize("sig, status", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("target", [
    pytest.param("micropython", marks=pytest.mark.skipif(micropython_executable() is None,
                                                         reason="MicroPython's unix port is not installed")),
    pytest.param("qemu", marks=pytest.mark.qemu),
])
def test_the_target_process_ends_with_the_harness(tmp_path, sig, status, target):
    """The target's process (MicroPython, QEMU) does not outlive a harness
    that is killed; SIGTERM runs the cleanup of Ctrl-C (log closed), exit 143."""
    log = tmp_path / "run.blf"
    proc = subprocess.Popen([*BMSFIL, "hil", "run", "--target", target, "--mode", "realtime", "--speed", "20",
                             "--log", str(log), "--no-plot", "--out-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while (not log.exists() or log.stat().st_size < ENOUGH_BYTES[log.suffix]) and time.monotonic() < deadline:
        time.sleep(0.1)
    (child,) = _children(proc.pid)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == status, out
    deadline = time.monotonic() + 3
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(child), f"target process {child} outlived the harness"
    if sig == signal.SIGTERM:
        assert "interrupted" in out
        assert sum(1 for _ in can.LogReader(str(log))) > 100, "the log completed"


def test_score_refuses_a_recording_the_log_did_not_replay(tmp_path, capsys):
    """Another recording as long as the log or longer: its current and
    voltage are not those the log carries, refused with where they differ."""
    full = bundled_recording()
    a = full.slice(0, 300).save(tmp_path / "a.npz")
    other = full.slice(2000, 2400).save(tmp_path / "other.npz")
    log = tmp_path / "run.blf"
    assert main(["hil", "run", str(a), "--log", str(log), "--out-dir", str(tmp_path / "out"), "--no-plot"]) == 0
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--recording", str(other), "--out-dir", str(tmp_path / "out")]) == 2
    out = capsys.readouterr().out
    assert "other.npz is not the recording run in the log replayed: current_A differs on" in out
    assert len(out.strip().splitlines()) == 1
    assert main(["hil", "score", str(log), "--recording", str(a), "--out-dir", str(tmp_path / "out")]) == 0


def contract3(data: bytes) -> bytes:
    """A measurement frame's 8 bytes with the crc contract bmsfil-can-3 gave
    them (CRC-4/G-704 over the payload alone, no frame ID)."""
    from bmsfil import can_contract as cc

    crc3 = cc.crc4_g704(bytes([data[0], data[1] & 0x0F]) + data[2:])
    return bytes([data[0], (data[1] & 0x0F) | (crc3 << 4), *data[2:]])


def _rewrite_measurements(src: Path, dst: Path, change) -> None:  # type: ignore[no-untyped-def]
    """A copy of a log with the data of every MeasPack and MeasCell passed through `change`."""
    from bmsfil import can_contract as cc

    with can.Logger(str(dst)) as out:
        for msg in can.LogReader(str(src)):
            if msg.arbitration_id in cc.E2E_FRAMES:
                msg.data = bytearray(change(bytes(msg.data)))
            out.on_message_received(msg)


def test_a_log_of_an_earlier_contract_is_named_as_such(tmp_path, capsys):
    """Measurement frames whose crc does not match (as every log written
    before contract 4 has them): one line that says so, not a traceback."""
    log = tmp_path / "run.blf"
    assert main(["hil", "run", "--samples", "50", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    old = tmp_path / "old.blf"
    _rewrite_measurements(log, old, lambda data: bytes([data[0], data[1] ^ 0x10, *data[2:]]))  # the crc nibble
    capsys.readouterr()
    assert main(["hil", "score", str(old), "--out-dir", str(tmp_path / "o")]) == 2
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 and "100 of its 100 measurement frames" in out and "earlier contract" in out


def test_a_log_of_contract_3_is_read_as_such(tmp_path, capsys):
    """Measurement frames protected the bmsfil-can-3 way (the crc over the
    payload alone, no frame ID) fail every contract-4 check (the two crcs
    differ by a nonzero constant per ID); the log is recognised by its first
    frames and read with that contract's crc, saying so: the same estimates
    as the log of this contract. A frame damaged in it is still refused."""
    from bmsfil import can_contract as cc
    from bmsfil_hil.logreplay import CONTRACT3, read_log

    log = tmp_path / "run.blf"
    assert main(["hil", "run", "--samples", "50", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    old = tmp_path / "contract3.blf"
    _rewrite_measurements(log, old, contract3)
    new_runs, old_runs = read_log(log), read_log(old)
    assert new_runs[0].contract == cc.CONTRACT_VERSION and old_runs[0].contract == CONTRACT3
    assert old_runs[0].undecodable == new_runs[0].undecodable == 0
    assert np.array_equal(old_runs[0].cells[0].voltage_V, new_runs[0].cells[0].voltage_V, equal_nan=True)
    capsys.readouterr()
    assert main(["hil", "score", str(old), "--out-dir", str(tmp_path / "o")]) == 0
    assert f"written under the CAN contract {CONTRACT3}" in capsys.readouterr().out
    # one frame damaged after the contract-3 crc was computed: refused, not read
    hit = [0]

    def damaged_one(data: bytes) -> bytes:
        out = contract3(data)
        hit[0] += 1
        return out if hit[0] != 40 else bytes([out[0] ^ 0x01, *out[1:]])
    bad = tmp_path / "contract3_damaged.blf"
    _rewrite_measurements(log, bad, damaged_one)
    runs = read_log(bad)
    assert runs[0].contract == CONTRACT3 and runs[0].undecodable == 1


def test_every_single_bit_flip_of_a_contract_3_frame_is_refused(tmp_path):
    """In a log of contract 3 each measurement frame is judged by the crc it
    was sent with: any one bit flipped in it is refused (judged by this
    contract's crc instead, some flips would pass: the two differ by a
    constant per ID)."""
    from bmsfil_hil.logreplay import read_log

    log = tmp_path / "run.blf"
    assert main(["hil", "run", "--samples", "40", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    for bit in range(64):
        seen = [0]

        def flip_one(data: bytes, bit: int = bit) -> bytes:
            out = bytearray(contract3(data))
            seen[0] += 1
            if seen[0] in (35, 36):  # the 18th sample's MeasPack and MeasCell
                out[bit // 8] ^= 1 << (bit % 8)
            return bytes(out)
        bad = tmp_path / f"flip{bit}.blf"
        _rewrite_measurements(log, bad, flip_one)
        assert read_log(bad)[0].undecodable == 2, f"bit {bit}"


def _host_run_log(log: Path, cells: list) -> Path:
    """`log` of a lock-step replay of `cells` (one pack) to the host target."""
    writer = open_log(log)
    target = make_target("host", bundled_params())
    try:
        replay_lockstep(target.start(), cells, log=writer)
    finally:
        target.stop()
        writer.stop()
    return log


def test_a_run_without_a_valid_voltage_is_not_scored_and_says_why(tmp_path, capsys):
    from dataclasses import replace

    rec = bundled_recording().slice(0, 30)
    dead = replace(rec, voltage_V=np.full(len(rec), np.nan))
    log = _host_run_log(tmp_path / "run.blf", [dead])
    capsys.readouterr()
    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "o")]) == 2
    out = capsys.readouterr().out
    assert "not scored" in out and "no sample to start from its OCV" in out and "Traceback" not in out
    # In the JSON too, with its cause (was: left out, and no JSON written).
    (doc,) = json.loads(js.read_text())["recordings"]
    (cell,) = doc["cells_scored"]
    assert doc["samples"] == 30 and "no sample to start from its OCV" in cell["not_scored"]


def test_a_cell_that_cannot_be_scored_leaves_the_others_scored(tmp_path, capsys):
    from dataclasses import replace

    rec = bundled_recording().slice(0, 30)
    dead = replace(rec, voltage_V=np.full(len(rec), np.nan))
    log = _host_run_log(tmp_path / "run.blf", [rec, dead])
    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "o")]) == 2
    (doc,) = json.loads(js.read_text())["recordings"]
    good, bad = doc["cells_scored"]
    assert good["max_abs_soc_difference_vs_core"] <= 1e-6 and "not_scored" not in good
    assert bad["cell"] == 1 and "no sample to start from its OCV" in bad["not_scored"]
    # Replayed again: the cell is in the JSON with its cause (was: the command ended in an error, no JSON).
    capsys.readouterr()
    js = tmp_path / "again.json"
    assert main(["hil", "run", "--from-log", str(log), "--json", str(js), "--out-dir", str(tmp_path / "o"),
                 "--no-plot"]) == 0
    assert "warning: not scored: recording 'run#cell001': no sample to start from its OCV" in capsys.readouterr().out
    (entry,) = json.loads(js.read_text())["recordings"]
    good, bad = entry["cells"]
    assert good["max_abs_soc_difference_vs_eval"] <= 1e-6
    assert bad["recording"] == "run#cell001" and "no sample to start from its OCV" in bad["not_scored"]
    assert bad["max_abs_soc_difference_vs_eval"] is None, "nothing on either side to compare: not a failure"


def test_a_replay_is_not_logged_over_the_log_it_replays(tmp_path, capsys):
    """`hil run --from-log X --log X` wrote the replay over the board's
    recording it was replaying (a red team lost a board's log that way)."""
    log = tmp_path / "board.asc"
    assert main(["hil", "run", "--samples", "20", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    before = log.read_bytes()
    capsys.readouterr()
    same = tmp_path / "." / "board.asc"
    assert main(["hil", "run", "--from-log", str(log), "--log", str(same), "--out-dir", str(tmp_path)]) == 2
    assert "is the log --from-log replays" in capsys.readouterr().out
    assert log.read_bytes() == before


def _asc_samples(log):
    """The .asc log's lines, and each sample's lines (from its MeasPack to the next's) by sequence."""
    lines = log.read_text().splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if " 100 " in line]
    ends = [*starts[1:], next(i for i, line in enumerate(lines) if line.startswith("End TriggerBlock"))]
    return lines, list(zip(starts, ends))


@pytest.mark.parametrize("damage, warning, samples", [
    ("duplicate", "5 MeasPack(s) repeating one just before them", 200),
    ("delete", "5 sample(s) missing from the log's MeasPack sequence (1 gap(s): 5 after sequence 99)", 195),
    ("swap", "1 MeasPack(s) out of sequence order (100 after 101): put back in sequence order", 200),
    ("echo", "200 MeasPack(s) repeating one just before them", 200),
])
def test_the_log_reader_follows_the_sequence_counter(tmp_path, capsys, damage, warning, samples):
    """A log's samples by their 12-bit sequence: repeated samples (a bus that
    echoes the harness's own frames, duplicated lines) are read once,
    samples out of order are put back, and each is said; lost ones are
    counted. They were folded into the rebuilt recording in silence, and the
    difference blamed on the target (an echo bus split one run in two)."""
    log = tmp_path / "run.asc"
    assert main(["hil", "run", "--samples", "200", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    lines, spans = _asc_samples(log)
    head, tail = lines[: spans[0][0]], lines[spans[-1][1]:]
    body = [lines[a:b] for a, b in spans]
    if damage == "duplicate":
        body = body[:105] + body[100:105] + body[105:]
    elif damage == "delete":
        body = body[:100] + body[105:]
    elif damage == "swap":
        body = body[:100] + [body[101], body[100]] + body[102:]
    else:
        # Each measurement frame twice, the bus's echo of it marked Rx.
        body = [[x for line in sample for x in ([line, line.replace(" Tx ", " Rx ")] if " Tx " in line else [line])]
                for sample in body]
    log.write_text("".join(head + [line for sample in body for line in sample] + tail))
    js = tmp_path / "score.json"
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "s"), "--no-plot"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert warning in out, out
    doc = json.loads(js.read_text())
    assert len(doc["recordings"]) == 1
    run = doc["recordings"][0]
    assert run["samples"] == samples and warning in " ".join(run["log_warnings"])
    assert run["cells_scored"][0]["max_abs_soc_difference_vs_core"] <= (1e-6 if damage != "delete" else 1e-3)


def test_estimates_logged_before_their_measurement_are_kept(tmp_path, capsys):
    """A target's clock a little ahead of the harness's, the log sorted by
    time: each sample's estimates come before its MeasPack. They were
    dropped in silence (1 of 3000 samples answered); now kept for it."""
    log = tmp_path / "run.asc"
    assert main(["hil", "run", "--samples", "100", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    lines, spans = _asc_samples(log)
    body = []
    for a, b in spans:
        sample = lines[a:b]
        answers = [line for line in sample if " Rx " in line]
        body += answers + [line for line in sample if " Rx " not in line]
    log.write_text("".join(lines[: spans[0][0]] + body + lines[spans[-1][1]:]))
    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "s"), "--no-plot"]) == 0
    run = json.loads(js.read_text())["recordings"][0]
    assert run["samples"] == run["samples_fully_answered"] == 100 and "log_warnings" not in run


def test_a_log_without_estimates_is_not_scored(tmp_path, capsys):
    """A log of the measurements alone: '0/20 estimates, nan' and exit 0;
    now not scored, saying why (exit 2)."""
    log = tmp_path / "run.asc"
    assert main(["hil", "run", "--samples", "20", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    log.write_text("".join(line for line in log.read_text().splitlines(keepends=True) if " 200 " not in line))
    capsys.readouterr()
    js = tmp_path / "score.json"
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "s")]) == 2
    assert "the log holds no estimate (EstCell 0x200) for cell 0" in " ".join(capsys.readouterr().out.split())
    assert "no estimate" in json.loads(js.read_text())["recordings"][0]["cells_scored"][0]["not_scored"]


@pytest.mark.parametrize("damage, runs, warning", [
    ("none", [40, 60], None),
    ("second_loses_its_first_two", [40, 58], "rec2: it starts at sequence 2"),
    ("swap_at_start", [40, 60], "rec1: 1 MeasPack(s) out of sequence order (0 after 1)"),
    ("second_answers_first", [40, 60], None),
])
def test_recordings_of_a_log_are_told_apart_by_their_sequence(tmp_path, capsys, damage, runs, warning):
    """Two short recordings that start alike (a review found the second's
    first MeasPack taken for an echo of the first's, the two read as one), a
    recording whose first MeasPacks were lost, a reorder at sequence 0 (read
    as a new recording of one sample), and the second recording's estimates
    logged before its first MeasPack (kept by the first, as stray)."""
    rec = bundled_recording()
    a, b = rec.slice(0, 40).save(tmp_path / "a.npz"), rec.slice(0, 60).save(tmp_path / "b.npz")
    log = tmp_path / "two.asc"
    assert main(["hil", "run", str(a), str(b), "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    lines, spans = _asc_samples(log)
    body = [lines[s:e] for s, e in spans]
    if damage == "second_loses_its_first_two":
        body = body[:40] + body[42:]
    elif damage == "swap_at_start":
        body = [body[1], body[0]] + body[2:]
    elif damage == "second_answers_first":
        first = body[40]
        body[40] = [line for line in first if " Rx " in line] + [line for line in first if " Rx " not in line]
    log.write_text("".join(lines[: spans[0][0]] + [line for sample in body for line in sample]
                           + lines[spans[-1][1]:]))
    js = tmp_path / "score.json"
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "s"), "--no-plot"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    doc = json.loads(js.read_text())
    assert [r["samples"] for r in doc["recordings"]] == runs, out
    assert all(r["samples"] == r["samples_fully_answered"] for r in doc["recordings"]), out
    assert (warning is None and "warning" not in out) or (warning is not None and warning in out), out


def test_a_swap_at_the_counters_wrap_stays_one_recording(tmp_path, capsys):
    """Sequences 4096 and 4097 of a 4200-sample run (12-bit 0 and 1) logged in
    the other order: put back, one recording (was: two, 4097 and 103)."""
    log = tmp_path / "long.asc"
    assert main(["hil", "run", "--samples", "4200", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    lines, spans = _asc_samples(log)
    body = [lines[s:e] for s, e in spans]
    body = body[:4096] + [body[4097], body[4096]] + body[4098:]
    log.write_text("".join(lines[: spans[0][0]] + [line for sample in body for line in sample]
                           + lines[spans[-1][1]:]))
    js = tmp_path / "score.json"
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "s"), "--no-plot"]) == 0
    runs = json.loads(js.read_text())["recordings"]
    assert [r["samples"] for r in runs] == [4200]
    assert runs[0]["cells_scored"][0]["max_abs_soc_difference_vs_core"] <= 1e-6
    assert "out of sequence order (0 after 1): put back" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("suffix", [".blf", ".asc"])
@pytest.mark.parametrize("command", ["score", "monitor"])
def test_a_log_cut_between_records_is_said_to_be_cut_short(tmp_path, capsys, suffix, command):
    """A .blf cut at a container's end, or an .asc cut at a line's end, reads
    without error to its last record: nothing said that the run's tail was
    missing (a red team's report). The .blf's header gives the size its logger
    closed it at; an .asc logger writes 'End TriggerBlock' last."""
    log = tmp_path / f"run{suffix}"
    assert main(["hil", "run", "--samples", "300", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    whole = log.read_bytes()
    capsys.readouterr()
    argv = (["hil", "score", str(log), "--out-dir", str(tmp_path / "s"), "--no-plot"] if command == "score"
            else ["monitor", "--log", str(log), "--once"])
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "cut short" not in captured.out + captured.err, "the whole log is not cut short"
    if suffix == ".blf":
        # python-can's writer flushes a container every 64 KiB or so: keep the first whole one
        import can.io.blf as blf

        size = blf.FILE_HEADER_STRUCT.size + len(whole) // 3
        cut = whole[:size]
        expected = f"is {len(cut):,} bytes where its header says {len(whole):,}"
    else:
        cut = whole[: whole.index(b"\n", len(whole) // 2) + 1]
        expected = "ends in a trigger block without its 'End TriggerBlock' line"
        # an .asc written without trigger blocks (can-utils' log2asc) is whole
        plain = b"".join(line for line in whole.splitlines(keepends=True)
                         if b"triggerblock" not in line.lower() and b"start of measurement" not in line.lower())
        log.write_bytes(plain)
        assert main(argv) == 0
        captured = capsys.readouterr()
        assert "cut short" not in captured.out + captured.err
    log.write_bytes(cut)
    assert main(argv) == 0
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert expected in text and "cut short?" in text, text


def test_from_log_replays_its_first_samples_and_refuses_a_synthetic_pack(tmp_path, capsys):
    """--samples was ignored with --from-log (the whole log replayed), and
    --cells 4 too (the log's one cell replayed, as if a pack of 4 had been)."""
    log = tmp_path / "run.blf"
    assert main(["hil", "run", "--samples", "200", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    js = tmp_path / "again.json"
    assert main(["hil", "run", "--from-log", str(log), "--samples", "50", "--json", str(js),
                 "--out-dir", str(tmp_path / "again"), "--no-plot"]) == 0
    run = json.loads(js.read_text())["recordings"][0]
    assert run["delivery"]["samples_sent"] == 50
    capsys.readouterr()
    assert main(["hil", "run", "--from-log", str(log), "--cells", "4", "--out-dir", str(tmp_path / "x")]) == 2
    assert "--cells make a synthetic pack from a recording; --from-log replays the packs the log holds" in \
        " ".join(capsys.readouterr().out.split())


def test_answers_that_lag_far_behind_their_samples_are_read(tmp_path):
    """A real-time run whose target fell 300 samples behind: hil score on its own
    log said 'the log holds no estimate' (answers more than 64 samples late were
    taken for the counter's next wrap, and dropped)."""
    rec = bundled_recording().slice(0, 300)
    src = tmp_path / "run.blf"
    target = make_target("host", bundled_params())
    log = open_log(src)
    try:
        replay_lockstep(target.start(), [rec], log=log)
    finally:
        target.stop()
        log.stop()
    frames = list(can.LogReader(str(src)))
    answers = {0x200, 0x201, 0x202, 0x203}
    lagging = [m for m in frames if m.arbitration_id not in answers] + [m for m in frames if m.arbitration_id in answers]
    late = tmp_path / "late.blf"
    with can.Logger(str(late)) as out:
        for msg in lagging:
            out.on_message_received(msg)
    (run,) = read_log(late)
    assert np.isfinite(run.logged_soc[:, 0]).all(), "every sample's estimate read"
    assert not run.sequence_notes


def test_a_log_replayed_with_another_parameter_set_is_warned_of(tmp_path, capsys):
    """8e-3 from the log's estimates passed with one console line among others."""
    log = tmp_path / "nasa.blf"
    assert main(["hil", "run", "--params", "nasa-pcoe-18650", "--samples", "300", "--log", str(log),
                 "--out-dir", str(tmp_path / "a"), "--no-plot"]) == 0
    capsys.readouterr()
    assert main(["hil", "run", "--from-log", str(log), "--out-dir", str(tmp_path / "b"), "--no-plot"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "warning: the target's estimates are up to" in out and "another parameter set than" in out
    assert main(["hil", "run", "--from-log", str(log), "--params", "nasa-pcoe-18650", "--out-dir",
                 str(tmp_path / "c"), "--no-plot"]) == 0
    assert "warning: the target's estimates" not in capsys.readouterr().out


def _edited_log(source: Path, out: Path, keep=lambda msg: True, extra=lambda msg: []) -> Path:
    """`source`'s frames, those `keep` refuses left out and `extra`'s added after each, to `out`."""
    with can.Logger(str(out)) as writer:
        for msg in can.LogReader(str(source)):
            if keep(msg):
                writer.on_message_received(msg)
            for more in extra(msg):
                more.timestamp, more.channel = msg.timestamp, msg.channel
                writer.on_message_received(more)
    return out


def test_the_log_reader_names_cells_missing_doubled_or_beyond_the_pack(tmp_path, capsys):
    """Frames a log lacks or holds twice, each a warning of hil score (all three
    were absorbed: a pack cell without its MeasCell scored off with no cause,
    a second target's estimates taken for the first's or ignored, a target
    numbering its cells one up read as cells it was not)."""
    from bmsfil import can_contract as cc

    rec = bundled_recording().slice(0, 60)
    base = _host_run_log(tmp_path / "base.blf", [rec, rec])
    seq = lambda msg: cc.decode(msg).sequence  # noqa: E731
    cases = {
        "missing": dict(keep=lambda m: not (m.arbitration_id == cc.FrameId.MEAS_CELL and 20 <= seq(m) < 30
                                            and cc.decode(m).cell_index == 1)),
        "doubled": dict(extra=lambda m: [cc.encode_est_cell(seq(m), 0, 0.3, 0.01)]
                        if m.arbitration_id == cc.FrameId.EST_CELL and cc.decode(m).cell_index == 0 else []),
        "beyond": dict(extra=lambda m: [cc.encode_est_cell(seq(m), 2, 0.5, 0.01)]
                       if m.arbitration_id == cc.FrameId.EST_CELL and cc.decode(m).cell_index == 1 else []),
    }
    said = {
        "missing": "cell 1's MeasCell missing in 10 sample(s) its MeasPack counts (first sequence 20)",
        "doubled": "60 EstCell(s) for a sample and cell that already had another estimate (first: sequence 0, cell 0",
        "beyond": "60 frame(s) of cells beyond the n_cells of their sample's MeasPack",
    }
    for name, edit in cases.items():
        log = _edited_log(base, tmp_path / f"{name}.blf", **edit)
        js = tmp_path / f"{name}.json"
        main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "o")])
        assert said[name] in capsys.readouterr().out.replace("\n", " ")
        (doc,) = json.loads(js.read_text())["recordings"]
        assert any(said[name] in w for w in doc["log_warnings"])
    (run,) = read_log(base)
    assert run.sequence_notes == ()


def test_a_python_can_csv_log_and_a_comment_line_are_read(tmp_path, capsys):
    """python-can's own CSV log crashed the reader (a TypeError traceback); a
    '#' note on a text log's first line refused the whole log."""
    base = _host_run_log(tmp_path / "base.blf", [bundled_recording().slice(0, 40)])
    as_csv = _edited_log(base, tmp_path / "run.csv")
    js = tmp_path / "s.json"
    assert main(["hil", "score", str(as_csv), "--json", str(js), "--out-dir", str(tmp_path / "o")]) == 0
    (doc,) = json.loads(js.read_text())["recordings"]
    assert doc["samples_fully_answered"] == 40
    text = _edited_log(base, tmp_path / "run.log")
    noted = tmp_path / "noted.log"
    noted.write_text("# recorded on bench 3, pack B\n" + text.read_text())
    assert main(["hil", "score", str(noted), "--json", str(js), "--out-dir", str(tmp_path / "o")]) == 0
    assert "(line 1: a comment)" in capsys.readouterr().out.replace("\n", " ")
    assert json.loads(js.read_text())["recordings"][0]["samples_fully_answered"] == 40


def test_two_runs_of_one_recording_keep_their_own_files(tmp_path, capsys):
    rec = bundled_recording().slice(0, 40)
    path = tmp_path / "r.npz"
    rec.save(path)
    out = tmp_path / "o"
    assert main(["hil", "run", str(path), str(path), "--out-dir", str(out), "--no-plot"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{rec.meta.name}-2.csv", f"{rec.meta.name}.csv"]
    assert f"a second cell named {rec.meta.name}" in capsys.readouterr().out


def test_score_fails_a_log_unlike_the_core_of_the_set_named(tmp_path, capsys):
    """`hil score` only warned of estimates far from the C core, since a log does not
    say which set its target ran. Given --params, that is said: estimates beyond
    1e-3 of that set's core fail the exit status (1); without it, still a warning."""
    log = tmp_path / "run.blf"
    assert main(["hil", "run", "--samples", "600", "--log", str(log), "--no-plot", "--out-dir", str(tmp_path)]) == 0
    out = str(tmp_path / "score")
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--out-dir", out, "--no-plot", "--params", "lg-hg2"]) == 0
    assert main(["hil", "score", str(log), "--out-dir", out, "--no-plot"]) == 0
    assert main(["hil", "score", str(log), "--out-dir", out, "--no-plot", "--params", "nasa-pcoe-18650"]) == 1
    text = " ".join(capsys.readouterr().out.split())
    assert "with the parameter set nasa-pcoe-18650 the target ran (--params): beyond the 0.001" in text


def _blf(path, frames: int, compression_level: int, close: bool = True) -> bytes:
    writer = can.BLFWriter(str(path), max_container_size=512, compression_level=compression_level)
    for k in range(frames):
        writer.on_message_received(can.Message(timestamp=1000 + k * 0.01, arbitration_id=0x100 + k % 5,
                                               data=bytes([k % 256] * 8), is_extended_id=False))
    if close:
        writer.stop()
    else:  # a killed logger: its last container written, its header's size never
        writer._flush()  # noqa: SLF001 - python-can's own container write
        writer.file.flush()
    return path.read_bytes()


def _containers(data: bytes) -> list[int]:
    return [i for i in range(144, len(data) - 15) if data[i:i + 4] == b"LOBJ" and data[i + 12] == 10]


def test_a_blf_object_of_no_size_does_not_go_round_for_ever(tmp_path):
    """An uncompressed container whose inner object's size reads 0: python-can's
    reader went round for ever on it (a review's). The container is now skipped."""
    data = bytearray(_blf(tmp_path / "raw.blf", 300, compression_level=0))
    mid = _containers(bytes(data))[len(_containers(bytes(data))) // 2]
    inner = data.index(b"LOBJ", mid + 32)
    data[inner + 8:inner + 12] = bytes(4)
    (tmp_path / "zero.blf").write_bytes(bytes(data))
    read = LogRead(tmp_path / "zero.blf")
    assert 280 <= sum(1 for _ in itertools.islice(read, 1000)) < 300
    assert [at for at, _ in read.skipped] == [mid] and "an object of 0 bytes" in read.skipped[0][1]


def test_a_damaged_size_in_a_log_its_logger_never_closed(tmp_path):
    """A killed logger's file (its header's size never written) with one bit of a
    container's size flipped: the container ran past the end of the file, was taken
    for the one the file was cut in, and everything after it was lost without a word
    (a review's). Data after a container's end are damage in any file."""
    data = bytearray(_blf(tmp_path / "open.blf", 1500, compression_level=-1, close=False))
    starts = _containers(bytes(data))
    at = starts[10]
    data[at + 10] ^= 1
    (tmp_path / "flipped.blf").write_bytes(bytes(data))
    read = LogRead(tmp_path / "flipped.blf")
    assert 1400 <= sum(1 for _ in read) < 1500
    assert [a for a, _ in read.skipped] == [at]


def test_the_log_reader_counts_target_statuses_missing_from_their_counter(tmp_path, capsys):
    """TargetStatus counts +1 modulo 256 a frame: a jump (frames lost) was read
    in silence; a repeat (an echo) and a restart (counter 0, not running) are
    no loss."""
    from bmsfil import can_contract as cc

    rec = bundled_recording().slice(0, 30)
    base = _host_run_log(tmp_path / "base.blf", [rec])
    running, booting = cc.TargetState.RUNNING, cc.TargetState.BOOTING
    statuses = {2: (0, booting), 4: (1, running), 6: (1, running), 8: (2, running), 10: (6, running),
                12: (0, booting), 14: (1, running), 16: (3, running)}
    log = _edited_log(base, tmp_path / "statuses.blf", extra=lambda m: [
        cc.encode_target_status(*statuses[cc.decode(m).sequence], cc.decode(m).sequence)]
        if m.arbitration_id == cc.FrameId.MEAS_PACK and cc.decode(m).sequence in statuses else [])
    (run,) = read_log(log)
    said = "4 TargetStatus frame(s) missing from its counter (3 after counter 2, 1 after counter 1)"
    assert [note for note in run.sequence_notes if "TargetStatus" in note] == [
        f"{said}: lost on the bus or by the logger"]
    js = tmp_path / "score.json"
    main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "o"), "--no-plot"])
    assert said in " ".join(capsys.readouterr().out.split())
    assert any(said in w for w in json.loads(js.read_text())["recordings"][0]["log_warnings"])


def test_the_log_reader_tells_two_targets_statuses_from_lost_ones(tmp_path):
    """Two boards' TargetStatus, their counters interleaved, read as frames lost at every
    status (a review's)."""
    from bmsfil import can_contract as cc

    base = _host_run_log(tmp_path / "base.blf", [bundled_recording().slice(0, 60)])
    log = _edited_log(base, tmp_path / "two.blf", extra=lambda m: [
        cc.encode_target_status((c + cc.decode(m).sequence) % 256, cc.TargetState.RUNNING, cc.decode(m).sequence)
        for c in (10, 200)] if m.arbitration_id == cc.FrameId.MEAS_PACK else [])
    (run,) = read_log(log)
    assert not [note for note in run.sequence_notes if "missing from its counter" in note]
    assert ("TargetStatus counters interleaved (two targets?): 118 status(es) going on from the counter of the one "
            "before the last, not counted as frames lost") in run.sequence_notes


@pytest.mark.parametrize("command", [["monitor", "--once", "--log"], ["hil", "score"]])
def test_an_mf4_log_without_asammdf_says_what_to_install(tmp_path, capsys, monkeypatch, command):
    """python-can's .mf4 reader raised NotImplementedError: a traceback."""
    import can.io.mf4

    monkeypatch.setattr(can.io.mf4, "asammdf", None)
    log = tmp_path / "run.mf4"
    log.write_bytes(b"MDF     4.10    ")
    assert main([*command, str(log), *(["--out-dir", str(tmp_path / "o")] if command[0] == "hil" else [])]) == 2
    captured = capsys.readouterr()
    said = " ".join((captured.out + captured.err).split())
    assert f"{log}: python-can reads an .mf4 log only with the asammdf package installed: pip install asammdf" in said
    assert "Traceback" not in said


@pytest.mark.parametrize("suffix", [".log", ".asc", ".blf"])
def test_a_gzip_compressed_log_is_read_as_its_format_is(tmp_path, capsys, suffix):
    """A .log.gz or .asc.gz was read by python-can's reader, not TextLog (a
    bad line or a note ended the read), a .blf.gz's size checked against the
    compressed file's (every one cut short), and a name of three suffixes
    refused; a cut gzip stream must end the read, said, not loop."""
    log = tmp_path / f"run{suffix}"
    assert main(["hil", "run", "--samples", "300", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    frames = sum(1 for _ in LogRead(log))
    body = log.read_bytes()
    if suffix != ".blf":  # a note written into the log: TextLog skips it, python-can's readers fail on it
        lines = body.splitlines(keepends=True)
        body = b"".join([*lines[:100], b"# adapter re-plugged\n", *lines[100:]])
    packed = tmp_path / f"run.v2{suffix}.gz"  # python-can reads names of exactly two suffixes
    packed.write_bytes(gzip.compress(body))
    read = LogRead(packed)
    assert sum(1 for _ in read) == frames and read.cut_short is None
    assert read.skipped == ([] if suffix == ".blf" else [(101, "a comment")])
    cut = tmp_path / f"cut{suffix}.gz"
    cut.write_bytes(packed.read_bytes()[: packed.stat().st_size * 2 // 3])
    read = LogRead(cut)
    got = sum(1 for _ in read)
    assert 0 < got < frames
    assert read.cut_short.startswith("ends in a damaged or cut gzip stream (EOFError: ") and f"after {got} records" \
        in read.cut_short
    capsys.readouterr()
    assert main(["monitor", "--log", str(cut), "--once"]) == 0
    assert "ends in a damaged or cut gzip stream" in " ".join(capsys.readouterr().err.split())


def test_a_gzip_compressed_blf_its_logger_never_closed_is_said_to_be(tmp_path):
    """Its header's size is checked against the uncompressed size (gzip's ISIZE)."""
    data = _blf(tmp_path / "open.blf", 1500, compression_level=-1, close=False)
    packed = tmp_path / "open.blf.gz"
    packed.write_bytes(gzip.compress(data))
    read = LogRead(packed)
    assert sum(1 for _ in read) == 1500
    assert read.cut_short.startswith(f"decompresses to {len(data):,} bytes where its header says ")


def test_score_says_when_the_target_stopped_answering(tmp_path, capsys):
    """No estimate after sample 200 of 300 scored with exit 0 and no word."""
    from bmsfil import can_contract as cc

    rec = bundled_recording().slice(0, 300)
    base = _host_run_log(tmp_path / "base.blf", [rec])
    log = _edited_log(base, tmp_path / "stopped.blf", keep=lambda m: not (
        cc.FrameId.EST_CELL <= m.arbitration_id < cc.FrameId.TARGET_STATUS and cc.decode(m).sequence > 200))
    js = tmp_path / "score.json"
    capsys.readouterr()
    assert main(["hil", "score", str(log), "--json", str(js), "--out-dir", str(tmp_path / "o"), "--no-plot"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("warning: the target stopped answering: its last estimate is for sample 200 (sequence 200), and none of "
            "the 99 sample(s) after it, to the end of the log, has one") in out
    (doc,) = json.loads(js.read_text())["recordings"]
    assert doc["last_sample_answered"] == 200 and doc["samples_unanswered_at_end"] == 99
    assert main(["hil", "score", str(base), "--out-dir", str(tmp_path / "o"), "--no-plot"]) == 0
    assert "stopped answering" not in capsys.readouterr().out


def test_from_log_of_a_log_with_a_gap_does_not_blame_the_parameter_set_alone(tmp_path, capsys):
    """A replay of a log that lacks 20 samples warned of the gap, then said the
    log was written with another parameter set."""
    from bmsfil import can_contract as cc

    rec = bundled_recording().slice(0, 300)
    base = _host_run_log(tmp_path / "base.blf", [rec])
    log = _edited_log(base, tmp_path / "gap.blf", keep=lambda m: not (
        m.arbitration_id < cc.FrameId.TARGET_STATUS and 100 <= cc.decode(m).sequence < 120))
    capsys.readouterr()
    assert main(["hil", "run", "--from-log", str(log), "--out-dir", str(tmp_path / "o"), "--no-plot"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "20 sample(s) missing from the log's MeasPack sequence" in out
    assert ("agree within: the log's 1 warning(s) above (samples or frames it lacks, repeats or holds out of order, "
            "faults the logged target reported) may explain it, the replay sending what the log holds, not what the "
            "logged target was sent or did; else the log was written with another parameter set") in out, out


@pytest.mark.parametrize("packing", ["zero-padded", "two members"])
def test_a_padded_or_multi_member_blf_gz_is_read_to_its_end_once(tmp_path, packing):
    """Its size was taken from gzip's ISIZE trailer: 0 after zero padding, the last member's
    alone after `cat a.gz b.gz`. A damaged container then sent the search for the next one
    back to byte 0, and the log was read round for ever (a review's); an undamaged one was
    said to be cut short."""
    data = _blf(tmp_path / "raw.blf", 1500, compression_level=-1)
    starts = _containers(data)

    def pack(body: bytes) -> bytes:
        if packing == "zero-padded":
            return gzip.compress(body) + bytes(512)
        return gzip.compress(body[:len(body) // 2]) + gzip.compress(body[len(body) // 2:])

    whole = tmp_path / "whole.blf.gz"
    whole.write_bytes(pack(data))
    read = LogRead(whole)
    assert sum(1 for _ in itertools.islice(read, 3000)) == 1500
    assert read.cut_short is None and read.skipped == []
    damaged = bytearray(data)
    at = starts[len(starts) // 2]
    damaged[at:at + 4] = b"XOBJ"
    (tmp_path / "damaged.blf.gz").write_bytes(pack(bytes(damaged)))
    read = LogRead(tmp_path / "damaged.blf.gz")
    assert 1400 <= sum(1 for _ in itertools.islice(read, 3000)) < 1500
    assert [a for a, _ in read.skipped] == [at] and read.cut_short is None


def test_a_damaged_container_of_a_blf_gz_is_searched_past_without_rewinding(tmp_path, monkeypatch):
    """The search for the next container seeked back to the damaged one's start, and on:
    in a gzip stream each seek back decompresses it again from its start (a review's). The
    bytes already read are searched, then the stream read on."""
    data = bytearray(_blf(tmp_path / "raw.blf", 1500, compression_level=-1))
    starts = _containers(bytes(data))
    for at in starts[5:-5:7]:  # several damaged sizes: each container's data read past its end
        data[at + 8:at + 12] = (int.from_bytes(data[at + 8:at + 12], "little") + 300).to_bytes(4, "little")
    (tmp_path / "damaged.blf.gz").write_bytes(gzip.compress(bytes(data)))
    rewinds: list[object] = []
    real_rewind = gzip._GzipReader._rewind  # noqa: SLF001 - what a seek back costs: decompressing again
    monkeypatch.setattr(gzip._GzipReader, "_rewind", lambda self: rewinds.append(self) or real_rewind(self))
    read = LogRead(tmp_path / "damaged.blf.gz")
    assert 1000 <= sum(1 for _ in itertools.islice(read, 3000)) < 1500
    assert [a for a, _ in read.skipped] == starts[5:-5:7] and read.cut_short is None
    assert rewinds == []


def test_a_damaged_gzip_stream_is_said_up_front_and_not_read_past_its_whole_members(tmp_path, capsys):
    """A byte flipped inside a .log.gz: what followed it decompressed to garbage that was read
    as frames (skipped lines, wrong values) before the CRC at the end of the stream said it
    was damaged (a review's). The stream is checked first; a damaged member is not read, the
    whole members before it are, and that is said before anything else."""
    log = tmp_path / "run.log"
    assert main(["hil", "run", "--samples", "300", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    lines = log.read_bytes().splitlines(keepends=True)
    first, rest = b"".join(lines[:len(lines) // 2]), b"".join(lines[len(lines) // 2:])
    flipped = bytearray(gzip.compress(rest))
    flipped[len(flipped) // 2] ^= 0x01
    one = tmp_path / "one.log.gz"
    one.write_bytes(bytes(flipped))
    with pytest.raises(LogError, match=r"one\.log\.gz: its gzip stream is damaged in its first member \(zlib\.error"):
        LogRead(one)
    assert main(["monitor", "--once", "--log", str(one)]) == 2
    two = tmp_path / "two.log.gz"  # two members (bgzip, cat a.gz b.gz): the first whole
    two.write_bytes(gzip.compress(first) + bytes(flipped))
    read = LogRead(two)
    assert read.stream_note.startswith(f"its gzip stream is damaged in the member at compressed byte "
                                       f"{len(gzip.compress(first)):,} (zlib.error")
    assert sum(1 for _ in read) == len(lines) // 2 and read.skipped == [] and read.cut_short is None
    js = tmp_path / "score.json"
    capsys.readouterr()
    main(["hil", "score", str(two), "--json", str(js), "--out-dir", str(tmp_path / "o"), "--no-plot"])
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"bmsfil hil score: warning: {two}: its gzip stream is damaged in the member at"), out
    assert json.loads(js.read_text())["stream_warning"] == read.stream_note


@pytest.mark.parametrize("suffix", [".log", ".blf"])
def test_bytes_after_a_gzip_stream_are_ignored_and_said(tmp_path, capsys, suffix):
    """A newline appended to a .gz (or any bytes after its last member) was said to be 'a
    damaged or cut gzip stream'. After a whole member they are trailing data, ignored."""
    log = tmp_path / f"run{suffix}"
    assert main(["hil", "run", "--samples", "100", "--log", str(log), "--out-dir", str(tmp_path), "--no-plot"]) == 0
    frames = sum(1 for _ in LogRead(log))
    packed = gzip.compress(log.read_bytes())
    trailing = tmp_path / f"trailing{suffix}.gz"
    trailing.write_bytes(packed + b"\n")
    read = LogRead(trailing)
    assert sum(1 for _ in read) == frames and read.cut_short is None
    assert read.stream_note == (f"trailing data after the gzip stream (1 byte(s) from compressed byte "
                                f"{len(packed):,}, which begin no gzip member), ignored")
    capsys.readouterr()
    assert main(["monitor", "--once", "--log", str(trailing)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "trailing data after the gzip stream" in err and "damaged or cut" not in err


def test_score_tells_a_target_answering_without_a_valid_soc_from_one_that_stopped(tmp_path, capsys):
    """A target answering every sample with soc_valid 0 was said to have stopped answering
    (its SOC NaN as a missing one's), and the sample's sequence was given as its index modulo
    4096, wrong after a gap or in a log that starts mid-run (a review's)."""
    from bmsfil import can_contract as cc

    rec = bundled_recording().slice(0, 300)
    base = _host_run_log(tmp_path / "base.blf", [rec])

    def not_valid(m: can.Message) -> list[can.Message]:
        f = cc.decode(m)
        return [cc.encode_est_cell(f.sequence, f.cell_index, math.nan, math.nan, cc.FLAG_VOLTAGE_INVALID)]

    estimate = lambda m: m.arbitration_id == cc.FrameId.EST_CELL  # noqa: E731
    invalid = _edited_log(base, tmp_path / "invalid.blf", keep=lambda m: not (estimate(m) and cc.decode(m).sequence
                                                                              >= 280),
                          extra=lambda m: not_valid(m) if estimate(m) and cc.decode(m).sequence >= 280 else [])
    capsys.readouterr()
    main(["hil", "score", str(invalid), "--out-dir", str(tmp_path / "o"), "--no-plot"])
    assert "stopped answering" not in capsys.readouterr().out
    (run,) = read_log(invalid)
    assert run.estimated.all() and np.isnan(run.logged_soc[280:]).all()
    # 20 samples lost (100-119), the target silent after sequence 200: sample 180 is sequence 200.
    gap = _edited_log(base, tmp_path / "gap.blf", keep=lambda m: not (
        m.arbitration_id < cc.FrameId.TARGET_STATUS and 100 <= cc.decode(m).sequence < 120
        or cc.FrameId.EST_CELL <= m.arbitration_id < cc.FrameId.TARGET_STATUS and cc.decode(m).sequence > 200))
    js = tmp_path / "score.json"
    main(["hil", "score", str(gap), "--json", str(js), "--out-dir", str(tmp_path / "o"), "--no-plot"])
    out = " ".join(capsys.readouterr().out.split())
    assert "the target stopped answering: its last estimate is for sample 180 (sequence 200), and none of the " \
           "99 sample(s) after it" in out
    (run,) = read_log(gap)
    assert list(run.sequences[178:182]) == [198, 199, 200, 201]
