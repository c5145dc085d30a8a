"""Recording names made from file names: they become output file names, so keep them safe."""

from __future__ import annotations

import re
from pathlib import Path

_TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".dat")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(path: Path) -> str:
    """``610_UDDS.csv.gz`` -> ``610_UDDS``."""
    name = path.name
    for suffix in (".gz",) + _TEXT_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def safe_name(text: str) -> str:
    """Only letters, digits, ``.``, ``_`` and ``-``: ``'LG HG2/#1'`` -> ``'LG_HG2_1'``."""
    return _UNSAFE.sub("_", text).strip("_.") or "recording"
