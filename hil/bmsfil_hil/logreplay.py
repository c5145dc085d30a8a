"""Recordings rebuilt from a python-can log of the CAN contract.

Any log that carries the measurement frames (a previous `bmsfil hil run
--log`, a pack recorded on a bus with candump or a vendor tool, in any format
python-can reads) becomes, for each recording it holds (each starts again at
sequence 0), one `Recording` per cell, so that it can be
replayed to a target again. The values are the ones the bus carried, so a
replay sends exactly the frames that were logged and a deterministic target
answers with exactly the estimates that were logged (`logged_estimates`).

A sample's answers are its first EstCell, EstCellFlags, EstCellHealth and
EstCellPower for each cell, as in a live replay (a repeat is not the answer).

Rebuilt recordings have no reference SOC (the bus does not carry one): they
are compared with the C core and with the logged estimates, not scored.
A sample whose interval was sent as not valid is rebuilt with a 0 s interval
(a recording's clock cannot skip); a cell missing from a sample is rebuilt
with no voltage or temperature (sent as not valid again).
"""

from __future__ import annotations

import gzip
import io
import itertools
import locale
import math
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from typing import BinaryIO
from dataclasses import dataclass, field
from pathlib import Path

import can
import numpy as np
from can.io import blf
from can.io.blf import BLFParseError

from bmsfil import can_contract as cc
from bmsfil.recording import Recording, RecordingMeta
from bmsfil_hil.replay import RESTART_OUTCOME, Health, Plausibility, Power, restart_problems

#: Sequence 0 after one of the last WRAP_SLACK sequences is the counter wrapping, not a new
#: recording: the frames just before the wrap may have been lost on the bus. Sequences are
#: 12 bits (cc.SEQUENCE_MODULUS, 4096): 64 keeps the share of recordings whose end falls in
#: the slack (and so would be read as joined to the next) at 1.6 %.
WRAP_SLACK = 64
#: A MeasPack of sequence 0 within this many sequences after the last is a sample put back in
#: order (frames reordered on the bus), not a new recording; a recording of fewer samples
#: followed by another in one log reads as one.
REORDER_SLACK = 4


def sequence_restarts(last: int, sequence: int) -> bool:
    """Whether a sample of `sequence` after one of `last` starts the count again (the harness
    replays each recording from sequence 0): one of the first WRAP_SLACK sequences (0, or a
    later one when the next recording's first frames were lost) going back from further on
    than REORDER_SLACK, unless the last was within WRAP_SLACK of the counter's wrap."""
    ahead = (sequence - last) % cc.SEQUENCE_MODULUS  # how far on, if it is on
    back = (last - sequence) % cc.SEQUENCE_MODULUS  # how far back, if it is back
    # One of the first sequences, not the next few (a loss), not one of the last few put back
    # (reordered on the bus), and not after the counter's wrap.
    return (sequence < WRAP_SLACK and ahead > WRAP_SLACK and back > REORDER_SLACK
            and last < cc.SEQUENCE_MODULUS - WRAP_SLACK)


def statuses_interleaved(prior: int | None, last: int, counter: int) -> bool:
    """Whether a TargetStatus of `counter`, after one of `last` and one of `prior` before that,
    is two targets' statuses interleaved, each counting on its own (+1 modulo 256 a frame): it
    goes on from the counter before the last, and the last was no small step from that one nor
    is this from the last (a jump back, then one forward, alternating; within REORDER_SLACK + 1
    either way it is a status put back in order, or lost); its jumps are not frames lost."""
    modulus = cc.COUNTER_MODULUS

    def far(a: int, b: int) -> bool:
        return REORDER_SLACK + 1 < (b - a) % modulus < modulus - REORDER_SLACK - 1

    return prior is not None and (counter - prior) % modulus == 1 and far(prior, last) and far(last, counter)


def frame_error_kind(msg: can.Message, exc: cc.FrameError) -> str:
    """The kind of a frame that did not decode, to count like ones together: one not in the
    contract by its ID (error frames, CAN FD frames and 29-bit IDs each one kind), one of the
    contract by its ID and name, and the field or what was wrong."""
    if msg.is_error_frame:
        return "error frames"
    if exc.frame_name is None:
        return ("29-bit (extended) IDs" if msg.is_extended_id else "CAN FD frames" if msg.is_fd
                else f"ID 0x{exc.frame_id:03X}, not in the contract")
    where = f"0x{exc.frame_id:03X} {exc.frame_name}"
    return f"{where}, field {exc.field}" if exc.field else f"{where}: {str(exc).partition(': ')[2]}"


class LogError(ValueError):
    """A log that holds no replayable measurements, with the file and why."""


class ChannelError(LogError):
    """A log with frames of the contract on more than one channel and none
    chosen, or none on the channel chosen."""


@dataclass
class LoggedRun:
    name: str               # the log's stem, and -recN when it holds several recordings
    cells: list[Recording]
    logged_soc: np.ndarray  # (samples, cells): EstCell soc found in the log, NaN where none
    logged_sigma: np.ndarray  # the same for soc_sigma
    undecodable: int        # frames of the log that are not frames of the contract
    plausibility: Plausibility  # the EstCellFlags found (`sent` False if none)
    health: Health              # the EstCellHealth found
    power: Power                # the EstCellPower found
    cut_short: str | None = None  # the last run of a log that looks cut short (LogRead.cut_short): why,
    # and after how many records that did read (all of them kept)
    stream_note: str | None = None  # (with the first run) a gzip stream's damage or trailing bytes (LogRead)
    skipped: tuple[tuple[int, str], ...] = ()  # (with the last run) a text log's lines python-can cannot
    # read, skipped: line number and why; a .blf's containers: the byte each began at and why
    skipped_unit: str = "line"  # "line" or "container" (LogRead.skipped_unit)
    sequence_notes: tuple[str, ...] = ()  # samples the MeasPack sequence says were lost, repeated or reordered
    crc_failed: int = 0  # measurement frames of the log refused for their crc (counted with the first run)
    #: (with the first run) the undecodable frames not refused for their crc, by kind
    #: (`frame_error_kind`), the most frequent first
    undecodable_kinds: tuple[tuple[str, int], ...] = ()
    contract: str = cc.CONTRACT_VERSION  # the CAN contract the log was written under (CONTRACT3 is read too)
    #: The HostCommands the log holds: (the sample each followed, -1 before the first; the command).
    commands: tuple[tuple[int, cc.HostCommandCode], ...] = ()
    #: (samples, cells): an EstCell came for the sample and cell, its SOC valid or not (logged_soc is
    #: NaN for both a missing and a not-valid one)
    estimated: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))
    #: (samples,): each sample's MeasPack sequence (12 bits), in the order the samples were sent
    sequences: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def power_cycles(self) -> list[int]:
        """The samples after which the log's run power-cycled its target (which then had to
        start every cell afresh; `bmsfil_hil.expected`)."""
        return [k for k, command in self.commands if command == cc.HostCommandCode.POWER_CYCLE]


