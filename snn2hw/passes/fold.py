"""Folding passes: BatchNorm into the synapse before it, SpikingJelly's input scale into the synapse that feeds a
neuron, and (`--tcja fold`) TCJA's gates into static per-channel scales.

Each pass returns a new graph (nodes it changes are new objects; the input graph is left as it was) and adds a
line to `graph.notes` saying what it did, for the export report.
"""
import torch

from .. import ir
from .relay import identity_synapse


def _rewire(nodes: dict[str, ir.Node], old: str, new: str) -> None:
    for node in nodes.values():
        if old in node.inputs:
            node.inputs = [new if i == old else i for i in node.inputs]


def _scale_synapse(node, scale: torch.Tensor, shift: torch.Tensor | None = None):
    """A copy of a Conv2d/Linear with y' = scale * y + shift per output channel."""
    view = (-1,) + (1,) * (node.weight.dim() - 1)
    bias = node.bias if node.bias is not None else torch.zeros(node.weight.shape[0], dtype=node.weight.dtype)
    new_bias = bias * scale + (shift if shift is not None else 0.0)
    return node.copy(weight=node.weight * scale.view(view), bias=new_bias)


def fold_batchnorm(graph: ir.Graph) -> ir.Graph:
    """BN(conv(x)) → conv'(x) with w' = w * g / sqrt(var + eps) per output channel and
    b' = (b - mean) * g / sqrt(var + eps) + beta, wherever the BN is the synapse's only reader.

    Preserves: the graph's function up to float rounding (spikes change only at exact threshold ties)."""
    nodes = graph.copied_nodes()
    folded = []
    for name, bn in list(nodes.items()):
        if not isinstance(bn, ir.BatchNorm):
            continue
        src = nodes[bn.inputs[0]]
        if not isinstance(src, ir.SYNAPSES) or graph.consumers(src.name) != [name]:
            continue
        scale = bn.weight / torch.sqrt(bn.var + bn.eps)
        nodes[src.name] = _scale_synapse(src, scale, bn.bias - bn.mean * scale)
        del nodes[name]
        _rewire(nodes, name, src.name)
        folded.append(name)
    return graph.replace(nodes, f"fold_batchnorm: folded {len(folded)} BatchNorm layers into the synapse before them")


def normalise_neurons(graph: ir.Graph) -> ir.Graph:
    """Bring every LIF to Loihi's form v = decay * v + x (input_scale 1): SpikingJelly's decay_input (x / tau) moves
    into the weights and bias of the synapse that feeds the neuron alone, or into every term of the sum that feeds it
    alone (a residual join: `_scale_sum`).

    Preserves: the function up to float rounding (for tau = 2 the scaling by 1/2 is exact; the charge's float order
    changes from v + (x - v)/tau to (1 - 1/tau) v + x/tau, so spikes change only at exact threshold ties)."""
    nodes = graph.copied_nodes()
    moved, kept, before = 0, [], {}
    for name, lif in list(nodes.items()):
        if not isinstance(lif, ir.LIF) or (lif.input_scale == 1.0 and lif.tau is None):
            continue
        src = nodes[lif.inputs[0]]
        if isinstance(src, ir.SYNAPSES) and graph.consumers(src.name) == [name]:
            nodes[src.name] = _scale_synapse(src, torch.full((src.weight.shape[0],), lif.input_scale))
        elif isinstance(src, ir.Add) and graph.consumers(src.name) == [name]:
            before[src.name] = _scale_sum(graph, nodes, src, lif.input_scale)
        else:
            nodes[name] = lif.copy(tau=None)
            kept.append(name)
            continue
        nodes[name] = lif.copy(input_scale=1.0, tau=None)
        moved += 1
    note = f"normalise_neurons: moved 1/tau into the synapses of {moved} neurons"
    if kept:
        note += f"; kept an input scale on {', '.join(kept)} (their input is shared or not a synapse)"
    ordered = {}
    for name, node in nodes.items():  # a new synapse runs just before the sum that reads it
        ordered.update({s.name: s for s in before.get(name, [])})
        ordered[name] = node
    return graph.replace(ordered, note)


