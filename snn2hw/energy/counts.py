"""Energy accounting: MACs, ACs, neuron updates and spikes per layer, counted in two modes.

**faithful** counts everything the deployment executes, on the deployed graph (`compiled.fixed`: folded,
unrolled, partitioned), per sample and per time step t:

    chip synapse   ops[t] = Σ_p [x[t, p] ≠ 0] · F(p)        one op per event per synapse it really reaches;
                   F(p) = #{(o, q): w[o, ·] ≠ 0 links input p to an output q inside the map}    (padding, stride and
                   zero weights excluded, as NeuroBench's "Effective" ops); an AC if x is binary spikes, a MAC if x
                   carries payloads (graded spikes, event counts): payload × weight
    host synapse   MACs[t] = Σ_p F_all(p)                     dense: every input, every weight, no zero padding
                   (NeuroBench's "Dense"); the host does not skip zeros
    neuron         updates[t] = number of neurons; spikes[t] = Σ_p s[t, p]
    host op        pooling, sums by their formulas (`_elementwise_ops`); GAC's attention and TCJA's gates by the
                   op counts `convert` gives each host module (`ir.HostModule.ops`, `convert.host_module_ops`)
    cut            T · values per step · bits per value crossing host↔chip (`transfers`)

**paper** reproduces the published convention on the model as converted (`compiled.source`; Yao et al.,
Attention-SNN supplement Table S1; GAC, AAAI 2024):

    E = E_MAC · FL¹ · (1 if the image repeats over T, else T)  +  E_AC · Σ_{l ≥ 2} Σ_t fr_{l-1}[t] · FL^l
    FL^l = k_h · k_w · h_out · w_out · c_in / groups · c_out (conv),  i · o (linear)

where fr is the firing rate of the neuron layer whose spikes reach synapse l (through pooling, flattening and
attention gates). It leaves out attention, gates, neuron updates, the downsample conv on the real-valued MS-ResNet
stream, pooling and transfers, and counts graded inputs as ACs; `CATEGORIES` says, row by row, how the two modes
differ (priced side by side by `report.comparison`).

Counts come from recorded activity (`RecordedActivity`: any backend's values per position and step, fed batch by
batch; `snn2hw.measure` runs the backends) or from firing rates (`RateActivity`: the analytic mode); nothing here
runs a graph. Energies per operation are data (`presets.py`); E = Σ count · E_op(placement). Units: one sample (one
inference), energies in mJ.

Other tools (shared/reference/energy.md §4-5), where they agree and where not:
- NeuroBench SynapticOperations (metrics/utils/layers/macs.py): its Effective ops (non-zero inputs × non-zero
  weights, zero padding never an operand) and Dense ops equal ours for every chip synapse. It decides AC vs MAC per
  call from the data (all values in {-1, 0, 1}), we from the IR's value kind; it counts host synapses as effective
  (skipping zero inputs), we as dense (a CPU does not skip them).
- SpikingJelly SynOpCounter (op_counter/ac.py): spikes × the kernel's footprint inside the input, zero weights
  included: equal to ours without zero weights, larger with them.
- syops (ops.py): rate × dense FLOPs including padding, i.e. the paper mode's per-layer count; it also counts one AC
  per neuron per step, where we price neuron updates separately.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import ir
from ..errors import UserError
from ..hardware_sims.loihi_formats import BIAS_STORAGE_BITS, GRADED_MESSAGE_BITS, HOST_MESSAGE_BITS
from .presets import Preset

MODES = ("paper", "faithful")
# Pooling and flattening: values pass through them unchanged in kind (spikes stay spikes), so the paper convention

# The rows on which the two modes are compared, and why they differ.
CATEGORIES = {
    "first synapse": "Paper: E_MAC · FLOPs of the encoding layer, once for a repeated static image (every step for "
                     "event frames). Deployment: the host runs it on the repeated image at every step (dense, zero "
                     "padding excluded); on event frames the chip does one MAC per non-zero count and synapse.",
    "synapses on spikes": "Paper: E_AC · T · fr · FLOPs, the layer's rate times dense FLOPs including zero padding. "
                          "Deployment: each spike times the synapses it really reaches (border pixels reach fewer "
                          "outputs, zero weights none), step by step.",
    "synapses on graded values": "Paper: ACs at the emitting layer's rate, as if the input were spikes. Deployment: "
                                 "gated spikes, pooled spikes and event counts carry payloads, so every event costs a "
                                 "multiply-accumulate per synapse (and dense MACs where the host computes).",
    "residual stream": "Paper: conv2 of each block as ACs; the downsample conv on the real-valued membrane stream is "
                       "left out. Deployment: the stream is unrolled into synapses from every earlier block's spikes "
                       "(conv2 composed with the shortcut convs) and from the encoder's output on the host.",
    "attention and gates": "Left out by the paper (GAC: TA, SCA and the gate; TCJA: squeeze, two 1-D convs, gate). The "
                           "host executes them for every sample: products and sigmoids as MACs, sums, max and ReLU as "
                           "ACs.",
    "neurons": "Left out by the paper. Every neuron updates at every step (leak, integrate, threshold) and every spike "
               "is routed.",
    "pooling, sums, readout": "Left out by the paper: pooling, BatchNorm (folded away in the deployment), host sums "
                              "and the readout.",
    "host-chip transfers": "Left out by the paper (it has no chip). Every step, each cut moves a frame of values: "
                           "1 bit per spike, 16 bits per graded payload the host sends, 24 bits per graded spike a "
                           "relay sends back.",
    "chip static power": "Left out by the paper (it has no chip). Loihi 2's static power, per chip the deployment "
                         "occupies, over the time the chip takes for the sample (time per step x T).",
}


# ------------------------------------------------------------------------------------- synapse geometry (fan-out)


def _input_taps(in_size, out_size, kernel, stride, pad_before, dilation) -> np.ndarray:
    """A[i, u] = number of output positions at which tap u reads input i (0 or 1)."""
    index, valid = ir.conv_taps(in_size, out_size, kernel, stride, pad_before, dilation)
    a = np.zeros((in_size, kernel))
    np.add.at(a, (index[valid], np.broadcast_to(np.arange(kernel), index.shape)[valid]), 1)
    return a


def _conv_dims(node: ir.Conv2d, in_shape: tuple) -> list[tuple]:
    """Per spatial dim: (in, out, kernel, stride, pad_before, dilation)."""
    kernel = node.weight.shape[2:]
    return [(in_shape[1 + d], node.shape[1 + d], kernel[d], node.stride[d],
             ir.pad_before(node.padding, kernel[d], node.dilation[d], d), node.dilation[d]) for d in range(2)]


def _nonzero_sum(weight: torch.Tensor, shape: tuple, dim: int) -> np.ndarray:
    """Σ over `dim` of [w ≠ 0], with w viewed as `shape`. Weights on the meta device (shape only) all count."""
    if weight.is_meta:
        return np.full(shape[:dim] + shape[dim + 1:], float(shape[dim]))
    return torch.count_nonzero(weight.detach().reshape(shape), dim=dim).double().numpy()


def stored_weight(node: ir.Node) -> torch.Tensor:
    """The weights a synapse really holds: once quantized, the chip's integers (a weight that rounds to 0 is no
    synapse), as a deployment's files hold them; before, its float weights."""
    weight = node.quant.get("weight")
    if node.quant.get("identity"):  # one weight on the diagonal
        return (node.weight != 0).to(torch.int64) * weight
    return node.weight if weight is None else torch.as_tensor(weight)


