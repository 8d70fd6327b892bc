"""A chip segment as a NIR graph (`chip/<segment>.nir`): float weights and dynamics, Loihi integers in metadata.

Time. NIR (nir 1.0.8) states neurons as ODEs; ours are discrete. The graph states its step, dt = 1e-4 s per step
of the source model (graph metadata `dt`, `time_unit`), and the discretisation (metadata `discretisation`):
forward Euler with the current updated first, as norse integrates NIR's CubaLIF and Loihi updates u before v:

    I[t] = I[t-1] + dt/tau_syn·(w_in·S[t] - I[t-1])       = (1 - dt/tau_syn)·I[t-1] + dt/tau_syn·w_in·S[t]
    v[t] = v[t-1] + dt/tau_mem·(v_leak - v[t-1] + r·I[t])  = (1 - dt/tau_mem)·v[t-1] + dt/tau_mem·(v_leak + r·I[t])
    z[t] = v[t] > v_threshold;   v[t] = v_reset where z[t]
with S[t] the sum of all edges into the neuron. Our LIF is v[t] = decay·v[t-1] + input_scale·x[t], spike on
v > θ (v >= θ for SpikingJelly's neurons), hard reset to 0. Matching coefficients gives tau_syn = dt
(I[t] = w_in·S[t]: no current memory, Loihi's du = 4095), w_in = input_scale, tau_mem = dt / (1 - decay),
r = 1 / (1 - decay) (dt/tau_mem · r = 1), v_leak = 0, v_reset = 0. For decay 0.5 (both demo models) that is
tau_mem = 2e-4 s, r = 2; the OR neurons of `maxpool_to_or` (decay 0) get tau_mem = dt, r = 1. Neuron parameters
are float64, so dt / tau is exactly 1 and 1 - decay where the peers compute it in float64; in the decay form the
arithmetic is then the folded graph's own.
Threshold: NIR fires on v > v_threshold. A neuron that fires on v >= θ gets v_threshold = the largest float32
below θ: identical to v >= θ in float32 arithmetic (metadata keeps θ and the comparison).

Why 1e-4: it is the step SpikingJelly 2.0 (`nir_exchange.import_from_nir(graph, dt=1e-4)`, the default) and snntorch
1.0.0 (`_nir_to_snntorch_module`, hard-coded) assume, and both accept a CubaLIF only with r = tau_mem / dt
(SpikingJelly also w_in = tau_syn / dt); their decays are 1 - dt/tau, our discretisation. What each peer needs
(tests/test_nir_export.py runs norse, SpikingJelly and snntorch on the demo segments):
    norse 1.1.0      `norse.torch.from_nir(graph, dt=1e-4)` (its default dt is 1e-3). Segments where edges join
                     (GAC's residual stream) need nirtorch's executor with norse's node map instead,
                     `nirtorch.nir_to_torch(graph, {T: partial(norse.torch.utils.import_nir._import_norse_module,
                     dt=1e-4)})` for T in Affine, Conv2d, CubaLIF, Flatten, Linear, SumPool2d (AvgPool2d: nirtorch's
                     default): from_nir's executor (nirtorch.load's GraphExecutor) runs nodes in depth-first order
                     from one root (nirtorch graph_utils.trace_execution), so a summing node runs before some of its
                     sources, and norse maps no AvgPool2d; on GAC's segment it raises or returns a wrong value.
    SpikingJelly     `import_from_nir(graph)`; its CUBALIFNode fires on v >= v_threshold (functional.cuba_lif_step,
    2.0.0            surrogate.heaviside), so each neuron's `v_threshold` is to be raised to the next float32 up;
                     as imported, spikes differ where v == v_threshold exactly, which GAC's encodings hit (their
                     sigmoid saturates at 1.0, the threshold).
    snntorch 1.0.0   `snntorch.import_nir.import_from_nir(graph)`: nothing else.
    rockpool 3.1.0   `rockpool.nn.modules.torch.nir.from_nir(graph)` cannot run these neurons: its CubaLIF is
                     LIFTorch with decays exp(-dt/tau) and dt = min(tau_mem / (1 + r)) (`_convert_nir_to_rockpool`),
                     so a current without memory is out of reach. It maps no Conv2d (NotImplementedError); a dense
                     segment (tcja-tiny's chip5) imports and runs with other spikes, without an error.
    sinabs 3.1.3     requires nir <= 1.0.4, which cannot read these files, and maps no CubaLIF
                     (`_import_sinabs_module`).
A segment that several host tensors enter (none of the demo models' does) has several Inputs: nirtorch.nir_to_torch,
under SpikingJelly's and snntorch's imports, raises `RuntimeError: Node redefined name is_none!` (NIRTorch issue
#30), and norse's from_nir feeds the first Input alone, with a logged warning only.

Nodes (names are the IR node names; weights are float32 numpy arrays, neuron parameters float64 with the layer's
full shape, no batch dim anywhere):

    Input      one per host tensor, named as the tensor: the spikes or graded payloads the host sends each step,
               as floats; an edge to every synapse that reads it. Lava receives it once per such synapse, through
               the adapter `tensor->synapse` (the synapse's metadata `input_adapter`)
    Conv2d     a Conv2d synapse: the folded weight (Cout, Cin, kH, kW), bias (zeros if none), stride, padding,
               dilation, input_shape (H, W)
    SumPool2d  a depthwise Conv2d of unit weights without bias (the sum-pool of a max-pool turned OR); NIR 1.0.8
               cannot type other grouped convolutions (it reads weight.shape[1] as the input channels)
    AvgPool2d  a depthwise Conv2d of weights 1/(kh·kw) without bias (an average pool, `avgpool_to_conv`)
    Affine     a Linear synapse with a bias; `Linear` when it has none
    CubaLIF    each LIF, as above; IF for one that does not leak (decay 1)
    Flatten    start_dim -len(shape), end_dim -1 over the batch-free type (C, H, W) → (C·H·W,): negative dims
               name the same axes with a batch dim in front, where norse and snntorch (torch.nn.Flatten(start_dim,
               end_dim)) and SpikingJelly and sinabs (which shift non-negative dims by one) all apply them
    Output     one per chip neuron the host reads, named `node->host`: a LIF's spikes, or a relay's value
Edges: several edges into one node are summed (NIR's rule). An IR `Add` (a neuron's synapse groups, the MS-ResNet
membrane shortcut) has no node: each summand is an edge into the neuron. A relay neuron (y = x in float: Lava's
GradedVec) has no node either: its synapses' edges go to what reads it, and its scale is in the metadata of the
Output that reads it.
NIR neurons have no bias, so an Add's bias is added to the float bias of its first chip synapse that feeds only
that Add (metadata `add_bias_of` names the Add); on Loihi all of a neuron's biases are its `bias_mant`.

Metadata (flat: Python scalars, strings and numpy arrays, so nir.write/nir.read keep it). The Loihi 2 fixed-point
form, as the quantize pass set it and the Lava spec (exporters/lava_spec.py) runs it:
    synapse    `weight` (the Lava spec's int16 array: round(W · scale / unit) on Lava's 8-bit grid; SumPool2d: its
               depthwise weights; an identity synapse: its one weight), `weight_exp` (0, or an identity's),
               `scale` σ (integer units per float unit of the neuron it feeds), `payload_frac_bits` (also the
               frac_bits of a host input it reads), `num_message_bits`, `depth`, `bias_realised_by`; a synapse
               reading a host tensor: `input_adapter` (the Lava spec's input) and `input_adapter_depth`
    neuron     `du`, `dv`, `vth`, `bias_mant` (the Lava spec's int16 array, full shape), `bias_exp`, `scale` σ,
               `depth`; the source semantics `source_decay`, `source_threshold`, `source_input_scale`,
               `source_fires_when`
    Input      `tensor`, `payload` ("spikes" 0/1 | "graded" round(value · 2^frac_bits)), `kind` (the IR value
               kind), `waits_for_window` (1: the host needs all T steps first)
    Output     `tensor`, `kind` ("spikes" | "graded": the host computes a / scale + the relay's carried bias),
               `depth`, `scale`
    graph      `format`, `format_version`, `snn2hw_version`, `segment`, `arch`, `timesteps`, `dt`, `time_unit`,
               `discretisation`, `lava_steps` (T + the deepest node's depth)
`depth`: the Lava step at which the node's logical step 0 appears (every Dense/Conv adds one step of latency).
"""
import copy
import dataclasses

