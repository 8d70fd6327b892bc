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
`snn2hw.hardware_sims.loihi_numerics`.
"""
import math

import numpy as np
import torch

from . import ir
from .errors import UserError
from .hardware_sims import loihi_numerics as fmt

WEIGHT_GRID_MAX = fmt.WEIGHT_MAX - 1  # 254: the largest even 8-bit weight (mixed-sign Dense drops the LSB)
PAYLOAD_FRAC_BITS_MAX = 8  # fractional bits of graded spike payloads (gates in (0, 1))
# Largest |a| per step the calibration may reach: u = a << 6 wraps at 2^23, so |a| < 2^17; one bit is kept as
# headroom for inputs stronger than the calibration samples.
A_SAFE = 2 ** (fmt.UV_BITS - 1 - fmt.ACT_SHIFT - 1)
GRADED_MESSAGE_BITS = 24  # Lava's graded spikes travel in 24-bit messages
SYNAPSES = (ir.Conv2d, ir.Linear)


def _to_grid(w: torch.Tensor, factor: float) -> np.ndarray:
    """round(w · factor) on the even grid [-256, 254] if w has both signs, else on [0, 255] / [-255, 0]."""
    x = w.double().numpy() * factor
    if (x < 0).any() and (x > 0).any():
        return np.clip(2 * np.rint(x / 2), fmt.WEIGHT_MIN_MIXED, WEIGHT_GRID_MAX).astype(np.int64)
    return np.clip(np.rint(x), -fmt.WEIGHT_MAX, fmt.WEIGHT_MAX).astype(np.int64)


def _sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    noise = float(((ref - approx) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((ref ** 2).sum()) / noise)


def _per_channel_cost_db(w: torch.Tensor, factor: float) -> float:
    """How much SQNR the shared per-layer scale costs: mean over output channels of (SQNR with the channel's own
    scale) - (SQNR with the layer's scale). BN folding makes channel ranges differ; this says by how much."""
    costs = []
    for c in range(w.shape[0]):
        wc = w[c:c + 1]
        peak = float(wc.abs().max())
        if peak == 0:
            continue
        own = _sqnr_db(wc.double().numpy(), _to_grid(wc, WEIGHT_GRID_MAX / peak) / (WEIGHT_GRID_MAX / peak))
        shared = _sqnr_db(wc.double().numpy(), _to_grid(wc, factor) / factor)
        if math.isfinite(own) and math.isfinite(shared):
            costs.append(own - shared)
    return float(np.mean(costs)) if costs else 0.0


def _payload_bits(src: ir.Node, values: dict) -> int:
    """q: 0 where the payload is already an integer (spikes, event counts), else PAYLOAD_FRAC_BITS_MAX."""
    v = values[src.name]
    return 0 if src.kind == "binary" or bool(torch.equal(v, v.round())) else PAYLOAD_FRAC_BITS_MAX


def _bias_format(b_v: np.ndarray) -> tuple[np.ndarray, int]:
    peak = float(np.abs(b_v).max(initial=0))
    exp = 0 if peak <= fmt.BIAS_MANT_MAX else min(fmt.BIAS_EXP_MAX, math.ceil(math.log2(peak / fmt.BIAS_MANT_MAX)))
    mant = np.clip(np.rint(b_v / 2 ** exp), fmt.BIAS_MANT_MIN, fmt.BIAS_MANT_MAX).astype(np.int64)
    return mant, exp


def _channel_bias(node, shape) -> torch.Tensor:
    b = node.bias if node.bias is not None else torch.zeros(shape[0])
    return b.double().view(-1, *([1] * (len(shape) - 1))).expand(shape)


def _input_peak(values, synapses, injected, shape) -> float:
    """max |a| over the calibration data, in float units: what the neuron's input port receives per step."""
    a = torch.zeros(1, dtype=torch.float64)
    for s in synapses:
        a = a + values[s.name].double() - _channel_bias(s, shape)
    for i in injected:
        a = a + values[i.name].double()
    return float(a.abs().max())


def _scale(neuron, synapses, graded: dict, a_peak: float, notes: list) -> tuple[float, dict]:
    """σ and each synapse's payload fractional bits q. σ is as large as the 8-bit weights allow, unless the input
    port's headroom (|a| < A_SAFE, so u never wraps) or the 17-bit threshold caps it; graded inputs then spend on
    payload precision (up to PAYLOAD_FRAC_BITS_MAX bits) what the weights do not need."""
    live = [s for s in synapses if float(s.weight.abs().max()) > 0]  # an all-zero synapse (pruned, or MS-ResNet's
    # zero-initialised last BN) constrains nothing
    caps = {"8-bit weights": min(WEIGHT_GRID_MAX * 2 ** (PAYLOAD_FRAC_BITS_MAX if graded[s.name] else 0)
                                 / float(s.weight.abs().max()) for s in live)} if live else {}
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
        need = float(s.weight.abs().max()) * sigma / WEIGHT_GRID_MAX  # 2^q must be at least this for W_int to fit
        q[s.name] = max(0, math.ceil(math.log2(need))) if graded[s.name] and need > 1 else 0
    return sigma, q


def _quantize_group(graph, values, neuron, synapses, injected, extra_bias):
    """One neuron layer (or the readout) and the chip synapses feeding it."""
    name = neuron.name if neuron is not None else synapses[0].name
    if neuron is not None and neuron.input_scale != 1.0:
        raise UserError(f"layer {name}: a chip neuron with an input scale ({neuron.input_scale}) is not supported; "
                        "normalise_neurons must move it into the synapses first.")
    graded = {s.name: _payload_bits(graph.nodes[s.inputs[0]], values) > 0 for s in synapses}
    notes = []
    shape = (neuron or synapses[0]).shape
    a_peak = _input_peak(values, synapses, injected, shape)
    sigma, q = _scale(neuron, synapses, graded, a_peak, notes)
    entry = {"layer": name, "scale": sigma, "calibration_peak_input": a_peak, "synapses": [], "notes": notes}
    for s in synapses:
        factor = sigma / 2 ** q[s.name]
        w_int = _to_grid(s.weight, factor)
        s.quant = {"weight": w_int, "payload_frac_bits": q[s.name], "scale": sigma,
                   "num_message_bits": 0 if graph.nodes[s.inputs[0]].kind == "binary" else GRADED_MESSAGE_BITS}
        entry["synapses"].append({
            "name": s.name, "payload_frac_bits": q[s.name], "weight_bits": 8,
            "weight_sqnr_db": round(_sqnr_db(s.weight.double().numpy(), w_int / factor), 2),
            "clipped_weights": int((np.abs(s.weight.double().numpy() * factor) > WEIGHT_GRID_MAX + 1).sum()),
            "per_channel_scale_cost_db": round(_per_channel_cost_db(s.weight, factor), 2)})
    if neuron is None:
        return entry
    bias = sum((_channel_bias(s, neuron.shape) for s in synapses), torch.zeros(neuron.shape, dtype=torch.float64))
    if extra_bias is not None:
        bias = bias + _channel_bias(extra_bias, neuron.shape)
    # In v's own units (1/64 of an activation unit): rounding the bias to whole activation units, the most lava-dl
    # netx can hold (it fixes bias_exp at 6), cost the TCJA demo 0.5-1.4 points; a .net then says where it is inexact.
    mant, exp = _bias_format(bias.numpy() * sigma * 2 ** fmt.ACT_SHIFT)
    vth = int(round(neuron.threshold * sigma))
    dv = min(fmt.DECAY_MAX, int(round(fmt.DECAY_UNITY * (1 - neuron.decay))))
    if not math.isclose(1 - dv / fmt.DECAY_UNITY, neuron.decay, abs_tol=1 / fmt.DECAY_UNITY) and neuron.decay != 0:
        notes.append(f"decay {neuron.decay} is {1 - dv / fmt.DECAY_UNITY} in 12 bits")
    neuron.quant = {"du": fmt.DECAY_MAX, "dv": dv, "vth": vth, "bias_mant": mant, "bias_exp": exp, "scale": sigma,
                    "injected": [i.name for i in injected]}
    entry.update({"vth": vth, "dv": dv, "du": fmt.DECAY_MAX, "bias_exp": exp,
                  "fires_at": "v > vth<<6" + (" (source fires at v >= threshold: differs at exact ties only)"
                                              if neuron.fire_at_threshold else "")})
    return entry


@torch.no_grad()
def quantize(graph: ir.Graph, calibration: torch.Tensor) -> ir.Graph:
    """Set `quant` on every chip synapse and neuron; the per-layer report goes to `graph.quant_report`.

    Preserves: nothing exactly, by design: the fixed-point simulator's spikes differ from the folded float graph's
    by quantization only (the ladder measures how much)."""
    if not graph.segments:
        raise ValueError("quantize needs a partitioned graph (run partition_host_chip first)")
    nodes = {k: ir.dataclasses.replace(v, inputs=list(v.inputs), quant={}) for k, v in graph.nodes.items()}
    graph = graph.replace(nodes)
    _, values = graph.run(calibration, record=True)
    report = []
    for name, node in nodes.items():
        if node.placement != "chip":
            continue
        if isinstance(node, ir.LIF):
            src = nodes[node.inputs[0]]
            feeds = [nodes[i] for i in src.inputs] if isinstance(src, ir.Add) and src.placement == "chip" else [src]
            synapses = [f for f in feeds if isinstance(f, SYNAPSES) and f.placement == "chip"]
            injected = [f for f in feeds if f.placement == "host"]
            report.append(_quantize_group(graph, values, node, synapses, injected,
                                          src if isinstance(src, ir.Add) else None))
        elif isinstance(node, SYNAPSES) and any(isinstance(nodes[r], ir.Readout) for r in graph.consumers(name)):
            report.append(_quantize_group(graph, values, None, [node], [], None))
        elif isinstance(node, (ir.AvgPool2d, ir.BatchNorm)):
            raise UserError(f"layer {name} ({type(node).__name__}) is on chip but Loihi has no such operation; "
                            "it should have been folded.")
    return ir.dataclasses.replace(graph, notes=graph.notes + [f"quantize: {len(report)} chip layers"],
                                  quant_report=report)
