"""Both environments exist as DESIGN.md describes and do what we rely on."""
import subprocess
import sys

import numpy as np

LAVA_SCRIPT = """
import sys, numpy as np
from lava.proc.io.source import RingBuffer
from lava.proc.dense.process import Dense
from lava.proc.lif.process import LIF
from lava.proc.monitor.process import Monitor
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.core.run_conditions import RunSteps
import lava.lib.dl.netx.hdf5  # lava-dl must import too (it pulls in the CUDA build of torch 2.3.1)
T = 10
src = RingBuffer(data=np.ones((1, T), dtype=int))
dense = Dense(weights=np.array([[10]]), num_message_bits=0)
lif = LIF(shape=(1,), du=4095, dv=0, vth=20, bias_mant=0)
src.s_out.connect(dense.s_in)
dense.a_out.connect(lif.a_in)
spikes, volts = Monitor(), Monitor()
spikes.probe(lif.s_out, T)
volts.probe(lif.v, T)
lif.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
s = spikes.get_data()[lif.name]["s_out"][:, 0]
v = volts.get_data()[lif.name]["v"][:, 0]
lif.stop()
np.savez(sys.argv[1], s=s, v=v, numpy_major=int(np.__version__.split(".")[0]))
"""


def test_main_env_has_the_pinned_stack():
    import nir
    import nirtorch  # noqa: F401
    import norse.torch  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import torch

    assert sys.version_info[:2] == (3, 11)
    assert torch.__version__.startswith("2.13.0") and not torch.cuda.is_available()
    assert int(np.__version__.split(".")[0]) == 2
    assert nir.__version__ == "1.0.8"


def test_lava_env_runs_fixed_point_lif_as_design_md_states(lava_python, tmp_path):
    """One input spike per step through Dense(w=10) into LIF(du=4095, dv=0, vth=20), by DESIGN.md's equations:
    the Dense delays by one step, u = a << 6 = 640 from step 2 on, v accumulates, and fires when v > 20 << 6."""
    script = tmp_path / "lif.py"
    script.write_text(LAVA_SCRIPT)
    result = subprocess.run([str(lava_python), str(script), str(tmp_path / "out.npz")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    assert int(out["numpy_major"]) == 1
    np.testing.assert_array_equal(out["v"], [0, 640, 1280, 0, 640, 1280, 0, 640, 1280, 0])
    np.testing.assert_array_equal(out["s"], [0, 0, 0, 1, 0, 0, 1, 0, 0, 1])
