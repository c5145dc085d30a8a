"""The straight-line codec (bmsfil.can_fastpath) gives what the checked
codec of bmsfil.can_contract gives: the same bytes or the same error for
any fields, the same frame or the same error for any 8 bytes; and a replay
of a real recording takes it for (nearly) every frame.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import can
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bmsfil import can_contract as cc
from bmsfil import can_fastpath

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shared_data import lg_drive_cycles, needs_data  # noqa: E402

ENCODERS: dict[int, Callable[..., can.Message]] = {
    cc.FrameId.MEAS_PACK: cc.encode_meas_pack,
    cc.FrameId.MEAS_CELL: cc.encode_meas_cell,
    cc.FrameId.EST_CELL: cc.encode_est_cell,
    cc.FrameId.EST_CELL_HEALTH: cc.encode_est_cell_health,
    cc.FrameId.EST_CELL_POWER: cc.encode_est_cell_power,
    cc.FrameId.EST_CELL_FLAGS: cc.encode_est_cell_flags,
}
FAST_IDS = sorted(cc._FAST_SPECS)


def test_every_fast_frame_has_its_encoder_here() -> None:
    assert set(ENCODERS) == set(FAST_IDS)


def outcome(call: Callable[[], object]) -> str:
    """What a call gives, as text: the frame or bytes (repr: 1 and 1.0, nan
    and -0.0 all differ), or the exception's type and message."""
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome compared
        return f"raises {type(exc).__name__}: {exc}"
    if isinstance(result, can.Message):
        return f"message 0x{result.arbitration_id:03X} {bytes(result.data).hex()}"
    return repr(result)


def _signal(fid: int, name: str):
    return cc.database().get_message_by_frame_id(fid).get_signal_by_name(name)


def _value(fid: int, f: can_fastpath.Field) -> st.SearchStrategy:
    """Values of every kind a caller might pass for a field: usual ones,
    ends and just beyond, nan, infinities, other types."""
    odd = st.sampled_from([True, False, None, "1", 1.5, np.float64(0.25), np.int64(3), -1, 2**40])
    if f.kind in ("seq", "int"):
        sig = _signal(fid, f.signal)
        return st.one_of(st.integers(int(sig.minimum) - 3, int(sig.maximum) + 3), st.integers(0, 10**6), odd)
    if f.kind == "bits":
        return st.one_of(st.integers(-2, 0x1FF), st.sampled_from([bit for bit, _ in f.bits]), odd)
    if f.kind == "enum":
        assert f.enum_type is not None
        return st.one_of(st.sampled_from(list(f.enum_type)), st.integers(-1, 9), odd)
    sig = _signal(fid, f.signal)
    lo, hi, step = float(sig.minimum), float(sig.maximum), float(sig.scale)
    ends = [lo, hi, -hi, lo - 0.49 * step, hi + 0.49 * step, lo - 0.51 * step, hi + 0.51 * step, lo - 0.5 * step,
            hi + 0.5 * step, 0.0, -0.0, math.nan, math.inf, -math.inf, hi * 2, 1e-300]
    return st.one_of(st.floats(lo - 2 * step, hi + 2 * step), st.sampled_from(ends),
                     st.integers(int(lo) - 1, int(hi) + 1).map(float), odd)


@pytest.mark.parametrize("fid", FAST_IDS, ids=lambda fid: cc.FrameId(fid).name)
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fast_encode_is_the_checked_encode(fid: int, data) -> None:
    fields = cc._FAST_SPECS[fid][1]
    args = [data.draw(_value(fid, f), label=f.signal or f.kind) for f in fields]
    fast = outcome(lambda: ENCODERS[fid](*args))
    with cc.checked_only():
        checked = outcome(lambda: ENCODERS[fid](*args))
    assert fast == checked


def _frame_bytes(fid: int) -> st.SearchStrategy[bytes]:
    """Random bytes, and frames the checked encoder made with a few bits flipped."""
    fields = cc._FAST_SPECS[fid][1]

    def flipped(args_and_bits: tuple[list, list[int]]) -> bytes | None:
        args, bits = args_and_bits
        try:
            word = int.from_bytes(bytes(ENCODERS[fid](*args).data), "little")
        except (ValueError, TypeError):
            return None
        for b in bits:
            word ^= 1 << b
        return word.to_bytes(8, "little")

    encoded = st.tuples(st.tuples(*(_value(fid, f) for f in fields)).map(list),
                        st.lists(st.integers(0, 63), max_size=2)).map(flipped).filter(lambda b: b is not None)
    return st.one_of(st.binary(min_size=8, max_size=8), encoded)


@pytest.mark.parametrize("fid", FAST_IDS, ids=lambda fid: cc.FrameId(fid).name)
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_fast_decode_is_the_checked_decode(fid: int, data) -> None:
    payload = data.draw(_frame_bytes(fid))
    msg = can.Message(arbitration_id=fid, is_extended_id=False, dlc=8, data=payload)
    fast = outcome(lambda: cc.decode(msg))
    with cc.checked_only():
        checked = outcome(lambda: cc.decode(msg))
    assert fast == checked


