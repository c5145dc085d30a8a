#!/usr/bin/env python3
"""Flash and RAM per component of a linked firmware image, and the
estimator's checks. Run by `make size` (see the Makefile); standard library
only, so that it runs before any virtual environment exists.

Sizes come from the linker map: every input section kept in the image,
attributed to the object file it came from, so code removed by
--gc-sections is not counted. Flash = .text + .rodata + .data (its initial
values), RAM = .data + .bss.

Checks (exit 1 on failure):
  * the estimator objects (and the monitor's) reference no symbol outside
    themselves except memcpy/memset/memmove: no double-precision helper
    (__aeabi_d*, __aeabi_f2d, ...), no libm, no other runtime;
  * the estimator's flash is within --estimator-flash-budget bytes;
  * the plausibility monitor's (--monitor, csrc/src/plausibility.c) within
    --monitor-flash-budget bytes: a budget of its own beside the SOC
    estimator's 8 KB.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ALLOWED_UNDEFINED = {"memcpy", "memset", "memmove"}
SECTION = re.compile(r"^ (\.[\w.]+|COMMON)\s*(?:\n\s+)?0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+\.(?:o|a)\S*)$", re.M)


def kept_sections(map_text: str) -> list[tuple[str, int, int, str]]:
    """(section, address, size, object) of every input section in the image."""
    start = map_text.index("Linker script and memory map")
    body = map_text[start:]
    end = body.find("\n .debug_")  # debug sections are not in the target's memory
    if end > 0:
        body = body[:end]
    out = []
    for m in SECTION.finditer(body):
        name, addr, size, obj = m.group(1), int(m.group(2), 16), int(m.group(3), 16), m.group(4)
        if size and not name.startswith((".debug", ".comment", ".ARM.attributes")):
            out.append((name, addr, size, obj))
    return out


def kind(section: str) -> str:
    if section.startswith((".bss", "COMMON")):
        return "bss"
    if section.startswith(".data"):
        return "data"
    return "text"


def undefined_outside(nm: str, objects: list[str]) -> list[str]:
    text = subprocess.run([nm, *objects], check=True, capture_output=True, text=True).stdout
    defined, referenced = set(), set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("U", "w", "v"):
            referenced.add(parts[1])
        elif len(parts) == 3 and parts[1] != "U":
            defined.add(parts[2])
    return sorted(referenced - defined - ALLOWED_UNDEFINED)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nm", default="arm-none-eabi-nm")
    ap.add_argument("--size", default="arm-none-eabi-size")
    ap.add_argument("--elf", required=True)
    ap.add_argument("--map", required=True)
    ap.add_argument("--component", action="append", default=[], help="NAME=obj1 obj2 ...")
    ap.add_argument("--estimator", required=True, help="the estimator's objects, space-separated")
    ap.add_argument("--estimator-flash-budget", type=int, required=True)
    ap.add_argument("--monitor", default="", help="the plausibility monitor's objects, space-separated")
    ap.add_argument("--monitor-flash-budget", type=int, default=0)
    ap.add_argument("--health", default="", help="the capacity, R0, power and core-temperature estimators' objects, space-separated")
    ap.add_argument("--health-flash-budget", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    sections = kept_sections(Path(args.map).read_text())
    components: dict[str, set[str]] = {}
    for spec in args.component:
        name, _, objs = spec.partition("=")
        components[name] = {str(Path(o).resolve()) for o in objs.split()}
    table: dict[str, dict[str, int]] = {}
    for name in [*components, "libraries"]:
        table[name] = {"text": 0, "data": 0, "bss": 0}
    for sec, _addr, size, obj in sections:
        path = obj.split("(")[0]
        owner = next((n for n, objs in components.items() if str(Path(path).resolve()) in objs), "libraries")
        table[owner][kind(sec)] += size
    rows = {n: {"flash": v["text"] + v["data"], "ram": v["data"] + v["bss"], **v} for n, v in table.items()}

    estimator = args.estimator.split()
    monitor = args.monitor.split()
    health = args.health.split()
    bad = undefined_outside(args.nm, estimator + monitor + health)

    def flash_of(objs: list[str]) -> int:
        wanted = {str(Path(o).resolve()) for o in objs}
        return sum(size for sec, _a, size, obj in sections if kind(sec) != "bss" and str(Path(obj).resolve()) in wanted)

    mon_flash = flash_of(monitor)
    health_flash = flash_of(health)
    est_flash = next((rows[n]["flash"] for n in components if components[n] == {str(Path(o).resolve()) for o in estimator}), None)
    if est_flash is None:
        est_flash = flash_of(estimator)
    elf_syms = subprocess.run([args.nm, args.elf], check=True, capture_output=True, text=True).stdout.split()
    double_in_image = sorted({s for s in elf_syms if s.startswith(("__aeabi_d", "__aeabi_f2d", "__aeabi_l2d", "__aeabi_ui2d", "__aeabi_i2d"))})

    width = max(len(n) for n in rows)
    print(f"{'component':<{width}}  {'flash':>7}  {'RAM':>7}  (text {'':>1}data  bss)")
    for n, r in rows.items():
        print(f"{n:<{width}}  {r['flash']:>7}  {r['ram']:>7}  ({r['text']} {r['data']} {r['bss']})")
    total_flash = sum(r["flash"] for r in rows.values())
    total_ram = sum(r["ram"] for r in rows.values())
    print(f"{'total':<{width}}  {total_flash:>7}  {total_ram:>7}")
    problems = []
    if bad:
        problems.append("the estimator references symbols outside itself (double-precision helpers, libm or "
                        "other runtime): " + ", ".join(bad))
    if est_flash > args.estimator_flash_budget:
        problems.append(f"the estimator takes {est_flash} bytes of flash, over its budget of "
                        f"{args.estimator_flash_budget}")
    if monitor and mon_flash > args.monitor_flash_budget:
        problems.append(f"the plausibility monitor takes {mon_flash} bytes of flash, over its budget of "
                        f"{args.monitor_flash_budget}")
    if health and health_flash > args.health_flash_budget:
        problems.append(f"the capacity, R0, power and core-temperature estimators take {health_flash} bytes of flash, over their budget of "
                        f"{args.health_flash_budget}")
    print(f"estimator: {est_flash} bytes of flash (budget {args.estimator_flash_budget}); "
          f"external references: {', '.join(bad or ['none'])} "
          f"(allowed: {', '.join(sorted(ALLOWED_UNDEFINED))})")
    if monitor:
        print(f"plausibility monitor: {mon_flash} bytes of flash (budget {args.monitor_flash_budget})")
    if health:
        print(f"capacity, R0, power and core-temperature estimators: {health_flash} bytes of flash (budget {args.health_flash_budget})")
    if double_in_image:
        print(f"note: double-precision helpers elsewhere in the image: {', '.join(double_in_image)}")
    if args.json:
        doc = {
            "components": rows,
            "total": {"flash": total_flash, "ram": total_ram},
            "estimator_flash": est_flash,
            "estimator_flash_budget": args.estimator_flash_budget,
            "monitor_flash": mon_flash if monitor else None,
            "monitor_flash_budget": args.monitor_flash_budget if monitor else None,
            "health_flash": health_flash if health else None,
            "health_flash_budget": args.health_flash_budget if health else None,
            "estimator_external_symbols": bad,
            "double_helpers_in_image": double_in_image,
            "problems": problems,
        }
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    for p in problems:
        print(f"size check FAILED: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
