"""The LG HG2 drive cycle shipped with the package, for the quick start and tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bmsfil.recording import Recording

BUNDLED_RECORDING = "551_US06_25degC.npz"


def bundled_path() -> Path:
    """The bundled recording's file (the package is installed unzipped)."""
    return Path(str(resources.files("bmsfil") / "data" / BUNDLED_RECORDING))


def bundled_recording() -> Recording:
    with resources.as_file(resources.files("bmsfil") / "data" / BUNDLED_RECORDING) as path:
        return Recording.load(path)
