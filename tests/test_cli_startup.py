"""Every `bmsfil` command starts without loading the heavy stacks that only
some commands need (scipy for fitting, matplotlib for plots, Dask for
fleets): building the whole parser, the harness's commands included, must
not import them. (scipy alone cost each command about a second.)"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("scipy", "matplotlib", "dask", "distributed", "pandas", "pyarrow")


def test_the_parser_loads_no_heavy_stack():
    code = (
        "import sys\n"
        "from bmsfil.cli import build_parser\n"
        "parser = build_parser()\n"
        "assert 'hil' in parser.format_help(), 'the harness commands are part of the parser'\n"
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"loaded at start: {done.stdout.strip()}"
