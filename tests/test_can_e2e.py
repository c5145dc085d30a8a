"""End-to-end protection of the measurement frames (MeasPack, MeasCell):
a 12-bit sequence and a CRC-4/G-704 over the frame's other 60 bits.

- the CRC is the catalogue's CRC-4/G-704 (check value 0x7), in Python
  (bmsfil.can_contract) and in C (csrc/can/bmsfil_e2e.c), and both agree on
  any 8 bytes;
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
uint8_t bmsfil_e2e_frame_crc(const uint8_t data[8]);
void bmsfil_e2e_protect(uint8_t data[8]);
int bmsfil_e2e_check(const uint8_t data[8]);
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


def _flipped(message: can.Message, bit: int) -> can.Message:
    data = bytearray(message.data)
    data[bit // 8] ^= 1 << (bit % 8)
    return can.Message(arbitration_id=message.arbitration_id, data=bytes(data), is_extended_id=False)


def test_crc_is_crc4_g704(c_e2e) -> None:
    ffi, lib = c_e2e
    assert cc.crc4_g704(b"123456789") == 0x7  # the catalogue's check value
    assert lib.bmsfil_e2e_crc4(ffi.from_buffer(b"123456789"), 9) == 0x7
    assert cc.CONTRACT_VERSION == cc.database().version == "bmsfil-can-3"
    assert cc.SEQUENCE_MODULUS == 4096


@EXAMPLES
@given(data=st.binary(min_size=8, max_size=8))
def test_c_and_python_agree(c_e2e, data: bytes) -> None:
    ffi, lib = c_e2e
    masked = bytes([data[0], data[1] & 0x0F]) + data[2:]
    assert cc.e2e_crc(data) == lib.bmsfil_e2e_frame_crc(ffi.from_buffer(data)) == cc.crc4_g704(masked)
    buf = ffi.new("uint8_t[8]", data)
    lib.bmsfil_e2e_protect(buf)
    protected = bytes(buf)
    assert protected[1] >> 4 == cc.e2e_crc(data) and protected[1] & 0x0F == data[1] & 0x0F
    assert lib.bmsfil_e2e_check(ffi.from_buffer(protected)) == 0


@EXAMPLES
@given(message=MEASUREMENTS)
def test_roundtrip_carries_the_crc(message: can.Message) -> None:
    data = bytes(message.data)
    assert data[1] >> 4 == cc.e2e_crc(data)
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
    assert lib.bmsfil_e2e_check(ffi.from_buffer(bytes(message.data))) == 0
    name = "MeasPack" if message.arbitration_id == cc.FrameId.MEAS_PACK else "MeasCell"
    for bit in range(64):
        bad = _flipped(message, bit)
        assert lib.bmsfil_e2e_check(ffi.from_buffer(bytes(bad.data))) == -1, bit
        assert cc._fast()[message.arbitration_id][1](bytes(bad.data)) is None, bit
        with pytest.raises(cc.FrameError) as info:
            cc.decode(bad)
        assert info.value.field == "crc" and info.value.frame_name == name
        assert "expected" in str(info.value) and f"0x{cc.e2e_crc(bytes(bad.data)):X}" in str(info.value)


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
