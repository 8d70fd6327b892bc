"""Quantize the chip nodes to Loihi 2's fixed-point formats (the `quantize` pass).

Every chip neuron layer gets one integer scale σ (integer activation units per float unit) shared by all the
synapses that feed it, because Lava sums their outputs at the neuron's input port:

    W_int = round_to_even(W · σ / 2^q)        8-bit weights on the even grid Lava's mixed-sign Dense keeps
    payload = round(value · 2^q)              q = 0 for binary spikes and integer event counts
    vth = round(θ · σ)                        Lava fires when v > vth << 6 and v counts activations << 6
    bias: b · σ · 64 = bias_mant << bias_exp  (13-bit mantissa, 3-bit exponent)
    dv = 4096 · (1 - decay), du = 4095        u = a every step: the source models have no synaptic current memory
Graded values a host synapse computes for a neuron that also has chip synapses (the GAC encoder's share of the
MS-ResNet stream) enter as currents round(value · σ). A chip synapse feeding the readout keeps its own σ; the host
divides its accumulations by σ and adds the bias. The numeric formats themselves live in
`snn2hw.hardware_sims.loihi_formats`.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import ir
from ..errors import UserError
from ..hardware_sims import loihi_formats as fmt
from ..hardware_sims.loihi_formats import WEIGHT_GRID_MAX

PAYLOAD_FRAC_BITS_MAX = 8  # fractional bits of graded spike payloads (gates in (0, 1))
# Largest |a| per step the calibration may reach: u = a << 6 wraps at 2^23, so |a| < 2^17; one bit is kept as
# headroom for inputs stronger than the calibration samples.
A_SAFE = 2 ** (fmt.UV_BITS - 1 - fmt.ACT_SHIFT - 1)


def _to_grid(x: np.ndarray) -> np.ndarray:
    """round(x) on the even grid [-256, 254] for rows (output channels) of `x` with both signs, else on
    [-255, 255] (a single-sign row keeps its odd values). `x` is `[rows, ...]`, already scaled."""
    flat = x.reshape(len(x), -1)
    mixed = (flat.min(1) < 0) & (flat.max(1) > 0)

    def even():
        y = x * 0.5
        np.rint(y, out=y)
        y *= 2
        return np.clip(y, fmt.WEIGHT_MIN_MIXED, WEIGHT_GRID_MAX, out=y)

    def odd():
        return np.clip(np.rint(x), -fmt.WEIGHT_MAX, fmt.WEIGHT_MAX)

    grid = even() if mixed.all() else odd() if not mixed.any() else \
        np.where(mixed.reshape(-1, *([1] * (x.ndim - 1))), even(), odd())
    return grid.astype(np.int64)


def _weights_to_grid(w: np.ndarray, factor: float) -> np.ndarray:
    """The layer's integer weights: one sign mode for the whole tensor, as Lava's Dense decides it."""
    return _to_grid((w * factor)[None])[0]


def _sqnr_db(ref: np.ndarray, approx: np.ndarray, axis=None):
    """10 log10(signal / noise) in dB, inf where the approximation is exact."""
    noise = ((ref - approx) ** 2).sum(axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(noise == 0, np.inf, 10 * np.log10((ref ** 2).sum(axis) / noise))


def _per_channel_cost_db(w: np.ndarray, factor: float) -> float:
    """How much SQNR the shared per-layer scale costs: mean over output channels of (SQNR with the channel's own
    scale) - (SQNR with the layer's scale). BN folding makes channel ranges differ; this says by how much."""
    rows = w.reshape(len(w), -1)
    peak = np.abs(rows).max(1, keepdims=True)
    rows, peak = rows[peak[:, 0] > 0], peak[peak[:, 0] > 0]
    if not len(rows):
        return 0.0
    own_factor = WEIGHT_GRID_MAX / peak
    own = _sqnr_db(rows, _to_grid(rows * own_factor) / own_factor, axis=1)
    shared = _sqnr_db(rows, _to_grid(rows * factor) / factor, axis=1)
    finite = np.isfinite(own) & np.isfinite(shared)
    return float(np.mean(own[finite] - shared[finite])) if finite.any() else 0.0


def _bias_format(b_v: np.ndarray) -> tuple[np.ndarray, int, int]:
    """→ (mantissas, exponent, how many saturate): σ is set by weights, threshold and headroom, never by the bias,
    so a bias beyond the largest mantissa at the largest exponent saturates (the report says how many)."""
    peak = float(np.abs(b_v).max(initial=0))
    exp = 0 if peak <= fmt.BIAS_MANT_MAX else min(fmt.BIAS_EXP_MAX, math.ceil(math.log2(peak / fmt.BIAS_MANT_MAX)))
    exact = np.rint(b_v / 2 ** exp)
    mant = np.clip(exact, fmt.BIAS_MANT_MIN, fmt.BIAS_MANT_MAX)
    return mant.astype(np.int64), exp, int((mant != exact).sum())


def _channel_bias(node, shape) -> torch.Tensor:
    b = node.bias if node.bias is not None else torch.zeros(shape[0])
    return b.double().view(-1, *([1] * (len(shape) - 1))).expand(shape)


@dataclass
class _Group:
    """A chip neuron layer (or the readout synapse, `neuron` None) with the nodes that feed its input port: chip
    `synapses` and host values `injected` as currents. An Add joining them contributes its bias (`extra_bias`)."""
    neuron: ir.LIF | None
    synapses: list
    injected: list
    extra_bias: ir.Add | None = None

    @property
    def name(self) -> str:
        return self.neuron.name if self.neuron is not None else self.synapses[0].name

    @property
    def shape(self) -> tuple:
        return (self.neuron or self.synapses[0]).shape

    def synapse_bias(self) -> torch.Tensor:
        return sum((_channel_bias(s, self.shape) for s in self.synapses), torch.zeros(self.shape, dtype=torch.float64))


def _groups(graph: ir.Graph) -> list[_Group]:
    groups = []
    for name, node in graph.nodes.items():
        if node.placement != "chip":
            continue
        if isinstance(node, ir.LIF):
            src = graph.nodes[node.inputs[0]]
            feeds = graph.input_port_feeds(name) if src.placement == "chip" else [src]
            groups.append(_Group(node, [f for f in feeds if isinstance(f, ir.SYNAPSES) and f.placement == "chip"],
                                 [f for f in feeds if f.placement == "host"],
                                 src if isinstance(src, ir.Add) else None))
        elif isinstance(node, ir.SYNAPSES) and any(isinstance(graph.nodes[r], ir.Readout) for r in graph.consumers(name)):
            groups.append(_Group(None, [node], []))
        elif isinstance(node, (ir.AvgPool2d, ir.BatchNorm)):
            raise UserError(f"layer {name} ({type(node).__name__}) is on chip but Loihi has no such operation; "
                            "it should have been folded.")
    return groups


class _Calibration:
    """The statistics the quantizer needs, reduced batch by batch while the float graph runs (so memory does not
    grow with the number of calibration samples): per group, max |a| in float units, where a = sum of its
    synapses' outputs without their biases plus its injected host values (what the input port receives per
    step); per graded synapse source, whether every value is an integer (event counts need no fractional bits)."""

    def __init__(self, graph: ir.Graph, groups: list[_Group]):
        self.peak = {g.name: 0.0 for g in groups}
        self.integer = {s.inputs[0]: True for g in groups for s in g.synapses
                        if graph.nodes[s.inputs[0]].kind != "binary"}
        self.readers: dict[str, list[_Group]] = {}  # node → the groups whose input port it feeds
        for g in groups:
            for f in g.synapses + g.injected:
                self.readers.setdefault(f.name, []).append(g)
        # a = (sum of the feeds' values) - (sum of the synapses' biases)
        self.bias = {g.name: g.synapse_bias() for g in groups}
        self.partial: dict[str, tuple[int, torch.Tensor]] = {}  # group → (feeds seen, their sum) in this batch

    def observe(self, name: str, value: torch.Tensor) -> None:
        if name in self.integer:
            self.integer[name] &= bool(torch.equal(value, value.round()))
        for g in self.readers.get(name, ()):
            seen, total = self.partial.pop(g.name, (0, None))
            total = value.to(torch.float64, copy=True) if total is None else total.add_(value)
            if seen + 1 < len(g.synapses) + len(g.injected):
                self.partial[g.name] = (seen + 1, total)
            else:
                self.peak[g.name] = max(self.peak[g.name], _peak(total.sub_(self.bias[g.name])))


def _peak(x: torch.Tensor) -> float:
    """max |x|, without an |x| copy."""
    low, high = torch.aminmax(x)
    return max(-float(low), float(high))


def _scale(neuron, synapses, graded: dict, a_peak: float, notes: list) -> tuple[float, dict]:
    """σ and each synapse's payload fractional bits q. σ is as large as the 8-bit weights allow, unless the input
    port's headroom (|a| < A_SAFE, so u never wraps) or the 17-bit threshold caps it; graded inputs then spend on
    payload precision (up to PAYLOAD_FRAC_BITS_MAX bits) what the weights do not need."""
    peak = {s.name: _peak(s.weight) for s in synapses}
    live = [s for s in synapses if peak[s.name] > 0]  # an all-zero synapse (pruned, or MS-ResNet's
    # zero-initialised last BN) constrains nothing
    caps = {"8-bit weights": min(WEIGHT_GRID_MAX * 2 ** (PAYLOAD_FRAC_BITS_MAX if graded[s.name] else 0)
                                 / peak[s.name] for s in live)} if live else {}
    if a_peak > 0:
        caps["input headroom"] = A_SAFE / a_peak
    if neuron is not None and neuron.threshold > 0:
        caps[f"{fmt.VTH_BITS}-bit threshold"] = fmt.VTH_MAX / neuron.threshold
    if not caps:
        raise UserError(f"layer {neuron.name if neuron is not None else synapses[0].name}: no weight, input or "
                        "threshold sets a fixed-point scale (all synapses are zero and the threshold is 0).")
    binding = min(caps, key=caps.get)
    sigma = caps[binding]
    if binding != "8-bit weights":
        notes.append(f"scale set by the {binding}")
    q = {}
    for s in synapses:
        need = peak[s.name] * sigma / WEIGHT_GRID_MAX  # 2^q must be at least this for W_int to fit
        q[s.name] = max(0, math.ceil(math.log2(need))) if graded[s.name] and need > 1 else 0
    return sigma, q


def _quantize_group(graph: ir.Graph, group: _Group, stats: _Calibration) -> dict:
    """One neuron layer (or the readout) and the chip synapses feeding it."""
    neuron, synapses, name = group.neuron, group.synapses, group.name
    if neuron is not None and neuron.input_scale != 1.0:
        raise UserError(f"layer {name}: a chip neuron with an input scale ({neuron.input_scale}) is not supported; "
                        "normalise_neurons must move it into the synapses first.")
    # q = 0 where the payload is already an integer (spikes, event counts)
    graded = {s.name: not stats.integer.get(s.inputs[0], True) for s in synapses}
    notes = []
    a_peak = stats.peak[name]
    sigma, q = _scale(neuron, synapses, graded, a_peak, notes)
    entry = {"layer": name, "scale": sigma, "calibration_peak_input": a_peak, "synapses": [], "notes": notes}
    for s in synapses:
        factor = sigma / 2 ** q[s.name]
        w = s.weight.double().numpy()
        w_int = _weights_to_grid(w, factor)
        s.quant = {"weight": w_int, "payload_frac_bits": q[s.name], "scale": sigma,
                   "num_message_bits": 0 if graph.nodes[s.inputs[0]].kind == "binary" else fmt.GRADED_MESSAGE_BITS}
        entry["synapses"].append({
            "name": s.name, "payload_frac_bits": q[s.name], "weight_bits": fmt.DEFAULT_NUM_WEIGHT_BITS,
            "weight_sqnr_db": round(float(_sqnr_db(w, w_int / factor)), 2),
            "clipped_weights": int((np.abs(w * factor) > WEIGHT_GRID_MAX + 1).sum()),
            "per_channel_scale_cost_db": round(_per_channel_cost_db(w, factor), 2)})
    if neuron is None:
        return entry
    bias = group.synapse_bias()
    if group.extra_bias is not None:
        bias = bias + _channel_bias(group.extra_bias, neuron.shape)
    # In v's own units (1/64 of an activation unit): rounding the bias to whole activation units, the most lava-dl
    # netx can hold (it fixes bias_exp at 6), cost the TCJA demo 0.5-1.4 points; a .net then says where it is inexact.
    mant, exp, saturated = _bias_format(bias.numpy() * sigma * 2 ** fmt.ACT_SHIFT)
    if saturated:
        notes.append(f"{saturated} biases saturate at {fmt.BIAS_MANT_BITS}-bit mantissa << {exp}")
    vth = int(round(neuron.threshold * sigma))
    dv = min(fmt.DECAY_MAX, int(round(fmt.DECAY_UNITY * (1 - neuron.decay))))
    if not math.isclose(1 - dv / fmt.DECAY_UNITY, neuron.decay, abs_tol=1 / fmt.DECAY_UNITY) and neuron.decay != 0:
        notes.append(f"decay {neuron.decay} is {1 - dv / fmt.DECAY_UNITY} in 12 bits")
    neuron.quant = {"du": fmt.DECAY_MAX, "dv": dv, "vth": vth, "bias_mant": mant, "bias_exp": exp, "scale": sigma,
                    "injected": [i.name for i in group.injected]}
    entry.update({"vth": vth, "dv": dv, "du": fmt.DECAY_MAX, "bias_exp": exp,
                  "fires_at": "v > vth<<6" + (" (source fires at v >= threshold: differs at exact ties only)"
                                              if neuron.fire_at_threshold else "")})
    return entry


@torch.no_grad()
def quantize(graph: ir.Graph, calibration: torch.Tensor) -> ir.Graph:
    """Set `quant` on every chip synapse and neuron; the per-layer report goes to `graph.quant_layers`.

    Preserves: nothing exactly, by design: the fixed-point simulator's spikes differ from the folded float graph's
    by quantization only (the ladder measures how much)."""
    if not graph.segments:
        raise ValueError("quantize needs a partitioned graph (run partition_host_chip first)")
    nodes = {k: v.copy(quant={}) for k, v in graph.nodes.items()}
    graph = graph.replace(nodes)
    groups = _groups(graph)
    stats = _Calibration(graph, groups)
    graph.observe_in_batches(calibration, stats.observe)
    report = [_quantize_group(graph, g, stats) for g in groups]
    return graph.replace(graph.nodes, f"quantize: {len(report)} chip layers", quant_layers=report)
