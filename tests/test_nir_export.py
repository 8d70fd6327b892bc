"""NIR export of chip segments: type-checked write/read round trip, the Loihi integers in metadata, and norse
importing the graph and reproducing the folded-float spikes of every neuron.

How the graphs are imported (norse 1.1.0, nirtorch 2.6), and why:
* Nodes: norse's own per-node mapping, `norse.torch.utils.import_nir._import_norse_module` (what
  `norse.torch.from_nir` applies to every node), with dt = 1: Conv2d → torch Conv2d, SumPool2d → LPPool2d(p=1),
  AvgPool2d → nirtorch's default (torch AvgPool2d; norse has no mapping of its own),
  Affine → Linear, CubaLIF → LIBoxCell (current) + LIFBoxCell (membrane), honouring w_in and r (its nir.LIF import
  ignores r, one reason the exporter writes CubaLIF). Beside it, `DiscreteCubaLIF`: our reading of the
  discretisation the file states, as another tool would implement it from the graph metadata.
* Affine: nirtorch 2.6's default map keeps torch's random bias (it assigns `module.weight.bias`; fixed upstream
  in NIRTorch PR #55), so both maps take norse's.
* Flatten: NIR's start_dim counts dimensions of the batch-free type (ours: 0); norse's and nirtorch's maps make
  `torch.nn.Flatten(start_dim)` on batched tensors and so fold the batch in. `BatchFlatten` (ours) shifts by one.
* Wiring: `nirtorch.nir_to_torch` cannot build a graph with more than one Input (`RuntimeError: Node redefined name
  is_none!`; NIRTorch issue #30) and `norse.torch.from_nir` (the deprecated `nirtorch.load`) feeds only the first
  Input. The GAC segment has three (spikes of the encoder plus two injected currents), so `run_graph` (ours) runs
  every graph: the mapped modules in topological order, the edges into a node summed (NIR's rule), in edge order.
  Single-input segments also run through `nirtorch.nir_to_torch`; those without a Flatten through
  `norse.torch.from_nir` as well.
* Threshold: NIR and norse fire on v > v_threshold; the exporter encodes SpikingJelly's v >= θ as the float32 just
  below θ, and `test_threshold_ties_follow_the_source_comparison` checks it at exact ties (the digits data never
  hit one). Reset (to 0) and the OR neurons (decay 0: tau_mem = dt) need nothing special.
"""
import copy
import warnings
from functools import cache, partial

import nir
import nirtorch
import norse.torch
import numpy as np
import pytest
import torch
from norse.torch.utils.import_nir import _import_norse_module

from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.ladder import first_divergence, spike_mismatches
from snn2hw.compile import compile_model
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.exporters.nir_export import chip_segment_to_nir, write_nir

CONFIGS = [("gac-msresnet-tiny", "host"), ("tcja-tiny", "host"), ("tcja-tiny", "fold")]
SAMPLES = 32
TIE_TOL = 1e-5  # |v - θ| of a folded-float membrane that rounding differences may tip over the threshold


@cache
def compiled(arch, tcja):
    """(Compiled, folded values `[T, N, ...]` of every node on SAMPLES test inputs), calibrated on SAMPLES inputs."""
    x, _, calib = evaluation_data("digits", arch)
    c = compile_model(load_checkpoint(demo_checkpoint(arch)).model, arch, torch.as_tensor(calib[:SAMPLES]), tcja)
    return c, c.folded.run(torch.as_tensor(x[:SAMPLES]), record=True)[1]


def chip_graphs(arch, tcja, tmp_path):
    """[(segment, graph as written and read back)] for every chip segment."""
    c, _ = compiled(arch, tcja)
    out = []
    for seg in c.folded.segments:
        if seg["placement"] == "chip":
            write_nir(tmp_path / f"{seg['name']}.nir", chip_segment_to_nir(c.folded, c.fixed, seg))
            out.append((seg, nir.read(tmp_path / f"{seg['name']}.nir")))
    return out


