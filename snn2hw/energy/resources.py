"""Loihi 2 resources of a deployed graph's chip layers (an estimate): neurons, synapses, synaptic memory, fan-in
and fan-out per layer, the cores they need, and the layers that fit no core."""
import math

import torch

from .. import ir
from ..hardware_sims.loihi_formats import DEFAULT_NUM_WEIGHT_BITS
from .counts import fanout_map, max_fan_in, stored_weight

# Bits per stored synaptic weight unless asked otherwise: the 8-bit weights the quantizer makes (Lava's default).
WEIGHT_BITS = DEFAULT_NUM_WEIGHT_BITS


def _synapse_groups(graph: ir.Graph, neuron: ir.LIF) -> list[ir.Node]:
    """The chip synapses feeding a chip neuron layer, directly or through its input port's sum."""
    return [f for f in graph.input_port_feeds(neuron.name) if isinstance(f, ir.SYNAPSES) and f.placement == "chip"]


def _chip_layers(graph: ir.Graph) -> list[tuple[str, int, list]]:
    """(name, neurons, synapse groups) per chip neuron layer, and per chip synapse read by the host (a readout)."""
    layers = [(n.name, math.prod(n.shape), _synapse_groups(graph, n)) for n in graph.nodes.values()
              if isinstance(n, ir.LIF) and n.placement == "chip"]
    fed = {s.name for _, _, groups in layers for s in groups}
    return layers + [(n.name, 0, [n]) for n in graph.nodes.values()
                     if isinstance(n, ir.SYNAPSES) and n.placement == "chip" and n.name not in fed]


def loihi_resources(graph: ir.Graph, limits: dict, weight_bits: int = WEIGHT_BITS) -> dict:
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
        weights += int(torch.count_nonzero(stored_weight(s)))
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
