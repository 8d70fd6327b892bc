"""The fixed-point Loihi simulator: the golden model that Lava must match (semantics contract, level 3).

It runs one chip segment from its chip spec (`exporters/lava_spec.py`: the JSON structure and integer arrays the
Lava runner reads too) by Lava's integer equations (`loihi_numerics`), vectorised over samples, steps and neurons
in integer torch tensors on the run's device; a value is freed once no later node reads it.
Time is logical: a layer's value at step t is what Lava produces at step t + its depth, since every Lava synapse
delays by one step and all synapses of a neuron read sources of one depth; so a neuron at step t integrates its
synapses' accumulations of their inputs' step t. Its interface is the Lava runner's (`lava_driver`): the
integers the chip receives per spec input, `[T, N, ...]`, in; each output and each probed layer, `[T, N, ...]`, out.
"""
from dataclasses import dataclass, field

import numpy as np
import torch

from . import loihi_numerics as num
from .loihi_formats import ACT_SHIFT, MAX_UV_VAL, UV_BITS, identity_as_conv


@dataclass
class NeuronStats:
    """What the simulator observed in one chip neuron layer."""
    max_abs_input: int  # max |a_in| (u wraps from 2^17)
    u_wraps: int  # inputs at or beyond the wrap of u
    v_saturations: int  # steps at which v sat at its 24-bit limit
    membrane: np.ndarray | None = field(default=None, repr=False)  # v after each step `[T, N, ...]`, if asked for


