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
from .files import jsonable

NODE_TYPES = {cls.__name__: cls for cls in (ir.Input, ir.Conv2d, ir.Linear, ir.BatchNorm, ir.LIF, ir.MaxPool2d,
                                            ir.AvgPool2d, ir.Flatten, ir.Add, ir.HostModule, ir.Readout)}
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


def graph_from_json(data: dict, weights: dict[str, np.ndarray] | None = None) -> ir.Graph:
    """The graph `graph_to_json` wrote, tensors on the meta device; `weights` (synapse name → array) replaces the
    weight of the synapses it names with real values."""
    weights = weights or {}
    nodes = {}
    for entry in data["nodes"]:
        cls = NODE_TYPES[entry["op"]]
        kwargs = {k: _field_value(k, v) for k, v in entry["fields"].items()}
        for name, t in entry["tensors"].items():
            kwargs[name] = torch.empty(t["shape"], dtype=getattr(torch, t["dtype"]), device="meta")
        node = cls(**kwargs)
        if node.name in weights:
            node.weight = torch.from_numpy(np.asarray(weights[node.name]))
        nodes[node.name] = node
    return ir.Graph(nodes, data["timesteps"], tuple(data["input_shape"]), data["arch"],
                    segments=data["segments"], cuts=data["cuts"])
