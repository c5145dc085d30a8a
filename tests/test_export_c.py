"""`bmsfil export -o X.c`: the C a firmware build compiles, whatever the set's name."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bmsfil.export_c import params_to_c
from bmsfil.params import bundled_params

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_any_name_compiles_and_reads_back(tmp_path: Path) -> None:
    """A name that ends a C comment, breaks a line, quotes, makes a trigraph
    or is not ASCII: the exported C compiles warning-free and holds the name."""
    name = 'cell */ x "q" ??= \\ back\nslash é'
    src = tmp_path / "params.c"
    src.write_text(params_to_c(replace(bundled_params(), name=name), source="a*/b.json"))
    main = tmp_path / "main.c"
    main.write_text('#include <stdio.h>\n#include "fw/params.h"\n'
                    'int main(void) { fputs(fw_params_name, stdout); return 0; }\n')
    exe = tmp_path / "a.out"
    subprocess.run(["gcc", "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wno-overlength-strings",
                    f"-I{ROOT / 'firmware' / 'baremetal' / 'include'}", f"-I{ROOT / 'csrc' / 'include'}",
                    str(src), str(main), "-o", str(exe)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True).stdout
    assert out.decode() == name
