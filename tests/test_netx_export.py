"""The lava-dl netx `.net` exporter: file layout, exactness report, refusal of non-sequential segments, and netx
0.6.0 itself (Lava env, `Loihi2SimCfg(select_tag='fixed_pt')`) spike for spike against the fixed-point simulator
on two test digits, for tcja-tiny with the TCJA gates on the host (three chip segments) and folded (one chain)."""
import functools
import json
import subprocess

import h5py
import numpy as np
import pytest
import torch

from snn2hw.checkpoint import load_checkpoint
from snn2hw.compile import compile_model
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.export import export_deployment
from snn2hw.exporters.lava_spec import chip_segment_spec
from snn2hw.exporters.netx_export import is_sequential, sequential_problem, write_netx
from snn2hw.netx_import import read_netx
from snn2hw.hardware_sims import loihi_formats as lf
from snn2hw.hardware_sims.netx_sim import run_netx_chain
from snn2hw.hardware_sims.runner import run_fixed

SAMPLES = 2

# Runs in the Lava env. argv: cases.json results.npz. Each case: a .net file, its input (X, Y, C | F, steps) in
# an .npy, the number of steps. The Network is built with the keyword arguments the file's root attributes name;
# every block's neuron's spikes are probed.
LAVA_SCRIPT = r"""
import json, sys
import h5py
import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.io.source import RingBuffer
from lava.proc.monitor.process import Monitor
from lava.lib.dl.netx import hdf5

out = {}
for case in json.load(open(sys.argv[1])):
    with h5py.File(case["net"], "r") as f:
        load = {k: int(f.attrs[k]) for k in ("input_message_bits", "reset_interval", "reset_offset")}
    net = hdf5.Network(net_config=case["net"], **load)
    src = RingBuffer(data=np.load(case["input"]))
    src.s_out.connect(net.inp)
    probes = []
    for j, layer in enumerate(net.layers):
        target = layer.neuron.s_out
        monitor = Monitor()
        monitor.probe(target, case["steps"])
        probes.append((monitor, target))
    net.run(condition=RunSteps(num_steps=case["steps"]), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    for j, (monitor, target) in enumerate(probes):
        out[f"{case['name']}__{j}"] = np.asarray(monitor.get_data()[target.process.name][target.name])
    net.stop()
np.savez(sys.argv[2], **out)
"""


@functools.lru_cache(maxsize=None)
def _compiled(arch, tcja="host"):
    model = load_checkpoint(demo_checkpoint(arch)).model
    x, _, calib = evaluation_data("digits", arch)
    return compile_model(model, arch, torch.as_tensor(calib), tcja, netx=True), x


def _chip_specs(compiled):
    return [chip_segment_spec(compiled.fixed, s) for s in compiled.fixed.segments if s["placement"] == "chip"]


def _to_lava_order(a: np.ndarray) -> np.ndarray:
    """Ours [T, N, C, H, W] or [T, N, F] → a RingBuffer's (X, Y, C | F, N·T), samples back to back."""
    steps = a.transpose(1, 0, *range(2, a.ndim)).reshape(-1, *a.shape[2:])   # [N·T, ...]
    return np.ascontiguousarray(steps.transpose(*range(steps.ndim - 1, 0, -1), 0))


def _from_lava_order(probe: np.ndarray, depth: int, t: int, n: int) -> np.ndarray:
    """A Monitor's (steps, X, Y, C | F) → ours [T, N, ...]: logical step k of sample i is Lava step i·T + k + depth
    (every netx block is a synapse, one step of delay, then its neuron)."""
    idx = depth + np.arange(n)[:, None] * t + np.arange(t)[None, :]          # [N, T]
    got = probe[idx].astype(np.int64)           # [N, T, X, Y, C | F]; a Monitor returns integer-valued floats
    return got.transpose(1, 0, *range(got.ndim - 1, 1, -1))                 # [T, N, C, H, W | F]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    """Every netx case: (report of write_netx, input [T, N, ...], expected [T, N, ...] per netx block from the
    simulator's run of the whole model)."""
    tmp = tmp_path_factory.mktemp("netx")
    out = {}
    for tcja in ("host", "fold"):
        compiled, x = _compiled("tcja-tiny", tcja)
        x = torch.as_tensor(x[:SAMPLES])
        _, act = run_fixed(compiled.fixed, x)
        for spec, arrays in _chip_specs(compiled):
            inp = spec["inputs"][0]
            data = act.cut_inputs[(inp["tensor"], inp["to"])]
            lifs = [n["name"] for n in spec["nodes"] if n["op"] == "lif"]
            name = f"{tcja}-{spec['segment']}"
            report = write_netx(spec, arrays, tmp / f"{name}.net")
            out[name] = (report, data, [act.values[n].numpy().astype(np.int64) for n in lifs])
    return out


