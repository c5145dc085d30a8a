"""Whether the firmware toolchain and QEMU are here; the firmware tests skip
without them, except under scripts/test.sh (BMSFIL_REQUIRE_FIRMWARE_TOOLS=1),
which installs them and where their absence is a failure. And the MicroPython
application's modules imported in CPython (`micropython_app`)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

REQUIRED = os.environ.get("BMSFIL_REQUIRE_FIRMWARE_TOOLS") == "1"


def _need(*tools: str) -> pytest.MarkDecorator:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing and REQUIRED:
        pytest.fail(f"{', '.join(missing)} not found (scripts/install-firmware-tools.sh should have installed it)",
                    pytrace=False)
    return pytest.mark.skipif(bool(missing), reason=f"{', '.join(missing)} not installed "
                              "(scripts/install-firmware-tools.sh)")


needs_toolchain = _need("arm-none-eabi-gcc")
needs_qemu = _need("arm-none-eabi-gcc", "qemu-system-arm")


@contextlib.contextmanager
def micropython_app(*names: str) -> Iterator[tuple[ModuleType, ...]]:
    """The MicroPython application's modules (firmware/micropython/), imported in CPython."""
    from bmsfil_hil.micropython import APP_DIR

    sys.path.insert(0, str(APP_DIR))
    try:
        yield tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(str(APP_DIR))
