"""The CAN contract from the host side: typed frames over python-can messages.

The contract is one DBC, ``csrc/can/bmsfil.dbc`` (``docs/can_contract.md`` is
its table). Every frame is classic CAN: an 11-bit ID, 8 data bytes, Intel
byte order. C targets pack frames with the codec generated from the same DBC
(``csrc/can/bmsfil_can.{h,c}``); this module loads it with cantools and
packs frames with integer arithmetic on its signal layout, the frames sent
every sample through straight-line code generated from it
(:mod:`bmsfil.can_fastpath`), which leaves anything unusual to the checked
code here.

Frames, one dataclass each: :class:`MeasPack` and :class:`MeasCell` (host to
target, per sample and per cell per sample), :class:`HostCommand` (host to
target, on demand: warm reset or simulated power loss of a firmware target),
:class:`EstCell`, :class:`EstCellHealth`, :class:`EstCellPower` and
:class:`EstCellFlags` (target to host, per cell per sample; EstCellFlags carries
the plausibility monitor's verdicts), :class:`TargetStatus` (target to host, after
every sample and as a heartbeat) and :class:`TargetProfile` (target to host, right
after each sample's TargetStatus, from firmware that times the parts of its cell
step). ``encode_*`` build a :class:`can.Message`, :func:`encode` turns
any frame dataclass back into one, :func:`decode` turns a message into its
dataclass or raises :class:`FrameError`.

Validity, both ways. A value that is not valid is ``nan`` here (``None`` for
the integer fields of :class:`TargetStatus`); on the wire it is its valid
bit 0 and the value's raw bits 0, never a made-up number. So encoding ``nan``
sends "not valid"; decoding gives ``nan`` back, and a frame whose valid bit is
0 but whose value bits are not all 0 is refused as garbled.

Ranges. Encoding a finite value outside its signal's range raises
:class:`ValueError` naming the frame, the signal, the value and the range:
the contract never clamps a measurement or an estimate into range silently.
A value within half a resolution step of an end of the range is accepted
(it rounds to the end code). Infinity is refused.
The exceptions are estimates above their range, which saturate at its top
as every target sends them: ``soc_sigma`` at 0.4094 (any sigma above 1/3
already puts all of [0, 1] inside the 3-sigma band, so nothing the harness
scores changes), ``capacity_Ah`` at 65.535 Ah and ``r0_ohm`` at 0.2047 ohm
(a larger cell, or a resistance beyond, reads as the end of the range: its
valid bit still says it is an estimate), the powers at 6553.5 W, and the
monitor's evidence (see :func:`encode_est_cell_flags`).

Sequence numbers and the status counter are rolling: any non-negative int is
sent modulo 2**12 (:data:`SEQUENCE_MODULUS`; 2**8 for the counter), so a
replay can number samples 0, 1, 2, ... without wrapping them itself.

End-to-end protection (contract version ``bmsfil-can-4``,
:data:`CONTRACT_VERSION`). The measurement frames, MeasPack and MeasCell,
carry a 12-bit sequence and a 4-bit ``crc`` (bits 12-15), in the style of
AUTOSAR E2E (a counter, and a CRC over a Data ID and the payload):
CRC-4/G-704 (ITU-T G.704, polynomial 0x3, init 0, reflected, xorout 0) over
the frame's 11-bit CAN identifier as 2 bytes, little-endian, then the 8 data
bytes, each byte least significant bit first, with the crc field taken as 0
(:func:`e2e_crc`). Encoding fills it in; decoding a frame whose crc does not
match raises :class:`FrameError` (field ``crc``) naming the frame, the crc
it carries and the one expected. Every single-bit error is detected.

Why the Data ID (new in bmsfil-can-4; bmsfil-can-3 ran the CRC over the
payload alone). The CRC is linear: ``e2e_crc(id, payload)`` is the CRC of the
payload alone XOR a constant ``K(id)``, the register after the 2 ID bytes
carried through 64 more zero bits, which is 0 only if that register is 0.
The register after the ID bytes is 0x7 for MeasPack (0x100) and 0xB for
MeasCell (0x101). Both are nonzero, so an all-zero payload (a transmitter
stuck at zeros, which carries crc 0 and passed the contract-3 check) is
refused under either ID; and they differ, so a valid payload of one of the
two frames sent under the other's ID (a masquerade or addressing fault) is
always refused. It also means every frame a contract-3 sender protected
fails this check: the two CRCs differ by ``K(id)``, never 0.

Resolution (what a round trip through the bus keeps): dt_s 1 ms, current_A
1 mA, voltage_V 10 uV, temp_C 0.01 degC, soc 1e-6, soc_sigma 2e-4. A replay
that compares targets must feed every target, and the reference it scores
against, the decoded (quantised) measurements.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
import numbers
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from collections.abc import Iterator
from typing import Union

import can
import cantools
from cantools.database.can import Database
from cantools.database.can import Message as DbcMessage
from cantools.database.can import Signal

from bmsfil import can_fastpath
from bmsfil.can_fastpath import Field

__all__ = [
    "CONTRACT_VERSION",
    "DATA_LENGTH",
    "SEQUENCE_MODULUS",
    "CRC_ERRORS_MODULUS",
    "E2E_FRAMES",
    "e2e_crc",
    "COUNTER_MODULUS",
    "UNCARRIED_GAP_S",
    "LONG_GAP_MAX_S",
    "FLAG_VOLTAGE_INVALID",
    "FLAG_CURRENT_INVALID",
    "FLAG_TEMP_INVALID",
    "FLAG_DT_INVALID",
    "FLAG_GATED",
    "FLAG_RESTORED",
    "EST_CELL_FLAGS",
    "PLAUS_CURRENT_OFFSET",
    "PLAUS_SELF_DISCHARGE",
    "PLAUS_VOLTAGE_STUCK",
    "PLAUS_VOLTAGE_RANGE",
    "PLAUS_CURRENT_RANGE",
    "PLAUS_TEMP_RANGE",
    "PLAUS_FLAGS",
    "HOST_COMMAND_KEY",
    "FrameError",
    "FrameId",
    "TargetState",
    "FaultCode",
    "PowerHorizon",
    "TargetStart",
    "HostCommandCode",
    "MeasPack",
    "MeasCell",
    "HostCommand",
    "EstCell",
    "EstCellHealth",
    "EstCellPower",
    "EstCellFlags",
    "TargetStatus",
    "PROFILE_PARTS",
    "TargetProfile",
    "Frame",
    "dbc_path",
    "frame_bits",
    "bus_load",
    "database",
    "encode_meas_pack",
    "encode_meas_cell",
    "encode_host_command",
    "encode_est_cell",
    "encode_est_cell_health",
    "encode_est_cell_power",
    "encode_est_cell_flags",
    "encode_target_status",
    "encode_target_profile",
    "encode",
    "decode",
    "checked_only",
]

#: Data bytes of every frame of the contract (classic CAN).
DATA_LENGTH = 8
#: The DBC's VERSION: checked when it is loaded. 3: MeasPack and MeasCell protected end to end
#: (12-bit sequence and a CRC-4), TargetStatus.crc_errors and fault_code crc_error. 4: the CRC
#: covers the frame's CAN identifier (a Data ID) before the payload.
CONTRACT_VERSION = "bmsfil-can-4"
#: Sequence numbers are 12 bits (MeasPack/MeasCell give 4 of their former 16 bits to the crc).
SEQUENCE_MODULUS = 1 << 12
#: TargetStatus.crc_errors counts modulo this.
CRC_ERRORS_MODULUS = 1 << 4
COUNTER_MODULUS = 1 << 8
#: MeasPack carries an interval up to 65.535 s at 1 ms; a longer one (a gap:
#: a logger or BMS asleep, an unrecorded charge) in whole seconds up to
#: LONG_GAP_MAX_S, which also stands for anything longer (decoded as
#: infinity: over every filter's dt_max_s, so every target restarts its SOC
#: filter there). A recording rebuilt from such frames (a log, ``as_carried``)
#: has there this interval, a day, beyond the dt_max_s of every set bmsfil
#: writes (3600 s), so that the C core run on it restarts there too.
UNCARRIED_GAP_S = 86400.0
#: MeasPack's dt_s raw value with dt_valid 0 is a gap in whole seconds; this
#: one (its largest) means that long or longer (infinity decoded).
LONG_GAP_MAX_S = 65535
#: EstCellHealth.core_temp_C's range (the DBC's), at which the targets saturate the core temperature.
CORE_TEMP_RANGE_C = (-40.0, 87.5)

# Estimator flags carried by EstCell, with the values of the core's
# BF_FLAG_* (csrc/include/bmsfil/soc_ekf.h), so that a step's flags pass
# through unchanged. The core's SOC_CLAMPED and COV_REPAIRED have no room in
# the frame and are not sent.
FLAG_VOLTAGE_INVALID = 0x01
FLAG_CURRENT_INVALID = 0x02
FLAG_TEMP_INVALID = 0x04
FLAG_DT_INVALID = 0x08
FLAG_GATED = 0x10
# Not a core BF_FLAG_* bit (the core's flags use 0x01-0x40): a target sets it
# itself on the first estimate of a cell after a warm reset from which it
# continued that cell's saved filter state (EstCell.restored).
FLAG_RESTORED = 0x80
#: Flag bit -> EstCell signal name.
EST_CELL_FLAGS = {
    FLAG_VOLTAGE_INVALID: "voltage_invalid",
    FLAG_CURRENT_INVALID: "current_invalid",
    FLAG_TEMP_INVALID: "temp_invalid",
    FLAG_DT_INVALID: "dt_invalid",
    FLAG_GATED: "gated",
    FLAG_RESTORED: "restored",
}
_ALL_FLAGS = sum(EST_CELL_FLAGS)

# Plausibility flags carried by EstCellFlags, with the values of the core's
# BF_PLAUS_* (csrc/include/bmsfil/plausibility.h): a monitor step's flags
# pass through unchanged.
PLAUS_CURRENT_OFFSET = 0x01
PLAUS_SELF_DISCHARGE = 0x02
PLAUS_VOLTAGE_STUCK = 0x04
PLAUS_VOLTAGE_RANGE = 0x08
PLAUS_CURRENT_RANGE = 0x10
PLAUS_TEMP_RANGE = 0x20
#: Plausibility flag bit -> EstCellFlags signal name (the names bmsfil.plausibility uses).
PLAUS_FLAGS = {
    PLAUS_CURRENT_OFFSET: "current_offset",
    PLAUS_SELF_DISCHARGE: "self_discharge",
    PLAUS_VOLTAGE_STUCK: "voltage_stuck",
    PLAUS_VOLTAGE_RANGE: "voltage_range",
    PLAUS_CURRENT_RANGE: "current_range",
    PLAUS_TEMP_RANGE: "temp_range",
}

#: HostCommand.key: a target acts on a HostCommand only with this key, so that
#: a garbled frame never resets a BMS.
HOST_COMMAND_KEY = 0xB5F1

_DBC_NAME = "bmsfil.dbc"


class FrameError(ValueError):
    """A CAN frame that is not a well-formed frame of the contract.

    The message names the frame ID (and the frame, when the ID is known) and
    what was wrong; ``frame_id``, ``frame_name`` and ``field`` hold the same
    for code.
    """

    def __init__(self, frame_id: int, frame_name: str | None, problem: str, field: str | None = None) -> None:
        self.frame_id = frame_id
        self.frame_name = frame_name
        self.field = field
        where = f"frame 0x{frame_id:03X}" + (f" ({frame_name})" if frame_name else "")
        if field:
            where += f", field {field}"
        super().__init__(f"{where}: {problem}")


class FrameId(enum.IntEnum):
    """The contract's IDs (checked against the DBC when it is loaded).

    Lower ID = higher priority: host to target 0x100-0x1FF (measurements,
    then HostCommand at the top), estimates 0x200-0x2FF, status 0x300-0x3FF;
    0x000-0x0FF are left free.
    """

    MEAS_PACK = 0x100
    MEAS_CELL = 0x101
    HOST_COMMAND = 0x1F0
    EST_CELL = 0x200
    EST_CELL_HEALTH = 0x201
    EST_CELL_POWER = 0x202
    EST_CELL_FLAGS = 0x203
    TARGET_STATUS = 0x300
    TARGET_PROFILE = 0x301


#: The frames protected end to end (a ``crc`` signal at bits 12-15, see :func:`e2e_crc`).
E2E_FRAMES = frozenset({FrameId.MEAS_PACK, FrameId.MEAS_CELL})
_CRC_START = 12
_CRC_MASK = 0xF << _CRC_START


def _crc4_tables() -> tuple[list[int], list[int]]:
    """CRC-4/G-704 (reflected polynomial 0xC): the register after 4 input bits
    of 0 from each register value, and after a whole byte (register XOR byte)."""
    nibble = []
    for r in range(16):
        for _ in range(4):
            r = (r >> 1) ^ 0xC if r & 1 else r >> 1
        nibble.append(r)
    return nibble, [nibble[nibble[x & 0xF] ^ (x >> 4)] for x in range(256)]


_CRC4_BYTE = _crc4_tables()[1]


def crc4_g704(data: bytes) -> int:
    """CRC-4/G-704 of some bytes (ITU-T G.704: poly 0x3, init 0, reflected, xorout 0; check 0x7)."""
    r = 0
    for b in data:
        r = _CRC4_BYTE[b ^ r]
    return r


def e2e_crc(frame_id: int, data: bytes | int) -> int:
    """The crc a MeasPack or MeasCell sent with this 11-bit identifier and
    these 8 data bytes (or this little-endian 64-bit word) must carry:
    CRC-4/G-704 over the Data ID (`frame_id` as 2 bytes, little-endian) and
    then the 8 bytes with the crc field (bits 12-15) taken as 0."""
    if not 0 <= frame_id <= 0x7FF:
        raise ValueError(f"frame_id {frame_id!r} is not an 11-bit CAN identifier")
    w = data if type(data) is int else int.from_bytes(data, "little")  # type: ignore[arg-type]
    w &= ~_CRC_MASK
    t = _CRC4_BYTE
    r = t[t[frame_id & 0xFF] ^ (frame_id >> 8)]
    r = t[(w & 0xFF) ^ r]
    r = t[((w >> 8) & 0xFF) ^ r]
    r = t[((w >> 16) & 0xFF) ^ r]
    r = t[((w >> 24) & 0xFF) ^ r]
    r = t[((w >> 32) & 0xFF) ^ r]
    r = t[((w >> 40) & 0xFF) ^ r]
    r = t[((w >> 48) & 0xFF) ^ r]
    return t[((w >> 56) & 0xFF) ^ r]


class TargetState(enum.IntEnum):
    """TargetStatus.state (the DBC's VAL_ table)."""

    BOOTING = 0
    IDLE = 1
    RUNNING = 2
    FAULT = 3


class FaultCode(enum.IntEnum):
    """TargetStatus.fault_code (the DBC's VAL_ table)."""

    NONE = 0
    BAD_PARAMS = 1
    SEQUENCE_GAP = 2
    N_CELLS_UNSUPPORTED = 3
    CELL_INDEX_OUT_OF_RANGE = 4
    RX_OVERFLOW = 5
    ESTIMATOR_ERROR = 6
    FRAME_ERROR = 7
    PERSIST_ERROR = 8
    CRC_ERROR = 9
    INTERNAL = 255


class TargetStart(enum.IntEnum):
    """TargetStatus.start: how the target started last (the DBC's VAL_ table).

    POWER_ON: fresh, with no saved state (desktop targets always say so).
    RESTORED: reset, and every cell continued from its saved filter state.
    SAVED_STATE_BAD: reset, but the saved state failed its check (CRC, length
    or version) and was discarded; every cell starts from the OCV of its next
    voltage.
    """

    POWER_ON = 0
    RESTORED = 1
    SAVED_STATE_BAD = 2


class HostCommandCode(enum.IntEnum):
    """HostCommand.command (the DBC's VAL_ table).

    WARM_RESET: reset as the watchdog would; the saved state survives and is
    restored. POWER_CYCLE: simulate a power loss; the target scrambles its
    saved state and resets, and must then start fresh (a test hook).
    RESTART_FRESH: discard the saved state and reset; every cell starts
    again from the OCV of its next voltage (before a new replay).
    """

    NONE = 0
    WARM_RESET = 1
    POWER_CYCLE = 2
    RESTART_FRESH = 3


class PowerHorizon(enum.IntEnum):
    """EstCellPower.horizon (the DBC's VAL_ table)."""

    NONE = 0
    PEAK_2S = 1
    PEAK_10S = 2
    PEAK_30S = 3
    CONTINUOUS = 4


# --- bus load ----------------------------------------------------------------


def frame_bits(data_bytes: int = DATA_LENGTH) -> tuple[int, int]:
    """(bits without stuffing, worst-case bits) of a classic data frame with an 11-bit ID.

    SOF 1, ID 11, RTR 1, IDE 1, r0 1, DLC 4, data 8n, CRC 15: 34 + 8n bits,
    which the transmitter stuffs (a complemented bit after five equal bits,
    so at worst one per four bits after the first); then CRC delimiter 1,
    ACK 2, EOF 7 and the 3-bit intermission before the next frame: 13 bits.
    """
    stuffed_region = 34 + 8 * data_bytes
    plain = stuffed_region + 13
    return plain, plain + (stuffed_region - 1) // 4


def bus_load(n_cells: int, sample_interval_s: float, bitrate: int, frames_per_cell: int = 2,
             frames_per_sample: int = 2) -> float:
    """Worst-case share of the bus a replay takes: per sample, `frames_per_cell`
    frames per cell (MeasCell, EstCell) and `frames_per_sample` more (MeasPack,
    TargetStatus), all 8-byte frames at their worst-case length, every
    `sample_interval_s` seconds at `bitrate` bit/s. 1.0 is a full bus."""
    if sample_interval_s <= 0 or bitrate <= 0:
        raise ValueError(f"bus load needs a positive interval and bit rate, got {sample_interval_s}, {bitrate}")
    bits = frame_bits()[1] * (frames_per_cell * n_cells + frames_per_sample)
    return bits / (sample_interval_s * bitrate)


# --- the DBC -----------------------------------------------------------------


def dbc_path() -> Path:
    """Where the contract is read from.

    In a source checkout (editable install, or running from the tree) that is
    the single source, ``csrc/can/bmsfil.dbc``; an installed wheel carries a
    copy made by the build (``bmsfil/data/bmsfil.dbc``, see setup.py).
    """
    here = Path(__file__).resolve().parent
    source = here.parents[1] / "csrc" / "can" / _DBC_NAME
    if source.is_file():
        return source
    packaged = here / "data" / _DBC_NAME
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(
        f"the CAN contract {_DBC_NAME} is neither in the source tree ({source}) nor in the "
        f"installed package ({packaged}); reinstall bmsfil"
    )


_ENUMS: dict[tuple[str, str], type[enum.IntEnum]] = {
    ("TargetStatus", "state"): TargetState,
    ("TargetStatus", "fault_code"): FaultCode,
    ("TargetStatus", "start"): TargetStart,
    ("HostCommand", "command"): HostCommandCode,
    ("EstCellPower", "horizon"): PowerHorizon,
}


@functools.cache
def database() -> Database:
    """The contract as a cantools database (loaded once, strictly)."""
    db = cantools.database.load_file(str(dbc_path()), database_format="dbc", strict=True)
    _check_mirror(db)
    return db


def _check_mirror(db: Database) -> None:
    """The IDs and enums above repeat the DBC for typing; make sure they agree."""
    problems = []
    if db.version != CONTRACT_VERSION:
        problems.append(f"the DBC is version {db.version!r}, this module speaks {CONTRACT_VERSION!r}")
    for fid in E2E_FRAMES:
        crc = db.get_message_by_frame_id(fid).get_signal_by_name("crc")
        if (crc.start, crc.length) != (_CRC_START, 4):
            problems.append(f"0x{fid:03X}.crc is at {crc.start}|{crc.length}, expected {_CRC_START}|4")
    for fid in FrameId:
        try:
            msg = db.get_message_by_frame_id(fid.value)
        except KeyError:
            problems.append(f"FrameId.{fid.name} = 0x{fid.value:03X} is not in the DBC")
            continue
        if _camel_to_upper_snake(msg.name) != fid.name:
            problems.append(f"0x{fid.value:03X} is {msg.name} in the DBC, FrameId.{fid.name} here")
        if msg.length != DATA_LENGTH or msg.is_extended_frame or msg.is_fd:
            problems.append(f"{msg.name} is not a classic 8-byte frame with an 11-bit ID")
    if len(db.messages) != len(FrameId):
        problems.append(f"the DBC has {len(db.messages)} frames, FrameId {len(FrameId)}")
    for (msg_name, sig_name), enum_type in _ENUMS.items():
        choices = db.get_message_by_name(msg_name).get_signal_by_name(sig_name).choices or {}
        dbc = {int(k): str(v).upper() for k, v in choices.items()}
        ours = {m.value: m.name for m in enum_type}
        if dbc != ours:
            problems.append(f"{msg_name}.{sig_name}: DBC values {dbc} != {enum_type.__name__} {ours}")
    if problems:
        raise RuntimeError(f"{dbc_path()} and bmsfil.can_contract disagree: " + "; ".join(problems))


@functools.cache
def _decimals(scale: float) -> int:
    """Decimal places of a DBC scale or offset written in decimal (0.001 -> 3, 1e-06 -> 6)."""
    return max(0, -Decimal(repr(float(scale))).normalize().as_tuple().exponent)


def _camel_to_upper_snake(name: str) -> str:
    return "".join("_" + c if c.isupper() and i else c for i, c in enumerate(name)).upper()


# --- frames ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeasPack:
    """Host to target, once per sample: opens sample ``sequence``."""

    sequence: int
    dt_s: float  # s; over 65.535: whole seconds of a gap, inf: LONG_GAP_MAX_S or more; nan: not known
    current_A: float  # positive on charge; nan: no valid current
    n_cells: int  # MeasCell frames 0 .. n_cells-1 follow

    @property
    def dt_valid(self) -> bool:
        return not math.isnan(self.dt_s)

    @property
    def current_valid(self) -> bool:
        return not math.isnan(self.current_A)


@dataclass(frozen=True, slots=True)
class MeasCell:
    """Host to target, once per cell per sample."""

    sequence: int
    cell_index: int
    voltage_V: float  # nan: no valid voltage
    temp_C: float  # nan: no valid temperature

    @property
    def voltage_valid(self) -> bool:
        return not math.isnan(self.voltage_V)

    @property
    def temp_valid(self) -> bool:
        return not math.isnan(self.temp_C)


@dataclass(frozen=True, slots=True)
class HostCommand:
    """Host to target, on demand: a command (the key is filled in on encoding)."""

    command: HostCommandCode


@dataclass(frozen=True, slots=True)
class EstCell:
    """Target to host, once per cell per sample: SOC, its sigma, step flags."""

    sequence: int
    cell_index: int
    soc: float  # nan (with soc_sigma) when the target has no estimate
    soc_sigma: float
    flags: int = 0  # FLAG_* bits: the core's BF_FLAG_* values, and FLAG_RESTORED

    @property
    def soc_valid(self) -> bool:
        return not math.isnan(self.soc)

    @property
    def voltage_invalid(self) -> bool:
        return bool(self.flags & FLAG_VOLTAGE_INVALID)

    @property
    def current_invalid(self) -> bool:
        return bool(self.flags & FLAG_CURRENT_INVALID)

    @property
    def temp_invalid(self) -> bool:
        return bool(self.flags & FLAG_TEMP_INVALID)

    @property
    def dt_invalid(self) -> bool:
        return bool(self.flags & FLAG_DT_INVALID)

    @property
    def gated(self) -> bool:
        return bool(self.flags & FLAG_GATED)

    @property
    def restored(self) -> bool:
        """This estimate continues the previous one across a reset of the target."""
        return bool(self.flags & FLAG_RESTORED)


@dataclass(frozen=True, slots=True)
class EstCellHealth:
    """Target to host, once per cell per sample; nan = not estimated."""

    sequence: int
    cell_index: int
    capacity_Ah: float = math.nan
    r0_ohm: float = math.nan
    core_temp_C: float = math.nan


@dataclass(frozen=True, slots=True)
class EstCellPower:
    """Target to host, once per cell per sample; nan = not estimated."""

    sequence: int
    cell_index: int
    charge_power_W: float = math.nan
    discharge_power_W: float = math.nan
    horizon: PowerHorizon = PowerHorizon.NONE  # NONE exactly when neither power is valid


@dataclass(frozen=True, slots=True)
class EstCellFlags:
    """Target to host, once per cell per sample: the plausibility monitor's
    verdict (``flags``: PLAUS_* bits, the core's BF_PLAUS_* values) and its
    evidence. ``unseen_current_A`` and its sigma are nan together when the
    monitor has no estimate yet (on the wire: unseen_current_valid 0)."""

    sequence: int
    cell_index: int
    flags: int = 0
    unseen_current_A: float = math.nan  # + when the sensor reports more charge than the cell got
    unseen_current_sigma_A: float = math.nan  # saturates at 2.046 A
    stuck_for_s: float = 0.0  # whole seconds, saturates at 63

    @property
    def unseen_current_valid(self) -> bool:
        return not math.isnan(self.unseen_current_A)

    def names(self) -> list[str]:
        """The flags raised, by name."""
        return [name for bit, name in PLAUS_FLAGS.items() if self.flags & bit]


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """Target to host: after every sample, on a change of state, at least every second."""

    counter: int
    state: TargetState
    last_sequence: int | None = None  # None: no sample handled since boot
    fault_code: FaultCode = FaultCode.NONE
    instructions_per_cell_step: int | None = None  # None: unknown (0 on the wire)
    start: TargetStart = TargetStart.POWER_ON  # how the target started last
    crc_errors: int = 0  # measurement frames refused for a bad crc since boot, modulo 16


#: The parts of a cell step TargetProfile reports, in the frame's order (its signal names).
PROFILE_PARTS = ("soc_filter", "monitor", "health_and_power", "core_temp")


@dataclass(frozen=True, slots=True)
class TargetProfile:
    """Target to host, right after the TargetStatus that closes a sample: the
    sample's instructions per cell step, part by part (:data:`PROFILE_PARTS`):
    the SOC filter, the plausibility monitor, capacity with R0 and the state
    of power's sub-step, the core temperature. ``None``: not measured (0 on
    the wire: the part is not built in, did not run that sample, or the
    target cannot count)."""

    soc_filter: int | None = None
    monitor: int | None = None
    health_and_power: int | None = None
    core_temp: int | None = None

    def by_part(self) -> dict[str, int | None]:
        """Part name -> instructions per cell step (None: not measured)."""
        return {name: getattr(self, name) for name in PROFILE_PARTS}


Frame = Union[MeasPack, MeasCell, HostCommand, EstCell, EstCellHealth, EstCellPower, EstCellFlags, TargetStatus,
              TargetProfile]


# --- encoding ----------------------------------------------------------------


def _signal(msg: DbcMessage, name: str) -> Signal:
    return msg.get_signal_by_name(name)


def _where(msg: DbcMessage, sig: Signal) -> str:
    return f"{msg.name}.{sig.name}"


def _range_text(sig: Signal) -> str:
    unit = f" {sig.unit}" if sig.unit else ""
    return f"[{sig.minimum:g}, {sig.maximum:g}]{unit}"


def _physical(msg: DbcMessage, name: str, value: object, *, saturate: bool = False) -> float | None:
    """A finite value checked against its signal's range; None for nan (= not valid)."""
    sig = _signal(msg, name)
    # type() first: the ABC check is slow and the replay calls this per signal per frame.
    if type(value) is not float and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise TypeError(f"{_where(msg, sig)}: expected a number, got {value!r}")
    x = float(value)
    if math.isnan(x):
        return None
    if math.isinf(x):
        raise ValueError(
            f"{_where(msg, sig)} = {x!r} is not finite (range {_range_text(sig)}; nan sends 'not valid')"
        )
    lo, hi, half = float(sig.minimum), float(sig.maximum), 0.5 * float(sig.scale)
    if saturate and x > hi:
        return hi
    if not (lo - half <= x <= hi + half):
        raise ValueError(f"{_where(msg, sig)} = {x!r} is outside its range {_range_text(sig)}")
    # Within half a step of an end: that end's code (rounding, not clamping).
    return min(max(x, lo), hi)


def _integer(msg: DbcMessage, name: str, value: object, *, modulus: int | None = None) -> int:
    sig = _signal(msg, name)
    if type(value) is not int and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise TypeError(f"{_where(msg, sig)}: expected an int, got {value!r}")
    n = int(value)
    if modulus is not None:
        if n < 0:
            raise ValueError(f"{_where(msg, sig)} = {n} is negative (it is sent modulo {modulus})")
        return n % modulus
    if not (sig.minimum <= n <= sig.maximum):
        raise ValueError(f"{_where(msg, sig)} = {n} is outside its range {_range_text(sig)}")
    return n


def _choice(msg: DbcMessage, name: str, value: object, enum_type: type[enum.IntEnum]) -> int:
    sig = _signal(msg, name)
    try:
        return int(enum_type(value))
    except (ValueError, TypeError):
        allowed = ", ".join(f"{m.value} {m.name}" for m in enum_type)
        raise ValueError(f"{_where(msg, sig)} = {value!r} is not one of: {allowed}") from None


def _optional(msg: DbcMessage, values: dict[str, object], name: str, valid: str, value: float | None) -> None:
    """Store a value and its valid bit: not valid is the raw code 0, i.e. the offset."""
    if value is None:
        values[name] = _signal(msg, name).offset
        values[valid] = 0
    else:
        values[name] = value
        values[valid] = 1


class _Layout:
    """One frame's signals as (name, start, length, signed, scale, offset),
    packed and unpacked with integer arithmetic. The same results as
    cantools' Message.encode/decode (tests/test_can_contract.py checks it),
    at a fraction of the cost: the replay encodes and decodes every sample."""

    def __init__(self, msg: DbcMessage) -> None:
        self.signals = []
        #: name -> (lowest, highest accepted decoded value, decimals to round to)
        self.checks: dict[str, tuple[float, float, int]] = {}
        for sig in msg.signals:
            if sig.byte_order != "little_endian":
                raise RuntimeError(f"{msg.name}.{sig.name}: the contract is Intel byte order only")
            integral = float(sig.scale).is_integer() and float(sig.offset).is_integer()
            self.signals.append((sig.name, sig.start, sig.length, sig.is_signed, sig.scale, sig.offset, integral))
            tol = 1e-9 * float(sig.scale)
            self.checks[sig.name] = (sig.minimum - tol, sig.maximum + tol,
                                     max(_decimals(sig.scale), _decimals(sig.offset)))

    def encode(self, values: dict[str, object]) -> bytes:
        word = 0
        for name, start, length, signed, scale, offset, _ in self.signals:
            raw = int(round((float(values[name]) - offset) / scale))  # type: ignore[arg-type]
            if signed and raw < 0:
                raw += 1 << length
            word |= (raw & ((1 << length) - 1)) << start
        return word.to_bytes(DATA_LENGTH, "little")

    def decode(self, data: bytes) -> dict[str, float | int]:
        word = int.from_bytes(data, "little")
        out: dict[str, float | int] = {}
        for name, start, length, signed, scale, offset, integral in self.signals:
            raw = (word >> start) & ((1 << length) - 1)
            if signed and raw >> (length - 1):
                raw -= 1 << length
            out[name] = int(raw * scale + offset) if integral else raw * scale + offset
        return out


@functools.cache
def _layout(frame_id: int) -> _Layout:
    return _Layout(database().get_message_by_frame_id(frame_id))


def _message(msg: DbcMessage, values: dict[str, object]) -> can.Message:
    if msg.frame_id in E2E_FRAMES:
        values = {**values, "crc": 0}
        word = int.from_bytes(_layout(msg.frame_id).encode(values), "little")
        word |= e2e_crc(msg.frame_id, word) << _CRC_START
        return _data_message(msg.frame_id, word.to_bytes(DATA_LENGTH, "little"))
    return _data_message(msg.frame_id, _layout(msg.frame_id).encode(values))


def _data_message(frame_id: int, data: bytes) -> can.Message:
    return can.Message(arbitration_id=frame_id, is_extended_id=False, dlc=DATA_LENGTH, data=data)


def _opt(signal: str, valid: str, sat: bool = False, symmetric: bool = False) -> Field:
    return Field("opt", signal, valid=valid, sat=sat, symmetric=symmetric)


#: The frames sent every sample: their dataclass and its fields as signals,
#: for the straight-line codec of bmsfil.can_fastpath.
_FAST_SPECS: dict[int, tuple[type, tuple[Field, ...]]] = {
    FrameId.MEAS_PACK: (MeasPack, (Field("seq", "sequence"), _opt("dt_s", "dt_valid"),
                                   _opt("current_A", "current_valid"), Field("int", "n_cells"),
                                   Field("crc", "crc"))),
    FrameId.MEAS_CELL: (MeasCell, (Field("seq", "sequence"), Field("int", "cell_index"),
                                   _opt("voltage_V", "voltage_valid"), _opt("temp_C", "temp_valid"),
                                   Field("crc", "crc"))),
    FrameId.EST_CELL: (EstCell, (Field("seq", "sequence"), Field("int", "cell_index"), _opt("soc", "soc_valid"),
                                 _opt("soc_sigma", "soc_valid", sat=True),
                                 Field("bits", bits=tuple(EST_CELL_FLAGS.items())))),
    FrameId.EST_CELL_HEALTH: (EstCellHealth, (Field("seq", "sequence"), Field("int", "cell_index"),
                                              _opt("capacity_Ah", "capacity_valid", sat=True),
                                              _opt("r0_ohm", "r0_valid", sat=True),
                                              _opt("core_temp_C", "core_temp_valid"))),
    FrameId.EST_CELL_POWER: (EstCellPower, (Field("seq", "sequence"), Field("int", "cell_index"),
                                            _opt("charge_power_W", "charge_power_valid", sat=True),
                                            _opt("discharge_power_W", "discharge_power_valid", sat=True),
                                            Field("enum", "horizon", enum_type=PowerHorizon,
                                                  none_iff_invalid=("charge_power_valid",
                                                                    "discharge_power_valid")))),
    FrameId.EST_CELL_FLAGS: (EstCellFlags, (Field("seq", "sequence"), Field("int", "cell_index"),
                                            Field("bits", bits=tuple(PLAUS_FLAGS.items())),
                                            _opt("unseen_current_A", "unseen_current_valid", symmetric=True),
                                            _opt("unseen_current_sigma_A", "unseen_current_valid", sat=True),
                                            Field("count", "stuck_for_s"))),
}


@contextlib.contextmanager
def checked_only() -> Iterator[None]:
    """Within it, every frame goes through the checked codec alone (the fast
    path answers nothing): the baseline the fast path is measured against,
    and what tests compare it with. Not thread-safe: for benchmarks and tests."""
    global _fast
    nothing = {fid: (lambda *args: None, lambda data: None) for fid in _FAST_SPECS}
    saved = _fast
    _fast = lambda: nothing  # noqa: E731
    try:
        yield
    finally:
        _fast = saved


@functools.cache
def _fast() -> dict[int, tuple]:
    """Frame ID -> (encode, decode) of bmsfil.can_fastpath, for the frames
    sent every sample: each answers None where the checked codec here
    must (an unusual value, a bad frame)."""
    def accepts(fid: int) -> object:
        def for_signal(sig: Signal) -> object:
            lo, hi, _ = _layout(fid).checks[sig.name]
            return lambda x: lo <= x <= hi
        return for_signal

    db = database()
    return {fid: can_fastpath.build(db.get_message_by_frame_id(fid), frame_type, fields, _decimals, accepts(fid),
                                    crc=functools.partial(e2e_crc, int(fid)))
            for fid, (frame_type, fields) in _FAST_SPECS.items()}


def encode_meas_pack(sequence: int, dt_s: float, current_A: float, n_cells: int) -> can.Message:
    """MeasPack; ``nan`` dt_s or current_A is sent as not valid."""
    data = _fast()[FrameId.MEAS_PACK][0](sequence, dt_s, current_A, n_cells)
    if data is not None:
        return _data_message(FrameId.MEAS_PACK, data)
    msg = database().get_message_by_frame_id(FrameId.MEAS_PACK)
    values: dict[str, object] = {
        "sequence": _integer(msg, "sequence", sequence, modulus=SEQUENCE_MODULUS),
        "n_cells": _integer(msg, "n_cells", n_cells),
    }
    _interval(msg, values, dt_s)
    _optional(msg, values, "current_A", "current_valid", _physical(msg, "current_A", current_A))
    return _message(msg, values)


def _interval(msg: DbcMessage, values: dict[str, object], dt_s: object) -> None:
    """MeasPack's dt_s and dt_valid: an interval up to 65.535 s at 1 ms (dt_valid
    1); a longer one in whole seconds with dt_valid 0 (LONG_GAP_MAX_S for
    that or longer, infinity included); nan (not known) as dt_valid 0, raw 0."""
    sig = _signal(msg, "dt_s")
    number = isinstance(dt_s, numbers.Real) and not isinstance(dt_s, bool)
    if number and float(dt_s) > float(sig.maximum) + 0.5 * float(sig.scale):  # type: ignore[arg-type]
        values["dt_valid"] = 0
        values["dt_s"] = round(min(float(dt_s), LONG_GAP_MAX_S)) * float(sig.scale)  # type: ignore[arg-type]
        return
    _optional(msg, values, "dt_s", "dt_valid", _physical(msg, "dt_s", dt_s))


def encode_meas_cell(sequence: int, cell_index: int, voltage_V: float, temp_C: float) -> can.Message:
    """MeasCell; ``nan`` voltage_V or temp_C is sent as not valid."""
    data = _fast()[FrameId.MEAS_CELL][0](sequence, cell_index, voltage_V, temp_C)
    if data is not None:
        return _data_message(FrameId.MEAS_CELL, data)
    msg = database().get_message_by_frame_id(FrameId.MEAS_CELL)
    values: dict[str, object] = {
        "sequence": _integer(msg, "sequence", sequence, modulus=SEQUENCE_MODULUS),
        "cell_index": _integer(msg, "cell_index", cell_index),
    }
    _optional(msg, values, "voltage_V", "voltage_valid", _physical(msg, "voltage_V", voltage_V))
    _optional(msg, values, "temp_C", "temp_valid", _physical(msg, "temp_C", temp_C))
    return _message(msg, values)


def encode_host_command(command: HostCommandCode | int) -> can.Message:
    """HostCommand, with the key (:data:`HOST_COMMAND_KEY`) a target requires."""
    msg = database().get_message_by_frame_id(FrameId.HOST_COMMAND)
    values: dict[str, object] = {
        "command": _choice(msg, "command", command, HostCommandCode),
        "key": HOST_COMMAND_KEY,
    }
    return _message(msg, values)


def encode_est_cell(sequence: int, cell_index: int, soc: float, soc_sigma: float, flags: int = 0) -> can.Message:
    """EstCell. ``soc`` and ``soc_sigma`` are valid together or ``nan`` together.

    ``flags`` takes the core's step flags as they are, plus FLAG_RESTORED
    (which a target sets itself): the FLAG_* bits are sent, the core's other
    bits (SOC_CLAMPED, COV_REPAIRED) are dropped. ``soc_sigma`` above 0.4094
    is sent as 0.4094, at a resolution of 2e-4 (see the module docstring).
    """
    data = _fast()[FrameId.EST_CELL][0](sequence, cell_index, soc, soc_sigma, flags)
    if data is not None:
        return _data_message(FrameId.EST_CELL, data)
    msg = database().get_message_by_frame_id(FrameId.EST_CELL)
    values: dict[str, object] = {
        "sequence": _integer(msg, "sequence", sequence, modulus=SEQUENCE_MODULUS),
        "cell_index": _integer(msg, "cell_index", cell_index),
    }
    soc_x = _physical(msg, "soc", soc)
    sigma_x = _physical(msg, "soc_sigma", soc_sigma, saturate=True)
    if (soc_x is None) != (sigma_x is None):
        raise ValueError(
            f"EstCell: soc = {soc!r} and soc_sigma = {soc_sigma!r}; both are valid or both are nan "
            "(soc_valid covers both)"
        )
    values["soc"] = 0.0 if soc_x is None else soc_x
    values["soc_sigma"] = 0.0 if sigma_x is None else sigma_x
    values["soc_valid"] = 0 if soc_x is None else 1
    if isinstance(flags, bool) or not isinstance(flags, numbers.Integral) or flags < 0:
        raise TypeError(f"EstCell: flags must be a non-negative int of FLAG_* bits, got {flags!r}")
    for bit, name in EST_CELL_FLAGS.items():
        values[name] = 1 if int(flags) & bit else 0
    return _message(msg, values)


def encode_est_cell_health(
    sequence: int,
    cell_index: int,
    capacity_Ah: float = math.nan,
    r0_ohm: float = math.nan,
    core_temp_C: float = math.nan,
) -> can.Message:
    """EstCellHealth; every value left ``nan`` is sent as not valid. A finite
    capacity above 65.535 Ah or R0 above 0.2047 ohm is sent as that end of
    its range, as the firmware and MicroPython targets send it; a negative or
    infinite one (which they would send as 0 or the top) is refused: no
    estimator produces one, so it is a bug to report, not a value to send."""
    data = _fast()[FrameId.EST_CELL_HEALTH][0](sequence, cell_index, capacity_Ah, r0_ohm, core_temp_C)
    if data is not None:
        return _data_message(FrameId.EST_CELL_HEALTH, data)
    msg = database().get_message_by_frame_id(FrameId.EST_CELL_HEALTH)
    values: dict[str, object] = {
        "sequence": _integer(msg, "sequence", sequence, modulus=SEQUENCE_MODULUS),
        "cell_index": _integer(msg, "cell_index", cell_index),
    }
    _optional(msg, values, "capacity_Ah", "capacity_valid",
              _physical(msg, "capacity_Ah", capacity_Ah, saturate=True))
    _optional(msg, values, "r0_ohm", "r0_valid", _physical(msg, "r0_ohm", r0_ohm, saturate=True))
    _optional(msg, values, "core_temp_C", "core_temp_valid", _physical(msg, "core_temp_C", core_temp_C))
    return _message(msg, values)


def core_temp_on_frame(core_C: float) -> float:
    """A core temperature brought inside EstCellHealth.core_temp_C's range
    (-40 .. 87.5 °C), as the targets saturate it; nan stays nan (not valid)."""
    return core_C if math.isnan(core_C) else min(max(core_C, CORE_TEMP_RANGE_C[0]), CORE_TEMP_RANGE_C[1])


def encode_est_cell_power(
    sequence: int,
    cell_index: int,
    charge_power_W: float = math.nan,
    discharge_power_W: float = math.nan,
    horizon: PowerHorizon | int = PowerHorizon.NONE,
) -> can.Message:
    """EstCellPower; ``horizon`` is NONE exactly when both powers are ``nan``."""
    data = _fast()[FrameId.EST_CELL_POWER][0](sequence, cell_index, charge_power_W, discharge_power_W, horizon)
    if data is not None:
        return _data_message(FrameId.EST_CELL_POWER, data)
    msg = database().get_message_by_frame_id(FrameId.EST_CELL_POWER)
    values: dict[str, object] = {
        "sequence": _integer(msg, "sequence", sequence, modulus=SEQUENCE_MODULUS),
        "cell_index": _integer(msg, "cell_index", cell_index),
        "horizon": _choice(msg, "horizon", horizon, PowerHorizon),
    }
    # Powers above the range saturate at its top, as the firmware sends them.
    charge = _physical(msg, "charge_power_W", charge_power_W, saturate=True)
    discharge = _physical(msg, "discharge_power_W", discharge_power_W, saturate=True)
    if (charge is None and discharge is None) != (values["horizon"] == PowerHorizon.NONE):
        raise ValueError(
            f"EstCellPower: horizon {PowerHorizon(values['horizon']).name} with charge_power_W = "
            f"{charge_power_W!r}, discharge_power_W = {discharge_power_W!r}; horizon is NONE exactly "
            "when neither power is valid"
        )
    _optional(msg, values, "charge_power_W", "charge_power_valid", charge)
    _optional(msg, values, "discharge_power_W", "discharge_power_valid", discharge)
    return _message(msg, values)


def encode_est_cell_flags(
    sequence: int,
    cell_index: int,
    flags: int = 0,
    unseen_current_A: float = math.nan,
    unseen_current_sigma_A: float = math.nan,
    stuck_for_s: float = 0.0,
) -> can.Message:
    """EstCellFlags. ``flags``: the monitor's BF_PLAUS_* bits (others are
    refused). ``unseen_current_A`` and ``unseen_current_sigma_A`` are valid
    together or ``nan`` together (an infinite sigma, the monitor's "no
    window yet", sends both as not valid); the current
    saturates at the ends of its range and the sigma at 2.046 A;
    ``stuck_for_s`` is rounded to whole seconds and saturates at 63."""
    data = _fast()[FrameId.EST_CELL_FLAGS][0](sequence, cell_index, flags, unseen_current_A, unseen_current_sigma_A,
                                              stuck_for_s)
    if data is not None:
        return _data_message(FrameId.EST_CELL_FLAGS, data)
    msg = database().get_message_by_frame_id(FrameId.EST_CELL_FLAGS)
    values: dict[str, object] = {
        "sequence": _integer(msg, "sequence", sequence, modulus=SEQUENCE_MODULUS),
        "cell_index": _integer(msg, "cell_index", cell_index),
    }
    if isinstance(flags, bool) or not isinstance(flags, numbers.Integral) or flags < 0 \
            or int(flags) & ~sum(PLAUS_FLAGS):
        raise ValueError(f"EstCellFlags: flags must be PLAUS_* bits (0x00-0x3F), got {flags!r}")
    for bit, name in PLAUS_FLAGS.items():
        values[name] = 1 if int(flags) & bit else 0
    sigma = float(unseen_current_sigma_A)
    u = float(unseen_current_A)
    if sigma == math.inf:  # the monitor's "no window yet": its current (0) is no estimate either
        sigma = u = math.nan
    if math.isnan(u) != math.isnan(sigma):
        raise ValueError(f"EstCellFlags: unseen_current_A = {unseen_current_A!r} and unseen_current_sigma_A = "
                         f"{unseen_current_sigma_A!r}; both are valid or both are nan (one valid bit covers both)")
    if not math.isnan(u):
        u_sig = _signal(msg, "unseen_current_A")
        if math.isfinite(u):
            # Saturates at +-maximum, symmetric as the targets saturate (the raw -16384 is not sent).
            u = min(max(u, -float(u_sig.maximum)), float(u_sig.maximum))
    u_x = _physical(msg, "unseen_current_A", u)
    sigma_x = _physical(msg, "unseen_current_sigma_A", sigma, saturate=True)
    _optional(msg, values, "unseen_current_A", "unseen_current_valid", u_x)
    values["unseen_current_sigma_A"] = 0.0 if sigma_x is None else sigma_x
    stuck = float(stuck_for_s)
    if math.isnan(stuck) or stuck < 0:
        raise ValueError(f"EstCellFlags.stuck_for_s = {stuck_for_s!r}: expected a duration >= 0")
    values["stuck_for_s"] = min(stuck, float(_signal(msg, "stuck_for_s").maximum))
    return _message(msg, values)


def encode_target_status(
    counter: int,
    state: TargetState | int,
    last_sequence: int | None = None,
    fault_code: FaultCode | int = FaultCode.NONE,
    instructions_per_cell_step: int | None = None,
    *,
    start: TargetStart | int = TargetStart.POWER_ON,
    crc_errors: int = 0,
) -> can.Message:
    """TargetStatus; ``None`` last_sequence / instructions_per_cell_step = not
    known; ``crc_errors``: measurement frames refused for their crc since
    boot, any non-negative int, sent modulo 16."""
    msg = database().get_message_by_frame_id(FrameId.TARGET_STATUS)
    values: dict[str, object] = {
        "counter": _integer(msg, "counter", counter, modulus=COUNTER_MODULUS),
        "state": _choice(msg, "state", state, TargetState),
        "fault_code": _choice(msg, "fault_code", fault_code, FaultCode),
        "start": _choice(msg, "start", start, TargetStart),
        "crc_errors": _integer(msg, "crc_errors", crc_errors, modulus=CRC_ERRORS_MODULUS),
    }
    if last_sequence is None:
        values["last_sequence"], values["last_sequence_valid"] = 0, 0
    else:
        values["last_sequence"] = _integer(msg, "last_sequence", last_sequence, modulus=SEQUENCE_MODULUS)
        values["last_sequence_valid"] = 1
    if instructions_per_cell_step is None:
        values["instructions_per_cell_step"] = 0
    else:
        n = _integer(msg, "instructions_per_cell_step", instructions_per_cell_step)
        if n == 0:
            raise ValueError("TargetStatus.instructions_per_cell_step = 0 means unknown: pass None")
        values["instructions_per_cell_step"] = n
    return _message(msg, values)


def encode_target_profile(
    soc_filter: int | None = None,
    monitor: int | None = None,
    health_and_power: int | None = None,
    core_temp: int | None = None,
) -> can.Message:
    """TargetProfile; ``None`` = not measured. A count above 65535 is sent
    as 65535, as the firmware saturates it; 0 is refused (on the wire it
    means not measured: pass None)."""
    msg = database().get_message_by_frame_id(FrameId.TARGET_PROFILE)
    values: dict[str, object] = {}
    for name, count in zip(PROFILE_PARTS, (soc_filter, monitor, health_and_power, core_temp)):
        if count is None:
            values[name] = 0
            continue
        if type(count) is not int and (isinstance(count, bool) or not isinstance(count, numbers.Integral)):
            raise TypeError(f"TargetProfile.{name}: expected an int or None, got {count!r}")
        n = int(count)
        if n <= 0:
            raise ValueError(f"TargetProfile.{name} = {n}: a count is positive (0 means not measured: pass None)")
        values[name] = min(n, int(_signal(msg, name).maximum))
    return _message(msg, values)


def encode(frame: Frame) -> can.Message:
    """Any frame dataclass as a message (the inverse of :func:`decode`)."""
    if isinstance(frame, MeasPack):
        return encode_meas_pack(frame.sequence, frame.dt_s, frame.current_A, frame.n_cells)
    if isinstance(frame, MeasCell):
        return encode_meas_cell(frame.sequence, frame.cell_index, frame.voltage_V, frame.temp_C)
    if isinstance(frame, HostCommand):
        return encode_host_command(frame.command)
    if isinstance(frame, EstCell):
        return encode_est_cell(frame.sequence, frame.cell_index, frame.soc, frame.soc_sigma, frame.flags)
    if isinstance(frame, EstCellHealth):
        return encode_est_cell_health(
            frame.sequence, frame.cell_index, frame.capacity_Ah, frame.r0_ohm, frame.core_temp_C
        )
    if isinstance(frame, EstCellPower):
        return encode_est_cell_power(
            frame.sequence, frame.cell_index, frame.charge_power_W, frame.discharge_power_W, frame.horizon
        )
    if isinstance(frame, EstCellFlags):
        return encode_est_cell_flags(frame.sequence, frame.cell_index, frame.flags, frame.unseen_current_A,
                                     frame.unseen_current_sigma_A, frame.stuck_for_s)
    if isinstance(frame, TargetStatus):
        return encode_target_status(
            frame.counter,
            frame.state,
            frame.last_sequence,
            frame.fault_code,
            frame.instructions_per_cell_step,
            start=frame.start,
            crc_errors=frame.crc_errors,
        )
    if isinstance(frame, TargetProfile):
        return encode_target_profile(frame.soc_filter, frame.monitor, frame.health_and_power, frame.core_temp)
    raise TypeError(f"not a frame of the CAN contract: {frame!r}")


# --- decoding ----------------------------------------------------------------


def decode(message: can.Message) -> Frame:
    """The frame a message carries; :class:`FrameError` when it is not one."""
    fid = message.arbitration_id
    fast = _fast().get(fid)
    if (fast is not None and message.dlc == DATA_LENGTH and not (message.is_error_frame or message.is_extended_id
                                                              or message.is_remote_frame or message.is_fd)):
        data = message.data
        if data is not None and len(data) == DATA_LENGTH:
            frame = fast[1](data)
            if frame is not None:
                return frame
    db = database()
    if message.is_error_frame:
        raise FrameError(fid, None, "an error frame, not a data frame")
    if message.is_extended_id:
        raise FrameError(fid, None, "29-bit (extended) ID; the contract uses 11-bit IDs only")
    try:
        msg = db.get_message_by_frame_id(fid)
    except KeyError:
        known = ", ".join(f"0x{m.frame_id:03X} {m.name}" for m in db.messages)
        raise FrameError(fid, None, f"unknown ID, not in the CAN contract (known: {known})") from None
    if message.is_remote_frame:
        raise FrameError(fid, msg.name, "a remote frame; the contract sends data frames only")
    if message.is_fd:
        raise FrameError(fid, msg.name, "a CAN FD frame; the contract is classic CAN")
    data = bytes(message.data or b"")
    if len(data) != msg.length or message.dlc != msg.length:
        what = "truncated" if min(len(data), message.dlc) < msg.length else "too long"
        raise FrameError(
            fid, msg.name, f"{what}: expected DLC {msg.length}, got DLC {message.dlc} with {len(data)} data bytes"
        )
    if fid in E2E_FRAMES:
        carried, expected = (data[1] >> 4), e2e_crc(fid, data)
        if carried != expected:
            raise FrameError(fid, msg.name, f"crc 0x{carried:X} does not match the 0x{expected:X} expected over the "
                             "frame's ID and other 60 bits (CRC-4/G-704): a damaged or misaddressed frame, "
                             "refused", "crc")
    values = _layout(fid).decode(data)
    return _DECODERS[fid](_Fields(fid, msg, values))


class _Fields:
    """Checked access to the decoded signals of one frame."""

    def __init__(self, fid: int, msg: DbcMessage, values: dict) -> None:
        self.fid, self.msg, self.values = fid, msg, values
        self.checks = _layout(fid).checks

    def error(self, field: str, problem: str) -> FrameError:
        return FrameError(self.fid, self.msg.name, problem, field)

    def number(self, name: str) -> float:
        lo, hi, digits = self.checks[name]
        x = self.values[name]
        if not (lo <= x <= hi):
            sig = _signal(self.msg, name)
            raise self.error(name, f"{x!r} is outside its range {_range_text(sig)} (garbled frame?)")
        if type(x) is float:
            # raw * scale + offset in binary: 0.40940000000000004 for 2047 * 2e-4. Rounding
            # to the scale's decimals gives the double nearest the decimal code value.
            x = round(x, digits)
        return x

    def integer(self, name: str) -> int:
        return int(self.number(name))

    def flag(self, name: str) -> bool:
        return bool(self.integer(name))

    def interval(self) -> float:
        """MeasPack's interval (see `_interval`): dt_s at 1 ms when dt_valid is
        1; when 0, dt_s's raw value in whole seconds (a gap longer than 65.535
        s), infinity for LONG_GAP_MAX_S, nan for 0 (not known)."""
        if self.flag("dt_valid"):
            return float(self.number("dt_s"))
        raw = round(float(self.values["dt_s"]) / float(_signal(self.msg, "dt_s").scale))
        return math.nan if raw == 0 else (math.inf if raw >= LONG_GAP_MAX_S else float(raw))

    def optional(self, name: str, valid: str) -> float:
        """The value, or nan when its valid bit is 0 (then the value bits must be 0)."""
        if self.flag(valid):
            return float(self.number(name))
        offset = _signal(self.msg, name).offset
        if self.values[name] != offset:
            raise self.error(
                name,
                f"{valid} is 0 but the value is {self.values[name]!r}, not raw 0: "
                "a value that is not valid must be sent as 0 (garbled frame?)",
            )
        return math.nan

    def choice(self, name: str, enum_type: type[enum.IntEnum]) -> enum.IntEnum:
        raw = self.integer(name)
        try:
            return enum_type(raw)
        except ValueError:
            raise self.error(name, f"{raw} is not a {enum_type.__name__} value (garbled frame?)") from None


def _decode_meas_pack(f: _Fields) -> MeasPack:
    return MeasPack(
        sequence=f.integer("sequence"),
        dt_s=f.interval(),
        current_A=f.optional("current_A", "current_valid"),
        n_cells=f.integer("n_cells"),
    )


def _decode_meas_cell(f: _Fields) -> MeasCell:
    return MeasCell(
        sequence=f.integer("sequence"),
        cell_index=f.integer("cell_index"),
        voltage_V=f.optional("voltage_V", "voltage_valid"),
        temp_C=f.optional("temp_C", "temp_valid"),
    )


def _decode_host_command(f: _Fields) -> HostCommand:
    key = f.integer("key")
    if key != HOST_COMMAND_KEY:
        raise f.error(
            "key", f"0x{key:04X}, not 0x{HOST_COMMAND_KEY:04X}: a target ignores this command (garbled frame?)"
        )
    return HostCommand(command=f.choice("command", HostCommandCode))


def _decode_est_cell(f: _Fields) -> EstCell:
    soc = f.optional("soc", "soc_valid")
    sigma = f.optional("soc_sigma", "soc_valid")
    flags = sum(bit for bit, name in EST_CELL_FLAGS.items() if f.flag(name))
    return EstCell(f.integer("sequence"), f.integer("cell_index"), soc, sigma, flags)


def _decode_est_cell_health(f: _Fields) -> EstCellHealth:
    return EstCellHealth(
        sequence=f.integer("sequence"),
        cell_index=f.integer("cell_index"),
        capacity_Ah=f.optional("capacity_Ah", "capacity_valid"),
        r0_ohm=f.optional("r0_ohm", "r0_valid"),
        core_temp_C=f.optional("core_temp_C", "core_temp_valid"),
    )


def _decode_est_cell_power(f: _Fields) -> EstCellPower:
    charge = f.optional("charge_power_W", "charge_power_valid")
    discharge = f.optional("discharge_power_W", "discharge_power_valid")
    horizon = f.choice("horizon", PowerHorizon)
    if (math.isnan(charge) and math.isnan(discharge)) != (horizon == PowerHorizon.NONE):
        raise f.error("horizon", f"{horizon.name} but the powers are {charge!r}, {discharge!r}; "
                      "horizon is NONE exactly when neither power is valid (garbled frame?)")
    return EstCellPower(f.integer("sequence"), f.integer("cell_index"), charge, discharge, horizon)


def _decode_est_cell_flags(f: _Fields) -> EstCellFlags:
    flags = sum(bit for bit, name in PLAUS_FLAGS.items() if f.flag(name))
    return EstCellFlags(
        sequence=f.integer("sequence"),
        cell_index=f.integer("cell_index"),
        flags=flags,
        unseen_current_A=f.optional("unseen_current_A", "unseen_current_valid"),
        unseen_current_sigma_A=f.optional("unseen_current_sigma_A", "unseen_current_valid"),
        stuck_for_s=float(f.integer("stuck_for_s")),
    )


def _decode_target_status(f: _Fields) -> TargetStatus:
    if f.flag("last_sequence_valid"):
        last_sequence: int | None = f.integer("last_sequence")
    elif f.integer("last_sequence") != 0:
        raise f.error("last_sequence", "last_sequence_valid is 0 but last_sequence is not 0 (garbled frame?)")
    else:
        last_sequence = None
    instructions = f.integer("instructions_per_cell_step")
    return TargetStatus(
        counter=f.integer("counter"),
        state=f.choice("state", TargetState),
        last_sequence=last_sequence,
        fault_code=f.choice("fault_code", FaultCode),
        instructions_per_cell_step=instructions or None,
        start=f.choice("start", TargetStart),
        crc_errors=f.integer("crc_errors"),
    )


def _decode_target_profile(f: _Fields) -> TargetProfile:
    return TargetProfile(*(f.integer(name) or None for name in PROFILE_PARTS))


_DECODERS = {
    FrameId.MEAS_PACK: _decode_meas_pack,
    FrameId.MEAS_CELL: _decode_meas_cell,
    FrameId.HOST_COMMAND: _decode_host_command,
    FrameId.EST_CELL: _decode_est_cell,
    FrameId.EST_CELL_HEALTH: _decode_est_cell_health,
    FrameId.EST_CELL_POWER: _decode_est_cell_power,
    FrameId.EST_CELL_FLAGS: _decode_est_cell_flags,
    FrameId.TARGET_STATUS: _decode_target_status,
    FrameId.TARGET_PROFILE: _decode_target_profile,
}