def fanout_map(node: ir.Node, in_shape: tuple, effective: bool = True) -> np.ndarray:
    """F(p): how many synapses input position p really drives, shaped like the input.

    Conv: F(c, y, x) = Σ_{u,v} N[c, u, v] · A_h[y, u] · A_w[x, v],
    N[c, u, v] = #{o in c's group: w[o, c, u, v] ≠ 0} (all of c's group's outputs if not `effective`), A the
    input-tap matrices (`_input_taps`): separable, exact at borders. Linear: F(i) = #{o: W[o, i] ≠ 0}.
    Σ_p F(p) is NeuroBench's "Dense" count per step when `effective` is False (zero padding excluded); w is the
    synapse's `stored_weight`."""
    w = stored_weight(node)
    if isinstance(node, ir.Linear):
        counts = _nonzero_sum(w, tuple(w.shape), 0) if effective else np.full(w.shape[1], float(w.shape[0]))
        return counts.reshape(in_shape)
    g, (c_out, c_in_g, *kernel) = node.groups, w.shape
    grouped = (g, c_out // g, c_in_g, *kernel)
    taps = _nonzero_sum(w, grouped, 1) if effective else np.full((g, c_in_g, *kernel), float(c_out // g))
    (a_h, a_w) = [_input_taps(*dims) for dims in _conv_dims(node, in_shape)]
    return _separable(taps.reshape(g * c_in_g, *kernel), a_h, a_w)


def max_fan_in(node: ir.Node, in_shape: tuple) -> int:
    """The largest number of synapses onto one output neuron: max over (o, y, x) of
    Σ_{c,u,v} [w[o, c, u, v] ≠ 0] · V_h[y, u] · V_w[x, v] (V: the tap reads inside the input);
    Linear: max_o #{W[o] ≠ 0} (w: `stored_weight`)."""
    w = stored_weight(node)
    if isinstance(node, ir.Linear):
        return int(_nonzero_sum(w, tuple(w.shape), 1).max())
    (_, v_h), (_, v_w) = [ir.conv_taps(*dims) for dims in _conv_dims(node, in_shape)]
    return int(_separable(_nonzero_sum(w, tuple(w.shape), 1), v_h.astype(np.float64), v_w.astype(np.float64)).max())


def _separable(taps: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """out[c, y, x] = Σ_{u,v} taps[c, u, v] · rows[y, u] · cols[x, v], as two matrix products."""
    return rows @ (taps @ cols.T)


def paper_flops(node: ir.Node) -> int:
    """FL per step (Yao et al., Spike-driven Transformer supplement): k_h·k_w·h_out·w_out·c_in/groups·c_out for a
    conv (zero padding included), i·o for a linear layer."""
    w = node.weight.shape
    if isinstance(node, ir.Linear):
        return w[0] * w[1]
    return math.prod(w[1:]) * math.prod(node.shape)


# ------------------------------------------------------------------------------------------------------ activity


class RecordedActivity:
    """Measured activity: density[t, p] = fraction of the samples whose value at step t, position p is non-zero,
    for every node whose values were recorded (spikes, host values, values crossing cuts).

    Fed batch by batch (`add`) with whatever a backend recorded; it runs nothing. A flattening of a recorded value
    gets its input's densities, reshaped; any other value the counts need but nobody recorded is an error."""

    def __init__(self, graph: ir.Graph):
        self.graph, self.timesteps = graph, graph.timesteps
        self.sums: dict[str, np.ndarray] = {}
        self.samples = 0

    def add(self, values: dict, chip_inputs: dict | None = None) -> None:
        """One batch of recorded values `[T, N, ...]` (tensors or arrays; every value of the batch has the same N):
        sums[t, p] += #{n: value[t, n, p] ≠ 0} per node of the graph (not the readout), samples += N. `chip_inputs`
        ((host tensor, chip synapse) → the integers the chip received, `RunRecord.cut_inputs`), if given, count the
        events a chip synapse on a host value receives: a value that rounds to a zero payload sends none."""
        batch = None
        recorded = [(name, values[name]) for name, node in self.graph.nodes.items()
                    if name in values and not isinstance(node, ir.Readout)]
        for name, value in recorded + list((chip_inputs or {}).items()):
            value = torch.as_tensor(value)
            batch = value.shape[1]
            nonzero = (value != 0).sum(1).double().numpy()
            self.sums[name] = self.sums[name] + nonzero if name in self.sums else nonzero
        if batch is not None:
            self.samples += batch

    def chip_input_density(self, tensor: str, synapse: str) -> np.ndarray:
        """The density of the payloads host tensor `tensor` sends chip synapse `synapse`, where recorded; else of the
        tensor's values."""
        key = (tensor, synapse)
        return self.sums[key] / self.samples if key in self.sums else self.density(tensor)

    def density(self, name: str) -> np.ndarray:
        if name in self.sums:
            return self.sums[name] / self.samples
        node = self.graph.nodes[name]
        if isinstance(node, ir.Flatten) and self._recorded(node.inputs[0]):
            return self.density(node.inputs[0]).reshape(self.timesteps, *node.shape)
        raise UserError(f"no recorded values for layer {name}: the backend did not report it.")

    def _recorded(self, name: str) -> bool:
        node = self.graph.nodes[name]
        return name in self.sums or (isinstance(node, ir.Flatten) and self._recorded(node.inputs[0]))


class RateActivity:
    """Assumed activity (analytic mode): every neuron layer fires at its rate r[t] at every position.

    Non-zero densities of other values follow: a gate or pooled tensor is non-zero where its spikes are (pooling over
    a window of n: 1 - (1 - r)^n, spikes assumed independent: an estimate); the input has density `input_rate` (1 for
    images; the non-zero fraction of event frames if given); real-valued tensors are dense."""

    def __init__(self, graph: ir.Graph, rates: dict[str, np.ndarray], input_rate: float = 1.0):
        self.graph, self.rates, self.input_rate = graph, rates, input_rate
        self.timesteps, self.samples = graph.timesteps, None

    def density(self, name: str) -> np.ndarray:
        node = self.graph.nodes[name]
        return np.reshape(self._rate(node), (-1,) + (1,) * len(node.shape))

    def chip_input_density(self, tensor: str, synapse: str) -> np.ndarray:
        """Assumed: a host tensor's payloads are as dense as its values."""
        return self.density(tensor)

    def _rate(self, node: ir.Node) -> np.ndarray:
        if isinstance(node, ir.LIF):
            return self.rates[node.name]
        if isinstance(node, ir.Relay):  # a real value: dense
            return np.ones(self.timesteps)
        if isinstance(node, ir.Input):
            return np.full(self.timesteps, self.input_rate)
        if isinstance(node, ir.HostModule):  # gate · spikes: non-zero where the spikes are
            binary = [i for i in node.inputs if self.graph.nodes[i].kind == "binary"]
            return self._rate(self.graph.nodes[binary[0]]) if binary else np.ones(self.timesteps)
        if isinstance(node, (ir.MaxPool2d, ir.AvgPool2d)):
            src = self.graph.nodes[node.inputs[0]]
            window = math.prod(src.shape) // math.prod(node.shape)
            return 1 - (1 - self._rate(src)) ** window
        if isinstance(node, ir.Flatten):
            return self._rate(self.graph.nodes[node.inputs[0]])
        return np.ones(self.timesteps)


def layer_rates(graph: ir.Graph, activity) -> dict[str, np.ndarray]:
    """Firing rate per neuron layer and step: fr[t] = spikes at step t / neurons (mean over samples)."""
    return {n: _per_step_sum(activity.density(n), node.shape) / math.prod(node.shape)
            for n, node in graph.nodes.items() if isinstance(node, ir.LIF)}


def _per_step_sum(density: np.ndarray, shape: tuple) -> np.ndarray:
    return np.broadcast_to(density, (density.shape[0], *shape)).reshape(density.shape[0], -1).sum(1)


# ------------------------------------------------------------------------------------------------------ counting


@dataclass
class Count:
    """One layer's work for one sample, per time step (arrays of length T)."""
    name: str
    op: str
    placement: str  # where the work is priced: host | chip
    category: str  # the comparison row (CATEGORIES)
    macs: np.ndarray
    acs: np.ndarray
    neuron_updates: np.ndarray
    spikes: np.ndarray
    neurons: int = 0
    dense: float = 0.0  # NeuroBench "Dense" synaptic ops per step (zero padding excluded)
    flops: float = 0.0  # the papers' FL per step (zero padding included)
    counted: bool = True  # False: left out by the paper convention
    note: str = ""

    def energy_split_pj(self, preset: Preset) -> dict[str, float]:
        counts = {"mac": self.macs, "ac": self.acs, "neuron_update": self.neuron_updates, "spike": self.spikes}
        return {op: float(c.sum()) * preset.pj(self.placement, op) for op, c in counts.items()}


def _zeros(timesteps: int) -> np.ndarray:
    return np.zeros(timesteps)


def _count(node: ir.Node, placement: str, category: str, timesteps: int, **arrays) -> Count:
    full = {k: arrays.get(k, _zeros(timesteps)) for k in ("macs", "acs", "neuron_updates", "spikes")}
    rest = {k: v for k, v in arrays.items() if k not in full}
    return Count(node.name, type(node).__name__, placement, category, **full, **rest)


def _through(graph: ir.Graph, name: str, kinds: tuple) -> ir.Node:
    """The first node at or above `name` that is not of the pass-through `kinds`."""
    node = graph.nodes[name]
    while isinstance(node, kinds):
        node = graph.nodes[node.inputs[0]]
    return node


def _feeds_stream(graph: ir.Graph, name: str) -> bool:
    """Whether `name`'s output reaches a residual sum (an Add), possibly through a BatchNorm."""
    for reader in graph.consumers(name):
        node = graph.nodes[reader]
        if isinstance(node, ir.Add) or (isinstance(node, ir.BatchNorm) and _feeds_stream(graph, reader)):
            return True
    return False


def _reads_input(graph: ir.Graph, node: ir.Node) -> bool:
    return isinstance(_through(graph, node.inputs[0], ir.POOLING_AND_RESHAPE), ir.Input)


def _synapse_category(graph: ir.Graph, node: ir.Node) -> str:
    if _reads_input(graph, node):
        return "first synapse"
    if _feeds_stream(graph, node.name):
        return "residual stream"
    return "synapses on spikes" if graph.nodes[node.inputs[0]].kind == "binary" else "synapses on graded values"


def _faithful_synapse(graph: ir.Graph, node: ir.Node, activity) -> Count:
    """Chip: events × real fan-out (AC on binary spikes, MAC on payloads). Host: dense MACs at every step."""
    src = graph.nodes[node.inputs[0]]
    dense = float(fanout_map(node, src.shape, effective=False).sum())
    category, timesteps = _synapse_category(graph, node), activity.timesteps
    extra = dict(dense=dense, flops=float(paper_flops(node)))
    if node.placement == "host":
        return _count(node, "host", category, timesteps, macs=np.full(timesteps, dense), **extra)
    density = activity.chip_input_density(src.name, node.name) if src.placement == "host" else \
        activity.density(src.name)
    events = (density * fanout_map(node, src.shape)).reshape(timesteps, -1).sum(1)
    key = "acs" if src.kind == "binary" else "macs"
    return _count(node, "chip", category, timesteps, **{key: events}, **extra)


def _faithful_other(graph: ir.Graph, node: ir.Node, activity) -> Count | None:
    """Neurons, host modules, pooling, sums and the readout (formulas in each branch)."""
    timesteps, place = activity.timesteps, node.placement
    size = math.prod(node.shape)
    if isinstance(node, ir.NEURONS):  # every neuron updates every step; spikes (a relay's: non-zero sends) as recorded
        return _count(node, place, "neurons", timesteps, neuron_updates=np.full(timesteps, float(size)),
                      spikes=_per_step_sum(activity.density(node.name), node.shape), neurons=size)
    if isinstance(node, ir.HostModule):  # the whole window's (MACs, ACs), spread evenly over the steps
        if node.ops is None:
            return _count(node, place, "attention and gates", timesteps,
                          note=f"{node.module_type} has no op-count formula: not counted")
        macs, acs = node.ops
        return _count(node, place, "attention and gates", timesteps, macs=np.full(timesteps, macs / timesteps),
                      acs=np.full(timesteps, acs / timesteps))
    per_step = _elementwise_ops(graph, node, size)
    if per_step is None:
        return None
    macs, acs = per_step
    return _count(node, place, "pooling, sums, readout", timesteps, macs=np.full(timesteps, float(macs)),
                  acs=np.full(timesteps, float(acs)))


def _elementwise_ops(graph: ir.Graph, node: ir.Node, size: int) -> tuple[int, int] | None:
    """(MACs, ACs) per step of a non-synaptic op on the host (on chip these are free: a neuron's synapse groups sum
    in its dendrite, and pooling is a synapse):
    max-pool out·(n-1) compares; avg-pool out·(n-1) adds + out scalings; BatchNorm one multiply-add per value;
    k-input sum (k-1)·size adds (+ size for a bias); vote readout: the mean over T, one add per value per step."""
    if node.placement == "chip" and isinstance(node, (ir.Add, *ir.POOLING_AND_RESHAPE)):
        return None
    src = graph.nodes[node.inputs[0]] if node.inputs else None
    if isinstance(node, ir.MaxPool2d):
        return 0, size * (math.prod(src.shape) // size - 1)
    if isinstance(node, ir.AvgPool2d):
        return size, size * (math.prod(src.shape) // size - 1)
    if isinstance(node, ir.BatchNorm):
        return size, 0
    if isinstance(node, ir.Add):
        return 0, size * (len(node.inputs) - 1 + (node.bias is not None))
    if isinstance(node, ir.Readout) and node.mode == "vote":
        return 0, math.prod(src.shape)
    return None


def faithful_counts(graph: ir.Graph, activity) -> list[Count]:
    """Every op the deployment executes, per layer of the deployed (partitioned) graph."""
    counts = []
    for node in graph.nodes.values():
        count = _faithful_synapse(graph, node, activity) if isinstance(node, ir.SYNAPSES) else \
            _faithful_other(graph, node, activity)
        if count is not None:
            counts.append(count)
    return counts


def _paper_spike_source(graph: ir.Graph, node: ir.Node) -> ir.Node | None:
    """The neuron layer whose rate the paper convention applies to synapse `node`: its input, through pooling and
    flattening and, except on the residual stream, through attention gates (which pass gated spikes). None for a
    shortcut conv on the real-valued stream, which the convention leaves out."""
    if _feeds_stream(graph, node.name):
        src = _through(graph, node.inputs[0], ir.POOLING_AND_RESHAPE)
    else:
        src = graph.nodes[node.inputs[0]]
        while isinstance(src, ir.POOLING_AND_RESHAPE + (ir.HostModule,)):
            binary = [i for i in src.inputs if graph.nodes[i].kind == "binary"]
            src = graph.nodes[binary[0] if isinstance(src, ir.HostModule) and binary else src.inputs[0]]
    return src if isinstance(src, ir.LIF) else None


def paper_counts(source: ir.Graph, rates: dict[str, np.ndarray]) -> list[Count]:
    """The published convention on the model as converted: the first synapse's FL as MACs (once if the image repeats
    over T, else every step); every synapse fed by spikes as ACs[t] = fr[t] · FL; everything else left out (listed
    with zero energy and the reason)."""
    repeat = next(n for n in source.nodes.values() if isinstance(n, ir.Input)).repeat_over_t
    counts = []
    for node in source.nodes.values():
        if isinstance(node, ir.SYNAPSES):
            counts.append(_paper_synapse(source, node, rates, repeat))
        elif not isinstance(node, (ir.Input, ir.Flatten)):
            counts.append(_left_out(node, source.timesteps, rates))
    return counts


def _left_out(node: ir.Node, timesteps: int, rates: dict) -> Count:
    """A row the paper convention does not price (neurons keep their spike counts, for information)."""
    neuron = isinstance(node, ir.LIF)
    category = "neurons" if neuron else "attention and gates" if isinstance(node, ir.HostModule) else \
        "pooling, sums, readout"
    size = math.prod(node.shape) if neuron else 0
    return _count(node, "host", category, timesteps, spikes=rates[node.name] * size if neuron else _zeros(timesteps),
                  neurons=size, counted=False, note="left out by the paper convention")


def _paper_synapse(graph: ir.Graph, node: ir.Node, rates: dict, repeat: bool) -> Count:
    timesteps, flops = graph.timesteps, float(paper_flops(node))
    category = _synapse_category(graph, node)
    if category == "first synapse":
        macs = np.zeros(timesteps)
        macs[:1 if repeat else timesteps] = flops
        note = "E_MAC · FL, once: the repeated image gives the same output" if repeat else "E_MAC · FL every step"
        return _count(node, "host", category, timesteps, macs=macs, flops=flops, note=note)
    src = _paper_spike_source(graph, node)
    if src is None:
        return _count(node, "host", category, timesteps, flops=flops, counted=False,
                      note="left out by the paper convention: reads the real-valued membrane stream")
    return _count(node, "chip", category, timesteps, acs=rates[src.name] * flops, flops=flops,
                  note=f"E_AC · fr({src.name}) · FL")


def transfers(graph: ir.Graph, activity) -> list[dict]:
    """Per cut: values per step, non-zero values per step (measured or assumed), bits per value and T·values·bits.
    Bits: 1 per binary spike; host→chip graded payloads HOST_MESSAGE_BITS (16, as public Loihi 2 runs send them);
    chip→host graded spikes of a relay GRADED_MESSAGE_BITS (24); an input neuron layer's bias (a `.net`'s input
    image) is written once per sample, as Lava's int16 Var (BIAS_STORAGE_BITS)."""
    rows = []
    for cut in graph.cuts:
        src = graph.nodes[cut["tensor"]]
        bits = BIAS_STORAGE_BITS if cut["kind"] == "bias" else 1 if src.kind == "binary" else \
            HOST_MESSAGE_BITS if cut["direction"] == "host->chip" else GRADED_MESSAGE_BITS
        steps = 1 if cut["kind"] == "bias" else activity.timesteps
        nonzero = _per_step_sum(activity.density(src.name), src.shape) \
            if not isinstance(src, ir.SYNAPSES + (ir.Add,)) or src.placement == "host" else None
        rows.append({**{k: cut[k] for k in ("tensor", "to", "from_segment", "to_segment", "direction", "kind",
                                             "values_per_step", "waits_for_window")},
                     "bits_per_value": bits, "bits": steps * cut["values_per_step"] * bits,
                     "nonzero_per_step": None if nonzero is None else [float(v) for v in nonzero]})
    return rows
