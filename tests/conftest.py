import os
import subprocess
from pathlib import Path

import pytest

from benchmarks.loihi2_calibration import find_pilotnet_gts

ROOT = Path(__file__).resolve().parent.parent
LAVA_PYTHON = ROOT / ".venv-lava" / "bin" / "python"


@pytest.fixture(scope="session")
def lava_python() -> Path:
    """The Lava environment's interpreter. In CI its absence is a failure, not a skip: `make test` builds it."""
    if not LAVA_PYTHON.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{LAVA_PYTHON} is missing: `make setup` should have built it")
        pytest.skip("the Lava environment is not built (make setup-lava)")
    return LAVA_PYTHON


@pytest.fixture(scope="session")
def pilotnet_gts(lava_python) -> Path:
    """lava-dl's PilotNet LIF network and its Loihi 2 ground truth (`network.net`, `image.npy`, u, v and spikes of
    every layer), read where the pinned lava-dl wheel installs them (`tests/lava/lib/dl/netx/gts/pilotnet_lif`) or
    from SNN2HW_PILOTNET_GTS: public silicon data, never copied into the project."""
    found = find_pilotnet_gts()
    if found is None:
        pytest.fail("lava-dl's gts/pilotnet_lif is not in the Lava environment (requirements/lava.txt pins the "
                    "lava-dl wheel that ships it); set SNN2HW_PILOTNET_GTS to a copy")
    return found


def _run_cli(*args, cwd=None):
    """Run the installed `snn2hw` console script; → CompletedProcess with text output."""
    exe = ROOT / ".venv" / "bin" / "snn2hw"
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=900)


@pytest.fixture
def run_cli():
    return _run_cli


@pytest.fixture(scope="module")
def run_cli_module():
    return _run_cli


@pytest.fixture(scope="session")
def tcja_deployment(tmp_path_factory) -> Path:
    """A real `snn2hw export` of the bundled tcja-tiny model (it has every kind of file: chip .json/.npz/.nir/.net,
    host .onnx). Shared: tests that alter a deployment copy it first."""
    out = tmp_path_factory.mktemp("tcja-deployment") / "tcja"
    res = _run_cli("export", ROOT / "models" / "checkpoints" / "tcja-tiny.pt", "-o", out)
    assert res.returncode == 0, res.stderr
    return out
