"""Atomic file writes: every file snn2hw writes outside a deployment's temporary directory goes through them."""
import numpy as np
import pytest

from snn2hw.files import atomic_path, write_text_atomic


def test_a_failed_write_keeps_the_earlier_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.json"
    write_text_atomic(path, "earlier")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(path) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    assert path.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_completed_write_replaces_the_file_and_keeps_numpys_suffix(tmp_path):
    path = tmp_path / "deeper" / "out.npz"  # the folder is made
    with atomic_path(path) as tmp:
        assert tmp.parent == path.parent and tmp.suffix == ".npz" and tmp != path
        np.savez(tmp, x=np.arange(3))  # would write tmp + ".npz" if the suffix were lost
    with np.load(path) as f:
        assert f["x"].tolist() == [0, 1, 2]
    assert [p.name for p in path.parent.iterdir()] == ["out.npz"]
