"""Our own files: written so that no reader ever sees half of one, made JSON-ready, and checked as read back."""
import contextlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import UserError


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


def check_output(path, option: str, *, suffix: str | None = None, folder: bool = False, reads=()) -> None:
    """Refuse, before any work, an output path the write would fail on or that would destroy something: a symbolic
    link (the atomic rename would replace the link, not its target), a folder where a file is meant or a file where
    a folder is, a file without the `suffix` its writer adds, a parent that is a file or not writable, and any path
    this command `reads` (a file, or a folder it reads from: the output may be neither it nor inside it, and a
    folder output may not hold what is read)."""
    path = Path(path)
    if path.is_symlink():
        raise UserError(f"{option} {path} is a symbolic link; give the path to write itself, not a link to replace.")
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; it must name a folder.")
    if not folder and path.is_dir():
        raise UserError(f"{option} {path} is a folder; it must name a file.")
    if suffix and path.suffix != suffix:
        raise UserError(f"{option} {path} must end in {suffix}.")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{option} {path}: {ancestor} is a file, so no folder can be made there.")
    try:  # a nameless file (O_TMPFILE): the folder takes writes, whoever runs this (root ignores permissions)
        tempfile.TemporaryFile(dir=ancestor).close()
    except OSError as e:
        raise UserError(f"{option} {path}: the folder {ancestor} takes no files ({e.strerror or e}).") from None
    target = path.resolve()
    for read in (Path(r).resolve() for r in reads if r is not None):
        if target == read or read in target.parents or (folder and target in read.parents):
            raise UserError(f"{option} {path} would overwrite {read}, which this command reads.")


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
