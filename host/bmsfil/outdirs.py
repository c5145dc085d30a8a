"""The folders a command writes its files into, made before the work."""

from __future__ import annotations

from pathlib import Path


def output_dir_problem(option: str, directory: Path) -> str | None:
    """Make `directory` (given by `option`, e.g. "--out-dir") with its parents; why it cannot
    be (a file there, no permission), or None once it is there."""
    if directory.exists() and not directory.is_dir():
        return f"{option}: {directory} is a file, not a directory"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"{option}: cannot make the directory {directory} ({exc.strerror or exc})"
    return None