@pytest.mark.parametrize("fid", FAST_IDS, ids=lambda fid: cc.FrameId(fid).name)
def test_fast_path_answers_usual_frames(fid: int) -> None:
    """The frame of a usual sample is the fast path's, both ways (not the
    checked codec's: that would be correct, and three to four times slower)."""
    usual = {
        cc.FrameId.MEAS_PACK: (7, 0.1, -2.5, 1),
        cc.FrameId.MEAS_CELL: (7, 0, 3.61234, 24.37),
        cc.FrameId.EST_CELL: (7, 0, 0.734512, 0.0112, cc.FLAG_GATED),
        cc.FrameId.EST_CELL_HEALTH: (7, 0, 2.95, math.nan, 26.5),
        cc.FrameId.EST_CELL_POWER: (7, 0, 21.5, 55.0, cc.PowerHorizon.PEAK_10S),
        cc.FrameId.EST_CELL_FLAGS: (7, 0, cc.PLAUS_VOLTAGE_STUCK, -0.012, 0.05, 3.0),
    }[fid]
    encode, decode = cc._fast()[fid]
    data = encode(*usual)
    assert data is not None
    frame = decode(data)
    assert frame is not None
    assert outcome(lambda: frame) == outcome(lambda: cc.decode(cc._data_message(fid, data)))


@pytest.mark.parametrize("fid", FAST_IDS, ids=lambda fid: cc.FrameId(fid).name)
def test_decimal_values_are_the_checked_decoders(fid: int) -> None:
    """Each value signal's raw code read as decimals: the double nearest
    raw * scale + offset, as the checked decoder rounds it, for every code
    of a signal up to 16 bits and a spread of codes (ends included) above."""
    for f in cc._FAST_SPECS[fid][1]:
        if f.kind != "opt":
            continue
        sig = _signal(fid, f.signal)
        expr = can_fastpath._decimal_value(sig, "r", cc._decimals)
        value = eval(f"lambda r: {expr}")  # noqa: S307 - the generated expression under test
        digits = max(cc._decimals(sig.scale), cc._decimals(sig.offset))
        lo, hi = (-(1 << (sig.length - 1)), (1 << (sig.length - 1)) - 1) if sig.is_signed else (0, (1 << sig.length) - 1)
        raws = range(lo, hi + 1) if sig.length <= 16 else [*range(lo, hi + 1, 997), *range(hi - 2000, hi + 1)]
        for r in raws:
            want = round(r * sig.scale + sig.offset, digits)
            got = value(r)
            assert got == want and type(got) is float, (sig.name, r, got, want)
            # and the double nearest the exact decimal (float() of a Fraction rounds correctly)
            assert got == float(r * Fraction(str(sig.scale)) + Fraction(str(sig.offset))), (sig.name, r)


@needs_data
def test_replay_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over a slice of a real drive cycle through the host target, every
    frame is the fast path's but the monitor's EstCellFlags before its first
    window closes ("no window yet": an infinite sigma, which the checked
    encoder sends as not valid)."""
    from bmsfil.importers import import_file
    from bmsfil.params import bundled_params
    from bmsfil_hil.replay import replay_lockstep
    from bmsfil_hil.targets import make_target

    rec = import_file(next(p for p in lg_drive_cycles() if "551_US06" in p.name)).slice(0, 3000)
    counts: dict[tuple[str, int], int] = {}
    fast = dict(cc._fast())

    def counting(fid: int, encode, decode):
        def enc(*args):
            out = encode(*args)
            counts["enc", fid] = counts.get(("enc", fid), 0) + (out is None)
            return out

        def dec(data):
            out = decode(data)
            counts["dec", fid] = counts.get(("dec", fid), 0) + (out is None)
            return out

        return enc, dec

    wrapped = {fid: counting(fid, *codec) for fid, codec in fast.items()}
    monkeypatch.setattr(cc, "_fast", lambda: wrapped)
    target = make_target("host", bundled_params())
    try:
        result = replay_lockstep(target.start(), [rec])
    finally:
        target.stop()
    assert result.delivery.fault is None and result.samples_done == len(rec)
    slow = {f"{way} {cc.FrameId(fid).name}": n for (way, fid), n in counts.items() if n}
    flags_slow = slow.pop(f"enc {cc.FrameId.EST_CELL_FLAGS.name}", 0)
    assert slow == {}
    no_window_yet = int(np.isnan(result.plausibility.unseen_current_A[:, 0]).sum())
    assert 0 < no_window_yet < len(rec)
    assert flags_slow == no_window_yet


@needs_data
def test_fast_path_replays_faster_than_the_checked_codec() -> None:
    """The reason for the fast path, measured in the same run: a host
    lock-step replay of a real drive cycle slice through it is at least
    1.7 times as fast as through the checked codec alone (2.6-2.9x on an
    idle machine; docs/replay_agreement.md has the samples per second). Each arm
    best of three, interleaved, against the machine's noise."""
    import time

    from bmsfil.importers import import_file
    from bmsfil.params import bundled_params
    from bmsfil_hil.replay import replay_lockstep
    from bmsfil_hil.targets import make_target

    rec = import_file(next(p for p in lg_drive_cycles() if "551_US06" in p.name)).slice(2000, 4000)
    params = bundled_params()

    def seconds() -> float:
        target = make_target("host", params)
        try:
            bus = target.start()
            t0 = time.perf_counter()
            result = replay_lockstep(bus, [rec])
            elapsed = time.perf_counter() - t0
        finally:
            target.stop()
        assert result.delivery.fault is None
        return elapsed

    fast, checked = [], []
    for _ in range(3):
        fast.append(seconds())
        with cc.checked_only():
            checked.append(seconds())
    assert min(checked) / min(fast) >= 1.7, (fast, checked)
