"""Starting and ending a target's process (QEMU, MicroPython): it ends with
the harness, also when the harness is killed, and when it hangs."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

#: prctl(2) option: the signal the calling process gets when its parent ends.
PR_SET_PDEATHSIG = 1


def start_process(command: list[str], **popen: object) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(command, **popen)` of a process that is killed when
    the harness ends (on Linux, by the kernel, whatever ended the harness:
    SIGKILL too). The signal comes when the thread that started it ends, so
    a target is started from the thread that keeps it."""
    return subprocess.Popen(command, preexec_fn=_die_with(os.getpid()), **popen)  # type: ignore[call-overload]


def _die_with(parent: int) -> Callable[[], None] | None:
    """What the child runs before exec: ask for SIGKILL when its parent ends,
    and end now if the parent already has (the request came too late)."""
    if not sys.platform.startswith("linux"):
        return None

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: nothing but the call runs in the child

    def request() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return request


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
