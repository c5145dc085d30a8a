"""The frames of the bmsfil CAN contract a MicroPython target needs.

Bit layouts as in csrc/can/bmsfil.dbc (Intel byte order: bit n of the frame
is bit n of the 8 data bytes read as one little-endian 64-bit integer).
In: MeasPack (0x100), MeasCell (0x101), HostCommand (0x1F0). Out: EstCell
(0x200), EstCellHealth (0x201: capacity, R0 and core temperature), EstCellFlags (0x203, the
plausibility monitor's), TargetStatus (0x300). Written by hand from the DBC (tests/test_micropython_target.py
checks every frame against cantools). Scaled values are decoded by exact division
(raw / 10**k), which gives the double nearest the decimal value, as the
host's decoder (bmsfil.can_contract) does. A value whose valid bit is 0
decodes as nan.

MeasPack and MeasCell are protected end to end (contract bmsfil-can-4): a
12-bit sequence and a 4-bit crc at bits 12-15, CRC-4/G-704 over the frame's
CAN identifier as 2 bytes little-endian (its Data ID) and then the 8 data
bytes (each least significant bit first) with the crc field taken as 0
(e2e_crc). decode_meas_pack and decode_meas_cell return None for a frame
whose crc does not match: the application refuses it as a lost frame and
counts it. Both estimator variants (pure MicroPython and the native module)
go through these decoders: the native module holds the estimators only.
"""

import math

MEAS_PACK = 0x100
MEAS_CELL = 0x101
HOST_COMMAND = 0x1F0
EST_CELL = 0x200
EST_CELL_HEALTH = 0x201
EST_CELL_POWER = 0x202
EST_CELL_FLAGS = 0x203
TARGET_STATUS = 0x300

HOST_COMMAND_KEY = 0xB5F1
SIGMA_RAW_MAX = 2047  # soc_sigma saturates at 0.4094
UNSEEN_RAW_MAX = 16383  # EstCellFlags.unseen_current_A saturates at +-16.383 A
UNSEEN_SIGMA_RAW_MAX = 1023  # unseen_current_sigma_A saturates at 2.046 A
STUCK_RAW_MAX = 63  # stuck_for_s saturates at 63 s
CAPACITY_RAW_MAX = 65535  # EstCellHealth.capacity_Ah saturates at 65.535 Ah
R0_RAW_MAX = 2047  # EstCellHealth.r0_ohm saturates at 0.2047 ohm
POWER_RAW_MAX = 65535  # EstCellPower powers saturate at 6553.5 W
CORE_TEMP_RAW_MAX = 255  # EstCellHealth.core_temp_C: raw (T + 40) / 0.5, -40 .. 87.5 degC

# TargetStatus.state, .start and .fault_code (the DBC's VAL_ tables).
STATE_BOOTING, STATE_IDLE, STATE_RUNNING, STATE_FAULT = 0, 1, 2, 3
START_POWER_ON, START_RESTORED, START_SAVED_STATE_BAD = 0, 1, 2
FAULT_NONE = 0
FAULT_BAD_PARAMS = 1
FAULT_SEQUENCE_GAP = 2
FAULT_N_CELLS_UNSUPPORTED = 3
FAULT_CELL_INDEX_OUT_OF_RANGE = 4
FAULT_RX_OVERFLOW = 5
FAULT_ESTIMATOR_ERROR = 6
FAULT_FRAME_ERROR = 7
FAULT_PERSIST_ERROR = 8
FAULT_CRC_ERROR = 9

SEQUENCE_MASK = 0xFFF  # sequence numbers are 12 bits

# EstCell flag bits: the estimator's (0x01-0x10) and the target's RESTORED.
FLAG_VOLTAGE_INVALID = 0x01
FLAG_CURRENT_INVALID = 0x02
FLAG_TEMP_INVALID = 0x04
FLAG_DT_INVALID = 0x08
FLAG_GATED = 0x10
FLAG_RESTORED = 0x80

NAN = float("nan")
INF = float("inf")


def _word(data):
    return int.from_bytes(bytes(data), "little")


def _bits(word, start, length):
    return (word >> start) & ((1 << length) - 1)


