"""Quantize the chip nodes to Loihi 2's fixed-point formats (the `quantize` pass).

Every chip neuron layer (LIF or relay) gets one integer scale σ (integer activation units per float unit) shared by
all the synapses that feed it, because Lava sums their outputs at the neuron's input port:

    W_int = round_to_even(W · σ / u)          8-bit weights on the even grid Lava's mixed-sign Dense keeps; u is
                                              the source's payload unit: 1 for spikes and integer event counts,
                                              2^q for a host value sent as round(value · 2^q) in 16 bits, the
                                              relay's σ for a relay's graded spikes (24 bits)
    identity synapse: w / 2^k exactly        the reader's σ = the source's unit · w / 2^k (8-bit w, k <= 7)
    vth = round(θ · σ)                        Lava fires when v > vth << 6 and v counts activations << 6
    bias: b · σ · 64 = bias_mant << bias_exp  (13-bit mantissa, 3-bit exponent)
    dv = 4096 · (1 - decay), du = 4095        u = a every step: the source models have no synaptic current memory
A relay sends its input sum as it is, a = σ · (value - carried bias): a GradedVec has no bias, so the biases of its
synapses are carried to the synapses that read it (`_Biases`); the host divides a relay's graded spikes by σ and
adds the carried bias. The numeric formats themselves live in `snn2hw.hardware_sims.loihi_formats`.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import ir
from ..errors import UserError
from ..hardware_sims import loihi_formats as fmt
from ..hardware_sims.loihi_formats import WEIGHT_GRID_MAX
from .relay import is_identity

PAYLOAD_FRAC_BITS_MAX = 8  # fractional bits of graded spike payloads (gates in (0, 1))
# Largest |a| per step the calibration may reach: u = a << 6 wraps at 2^23, so |a| < 2^17; one bit is kept as
# headroom for inputs stronger than the calibration samples.
A_SAFE = 2 ** (fmt.UV_BITS - 1 - fmt.ACT_SHIFT - 1)
# The largest bias a LIF holds, in activation units: the largest mantissa at the largest exponent, in v's units (1/64)
BIAS_MAX = fmt.BIAS_MANT_MAX * 2 ** fmt.BIAS_EXP_MAX / 2 ** fmt.ACT_SHIFT


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


@dataclass
class _Group:
    """A chip neuron layer (LIF or relay) with the chip synapses its input port sums; an Add joining them contributes
    its bias (`extra_bias`)."""
    neuron: ir.Node
    synapses: list
    extra_bias: ir.Add | None = None

    @property
    def name(self) -> str:
        return self.neuron.name


def _groups(graph: ir.Graph) -> list[_Group]:
    groups = []
    for name, node in graph.nodes.items():
        if node.placement != "chip":
            continue
        if isinstance(node, ir.NEURONS):
            feeds = graph.input_port_feeds(name)
            stray = next((f.name for f in feeds if not isinstance(f, ir.SYNAPSES) or f.placement != "chip"), None)
            if stray is not None:
                raise UserError(f"layer {name}: its input port reads {stray}, which is not a chip synapse; the "
                                "relay_sums pass must put a synapse in front of it.")
            src = graph.nodes[node.inputs[0]]
            groups.append(_Group(node, feeds, src if isinstance(src, ir.Add) else None))
        elif isinstance(node, (ir.AvgPool2d, ir.BatchNorm)):
            raise UserError(f"layer {name} ({type(node).__name__}) is on chip but Loihi has no such operation; "
                            "it should have been folded.")
    return groups


def _relay_behind(graph: ir.Graph, name: str) -> str | None:
    """The relay whose graded spikes value `name` is (itself, or flattened), or None."""
    node = graph.nodes[name]
    while isinstance(node, ir.Flatten):
        node = graph.nodes[node.inputs[0]]
    return node.name if isinstance(node, ir.Relay) else None


class _Biases:
    """What every chip neuron's input lacks in float units, as per-neuron maps. A relay (GradedVec) has no bias, so
    it sends its sum without the biases of its synapses and Add: that share is `carried` to the synapses reading
    it, each adding its weights applied to it (exact at the image edges too: the synapse is run on the map).

        beta_s = s(carried[source of s])   (s's bias included; carried = 0 for a source that is not a relay)
        carried[relay] = sum_s beta_s + Add bias;   a LIF's bias = sum_s beta_s + Add bias"""

    def __init__(self, graph: ir.Graph, groups: list[_Group]):
        self.carried: dict[str, torch.Tensor] = {}
        self.synapse: dict[str, torch.Tensor] = {}
        self.total: dict[str, torch.Tensor] = {}
        for g in groups:
            for s in g.synapses:
                self.synapse[s.name] = self._beta(graph, s)
            total = sum(self.synapse[s.name] for s in g.synapses)
            if g.extra_bias is not None and g.extra_bias.bias is not None:
                total = total + g.extra_bias.bias.double().view(-1, *([1] * (len(g.neuron.shape) - 1)))
            self.total[g.name] = total.expand(g.neuron.shape)
            if isinstance(g.neuron, ir.Relay):
                self.carried[g.name] = self.total[g.name]

    def _beta(self, graph: ir.Graph, s) -> torch.Tensor:
        source = graph.nodes[s.inputs[0]]
        carried = self.carried.get(_relay_behind(graph, source.name))
        x = torch.zeros(source.shape, dtype=s.weight.dtype) if carried is None else \
            carried.reshape(source.shape).to(s.weight.dtype)
        return s.run(x[None, None])[0, 0].double()


class _Calibration:
    """The statistics the quantizer needs, reduced batch by batch while the float graph runs (so memory does not
    grow with the number of calibration samples): per group, max |a| in float units, where a = the sum of its
    synapses' outputs less their biases and carried biases (what the input port receives per step); per host
    value a chip synapse reads as graded payloads, max |value| and whether every value is an integer (event counts
    need no fractional bits)."""

    def __init__(self, graph: ir.Graph, groups: list[_Group], biases: _Biases):
        self.peak = {g.name: 0.0 for g in groups}
        sources = {s.inputs[0] for g in groups for s in g.synapses}
        self.integer = {i: True for i in sources if graph.nodes[i].kind != "binary"}
        self.source_peak = {i: 0.0 for i in self.integer}
        self.readers: dict[str, list[_Group]] = {}  # node → the groups whose input port it feeds
        for g in groups:
            for s in g.synapses:
                self.readers.setdefault(s.name, []).append(g)
        self.bias = {g.name: sum(biases.synapse[s.name] for s in g.synapses) for g in groups}
        self.partial: dict[str, tuple[int, torch.Tensor]] = {}  # group → (feeds seen, their sum) in this batch

    def observe(self, name: str, value: torch.Tensor) -> None:
        if name in self.integer:
            self.integer[name] &= bool(torch.equal(value, value.round()))
            self.source_peak[name] = max(self.source_peak[name], _peak(value))
        for g in self.readers.get(name, ()):
            seen, total = self.partial.pop(g.name, (0, None))
            total = value.to(torch.float64, copy=True) if total is None else total.add_(value)
            if seen + 1 < len(g.synapses):
                self.partial[g.name] = (seen + 1, total)
            else:
                self.peak[g.name] = max(self.peak[g.name], _peak(total.sub_(self.bias[g.name])))


def _peak(x: torch.Tensor) -> float:
    """max |x|, without an |x| copy."""
    low, high = torch.aminmax(x)
    return max(-float(low), float(high))


@dataclass
class _Source:
    """How a synapse's input arrives: `unit` integer payload units per float unit, or None where the synapse chooses
    it (a host value sent as graded payloads: 2^q, q <= `max_frac_bits`); its message width."""
    unit: float | None
    message_bits: int
    max_frac_bits: int = 0
    relay: str | None = None


def _source(graph: ir.Graph, s, stats: _Calibration, scales: dict[str, float]) -> _Source:
    """How `s`'s input arrives; a relay's unit is its scale in `scales`, None while it is not chosen yet."""
    src = graph.nodes[s.inputs[0]]
    relay = _relay_behind(graph, src.name)
    if relay is not None:
        return _Source(scales.get(relay), fmt.GRADED_MESSAGE_BITS, relay=relay)
    if src.kind == "binary":
        return _Source(1.0, 0)
    bits = fmt.HOST_MESSAGE_BITS if src.placement == "host" else fmt.GRADED_MESSAGE_BITS
    if stats.integer.get(src.name, True):
        return _Source(1.0, bits)
    # payload = round(value · 2^q) within the message's signed range
    fit = math.floor(math.log2((2 ** (bits - 1) - 1) / stats.source_peak[src.name])) if stats.source_peak[src.name] \
        else PAYLOAD_FRAC_BITS_MAX
    return _Source(None, bits, max(0, min(PAYLOAD_FRAC_BITS_MAX, fit)))


def _caps(group: _Group, sources: dict, a_peak: float, bias: torch.Tensor) -> dict[str, float]:
    """The upper bounds on σ that do not depend on a relay's scale, by what sets them: 8-bit weights on spikes and
    host values (a chosen payload unit may grow to 2^max_frac_bits), the input port's headroom (a LIF's u must not
    wrap: |a| < A_SAFE; a relay's v must fit RELAY_BITS), a LIF's 17-bit threshold and its bias (mantissa << exponent
    at most). Synapses on relays are bounded in `quantize`, once the relay's scale is known."""
    caps = {}
    weights = [WEIGHT_GRID_MAX * (2 ** src.max_frac_bits if src.unit is None else src.unit) / _peak(s.weight)
               for s, src in sources.items() if _peak(s.weight) > 0 and not src.relay and not is_identity(s)]
    if weights:
        caps["8-bit weights"] = min(weights)
    if a_peak > 0:
        headroom = A_SAFE if isinstance(group.neuron, ir.LIF) else 2 ** (fmt.RELAY_BITS - 2)
        caps["input headroom"] = headroom / a_peak
    if isinstance(group.neuron, ir.LIF):
        if group.neuron.threshold > 0:
            caps[f"{fmt.VTH_BITS}-bit threshold"] = fmt.VTH_MAX / group.neuron.threshold
        if _peak(bias) > 0:
            caps[f"{fmt.BIAS_MANT_BITS}-bit bias"] = BIAS_MAX / _peak(bias)
    return caps


# An identity synapse takes a whole weight (no exponent: it can run as a 1x1 conv, `identity_as_conv`) where that
# costs its reader at most this share of its scale; a LIF reader takes it whatever it costs (its input is no finer
# than the relay it reads, so its scale above the relay's only refines threshold and bias).
WHOLE_IDENTITY_COST = 1 / 16


def _identity_weight(factor: float, whole_at_any_cost: bool = False) -> tuple[int, int]:
    """(w, k) with w / 2^k <= `factor` that an identity synapse holds (8-bit w, weight_exp -k down to
    IDENTITY_WEIGHT_EXP_MIN): the synapse multiplies exactly by w / 2^k, so the reader's scale becomes that. A whole
    weight (k = 0) where `factor` >= 1 and it costs little (`WHOLE_IDENTITY_COST`), else the closest below."""
    whole = min(fmt.WEIGHT_MAX, math.floor(factor))
    if whole >= 1 and (whole_at_any_cost or whole >= factor * (1 - WHOLE_IDENTITY_COST)):
        return whole, 0
    k = min(-fmt.IDENTITY_WEIGHT_EXP_MIN, max(0, math.floor(math.log2(fmt.WEIGHT_MAX / factor))))
    return max(1, min(fmt.WEIGHT_MAX, math.floor(factor * 2 ** k))), k


def _relay_limits(graph: ir.Graph, groups: list[_Group], base: dict) -> dict[str, float]:
    """Backwards over the groups: the largest scale each relay may have so that every identity synapse reading it
    still reaches its reader's bound (it divides by at most 2^-IDENTITY_WEIGHT_EXP_MIN). Real weights on a relay
    bind their reader instead (`_scale`): `balance_delays` gives such a term a relay of its own."""
    limit = {g.name: math.inf for g in groups if isinstance(g.neuron, ir.Relay)}
    for g in reversed(groups):
        bound = min([*base[g.name].values(), limit.get(g.name, math.inf)], default=math.inf)
        for s in g.synapses:
            if s.inputs[0] in limit and is_identity(s):
                limit[s.inputs[0]] = min(limit[s.inputs[0]], bound * 2 ** -fmt.IDENTITY_WEIGHT_EXP_MIN)
    return limit


def _scale(group: _Group, sources: dict, caps: dict, limit: float, notes: list) -> tuple[float, tuple | None]:
    """σ: the smallest bound in `caps`, in `limit` (a relay's readers, `_relay_limits`) and, for a relay that copies
    one value (a delay link), the copied value's unit, which a copy cannot refine. Where an identity synapse reads a
    value, σ then becomes exactly that value's unit times the identity's weight w / 2^k. → (σ, (that identity
    synapse, w, k) or None)."""
    bounds = dict(caps)
    if math.isfinite(limit):
        bounds["relay readers"] = limit
    for s, src in sources.items():
        if src.relay and not is_identity(s) and _peak(s.weight) > 0:
            bounds["8-bit weights"] = min(bounds.get("8-bit weights", math.inf),
                                          WEIGHT_GRID_MAX * src.unit / _peak(s.weight))
    copied = [(s, _unit(src)) for s, src in sources.items() if is_identity(s)]
    if isinstance(group.neuron, ir.Relay) and len(group.synapses) == 1 and copied:
        bounds["copied value"] = copied[0][1]
    if not bounds:
        raise UserError(f"layer {group.name}: no weight, input or threshold sets a fixed-point scale (all synapses "
                        "are zero and the threshold is 0).")
    binding = min(bounds, key=bounds.get)
    sigma = bounds[binding]
    if binding not in ("8-bit weights", "copied value"):
        notes.append(f"scale set by the {binding}")
    if not copied:
        return sigma, None
    synapse, unit = copied[0]
    w, k = _identity_weight(sigma / unit, isinstance(group.neuron, ir.LIF))
    return unit * w / 2 ** k, (synapse, w, k)


def _weight_filling_frac_bits(w_peak: float, sigma: float, src: _Source) -> int:
    """The payload's fractional bits q for a synapse with real weights: the fewest that let W_int fill its 8 bits
    (2^q >= peak · σ / 254), so the weights keep their precision."""
    need = w_peak * sigma / WEIGHT_GRID_MAX
    return min(src.max_frac_bits, max(0, math.ceil(math.log2(need)))) if need > 1 else 0


def weight_summary(synapse: dict) -> str:
    """A synapse's entry of the quantization report in a few characters: its weight SQNR in dB, or an identity's
    exact factor w/2^k."""
    if "weight_sqnr_db" in synapse:
        return str(synapse["weight_sqnr_db"])
    return f"{synapse['identity_weight']}/2^{-synapse['weight_exp']}"


def _unit(src: _Source) -> float:
    """The payload unit a source arrives in; a host value read by an identity synapse takes every fractional bit
    its message holds (the identity's w / 2^k then rescales it)."""
    return 2 ** src.max_frac_bits if src.unit is None else src.unit


def _quantize_identity(s, src: _Source, sigma: float, w: int, k: int) -> dict:
    """An identity synapse: one weight w and a weight_exp -k (σ = unit · w / 2^k where `_scale` chose them)."""
    q = src.max_frac_bits if src.unit is None else 0
    s.quant = {"identity": True, "weight": w, "weight_exp": -k, "payload_frac_bits": q, "scale": sigma,
               "num_message_bits": src.message_bits}
    return {"name": s.name, "payload_frac_bits": q, "identity_weight": w, "weight_exp": -k,
            "scale_error": round(_unit(src) * w / 2 ** k / sigma - 1, 9)}


def _quantize_group(graph: ir.Graph, group: _Group, sources: dict, sigma: float, exact: tuple | None,
                    a_peak: float, bias: torch.Tensor, notes: list) -> dict:
    """One neuron layer and the chip synapses feeding it, at scale σ; `exact`: the identity synapse σ is an exact
    multiple for, with its (w, k) (`_scale`)."""
    neuron, name = group.neuron, group.name
    if isinstance(neuron, ir.LIF) and neuron.input_scale != 1.0:
        raise UserError(f"layer {name}: a chip neuron with an input scale ({neuron.input_scale}) is not supported; "
                        "normalise_neurons must move it into the synapses first.")
    entry = {"layer": name, "scale": sigma, "calibration_peak_input": a_peak, "synapses": [], "notes": notes}
    for s, src in sources.items():
        if is_identity(s):
            w, k = exact[1:] if exact is not None and exact[0] is s else \
                _identity_weight(sigma / _unit(src), isinstance(neuron, ir.LIF))
            entry["synapses"].append(_quantize_identity(s, src, sigma, w, k))
            continue
        w = s.weight.double().numpy()
        q = 0 if src.unit is not None else _weight_filling_frac_bits(_peak(s.weight), sigma, src)
        factor = sigma / (2 ** q if src.unit is None else src.unit)
        w_int = _weights_to_grid(w, factor)
        s.quant = {"weight": w_int, "payload_frac_bits": q, "scale": sigma, "num_message_bits": src.message_bits}
        entry["synapses"].append({
            "name": s.name, "payload_frac_bits": q, "weight_bits": fmt.DEFAULT_NUM_WEIGHT_BITS,
            "weight_sqnr_db": round(float(_sqnr_db(w, w_int / factor)), 2),
            "clipped_weights": int((np.abs(w * factor) > WEIGHT_GRID_MAX + 1).sum()),
            "per_channel_scale_cost_db": round(_per_channel_cost_db(w, factor), 2)})
    if isinstance(neuron, ir.Relay):
        neuron.quant = {"scale": sigma, "carried_bias": bias.numpy()}
        return entry
    # In v's own units (1/64 of a synaptic input), as finely as 13 bits allow: rounding every bias to whole inputs,
    # the most lava-dl netx can hold (bias_exp 6), cost the TCJA demo 0.5-1.4 points; netx_bias_grid does it only
    # where a segment is written as a .net.
    mant, exp, saturated = _bias_format(bias.numpy() * sigma * 2 ** fmt.ACT_SHIFT)
    if saturated:
        notes.append(f"{saturated} biases saturate at {fmt.BIAS_MANT_BITS}-bit mantissa << {exp}")
    vth = int(round(neuron.threshold * sigma))
    dv = min(fmt.DECAY_MAX, int(round(fmt.DECAY_UNITY * (1 - neuron.decay))))
    if not math.isclose(1 - dv / fmt.DECAY_UNITY, neuron.decay, abs_tol=1 / fmt.DECAY_UNITY) and neuron.decay != 0:
        notes.append(f"decay {neuron.decay} is {1 - dv / fmt.DECAY_UNITY} in 12 bits")
    neuron.quant = {"du": fmt.DECAY_MAX, "dv": dv, "vth": vth, "bias_mant": mant, "bias_exp": exp, "scale": sigma}
    entry.update({"vth": vth, "dv": dv, "du": fmt.DECAY_MAX, "bias_exp": exp,
                  "fires_at": "v > vth<<6" + (" (source fires at v >= threshold: differs at exact ties only)"
                                              if neuron.fire_at_threshold else "")})
    return entry


@torch.no_grad()
def quantize(graph: ir.Graph, calibration: torch.Tensor) -> ir.Graph:
    """Set `quant` on every chip synapse and neuron; the per-layer report goes to `graph.quant_layers`.

    Scales are chosen in two sweeps: backwards, how large each relay's scale may be (`_relay_limits`); forwards,
    each group's σ (`_scale`).

    Preserves: nothing exactly, by design: the fixed-point simulator's spikes differ from the folded float graph's
    by quantization only (the ladder measures how much)."""
    if not graph.segments:
        raise ValueError("quantize needs a partitioned graph (run partition_host_chip first)")
    nodes = {k: v.copy(quant={}) for k, v in graph.nodes.items()}
    graph = graph.replace(nodes)
    groups = _groups(graph)
    biases = _Biases(graph, groups)
    stats = _Calibration(graph, groups, biases)
    graph.observe_in_batches(calibration, stats.observe)
    base = {g.name: _caps(g, {s: _source(graph, s, stats, {}) for s in g.synapses}, stats.peak[g.name],
                          biases.total[g.name]) for g in groups}
    limit = _relay_limits(graph, groups, base)
    scales, report = {}, []
    for g in groups:
        sources = {s: _source(graph, s, stats, scales) for s in g.synapses}
        notes = []
        scales[g.name], exact = _scale(g, sources, base[g.name], limit.get(g.name, math.inf), notes)
        report.append(_quantize_group(graph, g, sources, scales[g.name], exact, stats.peak[g.name],
                                      biases.total[g.name], notes))
    return graph.replace(graph.nodes, f"quantize: {len(report)} chip layers", quant_layers=report)