import nir
import numpy as np

from .. import __version__, ir

from ..files import atomic_path
from .lava_spec import chip_segment_spec

FORMAT = "snn2hw-nir"
FORMAT_VERSION = 2  # 2: dt 1e-4 s, one Input per host tensor, Flatten's negative dims
DT = 1e-4  # seconds per step of the source model: the step SpikingJelly's and snntorch's NIR imports assume
DISCRETISATION = ("forward Euler, current first: I[t] = I[t-1] + dt/tau_syn*(w_in*S[t] - I[t-1]); "
                  "v[t] = v[t-1] + dt/tau_mem*(v_leak - v[t-1] + r*I[t]); z[t] = v[t] > v_threshold; "
                  "v[t] = v_reset where z[t]; S[t] = sum of the edges into the node")


def _f32(x) -> np.ndarray:
    return np.array(x, dtype=np.float32)


def _full64(value: float, shape: tuple) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)


def _neuron(node: ir.LIF) -> nir.NIRNode:
    """Our LIF as NIR's CubaLIF under `DISCRETISATION` with dt = `DT` (derivation: the module docstring); one that
    does not leak (decay 1, an IF neuron: Loihi's dv = 0) has no membrane time constant, so NIR's IF, whose forward
    Euler step v[t] = v[t-1] + dt·r·S[t] is ours with r = input_scale / dt."""
    if not 0.0 <= node.decay <= 1.0:
        raise ValueError(f"LIF {node.name}: decay {node.decay} is outside [0, 1]")
    threshold = np.float32(node.threshold)
    if node.fire_at_threshold:
        threshold = np.nextafter(threshold, np.float32(-np.inf))
    shape = tuple(node.shape)
    if node.decay == 1.0:
        return nir.IF(r=_full64(node.input_scale / DT, shape), v_threshold=_full64(threshold, shape),
                      v_reset=_full64(0.0, shape))
    # float64: the peers compute dt / tau in float64, so dt / tau_syn is exactly 1 and 1 - dt / tau_mem the decay;
    # float32's 1e-4 is 2.5e-12 below it, a tau_syn < dt that SpikingJelly refuses (`_NodeMapper.map_cuba_lif`)
    return nir.CubaLIF(tau_syn=_full64(DT, shape), tau_mem=_full64(DT / (1.0 - node.decay), shape),
                       r=_full64(1.0 / (1.0 - node.decay), shape), v_leak=_full64(0.0, shape),
                       v_threshold=_full64(threshold, shape), v_reset=_full64(0.0, shape),
                       w_in=_full64(node.input_scale, shape))


