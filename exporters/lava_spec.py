"""The chip segment as Lava will run it: a JSON structure plus integer arrays (`chip/<segment>.json` + `.npz`).

This is the exact, Lava-facing form of a quantized chip segment; the Lava runner builds its processes from it
alone (it runs in the Lava environment, which has neither torch nor our IR). Node ops:

    input   a tensor the host sends: `payload` "spikes" (0/1), "graded" (round(value · 2^q)) or "current"
            (round(value · σ), injected straight into the neuron's input port: no synapse, so no delay)
    conv    Lava Conv (torch layout weights `(Cout, Cin/g, kH, kW)`, stride/padding/dilation in (H, W)); no weight_exp
    dense   Lava Dense (`(out, in)` weights, weight_exp 0)
    lif     Lava LIF with du, dv, vth, per-neuron bias_mant and a bias_exp; `synapses` feed it, each with the `delay`
            (extra steps) its spikes must wait so all of them arrive together; `injected` inputs add currents
    flatten a reshape of its input's spikes to one axis (C, H, W order)

Time: `depth` is the Lava step at which a node's logical step 0 appears. Inputs and injected currents have the
depth of the node they feed minus one for a synapse, or equal for a current; every Dense/Conv adds one step (it
sends last step's accumulation first). Outputs are read at their depth: logical step t of node X is Lava step
t + depth(X), so a segment runs T + max depth steps. A neuron with a bias must not integrate before its first
input arrives: the runner resets it (LIFReset) at its depth.

Arrays: weights and bias mantissas are stored in the smallest integer type that holds their Loihi format (int16 for
both); readers cast them to the widths Lava computes in. A readout's bias (host side) stays float64.
"""
import numpy as np

from .. import ir
from ..files import whole_numbers
from ..hardware_sims import loihi_formats as fmt


def _in_format(values, low: int, high: int, what: str) -> np.ndarray:
    """`values` in the smallest integer type holding [low, high]: int64 would make an ImageNet ResNet's .npz four
    times larger. Refuses values outside the range, which the cast would wrap."""
    values = np.asarray(values)
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"{what}: values outside the Loihi format [{low}, {high}]")
    return values.astype(next(t for t in (np.int8, np.int16, np.int32, np.int64)
                              if np.iinfo(t).min <= low and high <= np.iinfo(t).max))


def _hw(v) -> list[int]:
    return [int(x) for x in (v if isinstance(v, (tuple, list)) else (v, v))]


