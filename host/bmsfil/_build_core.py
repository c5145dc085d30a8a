"""cffi builder for the C core (`bmsfil._core`), run by ``pip install``.

The C declarations come from the public headers themselves, so the binding
cannot drift from the core: preprocessor lines are dropped and integer
``#define`` constants are substituted, which is all cffi's parser needs.
The core is compiled with the flags the firmware uses for its arithmetic
(C99, single precision, no FMA contraction) so that the desktop predicts the
board.
"""

from __future__ import annotations

import re
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
# setuptools insists on paths relative to setup.py.
CSRC = Path("csrc") if Path("csrc/include").is_dir() else ROOT / "csrc"
HEADERS = [
    "status.h", "bf_math.h", "cell_model.h", "soc_ekf.h", "soc_ekf_pack.h", "plausibility.h", "power.h",
    "capacity.h", "resistance.h", "health.h", "thermal.h",
]
SOURCES = [
    "bf_math.c", "cell_model.c", "soc_ekf.c", "soc_ekf_pack.c", "plausibility.c", "power.c",
    "capacity.c", "resistance.c", "health.c", "thermal.c",
]
#: Flags that decide the numbers; shared with csrc/Makefile and the firmware.
ARITHMETIC_FLAGS = ["-std=c99", "-O2", "-ffp-contract=off", "-fno-fast-math"]


def header_cdef(text: str) -> str:
    """Turn a header into declarations cffi can parse."""
    defines = dict(re.findall(r"^#define\s+(\w+)\s+(0x[0-9a-fA-F]+|\d+)u?(?![.\w])", text, flags=re.M))
    text = re.sub(r"^#ifdef __cplusplus\n.*?^#endif\n", "", text, flags=re.S | re.M)  # the extern "C" guards
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r"static inline[^{]*\{[^}]*\}", "", text, flags=re.S)
    for name, value in defines.items():
        text = re.sub(rf"\b{name}\b", value, text)
    # The per-sample flag constants are needed from Python too.
    consts = "".join(
        f"#define {name} {value}\n" for name, value in defines.items()
        if name.startswith(("BF_FLAG_", "BF_PLAUS_", "BF_SOP_", "BF_SOC_EKF_PACK_", "BF_CAP_", "BF_R0_", "BF_HEALTH_",
                            "BF_THERMAL_"))
    )
    return consts + text


ffibuilder = FFI()
ffibuilder.cdef("\n".join(header_cdef((CSRC / "include" / "bmsfil" / h).read_text()) for h in HEADERS))
ffibuilder.set_source(
    "bmsfil._core",
    "\n".join(f'#include "bmsfil/{h}"' for h in HEADERS),
    sources=[str(CSRC / "src" / s) for s in SOURCES],
    include_dirs=[str(CSRC / "include")],
    extra_compile_args=ARITHMETIC_FLAGS + ["-Wall", "-Wextra"],
    # The multi-cell call also compiles its lane code for AVX2 and AVX-512
    # and picks one by CPU at run time (GCC on x86-64 only; elsewhere the
    # macro does nothing). Same bits on every path (soc_ekf_pack.c).
    define_macros=[("BF_SOC_EKF_PACK_X86_DISPATCH", "1")],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
