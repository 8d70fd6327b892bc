"""Optimizer passes: small functions from graph to graph, applied in an explicit order (`PIPELINE`).

Each pass returns a new graph (nodes it changes are new objects; the input graph is left as it was) and adds a
line to `graph.notes` saying what it did, for the export report.
"""
import dataclasses

import torch

from . import ir
from .quantize import calibration_batch

SYNAPSES = (ir.Conv2d, ir.Linear)


def _rewire(nodes: dict[str, ir.Node], old: str, new: str) -> None:
    for node in nodes.values():
        if old in node.inputs:
            node.inputs = [new if i == old else i for i in node.inputs]


def _scale_synapse(node, scale: torch.Tensor, shift: torch.Tensor | None = None):
    """A copy of a Conv2d/Linear with y' = scale * y + shift per output channel."""
    view = (-1,) + (1,) * (node.weight.dim() - 1)
    bias = node.bias if node.bias is not None else torch.zeros(node.weight.shape[0], dtype=node.weight.dtype)
    new_bias = bias * scale + (shift if shift is not None else 0.0)
    return dataclasses.replace(node, weight=node.weight * scale.view(view), bias=new_bias, inputs=list(node.inputs))


def fold_batchnorm(graph: ir.Graph) -> ir.Graph:
    """BN(conv(x)) → conv'(x) with w' = w * g / sqrt(var + eps) per output channel and
    b' = (b - mean) * g / sqrt(var + eps) + beta, wherever the BN is the synapse's only reader.

    Preserves: the graph's function up to float rounding (spikes change only at exact threshold ties)."""
    nodes = {k: dataclasses.replace(v, inputs=list(v.inputs)) for k, v in graph.nodes.items()}
    folded = []
    for name, bn in list(nodes.items()):
        if not isinstance(bn, ir.BatchNorm):
            continue
        src = nodes[bn.inputs[0]]
        if not isinstance(src, SYNAPSES) or graph.consumers(src.name) != [name]:
            continue
        scale = bn.weight / torch.sqrt(bn.var + bn.eps)
        nodes[src.name] = _scale_synapse(src, scale, bn.bias - bn.mean * scale)
        del nodes[name]
        _rewire(nodes, name, src.name)
        folded.append(name)
    return graph.replace(nodes, f"fold_batchnorm: folded {len(folded)} BatchNorm layers into the synapse before them")


def normalise_neurons(graph: ir.Graph) -> ir.Graph:
    """Bring every LIF to Loihi's form v = decay * v + x (input_scale 1): SpikingJelly's decay_input (x / tau) moves
    into the weights and bias of the synapse that feeds the neuron alone.

    Preserves: the function up to float rounding (for tau = 2 the scaling by 1/2 is exact; the charge's float order
    changes from v + (x - v)/tau to (1 - 1/tau) v + x/tau, so spikes change only at exact threshold ties)."""
    nodes = {k: dataclasses.replace(v, inputs=list(v.inputs)) for k, v in graph.nodes.items()}
    moved, kept = 0, []
    for name, lif in list(nodes.items()):
        if not isinstance(lif, ir.LIF) or (lif.input_scale == 1.0 and lif.tau is None):
            continue
        src = nodes[lif.inputs[0]]
        if isinstance(src, SYNAPSES) and graph.consumers(src.name) == [name]:
            nodes[src.name] = _scale_synapse(src, torch.full((src.weight.shape[0],), lif.input_scale))
            nodes[name] = dataclasses.replace(lif, input_scale=1.0, tau=None)
            moved += 1
        else:
            nodes[name] = dataclasses.replace(lif, tau=None)
            kept.append(name)
    note = f"normalise_neurons: moved 1/tau into the synapses of {moved} neurons"
    if kept:
        note += f"; kept an input scale on {', '.join(kept)} (their input is shared or not a synapse)"
    return graph.replace(nodes, note)


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
        if isinstance(node, SYNAPSES):
            return path
        if not isinstance(node, (ir.MaxPool2d, ir.AvgPool2d, ir.Flatten)):
            return None


def _scale_input_channels(node, scale: torch.Tensor, features_per_channel: int):
    """A copy of a synapse with its input channel c scaled by scale[c] (for Linear, over c's flattened features)."""
    if isinstance(node, ir.Conv2d):
        weight = node.weight * scale.view(1, -1, 1, 1)
    else:
        weight = node.weight * scale.repeat_interleave(features_per_channel).view(1, -1)
    return dataclasses.replace(node, weight=weight, inputs=list(node.inputs))


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
    nodes = {k: dataclasses.replace(v, inputs=list(v.inputs)) for k, v in graph.nodes.items()}
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
    for batch in calibration.split(calibration_batch(graph)):
        graph.run(batch, observe=observe)
    return {g: (total / counts[g]).float() for g, total in sums.items()}


def maxpool_to_or(graph: ir.Graph) -> ir.Graph:
    """Max-pool over binary spikes is an OR: a depthwise sum-pool synapse (weights 1) into a neuron without memory
    that fires when its window holds at least one spike (v = x, fire on x > 1/2). Loihi has no max-pool; this
    costs one synapse layer and one neuron layer (and so one step of latency on Lava).

    Preserves: the spikes exactly (counts are integers: count > 1/2 iff count >= 1)."""
    nodes = {}
    converted = []
    for name, node in graph.nodes.items():
        src = graph.nodes[node.inputs[0]] if node.inputs else None
        if isinstance(node, ir.MaxPool2d) and src.kind == "binary":
            channels = src.shape[0]
            pool = ir.Conv2d(f"{name}.sum", list(node.inputs), weight=torch.ones(channels, 1, *node.kernel_size),
                             stride=node.stride, padding=node.padding, groups=channels)
            nodes[pool.name] = pool
            nodes[name] = ir.LIF(name, [pool.name], decay=0.0, threshold=0.5)
            converted.append(name)
        else:
            nodes[name] = dataclasses.replace(node, inputs=list(node.inputs))
    return graph.replace(nodes, f"maxpool_to_or: {len(converted)} max-pools over binary spikes became "
                                "sum-pool + fire-on-one neurons")