def _scale_sum(graph: ir.Graph, nodes: dict[str, ir.Node], add: ir.Add, scale: float) -> list[ir.Node]:
    """Scale every term of `add` (and its bias) by `scale`, in `nodes`: a synapse that only the sum reads in its
    weights and bias, any other term (spikes, a shared value) through a new one-to-one synapse of weight `scale`,
    `<add>.scaled.<term>`. → the new synapses."""
    new, renamed = [], {}
    for i in dict.fromkeys(add.inputs):  # a term read twice is scaled once
        term = nodes[i]
        if isinstance(term, ir.SYNAPSES) and graph.consumers(i) == [add.name]:
            nodes[i] = _scale_synapse(term, torch.full((term.weight.shape[0],), scale))
            renamed[i] = i
        else:
            one_to_one = identity_synapse(f"{add.name}.scaled.{i}", i, graph.nodes[i].shape)
            new.append(one_to_one.copy(weight=one_to_one.weight * scale))
            renamed[i] = new[-1].name
    nodes[add.name] = add.copy(inputs=[renamed[i] for i in add.inputs],
                               bias=None if add.bias is None else add.bias * scale)
    return new


def _chain_to_synapse(graph: ir.Graph, start: str) -> list[str] | None:
    """The nodes from `start`'s only reader through pooling/flatten to the first synapse, if that path is a chain."""
    path, name = [], start
    while True:
        readers = graph.consumers(name)
        if len(readers) != 1:
            return None
        name = readers[0]
        path.append(name)
        node = graph.nodes[name]
        if isinstance(node, ir.SYNAPSES):
            return path
        if not isinstance(node, (ir.MaxPool2d, ir.AvgPool2d, ir.Flatten)):
            return None


def _scale_input_channels(node, scale: torch.Tensor, features_per_channel: int):
    """A copy of a synapse with its input channel c scaled by scale[c] (for Linear, over c's flattened features)."""
    if isinstance(node, ir.Conv2d):
        weight = node.weight * scale.view(1, -1, 1, 1)
    else:
        weight = node.weight * scale.repeat_interleave(features_per_channel).view(1, -1)
    return node.copy(weight=weight)


@torch.no_grad()
def fold_tcja_gates(graph: ir.Graph, calibration: torch.Tensor) -> ir.Graph:
    """`--tcja fold`: each TCJA gate y = x * g[t, n, c] becomes a static per-channel scale ḡ[c] (g's mean over the
    calibration samples and steps), folded into the input channels of the next synapse. Max- and average-pooling
    between them commute with a positive per-channel scale, so they stay where they are, now on binary spikes.

    Preserves: not the function: the gate loses its dependence on time and sample (the ladder reports the accuracy
    cost). What it buys: no host round trip, the backbone is causal and runs on chip in one piece."""
    foldable = {}  # gate → the synapse its static scale folds into
    for name, node in graph.nodes.items():
        if isinstance(node, ir.HostModule) and hasattr(node.module, "gate"):
            path = _chain_to_synapse(graph, name)
            if path is not None and getattr(graph.nodes[path[-1]], "groups", 1) == 1:
                foldable[name] = graph.nodes[path[-1]]
    gate_sums = _mean_gates(graph, foldable, calibration)
    nodes = graph.copied_nodes()
    folded = []
    for name, synapse in foldable.items():
        gate = gate_sums[name]
        per_channel = int(torch.tensor(graph.nodes[synapse.inputs[0]].shape).prod()) // len(gate)
        nodes[synapse.name] = _scale_input_channels(synapse, gate, per_channel)
        del nodes[name]
        _rewire(nodes, name, graph.nodes[name].inputs[0])
        folded.append(f"{name} (mean gate {gate.mean():.3f}, range {gate.min():.3f}..{gate.max():.3f})")
    return graph.replace(nodes, "fold_tcja_gates: replaced by static per-channel scales folded into the next "
                                f"synapse: {'; '.join(folded) or 'none'}")


def _mean_gates(graph: ir.Graph, gates, calibration: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each gate's g[t, n, c] averaged over the calibration samples and steps → [C] (float32), reduced batch by
    batch while the graph runs: official TCJA models' recorded activations would take tens of GB."""
    reads = {graph.nodes[g].inputs[0]: g for g in gates}
    sums, counts = {}, {}

    def observe(name, value):
        if name in reads:
            g = reads[name]
            gate = graph.nodes[g].module.gate(value)  # [T, N, C]
            sums[g] = sums.get(g, 0) + gate.double().sum(dim=(0, 1))
            counts[g] = counts.get(g, 0) + gate.shape[0] * gate.shape[1]
    graph.observe_in_batches(calibration, observe)
    return {g: (total / counts[g]).float() for g, total in sums.items()}