def _is_sum_pool(node: ir.Conv2d, bias) -> bool:
    """A depthwise conv with unit weights and no bias (what `maxpool_to_or` makes): a sum over each window."""
    w = node.weight
    return (node.groups == w.shape[0] and w.shape[1] == 1 and bias is None and bool((w == 1).all())
            and tuple(node.dilation) == (1, 1))


def _is_avg_pool(node: ir.Conv2d, bias) -> bool:
    """A depthwise conv with every weight 1/(kh·kw) and no bias (what `avgpool_to_conv` makes): a window's mean."""
    w = node.weight
    return (node.groups == w.shape[0] and w.shape[1] == 1 and bias is None and tuple(node.dilation) == (1, 1)
            and bool((w == 1.0 / (w.shape[2] * w.shape[3])).all()))


def _pair(v) -> tuple[int, int]:
    return tuple(int(x) for x in v)


def _synapse(node, in_shape: tuple, bias) -> nir.NIRNode:
    """A synapse with its float weight and `bias` (None: none) as a NIR node; `in_shape` is its input's shape."""
    weight = node.weight.detach().numpy().astype(np.float32)
    if isinstance(node, ir.Conv2d) and _is_avg_pool(node, bias):
        return nir.AvgPool2d(kernel_size=np.array(weight.shape[2:]), stride=np.array(_pair(node.stride)),
                             padding=np.array(_pair(node.padding)))
    if isinstance(node, ir.Conv2d) and node.groups > 1:
        # NIR 1.0.8 types a Conv2d's input as weight.shape[1] channels, ignoring groups, so a grouped conv fails
        # the type check; a sum-pool has a node of its own.
        if not _is_sum_pool(node, bias):
            raise ValueError(f"conv {node.name}: NIR 1.0.8 cannot type a grouped convolution (groups={node.groups})")
        return nir.SumPool2d(kernel_size=np.array(weight.shape[2:]), stride=np.array(_pair(node.stride)),
                             padding=np.array(_pair(node.padding)))
    if isinstance(node, ir.Conv2d):  # input_shape types the conv: without it nir.write fails
        return nir.Conv2d(input_shape=_pair(in_shape[1:]), weight=weight, stride=_pair(node.stride),
                          padding=_pair(node.padding), dilation=_pair(node.dilation), groups=1,
                          bias=_f32(bias if bias is not None else np.zeros(weight.shape[0])))
    if bias is None:
        return nir.Linear(weight=weight)
    return nir.Affine(weight=weight, bias=_f32(bias))


