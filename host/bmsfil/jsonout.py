"""The commands' JSON outputs: strict JSON, written whole."""

from __future__ import annotations

import json
import math
from pathlib import Path


def json_text(doc: object) -> str:
    """Strict JSON, as eval writes it: a number that is not finite (a cell
    not scored, a life with nothing to score) is null, not NaN."""
    def strict(x: object) -> object:
        if isinstance(x, float):
            return x if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: strict(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [strict(v) for v in x]
        return x

    return json.dumps(strict(doc), indent=1, default=str, allow_nan=False) + "\n"


def write_json(path: Path, doc: object) -> None:
    """`json_text(doc)` to `path` through a temporary file beside it (beside the file a link
    points to), so that a reader (or an interrupted run) never finds it half written; straight
    to `path` where that is not a regular file (/dev/stdout, a pipe)."""
    text = json_text(doc)
    if path.exists() and not path.is_file():
        path.write_text(text)
        return
    real = path.resolve()
    tmp = real.with_name(real.name + ".part")
    tmp.write_text(text)
    tmp.replace(real)
