"""End-to-end protection of the measurement frames (MeasPack, MeasCell):
a 12-bit sequence and a CRC-4/G-704 over a Data ID (the frame's CAN
identifier, 2 bytes little-endian) and the frame's other 60 bits
(contract bmsfil-can-4).

- the CRC is the catalogue's CRC-4/G-704 (check value 0x7), in Python
  (bmsfil.can_contract) and in C (csrc/can/bmsfil_e2e.c), and both agree on
  any identifier and any 8 bytes;
- the Data ID does what it is there for: the CRC register after the two ID
  bytes is nonzero for both frames (so an all-zero payload is refused under
  either ID) and differs between them (so a payload of one under the other's
  ID is always refused); and a frame protected the contract-3 way (no Data
  ID) is always refused;
- an encoded frame carries it and decodes back to what was encoded;
- every single-bit flip of an encoded MeasPack or MeasCell is refused by the
  Python decoder (a FrameError on field crc, the fast path answering None)
  and by the C check the firmware runs before it unpacks a frame.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

import can
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil import can_contract as cc

ROOT = Path(__file__).resolve().parent.parent
CAN_DIR = ROOT / "csrc" / "can"
EXAMPLES = settings(max_examples=60, deadline=None)

_CDEF = """
uint8_t bmsfil_e2e_crc4(const uint8_t *data, size_t n);
uint8_t bmsfil_e2e_frame_crc(uint16_t frame_id, const uint8_t data[8]);
void bmsfil_e2e_protect(uint16_t frame_id, uint8_t data[8]);
int bmsfil_e2e_check(uint16_t frame_id, const uint8_t data[8]);
"""


@pytest.fixture(scope="module")
def c_e2e(tmp_path_factory):
    cffi = pytest.importorskip("cffi")
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler or not shutil.which(compiler):
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("e2e") / "libbmsfil_e2e.so"
    cmd = [compiler, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion", "-Wconversion",
           "-O2", "-fPIC", "-shared", f"-I{CAN_DIR}", str(CAN_DIR / "bmsfil_e2e.c"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    ffi = cffi.FFI()
    ffi.cdef(_CDEF)
    return ffi, ffi.dlopen(str(out))


def _meas_pack() -> st.SearchStrategy[can.Message]:
    def frame(seq, dt, cur, n):
        return cc.encode_meas_pack(seq, dt, cur, n)
    return st.builds(frame, st.integers(0, 10**6), st.one_of(st.floats(0, 65.535), st.just(math.nan)),
                     st.one_of(st.floats(-524.288, 524.287), st.just(math.nan)), st.integers(1, 1024))


def _meas_cell() -> st.SearchStrategy[can.Message]:
    def frame(seq, cell, v, t):
        return cc.encode_meas_cell(seq, cell, v, t)
    return st.builds(frame, st.integers(0, 10**6), st.integers(0, 1023),
                     st.one_of(st.floats(0, 10.48575), st.just(math.nan)),
                     st.one_of(st.floats(-60, 103.83), st.just(math.nan)))


MEASUREMENTS = st.one_of(_meas_pack(), _meas_cell())
PACK, CELL = int(cc.FrameId.MEAS_PACK), int(cc.FrameId.MEAS_CELL)
OTHER = {PACK: CELL, CELL: PACK}


def _contract3_crc(data: bytes) -> int:
    """The crc of bmsfil-can-3: the 8 data bytes alone (crc field as 0), no Data ID."""
    return cc.crc4_g704(bytes([data[0], data[1] & 0x0F]) + bytes(data[2:]))


def _refused_everywhere(c_e2e, fid: int, data: bytes) -> None:
    """The frame is refused for its crc by the C check, the fast path and the checked decoder."""
    ffi, lib = c_e2e
    assert lib.bmsfil_e2e_check(fid, ffi.from_buffer(data)) == -1
    assert cc._fast()[fid][1](data) is None
    with pytest.raises(cc.FrameError) as info:
        cc.decode(can.Message(arbitration_id=fid, data=data, is_extended_id=False))
    assert info.value.field == "crc" and info.value.frame_id == fid


def _flipped(message: can.Message, bit: int) -> can.Message:
    data = bytearray(message.data)
    data[bit // 8] ^= 1 << (bit % 8)
    return can.Message(arbitration_id=message.arbitration_id, data=bytes(data), is_extended_id=False)


def test_crc_is_crc4_g704(c_e2e) -> None:
    ffi, lib = c_e2e
    assert cc.crc4_g704(b"123456789") == 0x7  # the catalogue's check value
    assert lib.bmsfil_e2e_crc4(ffi.from_buffer(b"123456789"), 9) == 0x7
    assert cc.CONTRACT_VERSION == cc.database().version == "bmsfil-can-4"
    assert cc.SEQUENCE_MODULUS == 4096


@EXAMPLES
@given(fid=st.one_of(st.sampled_from([PACK, CELL]), st.integers(0, 0x7FF)), data=st.binary(min_size=8, max_size=8))
def test_c_and_python_agree(c_e2e, fid: int, data: bytes) -> None:
    ffi, lib = c_e2e
    masked = bytes([data[0], data[1] & 0x0F]) + data[2:]
    data_id = fid.to_bytes(2, "little")
    assert cc.e2e_crc(fid, data) == lib.bmsfil_e2e_frame_crc(fid, ffi.from_buffer(data)) == \
        cc.crc4_g704(data_id + masked)
    assert cc.e2e_crc(fid, data) == cc.e2e_crc(fid, int.from_bytes(data, "little"))  # bytes or word
    buf = ffi.new("uint8_t[8]", data)
    lib.bmsfil_e2e_protect(fid, buf)
    protected = bytes(buf)
    assert protected[1] >> 4 == cc.e2e_crc(fid, data) and protected[1] & 0x0F == data[1] & 0x0F
    assert lib.bmsfil_e2e_check(fid, ffi.from_buffer(protected)) == 0


def test_e2e_crc_takes_11_bit_ids_only() -> None:
    for fid in (-1, 0x800):
        with pytest.raises(ValueError, match="11-bit"):
            cc.e2e_crc(fid, bytes(8))


def test_data_id_registers() -> None:
    """The reasoning behind the Data ID, for the contract's actual IDs. The
    CRC is linear: e2e_crc(id, payload) = contract-3 crc(payload) XOR
    K(id), K(id) = e2e_crc(id, zeros) = the register after the ID bytes
    carried through 64 zero bits, a bijection on registers (x^64 is
    invertible modulo x^4 + x + 1). So K(id) != 0 iff that register != 0,
    and K(a) != K(b) iff the registers differ."""
    regs = {fid: cc.crc4_g704(fid.to_bytes(2, "little")) for fid in (PACK, CELL)}
    assert regs == {PACK: 0x7, CELL: 0xB}
    assert all(regs.values())  # nonzero: an all-zero payload is refused under either ID
    assert regs[PACK] != regs[CELL]  # distinct: one frame's payload is refused under the other's ID
    k = {fid: cc.e2e_crc(fid, bytes(8)) for fid in (PACK, CELL)}
    assert 0 not in k.values() and k[PACK] != k[CELL]
    # carrying through 64 zero bits permutes the 16 registers (so nonzero stays nonzero, distinct distinct)
    def through_zeros(reg: int) -> int:
        for _ in range(64):
            reg = (reg >> 1) ^ 0xC if reg & 1 else reg >> 1
        return reg
    assert sorted(through_zeros(r) for r in range(16)) == list(range(16))
    assert k == {fid: through_zeros(reg) for fid, reg in regs.items()}


@EXAMPLES
@given(fid=st.sampled_from([PACK, CELL]), data=st.binary(min_size=8, max_size=8))
def test_crc_is_contract3_crc_xor_a_constant_per_id(fid: int, data: bytes) -> None:
    assert cc.e2e_crc(fid, data) == _contract3_crc(data) ^ cc.e2e_crc(fid, bytes(8))


def test_all_zero_payload_is_refused_under_both_ids(c_e2e) -> None:
    """A transmitter stuck at zeros: its crc field is 0, which the contract-3
    CRC (init 0, no Data ID) computed for it too. Now refused."""
    assert _contract3_crc(bytes(8)) == 0
    for fid in (PACK, CELL):
        assert cc.e2e_crc(fid, bytes(8)) != 0
        _refused_everywhere(c_e2e, fid, bytes(8))


@EXAMPLES
@given(message=MEASUREMENTS)
def test_a_payload_under_the_other_measurement_id_is_refused(c_e2e, message: can.Message) -> None:
    """A masquerade or addressing fault: a valid MeasPack payload arriving as
    MeasCell, or the reverse, fails the crc."""
    data = bytes(message.data)
    assert cc.decode(message) is not None  # valid under its own ID
    _refused_everywhere(c_e2e, OTHER[message.arbitration_id], data)


@EXAMPLES
@given(message=MEASUREMENTS)
def test_a_frame_protected_by_contract_3_is_refused(c_e2e, message: can.Message) -> None:
    """A contract-3 sender (crc without the Data ID) is refused on every
    frame: the two crcs differ by K(id), never 0; so a contract-3 log reads
    as one whose every measurement frame fails the check."""
    data = bytearray(message.data)
    data[1] = (data[1] & 0x0F) | (_contract3_crc(bytes(data)) << 4)
    _refused_everywhere(c_e2e, message.arbitration_id, bytes(data))


@EXAMPLES
@given(message=MEASUREMENTS)
def test_roundtrip_carries_the_crc(message: can.Message) -> None:
    data = bytes(message.data)
    assert data[1] >> 4 == cc.e2e_crc(message.arbitration_id, data)
    frame = cc.decode(message)
    assert bytes(cc.encode(frame).data) == data
    with cc.checked_only():  # the checked codec gives the same bytes and the same frame
        assert bytes(cc.encode(frame).data) == data
        again = cc.decode(message)
    assert repr(again) == repr(frame)


@EXAMPLES
@given(message=MEASUREMENTS)
def test_every_single_bit_flip_is_refused(c_e2e, message: can.Message) -> None:
    ffi, lib = c_e2e
    fid = message.arbitration_id
    assert lib.bmsfil_e2e_check(fid, ffi.from_buffer(bytes(message.data))) == 0
    name = "MeasPack" if fid == cc.FrameId.MEAS_PACK else "MeasCell"
    for bit in range(64):
        bad = _flipped(message, bit)
        assert lib.bmsfil_e2e_check(fid, ffi.from_buffer(bytes(bad.data))) == -1, bit
        assert cc._fast()[fid][1](bytes(bad.data)) is None, bit
        with pytest.raises(cc.FrameError) as info:
            cc.decode(bad)
        assert info.value.field == "crc" and info.value.frame_name == name
        assert "expected" in str(info.value) and f"0x{cc.e2e_crc(fid, bytes(bad.data)):X}" in str(info.value)


def test_bad_crc_message_names_frame_and_expected() -> None:
    good = cc.encode_meas_pack(17, 0.1, -1.0, 2)
    data = bytearray(good.data)
    data[1] ^= 0x10  # the crc field itself
    with pytest.raises(cc.FrameError, match=r"frame 0x100 \(MeasPack\), field crc: crc 0x. does not match the "
                                            r"0x. expected"):
        cc.decode(can.Message(arbitration_id=0x100, data=bytes(data), is_extended_id=False))


def test_sequence_wraps_at_4096() -> None:
    assert cc.decode(cc.encode_meas_cell(4096 + 5, 0, 3.7, 25.0)).sequence == 5
    assert cc.decode(cc.encode_est_cell(4095, 0, 0.5, 0.01)).sequence == 4095
    assert cc.decode(cc.encode_est_cell(4096, 0, 0.5, 0.01)).sequence == 0
    status = cc.decode(cc.encode_target_status(1, cc.TargetState.RUNNING, 4097, cc.FaultCode.CRC_ERROR,
                                               crc_errors=18))
    assert (status.last_sequence, status.fault_code, status.crc_errors) == (1, cc.FaultCode.CRC_ERROR, 2)
