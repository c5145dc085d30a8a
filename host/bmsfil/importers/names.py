"""Recording names made from file names: they become output file names, so keep them safe."""

from __future__ import annotations

import re
from pathlib import Path

_TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".dat")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_stem(path: Path) -> str:
    """``610_UDDS.csv.gz`` -> ``610_UDDS`` (and ``610_UDDS.csv.zip``, ``610_UDDS.zip``)."""
    name = path.name
    for suffix in (".gz", ".zip") + _TEXT_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def output_stem(name: str) -> str:
    """A recording's name as the stem of the files written for it (``DIR/<stem>.csv``): any
    character but letters, digits and ``-_.#`` becomes ``_`` and leading dots go, so that a
    name given with ``--meta name=...`` (``../x``, ``LG HG2/#1``) stays inside the output
    folder: ``'../../x'`` -> ``'_.._x'``, ``'LG HG2/#1'`` -> ``'LG_HG2_#1'``."""
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "-_.#") else "_" for c in name).lstrip(".")
    return stem or "recording"


def safe_name(text: str) -> str:
    """Only letters, digits, ``.``, ``_`` and ``-``: ``'LG HG2/#1'`` -> ``'LG_HG2_1'``."""
    return _UNSAFE.sub("_", text).strip("_.") or "recording"
