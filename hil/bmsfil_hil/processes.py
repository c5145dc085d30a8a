"""Ending a target's process (QEMU, MicroPython), also when it hangs."""

from __future__ import annotations

import subprocess


def end_process(proc: subprocess.Popen[bytes] | None, timeout_s: float = 5.0) -> None:
    """Terminate `proc` if it still runs; kill it if it does not end within `timeout_s`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)