def chip_segment_spec(graph: ir.Graph, segment: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """→ (JSON-ready structure, arrays) of one chip segment of a quantized, partitioned graph."""
    members = set(segment["nodes"])
    nodes = graph.nodes
    depth: dict[str, int] = {}
    spec_nodes, arrays, inputs = [], {}, {}

    def input_of(src: str, consumer: str, payload: str, frac_bits: int = 0) -> str:
        key = f"{src}->{consumer}"
        if key not in inputs:
            inputs[key] = {"name": key, "tensor": src, "to": consumer, "payload": payload,
                           "frac_bits": frac_bits, "shape": list(nodes[src].shape)}
        return key

    for name in segment["nodes"]:
        node = nodes[name]
        q = node.quant
        if isinstance(node, ir.SYNAPSES):
            src = node.inputs[0]
            if src in members:
                source, d = src, depth[src]
            else:
                kind = "spikes" if nodes[src].kind == "binary" else "graded"
                source, d = input_of(src, name, kind, q["payload_frac_bits"]), 0
                inputs[source]["depth"] = 0
            arrays[f"{name}/weight"] = _in_format(q["weight"], fmt.WEIGHT_MIN_MIXED, fmt.WEIGHT_MAX, f"{name} weights")
            entry = {"name": name, "op": "conv" if isinstance(node, ir.Conv2d) else "dense", "input": source,
                     "weight": f"{name}/weight", "num_message_bits": q["num_message_bits"],
                     "shape_in": list(nodes[src].shape), "shape": list(node.shape)}
            if isinstance(node, ir.Conv2d):
                entry.update(stride=_hw(node.stride), padding=_hw(node.padding), dilation=_hw(node.dilation),
                             groups=node.groups)
            depth[name] = d + 1
        elif isinstance(node, ir.Add):
            depth[name] = max(depth[i] for i in node.inputs if i in members)
            continue  # an Add is the LIF's set of synapses: it becomes the LIF's `synapses` list
        elif isinstance(node, ir.LIF):
            src = nodes[node.inputs[0]]
            feeds = [f.name for f in graph.input_port_feeds(name)] if src.name in members else [src.name]
            synapses = [f for f in feeds if f in members]
            d = max([depth[f] for f in synapses], default=0)
            injected = [input_of(i, name, "current") for i in q["injected"]]
            for key in injected:
                inputs[key].update(depth=d, scale=q["scale"])
            arrays[f"{name}/bias_mant"] = _in_format(np.broadcast_to(q["bias_mant"], node.shape), fmt.BIAS_MANT_MIN,
                                                     fmt.BIAS_MANT_MAX, f"{name} bias_mant")
            entry = {"name": name, "op": "lif", "shape": list(node.shape), "du": q["du"], "dv": q["dv"],
                     "vth": q["vth"], "bias_mant": f"{name}/bias_mant", "bias_exp": q["bias_exp"],
                     "synapses": [{"name": f, "delay": d - depth[f]} for f in synapses], "injected": injected}
            depth[name] = d
        elif isinstance(node, ir.Flatten):
            entry = {"name": name, "op": "flatten", "input": node.inputs[0], "shape": list(node.shape)}
            depth[name] = depth[node.inputs[0]]
        else:
            raise ValueError(f"chip node {name} ({type(node).__name__}) has no Lava form")
        entry["depth"] = depth[name]
        spec_nodes.append(entry)

    outputs = sorted({i for n in nodes.values() if n.name not in members for i in n.inputs if i in members},
                     key=segment["nodes"].index)
    lifs = [n["name"] for n in spec_nodes if n["op"] == "lif"]
    spec = {"format": fmt.CHIP_SPEC_FORMAT, "segment": segment["name"], "timesteps": graph.timesteps,
            "inputs": list(inputs.values()), "nodes": spec_nodes,
            "outputs": [_output(nodes[o], depth[o], arrays) for o in outputs],
            "spiking_layers": lifs, "steps": graph.timesteps + max(depth.values(), default=0)}
    return spec, arrays


def _output(node: ir.Node, depth: int, arrays: dict) -> dict:
    """What leaves the segment: spikes, or a readout synapse's accumulations (host: a / scale + bias)."""
    out = {"name": node.name, "depth": depth, "shape": list(node.shape)}
    if isinstance(node, ir.LIF):
        return {**out, "kind": "spikes"}
    if node.bias is not None:
        arrays[f"{node.name}/bias"] = node.bias.double().numpy()
    return {**out, "kind": "accumulation", "scale": node.quant["scale"],
            "bias": f"{node.name}/bias" if node.bias is not None else None}


OPS = ("conv", "dense", "lif", "flatten")
PAYLOADS = ("spikes", "graded", "current")


def _ints(value, count: int | None = None, low: int = 0) -> bool:
    """`value` is an int >= `low` (`count` None), or a list of `count` of them (`count` 0: any non-empty list)."""
    if count is None:
        return whole_numbers([value], low)
    return isinstance(value, list) and bool(value) and count in (0, len(value)) and whole_numbers(value, low)


def _integer_array(arrays: dict, key, shape=None) -> bool:
    a = arrays.get(key) if isinstance(key, str) else None
    return a is not None and np.issubdtype(a.dtype, np.integer) and (shape is None or tuple(a.shape) == tuple(shape))


def _named(table: dict, key):
    """`table[key]` where `key` is a name in it; None for anything else a damaged spec may hold there."""
    return table.get(key) if isinstance(key, str) else None


def spec_problem(spec, arrays: dict[str, np.ndarray]) -> str | None:
    """What makes `spec` + `arrays` (as read back from a deployment) something `chip_segment_spec` cannot have
    written, in words, or None: the format version, every node's op, the names it reads (inputs and earlier nodes),
    the integer arrays it names with the shapes its geometry implies, the outputs and spiking layers."""
    if not isinstance(spec, dict) or spec.get("format") != fmt.CHIP_SPEC_FORMAT:
        return f"not a chip spec of format {fmt.CHIP_SPEC_FORMAT}"
    if not _ints(spec.get("timesteps"), low=1) or not all(isinstance(spec.get(k), list)
                                                           for k in ("inputs", "nodes", "outputs", "spiking_layers")):
        return "its timesteps, inputs, nodes, outputs or spiking_layers are missing"
    shapes = {}
    for entry in spec["inputs"]:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("name", "tensor", "to")) \
                or entry.get("payload") not in PAYLOADS \
                or not _ints(entry.get("frac_bits")) or entry["frac_bits"] >= fmt.GRADED_MESSAGE_BITS or not _ints(entry.get("shape"), 0, low=1) \
                or (entry["payload"] == "current" and not isinstance(entry.get("scale"), (int, float))):
            return f"input {entry.get('name') if isinstance(entry, dict) else entry!r} is malformed"
        shapes[entry["name"]] = tuple(entry["shape"])
    ops = {}
    for node in spec["nodes"]:
        name = node.get("name") if isinstance(node, dict) else None
        if not isinstance(name, str) or name in shapes or node.get("op") not in OPS or not _ints(node.get("shape"), 0,
                                                                                                  low=1):
            return f"node {name!r} is malformed (op {node.get('op') if isinstance(node, dict) else None!r})"
        shape, op = tuple(node["shape"]), node["op"]
        if op in ("conv", "dense", "flatten") and _named(shapes, node.get("input")) is None:
            return f"node {name} reads {node.get('input')!r}, which nothing before it produces"
        if op in ("conv", "dense") and not _ints(node.get("num_message_bits")):
            return f"synapse {name} has no message width"
        if op == "conv":
            in_shape = shapes[node["input"]]
            if not all(_ints(node.get(k), 2, low) for k, low in (("stride", 1), ("padding", 0), ("dilation", 1))) \
                    or not _ints(node.get("groups"), low=1) or len(in_shape) != 3 or len(shape) != 3 \
                    or not _integer_array(arrays, node.get("weight")) or arrays[node["weight"]].ndim != 4 \
                    or arrays[node["weight"]].shape[0] != shape[0] \
                    or arrays[node["weight"]].shape[1] * node["groups"] != in_shape[0] \
                    or fmt.conv_output_hw(in_shape[1:], arrays[node["weight"]].shape[2:], node["stride"],
                                          node["padding"], node["dilation"]) != shape[1:]:
                return f"conv {name}: its geometry, weights and shapes disagree"
        elif op == "dense":
            if not _integer_array(arrays, node.get("weight"), (shape[0], int(np.prod(shapes[node["input"]])))):
                return f"dense {name}: its weights are not integers of shape ({shape[0]}, inputs)"
        elif op == "flatten" and int(np.prod(shape)) != int(np.prod(shapes[node["input"]])):
            return f"flatten {name}: its size differs from its input's"
        elif op == "lif":
            synapses = node.get("synapses") if isinstance(node.get("synapses"), list) else None
            injected = node.get("injected") if isinstance(node.get("injected"), list) else None
            if not all(_ints(node.get(k)) for k in ("du", "dv", "vth")) or not _ints(node.get("bias_exp"), low=-64) \
                    or not _integer_array(arrays, node.get("bias_mant"), shape) or synapses is None \
                    or injected is None or not all(isinstance(s, dict) and _named(ops, s.get("name")) in ("conv", "dense")
                                                   and _named(shapes, s["name"]) == shape and _ints(s.get("delay"))
                                                   for s in synapses) \
                    or not all(_named(shapes, k) == shape for k in injected) or not synapses + injected:
                return f"neuron {name}: its parameters, bias, synapses or injected inputs are malformed"
        if op in ("conv", "dense", "lif", "flatten") and not _ints(node.get("depth")):
            return f"node {name} has no depth"
        shapes[name], ops[name] = shape, op
    for out in spec["outputs"]:
        if not isinstance(out, dict) or _named(ops, out.get("name")) is None or out.get("kind") not in ("spikes", "accumulation") \
                or (out["kind"] == "accumulation" and (not isinstance(out.get("scale"), (int, float))
                                                       or (out.get("bias") is not None and _named(arrays, out["bias"]) is None))):
            return f"output {out.get('name') if isinstance(out, dict) else out!r} is malformed"
    if not all(_named(ops, n) == "lif" for n in spec["spiking_layers"]):
        return "its spiking_layers name something that is not one of its neurons"
    return None
