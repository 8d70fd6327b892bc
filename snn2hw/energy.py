"""Energy accounting: MACs, ACs, neuron updates and spikes per layer, priced by a cost preset, in two modes.

**faithful** counts everything the deployment executes, on the deployed graph (`compiled.fixed`: folded,
unrolled, partitioned), per sample and per time step t:

    chip synapse   ops[t] = Σ_p [x[t, p] ≠ 0] · F(p)        one op per event per synapse it really reaches;
                   F(p) = #{(o, q): w[o, ·] ≠ 0 links input p to an output q inside the map}    (padding, stride and
                   zero weights excluded, as NeuroBench's "Effective" ops); an AC if x is binary spikes, a MAC if x
                   carries payloads (graded spikes, event counts): payload × weight
    host synapse   MACs[t] = Σ_p F_all(p)                     dense: every input, every weight, no zero padding
                   (NeuroBench's "Dense"); the host does not skip zeros
    neuron         updates[t] = number of neurons; spikes[t] = Σ_p s[t, p]
    host op        pooling, sums, GAC's attention and TCJA's gates by their formulas (`host_module_ops`)
    cut            T · values per step · bits per value crossing host↔chip (`transfers`)

**paper** reproduces the published convention on the model as converted (`compiled.source`; Yao et al.,
Attention-SNN supplement Table S1; GAC, AAAI 2024):

    E = E_MAC · FL¹ · (1 if the image repeats over T, else T)  +  E_AC · Σ_{l ≥ 2} Σ_t fr_{l-1}[t] · FL^l
    FL^l = k_h · k_w · h_out · w_out · c_in / groups · c_out (conv),  i · o (linear)

where fr is the firing rate of the neuron layer whose spikes reach synapse l (through pooling, flattening and
attention gates). It leaves out attention, gates, neuron updates, the downsample conv on the real-valued MS-ResNet
stream, pooling and transfers, and counts graded inputs as ACs; `comparison` lists each difference.

Counts come from recorded activity (`RecordedActivity`: any backend's values, per position and step) or from firing
rates (`RateActivity`: the analytic mode). Energies per operation are data (`presets/*.toml`); E = Σ count ·
E_op(placement). Units: one sample (one inference), energies in mJ.

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
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import ir
from .errors import UserError
from .files import write_text_atomic
from .lava_backend import LavaLimits

PRESET_DIR = Path(__file__).parent / "presets"
OPS = ("mac", "ac", "neuron_update", "spike")
CORE_LIMITS = ("cores_per_chip", "neurons", "synapses", "synaptic_memory_bits", "fan_in_axons")
MODES = ("paper", "faithful")
BACKENDS = ("fixed", "folded", "lava")
SYNAPSES = (ir.Conv2d, ir.Linear)
PASS_THROUGH = (ir.MaxPool2d, ir.AvgPool2d, ir.Flatten)

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
                           "1 bit per spike, 24 bits per graded payload or injected current, 32 bits per accumulation "
                           "read back.",
}


# ------------------------------------------------------------------------------------------------------ presets


@dataclass(frozen=True)
class Cost:
    value: float  # pJ per operation (per bit for transfers), or a count for core limits
    source: str
    estimated: bool


@dataclass(frozen=True)
class Preset:
    """Energies per operation on the host and on the chip, per bit crossing host↔chip, and Loihi 2 core limits."""
    name: str
    description: str
    file: str
    host: dict
    chip: dict
    transfer_bit: Cost
    core: dict | None

    def pj(self, placement: str, op: str) -> float:
        return (self.chip if placement == "chip" else self.host)[op].value

    def summary(self) -> dict:
        def costs(table):
            return {k: vars(v) for k, v in table.items()}
        return {"name": self.name, "description": self.description, "file": self.file, "host_pj": costs(self.host),
                "chip_pj": costs(self.chip), "transfer_pj_per_bit": vars(self.transfer_bit)}


def builtin_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def load_preset(spec: str) -> Preset:
    """A built-in preset by name (`45nm`, `int8-45nm`, `loihi2`) or a user's TOML file by path."""
    path = Path(spec)
    if not path.is_file():
        if spec not in builtin_presets():
            raise UserError(f"--preset {spec}: not a file and not a built-in preset "
                            f"({', '.join(builtin_presets())}).")
        path = PRESET_DIR / f"{spec}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"preset {path} is not valid TOML ({e}).") from None
    host = _cost_table(data, "host", OPS, path, "pj")
    chip = _cost_table(data, "chip", OPS, path, "pj") if "chip" in data else host
    transfer = _cost_table(data, "transfer", ("bit",), path, "pj")["bit"]
    core = _cost_table(data, "core", CORE_LIMITS, path, "value") if "core" in data else None
    return Preset(str(data.get("name", path.stem)), str(data.get("description", "")), str(path), host, chip, transfer,
                  core)


