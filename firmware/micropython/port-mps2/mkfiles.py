"""Write the file table of the mps2-an386 MicroPython port (main.c's
``mps2_files``): each file given, by its base name, as a const array.

    python mkfiles.py OUT.c [FILE ...]

OUT.c is rewritten only when its content changes, so make rebuilds nothing
when the files are the same."""

import sys
from pathlib import Path


def main(argv):
    out = Path(argv[1])
    lines = ['#include <stddef.h>', '#include <stdint.h>', '',
             'typedef struct { const char *name; const uint8_t *data; size_t len; } mps2_file_t;', '']
    entries = []
    for i, name in enumerate(argv[2:]):
        data = Path(name).read_bytes()
        lines.append(f"static const uint8_t file_{i}[{max(len(data), 1)}] __attribute__((aligned(4))) = {{")
        for k in range(0, len(data), 16):
            lines.append("    " + ", ".join(str(b) for b in data[k:k + 16]) + ",")
        lines.append("};")
        entries.append(f'    {{"{Path(name).name}", file_{i}, {len(data)}u}},')
    lines.append(f"const mps2_file_t mps2_files[{max(len(entries), 1)}] = {{")
    lines += entries or ['    {"", NULL, 0u},']
    lines.append("};")
    lines.append(f"const size_t mps2_n_files = {len(entries)}u;")
    text = "\n".join(lines) + "\n"
    if not out.is_file() or out.read_text() != text:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
