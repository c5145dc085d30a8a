#!/usr/bin/env python3
"""Write docs/can_contract.md, the CAN contract as tables, from csrc/can/bmsfil.dbc.

    python scripts/can_contract_doc.py            # (re)write docs/can_contract.md
    python scripts/can_contract_doc.py --check    # exit 1 if the checked-in page is stale

Everything on the page comes from the DBC except the bus-load arithmetic,
which is the classic-CAN frame format (below) at the bitrate given here.
tests/test_can_contract.py fails when the page and this script disagree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))  # runs from a checkout without an install too

from bmsfil.can_contract import database, dbc_path, frame_bits  # noqa: E402

DOC = ROOT / "docs" / "can_contract.md"
BITRATE_BIT_S = 500_000
#: Sample intervals the bus-load table is worked out for.
SAMPLE_INTERVALS_S = (0.1, 0.5, 1.0, 10.0)
#: Pack sizes the bus-load table is worked out for.
PACK_SIZES = (1, 12, 24, 96, 192)
#: Frames sent on demand only, never as part of a sample (left out of the bus load).
ON_DEMAND = ("HostCommand",)


def _num(x: float | int) -> str:
    if isinstance(x, int) or float(x).is_integer():
        return str(int(x))
    return format(float(x), ".10g")


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def _comment(obj) -> str:
    c = obj.comment
    return c if isinstance(c, str) else ""


def render() -> str:
    db = database()
    rel = dbc_path().relative_to(ROOT) if dbc_path().is_relative_to(ROOT) else Path("csrc/can/bmsfil.dbc")
    per_cell = [m for m in db.messages if any(s.name == "cell_index" for s in m.signals)]
    on_demand = [db.get_message_by_name(name) for name in ON_DEMAND]
    per_sample = [m for m in db.messages if m not in per_cell and m not in on_demand]
    lengths = {m.length for m in db.messages}
    assert len(lengths) == 1, "bus-load arithmetic below assumes one frame length"
    (length,) = lengths
    plain_bits, worst_bits = frame_bits(length)
    cell_bits = worst_bits * len(per_cell)
    sample_bits = worst_bits * len(per_sample)

    out: list[str] = []
    w = out.append
    w("# The CAN contract")
    w("")
    w(f"<!-- Generated from {rel} by scripts/can_contract_doc.py; do not edit, run the script. -->")
    w("")
    w(f"The single source is [`{rel}`](../{rel}) (DBC version `{db.version}`). The host reads it")
    w("with cantools (`bmsfil.can_contract`); C targets use the codec generated from it,")
    w("`csrc/can/bmsfil_can.{h,c}` (`scripts/generate_can_c.sh`). Classic CAN: 11-bit IDs,")
    w(f"{length} data bytes, signals little-endian (Intel); a start bit is the bit number of the")
    w("signal's least significant bit, bit 0 being the least significant bit of byte 0.")
    w("Physical value = raw x scale + offset. A value that is not valid is sent as raw 0 with")
    w("its valid bit 0, never as a made-up number.")
    w("")
    w("## End-to-end protection")
    w("")
    w("The measurement frames (MeasPack, MeasCell) are protected end to end, in the style of")
    w("AUTOSAR E2E: a counter (`sequence`, 12 bits, modulo 4096) and a CRC over a Data ID and")
    w("the payload (`crc`, 4 bits at bits 12-15). The CRC is **CRC-4/G-704** (ITU-T G.704;")
    w("polynomial x^4 + x + 1 = 0x3, init 0, reflected in and out, xorout 0; check value 0x7")
    w("over the ASCII `123456789`), computed over the frame's 11-bit CAN identifier as 2 bytes,")
    w("little-endian (the Data ID: `00 01` for MeasPack, `01 01` for MeasCell), then the 8 data")
    w("bytes in order, each byte least significant bit first (the contract's Intel bit order:")
    w("frame bit 0 first, bit 63 last), with the `crc` field's 4 bits taken as 0. It covers the")
    w("other 60 bits, reserved bits included, and detects every single-bit error and every")
    w("burst of up to 4 adjacent bits but one (bits 11-14, straddling the field). MeasCell has 2")
    w("spare bits and could carry a CRC-6; it uses the same CRC-4 so that every receiver has one")
    w("check for both frames.")
    w("")
    w("The Data ID is new in contract 4 (contract 3 ran the CRC over the 8 bytes alone). The CRC")
    w("is linear: the crc of a frame is the crc of its payload alone XOR a constant of its ID,")
    w("nonzero exactly when the CRC register after the 2 ID bytes is. That register is 0x7 for")
    w("MeasPack and 0xB for MeasCell: both nonzero, so an all-zero payload (a sender stuck at")
    w("zeros, crc 0, which contract 3 accepted) is refused under either ID; and distinct, so a")
    w("valid payload of one frame arriving under the other's ID is always refused. Every frame a")
    w("contract-3 sender protected fails this check.")
    w("")
    w("The sender computes the CRC (`bmsfil.can_contract.e2e_crc`; in C `bmsfil_e2e_protect()`")
    w("of `csrc/can/bmsfil_e2e.{h,c}`, hand-written beside the generated codec; in MicroPython")
    w("`bmsfil_can.e2e_crc`). A receiver refuses a frame whose CRC does not match as it would a")
    w("lost frame: nothing of it is used. A target counts it in `TargetStatus.crc_errors`")
    w("(modulo 16, since boot) and reports `fault_code` `crc_error`; the host's decoder raises")
    w("`FrameError` (field `crc`) naming the frame, the CRC carried and the one expected.")
    w("")
    w("## IDs")
    w("")
    w("Lower ID, higher priority: host to target (measurements, then commands), then estimates, then status.")
    w("")
    w("| ID | frame | from | to | sent |")
    w("| --- | --- | --- | --- | --- |")
    for m in sorted(db.messages, key=lambda m: m.frame_id):
        receivers = sorted({r for s in m.signals for r in s.receivers})
        sent = "per cell, per sample" if m in per_cell else "on demand" if m in on_demand else "per sample"
        w(f"| 0x{m.frame_id:03X} | [{m.name}](#0x{m.frame_id:03x}-{m.name.lower()}) | "
          f"{', '.join(m.senders)} | {', '.join(receivers)} | {sent} |")
    w("")
    w("## Bus load")
    w("")
    w(f"A classic data frame with an 11-bit ID and {length} data bytes is {plain_bits} bits on the")
    w(f"bus counting the 3-bit intermission, and at most {worst_bits} bits with worst-case bit")
    w(f"stuffing (one stuff bit per four bits of the {34 + 8 * length} bits from start of frame to")
    w(f"the end of the CRC): {worst_bits / BITRATE_BIT_S * 1e6:g} us at {BITRATE_BIT_S // 1000} kbit/s.")
    w("")
    w(f"- per cell per sample: {len(per_cell)} frames "
      f"({', '.join(m.name for m in per_cell)}) = {cell_bits} bits;")
    w(f"- per sample: {len(per_sample)} frames ({', '.join(m.name for m in per_sample)}) "
      f"= {sample_bits} bits ({', '.join(m.name for m in on_demand)} on demand only, left out);")
    w(f"- so a sample of N cells takes at most {cell_bits} N + {sample_bits} bits "
      f"({cell_bits / BITRATE_BIT_S * 1e3:g} ms per cell at {BITRATE_BIT_S // 1000} kbit/s).")
    w("")
    cell_limit = int(per_cell[0].get_signal_by_name("cell_index").maximum) + 1
    w(f"Worst-case bus load at {BITRATE_BIT_S // 1000} kbit/s, and the most cells a sample "
      "interval allows at 100 % and at 50 % load (TargetStatus heartbeats between samples "
      f"are left out; the contract itself stops at {cell_limit} cells, the range of "
      "`cell_index`). A real-time replay must stay below 100 %; a lock-step replay, which "
      "waits for each sample's TargetStatus, is only slowed down by a full bus.")
    w("")
    w("| sample interval | " + " | ".join(f"{n} cell{'s' if n > 1 else ''}" for n in PACK_SIZES)
      + " | max cells (100 %) | max cells (50 %) |")
    w("| --- | " + " | ".join("---" for _ in PACK_SIZES) + " | --- | --- |")
    for dt in SAMPLE_INTERVALS_S:
        budget = dt * BITRATE_BIT_S
        loads = [100.0 * (cell_bits * n + sample_bits) / budget for n in PACK_SIZES]
        full = min(cell_limit, max(0, int((budget - sample_bits) // cell_bits)))
        half = min(cell_limit, max(0, int((budget / 2 - sample_bits) // cell_bits)))
        w(f"| {dt:g} s | " + " | ".join(f"{x:.1f} %" for x in loads) + f" | {full} | {half} |")
    w("")
    w("## Frames")
    for m in sorted(db.messages, key=lambda m: m.frame_id):
        receivers = sorted({r for s in m.signals for r in s.receivers})
        used = sum(s.length for s in m.signals)
        w("")
        w(f"### 0x{m.frame_id:03X} {m.name}")
        w("")
        w(f"{', '.join(m.senders)} to {', '.join(receivers)}, DLC {m.length}, "
          f"{used} of {8 * m.length} bits used. {_comment(m)}")
        w("")
        w("| signal | start bit | length | scale | offset | min | max | unit | comment |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for s in sorted(m.signals, key=lambda s: s.start):
            length_text = f"{s.length} signed" if s.is_signed else str(s.length)
            w(f"| `{s.name}` | {s.start} | {length_text} | {_num(s.scale)} | {_num(s.offset)} | "
              f"{_num(s.minimum)} | {_num(s.maximum)} | {_cell(s.unit)} | {_cell(_comment(s))} |")
        for s in m.signals:
            if s.choices:
                values = ", ".join(f"{int(k)} `{v}`" for k, v in sorted(s.choices.items(), key=lambda kv: int(kv[0])))
                w("")
                w(f"`{s.name}` values: {values}.")
    w("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/can_contract.md is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not DOC.is_file() or DOC.read_text(encoding="utf-8") != text:
            print(f"{DOC.relative_to(ROOT)} is stale: run python scripts/can_contract_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