def _cost_table(data: dict, table: str, keys: tuple, path: Path, unit: str) -> dict:
    entries = data.get(table)
    if not isinstance(entries, dict):
        raise UserError(f"preset {path} lacks the [{table}] table.")
    out = {}
    for key in keys:
        entry = entries.get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get(unit), (int, float)) or entry[unit] < 0 \
                or not isinstance(entry.get("source"), str) or not isinstance(entry.get("estimated"), bool):
            raise UserError(f"preset {path}: [{table}.{key}] needs {unit} (a number >= 0), source (text) and "
                            "estimated (true or false).")
        out[key] = Cost(float(entry[unit]), entry["source"], entry["estimated"])
    return out


def core_limits(preset: Preset) -> dict:
    """The preset's Loihi 2 core limits, or the built-in `loihi2` preset's."""
    return preset.core if preset.core is not None else load_preset("loihi2").core


# ------------------------------------------------------------------------------------- synapse geometry (fan-out)


def _taps(in_size: int, out_size: int, kernel: int, stride: int, pad_before: int, dilation: int):
    """For each output position o and kernel tap u: the input index i = o·s - p + u·d and whether it lies inside the
    input (taps on zero padding read nothing). → (index [out, k], valid [out, k])."""
    o = np.arange(out_size)[:, None]
    u = np.arange(kernel)[None, :]
    index = o * stride - pad_before + u * dilation
    return index, (index >= 0) & (index < in_size)


def _input_taps(in_size, out_size, kernel, stride, pad_before, dilation) -> np.ndarray:
    """A[i, u] = number of output positions at which tap u reads input i (0 or 1)."""
    index, valid = _taps(in_size, out_size, kernel, stride, pad_before, dilation)
    a = np.zeros((in_size, kernel))
    np.add.at(a, (index[valid], np.broadcast_to(np.arange(kernel), index.shape)[valid]), 1)
    return a


def _pad_before(padding, kernel: int, dilation: int, dim: int) -> int:
    """Zeros before the input along `dim`: explicit, or PyTorch's 'same' (d(k-1) // 2) and 'valid' (0)."""
    if padding == "same":
        return dilation * (kernel - 1) // 2
    if padding == "valid":
        return 0
    return padding[dim]


def _conv_dims(node: ir.Conv2d, in_shape: tuple) -> list[tuple]:
    """Per spatial dim: (in, out, kernel, stride, pad_before, dilation)."""
    kernel = node.weight.shape[2:]
    return [(in_shape[1 + d], node.shape[1 + d], kernel[d], node.stride[d],
             _pad_before(node.padding, kernel[d], node.dilation[d], d), node.dilation[d]) for d in range(2)]


def _nonzero_sum(weight: torch.Tensor, shape: tuple, dim: int) -> np.ndarray:
    """Σ over `dim` of [w ≠ 0], with w viewed as `shape`. Weights on the meta device (shape only) all count."""
    if weight.is_meta:
        return np.full(shape[:dim] + shape[dim + 1:], float(shape[dim]))
    return torch.count_nonzero(weight.detach().reshape(shape), dim=dim).double().numpy()


def fanout_map(node: ir.Node, in_shape: tuple, effective: bool = True) -> np.ndarray:
    """F(p): how many synapses input position p really drives, shaped like the input.

    Conv: F(c, y, x) = Σ_{u,v} N[c, u, v] · A_h[y, u] · A_w[x, v],
    N[c, u, v] = #{o in c's group: w[o, c, u, v] ≠ 0} (all of c's group's outputs if not `effective`), A the
    input-tap matrices (`_input_taps`): separable, exact at borders. Linear: F(i) = #{o: W[o, i] ≠ 0}.
    Σ_p F(p) is NeuroBench's "Dense" count per step when `effective` is False (zero padding excluded)."""
    w = node.weight
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
    Linear: max_o #{W[o] ≠ 0}."""
    w = node.weight
    if isinstance(node, ir.Linear):
        return int(_nonzero_sum(w, tuple(w.shape), 1).max())
    (_, v_h), (_, v_w) = [_taps(*dims) for dims in _conv_dims(node, in_shape)]
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


