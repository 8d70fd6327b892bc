"""Loihi 2 resources of a deployed graph's chip layers: how the Loihi 2 compiler lays each neuron layer out on cores,
from the mechanisms its PilotNet mapping shows (lava-dl `tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb`,
`shared/reference/loihi2-silicon.md` §2), and the systems a deployment fits.

Per chip neuron layer of shape (C, H, W) (a dense layer: (F,), one column of F neurons):

    channel splits  k = ⌈K / conv_kernel_weights⌉, K = Σ weights of the conv groups feeding the layer: every core
                    stores the kernels of the channels it holds, once (not once per synapse)
    column          H · ⌈C / k⌉ neurons: one x position of the core's channels
    columns / core  the largest power of two c with column · c ≤ lif_neurons (at most W): the compiler splits the
                    map along x into power-of-two blocks of whole columns (PilotNet: 16, 4, 4, 8, 8, 16 columns)
    dense groups    every core of the layer reads all F_d inputs of its dense groups and stores their weights:
                    neurons / core ≤ ⌊dense_weights / F_d⌋ (PilotNet's 2,560 → 100: 12 cores of at most 9)
    cores           k · ⌈W / c⌉, or ⌈neurons / neurons per core⌉ where dense groups bind

A neuron whose dense inputs alone exceed one core's dense weights fits no core in this mapping: a violation naming
the layer, its cores not counted (PilotNet's split says 25,600 weights did not fit a core; whether the compiler has
another mapping for it is not public). Fan-in is otherwise no limit: it costs cores. The limits are the preset's
`[core]` table, each with its source and basis."""
import math
from dataclasses import dataclass

import torch

from .. import ir
from ..errors import UserError
from ..hardware_sims.loihi_formats import identity_as_conv
from ..passes.relay import is_identity
from .counts import fanout_map, max_fan_in, stored_weight


@dataclass(frozen=True)
class System:
    """A Loihi 2 system: how many chips, and how many cores of each a deployment can use."""
    name: str
    chips: int
    cores_per_chip: int
    source: str  # document


# Loihi 2 systems by the names Intel gives them (document: Intel's system announcements).
SYSTEMS = {
    "oheogulch": System("oheogulch", 1, 128, "Oheo Gulch, the single-chip Loihi 2 board lava-dl's PilotNet "
                                             "benchmark runs on (benchmark.ipynb); 128 cores per chip (Intel Loihi 2 "
                                             "brief, 2021)"),
    "kapohopoint": System("kapohopoint", 8, 128, "Kapoho Point, 8 Loihi 2 chips on one board (Intel, 2022); 128 cores "
                                                 "per chip (Intel Loihi 2 brief, 2021)"),
    "halapoint": System("halapoint", 1152, 122, "Hala Point, 1,152 Loihi 2 chips with 140,544 neuromorphic cores "
                                                "(Intel, April 2024): 122 per chip"),
}
DEFAULT_SYSTEM = "kapohopoint"


def _synapse_groups(graph: ir.Graph, neuron: ir.Node) -> list[ir.Node]:
    """The chip synapses feeding a chip neuron layer, directly or through its input port's sum."""
    return [f for f in graph.input_port_feeds(neuron.name) if isinstance(f, ir.SYNAPSES) and f.placement == "chip"]


def _chip_layers(graph: ir.Graph) -> list[tuple[str, tuple, list]]:
    """(name, neuron shape, synapse groups) per chip neuron layer (LIFs and relays), and per chip synapse no neuron
    reads (a `.net`'s readout: its accumulators laid out as neurons)."""
    layers = [(n.name, n.shape, _synapse_groups(graph, n)) for n in graph.nodes.values()
              if isinstance(n, ir.NEURONS) and n.placement == "chip"]
    fed = {s.name for _, _, groups in layers for s in groups}
    return layers + [(n.name, n.shape, [n]) for n in graph.nodes.values()
                     if isinstance(n, ir.SYNAPSES) and n.placement == "chip" and n.name not in fed]


