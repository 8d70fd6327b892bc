"""Writing output files so that no reader ever sees half of one."""
import contextlib
import os
from pathlib import Path


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