def dense_conv_ops(in_channels: int, out_channels: int, groups: int, in_sizes, kernel, stride, padding,
                   dilation) -> int:
    """MACs of an N-d convolution on one input, taps on zero padding excluded:
    c_out · c_in/groups · Π_d #{(o, u): tap u of output o reads inside the input along d}."""
    pairs = 1
    for d, size in enumerate(in_sizes):
        pad = _pad_before(padding, kernel[d], dilation[d], d)
        out = size if padding == "same" else (size + 2 * pad - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1
        pairs *= int(_taps(size, out, kernel[d], stride[d], pad, dilation[d])[1].sum())
    return out_channels * in_channels // groups * pairs


def _module_conv_ops(conv: torch.nn.Module, in_sizes: tuple) -> int:
    return dense_conv_ops(conv.in_channels, conv.out_channels, conv.groups, in_sizes, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation)


# --------------------------------------------------------------------------------------------- host module formulas


def host_module_ops(module: torch.nn.Module, shape: tuple, timesteps: int) -> tuple[int, int] | None:
    """(MACs, ACs) of one sample's whole window through a non-causal host module on inputs `[T, C, H, W]`; None for
    a module without a formula. Products and sigmoids count as MACs (one each: a lower bound for the sigmoid), sums,
    maxima and ReLUs as ACs.

    GAC (bollossom/GAC GAU.py; models/msresnet.py), r = T // ratio:
        TA   mean and max over C·H·W: 2·T·C·H·W ACs; shared MLP on both: 2·(T·r + r·T) MACs;
             2·r ReLU + T sum ACs
        SCA  two k×k 'same' convs C→C/ρ→C per step: T·(conv_a + conv_b) MACs (`dense_conv_ops`);
             T·C/ρ·H·W ReLU ACs
        gate sigmoid(TA · SCA) · spikes: 3·T·C·H·W MACs (product, sigmoid, gating)
    TCJA (ridgerchu/TCJA src/layers.py; models/tcja.py):
        squeeze mean over H·W: T·C·H·W ACs; Conv1d T→T (k_t, along C) and C→C (k_c, along T), 'same':
        dense MACs; sigmoid(a · b): 2·T·C MACs; x · gate: T·C·H·W MACs
    """
    from .models.msresnet import GAC
    from .models.tcja import TCJA

    c, h, w = shape
    volume = timesteps * c * h * w
    if isinstance(module, GAC):
        mlp_in, mlp_out = module.TA.sharedMLP[0], module.SCA.sharedMLP[0]
        hidden = mlp_in.out_channels
        sca = sum(_module_conv_ops(m, (h, w)) for m in module.SCA.sharedMLP if isinstance(m, torch.nn.Conv2d))
        macs = timesteps * sca + 2 * 2 * timesteps * hidden + 3 * volume
        acs = 2 * volume + 2 * hidden + timesteps + timesteps * mlp_out.out_channels * h * w
        return macs, acs
    if isinstance(module, TCJA):
        convs = _module_conv_ops(module.conv, (c,)) + _module_conv_ops(module.conv_c, (timesteps,))
        return convs + 2 * timesteps * c + volume, volume
    return None


# ------------------------------------------------------------------------------------------------------ activity


class RecordedActivity:
    """Measured activity: density[t, p] = fraction of the samples whose value at step t, position p is non-zero,
    for every node whose values were recorded (spikes, host values, values crossing cuts)."""

    def __init__(self, sums: dict[str, np.ndarray], samples: int, timesteps: int):
        self.sums, self.samples, self.timesteps = sums, samples, timesteps

    def density(self, name: str) -> np.ndarray:
        if name not in self.sums:
            raise UserError(f"no recorded values for layer {name}: the backend did not report it.")
        return self.sums[name] / self.samples


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

    def _rate(self, node: ir.Node) -> np.ndarray:
        if isinstance(node, ir.LIF):
            return self.rates[node.name]
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


def complete_values(graph: ir.Graph, x: torch.Tensor, recorded: dict) -> dict:
    """Every value the counts need, `[T, N, ...]`: recorded values (spikes of every chip neuron layer at least) and,
    where missing, host nodes and chip pooling/reshaping run in float from them. Chip accumulations are not needed
    (synaptic ops depend on a synapse's input only) and stay absent."""
    values = {}
    for name, node in graph.nodes.items():
        if name in recorded:
            values[name] = torch.as_tensor(recorded[name])
            continue
        if isinstance(node, ir.LIF) and node.placement == "chip":
            raise UserError(f"the backend recorded no spikes for chip layer {name}.")
        computable = node.placement == "host" or isinstance(node, PASS_THROUGH)
        if computable and all(i in values for i in node.inputs):
            values[name] = node.run(*([x] if isinstance(node, ir.Input) else [values[i] for i in node.inputs]))
    return values


def _nonzero_sums(graph: ir.Graph, values: dict) -> dict[str, np.ndarray]:
    return {n: (v != 0).sum(1).double().numpy() for n, v in values.items()
            if not isinstance(graph.nodes[n], ir.Readout)}


def record_activity(graph: ir.Graph, backend: str, x: np.ndarray, batch_size: int = 64, deployment=None,
                    lava_limits: LavaLimits = LavaLimits()) -> RecordedActivity:
    """Run `x` on a backend and keep, per node, how often each value is non-zero at each step.

    fixed: the fixed-point simulator (`run_fixed`, the engine of `simulate(compiled, "fixed", x)`), whose spike
    tensors keep positions (counts per layer would lose the border effects); folded: the folded float graph;
    lava: `run_lava` on the deployment (host values recomputed in float from its spikes), within `lava_limits`."""
    from .hardware_sims.fixed_point import run_fixed

    sums: dict[str, np.ndarray] = {}
    if backend == "lava":
        from .deployment import run_lava

        _, spikes = run_lava(deployment, x, lava_limits)
        sums = _nonzero_sums(graph, complete_values(graph, torch.as_tensor(x), spikes))
    else:
        for start in range(0, len(x), batch_size):
            batch = torch.as_tensor(x[start:start + batch_size])
            recorded = run_fixed(graph, batch)[1].values if backend == "fixed" else graph.run(batch, record=True)[1]
            for name, s in _nonzero_sums(graph, complete_values(graph, batch, recorded)).items():
                sums[name] = sums[name] + s if name in sums else s
    return RecordedActivity(sums, len(x), graph.timesteps)


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
    return isinstance(_through(graph, node.inputs[0], PASS_THROUGH), ir.Input)


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
    events = (activity.density(src.name) * fanout_map(node, src.shape)).reshape(timesteps, -1).sum(1)
    key = "acs" if src.kind == "binary" else "macs"
    return _count(node, "chip", category, timesteps, **{key: events}, **extra)


def _faithful_other(graph: ir.Graph, node: ir.Node, activity) -> Count | None:
    """Neurons, host modules, pooling, sums and the readout (formulas in each branch)."""
    timesteps, place = activity.timesteps, node.placement
    size = math.prod(node.shape)
    if isinstance(node, ir.LIF):  # every neuron updates every step; spikes as recorded
        return _count(node, place, "neurons", timesteps, neuron_updates=np.full(timesteps, float(size)),
                      spikes=_per_step_sum(activity.density(node.name), node.shape), neurons=size)
    if isinstance(node, ir.HostModule):
        ops = host_module_ops(node.module, graph.nodes[node.inputs[0]].shape, timesteps)
        if ops is None:
            return _count(node, place, "attention and gates", timesteps,
                          note=f"{type(node.module).__name__} has no op-count formula: not counted")
        macs, acs = ops
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
    if node.placement == "chip" and isinstance(node, (ir.Add, ir.MaxPool2d, ir.AvgPool2d, ir.Flatten)):
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
        count = _faithful_synapse(graph, node, activity) if isinstance(node, SYNAPSES) else \
            _faithful_other(graph, node, activity)
        if count is not None:
            counts.append(count)
    return counts


def _paper_spike_source(graph: ir.Graph, node: ir.Node) -> ir.Node | None:
    """The neuron layer whose rate the paper convention applies to synapse `node`: its input, through pooling and
    flattening and, except on the residual stream, through attention gates (which pass gated spikes). None for a
    shortcut conv on the real-valued stream, which the convention leaves out."""
    if _feeds_stream(graph, node.name):
        src = _through(graph, node.inputs[0], PASS_THROUGH)
    else:
        src = graph.nodes[node.inputs[0]]
        while isinstance(src, PASS_THROUGH + (ir.HostModule,)):
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
        if isinstance(node, SYNAPSES):
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
    Bits: 1 per binary spike; host→chip payloads and injected currents travel as the quantizer's graded messages;
    chip→host accumulations as Lava's 32-bit output words."""
    from .hardware_sims.loihi_numerics import DENSE_OUT_BITS
    from .quantize import GRADED_MESSAGE_BITS

    rows = []
    for cut in graph.cuts:
        src = graph.nodes[cut["tensor"]]
        bits = 1 if src.kind == "binary" else \
            GRADED_MESSAGE_BITS if cut["direction"] == "host->chip" else DENSE_OUT_BITS
        nonzero = _per_step_sum(activity.density(src.name), src.shape) \
            if not isinstance(src, SYNAPSES + (ir.Add,)) or src.placement == "host" else None
        rows.append({**{k: cut[k] for k in ("tensor", "to", "from_segment", "to_segment", "direction", "kind",
                                             "values_per_step", "waits_for_window")},
                     "bits_per_value": bits, "bits": activity.timesteps * cut["values_per_step"] * bits,
                     "nonzero_per_step": None if nonzero is None else [float(v) for v in nonzero]})
    return rows


# ------------------------------------------------------------------------------------------------- Loihi resources


def _synapse_groups(graph: ir.Graph, neuron: ir.LIF) -> list[ir.Node]:
    """The chip synapses feeding a chip neuron layer, directly or through its input port's sum."""
    src = graph.nodes[neuron.inputs[0]]
    feeds = [graph.nodes[i] for i in src.inputs] if isinstance(src, ir.Add) else [src]
    return [f for f in feeds if isinstance(f, SYNAPSES) and f.placement == "chip"]


def _chip_layers(graph: ir.Graph) -> list[tuple[str, int, list]]:
    """(name, neurons, synapse groups) per chip neuron layer, and per chip synapse read by the host (a readout)."""
    layers = [(n.name, math.prod(n.shape), _synapse_groups(graph, n)) for n in graph.nodes.values()
              if isinstance(n, ir.LIF) and n.placement == "chip"]
    fed = {s.name for _, _, groups in layers for s in groups}
    return layers + [(n.name, 0, [n]) for n in graph.nodes.values()
                     if isinstance(n, SYNAPSES) and n.placement == "chip" and n.name not in fed]


def loihi_resources(graph: ir.Graph, limits: dict, weight_bits: int = 8) -> dict:
    """Neurons, synapses, synaptic memory, fan-in and fan-out per chip layer, and the cores they need (estimate).

    synapses = Σ_groups Σ_p F_eff(p) (every (pre, post) pair with a non-zero weight); memory = synapses · weight bits
    (one weight per synapse, as Lava's conv_to_sparse stores a conv; no index overhead); shared-kernel memory =
    non-zero weights · weight bits (a conv encoding that stores each kernel once); fan-in = max synapses onto one
    neuron; fan-out = max synapses from one presynaptic neuron into the layer.
    cores = max(⌈neurons / N⌉, ⌈synapses / S⌉, ⌈memory / M⌉, ⌈conv axons / (A - dense axons)⌉): the
    presynaptic neurons of convs split over the cores (halos ignored), those of dense layers reach every core.
    `cores` uses one weight per synapse, `cores_shared_kernel` the shared-kernel memory. A neuron whose fan-in
    exceeds A (or S) fits no core: flagged with the layer's name."""
    lim = {k: v.value for k, v in limits.items()}
    rows, violations = [], []
    for name, neurons, groups in _chip_layers(graph):
        row = _layer_resources(graph, name, neurons, groups, weight_bits, lim)
        rows.append(row)
        violations += [{"layer": name, "limit": key, "value": row["max_fan_in"], "max": lim[key],
                        "message": f"layer {name}: a neuron has {row['max_fan_in']:,} input synapses, more than "
                                   f"the {int(lim[key]):,} {key.replace('_', ' ')} of one core"}
                       for key in ("fan_in_axons", "synapses") if row["max_fan_in"] > lim[key]]
    cores = sum(r["cores"] for r in rows)
    chips = math.ceil(cores / lim["cores_per_chip"])
    shared = sum(r["cores_shared_kernel"] for r in rows)
    if chips > 1:
        violations.append({"layer": None, "limit": "cores_per_chip", "value": cores, "max": lim["cores_per_chip"],
                           "message": f"the chip layers need {cores} cores: {chips} chips of "
                                      f"{int(lim['cores_per_chip'])}"})
    return {"weight_bits": weight_bits, "layers": rows, "cores": cores, "chips": chips, "cores_shared_kernel": shared,
            "chips_shared_kernel": math.ceil(shared / lim["cores_per_chip"]), "violations": violations,
            "limits": {k: vars(v) for k, v in limits.items()}}


def _layer_resources(graph, name, neurons, groups, weight_bits, lim) -> dict:
    synapses, weights, fan_in, fan_out, axons_conv, axons_dense = 0, 0, 0, 0, 0, 0
    for s in groups:
        src = graph.nodes[s.inputs[0]]
        fan = fanout_map(s, src.shape)
        synapses += int(fan.sum())
        weights += int(torch.count_nonzero(s.weight))
        fan_in += max_fan_in(s, src.shape)
        fan_out = max(fan_out, int(fan.max()))
        if isinstance(s, ir.Conv2d):
            axons_conv += math.prod(src.shape)
        else:
            axons_dense = max(axons_dense, math.prod(src.shape))
    memory, shared = synapses * weight_bits, weights * weight_bits
    room = lim["fan_in_axons"] - axons_dense  # every core of the layer receives all axons of its dense groups
    base = max(1, math.ceil(neurons / lim["neurons"]), math.ceil(synapses / lim["synapses"]),
               math.ceil(axons_conv / room) if room > 0 else 1)
    return {"layer": name, "neurons": neurons, "synapse_groups": [s.name for s in groups], "synapses": synapses,
            "weights": weights, "synaptic_memory_bits": memory, "shared_kernel_memory_bits": shared,
            "max_fan_in": fan_in, "max_fan_out": fan_out, "presynaptic_neurons": axons_conv + axons_dense,
            "cores": max(base, math.ceil(memory / lim["synaptic_memory_bits"])),
            "cores_shared_kernel": max(base, math.ceil(shared / lim["synaptic_memory_bits"]))}


# --------------------------------------------------------------------------------------------------------- report


def _layer_row(count: Count, preset: Preset, segment: str | None, timesteps: int) -> dict:
    split = count.energy_split_pj(preset)
    return {"name": count.name, "op": count.op, "segment": segment, "placement": count.placement,
            "category": count.category, "macs": float(count.macs.sum()), "acs": float(count.acs.sum()),
            "neuron_updates": float(count.neuron_updates.sum()), "spikes": float(count.spikes.sum()),
            "dense_synaptic_ops": count.dense * timesteps, "flops": count.flops * timesteps,
            "energy_mj": sum(split.values()) * 1e-9, "energy_split_mj": {k: v * 1e-9 for k, v in split.items()},
            "counted": count.counted, "note": count.note}


def _mode_report(counts: list[Count], preset: Preset, timesteps: int, segments: list[dict], cuts: list[dict]) -> dict:
    """Per-layer rows, per-segment and host/chip/transfer totals of one mode."""
    segment_of = {n: s["name"] for s in segments for n in s["nodes"]}
    layers = [_layer_row(c, preset, segment_of.get(c.name), timesteps) for c in counts]
    for cut in cuts:
        cut["energy_mj"] = cut["bits"] * preset.transfer_bit.value * 1e-9
    compute = {p: sum(r["energy_mj"] for r in layers if r["placement"] == p) for p in ("host", "chip")}
    transfer = sum(c["energy_mj"] for c in cuts)
    return {"total_energy_mj": compute["host"] + compute["chip"] + transfer, "host_mj": compute["host"],
            "chip_mj": compute["chip"], "transfer_mj": transfer, "layers": layers, "cuts": cuts,
            "segments": [{"name": s["name"], "placement": s["placement"],
                          "energy_mj": sum(r["energy_mj"] for r in layers if r["segment"] == s["name"])}
                         for s in segments]}


def paper_report(source: ir.Graph, rates: dict[str, np.ndarray], preset: Preset) -> dict:
    """The paper mode alone (`paper_counts` priced by `preset`): all it needs is the model's shapes and the rates."""
    return _mode_report(paper_counts(source, rates), preset, source.timesteps, [], [])


def comparison(paper: dict, faithful: dict) -> list[dict]:
    """Energy per category in both modes, with why they differ."""
    def per_category(mode, category):
        if category == "host-chip transfers":
            return mode["transfer_mj"]
        return sum(r["energy_mj"] for r in mode["layers"] if r["category"] == category)
    return [{"row": c, "paper_mj": per_category(paper, c), "faithful_mj": per_category(faithful, c), "why": why}
            for c, why in CATEGORIES.items()]


def build_report(source: ir.Graph, deployed: ir.Graph, activity, preset: Preset, mode: str = "faithful",
                 weight_bits: int = 8, **context) -> dict:
    """Both modes, their comparison, firing rates per layer and step, and the Loihi 2 resource estimate."""
    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: use one of {', '.join(MODES)}.")
    timesteps = deployed.timesteps
    rates = layer_rates(deployed, activity)
    missing = [n for n, node in source.nodes.items() if isinstance(node, ir.LIF) and n not in rates]
    if missing:
        raise UserError(f"the deployed graph has no neuron layer {missing[0]} of the model: cannot apply the paper "
                        "view.")
    faithful = _mode_report(faithful_counts(deployed, activity), preset, timesteps, deployed.segments,
                            transfers(deployed, activity))
    paper = paper_report(source, rates, preset)
    chosen = faithful if mode == "faithful" else paper
    return {**context, "timesteps": timesteps, "mode": mode, "preset": preset.name,
            "total_energy_mj": chosen["total_energy_mj"], "layers": chosen["layers"],
            "modes": {"paper": paper, "faithful": faithful}, "comparison": comparison(paper, faithful),
            "firing_rate": {n: [float(v) for v in r] for n, r in rates.items()},
            "preset_costs": preset.summary(),
            "loihi2": loihi_resources(deployed, core_limits(preset), weight_bits),
            "units": "per sample (one inference); energies in mJ"}


# ---------------------------------------------------------------------------------------------- front ends


def parse_rates(spec: str, graph: ir.Graph) -> tuple[dict[str, np.ndarray], float]:
    """`--firing-rate`: a number in [0, 1] for every neuron layer, or a JSON file mapping layer names to a rate or
    to T per-step rates, with optional "default" (for unnamed layers) and "input" (non-zero fraction of the input).
    → ({layer: rates [T]}, input density)."""
    timesteps = graph.timesteps
    try:
        table = {"default": float(spec)}
    except ValueError:
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"--firing-rate {spec}: neither a number nor an existing JSON file.") from None
        try:
            table = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"--firing-rate {path} is not valid JSON ({e.__class__.__name__}).") from None
        if not isinstance(table, dict):
            raise UserError(f"--firing-rate {path} must hold an object of layer names to rates.")
    rates = {}
    for name, node in graph.nodes.items():
        if isinstance(node, ir.LIF):
            if name not in table and "default" not in table:
                raise UserError(f"--firing-rate {spec} gives no rate for layer {name} (and no \"default\").")
            rates[name] = _rate_array(table.get(name, table.get("default")), timesteps, name)
    return rates, float(_rate_array(table.get("input", 1.0), timesteps, "input")[0])


