"""NIR export of chip segments: type-checked write/read round trip, the Loihi integers in metadata, and the peers
installed here (norse 1.1.0, SpikingJelly 2.0.0, snntorch 1.0.0) importing the files with their own NIR imports and
reproducing the folded-float spikes of every neuron and the readout's value.

The imports, as the README's "NIR interop" table gives them (what each needs, and why: exporters/nir_export.py):
* `norse.torch.from_nir(graph, dt=graph.metadata["dt"])`: the TCJA segments, a chain each; on GAC's segment it
  raises or runs a wrong graph.
* `nirtorch.nir_to_torch(graph, norse_map(dt))`: norse's own node map (`_import_norse_module`, what `from_nir`
  applies to every node) under nirtorch's executor, which orders joins correctly: every segment.
* SpikingJelly `import_from_nir(graph)` (dt 1e-4 by default), each neuron's threshold then raised by one float32
  step (`strict_thresholds`); as imported it differs exactly at v == v_threshold, which GAC's encodings hit.
* snntorch `import_from_nir(graph)` (dt 1e-4 hard-coded).
* Ours, beside them: `DiscreteCubaLIF` implements the discretisation the file's metadata states, with its dt, as
  another tool would; norse's map for the other nodes (nirtorch 2.6's own Affine keeps torch's random bias: it
  assigns `module.weight.bias`, fixed upstream in NIRTorch PR #55).
Threshold: the exporter encodes SpikingJelly's v >= θ as the float32 just below θ, and
`test_threshold_ties_follow_the_source_comparison` checks every import at exact ties. Reset (to 0) and the OR neurons
(decay 0: tau_mem = dt) need nothing special.
"""
import copy
import inspect
import warnings
from functools import cache, partial

import nir
import nirtorch
import norse.torch
import numpy as np
import pytest
import torch
from norse.torch.utils.import_nir import _import_norse_module
from snntorch.import_nir import import_from_nir as snntorch_import
from spikingjelly.activation_based.neuron import CUBALIFNode
from spikingjelly.activation_based.nir_exchange import import_from_nir as spikingjelly_import

from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.compile import AUTO, compile_model
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.exporters.nir_export import chip_segment_to_nir, write_nir
from snn2hw.ladder import first_divergence, spike_mismatches

# GAC's unrolled residual stream: three synapses read the host's encoding (the lif1 current and two injected sums)
CONFIGS = [("gac-msresnet-tiny", "host", AUTO), ("gac-msresnet-tiny", "host", "unroll"), ("tcja-tiny", "host", AUTO),
           ("tcja-tiny", "fold", AUTO)]
SAMPLES = 32
TIE_TOL = 1e-5  # |v - θ| of a folded-float membrane that rounding differences may tip over the threshold


@cache
def compiled(arch, tcja, residual=AUTO):
    """(Compiled, folded values `[T, N, ...]` of every node on SAMPLES test inputs), calibrated on SAMPLES inputs."""
    x, _, calib = evaluation_data("digits", arch)
    c = compile_model(load_checkpoint(demo_checkpoint(arch)).model, arch, torch.as_tensor(calib[:SAMPLES]), tcja,
                      residual)
    return c, c.folded.run(torch.as_tensor(x[:SAMPLES]), record=True)[1]


def chip_graphs(arch, tcja, residual, tmp_path):
    """[(segment, graph as written and read back)] for every chip segment."""
    c, _ = compiled(arch, tcja, residual)
    out = []
    for seg in c.folded.segments:
        if seg["placement"] == "chip":
            write_nir(tmp_path / f"{seg['name']}.nir", chip_segment_to_nir(c.folded, c.fixed, seg))
            out.append((seg, nir.read(tmp_path / f"{seg['name']}.nir")))
    return out


