"""Our own files: written so that no reader ever sees half of one, made JSON-ready, and checked as read back."""
import contextlib
import math
import os
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path next to `path` (same directory, so the rename cannot cross file systems), to write in the
    block; renamed over `path` if the block ends normally, removed otherwise. An earlier `path` stays as it was
    until the rename. The suffix is kept: `np.savez` and friends add theirs to a name without it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def jsonable(value):
    """JSON for the manifest: numpy scalars to Python, infinities (a lossless SQNR) to null."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def whole_numbers(values, low: int = 0) -> bool:
    """Whether `values` is a list or tuple of ints (not bools) >= `low`: sizes, strides and widths read back from
    a file that may have been edited."""
    return isinstance(values, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) and v >= low
                                                     for v in values)