def _rate_array(value, timesteps: int, name: str) -> np.ndarray:
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), (timesteps,)) \
        if isinstance(value, (int, float)) or (isinstance(value, list) and len(value) == timesteps
                                               and all(isinstance(v, (int, float)) for v in value)) else None
    if values is None or not ((values >= 0) & (values <= 1)).all():
        raise UserError(f"--firing-rate: the rate of {name} must be a number in [0, 1] or a list of {timesteps} "
                        "of them.")
    return np.array(values)


def analytic_graphs(arch: str, timesteps: int | None = None) -> tuple[ir.Graph, ir.Graph]:
    """(source, deployed structure) of an architecture without a checkpoint: weights random but non-zero (uniform
    in [0.5, 1.5], so that every zero in the compiled graph is structural, e.g. the one-to-one identity paths of the
    unrolled stream), compiled by the passes and the partition (no quantization: it needs data)."""
    from .compile import pass_pipeline
    from .convert import convert
    from .models.zoo import build_model
    from .partition import partition_host_chip
    from .passes import run_passes

    try:
        model = build_model(arch, **({"timesteps": timesteps} if timesteps else {}))
    except KeyError as e:
        raise UserError(str(e.args[0])) from None
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) + 0.5)
    source = convert(model, arch)
    return source, partition_host_chip(run_passes(source, pass_pipeline(None, "host")))