def read_log(path: Path, channel: str | None = None, channel_option: str = "--channel") -> list[LoggedRun]:
    """The measurements (and estimates) of a log, sample by sample: one
    `LoggedRun` per recording the log holds. Only the frames of `channel`
    (as python-can names it, `str(msg.channel)`) are read when given; without
    it, a log with frames of the contract on more than one channel is
    refused (`ChannelError`, naming the channels and `channel_option`, the
    option that chooses one), since two buses' frames read as one stream
    mix two packs' samples. The harness replays each
    recording from sequence 0, so a MeasPack of sequence 0 starts the next
    recording unless it follows one of the last WRAP_SLACK sequences (the
    counter's wrap, with frames before it possibly lost). A recording of a
    multiple of 4,096 samples (sequences are 12 bits, cc.SEQUENCE_MODULUS;
    or one ending within WRAP_SLACK of a multiple) followed by another is
    read as one."""
    reader = LogRead(path)
    stream = one_channel(reader, path, channel, channel_option)
    head: list[can.Message] = []  # the first CONTRACT_PROBE measurement frames and what came with them
    for msg in stream:
        head.append(msg)
        if sum(m.arbitration_id in cc.E2E_FRAMES for m in head) >= CONTRACT_PROBE:
            break
    legacy = _written_under_contract3(head)
    segments: list[_Segment] = []
    before: list[cc.Frame] = []  # decoded frames ahead of the log's first MeasPack
    undecodable = 0
    kinds: dict[str, int] = {}  # undecodable frames not refused for their crc, by kind
    pack_refused: tuple[int, str] = (0, "")  # frames with MeasPack's ID that do not decode, and the first's error
    measurements = crc_failed = contract3 = 0  # MeasPack/MeasCell frames, those that failed the crc, and
    # those of them that carry the crc of contract bmsfil-can-3 (its CRC left out the frame ID)
    for msg in itertools.chain(head, stream):
        measurement = msg.arbitration_id in cc.E2E_FRAMES
        measurements += measurement
        if legacy and measurement and not _carries_contract3_crc(bytes(msg.data)):
            undecodable += 1  # damaged: refused by the crc it was sent with
            crc_failed += 1
            continue
        try:
            frame = cc.decode(_as_current_contract(msg) if legacy and measurement else msg)
        except cc.FrameError as exc:
            undecodable += 1
            if measurement and exc.field == "crc":
                crc_failed += 1
                contract3 += _carries_contract3_crc(bytes(msg.data))
            else:
                kind = frame_error_kind(msg, exc)
                kinds[kind] = kinds.get(kind, 0) + 1
            if exc.frame_name == "MeasPack":
                pack_refused = (pack_refused[0] + 1, pack_refused[1] or str(exc))
            continue
        if isinstance(frame, cc.MeasPack) and segments and not segments[-1].starts_anew(frame) \
                and segments[-1].repeats(frame):
            segments[-1].repeated += 1  # the same frame again (a bus's echo of the harness's own, a duplicate)
            continue
        if isinstance(frame, cc.MeasPack) and (not segments or segments[-1].starts_anew(frame)):
            segments.append(_Segment())
            if len(segments) > 1:
                segments[-2].hand_over(segments[-1])
            if len(segments) == 1:  # the frames logged before the first MeasPack are its sample's, if any
                segments[0].add(frame)
                for early in before:
                    segments[0].add(early)
                continue
        if segments:
            segments[-1].add(frame)
        else:
            before.append(frame)
    if measurements and crc_failed > measurements // 2:
        failing = (f"{path}: {crc_failed} of its {measurements} measurement frames (MeasPack, MeasCell) fail the "
                   f"end-to-end check of the CAN contract {CONTRACT3 if legacy else cc.CONTRACT_VERSION} (CRC-4/G-704 "
                   f"over {'the payload' if legacy else 'the frame ID and the payload'})")
        if contract3 > crc_failed // 2:
            raise LogError(f"{failing}, and {contract3} of them carry the crc of the earlier contract {CONTRACT3} "
                           "(over the payload alone), but not its first ones: frames of two contracts in one log?")
        raise LogError(f"{failing}: a log written under an earlier contract (before {CONTRACT3}, which added the "
                       "crc), or a bus that damaged most frames; read it with the bmsfil that wrote it")
    if not segments:
        refused = (f"; its {pack_refused[0]} frame(s) with that ID do not decode, the first: {pack_refused[1]}"
                   if pack_refused[0] else "")
        raise LogError(f"{path}: no MeasPack frame (0x{cc.FrameId.MEAS_PACK:03X}) in the log: nothing to replay"
                       + refused + (f"; {reader.stream_note}" if reader.stream_note else "")
                       + (f"; it {reader.cut_short}" if reader.cut_short else ""))
    names = [path.stem] if len(segments) == 1 else [f"{path.stem}-rec{i + 1}" for i in range(len(segments))]
    # Frames outside the contract are the log's, not a recording's: counted with the first.
    runs = [seg.run(name, str(path), undecodable if i == 0 else 0)
            for i, (seg, name) in enumerate(zip(segments, names))]
    runs[-1].cut_short = reader.cut_short
    runs[-1].skipped = tuple(reader.skipped)
    runs[-1].skipped_unit = reader.skipped_unit
    runs[0].crc_failed = crc_failed
    runs[0].stream_note = reader.stream_note
    runs[0].undecodable_kinds = tuple(sorted(kinds.items(), key=lambda item: -item[1]))
    for run in runs:
        run.contract = CONTRACT3 if legacy else cc.CONTRACT_VERSION
    return runs


#: The contract before the CRC covered the frame ID; its logs are read too
#: (the same frames, the crc over the payload alone).
CONTRACT3 = "bmsfil-can-3"
#: Measurement frames a log is judged by: written under CONTRACT3 if most of them carry its crc.
CONTRACT_PROBE = 32


#: Frame IDs of the contract (classic 11-bit): the frames whose channel `one_channel` checks.
CONTRACT_IDS = frozenset(int(fid) for fid in cc.FrameId)


