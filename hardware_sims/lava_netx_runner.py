"""Run a lava-dl `.net` with netx's own loader on Lava's CPU backend (`Loihi2SimCfg(select_tag="fixed_pt")`); runs
INSIDE the Lava env, as `lava_runner.py` does (same conventions: files only, one line `lava_netx_runner: <error>` at
the end of stderr on failure, the memory limit and the watch over Lava's processes are `lava_runner`'s).

    python hardware_sims/lava_netx_runner.py WORKDIR

WORKDIR holds, written by `lava_driver.run_netx_on_lava`:

    request.json   {"net": path, "steps": T, "samples": N, "input": "bias" | "values" | "spikes",
                    "states": [[Var names] per block], "input_message_bits": int, "reset_offset": int,
                    "skip_layers": int, "memory_limit_bytes": bytes or null}
    inputs.npz     `x`: per sample, the LIF input neurons' bias (X, Y, Z), or what the input receives at each step
                   (X, Y, Z, T), in Lava's layout

and gets back `result.npz`: `<block index>/<s_out or a state Var>` `[N, T, *Lava shape]` per block of the network,
after every step, as Lava reports them.

Each sample is a fresh `netx.hdf5.Network(net_config, reset_interval=T, reset_offset, input_message_bits)` run for T
steps, so it starts from reset state and its bias is its own: the input neurons' `bias_mant` is set before the run
(lava-dl's Loihi 2 hardware test drives PilotNet so), or a source `RingBuffer` feeds an SDNN input layer's `a_in`
(lava-dl's PilotNet SDNN test does so) or `net.inp`. The values are read by
one `Monitor` per block and variable (Lava sends them element by element: slow for large networks, fine for checks).
"""
import json
import sys
from pathlib import Path

import numpy as np
from lava.lib.dl import netx
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.source import RingBuffer as Source
from lava.proc.monitor.process import Monitor

# `lava_runner` from next to this file (its memory limit and process watch), as a module of its own: the snn2hw
# package around it needs torch, which the Lava environment does not have.
sys.path.append(str(Path(__file__).parent))
import lava_runner  # noqa: E402


def run_sample(request: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    steps = int(request["steps"])
    net = netx.hdf5.Network(net_config=request["net"], reset_interval=steps,
                            reset_offset=int(request["reset_offset"]),
                            input_message_bits=int(request["input_message_bits"]),
                            skip_layers=int(request["skip_layers"]))
    if request["input"] == "bias":
        net.in_layer.neuron.bias_mant.init = x
    else:
        source = Source(data=x)
        source.s_out.connect(net.in_layer.neuron.a_in if request["input"] == "values" else net.inp)
    monitors = []
    for j, layer in enumerate(net.layers):
        for var in ("s_out", *request["states"][j]):
            monitor = Monitor()
            monitor.probe(getattr(layer.neuron, var), steps)
            monitors.append((f"{j}/{var}", var, monitor))
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    net.create_runtime(run_cfg=cfg)  # compiles, and forks Lava's processes
    try:
        with lava_runner.LavaProcessWatch(net.runtime):
            net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
            return {key: np.asarray(next(iter(m.get_data().values()))[var]) for key, var, m in monitors}
    finally:
        net.stop()


def main(workdir: Path) -> None:
    request = json.loads((workdir / "request.json").read_text())
    if request.get("memory_limit_bytes"):
        lava_runner._limit_address_space(int(request["memory_limit_bytes"]))
    with np.load(workdir / "inputs.npz", allow_pickle=False) as f:
        x = f["x"]
    runs = [run_sample(request, sample) for sample in x]
    np.savez(workdir / "result.npz", **{key: np.stack([r[key] for r in runs]) for key in runs[0]})


if __name__ == "__main__":
    lava_runner.run_script(main, "lava_netx_runner")
