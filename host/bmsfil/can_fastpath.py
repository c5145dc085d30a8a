"""Straight-line encoders and decoders for the frames a replay sends every
sample, generated from the DBC.

A lock-step replay encodes and decodes six frames per cell per sample, so
the checked, signal-by-signal codec of :mod:`bmsfil.can_contract` would
bound it. Here each of those frames gets two functions, generated (as
:mod:`dataclasses` generates ``__init__``) from the frame's signals in the
DBC and a short spec of how its dataclass's fields map onto them:

- ``encode(*fields) -> bytes | None``: the 8 data bytes, or None for
  anything out of the ordinary (a value of another type, out of range,
  infinite, inconsistent validity);
- ``decode(data) -> frame | None``: the frame, or None for anything the
  checked decoder refuses.

None sends the caller to the checked codec, which either handles the
unusual case or raises the error that names the field. So the checked codec
stays the one definition of the contract's rules; these only answer first
in the common case, and ``tests/test_can_fastpath.py`` checks that they
give what it gives (same bytes, same frame, None where it raises) over
random fields and random bytes.

Field kinds (:class:`Field`):

``seq``      an int sent modulo its range's 2**k (sequence numbers; an echo's field may be wider);
``int``      an int in the signal's range, sent as value - offset;
``opt``      a float or nan (not valid: valid bit 0, raw 0); ``valid`` names
             the valid bit, which two fields may share (then both are nan or
             neither); ``sat``: a finite value above the range is sent as
             its maximum, ``symmetric``: one beyond +-maximum as +-maximum
             (otherwise one beyond an end, even by less than half a step,
             goes to the checked codec, which rounds it to the end);
``bits``     an int of flag bits, each bit its own one-bit signal;
``enum``     an IntEnum; ``none_iff_invalid``: the enum's 0 is sent exactly
             when none of those valid bits is set;
``count``    a float of whole units (rounded) >= 0, saturating at the
             signal's maximum;
``crc``      the frame's end-to-end check (MeasPack, MeasCell): no argument
             and no dataclass field; the encoder fills it in with ``crc(word)``
             (the frame's other bits as a little-endian 64-bit word; ``crc``
             is the frame's own, its CAN identifier bound in), the
             decoder answers None when it does not match (the checked
             decoder then raises the FrameError that says so).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from cantools.database.can import Message as DbcMessage
from cantools.database.can import Signal


@dataclass(frozen=True)
class Field:
    kind: str  # seq, int, opt, bits, enum, count, crc
    signal: str = ""  # the signal (for bits: unused)
    valid: str = ""  # opt: its valid bit
    sat: bool = False  # opt: saturates above its range
    symmetric: bool = False  # opt: saturates beyond +-maximum
    bits: tuple[tuple[int, str], ...] = ()  # bits: (bit value, one-bit signal)
    enum_type: type[enum.IntEnum] | None = None  # enum
    none_iff_invalid: tuple[str, ...] = ()  # enum: valid bits whose absence its 0 means


def _raw_bounds(sig: Signal, accepts: Callable[[float], bool]) -> tuple[int, int]:
    """The lowest and highest raw code whose physical value `accepts` takes,
    found by asking it, so that the bounds are the checked decoder's own."""
    lo_raw = -(1 << (sig.length - 1)) if sig.is_signed else 0
    hi_raw = (1 << (sig.length - 1)) - 1 if sig.is_signed else (1 << sig.length) - 1

    def phys(r: int) -> float:
        return r * sig.scale + sig.offset

    guess_lo = max(lo_raw, int((sig.minimum - sig.offset) / sig.scale) - 2)
    guess_hi = min(hi_raw, int((sig.maximum - sig.offset) / sig.scale) + 2)
    lo = next(r for r in range(guess_lo, guess_hi + 1) if accepts(phys(r)))
    hi = next(r for r in range(guess_hi, guess_lo - 1, -1) if accepts(phys(r)))
    if not all(accepts(phys(r)) for r in (lo, (lo + hi) // 2, hi)) or (lo > lo_raw and accepts(phys(lo - 1))):
        raise RuntimeError(f"{sig.name}: accepted range is not one interval of raw codes")
    return lo, hi


def _decimal_value(sig: Signal, raw: str, decimals: Callable[[float], int]) -> str:
    """An expression for the double nearest raw * scale + offset read as
    decimals (what the checked decoder gets by rounding to the scale's
    decimals): (a * raw + b) / 10**d in integers, one correctly rounded
    division."""
    d = max(decimals(sig.scale), decimals(sig.offset))
    a = Fraction(Decimal(repr(float(sig.scale)))) * 10**d
    b = Fraction(Decimal(repr(float(sig.offset)))) * 10**d
    if a.denominator != 1 or b.denominator != 1:
        raise RuntimeError(f"{sig.name}: scale {sig.scale!r} or offset {sig.offset!r} has more than {d} decimals")
    num = raw if a == 1 else f"{a.numerator} * {raw}"
    if b:
        num = f"({num} {'+' if b > 0 else '-'} {abs(b.numerator)})"
    return f"{num} / {10**d}" if d else f"float({num})"


class _Source:
    """Lines of one generated function."""

    def __init__(self, header: str) -> None:
        self.lines = [header]

    def __call__(self, line: str, indent: int = 1) -> None:
        self.lines.append("    " * indent + line)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def build(msg: DbcMessage, frame_type: type, fields: tuple[Field, ...], decimals: Callable[[float], int],
          accepts: Callable[[Signal], Callable[[float], bool]],
          crc: Callable[[int], int] | None = None) -> tuple[Callable[..., bytes | None],
                                                             Callable[[bytes], object | None]]:
    """The encoder and decoder of one frame. `decimals(scale)`: the decimal
    places the checked decoder rounds a value to; `accepts(signal)`: its
    range check on a decoded physical value; `crc(word)`: the end-to-end
    check of a frame with a ``crc`` field (its other bits as a 64-bit word;
    this frame's, whose CAN identifier the check covers)."""
    sigs = {s.name: s for s in msg.signals}
    if len(msg.signals) != len({s.name for s in msg.signals}) or msg.length != 8:
        raise RuntimeError(f"{msg.name}: not an 8-byte frame of uniquely named signals")
    for s in msg.signals:
        if s.byte_order != "little_endian":
            raise RuntimeError(f"{msg.name}.{s.name}: the contract is Intel byte order only")
    covered: set[str] = set()
    for f in fields:
        covered.update([f.signal] if f.signal else [])
        covered.update(name for _, name in f.bits)
        covered.update([f.valid] if f.valid else [])
    if covered != set(sigs):
        raise RuntimeError(f"{msg.name}: the spec covers {sorted(covered)}, the DBC has {sorted(sigs)}")
    env: dict[str, object] = {"nan": math.nan, "inf": math.inf, "Frame": frame_type, "CRC": crc}
    crc_fields = [f for f in fields if f.kind == "crc"]
    if len(crc_fields) > 1 or (crc_fields and crc is None):
        raise RuntimeError(f"{msg.name}: at most one crc field, and it needs the crc function")
    crc_sig = sigs[crc_fields[0].signal] if crc_fields else None

    enc = _Source("def encode(" + ", ".join(f"a{i}" for i, f in enumerate(fields) if f.kind != "crc") + "):")
    dec = _Source("def decode(data):")
    dec("w = int.from_bytes(data, 'little')")
    if crc_sig is not None:
        dec(f"if CRC(w) != (w >> {crc_sig.start}) & {(1 << crc_sig.length) - 1:#x}: return None")
    parts: list[str] = []  # encoder: terms OR-ed into the word
    args: list[str] = []  # decoder: the dataclass's arguments
    valid_seen: dict[str, str] = {}  # valid bit -> the encoder's variable that holds it

    def put(sig: Signal, expr: str) -> None:
        parts.append(f"(({expr}) << {sig.start})" if sig.start else f"({expr})")

    def get(sig: Signal, var: str) -> None:
        shift = f"(w >> {sig.start})" if sig.start else "w"
        dec(f"{var} = {shift} & {(1 << sig.length) - 1:#x}")
        if sig.is_signed:
            dec(f"if {var} >> {sig.length - 1}: {var} -= {1 << sig.length}")

    def bounds_check(sig: Signal, var: str) -> None:
        lo, hi = _raw_bounds(sig, accepts(sig))
        full_lo = -(1 << (sig.length - 1)) if sig.is_signed else 0
        full_hi = (1 << (sig.length - 1)) - 1 if sig.is_signed else (1 << sig.length) - 1
        if (lo, hi) != (full_lo, full_hi):
            dec(f"if not {lo} <= {var} <= {hi}: return None")

    for i, f in enumerate(fields):
        a, r = f"a{i}", f"r{i}"
        if f.kind == "seq":
            sig = sigs[f.signal]
            modulus = int(sig.maximum) + 1  # the sequence's range may be narrower than its field (an echo)
            if modulus & (modulus - 1) or sig.minimum != 0 or modulus > 1 << sig.length:
                raise RuntimeError(f"{msg.name}.{sig.name}: a seq field's range must be 0 .. 2**k - 1")
            enc(f"if type({a}) is not int or {a} < 0: return None")
            put(sig, f"{a} & {modulus - 1:#x}")
            get(sig, r)
            bounds_check(sig, r)
            args.append(r)
        elif f.kind == "int":
            sig = sigs[f.signal]
            off = int(sig.offset)
            if sig.scale != 1 or off != sig.offset:
                raise RuntimeError(f"{msg.name}.{sig.name}: an int field needs scale 1 and an integer offset")
            enc(f"if type({a}) is not int or not {int(sig.minimum)} <= {a} <= {int(sig.maximum)}: return None")
            put(sig, f"{a} - {off}" if off else a)
            get(sig, r)
            bounds_check(sig, r)
            args.append(f"{r} + {off}" if off else r)
        elif f.kind == "opt":
            sig, vsig = sigs[f.signal], sigs[f.valid]
            lo, hi = float(sig.minimum), float(sig.maximum)
            v = f"v{i}"
            enc(f"if type({a}) is not float: return None")
            enc(f"if {a} != {a}:")
            enc(f"{v} = 0", 2)
            enc(f"{r} = 0", 2)
            # Within the range only: a value beyond an end (by up to half a
            # step, or to be saturated) goes to the checked codec.
            enc(f"elif {-hi if f.symmetric else lo!r} <= {a} <= {hi!r}:")
            enc(f"{v} = 1", 2)
            enc(f"{r} = round(({a} - {sig.offset!r}) / {sig.scale!r})", 2)
            if sig.is_signed:
                enc(f"if {r} < 0: {r} += {1 << sig.length}", 2)
            wrap = (1 << sig.length) if sig.is_signed else 0

            def code(x: float) -> int:  # the checked codec's raw code of an end it saturates at
                c = int(round((float(x) - sig.offset) / sig.scale))
                return c + wrap if c < 0 else c

            if f.sat or f.symmetric:
                enc(f"elif {hi!r} < {a} < inf:")
                enc(f"{v} = 1", 2)
                enc(f"{r} = {code(hi)}", 2)
            if f.symmetric:
                enc(f"elif -inf < {a} < {-hi!r}:")
                enc(f"{v} = 1", 2)
                enc(f"{r} = {code(-hi)}", 2)
            enc("else:")
            enc("return None", 2)
            if f.valid in valid_seen:
                enc(f"if {v} != {valid_seen[f.valid]}: return None")
            else:
                valid_seen[f.valid] = v
                put(vsig, v)
                get(vsig, f"{f.valid}_bit")
            put(sig, r)
            get(sig, r)
            dec(f"if {f.valid}_bit:")
            lo_r, hi_r = _raw_bounds(sig, accepts(sig))
            dec(f"if not {lo_r} <= {r} <= {hi_r}: return None", 2)
            dec(f"x{i} = {_decimal_value(sig, r, decimals)}", 2)
            dec(f"elif {r}: return None")
            dec("else:")
            dec(f"x{i} = nan", 2)
            args.append(f"x{i}")
        elif f.kind == "bits":
            mask = sum(bit for bit, _ in f.bits)
            enc(f"if type({a}) is not int or {a} < 0 or {a} & {~mask}: return None")
            for bit, name in f.bits:
                put(sigs[name], f"(({a} >> {bit.bit_length() - 1}) & 1)")
            terms = []
            for bit, name in f.bits:
                s = sigs[name]
                terms.append(f"(((w >> {s.start}) & 1) << {bit.bit_length() - 1})")
            args.append("(" + " | ".join(terms) + ")")
        elif f.kind == "enum":
            sig = sigs[f.signal]
            assert f.enum_type is not None
            members = {int(m): m for m in f.enum_type}
            env[f"E{i}"] = f.enum_type
            env[f"M{i}"] = members
            enc(f"if (type({a}) is not int and type({a}) is not E{i}) or {a} not in M{i}: return None")
            if f.none_iff_invalid:
                anyvalid = " or ".join(valid_seen[name] for name in f.none_iff_invalid)
                enc(f"if ({a} == 0) == bool({anyvalid}): return None")
            put(sig, f"int({a})")
            get(sig, r)
            bounds_check(sig, r)
            dec(f"m{i} = M{i}.get({r})")
            dec(f"if m{i} is None: return None")
            if f.none_iff_invalid:
                anyvalid = " or ".join(f"{name}_bit" for name in f.none_iff_invalid)
                dec(f"if ({r} == 0) == bool({anyvalid}): return None")
            args.append(f"m{i}")
        elif f.kind == "crc":
            continue  # filled in last, checked first
        elif f.kind == "count":
            sig = sigs[f.signal]
            if sig.scale != 1 or sig.offset != 0:
                raise RuntimeError(f"{msg.name}.{sig.name}: a count needs scale 1 and offset 0")
            enc(f"if type({a}) is not float or not 0.0 <= {a}: return None")
            put(sig, f"(round({a}) if {a} <= {float(sig.maximum)!r} else {int(sig.maximum)})")
            get(sig, r)
            bounds_check(sig, r)
            args.append(f"float({r})")
        else:
            raise RuntimeError(f"{msg.name}: unknown field kind {f.kind!r}")
    if crc_sig is not None:
        enc("w = " + " | ".join(parts))
        enc(f"return (w | (CRC(w) << {crc_sig.start})).to_bytes(8, 'little')")
    else:
        enc("return (" + " | ".join(parts) + ").to_bytes(8, 'little')")
    dec("return Frame(" + ", ".join(args) + ")")
    namespace: dict[str, object] = dict(env)
    exec(compile(enc.text() + dec.text(), f"<bmsfil fast codec {msg.name}>", "exec"), namespace)  # noqa: S102
    return namespace["encode"], namespace["decode"]  # type: ignore[return-value]