def one_channel(messages: Iterable[can.Message], path: Path, channel: str | None,
                option: str = "--channel") -> Iterator[can.Message]:
    """The messages of one channel of a log: those of `channel` (compared
    as `str(msg.channel)`), or, with none given, all of them as long as the
    host's frames of the contract (0x100-0x1FF) are on one channel and the
    target's on one: the harness logs what it sent on the writer's default
    channel and what it received on the bus's (a board on can1 or a PCAN
    adapter), one bus under two names. `ChannelError` at the first frame of
    the contract from either side on a second channel, or at the end when
    `channel` has none. `option` is the option that chooses a channel, named
    in the error."""
    seen: list[str] = []  # channels with frames of the contract, in order of appearance
    sides: dict[bool, str] = {}  # host's frames (True) or the target's: their channel
    for msg in messages:
        name = str(msg.channel)
        if msg.arbitration_id in CONTRACT_IDS and not msg.is_extended_id:
            if name not in seen:
                seen.append(name)
            side = msg.arbitration_id < int(cc.FrameId.EST_CELL)
            if channel is None and sides.setdefault(side, name) != name:
                raise ChannelError(f"{path}: frames of the CAN contract on more than one channel "
                                   f"({_channels_text(seen)}): the traffic of two buses cannot be read as one "
                                   "stream; choose one with " + " or ".join(f"{option} {c}" for c in seen))
        if channel is None or name == channel:
            yield msg
    if channel is not None and channel not in seen:
        raise ChannelError(f"{path}: {option} {channel}: no frame of the CAN contract on that channel; "
                           + (f"the log has them on {_channels_text(seen)}" if seen else "the log has none"))


def _channels_text(channels: list[str]) -> str:
    """Channels as python-can names them, with the numbering it gives an
    .asc or .blf file's (from 0 where the file counts from 1)."""
    text = ", ".join(channels)
    if all(c.isdigit() for c in channels):
        text += " as python-can numbers them; the file's " + ", ".join(str(int(c) + 1) for c in channels)
    return text


def log_format(path: Path) -> tuple[str, bool]:
    """A log's format, by its suffix, and whether it is gzip-compressed: a
    `.gz` log is of the format of the suffix before it (run.asc.gz an .asc;
    python-can takes only names of exactly two suffixes, run.v2.asc.gz too)."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        return (suffixes[-2] if len(suffixes) > 1 else ""), True
    return path.suffix.lower(), False


#: What reading a damaged or cut gzip stream raises.
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True)
class GzipCheck:
    """What one pass over a gzip file found (`check_gzip`): its first `whole` bytes are whole
    members, each decompressing to what its CRC-32 and length say (`size` bytes in all); after
    them, a member that fails its check (`damage`: why), or `trailing` bytes that begin no
    member (zero padding, which gzip allows, is neither), or a member cut short (`cut`)."""

    whole: int
    size: int
    damage: str | None = None
    trailing: int = 0
    cut: bool = False


def check_gzip(path: Path) -> GzipCheck:
    """One pass over a gzip file, decompressing (and discarding) each member to check it: a
    byte damaged inside a member is found only by its CRC-32 at its end, after what it
    decompressed to from the damage on has already been read as the log's."""
    magic, chunk, most = b"\x1f\x8b", 1 << 20, 1 << 22  # most: decompressed bytes held at once
    whole = size = 0
    with path.open("rb") as raw:
        data = raw.read(chunk)
        while True:
            if whole:  # zero padding after a member, skipped as gzip skips it
                while data and not data.lstrip(b"\0"):
                    whole, data = whole + len(data), raw.read(chunk)
                stripped = data.lstrip(b"\0")
                whole, data = whole + len(data) - len(stripped), stripped
            if len(data) < len(magic):
                data += raw.read(chunk)
            if not data:
                return GzipCheck(whole, size)
            if not data.startswith(magic):
                return GzipCheck(whole, size, trailing=path.stat().st_size - whole)
            member, fed, out = zlib.decompressobj(16 + zlib.MAX_WBITS), 0, 0
            try:
                while not member.eof:
                    if not data:
                        data = raw.read(chunk)
                        if not data:
                            return GzipCheck(whole, size, cut=True)
                    fed += len(data)
                    out += len(member.decompress(data, most))
                    while member.unconsumed_tail and not member.eof:
                        out += len(member.decompress(member.unconsumed_tail, most))
                    data = b""
            except zlib.error as exc:
                return GzipCheck(whole, size, damage=_why(exc))
            data = member.unused_data
            whole, size = whole + fed - len(data), size + out