def _pool_matrix(pool: ir.AvgPool2d, in_hw: tuple) -> torch.Tensor:
    """The average-pool of one channel as a matrix `[out_h*out_w, in_h*in_w]` (pooling acts on channels alike)."""
    basis = torch.eye(in_hw[0] * in_hw[1], dtype=torch.float64).view(-1, 1, *in_hw)
    probe = dataclasses.replace(pool, inputs=[])
    return probe.run(basis.unsqueeze(0)).squeeze(0).flatten(1).T


def fold_avgpool_linear(graph: ir.Graph) -> ir.Graph:
    """AvgPool2d → Flatten → Linear becomes one Linear on the unpooled spikes: W'[k, c, p] = Σ_q W[k, c, q] P[q, p]
    with P the pooling matrix of one channel. The MS-ResNet head then reads binary spikes instead of averages.

    Preserves: the function up to float rounding."""
    nodes = {k: dataclasses.replace(v, inputs=list(v.inputs)) for k, v in graph.nodes.items()}
    folded = []
    for name, pool in graph.nodes.items():
        readers = graph.consumers(name)
        if not isinstance(pool, ir.AvgPool2d) or len(readers) != 1:
            continue
        flat = graph.nodes[readers[0]]
        linear_readers = graph.consumers(flat.name)
        if not isinstance(flat, ir.Flatten) or len(linear_readers) != 1:
            continue
        linear = graph.nodes[linear_readers[0]]
        if not isinstance(linear, ir.Linear):
            continue
        src = graph.nodes[pool.inputs[0]]
        channels, *hw = src.shape
        matrix = _pool_matrix(pool, tuple(hw)).to(linear.weight.dtype)  # [out_hw, in_hw]
        w = linear.weight.view(linear.weight.shape[0], channels, -1) @ matrix
        nodes[flat.name] = ir.Flatten(flat.name, [src.name])
        nodes[linear.name] = dataclasses.replace(linear, weight=w.flatten(1), inputs=[flat.name])
        del nodes[name]
        folded.append(name)
    return graph.replace(nodes, f"fold_avgpool_linear: folded {', '.join(folded) or 'no'} average-pool(s) into the "
                                "linear layer after them")


def fold_avgpool_conv(graph: ir.Graph) -> ir.Graph:
    """AvgPool2d (kernel k, stride s) → Conv2d (kernel K, stride S, padding P) becomes one Conv2d on the unpooled
    input, kernel (K-1)s + k, stride S s, padding P s:

        W'[o, c, i s + a, j s + b] += W[o, c, i, j] / k²     (0 <= a, b < k)

    exact where the pool covers its input to the last row and column (out·s >= in on both axes), so that the conv's
    zero padding of the pooled map is zero padding of the input too. TCJA's CIFAR10-DVS and N-Caltech101 nets pool
    spikes this way; the conv then reads binary spikes on chip, with k² times the weights per output.

    Preserves: the function up to float rounding."""
    nodes = {k: dataclasses.replace(v, inputs=list(v.inputs)) for k, v in graph.nodes.items()}
    folded = []
    for name, pool in graph.nodes.items():
        readers = graph.consumers(name)
        if not isinstance(pool, ir.AvgPool2d) or pool.output_size is not None or len(readers) != 1:
            continue
        conv = graph.nodes[readers[0]]
        in_hw = graph.nodes[pool.inputs[0]].shape[1:]
        if not (isinstance(conv, ir.Conv2d) and not isinstance(conv.padding, str) and tuple(conv.dilation) == (1, 1)
                and all(o * s >= i for o, s, i in zip(pool.shape[1:], pool.stride, in_hw))):
            continue
        (k_h, k_w), (s_h, s_w) = pool.kernel_size, pool.stride
        out_c, in_c, big_h, big_w = conv.weight.shape
        weight = torch.zeros(out_c, in_c, (big_h - 1) * s_h + k_h, (big_w - 1) * s_w + k_w, dtype=torch.float64)
        for a in range(k_h):
            for b in range(k_w):
                weight[:, :, a:a + big_h * s_h:s_h, b:b + big_w * s_w:s_w] += conv.weight.double() / (k_h * k_w)
        nodes[conv.name] = dataclasses.replace(
            conv, inputs=list(pool.inputs), weight=weight.to(conv.weight.dtype),
            stride=(conv.stride[0] * s_h, conv.stride[1] * s_w), padding=(conv.padding[0] * s_h, conv.padding[1] * s_w))
        del nodes[name]
        folded.append(f"{name} into {conv.name} (kernel {tuple(weight.shape[2:])})")
    return graph.replace(nodes, f"fold_avgpool_conv: folded {'; '.join(folded) or 'no average-pool'} into the conv "
                                "after it")


PIPELINE = [fold_batchnorm, normalise_neurons, fold_avgpool_linear, fold_avgpool_conv, maxpool_to_or]


def run_passes(graph: ir.Graph, passes=None) -> ir.Graph:
    for p in PIPELINE if passes is None else passes:
        graph = p(graph).infer()
    return graph
