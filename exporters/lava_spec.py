"""The chip segment as Lava will run it: a JSON structure plus integer arrays (`chip/<segment>.json` + `.npz`).

This is the exact, Lava-facing form of a quantized chip segment; the Lava runner builds its processes from it
alone (it runs in the Lava environment, which has neither torch nor our IR). Node ops:

    input   a tensor the host sends into one synapse: `payload` "spikes" (0/1) or "graded" (round(value · 2^q),
            16-bit messages as public Loihi 2 runs send them)
    conv    Lava Conv (torch layout weights `(Cout, Cin/g, kH, kW)`, stride/padding/dilation in (H, W)); no weight_exp
    dense   Lava Dense (`(out, in)` weights, weight_exp 0)
    identity  Lava Sparse, one-to-one: every neuron's input times `weight`, shifted by `weight_exp` (y = x where
            the quantizer made w / 2^-weight_exp the ratio of the two scales)
    lif     Lava LIF with du, dv, vth, per-neuron bias_mant and a bias_exp; its `synapses` are summed at its input
    relay   Lava GradedVec with vth 0: sends the sum of its `synapses` each step as a graded spike (24 bits); its
            `scale` σ and carried `bias` (float64, host side) turn it back into float units: a / σ + bias
    flatten a reshape of its input's spikes to one axis (C, H, W order)

Time: `depth` is the Lava step at which a node's logical step 0 appears. Every synapse adds one step (it sends last
step's accumulation first), neurons and flatten none, and the synapses of one neuron read sources of one depth
(`balance_delays`), so no synapse needs a delay. The host sends an input one step before the neuron its synapse
feeds needs it. Outputs are read at their depth: logical step t of node X is Lava step t + depth(X), so a segment
runs T + max depth steps. A LIF with a bias must not integrate before its first input arrives: the runner resets it
(LIFReset) at its depth.

Arrays: weights and bias mantissas are stored in the smallest integer type that holds their Loihi format (int16 for
both); readers cast them to the widths Lava computes in. A relay's carried bias (host side) stays float64.
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
    depth: dict[str, int | None] = {}  # None: a synapse on a host input, which arrives when its neuron needs it
    entries: dict[str, dict] = {}
    arrays, inputs = {}, {}

    for name in segment["nodes"]:
        node = nodes[name]
        q = node.quant
        if isinstance(node, ir.SYNAPSES):
            src = node.inputs[0]
            if src in members:
                source, depth[name] = src, depth[src] + 1
            else:
                source, depth[name] = f"{src}->{name}", None
                inputs[source] = {"name": source, "tensor": src, "to": name,
                                  "payload": "spikes" if nodes[src].kind == "binary" else "graded",
                                  "frac_bits": q["payload_frac_bits"], "shape": list(nodes[src].shape)}
            entry = {"name": name, "input": source, "num_message_bits": q["num_message_bits"],
                     "shape_in": list(nodes[src].shape), "shape": list(node.shape)}
            if q.get("identity"):
                entry.update(op="identity", weight=q["weight"], weight_exp=q["weight_exp"])
            else:
                arrays[f"{name}/weight"] = _in_format(q["weight"], fmt.WEIGHT_MIN_MIXED, fmt.WEIGHT_MAX,
                                                      f"{name} weights")
                entry.update(op="conv" if isinstance(node, ir.Conv2d) else "dense", weight=f"{name}/weight")
            if entry["op"] == "conv":
                entry.update(stride=_hw(node.stride), padding=_hw(node.padding), dilation=_hw(node.dilation),
                             groups=node.groups)
        elif isinstance(node, ir.Add):
            continue  # an Add is the neuron's set of synapses: it becomes the neuron's `synapses` list
        elif isinstance(node, ir.NEURONS):
            synapses = [f.name for f in graph.input_port_feeds(name)]
            arrivals = {depth[f] for f in synapses if depth[f] is not None}
            if len(arrivals) > 1:
                raise ValueError(f"the synapses of {name} arrive at steps {sorted(arrivals)}; run balance_delays")
            depth[name] = arrivals.pop() if arrivals else 1
            for f in synapses:
                if depth[f] is None:
                    depth[f] = entries[f]["depth"] = depth[name]
                    inputs[entries[f]["input"]]["depth"] = depth[name] - 1
            entry = {"name": name, "shape": list(node.shape), "synapses": synapses}
            if isinstance(node, ir.Relay):
                bias = node.quant["carried_bias"]
                if np.any(bias):
                    arrays[f"{name}/bias"] = np.asarray(bias, np.float64)
                entry.update(op="relay", scale=q["scale"], bias=f"{name}/bias" if np.any(bias) else None)
            else:
                arrays[f"{name}/bias_mant"] = _in_format(np.broadcast_to(q["bias_mant"], node.shape),
                                                         fmt.BIAS_MANT_MIN, fmt.BIAS_MANT_MAX, f"{name} bias_mant")
                entry.update(op="lif", du=q["du"], dv=q["dv"], vth=q["vth"], bias_mant=f"{name}/bias_mant",
                             bias_exp=q["bias_exp"])
        elif isinstance(node, ir.Flatten):
            entry = {"name": name, "op": "flatten", "input": node.inputs[0], "shape": list(node.shape)}
            depth[name] = depth[node.inputs[0]]
        else:
            raise ValueError(f"chip node {name} ({type(node).__name__}) has no Lava form")
        entry["depth"] = depth[name]
        entries[name] = entry

    outputs = sorted({i for n in nodes.values() if n.name not in members for i in n.inputs if i in members},
                     key=segment["nodes"].index)
    spec_nodes = list(entries.values())
    lifs = [n["name"] for n in spec_nodes if n["op"] == "lif"]
    spec = {"format": fmt.CHIP_SPEC_FORMAT, "segment": segment["name"], "timesteps": graph.timesteps,
            "inputs": list(inputs.values()), "nodes": spec_nodes,
            "outputs": [_output(nodes[o], depth[o]) for o in outputs],
            "spiking_layers": lifs, "steps": graph.timesteps + max(d for d in depth.values() if d is not None)}
    return spec, arrays


def _output(node: ir.Node, depth: int) -> dict:
    """What leaves the segment: a LIF's spikes, or a relay's graded spikes (host: a / scale + carried bias)."""
    if not isinstance(node, ir.NEURONS):
        raise ValueError(f"chip node {node.name} ({type(node).__name__}) is read by the host, but only neurons send "
                         "to the host")
    return {"name": node.name, "depth": depth, "shape": list(node.shape),
            "kind": "spikes" if isinstance(node, ir.LIF) else "graded"}


OPS = ("conv", "dense", "identity", "lif", "relay", "flatten")
SYNAPSE_OPS = ("conv", "dense", "identity")
PAYLOADS = ("spikes", "graded")


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
                or not _ints(entry.get("frac_bits")) or entry["frac_bits"] >= fmt.HOST_MESSAGE_BITS \
                or not _ints(entry.get("shape"), 0, low=1):
            return f"input {entry.get('name') if isinstance(entry, dict) else entry!r} is malformed"
        shapes[entry["name"]] = tuple(entry["shape"])
    ops = {}
    for node in spec["nodes"]:
        name = node.get("name") if isinstance(node, dict) else None
        if not isinstance(name, str) or name in shapes or node.get("op") not in OPS or not _ints(node.get("shape"), 0,
                                                                                                  low=1):
            return f"node {name!r} is malformed (op {node.get('op') if isinstance(node, dict) else None!r})"
        shape, op = tuple(node["shape"]), node["op"]
        if op in (*SYNAPSE_OPS, "flatten") and _named(shapes, node.get("input")) is None:
            return f"node {name} reads {node.get('input')!r}, which nothing before it produces"
        if op in SYNAPSE_OPS and not _ints(node.get("num_message_bits")):
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
        elif op == "identity":
            if not _ints(node.get("weight"), low=1) or node["weight"] > fmt.WEIGHT_MAX \
                    or not isinstance(node.get("weight_exp"), int) or isinstance(node["weight_exp"], bool) \
                    or not fmt.IDENTITY_WEIGHT_EXP_MIN <= node["weight_exp"] <= 0 or shapes[node["input"]] != shape:
                return f"identity {name}: its weight, weight_exp or shapes are malformed"
        elif op == "flatten" and int(np.prod(shape)) != int(np.prod(shapes[node["input"]])):
            return f"flatten {name}: its size differs from its input's"
        elif op in ("lif", "relay"):
            synapses = node.get("synapses") if isinstance(node.get("synapses"), list) else []
            if not synapses or not all(_named(ops, f) in SYNAPSE_OPS and _named(shapes, f) == shape
                                       for f in synapses):
                return f"neuron {name}: its synapses are missing or malformed"
            if op == "relay" and (not isinstance(node.get("scale"), (int, float)) or node["scale"] <= 0
                                  or (node.get("bias") is not None
                                      and getattr(_named(arrays, node["bias"]), "shape", None) != shape)):
                return f"relay {name}: its scale or carried bias is malformed"
            if op == "lif" and (not all(_ints(node.get(k)) for k in ("du", "dv", "vth"))
                                or not _ints(node.get("bias_exp"), low=-64)
                                or not _integer_array(arrays, node.get("bias_mant"), shape)):
                return f"neuron {name}: its parameters or bias are malformed"
        if not _ints(node.get("depth")):
            return f"node {name} has no depth"
        shapes[name], ops[name] = shape, op
    for out in spec["outputs"]:
        kind = {"lif": "spikes", "relay": "graded"}.get(_named(ops, out.get("name") if isinstance(out, dict) else None))
        if kind is None or out.get("kind") != kind:
            return f"output {out.get('name') if isinstance(out, dict) else out!r} is malformed"
    if not all(_named(ops, n) == "lif" for n in spec["spiking_layers"]):
        return "its spiking_layers name something that is not one of its neurons"
    return None
