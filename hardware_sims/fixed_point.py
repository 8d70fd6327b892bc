"""The fixed-point Loihi simulator: the golden model that Lava must match (semantics contract, level 3).

It executes a quantized graph: host nodes in float (as `Graph.run`), chip nodes in integers by Lava's equations
(`loihi_numerics`), vectorised over samples and neurons. Time is logical: a chip layer's output at step t is what
Lava produces at step t + its latency, since every Lava synapse delays by one step; the Lava runner accounts for
that. Values that cross from host to chip are quantized at the cut (spikes stay 0/1, graded payloads become
round(value · 2^q), injected currents round(value · σ)); values that cross back become floats again (readout
accumulations are divided by σ and get their bias).
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from snn2hw import ir

from . import loihi_numerics as fmt


@dataclass
class Activity:
    """What a fixed-point run observed, per chip layer: integer values, saturations and wraps."""
    values: dict[str, torch.Tensor] = field(default_factory=dict)  # node → [T, N, ...] (spikes 0/1, floats on host)
    max_abs_input: dict[str, int] = field(default_factory=dict)  # neuron → max |a_in| (u wraps from 2^17)
    u_wraps: dict[str, int] = field(default_factory=dict)
    v_saturations: dict[str, int] = field(default_factory=dict)
    membrane: dict[str, np.ndarray] = field(default_factory=dict)  # neuron → v after each step, if asked for
    # (host tensor, chip node) → the integers the chip receives, [T, N, ...]: spikes, graded payloads or currents
    cut_inputs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)


def _payload(value: torch.Tensor, frac_bits: int) -> np.ndarray:
    """A host value as the integers the chip receives at a cut."""
    return np.rint(value.double().numpy() * 2 ** frac_bits).astype(np.int64)


def _accumulate(node, s: np.ndarray) -> np.ndarray:
    """Integer synaptic accumulation of every step at once, `[T, N, ...]` → `[T, N, ...]`."""
    q = node.quant
    flat = s.reshape(-1, *s.shape[2:])
    if isinstance(node, ir.Conv2d):
        if isinstance(node.padding, str):
            raise ValueError(f"layer {node.name}: padding {node.padding!r} has no Lava Conv equivalent")
        a = fmt.conv_accumulate(q["weight"], flat, node.stride, node.padding, node.dilation, node.groups,
                                num_message_bits=q["num_message_bits"])
    else:
        a = fmt.dense_accumulate(q["weight"], flat, 0, num_message_bits=q["num_message_bits"])
    return a.reshape(*s.shape[:2], *a.shape[1:])


def _repeated_convs(graph: ir.Graph) -> dict[str, str]:
    """Chip conv → an earlier chip conv whose integers it repeats: among the convs `Graph.shared_convs` finds (same
    input, same float weights), those with the same integer weights and payload format. The residual unroll gives
    every sum its own copy of a term, and copies whose sums get the same scale (the same term binds it) compute the
    same accumulations."""
    distinct: dict[str, list[str]] = {}  # float conv → its copies with distinct integers
    repeats = {}
    for name, first in graph.shared_convs().items():
        node = graph.nodes[name]
        if node.placement != "chip":
            continue
        group = distinct.setdefault(first, [first])
        same = next((c for c in group if _same_integers(graph.nodes[c], node)), None)
        if same is None:
            group.append(name)
        else:
            repeats[name] = same
    return repeats


def _same_integers(a, b) -> bool:
    qa, qb = a.quant, b.quant
    return a.inputs == b.inputs and a.placement == b.placement and \
        (qa["payload_frac_bits"], qa["num_message_bits"]) == (qb["payload_frac_bits"], qb["num_message_bits"]) and \
        np.array_equal(qa["weight"], qb["weight"])


def _run_lif(node: ir.LIF, a: np.ndarray, act: Activity, keep_membrane: bool) -> np.ndarray:
    q = node.quant
    a = fmt.wrap_signed(a, fmt.A_IN_BITS)
    bias = fmt.effective_bias(q["bias_mant"], q["bias_exp"])
    u = np.zeros(a.shape[1:], np.int64)
    v = np.zeros(a.shape[1:], np.int64)
    spikes = np.zeros(a.shape, bool)
    vs = np.zeros(a.shape, np.int64) if keep_membrane else None
    sats = 0
    for t in range(a.shape[0]):
        u, v, spikes[t] = fmt.lif_dynamics(u, v, a[t], q["du"], q["dv"], q["vth"], bias)
        sats += int(np.count_nonzero(np.abs(v) >= fmt.MAX_UV_VAL - 1))
        if keep_membrane:
            vs[t] = v
    magnitude = np.abs(a)
    act.max_abs_input[node.name] = int(magnitude.max(initial=0))
    act.u_wraps[node.name] = int(np.count_nonzero(magnitude >= 2 ** (fmt.UV_BITS - 1 - fmt.ACT_SHIFT)))
    act.v_saturations[node.name] = sats
    if keep_membrane:
        act.membrane[node.name] = vs
    return spikes


@torch.no_grad()
def run_fixed(graph: ir.Graph, x: torch.Tensor, keep_membrane: bool = False):
    """→ (output as the source model returns it, Activity) for inputs `x` `[N, *input_shape]`."""
    if not graph.quant_report:
        raise ValueError("run_fixed needs a quantized graph (run the quantize pass first)")
    act = Activity()
    repeats = _repeated_convs(graph)
    ints: dict[str, np.ndarray] = {}  # chip integer values: spikes (bool/int) and accumulations
    floats = act.values

    def as_float(name: str) -> torch.Tensor:
        if name not in floats:  # a chip value the host reads
            node = graph.nodes[name]
            if isinstance(node, ir.LIF) or node.kind == "binary":
                floats[name] = torch.as_tensor(ints[name].astype(np.float32))
            else:  # readout accumulations back to float units
                value = ints[name] / node.quant["scale"]
                if node.bias is not None:
                    value = value + node.bias.double().numpy().reshape(-1, *([1] * (value.ndim - 3)))
                floats[name] = torch.as_tensor(value.astype(np.float32))
        return floats[name]

    for name, node in graph.nodes.items():
        if node.placement != "chip":
            args = [x] if isinstance(node, ir.Input) else [as_float(i) for i in node.inputs]
            floats[name] = node.run(*args)
            continue
        src = graph.nodes[node.inputs[0]]
        if name in repeats:
            ints[name] = ints[repeats[name]]
            if src.placement != "chip":  # the Lava backend feeds each chip synapse its own copy of the cut
                act.cut_inputs[(src.name, name)] = act.cut_inputs[(src.name, repeats[name])]
        elif isinstance(node, (ir.Conv2d, ir.Linear)):
            if src.placement == "chip":
                s = ints[src.name]
            else:
                s = act.cut_inputs[(src.name, name)] = _payload(floats[src.name], node.quant["payload_frac_bits"])
            ints[name] = _accumulate(node, s)
        elif isinstance(node, ir.Add):
            ints[name] = fmt.inport_sum(*[ints[i] for i in node.inputs if graph.nodes[i].placement == "chip"])
        elif isinstance(node, ir.LIF):
            # Host values reach the neuron as injected currents round(value · σ), summed with its synapses.
            injected = []
            for i in node.quant["injected"]:
                current = np.rint(as_float(i).double().numpy() * node.quant["scale"]).astype(np.int64)
                injected.append(act.cut_inputs.setdefault((i, name), current))
            a = fmt.inport_sum(*([ints[src.name]] if src.placement == "chip" else []), *injected)
            ints[name] = _run_lif(node, a, act, keep_membrane)
        elif isinstance(node, ir.MaxPool2d):
            pooled = torch.nn.functional.max_pool2d(torch.as_tensor(ints[src.name].astype(np.float64)).flatten(0, 1),
                                                    node.kernel_size, node.stride, node.padding)
            ints[name] = pooled.unflatten(0, ints[src.name].shape[:2]).numpy().astype(np.int64)
        elif isinstance(node, ir.Flatten):
            ints[name] = ints[src.name].reshape(*ints[src.name].shape[:2], -1)
        else:
            raise ValueError(f"chip layer {name} ({type(node).__name__}) has no fixed-point execution")
    for name in ints:
        if isinstance(graph.nodes[name], ir.LIF):
            as_float(name)
    return floats[graph.output], act