def accumulate(node: dict, weight: np.ndarray, s: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Integer synaptic accumulation of a spec `conv`/`dense` node for every step at once, `[T, N, ...]` in and out
    (binary inputs when the node's `num_message_bits` is 0, graded payloads otherwise), on `device`."""
    flat = s.reshape(-1, *s.shape[2:])
    if node["op"] == "conv":
        a = num.conv_accumulate(weight, flat, node["stride"], node["padding"], node["dilation"], node["groups"],
                                num_message_bits=node["num_message_bits"], device=device)
    else:
        a = num.dense_accumulate(num.effective_dense_weights(weight), flat, 0,
                                 num_message_bits=node["num_message_bits"])
    return a.reshape(*s.shape[:2], *a.shape[1:])


def _source(spec_inputs: dict, name: str):
    """What a synapse reads, as a value: a cut input is the host tensor in its payload format (two synapses of the
    same tensor get the same integers), a chip node is itself."""
    entry = spec_inputs.get(name)
    return name if entry is None else (entry["tensor"], entry["payload"], entry["frac_bits"])


def repeated_synapses(spec: dict, arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """Synapse → an earlier synapse of the segment that computes the same accumulations: same input values, same
    op, geometry and message bits, equal integer weights. The residual unroll gives every sum its own copy of a term;
    copies whose sums get the same scale (the same term binds it) are computed once."""
    inputs = {i["name"]: i for i in spec["inputs"]}
    first: dict[tuple, list[str]] = {}
    repeats = {}
    by_name = {n["name"]: n for n in spec["nodes"]}
    for node in spec["nodes"]:
        if node["op"] not in ("conv", "dense"):
            continue
        key = (_source(inputs, node["input"]), node["op"], node["num_message_bits"],
               repr([node.get(k) for k in ("stride", "padding", "dilation", "groups")]),
               arrays[node["weight"]].shape)
        same = next((f for f in first.get(key, [])
                     if np.array_equal(arrays[by_name[f]["weight"]], arrays[node["weight"]])), None)
        if same is None:
            first.setdefault(key, []).append(node["name"])
        else:
            repeats[node["name"]] = same
    return repeats


def _run_lif(node: dict, arrays: dict, a: torch.Tensor, keep_membrane: bool) -> tuple[torch.Tensor, NeuronStats]:
    """A LIF layer over its T steps; `a`, its input port's sums, is within int32 already (`inport_sum`)."""
    bias = torch.as_tensor(num.effective_bias(arrays[node["bias_mant"]], node["bias_exp"]), device=a.device)
    a_peak = num.peak(a)
    u = torch.zeros(a.shape[1:], dtype=torch.int64, device=a.device)
    v = torch.zeros_like(u)
    spikes = torch.empty(a.shape, dtype=torch.bool, device=a.device)
    vs = torch.empty(a.shape, dtype=torch.int64, device=a.device) if keep_membrane else None
    saturations = 0
    for t in range(a.shape[0]):
        u, v, spikes[t] = num.lif_dynamics(u, v, a[t], node["du"], node["dv"], node["vth"], bias, a_peak)
        if num.peak(v) >= MAX_UV_VAL - 1:  # one read of v's range; counted only where some v is at its limit
            saturations += int(torch.count_nonzero(v.abs() >= MAX_UV_VAL - 1))
        if keep_membrane:
            vs[t] = v
    wrapping = 2 ** (UV_BITS - 1 - ACT_SHIFT)  # |a| from which x leaves u's 24 bits
    u_wraps = int(torch.count_nonzero(a.abs() >= wrapping)) if a_peak >= wrapping else 0
    return spikes, NeuronStats(a_peak, u_wraps, saturations, None if vs is None else vs.cpu().numpy())


def run_chip_segment(spec: dict, arrays: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
                     probe: list[str] | None = None, keep_membrane: bool = False,
                     repeats: dict[str, str] | None = None,
                     device: str = "cpu") -> tuple[dict[str, np.ndarray], dict[str, NeuronStats]]:
    """Run one chip segment in fixed point. `inputs`: per spec input name, the integers the chip receives,
    `[T, N, ...]`. → ({output: spikes (bool) or a relay's graded spikes (int64); probed layer: spikes}, all
    `[T, N, ...]`;
    {neuron layer: NeuronStats}). `repeats` (`repeated_synapses`), if the caller keeps it, saves recomputing it.
    Every node runs on `device` (the same integers on any), in integer tensors."""
    repeats = repeated_synapses(spec, arrays) if repeats is None else repeats
    device = torch.device(device)
    ints: dict[str, torch.Tensor] = {k: num.as_int(v, k).to(device) for k, v in inputs.items()}
    stats = {}
    kept = dict.fromkeys([*(o["name"] for o in spec["outputs"]), *(probe or ())])
    last_read = {source: i for i, node in enumerate(spec["nodes"]) for source in _reads(node, repeats)}
    for i, node in enumerate(spec["nodes"]):
        name, op = node["name"], node["op"]
        if name in repeats:
            ints[name] = ints[repeats[name]]
        elif op in ("conv", "dense"):
            ints[name] = accumulate(node, arrays[node["weight"]], ints[node["input"]], device)
        elif op == "identity" and identity_as_conv(node["shape"], node["weight_exp"]):  # Lava: a 1x1 Conv
            ints[name] = num.identity_conv_accumulate(node["weight"], ints[node["input"]], node["num_message_bits"])
        elif op == "identity":
            ints[name] = num.identity_accumulate(node["weight"], node["weight_exp"], ints[node["input"]],
                                                 node["num_message_bits"])
        elif op == "flatten":
            ints[name] = ints[node["input"]].reshape(*ints[node["input"]].shape[:2], -1)
        elif op == "lif":
            ints[name], stats[name] = _run_lif(node, arrays, num.inport_sum(*[ints[s] for s in node["synapses"]]),
                                               keep_membrane)
        elif op == "relay":
            ints[name] = num.graded_vec_step(num.inport_sum(*[ints[s] for s in node["synapses"]]))
        else:
            raise ValueError(f"chip segment {spec['segment']}: node {name} has op {op!r}, which has no fixed-point "
                             "execution")
        for source in _reads(node, repeats):  # a value no later node reads is freed: the run holds what is live
            if last_read[source] == i and source not in kept:
                ints.pop(source, None)
    return {name: ints[name].cpu().numpy() for name in kept}, stats


def _reads(node: dict, repeats: dict[str, str]) -> list[str]:
    """The values a node's step reads: its input or its synapses, or the synapse it repeats."""
    if node["name"] in repeats:
        return [repeats[node["name"]]]
    return node["synapses"] if node["op"] in ("lif", "relay") else [node["input"]]