def _add_bias_carriers(graph: ir.Graph, members: set) -> dict[str, str]:
    """synapse → the Add whose bias its NIR bias also carries: an Add's first chip synapse that feeds it alone."""
    carriers = {}
    for name in sorted(members):
        add = graph.nodes[name]
        if not isinstance(add, ir.Add) or add.bias is None:
            continue
        for i in add.inputs:
            if i in members and isinstance(graph.nodes[i], ir.SYNAPSES) and graph.consumers(i) == [name]:
                carriers[i] = name
                break
        else:
            raise ValueError(f"Add {name}: its bias has no chip synapse of its own to carry it in NIR")
    return carriers


def chip_segment_to_nir(folded: ir.Graph, fixed: ir.Graph, segment: dict) -> nir.NIRGraph:
    """One chip segment of a compiled model → a type-checked NIR graph (format: the module docstring).

    `folded` gives the float weights and dynamics (semantics level 2), `fixed` the Loihi integers (level 3);
    both are the same partitioned graph (`Compiled.folded`, `Compiled.fixed`)."""
    spec, arrays = chip_segment_spec(fixed, segment)
    members = set(segment["nodes"])
    spec_nodes = {n["name"]: n for n in spec["nodes"]}
    carriers = _add_bias_carriers(folded, members)
    waits = {c["tensor"]: c["waits_for_window"] for c in folded.cuts}
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []

    adapters = {inp["to"]: inp for inp in spec["inputs"]}
    for inp in spec["inputs"]:  # one Input per host tensor, however many synapses read it
        tensor = inp["tensor"]
        if tensor not in nodes:
            meta = {"tensor": tensor, "payload": inp["payload"], "kind": folded.nodes[tensor].kind,
                    "waits_for_window": int(waits[tensor])}
            nodes[tensor] = nir.Input(input_type={"input": np.array(inp["shape"])}, metadata=meta)
        edges.append((tensor, inp["to"]))

    for name in segment["nodes"]:
        node, q = folded.nodes[name], fixed.nodes[name].quant
        if isinstance(node, ir.SYNAPSES):
            bias = None if node.bias is None else node.bias.detach().double().numpy()
            if name in carriers:
                add_bias = folded.nodes[carriers[name]].bias.detach().double().numpy()
                bias = add_bias if bias is None else bias + add_bias
            entry, reader = spec_nodes[name], _neuron_fed_by(folded, name)
            meta = {"weight": arrays[entry["weight"]] if entry["op"] != "identity" else np.int16(entry["weight"]),
                    "scale": float(q["scale"]), "payload_frac_bits": int(q["payload_frac_bits"]),
                    "num_message_bits": int(q["num_message_bits"]), "weight_exp": int(entry.get("weight_exp", 0)),
                    "depth": int(entry["depth"]),
                    "bias_realised_by": f"relay {reader}: carried to what reads it" if isinstance(
                        folded.nodes[reader], ir.Relay) else f"neuron {reader}: bias_mant << bias_exp"}
            if name in carriers:
                meta["add_bias_of"] = carriers[name]
            if name in adapters:
                meta.update(input_adapter=adapters[name]["name"], input_adapter_depth=int(adapters[name]["depth"]))
            nodes[name] = _synapse(node, folded.nodes[node.inputs[0]].shape, bias)
            nodes[name].metadata = meta
            if node.inputs[0] in members:  # else the tensor's Input already feeds it
                edges.append((node.inputs[0], name))
        elif isinstance(node, ir.Add):
            if not any(isinstance(folded.nodes[r], ir.NEURONS) for r in folded.consumers(name)):
                raise ValueError(f"Add {name} on chip feeds no neuron; NIR could only sum it at a neuron's input")
        elif isinstance(node, ir.NEURONS):
            if isinstance(node, ir.LIF):
                nodes[name] = _neuron(node)
                nodes[name].metadata = {
                    "du": int(q["du"]), "dv": int(q["dv"]), "vth": int(q["vth"]),
                    "bias_mant": arrays[spec_nodes[name]["bias_mant"]], "bias_exp": int(q["bias_exp"]),
                    "scale": float(q["scale"]), "depth": int(spec_nodes[name]["depth"]),
                    "source_decay": float(node.decay), "source_threshold": float(node.threshold),
                    "source_input_scale": float(node.input_scale),
                    "source_fires_when": "v >= threshold" if node.fire_at_threshold else "v > threshold"}
                edges += [(f.name, name) for f in folded.input_port_feeds(name)]
            # a relay is y = x in float: no node; its sum's edges go straight to what reads it (below)
        elif isinstance(node, ir.Flatten):
            in_shape = folded.nodes[node.inputs[0]].shape
            # negative dims name the same axes with or without a batch dim in front, as every peer reads them
            nodes[name] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=-len(in_shape),
                                      end_dim=-1, metadata={"depth": int(spec_nodes[name]["depth"])})
            edges.append((node.inputs[0], name))
        else:
            raise ValueError(f"chip node {name} ({type(node).__name__}) has no NIR form")

    for out in spec["outputs"]:
        meta = {"tensor": out["name"], "kind": out["kind"], "depth": int(out["depth"])}
        if out["kind"] == "graded":
            meta["scale"] = float(spec_nodes[out["name"]]["scale"])
        nodes[f"{out['name']}->host"] = nir.Output(output_type={"output": np.array(out["shape"])}, metadata=meta)
        edges.append((out["name"], f"{out['name']}->host"))
    relays = {n["name"]: [f for f in n["synapses"]] for n in spec["nodes"] if n["op"] == "relay"}
    while any(a in relays for a, _ in edges):  # a relay's readers read its synapses' sum (chains: repeatedly)
        edges = [(f, b) for a, b in edges for f in (relays[a] if a in relays else [a])]

    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "snn2hw_version": __version__,
                "segment": segment["name"], "arch": folded.arch, "timesteps": int(folded.timesteps), "dt": DT,
                "time_unit": "s", "discretisation": DISCRETISATION,
                "lava_steps": int(spec["steps"])}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def _neuron_fed_by(graph: ir.Graph, synapse: str) -> str:
    reader = graph.nodes[graph.consumers(synapse)[0]]
    return graph.consumers(reader.name)[0] if isinstance(reader, ir.Add) else reader.name