def analytic_report(arch: str, timesteps: int | None, firing_rate: str, preset: Preset, mode: str = "faithful",
                    weight_bits: int = 8) -> dict:
    source, deployed = analytic_graphs(arch, timesteps)
    rates, input_rate = parse_rates(firing_rate, deployed)
    return build_report(source, deployed, RateActivity(deployed, rates, input_rate), preset, mode, weight_bits,
                        arch=arch, origin="analytic", firing_rate_spec=firing_rate, input_density=input_rate)


def deployment_report(dep, x: np.ndarray, backend: str, preset: Preset, mode: str = "faithful",
                      weight_bits: int = 8, batch_size: int = 64, lava_limits: LavaLimits = LavaLimits()) -> dict:
    """The report of a loaded deployment (`load_deployment`) on inputs `x`, from `backend`'s activity."""
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}.")
    graph = dep.compiled.fixed
    activity = record_activity(graph, backend, x, batch_size, dep, lava_limits)
    return build_report(dep.compiled.source, graph, activity, preset, mode, weight_bits, arch=dep.compiled.arch,
                        origin=str(dep.path), backend=backend, samples=len(x), tcja=dep.compiled.tcja)


def energy_command(deploy_dir: Path | None = None, *, input: Path | None = None, backend: str = "fixed",
                   arch: str | None = None, timesteps: int | None = None, firing_rate: str | None = None,
                   mode: str = "faithful", preset: str = "45nm", weight_bits: int = 8, samples: int | None = None,
                   batch_size: int = 64, lava_limits: LavaLimits = LavaLimits(), json_out: Path | None = None,
                   html_out: Path | None = None, console=None) -> dict:
    """`snn2hw energy DEPLOY_DIR --input X.npy [--backend fixed|folded|lava] ...` (measured activity) or
    `snn2hw energy --arch NAME --timesteps T --firing-rate R|RATES.json ...` (analytic): prints the tables, writes
    the JSON and the offline HTML report if asked, and returns the report."""
    from rich.console import Console

    from .data import load_inputs
    from .energy_report import print_report, write_html

    console = console or Console()
    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: use one of {', '.join(MODES)}.")
    if not 1 <= weight_bits <= 32:
        raise UserError(f"--weight-bits {weight_bits}: expected 1..32.")
    cost = load_preset(preset)
    if deploy_dir is not None:
        if arch or timesteps or firing_rate:
            raise UserError("--arch, --timesteps and --firing-rate are for the analytic mode, without DEPLOY_DIR.")
        if input is None:
            raise UserError(f"energy {deploy_dir} needs --input X.npy (or use --arch with --firing-rate).")
        from .deployment import load_deployment

        dep = load_deployment(deploy_dir)
        x = load_inputs(input, "--input", dep.compiled.model, dep.compiled.arch)[:samples]
        with console.status(f"{deploy_dir}: {backend} backend on {len(x)} samples"):
            report = deployment_report(dep, x, backend, cost, mode, weight_bits, batch_size, lava_limits)
    else:
        if arch is None or firing_rate is None:
            raise UserError("energy needs DEPLOY_DIR with --input, or --arch with --firing-rate.")
        with console.status(f"{arch}: analytic counts"):
            report = analytic_report(arch, timesteps, firing_rate, cost, mode, weight_bits)
    print_report(report, console)
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=1))
        console.print(f"wrote {json_out}")
    if html_out:
        write_html(report, html_out)
        console.print(f"wrote {html_out}")
    return report