class DiscreteCubaLIF(torch.nn.Module):
    """Our map: NIR's CubaLIF under the file's discretisation, decay form, dt from the graph:
    I = (1 - dt/tau_syn)·I + dt/tau_syn·w_in·S;  v = (1 - dt/tau_mem)·v + dt/tau_mem·(v_leak + r·I);
    z = v > v_threshold;  v = v_reset where z."""

    def __init__(self, node: nir.CubaLIF, dt: float):
        super().__init__()
        p = {k: torch.as_tensor(np.asarray(getattr(node, k))) for k in
             ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")}
        self.keep_i, self.gain_i = 1 - dt / p["tau_syn"], dt / p["tau_syn"] * p["w_in"]
        self.keep_v, self.leak, self.gain_v = 1 - dt / p["tau_mem"], dt / p["tau_mem"] * p["v_leak"], \
            dt / p["tau_mem"] * p["r"]
        self.v_threshold, self.v_reset = p["v_threshold"], p["v_reset"]

    def forward(self, x, state=None):
        i, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        i = self.keep_i * i + self.gain_i * x
        v = self.keep_v * v + self.leak + self.gain_v * i
        z = v > self.v_threshold
        return z.to(x.dtype), (i, torch.where(z, self.v_reset, v))


class BatchFlatten(torch.nn.Module):
    """Our map of nir.Flatten: its dims count from the batch-free type, the tensors here have a batch dim first."""

    def __init__(self, node: nir.Flatten):
        super().__init__()
        end = int(node.end_dim)
        self.start, self.end = int(node.start_dim) + 1, end + 1 if end >= 0 else end

    def forward(self, x):
        return x.flatten(self.start, self.end)


def node_maps(dt: float) -> dict[str, dict]:
    norse_map = partial(_import_norse_module, dt=dt)
    return {"norse": {nir.Conv2d: norse_map, nir.SumPool2d: norse_map, nir.Affine: norse_map,
                      nir.CubaLIF: norse_map, nir.Flatten: BatchFlatten},
            "ours": {nir.Affine: norse_map, nir.CubaLIF: partial(DiscreteCubaLIF, dt=dt), nir.Flatten: BatchFlatten}}


@torch.no_grad()
def run_graph(graph: nir.NIRGraph, node_map: dict, feeds: dict, steps: int) -> dict[str, torch.Tensor]:
    """Run a NIR graph step by step: each node mapped by `nirtorch.nir_to_torch(node, node_map)` (nirtorch's
    defaults for the rest), inputs summed over the node's incoming edges in edge order → {node: `[T, N, ...]`}."""
    modules = {k: nirtorch.nir_to_torch(n, node_map) for k, n in graph.nodes.items() if not isinstance(n, nir.Input)}
    sources = {k: [a for a, b in graph.edges if b == k] for k in graph.nodes}
    order = []
    while len(order) < len(graph.nodes):
        order += [k for k in graph.nodes if k not in order and all(s in order for s in sources[k])]
    state, trace = {}, {k: [] for k in modules}
    for t in range(steps):
        value = {k: feeds[k][t] for k in graph.inputs}
        for k in order:
            if k in value:
                continue
            x = value[sources[k][0]]
            for s in sources[k][1:]:
                x = x + value[s]
            if isinstance(graph.nodes[k], nir.CubaLIF):
                value[k], state[k] = modules[k](x, state.get(k))
            else:
                value[k] = modules[k](x)
            trace[k].append(value[k])
    return {k: torch.stack(v) for k, v in trace.items()}


@torch.no_grad()
def run_torch_module(module, graph: nir.NIRGraph, feed: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    """Run a whole-graph import (`nirtorch.nir_to_torch` or `norse.torch.from_nir`) of a one-input graph; the
    neurons' spikes are recorded by forward hooks (module names: NIR names with '.' → '_')."""
    trace = {k: [] for k, n in graph.nodes.items() if isinstance(n, nir.CubaLIF)}
    for k in trace:
        getattr(module, k.replace(".", "_")).register_forward_hook(lambda m, i, out, k=k: trace[k].append(out[0]))
    state = None
    for t in range(steps):
        _, state = module(feed[t], state)
    return {k: torch.stack(v) for k, v in trace.items()}


def divergence_gap(folded: ir.Graph, values: dict, got: dict, lifs: list[str]):
    """→ (mismatched spikes per LIF, first divergence, max |v - θ| of the folded membrane where the spikes first
    differ: ~0 when the difference is a threshold tie that float rounding tipped, 0 without divergence)."""
    first = first_divergence(values, got, lifs)
    gap = 0.0
    if first is not None:
        lif = folded.nodes[first.layer]
        _, v = lif.trace(values[lif.inputs[0]])
        differs = values[first.layer][first.step] != got[first.layer][first.step]
        gap = float((v[first.step][differs] - lif.threshold).abs().max())
    return spike_mismatches(values, got, lifs), first, gap


@pytest.mark.parametrize("arch, tcja", CONFIGS)
def test_chip_segments_round_trip_with_float_weights_and_loihi_integers(arch, tcja, tmp_path):
    c, _ = compiled(arch, tcja)
    graphs = chip_graphs(arch, tcja, tmp_path)
    assert len(graphs) == (3 if (arch, tcja) == ("tcja-tiny", "host") else 1)
    for seg, g in graphs:
        written = chip_segment_to_nir(c.folded, c.fixed, seg)
        assert set(g.nodes) == set(written.nodes) and sorted(g.edges) == sorted(written.edges)
        assert g.metadata["dt"] == 1.0 and g.metadata["segment"] == seg["name"]
        assert g.metadata["timesteps"] == c.folded.timesteps
        entering = {cut["tensor"] for cut in c.folded.cuts if cut["to_segment"] == seg["name"]}
        leaving = {cut["tensor"] for cut in c.folded.cuts if cut["from_segment"] == seg["name"]}
        assert {n.metadata["tensor"] for n in g.inputs.values()} == entering
        assert {n.metadata["tensor"] for n in g.outputs.values()} == leaving
        for name in seg["nodes"]:
            node, q = c.folded.nodes[name], c.fixed.nodes[name].quant
            if isinstance(node, (ir.Add, ir.Relay)):
                assert name not in g.nodes  # its summands are edges into the neuron; a relay is y = x
                continue
            n = g.nodes[name]
            assert type(n) is type(written.nodes[name])
            for key, value in written.nodes[name].metadata.items():  # metadata survives write/read
                assert np.array_equal(n.metadata[key], value), (name, key)
            if isinstance(n, (nir.SumPool2d, nir.AvgPool2d)):  # unit weights, or 1/(kh·kw): a window's sum or mean
                area = 1 if isinstance(n, nir.SumPool2d) else node.weight.shape[2] * node.weight.shape[3]
                assert node.groups == node.weight.shape[0] and bool((node.weight == 1 / area).all())
                assert list(n.kernel_size) == list(node.weight.shape[2:]) and list(n.stride) == list(node.stride)
            elif isinstance(node, (ir.Conv2d, ir.Linear)):
                assert n.weight.dtype == np.float32 and np.array_equal(n.weight, node.weight.numpy())
                bias = np.zeros(node.weight.shape[0]) if node.bias is None else node.bias.double().numpy()
                if "add_bias_of" in n.metadata:
                    bias = bias + c.folded.nodes[n.metadata["add_bias_of"]].bias.double().numpy()
                assert np.array_equal(getattr(n, "bias", np.zeros_like(bias)), bias.astype(np.float32))
            if isinstance(node, (ir.Conv2d, ir.Linear)):
                assert np.array_equal(n.metadata["weight"], q["weight"]) and n.metadata["scale"] == q["scale"]
                assert n.metadata["payload_frac_bits"] == q["payload_frac_bits"]
            if isinstance(node, ir.LIF):
                assert isinstance(n, nir.CubaLIF)
                for p in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
                    assert getattr(n, p).shape == node.shape, (name, p)
                assert np.all(n.tau_syn == 1.0) and np.all(1 - 1.0 / n.tau_mem == np.float32(node.decay))
                assert np.all(n.r / n.tau_mem == 1.0) and np.all(n.w_in == node.input_scale)
                assert np.all(n.v_reset == 0) and np.all(n.v_leak == 0)
                theta = np.float32(node.threshold)
                if node.fire_at_threshold:
                    assert np.all(n.v_threshold < theta) and np.all(np.nextafter(n.v_threshold, theta) == theta)
                else:
                    assert np.all(n.v_threshold == theta)
                for key in ("du", "dv", "vth", "bias_exp"):
                    assert n.metadata[key] == q[key], (name, key)
                assert np.array_equal(n.metadata["bias_mant"], np.broadcast_to(q["bias_mant"], node.shape))
                src = c.folded.nodes[node.inputs[0]]
                summands = src.inputs if isinstance(src, ir.Add) else [src.name]
                assert len([e for e in g.edges if e[1] == name]) == len(summands)


@pytest.mark.parametrize("arch, tcja", CONFIGS)
def test_norse_import_reproduces_the_folded_float_spikes(arch, tcja, tmp_path):
    c, values = compiled(arch, tcja)
    steps = c.folded.timesteps
    for seg, g in chip_graphs(arch, tcja, tmp_path):
        feeds = {k: values[n.metadata["tensor"]] for k, n in g.inputs.items()}
        lifs = [k for k in seg["nodes"] if isinstance(g.nodes.get(k), nir.CubaLIF)]
        maps = node_maps(float(g.metadata["dt"]))
        runs = {label: run_graph(g, m, feeds, steps) for label, m in maps.items()}
        if len(feeds) == 1:
            feed = next(iter(feeds.values()))
            runs["nirtorch.nir_to_torch"] = run_torch_module(nirtorch.nir_to_torch(g, maps["norse"]), g, feed, steps)
            if not any(isinstance(n, nir.Flatten) for n in g.nodes.values()):
                with warnings.catch_warnings():  # from_nir wraps the deprecated nirtorch.load
                    warnings.simplefilter("ignore", DeprecationWarning)
                    module = norse.torch.from_nir(g, dt=float(g.metadata["dt"]))
                runs["norse.from_nir"] = run_torch_module(module, g, feed, steps)
        assert sum(int(values[k].sum()) for k in lifs) > 0
        for label, got in runs.items():
            mismatches, first, gap = divergence_gap(c.folded, values, got, lifs)
            # Exact but for threshold ties: the float dynamics coincide (same coefficients); only the summation
            # order of several edges and norse's v + dt/tau·(...) form may round differently.
            assert gap <= TIE_TOL, (seg["name"], label, mismatches, first, gap)
            assert sum(mismatches.values()) <= 1e-4 * sum(v.numel() for k, v in values.items() if k in lifs), \
                (seg["name"], label, mismatches)
        for out in g.outputs.values():  # a readout relay's float value leaves the chip
            if out.metadata["kind"] == "graded":
                name = out.metadata["tensor"]  # the relay has no node: the sum of its synapses
                got = sum(runs["norse"][f.name] for f in c.folded.input_port_feeds(name))
                torch.testing.assert_close(got, values[name], rtol=1e-5, atol=1e-5)


def test_a_broken_export_is_caught_by_the_spike_comparison(tmp_path):
    """The comparison above can fail: drop the bias of a synapse on the residual stream (block 1's conv2, summed
    into the stream's relay) and spikes diverge away from any threshold tie."""
    c, values = compiled("gac-msresnet-tiny", "host")
    (seg, g), = chip_graphs("gac-msresnet-tiny", "host", tmp_path)
    broken = copy.deepcopy(g)
    carrier = "layer1.0.conv2_s.layer.module"
    assert np.abs(broken.nodes[carrier].bias).max() > 0
    broken.nodes[carrier].bias = np.zeros_like(broken.nodes[carrier].bias)
    feeds = {k: values[n.metadata["tensor"]] for k, n in broken.inputs.items()}
    got = run_graph(broken, node_maps(1.0)["norse"], feeds, c.folded.timesteps)
    lifs = [k for k in seg["nodes"] if isinstance(g.nodes.get(k), nir.CubaLIF)]
    _, first, gap = divergence_gap(c.folded, values, got, lifs)
    assert first.layer == "layer2.0.lif1" and gap > 100 * TIE_TOL  # the first neuron reading the stream


@pytest.mark.parametrize("arch, tcja, neuron", [("gac-msresnet-tiny", "host", "layer1.0.lif2"),
                                                ("tcja-tiny", "host", "conv.1"), ("tcja-tiny", "fold", "conv.3.0")])
def test_threshold_ties_follow_the_source_comparison(arch, tcja, neuron, tmp_path):
    """Inputs on a 1/4 grid keep every membrane potential exact in float32 and hit the threshold exactly: GAC's
    neurons (v > 1) and the OR neurons (v > 1/2) must stay silent there, TCJA's (v >= 1) must fire."""
    c, _ = compiled(arch, tcja)
    lif = c.folded.nodes[neuron]
    graph = next(g for seg, g in chip_graphs(arch, tcja, tmp_path) if neuron in seg["nodes"])
    x = torch.randint(-2, 7, (c.folded.timesteps, 16, *lif.shape)).float() / 4
    want, v = lif.trace(x)
    assert int((v == lif.threshold).sum()) > 100  # the ties are there
    for label, node_map in node_maps(float(graph.metadata["dt"])).items():
        module = nirtorch.nir_to_torch(graph.nodes[neuron], node_map)
        state, spikes = None, []
        with torch.no_grad():
            for x_t in x:
                z, state = module(x_t, state)
                spikes.append(z)
        assert int((torch.stack(spikes) != want).sum()) == 0, label


def test_write_nir_is_atomic(tmp_path, monkeypatch):
    c, _ = compiled("tcja-tiny", "host")
    seg = next(s for s in c.folded.segments if s["placement"] == "chip")
    graph = chip_segment_to_nir(c.folded, c.fixed, seg)
    path = tmp_path / "chip1.nir"
    write_nir(path, graph)
    before = path.read_bytes()

    def half_write(filename, g, **kwargs):
        with open(filename, "wb") as f:
            f.write(b"\x89HDF\r\n")
        raise OSError("disk full")
    monkeypatch.setattr(nir, "write", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_nir(path, graph)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["chip1.nir"]
    with pytest.raises(OSError):
        write_nir(tmp_path / "fresh.nir", graph)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chip1.nir"]


def test_write_nir_leaves_the_graph_alone_and_keeps_the_lava_integer_types(tmp_path):
    c, _ = compiled("gac-msresnet-tiny", "host")
    seg = next(s for s in c.folded.segments if s["placement"] == "chip")
    graph = chip_segment_to_nir(c.folded, c.fixed, seg)
    write_nir(tmp_path / "chip1.nir", graph)
    read = nir.read(tmp_path / "chip1.nir")
    for name, node in graph.nodes.items():
        values = [*vars(node).values(), *node.metadata.values()]
        assert all(type(v) is np.ndarray for v in values if isinstance(v, np.ndarray)), name  # no writer's views
        for key in ("weight", "bias_mant"):
            if key in node.metadata:
                assert read.nodes[name].metadata[key].dtype == np.int16, (name, key)