@pytest.fixture(scope="module")
def netx_results(cases, lava_python, tmp_path_factory):
    """All cases in one Lava process (imports dominate): → name → [per-block probe as ours, [T, N, ...]]."""
    tmp = tmp_path_factory.mktemp("netx_run")
    jobs = []
    for name, (report, data, *_) in cases.items():
        t = data.shape[0]
        np.save(tmp / f"{name}.npy", _to_lava_order(data))
        steps = SAMPLES * t + report["layers"][-1]["depth"]
        jobs.append({"name": name, "net": report["file"], "input": str(tmp / f"{name}.npy"), "steps": steps})
    (tmp / "cases.json").write_text(json.dumps(jobs))
    (tmp / "run.py").write_text(LAVA_SCRIPT)
    res = subprocess.run([str(lava_python), str(tmp / "run.py"), str(tmp / "cases.json"), str(tmp / "out.npz")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    results = {}
    with np.load(tmp / "out.npz") as f:
        for name, (report, data, *_) in cases.items():
            t = data.shape[0]
            results[name] = [_from_lava_order(f[f"{name}__{j}"], layer["depth"], t, SAMPLES)
                             for j, layer in enumerate(report["layers"])]
    return results


def test_chains_are_recognised_and_other_segments_refused(tmp_path):
    compiled, _ = _compiled("tcja-tiny", "host")
    specs = _chip_specs(compiled)
    assert [is_sequential(s) for s, _ in specs] == [True, True, True]
    spec, _ = specs[2]                                         # graded → fc.2.0 → fc.3 → fc.5.0 → fc.6
    fc2, fc3, fc5, fc6 = spec["nodes"]
    summed = {**fc6, "synapses": fc6["synapses"] + ["fc.2.0"]}
    assert "sums 2 synapses" in sequential_problem({**spec, "nodes": [fc2, fc3, fc5, summed]})
    branch = {**fc5, "input": spec["inputs"][0]["name"]}
    assert "a branch" in sequential_problem({**spec, "nodes": [fc2, fc3, branch, fc6]})
    compiled, _ = _compiled("gac-msresnet-tiny")
    (spec, arrays), = _chip_specs(compiled)                  # two inputs, relays and the shortcut's sums
    assert not is_sequential(spec) and "2 inputs" in sequential_problem(spec)
    with pytest.raises(ValueError, match="not expressible in netx"):
        write_netx(spec, arrays, tmp_path / "gac.net")
    assert list(tmp_path.iterdir()) == []


def test_file_layout_is_what_netx_reads(cases):
    report = cases["fold-chip1"][0]
    with h5py.File(report["file"], "r") as f:
        layers = f["layer"]
        types = [layers[str(i)]["type"][0].decode() for i in range(len(layers))]
        assert types == ["input", "conv", "conv", "conv", "conv", "flatten", "dense", "dense"]
        assert list(layers["0"]["shape"][()]) == [2, 16, 16] and "neuron" not in layers["0"]
        pool = layers["2"]
        assert pool["groups"][()] == 16 and list(pool["stride"][()]) == [2, 2] and pool["weight"].shape == (16, 1, 2, 2)
        neuron = layers["1"]["neuron"]
        assert neuron["iDecay"][()] == 4096 and neuron["vDecay"][()] == 2048 and neuron["type"][0] == b"CUBA"
        assert layers["1"].attrs["snn2hw_neuron"] == "conv.1"
        assert dict(f.attrs) == {"snn2hw_segment": "chip1", "input_message_bits": 16, "reset_interval": 8,
                                 "reset_offset": 1}
    assert [layer["depth"] for layer in report["layers"]] == [1, 2, 3, 4, 5, 6]


def test_exactness_report_follows_the_bias_rule(cases, tmp_path):
    """A layer is exact iff its effective bias is a multiple of 64 everywhere (weights always are); netx_bias_grid
    put every bias of these chains there, so every file is."""
    for name, (report, *_) in cases.items():
        for layer in report["layers"]:
            assert layer["weights_exact"] and layer["bias_exact"], (name, layer)
        assert report["bit_exact"]
    exact = {name: len(report["layers"]) for name, (report, *_) in cases.items()}
    assert exact == {"host-chip1": 1, "host-chip3": 1, "host-chip5": 2, "fold-chip1": 6}
    # conv.5 with the gates on the host has bias_exp 7: on the grid, but its netx mantissa exceeds Loihi's 13 bits,
    # which the report says
    assert cases["host-chip3"][0]["layers"][0]["bias_outside_13_bits"][1] > lf.BIAS_MANT_MAX
    # the rule itself, on a bias off the grid
    compiled, _ = _compiled("tcja-tiny", "host")
    spec, arrays = _chip_specs(compiled)[0]
    lif = next(n for n in spec["nodes"] if n["op"] == "lif")
    lif["bias_exp"] = 0  # a bias of 1: 1/64 of netx's step
    off = {**arrays, lif["bias_mant"]: np.ones_like(arrays[lif["bias_mant"]])}
    report = write_netx(spec, off, tmp_path / "off.net")
    assert not report["bit_exact"] and report["layers"][0]["bias_neurons_off"] == off[lif["bias_mant"]].size


def test_export_writes_a_net_only_where_it_is_exact(tmp_path):
    """Without --netx, a chain whose biases are finer than netx's grid gets no .net, and the manifest says why; with
    it, every chain does."""
    loaded = load_checkpoint(demo_checkpoint("tcja-tiny"))
    calib = evaluation_data("digits", "tcja-tiny")[2]
    written = {}
    for netx in (False, True):
        manifest = export_deployment(loaded, calib, tmp_path / str(netx), netx=netx)
        assert manifest["netx"] is netx
        chips = [s for s in manifest["segments"] if s["placement"] == "chip"]
        written[netx] = sorted(p.name for p in (tmp_path / str(netx) / "chip").glob("*.net"))
        assert written[netx] == sorted(f"{s['name']}.net" for s in chips if s["netx"]["written"])
        if not netx:
            why = next(s["netx"]["why_not"] for s in chips if s["name"] == "chip1")
            assert "conv.1" in why and "--netx" in why
    assert written == {False: ["chip3.net", "chip5.net"], True: ["chip1.net", "chip3.net", "chip5.net"]}


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    compiled, _ = _compiled("tcja-tiny", "host")
    spec, arrays = _chip_specs(compiled)[2]
    path = tmp_path / "chip5.net"
    write_netx(spec, arrays, path)
    before = path.read_bytes()
    with pytest.raises(KeyError):
        write_netx(spec, {k: v for k, v in arrays.items() if not k.endswith("bias_mant")}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["chip5.net"]


@pytest.mark.lava
@pytest.mark.parametrize("name", ["host-chip1", "host-chip3", "host-chip5", "fold-chip1"])
def test_netx_equals_the_fixed_point_simulator(name, cases, netx_results):
    """The .net as netx loads it, on Lava: spike for spike the fixed-point simulator's run of the whole model, at
    every layer (gac-msresnet-tiny writes no .net: test_chains_are_recognised_and_other_segments_refused)."""
    report, _, expected = cases[name]
    for layer, want, got in zip(report["layers"], expected, netx_results[name]):
        assert np.array_equal(got, want), f"{name}: {layer['neuron']} differs at {np.argwhere(got != want)[:5]}"
    assert all(w.any() for w in expected), f"{name}: a layer never fires; the comparison would prove little"


def test_netx_import_runs_our_net_files_step_for_step_as_netx_on_lava(cases, netx_results):
    """snn2hw's own reading of a .net (`read_netx`) run in Lava's time (`run_netx_chain`, the samples back to back
    with netx's resets, as the Lava run does) gives every block's values at every step exactly as netx on Lava."""
    for name, (report, data, _) in cases.items():
        net = read_netx(report["file"])
        t, samples = data.shape[:2]
        steps = samples * t + report["layers"][-1]["depth"]
        stream = np.zeros((1, steps, *data.shape[2:]), np.int64)
        stream[0, :samples * t] = data.transpose(1, 0, *range(2, data.ndim)).reshape(samples * t, *data.shape[2:])
        traces = run_netx_chain(net.blocks, steps, input_spikes=stream, reset_interval=net.attributes["reset_interval"],
                                reset_offset=net.attributes["reset_offset"],
                                input_message_bits=net.attributes["input_message_bits"], record_states=True)
        assert len(net.blocks) == len(report["layers"])
        for block, layer, lava in zip(net.blocks, report["layers"], netx_results[name]):
            idx = layer["depth"] + np.arange(samples)[:, None] * t + np.arange(t)[None, :]  # [N, T]
            trace = traces[block.name]
            ours = (trace.u[0][idx] >> 6) if layer["neuron"] is None else trace.s[0][idx].astype(np.int64)
            ours = ours.transpose(1, 0, *range(2, ours.ndim))  # [T, N, ...]
            got = lava >> 6 if layer["neuron"] is None else lava
            assert np.array_equal(ours, got), f"{name} {block.name}: {np.argwhere(ours != got)[:5]}"