def _crc4_byte_table():
    # CRC-4/G-704 (reflected polynomial 0xC): the register after a byte, indexed by register ^ byte
    nibble = []
    for r in range(16):
        for _ in range(4):
            r = (r >> 1) ^ 0xC if r & 1 else r >> 1
        nibble.append(r)
    return bytes(nibble[nibble[x & 0xF] ^ (x >> 4)] for x in range(256))


_CRC4 = _crc4_byte_table()


def e2e_crc(frame_id, data):
    """The crc a MeasPack or MeasCell sent with this 11-bit identifier and
    these 8 data bytes must carry: CRC-4/G-704 over the identifier (2 bytes,
    little-endian) and then the 8 bytes with the crc field (the high nibble
    of byte 1) as 0."""
    t = _CRC4
    r = t[t[frame_id & 0xFF] ^ (frame_id >> 8)]
    r = t[data[0] ^ r]
    r = t[(data[1] & 0x0F) ^ r]
    for i in range(2, 8):
        r = t[data[i] ^ r]
    return r


def e2e_ok(frame_id, data):
    """The frame's crc matches its identifier and its other 60 bits."""
    return (data[1] >> 4) == e2e_crc(frame_id, data)


def decode_meas_pack(data):
    """(sequence, dt_s, current_A, n_cells); nan for a value that is not
    valid; None when the crc does not match (a damaged or misaddressed frame)."""
    if not e2e_ok(MEAS_PACK, data):
        return None
    w = _word(data)
    current = _bits(w, 32, 20)
    if current >> 19:
        current -= 1 << 20
    raw = _bits(w, 16, 16)
    # dt_valid 0: a gap in whole seconds, 65535 for that or longer, 0 not known.
    dt_s = raw / 1000 if _bits(w, 53, 1) else (NAN if raw == 0 else (INF if raw == 0xFFFF else float(raw)))
    current_A = current / 1000 if _bits(w, 52, 1) else NAN
    return _bits(w, 0, 12), dt_s, current_A, _bits(w, 54, 10) + 1


def decode_meas_cell(data):
    """(sequence, cell_index, voltage_V, temp_C); nan for a value that is not
    valid; None when the crc does not match (a damaged or misaddressed frame)."""
    if not e2e_ok(MEAS_CELL, data):
        return None
    w = _word(data)
    voltage_V = _bits(w, 28, 20) / 100000 if _bits(w, 26, 1) else NAN
    temp_C = (_bits(w, 48, 14) - 6000) / 100 if _bits(w, 27, 1) else NAN
    return _bits(w, 0, 12), _bits(w, 16, 10), voltage_V, temp_C


def decode_host_command(data):
    """(command, key)."""
    w = _word(data)
    return _bits(w, 0, 8), _bits(w, 16, 16)


def _round_scaled(x, mult, raw_max):
    """x * mult rounded to the nearest code, 0 for nan or a negative x, at most raw_max."""
    if math.isnan(x) or x <= 0:
        return 0
    y = x * mult
    if y >= raw_max:
        return raw_max
    return int(y + 0.5)


def encode_est_cell(sequence, cell_index, soc, soc_sigma, flags, valid):
    """EstCell's 8 bytes. flags: FLAG_* bits; soc and soc_sigma are sent only when valid."""
    w = (sequence & SEQUENCE_MASK) | ((cell_index & 0x3FF) << 16)
    if valid:
        w |= 1 << 26
        w |= _round_scaled(soc, 1000000, 1000000) << 32
        w |= _round_scaled(soc_sigma, 5000, SIGMA_RAW_MAX) << 53
    if flags & FLAG_VOLTAGE_INVALID:
        w |= 1 << 27
    if flags & FLAG_CURRENT_INVALID:
        w |= 1 << 28
    if flags & FLAG_TEMP_INVALID:
        w |= 1 << 29
    if flags & FLAG_DT_INVALID:
        w |= 1 << 30
    if flags & FLAG_GATED:
        w |= 1 << 31
    if flags & FLAG_RESTORED:
        w |= 1 << 52
    return w.to_bytes(8, "little")


def _finite(x):
    return x == x and x - x == 0.0


