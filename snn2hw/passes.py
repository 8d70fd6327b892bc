"""Optimizer passes: small functions from graph to graph, applied in an explicit order (`PIPELINE`).

Each pass returns a new graph (nodes it changes are new objects; the input graph is left as it was) and adds a
line to `graph.notes` saying what it did, for the export report.
"""
import dataclasses

import torch

from . import ir

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


PIPELINE = [fold_batchnorm, normalise_neurons]


def run_passes(graph: ir.Graph, passes=PIPELINE) -> ir.Graph:
    for p in passes:
        graph = p(graph).infer()
    return graph