class _Shared(np.ndarray):
    """An array view that `copy.deepcopy` returns as it is. `NIRNode.to_dict` is `dataclasses.asdict`, which
    deep-copies every array, and `NIRGraph.to_dict` copies each node twice (once inside its own asdict): for an
    ImageNet ResNet-34 that was 5 s and 1.4 GB for dictionaries nir.write only reads."""

    def __deepcopy__(self, memo):
        return self


def _sharing_arrays(node: nir.NIRNode) -> nir.NIRNode:
    """A shallow copy of `node` (and of a graph's nodes) whose arrays, in fields and metadata, are `_Shared` views."""
    def share(v):
        return v.view(_Shared) if isinstance(v, np.ndarray) else v

    clone = copy.copy(node)
    for f in dataclasses.fields(node):
        setattr(clone, f.name, share(getattr(node, f.name)))
    clone.metadata = {k: share(v) for k, v in node.metadata.items()}
    if isinstance(node, nir.NIRGraph):
        clone.nodes = {k: _sharing_arrays(n) for k, n in node.nodes.items()}
    return clone


def write_nir(path, graph: nir.NIRGraph) -> None:
    """Write `graph` to `path` atomically: into a temporary file beside it, then renamed over `path`. A failure leaves
    `path` as it was (nir.write would otherwise leave half a file that nir.read rejects) and no temporary file.

    Uncompressed: for an ImageNet ResNet-34 on two cores, gzip (nir.write's default) took 15 s, and trained float32
    weights shrink by only about 7 % (int16 ones by about 40 %). Not read back: the graph passed NIR's type check when
    it was built, and whether nir.read accepts the file depends on the node types and metadata types written, not
    on their values, which tests/test_nir_export.py reads back for every kind; reading it here cost 2 s to 10 s and
    another copy of the weights at the export's peak memory."""
    with atomic_path(path) as tmp:
        nir.write(tmp, _sharing_arrays(graph), compression=None)