def encode_est_cell_flags(sequence, cell_index, flags, unseen_current_A, unseen_current_sigma_A, stuck_for_s):
    """EstCellFlags's 8 bytes. flags: the monitor's bits (bmsfil_plaus, the
    core's BF_PLAUS_*: bits 26-31 of the frame in the same order); the unseen
    current and its sigma are sent when the sigma is finite (inf: no window
    yet), saturated at the ends of their ranges."""
    w = (sequence & SEQUENCE_MASK) | ((cell_index & 0x3FF) << 16) | ((flags & 0x3F) << 26)
    u, sigma = unseen_current_A, unseen_current_sigma_A
    if _finite(u) and _finite(sigma) and sigma >= 0:
        mag = _round_scaled(abs(u), 1000, UNSEEN_RAW_MAX)
        raw = -mag if u < 0 else mag
        w |= 1 << 32
        w |= (raw & 0x7FFF) << 33
        w |= _round_scaled(sigma, 500, UNSEEN_SIGMA_RAW_MAX) << 48
    w |= _round_scaled(stuck_for_s, 1, STUCK_RAW_MAX) << 58
    return w.to_bytes(8, "little")


def core_temp_raw(core_C):
    """EstCellHealth.core_temp_C's raw code of a finite temperature:
    round((core_C + 40) / 0.5) with ties to even, as the host encodes it,
    saturated at -40 and 87.5 degC. Exact in single and double precision:
    2 core_C and its fraction are exact, and adding the even 80 afterwards
    keeps the tie's parity."""
    if not core_C > -40.0:
        return 0
    if not core_C < 87.5:
        return CORE_TEMP_RAW_MAX
    y = 2.0 * core_C
    f = math.floor(y)
    r = y - f
    if r > 0.5 or (r == 0.5 and f % 2 == 1):
        f += 1
    return min(max(f + 80, 0), CORE_TEMP_RAW_MAX)


def encode_est_cell_health(sequence, cell_index, capacity_Ah, r0_ohm, core_temp_C=NAN):
    """EstCellHealth's 8 bytes: capacity, R0 and core temperature each sent
    when not nan (saturated at the ends of their ranges)."""
    w = (sequence & SEQUENCE_MASK) | ((cell_index & 0x3FF) << 16)
    if not math.isnan(core_temp_C):
        w |= (1 << 28) | (core_temp_raw(core_temp_C) << 56)
    if not math.isnan(capacity_Ah):
        w |= (1 << 26) | (_round_scaled(capacity_Ah, 1000, CAPACITY_RAW_MAX) << 29)
    if not math.isnan(r0_ohm):
        w |= (1 << 27) | (_round_scaled(r0_ohm, 10000, R0_RAW_MAX) << 45)
    return w.to_bytes(8, "little")


def encode_est_cell_power(sequence, cell_index, latest):
    """EstCellPower's 8 bytes: latest None (no result yet) sends horizon none
    and no power; else (horizon index 0, 1, 2 = peak_2s, peak_10s, peak_30s,
    discharge_W, charge_W), both powers valid."""
    w = (sequence & SEQUENCE_MASK) | ((cell_index & 0x3FF) << 16)
    if latest is not None:
        k, discharge_W, charge_W = latest
        w |= (3 << 26) | ((k + 1) << 28) | (_round_scaled(charge_W, 10, POWER_RAW_MAX) << 32)
        w |= _round_scaled(discharge_W, 10, POWER_RAW_MAX) << 48
    return w.to_bytes(8, "little")


def encode_target_status(counter, state, start, last_sequence, fault_code, instructions=0, crc_errors=0):
    """TargetStatus's 8 bytes; last_sequence None = no sample handled yet;
    instructions 0 = unknown (a desktop target does not count them);
    crc_errors: measurement frames refused for their crc since start (sent modulo 16)."""
    w = (counter & 0xFF) | ((state & 0xF) << 8) | ((start & 0x3) << 13) | ((fault_code & 0xFF) << 32)
    w |= (crc_errors & 0xF) << 28
    if last_sequence is not None:
        w |= (1 << 12) | ((last_sequence & SEQUENCE_MASK) << 16)
    w |= (min(instructions, 0xFFFFFF) & 0xFFFFFF) << 40
    return w.to_bytes(8, "little")