class _Prefix:
    """The first `size` bytes of a binary file, for gzip to read no further."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file, self.size = file, size

    def read(self, n: int = -1) -> bytes:
        left = max(self.size - self.file.tell(), 0)
        return self.file.read(left if n < 0 else min(n, left))


class _GzipPrefix(gzip.GzipFile):
    """A gzip file read up to its compressed byte `upto` (its whole members), or to its end
    (None); the file is closed with it."""

    def __init__(self, path: Path, upto: int | None = None) -> None:
        self._raw = path.open("rb")
        super().__init__(fileobj=self._raw if upto is None else _Prefix(self._raw, upto), mode="rb")  # type: ignore[arg-type]

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def log_messages(path: Path, upto: int | None = None) -> Iterable[can.Message]:
    """python-can's reader of a log; a text log (.asc, .log, ...) is read
    line by line with undecodable bytes replaced, a line python-can cannot
    read skipped (`TextLog`); a .blf container by container, one that cannot
    be read skipped (`BlfLog`); another binary log ends at a record it cannot.
    A gzip-compressed log (`log_format`) is read through gzip by the same, up to its
    compressed byte `upto` if given (`check_gzip`'s whole members)."""
    suffix, compressed = log_format(path)
    reader = can.io.player.MESSAGE_READERS.get(suffix)
    if reader is not None and issubclass(reader, can.io.generic.TextIOMessageReader):
        return TextLog(path, reader, compressed, upto)
    if suffix == ".blf":
        return BlfLog(path, compressed, upto)
    if compressed and reader is not None and issubclass(reader, can.io.generic.BinaryIOMessageReader):
        return reader(_GzipPrefix(path, upto))  # type: ignore[no-any-return]
    return can.LogReader(str(path))  # type: ignore[no-any-return]


class BlfLog(can.BLFReader):
    """python-can's BLF reader, going on past a container it cannot read (a
    damaged byte in its compressed data, its header or its inner objects):
    the file is searched for the next container's header, which is read as
    the logger wrote it. The frames of the damaged container are lost (and one
    that spanned its edge), as frames on a bus are; `skipped` says where (the
    byte the container began at), why and how many bytes were passed over. A
    container is damaged where its data do not end where its header says, or
    run past the end of a file its logger closed (the file header's size is
    the file's); in a file cut short (a killed logger's) the last container
    is read as far as it goes. A file that is not a BLF log is an error as
    before (LogRead). A gzip-compressed one is read through gzip, its sizes
    the uncompressed ones: its own is known only once read to its end (a
    short read ends a search), and whether its logger closed it is decided
    there, from the size its header gives."""

    #: Reading ahead for the next container's header, bytes at a time.
    SEARCH_CHUNK = 1 << 20
    #: Longer than any object inside a container (a CAN FD frame's is under 200 bytes; a
    #: logger's text event may be kilobytes).
    LONGEST_OBJECT = 1 << 20

    def __init__(self, path: Path, compressed: bool = False, upto: int | None = None) -> None:
        super().__init__(_GzipPrefix(path, upto) if compressed else str(path))
        self.skipped: list[tuple[int, str]] = []
        self._lost_tail = False
        self._back = b""  # bytes a search for a container read past, to be read again (`_read`)
        self.compressed = compressed
        # The file's size, which a closed file's header gives too. A gzip stream's is not known
        # before it is read to its end (its ISIZE trailer is of the last member alone, modulo
        # 2**32, and wrong after zero padding or trailing bytes): read until a read comes short.
        self._size: float = math.inf if compressed else path.stat().st_size
        self._closed = self.file_size == self._size

    def __iter__(self) -> Iterator[can.Message]:
        head, box = blf.OBJ_HEADER_BASE_STRUCT, blf.LOG_CONTAINER_STRUCT
        while True:
            at = self._tell()
            data = self._read(head.size)
            if len(data) < head.size:
                break  # the end, or a file cut in a header (LogRead says it is short)
            signature, _, _, obj_size, obj_type = head.unpack(data)
            if not self._object_header(signature, obj_size, at):
                self._resync(at, "not an object's header", data)
                continue
            obj_data = self._read(obj_size - head.size)
            cut = len(obj_data) < obj_size - head.size
            pad = b"" if cut else self._read(obj_size % 4)  # padding, as python-can reads it
            if obj_type != blf.LOG_CONTAINER:
                continue  # another object between containers: passed over, as python-can does
            if cut and len(obj_data) < box.size:
                break  # the file ends in the container's header
            try:
                method, expected = box.unpack_from(obj_data)
                body = obj_data[box.size:]
                if method == blf.ZLIB_DEFLATE:
                    z = zlib.decompressobj()
                    body = z.decompress(body)
                    # Data after its end (in a file cut short too): its size is damaged.
                    overrun, short = bool(z.unused_data), not z.eof
                elif method == blf.NO_COMPRESSION:
                    overrun, short = len(body) > expected, len(body) < expected
                else:
                    raise BLFParseError(f"unknown compression method {method}")
                if overrun or (not cut and (short or len(body) != expected)):
                    raise BLFParseError(f"its data do not end where its header says ({expected:,} bytes)")
            except (zlib.error, struct.error, BLFParseError) as exc:
                self._resync(at, _why(exc), data + obj_data + pad)  # its size may be what is damaged: search from its start
                continue
            if self._lost_tail:
                # After a skipped container, this one begins inside an object whose start
                # was lost with it: read from its first object on.
                body = body[max(body.find(b"LOBJ"), 0):]
                self._lost_tail = False
            try:
                self._check_objects(self._tail + body)
                yield from self._parse_container(body)
            except (struct.error, BLFParseError) as exc:
                self._tail, self._lost_tail = b"", True  # its other objects are lost with it
                self.skipped.append((at, f"{_why(exc)}; {obj_size:,} bytes"))
            if cut:
                break  # the file ends in this container: read as far as it goes
        if self.compressed:  # read to its end: its size is known now
            self._size = self._tell()
            self._closed = self.file_size == self._size
        self.stop()

    def _object_header(self, signature: bytes, obj_size: int, at: int) -> bool:
        """Whether an object header at byte `at` can be one: the signature, a size that
        holds a container's header and, in a closed file, ends within it."""
        least = blf.OBJ_HEADER_BASE_STRUCT.size + blf.LOG_CONTAINER_STRUCT.size
        return signature == b"LOBJ" and obj_size >= least and (at + obj_size <= self._size or not self._closed)

    def _check_objects(self, data: bytes) -> None:
        """Each object of a container's data (with what the last one carried over) goes on
        for at least its own header and at most LONGEST_OBJECT: python-can's reader goes
        round for ever on a size of 0, and carries a huge one over container after container."""
        base, least = blf.OBJ_HEADER_BASE_STRUCT, blf.OBJ_HEADER_BASE_STRUCT.size + blf.OBJ_HEADER_V1_STRUCT.size
        pos, n = 0, len(data)
        while (k := data.find(b"LOBJ", pos, pos + 8)) >= 0 and k + base.size <= n:
            obj_size = base.unpack_from(data, k)[3]
            if not least <= obj_size <= self.LONGEST_OBJECT:
                raise BLFParseError(f"an object of {obj_size:,} bytes")
            pos = k + obj_size

    def _read(self, n: int) -> bytes:
        """The next `n` bytes: those a search read past and put back (`_back`) first."""
        if not self._back:
            return self.file.read(n)  # type: ignore[no-any-return]
        out, self._back = self._back[:n], self._back[n:]
        return out + self.file.read(n - len(out)) if len(out) < n else out

    def _tell(self) -> int:
        return self.file.tell() - len(self._back)  # type: ignore[no-any-return]

    def _resync(self, at: int, why: str, seen: bytes) -> None:
        """From a damaged container at byte `at`, on to the next container's header (at
        any byte: objects are padded to no fixed boundary), or the end of the file: searched
        for in `seen`, the bytes from `at` on already read, then reading on. The file is never
        read again from further back (a gzip stream would be decompressed again from its
        start); what was read past the header found is put back for `_read`."""
        head = blf.OBJ_HEADER_BASE_STRUCT
        buf, base, k = seen, at, 1  # buf: the file's bytes from `base` on; searched from base + k
        while True:
            k = buf.find(b"LOBJ", k)
            while 0 <= k <= len(buf) - head.size:
                signature, _, _, obj_size, obj_type = head.unpack_from(buf, k)
                if obj_type == blf.LOG_CONTAINER and self._object_header(signature, obj_size, base + k):
                    self._back = buf[k:] + self._back
                    self._tail, self._lost_tail = b"", True
                    self.skipped.append((at, f"{why}; {base + k - at:,} bytes"))
                    return
                k = buf.find(b"LOBJ", k + 1)
            more = self._read(self.SEARCH_CHUNK)
            if not more:  # none: on to the end of the file
                self._tail, self._lost_tail = b"", True
                self.skipped.append((at, f"{why}; {base + len(buf) - at:,} bytes"))
                return
            keep = min(len(buf), head.size - 1)  # a header begun at the end of what was searched
            buf, base, k = buf[len(buf) - keep:] + more, base + len(buf) - keep, 0


class _Lines:
    """Lines as a text reader of python-can reads its file: one iterator, however often iterated."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def __next__(self) -> str:  # python-can's CSV reader takes the header line with next(file)
        return next(self._lines)

    def close(self) -> None:
        """The file is TextLog's to close."""


#: Lines python-can's .asc reader reads as its header and goes on past (`ASCReader._extract_header`),
#: and those that end it: it reads up to and including the first line that is neither.
_ASC_HEADER = re.compile(r"\s*(date\s|base\s|//)", re.IGNORECASE)
_ASC_HEADER_END = re.compile(r"\s*((no\s+)?internal\s+events\s+logged|$)", re.IGNORECASE)


class TextLog:
    """The messages of a text log, read by python-can's reader for its
    format; a line it cannot read (a damaged byte, a line cut short) is
    skipped and noted in `skipped` (its line number and why), and reading
    goes on at the next with a fresh reader, given the log's header again
    (the lines before its first frame: an .asc's base and time of start), so
    that one bad line loses one frame, not the rest of the log. A log whose
    first frame cannot be read is not this format: that raises. A
    gzip-compressed log is read through gzip (its whole members only, where
    LogRead's check found a damaged one); a cut gzip stream (GZIP_ERRORS)
    ends the read there (LogRead says it is cut short). An .asc
    whose header does not end in an 'internal events logged' line (one of
    frames alone, a trigger block right after its base) is given a blank
    line there, which python-can's reader takes as the header's end: it took
    the first line after the header as its end, and lost that frame."""

    def __init__(self, path: Path, reader: type, compressed: bool = False, upto: int | None = None) -> None:
        self.path, self._reader, self.compressed, self.upto = path, reader, compressed, upto
        self.skipped: list[tuple[int, str]] = []
        self.open_block = False  # an .asc's 'Begin Triggerblock' was read, and not yet its 'End TriggerBlock'

    def __iter__(self) -> Iterator[can.Message]:
        binary = _GzipPrefix(self.path, self.upto) if self.compressed else self.path.open("rb")
        with io.TextIOWrapper(binary, encoding=locale.getpreferredencoding(False), errors="replace") as text:
            numbered = enumerate(text, 1)
            header: list[str] = []
            fed = 0  # the number of the last line given to the reader
            started = False
            in_asc_header = issubclass(self._reader, can.ASCReader)

            def lines(replay: list[str]) -> Iterator[str]:
                nonlocal fed, in_asc_header
                yield from replay
                for fed, line in numbered:
                    if line.lstrip().startswith("#"):  # a note written into the log (no format has one: python-can's readers fail on it)
                        self.skipped.append((fed, "a comment"))
                        continue
                    if in_asc_header and not _ASC_HEADER.match(line):
                        in_asc_header = False
                        if not _ASC_HEADER_END.match(line):  # the header's end, for the reader to take
                            header.append("\n")
                            yield "\n"
                    if not started:
                        header.append(line)
                    word = line.lstrip()[:20].lower()
                    if word.startswith(("begin triggerblock", "end triggerblock")):
                        self.open_block = word.startswith("begin")
                    yield line

            replay: list[str] = []
            while True:
                try:
                    for msg in self._reader(_Lines(lines(replay))):
                        if not started:
                            started = True
                            del header[-1]  # the first frame's line: not header
                        yield msg
                    return
                except _UNREADABLE as exc:
                    if not started or self.compressed and isinstance(exc, GZIP_ERRORS):
                        raise  # not this format; or the rest of the stream cannot be decompressed
                    self.skipped.append((fed, _why(exc)))
                    replay = list(header)


class LogRead:
    """The messages of a log; a binary log that ends in a record python-can
    cannot read ends there; a text log's unreadable lines are skipped,
    `skipped` saying which (TextLog). Unless it is the first record: then the
    file is not a log at all (LogError). Once read to its end, `cut_short`
    says why the log looks cut short, if it does: a record that does not
    read, a .blf shorter than its header says (a file cut, or a logger that
    never closed it), an .asc without its closing 'End TriggerBlock'.

    A gzip-compressed log is checked first, in one pass (`check_gzip`), and
    `stream_note` says, before anything is read, what is wrong with its
    stream. A member that fails its check (a damaged byte) decompresses to
    data that are not the logger's from some byte on, and gzip does not say
    which: as a damaged plain file is read up to its damage, the log is read
    up to the end of the whole members before it, the rest not read (a
    LogError when that is nothing: the first member is damaged). Bytes after
    the stream that begin no member are ignored, said."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cut_short: str | None = None
        self.stream_note: str | None = None  # a gzip stream's damage or trailing bytes: said before the rest
        self.compressed = log_format(path)[1]
        if path.is_dir():
            raise LogError(f"{path}: a directory, not a log file")
        if not path.is_file():
            raise LogError(f"{path}: no such log file")
        if path.stat().st_size == 0:
            raise LogError(f"{path}: empty file: nothing to read")
        upto = self._check_gzip() if self.compressed else None
        try:
            self._messages = log_messages(path, upto)
        except _UNREADABLE as exc:
            raise _unreadable(path, exc) from exc
        except NotImplementedError as exc:  # python-can's .mf4 reader without its optional package
            raise LogError(f"{path}: python-can reads an .mf4 log only with the asammdf package installed: "
                           f"pip install asammdf ({_why(exc)})") from exc

    def _check_gzip(self) -> int | None:
        """The compressed bytes to read (None: all), `stream_note` said where that is not all."""
        check = check_gzip(self.path)
        if check.damage is not None:
            if not check.whole:
                raise LogError(f"{self.path}: its gzip stream is damaged in its first member ({check.damage}): "
                               "what it decompresses to is not the logger's from some byte on, and gzip does not say "
                               f"which; nothing read (gzip -dc {self.path} > FILE keeps what decompresses, unchecked)")
            self.stream_note = (f"its gzip stream is damaged in the member at compressed byte {check.whole:,} "
                                f"({check.damage}): what that member decompresses to is not the logger's from some "
                                f"byte on, and gzip does not say which; read up to the end of the whole members "
                                f"before it ({check.size:,} bytes decompressed), the rest not read")
            return check.whole
        if check.trailing and check.whole:  # none whole: not gzip at all, which reading it says
            self.stream_note = (f"trailing data after the gzip stream ({check.trailing:,} byte(s) from compressed "
                                f"byte {check.whole:,}, which begin no gzip member), ignored")
            return check.whole
        return None

    @property
    def skipped(self) -> list[tuple[int, str]]:
        return self._messages.skipped if isinstance(self._messages, (TextLog, BlfLog)) else []

    @property
    def skipped_unit(self) -> str:
        """What `skipped` counts: a text log's lines, a .blf's containers (by the byte they began at)."""
        return "container" if isinstance(self._messages, BlfLog) else "line"

    def __iter__(self) -> Iterator[can.Message]:
        read = 0
        messages = iter(self._messages)
        while True:
            try:
                msg = next(messages)
            except StopIteration:
                self.cut_short = _unfinished(self.path, self._messages)
                return
            except _UNREADABLE as exc:
                if not read:
                    raise _unreadable(self.path, exc) from exc
                if self.compressed and isinstance(exc, GZIP_ERRORS):
                    self.cut_short = f"ends in a damaged or cut gzip stream ({_why(exc)}), after {read} records"
                else:
                    self.cut_short = (f"ends in a record python-can cannot read ({_why(exc)}), after {read} records"
                                      + ("" if self.compressed else _unread_rest(self.path, self._messages)))
                return
            read += 1
            yield msg


def _unread_rest(path: Path, messages: object) -> str:
    """How much of a binary log is left after the record that did not read (a damaged
    container in the middle of a whole file loses the rest), or ""."""
    file = getattr(messages, "file", None)
    try:
        at, size = file.tell(), path.stat().st_size  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return ""
    if at >= size:
        return ""
    return f", at byte {at:,} of {size:,}: the {size - at:,} bytes after it are not read (damaged there?)"


def _unfinished(path: Path, messages: object) -> str | None:
    """Why a log read to its end without error looks unfinished, or None: a
    .blf whose size is not the one its header gives (the header is written
    again, with the size, when its logger closes it), an .asc without the
    'End TriggerBlock' its logger writes last."""
    if isinstance(messages, BlfLog) and not messages._closed:
        size = f"decompresses to {messages._size:,} bytes" if messages.compressed else f"is {messages._size:,} bytes"
        return (f"{size} where its header says {messages.file_size:,} (a file cut short, or a logger that never "
                "closed it)")
    if isinstance(messages, TextLog) and messages.open_block:
        return "ends in a trigger block without its 'End TriggerBlock' line (a file cut short, or a logger that " \
               "never closed it)"
    return None


def _written_under_contract3(head: list[can.Message]) -> bool:
    """Whether most of these measurement frames carry CONTRACT3's crc (and
    so fail this contract's: the two differ by a nonzero constant per ID)."""
    data = [bytes(m.data) for m in head if m.arbitration_id in cc.E2E_FRAMES and len(m.data) == cc.DATA_LENGTH]
    old = sum(_carries_contract3_crc(d) for d in data)
    return old > len(data) // 2


def _as_current_contract(msg: can.Message) -> can.Message:
    """A measurement frame of CONTRACT3 whose crc matches (the caller checks:
    `_carries_contract3_crc`), with the crc this contract gives the same
    payload."""
    data = bytes(msg.data)
    crc = cc.e2e_crc(msg.arbitration_id, data)
    fixed = bytes([data[0], (data[1] & 0x0F) | (crc << 4), *data[2:]])
    return can.Message(timestamp=msg.timestamp, arbitration_id=msg.arbitration_id, data=fixed,
                       is_extended_id=msg.is_extended_id, is_rx=msg.is_rx, channel=msg.channel)


def _carries_contract3_crc(data: bytes) -> bool:
    """A measurement frame whose crc is the one contract bmsfil-can-3 gave
    it: CRC-4/G-704 over the 8 data bytes alone (crc field as 0), no Data ID.
    (A frame of this contract never passes it too: the two differ by a
    nonzero constant per ID, see bmsfil.can_contract.)"""
    return len(data) == cc.DATA_LENGTH and data[1] >> 4 == cc.crc4_g704(bytes([data[0], data[1] & 0x0F]) + data[2:])


def describe_skipped(skipped: list[tuple[int, str]] | tuple[tuple[int, str], ...], unit: str = "line") -> str:
    """A log's skipped lines (a text log) or containers (a .blf), for a warning: how many,
    the first few with where and why, and that the others were read."""
    where = "line {}" if unit == "line" else "at byte {:,}"
    shown = "; ".join(f"{where.format(at)}: {why}" for at, why in skipped[:3])
    return (f"{len(skipped)} {unit}(s) python-can cannot read, skipped ({shown}{'; ...' if len(skipped) > 3 else ''});"
            f" every other {unit} read (a frame in a skipped {unit} is lost, as on the bus)")


def _unreadable(path: Path, exc: Exception) -> LogError:
    suffix, compressed = log_format(path)
    kind = f"{suffix or 'suffix-less'}{' (gzip-compressed)' if compressed else ''}"
    return LogError(f"{path}: python-can cannot read it as a {kind} log ({_why(exc)}); "
                    "expected a CAN log (.blf, .asc, .log as candump -L writes it, ...)")


def _why(exc: Exception) -> str:
    kind = type(exc)
    return f"{kind.__name__ if kind.__module__ == 'builtins' else f'{kind.__module__}.{kind.__name__}'}: {exc}"


#: What python-can's log readers raise on a file that is not their format or
#: ends in the middle of a record (a text line, a BLF container).
_UNREADABLE = (ValueError, struct.error, IndexError, KeyError, EOFError, zlib.error, OSError, BLFParseError)


def _first_few(items: list[str]) -> str:
    """The first three of a note's items, and ', ...' if there are more."""
    return ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")


@dataclass
class _Segment:
    """The frames of one recording of a log, gathered by sequence."""

    packs: list[cc.MeasPack] = field(default_factory=list)
    cells: list[dict[int, cc.MeasCell]] = field(default_factory=list)
    estimates: list[dict[int, tuple[float, float]]] = field(default_factory=list)
    answers: list[tuple[int, cc.EstCellFlags | cc.EstCellHealth | cc.EstCellPower]] = field(default_factory=list)
    by_sequence: dict[int, int] = field(default_factory=dict)
    pending: dict[int, list[cc.Frame]] = field(default_factory=dict)  # frames of sequences ahead of the last MeasPack
    answered: set[tuple[int, str, int]] = field(default_factory=set)  # (sample, frame kind, cell) taken
    repeated: int = 0  # MeasPacks that were the one before them again
    positions: list[int] = field(default_factory=list)  # each MeasPack's sequence, unwrapped (12 bits wrap)
    backwards: list[tuple[int, int]] = field(default_factory=list)  # (sequence before, sequence) going back
    target_faults: list[str] = field(default_factory=list)  # faults the target's TargetStatus reported
    commands: list[tuple[int, cc.HostCommandCode]] = field(default_factory=list)  # (sample it followed, command)
    restarting: cc.HostCommandCode | None = None  # a command whose restarted target's first status is still to come
    last_status: cc.TargetStatus | None = None
    prior_status: int | None = None  # the counter of the status before the last
    statuses_lost: list[tuple[int, int]] = field(default_factory=list)  # (counter before, frames missing) per jump
    statuses_interleaved: int = 0  # statuses going on from the counter before the last (two targets?)
    #: EstCells for a sample and cell that already had one with another SOC: (sequence, cell, kept, other).
    conflicts: list[tuple[int, int, float, float]] = field(default_factory=list)

    def repeats(self, pack: cc.MeasPack) -> bool:
        """This MeasPack is one of the last WRAP_SLACK again: the same sequence and content (asked
        after `starts_anew`: a recording starting as the last one did is not a repeat)."""
        k = self.by_sequence.get(pack.sequence)
        return k is not None and len(self.packs) - k <= WRAP_SLACK and self.packs[k] == pack

    def notes(self) -> list[str]:
        """What the MeasPacks' sequence says was lost, repeated or out of order, and the
        estimates that came for no MeasPack of the log; [] if none."""
        out = []
        if self.packs and self.packs[0].sequence != 0:
            out.append(f"it starts at sequence {self.packs[0].sequence}: the samples before it are not in the log")
        seen = np.unique(np.array(self.positions))
        holes = np.flatnonzero(np.diff(seen) > 1)
        if holes.size:
            lost = int(np.sum(np.diff(seen)[holes] - 1))
            first = _first_few([f"{int(np.diff(seen)[h] - 1)} after sequence {int(seen[h]) % cc.SEQUENCE_MODULUS}"
                                for h in holes])
            out.append(f"{lost} sample(s) missing from the log's MeasPack sequence ({holes.size} gap(s): "
                       f"{first}): not in the rebuilt recording")
        if self.backwards:
            first = _first_few([f"{b} after {a}" for a, b in self.backwards])
            out.append(f"{len(self.backwards)} MeasPack(s) out of sequence order ({first}): put back in sequence order")
        if self.repeated:
            out.append(f"{self.repeated} MeasPack(s) repeating one just before them (a bus's echo of the "
                       "harness's own frames, or duplicates): read once")
        out.extend(self._cell_notes())
        if self.statuses_lost:
            first = _first_few([f"{n} after counter {c}" for c, n in self.statuses_lost])
            out.append(f"{sum(n for _, n in self.statuses_lost)} TargetStatus frame(s) missing from its counter "
                       f"({first}): lost on the bus or by the logger")
        if self.statuses_interleaved:
            out.append(f"TargetStatus counters interleaved (two targets?): {self.statuses_interleaved} status(es) "
                       "going on from the counter of the one before the last, not counted as frames lost")
        if self.target_faults:
            out.append(f"the target reported {len(self.target_faults)} fault(s) in its TargetStatus, the first: "
                       f"{self.target_faults[0]}")
        stray = sum(len(frames) for frames in self.pending.values())
        if stray:
            out.append(f"{stray} frame(s) for sequences no MeasPack of the log carries (estimates without their "
                       "measurement): not read")
        return out

    def _cell_notes(self) -> list[str]:
        """MeasCells missing from samples whose MeasPack counts their cell, frames of cells beyond
        it, and samples a cell answered twice with two estimates; [] if none."""
        out = []
        missing: dict[int, list[int]] = {}
        beyond = 0
        for pack, cells, estimates in zip(self.packs, self.cells, self.estimates):
            for j in range(pack.n_cells):
                if j not in cells:
                    missing.setdefault(j, []).append(pack.sequence)
            beyond += sum(1 for j in (*cells, *estimates) if j >= pack.n_cells)
        beyond += sum(1 for k, answer in self.answers if answer.cell_index >= self.packs[k].n_cells)
        for j, sequences in sorted(missing.items()):
            out.append(f"cell {j}'s MeasCell missing in {len(sequences)} sample(s) its MeasPack counts (first "
                       f"sequence {sequences[0]}): rebuilt without its voltage and temperature there")
        if beyond:
            out.append(f"{beyond} frame(s) of cells beyond the n_cells of their sample's MeasPack (a target "
                       "numbering its cells otherwise?): not read")
        if self.conflicts:
            seq, cell, kept, other = self.conflicts[0]
            out.append(f"{len(self.conflicts)} EstCell(s) for a sample and cell that already had another estimate "
                       f"(first: sequence {seq}, cell {cell}: SOC {kept:g}, then {other:g}): two targets answering, "
                       "or one answering twice; the first of each kept")
        return out

    def starts_anew(self, pack: cc.MeasPack) -> bool:
        """Whether this MeasPack starts another recording (see `read_log`, `sequence_restarts`)."""
        return bool(self.packs) and sequence_restarts(self.packs[-1].sequence, pack.sequence)

    def hand_over(self, nxt: "_Segment") -> None:
        """Frames kept for sequences no MeasPack of this recording carried, of the first
        WRAP_SLACK sequences: the next recording's, logged before its first MeasPack."""
        for sequence in [q for q in self.pending if q < WRAP_SLACK]:
            nxt.pending.setdefault(sequence, []).extend(self.pending.pop(sequence))

    def add(self, frame: cc.Frame) -> None:
        if isinstance(frame, cc.MeasPack):
            if self.packs:
                step = (frame.sequence - self.packs[-1].sequence) % cc.SEQUENCE_MODULUS
                if step > cc.SEQUENCE_MODULUS // 2 or step == 0:
                    self.backwards.append((self.packs[-1].sequence, frame.sequence))
                    step -= cc.SEQUENCE_MODULUS if step else 0
                self.positions.append(self.positions[-1] + step)
            else:
                self.positions.append(frame.sequence)
            self.by_sequence[frame.sequence] = len(self.packs)
            self.packs.append(frame)
            self.cells.append({})
            self.estimates.append({})
            for early in self.pending.pop(frame.sequence, []):
                self.add(early)
            return
        sequence = getattr(frame, "sequence", None)
        if sequence is None:  # TargetStatus, TargetProfile, HostCommand: no sample's
            if isinstance(frame, cc.HostCommand):
                self.commands.append((len(self.packs) - 1, frame.command))
                self.restarting = frame.command
            elif isinstance(frame, cc.TargetStatus):
                self._note_status(frame)
            return
        k = self.by_sequence.get(sequence)
        late = len(self.packs) - 1 - k if k is not None else 0
        if k is None or self._ahead(frame, k, late):
            # Before its MeasPack (a target's clock ahead of the harness's, frames sorted by time;
            # the counter's last wrap's; or, for one of the first sequences long past, the next
            # recording's first samples): kept for it; counted if it never comes.
            self.pending.setdefault(sequence, []).append(frame)
            return
        self.answered.add((k, type(frame).__name__, getattr(frame, "cell_index", -1)))
        if isinstance(frame, cc.MeasCell):
            self.cells[k][frame.cell_index] = frame
        elif isinstance(frame, cc.EstCell):
            kept = self.estimates[k].setdefault(frame.cell_index, (frame.soc, frame.soc_sigma))
            if kept[0] != frame.soc and not (math.isnan(kept[0]) and math.isnan(frame.soc)):
                self.conflicts.append((frame.sequence, frame.cell_index, kept[0], frame.soc))
        elif isinstance(frame, (cc.EstCellFlags, cc.EstCellHealth, cc.EstCellPower)):
            self.answers.append((k, frame))

    def _note_status(self, frame: cc.TargetStatus) -> None:
        """A fault the status reports, a jump of its counter (+1 modulo 256 a frame; a repeat is
        an echo, and a restart, counter 0 not running, starts it again), and after a HostCommand
        whether the target came back from it as the contract says (`RESTART_OUTCOME`: a power
        cycle's persist_error is the outcome asked for, not a fault)."""
        restarted = frame.counter == 0 and frame.state != cc.TargetState.RUNNING
        if self.last_status is not None and not restarted:
            last = self.last_status.counter
            jump = (frame.counter - last) % cc.COUNTER_MODULUS
            if statuses_interleaved(self.prior_status, last, frame.counter):
                self.statuses_interleaved += 1
                if self.statuses_lost and self.statuses_lost[-1][0] == self.prior_status \
                        and (last - self.prior_status) % cc.COUNTER_MODULUS == self.statuses_lost[-1][1] + 1:
                    self.statuses_lost.pop()  # the jump to the last: the other target's counter, not a loss
            elif 1 < jump <= cc.COUNTER_MODULUS // 2:  # further back: one put back in order
                self.statuses_lost.append((last, jump - 1))
        if frame != self.last_status:  # (a repeat, an echo, is not a status before the next)
            self.prior_status = None if self.last_status is None or restarted else self.last_status.counter
        self.last_status = frame
        expected_fault = None
        if self.restarting is not None and restarted:
            command, self.restarting = self.restarting, None
            expected_fault = RESTART_OUTCOME[command][1]
            self.target_faults.extend(restart_problems(command, frame, f"after sample {self.commands[-1][0]}"))
        if frame.fault_code not in (cc.FaultCode.NONE, expected_fault):
            self.target_faults.append(f"{cc.FaultCode(frame.fault_code).name} (its last sequence "
                                      f"{frame.last_sequence})")

    def _ahead(self, frame: cc.Frame, k: int, late: int) -> bool:
        """Whether a frame whose sequence's last MeasPack is `late` samples back belongs to a
        MeasPack still to come. The harness sends a sample's MeasCells with its MeasPack, so
        one far behind is the counter's next wrap's. A target's answers may lag by hundreds of
        samples (a real-time run it cannot keep up with): they are the sample's they name
        unless that is nearer the next wrap, or that sample already has that answer from
        that cell while the sequence is one of a recording's first (the next recording's
        first samples, answered before their MeasPack was logged)."""
        if isinstance(frame, cc.MeasCell):
            return late > WRAP_SLACK or (frame.sequence < WRAP_SLACK and late > REORDER_SLACK)
        if late > cc.SEQUENCE_MODULUS // 2:
            return True
        key = (k, type(frame).__name__, getattr(frame, "cell_index", -1))
        return frame.sequence < WRAP_SLACK and late > REORDER_SLACK and key in self.answered

    def run(self, name: str, source: str, undecodable: int) -> LoggedRun:
        run = self._run(name, source, undecodable)
        run.sequence_notes = tuple(self.notes())
        return run

    def _run(self, name: str, source: str, undecodable: int) -> LoggedRun:
        if self.backwards:  # in sequence order, as the samples were sent
            order = np.argsort(np.array(self.positions), kind="stable")
            where = np.empty_like(order)
            where[order] = np.arange(order.size)
            self.packs = [self.packs[k] for k in order]
            self.cells = [self.cells[k] for k in order]
            self.estimates = [self.estimates[k] for k in order]
            self.answers = [(int(where[k]), answer) for k, answer in self.answers]
            self.commands = [(int(where[k]) if k >= 0 else k, command) for k, command in self.commands]
        packs = self.packs
        n, m = len(packs), max(p.n_cells for p in packs)
        # A gap of LONG_GAP_MAX_S or more (inf) as cc.UNCARRIED_GAP_S; one not known (nan) as no time.
        dt = np.nan_to_num(np.array([p.dt_s for p in packs]), nan=0.0, posinf=cc.UNCARRIED_GAP_S)
        dt[0] = 0.0
        time_s = np.cumsum(dt)
        current = np.array([p.current_A for p in packs])
        volts = np.full((n, m), np.nan)
        temps = np.full((n, m), np.nan)
        logged = np.full((n, m), np.nan)
        logged_sigma = np.full((n, m), np.nan)
        estimated = np.zeros((n, m), dtype=bool)
        for k in range(n):
            for i, c in self.cells[k].items():
                if i < m:
                    volts[k, i], temps[k, i] = c.voltage_V, c.temp_C
            for i, (soc, sigma) in self.estimates[k].items():
                if i < m:
                    logged[k, i], logged_sigma[k, i], estimated[k, i] = soc, sigma, True
        recs = [
            Recording(time_s, current, volts[:, i], temps[:, i],
                      RecordingMeta(name=name if m == 1 else f"{name}#cell{i:03d}", source=source,
                                    test="rebuilt from a CAN log"))
            for i in range(m)
        ]
        plausibility, health, power = Plausibility.empty(n, m), Health.empty(n, m), Power.empty(n, m)
        record = {cc.EstCellFlags: plausibility, cc.EstCellHealth: health, cc.EstCellPower: power}
        for k, answer in self.answers:
            record[type(answer)].note_at(answer, k)
        return LoggedRun(name, recs, logged, logged_sigma, undecodable, plausibility, health, power,
                         commands=tuple(self.commands), estimated=estimated,
                         sequences=np.array([p.sequence for p in packs], dtype=np.int64))