class DiscreteCubaLIF(torch.nn.Module):
    """Our map: NIR's CubaLIF under the file's discretisation, decay form, dt from the graph, float32 arithmetic:
    I = (1 - dt/tau_syn)·I + dt/tau_syn·w_in·S;  v = (1 - dt/tau_mem)·v + dt/tau_mem·(v_leak + r·I);
    z = v > v_threshold;  v = v_reset where z."""

    def __init__(self, node: nir.CubaLIF, dt: float):
        super().__init__()
        p = {k: np.asarray(getattr(node, k), np.float64) for k in
             ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")}
        f32 = partial(torch.as_tensor, dtype=torch.float32)
        self.keep_i, self.gain_i = f32(1 - dt / p["tau_syn"]), f32(dt / p["tau_syn"] * p["w_in"])
        self.keep_v, self.leak = f32(1 - dt / p["tau_mem"]), f32(dt / p["tau_mem"] * p["v_leak"])
        self.gain_v, self.v_threshold, self.v_reset = f32(dt / p["tau_mem"] * p["r"]), f32(p["v_threshold"]), \
            f32(p["v_reset"])

    def forward(self, x, state=None):
        i, v = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        i = self.keep_i * i + self.gain_i * x
        v = self.keep_v * v + self.leak + self.gain_v * i
        z = v > self.v_threshold
        return z.to(x.dtype), (i, torch.where(z, self.v_reset, v))


def norse_map(dt: float) -> dict:
    norse_node = partial(_import_norse_module, dt=dt)
    return {t: norse_node for t in (nir.Affine, nir.Conv2d, nir.CubaLIF, nir.Flatten, nir.Linear, nir.SumPool2d)}


def strict_thresholds(model: torch.nn.Module) -> torch.nn.Module:
    """SpikingJelly's neurons fire on v >= v_threshold (`functional.cuba_lif_step` through `surrogate.heaviside`,
    x >= 0), NIR's on v > v_threshold: for float32 v the same as v >= the next float32 up."""
    for m in model.modules():
        if isinstance(m, CUBALIFNode):
            m.v_threshold = float(np.nextafter(np.float32(m.v_threshold), np.float32(np.inf)))
    return model


def norse_from_nir(graph: nir.NIRGraph) -> torch.nn.Module:
    with warnings.catch_warnings():  # from_nir wraps the deprecated nirtorch.load
        warnings.simplefilter("ignore", DeprecationWarning)
        return norse.torch.from_nir(graph, dt=float(graph.metadata["dt"]))


IMPORTS = {  # label → graph → torch module run as module(x_t, state) → (output, state)
    "norse.from_nir": norse_from_nir,
    "norse map, nirtorch.nir_to_torch": lambda g: nirtorch.nir_to_torch(g, norse_map(float(g.metadata["dt"]))),
    "SpikingJelly, strict thresholds": lambda g: strict_thresholds(spikingjelly_import(g)),
    "snntorch": snntorch_import,
    "ours": lambda g: nirtorch.nir_to_torch(g, {**norse_map(float(g.metadata["dt"])),
                                                nir.CubaLIF: partial(DiscreteCubaLIF, dt=float(g.metadata["dt"]))}),
}


def _spikes(out):
    return out[0] if isinstance(out, tuple) else out  # snntorch's neurons (init_hidden) return the spikes alone


@torch.no_grad()
def run_import(module, graph: nir.NIRGraph, feed: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run an imported graph on `feed` `[T, N, ...]` → ({CubaLIF node: spikes `[T, N, ...]`}, output `[T, N, ...]`);
    the spikes are recorded by forward hooks (module names: NIR names with '.' → '_')."""
    trace = {k: [] for k, n in graph.nodes.items() if isinstance(n, nir.CubaLIF)}
    for k in trace:
        module.get_submodule(k.replace(".", "_")).register_forward_hook(
            lambda m, i, out, k=k: trace[k].append(_spikes(out)))
    state, outputs = None, []
    for x in feed:
        y, state = module(x, state)
        outputs.append(y)
    return {k: torch.stack(v) for k, v in trace.items()}, torch.stack(outputs)


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


@pytest.mark.parametrize("arch, tcja, residual", CONFIGS)
def test_chip_segments_round_trip_with_float_weights_and_loihi_integers(arch, tcja, residual, tmp_path):
    c, _ = compiled(arch, tcja, residual)
    graphs = chip_graphs(arch, tcja, residual, tmp_path)
    assert len(graphs) == (3 if (arch, tcja) == ("tcja-tiny", "host") else 1)
    for seg, g in graphs:
        written = chip_segment_to_nir(c.folded, c.fixed, seg)
        assert set(g.nodes) == set(written.nodes) and sorted(g.edges) == sorted(written.edges)
        dt = g.metadata["dt"]
        assert dt == 1e-4 and g.metadata["time_unit"] == "s" and g.metadata["segment"] == seg["name"]
        assert g.metadata["timesteps"] == c.folded.timesteps
        entering = {cut["tensor"] for cut in c.folded.cuts if cut["to_segment"] == seg["name"]}
        leaving = {cut["tensor"] for cut in c.folded.cuts if cut["from_segment"] == seg["name"]}
        assert set(g.inputs) == entering and all(n.metadata["tensor"] == k for k, n in g.inputs.items())
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
            if isinstance(node, ir.SYNAPSES) and node.inputs[0] in entering:  # one Input per tensor, an edge each
                assert (node.inputs[0], name) in g.edges and n.metadata["input_adapter"] == f"{node.inputs[0]}->{name}"
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
            if isinstance(node, ir.Flatten):
                assert (n.start_dim, n.end_dim) == (-len(c.folded.nodes[node.inputs[0]].shape), -1)
            if isinstance(node, ir.LIF):
                assert isinstance(n, nir.CubaLIF)
                for p in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
                    assert getattr(n, p).shape == node.shape and getattr(n, p).dtype == np.float64, (name, p)
                assert np.all(n.tau_syn == dt) and np.all(np.float32(1 - dt / n.tau_mem) == np.float32(node.decay))
                assert np.all(n.r * dt / n.tau_mem == 1.0) and np.all(n.w_in == node.input_scale)
                assert np.all(n.v_reset == 0) and np.all(n.v_leak == 0)
                theta = np.float32(node.threshold)
                if node.fire_at_threshold:
                    assert np.all(n.v_threshold < theta) and np.all(np.nextafter(np.float32(n.v_threshold), theta)
                                                                   == theta)
                else:
                    assert np.all(n.v_threshold == theta)
                for key in ("du", "dv", "vth", "bias_exp"):
                    assert n.metadata[key] == q[key], (name, key)
                assert np.array_equal(n.metadata["bias_mant"], np.broadcast_to(q["bias_mant"], node.shape))
                src = c.folded.nodes[node.inputs[0]]
                summands = src.inputs if isinstance(src, ir.Add) else [src.name]
                assert len([e for e in g.edges if e[1] == name]) == len(summands)


def joins(graph: nir.NIRGraph) -> bool:
    """Whether some node sums several edges (GAC's residual stream)."""
    targets = [b for _, b in graph.edges]
    return len(set(targets)) < len(targets)


@pytest.mark.parametrize("peer", IMPORTS)
@pytest.mark.parametrize("arch, tcja, residual", CONFIGS)
def test_peer_imports_reproduce_the_folded_float_spikes(arch, tcja, residual, peer, tmp_path):
    c, values = compiled(arch, tcja, residual)
    for seg, g in chip_graphs(arch, tcja, residual, tmp_path):
        (feed,) = [values[k] for k in g.inputs]
        lifs = [k for k in seg["nodes"] if isinstance(g.nodes.get(k), nir.CubaLIF)]
        if peer == "norse.from_nir" and joins(g):
            # Its executor, nirtorch.load's GraphExecutor, runs the nodes in depth-first order from one root
            # (graph_utils.trace_execution): a node summing edges runs before some of its sources and takes their
            # previous step. norse maps no AvgPool2d, which cuts GAC's graph in two, and the root is whichever part a
            # set yields first: it raises, or it runs a wrong graph and returns the wrong node's value.
            try:
                spikes, _ = run_import(IMPORTS[peer](g), g, feed)
            except RuntimeError:
                continue
            assert sum(spike_mismatches(values, spikes, lifs).values()) > 0
            continue
        spikes, output = run_import(IMPORTS[peer](g), g, feed)
        assert sum(int(values[k].sum()) for k in lifs) > 0
        mismatches, first, gap = divergence_gap(c.folded, values, spikes, lifs)
        # Exact but for threshold ties: the float dynamics coincide (same coefficients); only the summation order of
        # several edges may round differently.
        assert gap <= TIE_TOL, (seg["name"], mismatches, first, gap)
        assert sum(mismatches.values()) <= 1e-4 * sum(values[k].numel() for k in lifs), (seg["name"], mismatches)
        (out,) = g.outputs.values()  # the host reads a LIF's spikes, or a readout relay's value: its synapses' sum
        torch.testing.assert_close(output, values[out.metadata["tensor"]], rtol=1e-5, atol=1e-5)


def test_spikingjelly_as_imported_fires_at_the_threshold_itself(tmp_path):
    """Without `strict_thresholds` SpikingJelly fires where v == v_threshold: GAC's encodings saturate at exactly 1,
    its neurons' threshold, and the first difference is such a tie."""
    c, values = compiled("gac-msresnet-tiny", "host")
    (seg, g), = chip_graphs("gac-msresnet-tiny", "host", AUTO, tmp_path)
    spikes, _ = run_import(spikingjelly_import(g), g, values["encoding"])
    lifs = [k for k in seg["nodes"] if k in spikes]
    mismatches, first, gap = divergence_gap(c.folded, values, spikes, lifs)
    assert first is not None and first.step == 0 and gap == 0.0, (mismatches, first, gap)


def test_a_broken_export_is_caught_by_the_spike_comparison(tmp_path):
    """The comparison above can fail: drop the bias of a synapse on the residual stream (block 1's conv2, summed
    into the stream's relay) and spikes diverge away from any threshold tie."""
    c, values = compiled("gac-msresnet-tiny", "host")
    (seg, g), = chip_graphs("gac-msresnet-tiny", "host", AUTO, tmp_path)
    broken = copy.deepcopy(g)
    carrier = "layer1.0.conv2_s.layer.module"
    assert np.abs(broken.nodes[carrier].bias).max() > 0
    broken.nodes[carrier].bias = np.zeros_like(broken.nodes[carrier].bias)
    spikes, _ = run_import(IMPORTS["snntorch"](broken), broken, values["encoding"])
    _, first, gap = divergence_gap(c.folded, values, spikes, [k for k in seg["nodes"] if k in spikes])
    assert first.layer == "layer2.0.lif1" and gap > 100 * TIE_TOL  # the first neuron reading the stream


@pytest.mark.parametrize("arch, tcja, neuron", [("gac-msresnet-tiny", "host", "layer1.0.lif2"),
                                                ("tcja-tiny", "host", "conv.1"), ("tcja-tiny", "fold", "conv.3.0")])
def test_threshold_ties_follow_the_source_comparison(arch, tcja, neuron, tmp_path):
    """Inputs on a 1/4 grid keep every membrane potential exact in float32 and hit the threshold exactly: GAC's
    neurons (v > 1) and the OR neurons (v > 1/2) must stay silent there, TCJA's (v >= 1) must fire."""
    c, _ = compiled(arch, tcja)
    lif = c.folded.nodes[neuron]
    graph = next(g for seg, g in chip_graphs(arch, tcja, AUTO, tmp_path) if neuron in seg["nodes"])
    x = torch.randint(-2, 7, (c.folded.timesteps, 16, *lif.shape)).float() / 4
    want, v = lif.trace(x)
    assert int((v == lif.threshold).sum()) > 100  # the ties are there
    for label, build in IMPORTS.items():
        module = build(graph).get_submodule(neuron.replace(".", "_"))
        stateful = "state" in inspect.signature(module.forward).parameters  # snntorch's keep theirs inside
        state, spikes = None, []
        with torch.no_grad():
            for x_t in x:
                if stateful:
                    z, state = module(x_t, state)
                else:
                    z = module(x_t)
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


@pytest.mark.parametrize("arch, tcja", [("gac-msresnet-tiny", "host"), ("tcja-tiny", "fold")])
def test_peers_take_our_decays_exactly(arch, tcja, tmp_path):
    """SpikingJelly and snntorch turn dt / tau into their decays in float64: the float64 time constants give the
    current no memory and the membrane the source's decay, bit for bit (float32's 1e-4 is below 1e-4, a tau_syn
    SpikingJelly refuses)."""
    c, _ = compiled(arch, tcja)
    (seg, g), = chip_graphs(arch, tcja, AUTO, tmp_path)
    sj, snn = spikingjelly_import(g), snntorch_import(g)
    for name, node in g.nodes.items():
        if isinstance(node, nir.CubaLIF):
            decay, key = c.folded.nodes[name].decay, name.replace(".", "_")
            neuron = sj.get_submodule(key).module
            assert (neuron.c_decay, neuron.v_decay) == (0.0, decay), name
            synaptic = snn.get_submodule(key)
            assert float(synaptic.alpha) == 0.0 and float(synaptic.beta) == decay, name