def layer_layout(shape: tuple, kernel_weights: int, dense_fan_in: int, limits: dict) -> dict:
    """Cores of one neuron layer (the module docstring's mechanisms): → cores, neurons per core, columns per core,
    channel splits and the mechanism that bound the count (`limited_by`); cores None if a neuron fits no core."""
    lif, dense, kernel = (limits[k].value for k in ("lif_neurons", "dense_weights", "conv_kernel_weights"))
    channels, height, width = shape if len(shape) == 3 else (shape[0], 1, 1)
    neurons = channels * height * width
    splits = max(1, math.ceil(kernel_weights / kernel))
    column = height * math.ceil(channels / splits)
    if column > lif:  # one column does not fit: split its channels further, one column per core
        splits = math.ceil(channels * height / lif)
        column = height * math.ceil(channels / splits)
    columns = 1
    while columns * 2 <= width and column * columns * 2 <= lif:
        columns *= 2
    per_core = column * columns if len(shape) == 3 else math.ceil(neurons / splits)
    cores = splits * math.ceil(width / columns)
    limited_by = "conv kernels" if kernel_weights > kernel else "neurons"
    if dense_fan_in:
        fit = min(per_core, int(dense // dense_fan_in))
        if fit == 0:
            return {"cores": None, "neurons_per_core": 0, "columns_per_core": columns, "channel_splits": splits,
                    "limited_by": "dense weights"}
        if math.ceil(neurons / fit) > cores:
            per_core, cores, limited_by = fit, math.ceil(neurons / fit), "dense weights"
    return {"cores": cores, "neurons_per_core": per_core, "columns_per_core": columns, "channel_splits": splits,
            "limited_by": limited_by}


def loihi_resources(graph: ir.Graph, limits: dict, system: str | None = None) -> dict:
    """Per chip layer: neurons, synapses (Σ_p F(p), pairs with a non-zero weight), stored weights (non-zero), conv
    kernel weights, dense fan-in, max fan-in, and its layout (`layer_layout`); the total cores and chips, and whether
    they fit `system` (None: chips of `cores_per_chip` cores)."""
    rows, violations = [], []
    for name, shape, groups in _chip_layers(graph):
        row = _layer_row(graph, name, shape, groups, limits)
        rows.append(row)
        if row["cores"] is None:
            violations.append({"layer": name, "limit": "dense_weights", "value": row["dense_fan_in"],
                               "max": limits["dense_weights"].value,
                               "message": f"layer {name}: a neuron reads {row['dense_fan_in']:,} dense inputs, more "
                                          f"than the {int(limits['dense_weights'].value):,} dense weights one core "
                                          f"holds ({limits['dense_weights'].basis})"})
    cores = sum(r["cores"] or 0 for r in rows)
    per_chip = SYSTEMS[system].cores_per_chip if system else int(limits["cores_per_chip"].value)
    chips = math.ceil(cores / per_chip)
    result = {"layers": rows, "cores": cores, "chips": chips, "cores_per_chip": per_chip, "violations": violations,
              "limits": {k: vars(v) for k, v in limits.items()}}
    if system:
        spec = SYSTEMS[system]
        result["system"] = {"name": spec.name, "chips": spec.chips, "cores": spec.chips * spec.cores_per_chip,
                            "fits": chips <= spec.chips, "source": spec.source}
    return result


def _layer_row(graph, name, shape, groups, limits) -> dict:
    synapses, weights, kernel, dense_fan_in, fan_in = 0, 0, 0, 0, 0
    for s in groups:
        src = graph.nodes[s.inputs[0]]
        synapses += int(fanout_map(s, src.shape).sum())
        fan_in += max_fan_in(s, src.shape)
        identity = s.quant.get("identity") or (not s.quant and is_identity(s))  # quantized, or still float
        if identity and not identity_as_conv(shape, s.quant.get("weight_exp", 0)):
            weights += math.prod(shape)  # a one-to-one Sparse: one weight per neuron, never a core's limit
            continue
        weights += int(torch.count_nonzero(stored_weight(s)))
        if isinstance(s, ir.Conv2d):
            kernel += s.weight.numel()
        else:
            dense_fan_in += s.weight.shape[1]
    return {"layer": name, "neurons": math.prod(shape), "synapse_groups": [s.name for s in groups],
            "synapses": synapses, "weights": weights, "conv_kernel_weights": kernel, "dense_fan_in": dense_fan_in,
            "max_fan_in": fan_in, **layer_layout(shape, kernel, dense_fan_in, limits)}


def chip_costs(graph: ir.Graph, limits: dict) -> dict:
    """What a partitioned graph's chip part costs, in the numbers that tell two forms of one model apart: Loihi 2
    cores and chips (`loihi_resources`), weights stored on chip, the largest fan-in of one neuron, relay neurons, and
    the tensors and values per step the host sends the chip."""
    resources = loihi_resources(graph, limits)
    host_to_chip = [c for c in graph.cuts if c["direction"] == "host->chip"]
    return {"cores": resources["cores"], "chips": resources["chips"],
            "chip_weights": sum(r["weights"] for r in resources["layers"]),
            "max_fan_in": max((r["max_fan_in"] for r in resources["layers"]), default=0),
            "relay_neurons": sum(math.prod(n.shape) for n in graph.nodes.values()
                                 if isinstance(n, ir.Relay) and n.placement == "chip"),
            "host_to_chip_tensors": len({c["tensor"] for c in host_to_chip}),
            "host_to_chip_values_per_step": sum(c["values_per_step"] for c in host_to_chip)}


def check_system(resources: dict, system: str) -> None:
    """Refuse, in one sentence, a deployment whose cores need more chips than `system` has (layers that fit no core
    are the `violations`, reported, not refused: the mapping that would place them is not public)."""
    spec = SYSTEMS[system]
    if resources["chips"] > spec.chips:
        raise UserError(f"--system {system}: the deployment needs {resources['cores']:,} cores ({resources['chips']:,} "
                        f"chips of {spec.cores_per_chip}), more than the {spec.chips:,} chip(s) of {spec.name} "
                        "(--system none skips this check).")
