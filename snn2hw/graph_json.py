"""The IR's structure as JSON (`graph.json` in a deployment directory), kept apart from the IR itself.

What is written: per node its op (the IR class), name, inputs, per-step shape, value kind, placement and every scalar
field (stride, decay, threshold, a host module's op counts, ...); per tensor field only its shape and dtype. What is
read back: the same graph with those tensors on the meta device (shape only, nothing allocated), except the weights
of chip synapses, which a deployment supplies from its chip arrays (the integers the chip holds). That is everything
the energy accounting reads, so `energy DEPLOY_DIR` counts on the files without rebuilding a model; nothing read
back can run in float (the host modules themselves are not stored).
"""
import dataclasses

import numpy as np
import torch
from torch import nn

from . import ir
from .files import jsonable, whole_numbers

NODE_TYPES = {cls.__name__: cls for cls in (ir.Input, ir.Conv2d, ir.Linear, ir.BatchNorm, ir.LIF, ir.Relay,
                                            ir.MaxPool2d, ir.AvgPool2d, ir.Flatten, ir.Add, ir.HostModule,
                                            ir.Readout)}
_NOT_STORED = ("quant",)  # the chip integers live in the chip files


def graph_to_json(graph: ir.Graph) -> dict:
    nodes = []
    for node in graph.nodes.values():
        fields, tensors = {}, {}
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if f.name in _NOT_STORED or isinstance(value, nn.Module):
                continue
            if isinstance(value, torch.Tensor):
                tensors[f.name] = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
            else:
                fields[f.name] = jsonable(value)
        nodes.append({"op": type(node).__name__, "fields": fields, "tensors": tensors})
    return {"timesteps": graph.timesteps, "input_shape": list(graph.input_shape), "arch": graph.arch,
            "segments": graph.segments, "cuts": graph.cuts, "nodes": nodes}


def _field_value(name: str, value):
    """JSON lists back to the tuples the IR holds (`inputs` is the one list)."""
    if isinstance(value, list) and name != "inputs":
        return tuple(_field_value("", v) for v in value)
    return value


def _check_node(node: ir.Node, nodes: dict) -> None:
    """What the energy accounting reads of a node, checked: names, edges, shapes, kinds and synapse geometry."""
    if not isinstance(node.name, str) or node.name in nodes or not all(i in nodes for i in node.inputs) \
            or not whole_numbers(node.shape, 1) or node.kind not in ir.KINDS \
            or node.placement not in ("host", "chip", ""):
        raise ValueError(f"node {node.name!r}: its name, inputs, shape, kind or placement is malformed")
    arity = 0 if isinstance(node, ir.Input) else None if isinstance(node, (ir.Add, ir.HostModule)) else 1
    if (arity is not None and len(node.inputs) != arity) or (arity is None and not node.inputs):
        raise ValueError(f"node {node.name}: {len(node.inputs)} inputs for a {type(node).__name__}")
    in_shape = nodes[node.inputs[0]].shape if node.inputs else ()
    if isinstance(node, ir.Conv2d) and not (
            all(whole_numbers(v, low) and len(v) == 2 for v, low in ((node.stride, 1), (node.dilation, 1)))
            and (node.padding in ("same", "valid") or (whole_numbers(node.padding) and len(node.padding) == 2))
            and isinstance(node.groups, int) and node.groups >= 1 and node.weight.dim() == 4 and len(in_shape) == 3
            and len(node.shape) == 3 and node.weight.shape[0] == node.shape[0]
            and node.weight.shape[1] * node.groups == in_shape[0]):
        raise ValueError(f"conv {node.name}: its geometry is malformed")
    if isinstance(node, ir.HostModule) and node.ops is not None and not (whole_numbers(node.ops)
                                                                         and len(node.ops) == 2):
        raise ValueError(f"host module {node.name}: its op counts are malformed")
    if isinstance(node, ir.Readout) and (node.mode not in ("per_step_nt", "per_step_tn", "vote")
                                         or not (isinstance(node.voters, int) and node.voters >= 1)):
        raise ValueError(f"readout {node.name}: its mode is malformed")
    if isinstance(node, ir.Linear) and tuple(node.weight.shape) != (node.shape[0], int(np.prod(in_shape))):
        raise ValueError(f"linear {node.name}: its weights do not map its input to its output")
    if isinstance(node, ir.SYNAPSES + (ir.Add,)) and getattr(node, "bias", None) is not None \
            and not isinstance(node.bias, torch.Tensor):
        raise ValueError(f"node {node.name}: its bias is malformed")


def graph_from_json(data: dict, weights: dict[str, np.ndarray] | None = None) -> ir.Graph:
    """The graph `graph_to_json` wrote, tensors on the meta device; `weights` (synapse name → array) replaces the
    weight of the synapses it names with real values. Raises ValueError, KeyError or TypeError for what
    `graph_to_json` cannot have written."""
    weights = weights or {}
    nodes = {}
    for entry in data["nodes"]:
        cls = NODE_TYPES[entry["op"]]
        kwargs = {k: _field_value(k, v) for k, v in entry["fields"].items()}
        for name, t in entry["tensors"].items():
            if not whole_numbers(t["shape"]):
                raise ValueError(f"tensor {name} has shape {t['shape']!r}")
            kwargs[name] = torch.empty(t["shape"], dtype=getattr(torch, t["dtype"]), device="meta")
        node = cls(**kwargs)
        _check_node(node, nodes)
        if node.name in weights:
            node.weight = torch.from_numpy(np.asarray(weights[node.name]))
        nodes[node.name] = node
    order = list(nodes.values())
    if not (order and isinstance(order[0], ir.Input) and isinstance(order[-1], ir.Readout)
            and sum(isinstance(n, ir.Input) for n in order) == 1
            and whole_numbers([data["timesteps"]], 1) and whole_numbers(data["input_shape"], 1)
            and isinstance(data["arch"], str) and isinstance(data["segments"], list)
            and all(_cut(c, nodes) for c in data["cuts"])):
        raise ValueError("its nodes (an Input first, a Readout last), timesteps, input shape, segments or cuts are "
                         "malformed")
    return ir.Graph(nodes, data["timesteps"], tuple(data["input_shape"]), data["arch"],
                    segments=data["segments"], cuts=data["cuts"])


def _cut(cut, nodes: dict) -> bool:
    return isinstance(cut, dict) and all(isinstance(cut.get(k), str) for k in ("from_segment", "to_segment")) \
        and cut.get("tensor") in nodes and cut.get("to") in nodes and cut.get("kind") in ir.KINDS \
        and cut.get("direction") in ("host->chip", "chip->host") and isinstance(cut.get("waits_for_window"), bool) \
        and isinstance(cut.get("values_per_step"), int) and cut["values_per_step"] >= 0
