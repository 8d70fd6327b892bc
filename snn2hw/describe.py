"""`snn2hw inspect`: what a model is made of, and where each of its layers runs.

The layer table follows the order in which the modules run (shapes from a meta-device run: no computation) and
says what kind of values each produces (analog, event counts, binary or graded spikes). Where a layer runs is what
the compiler decides: the placement `partition_host_chip` gives its node after the float passes; a layer the passes
fold away (BatchNorm, average pools, shortcut convs) runs where what absorbed it runs.
"""
import copy
from collections import Counter

import torch
from torch import nn

from . import ir
from .convert import convert
from .models.neurons import NEURONS
from .passes.pipeline import pipeline, run_passes
from .models.tcja import MultiStepDropout, VotingLayer
from .models.zoo import get_arch

SYNAPSE_MODULES = (nn.Conv1d, nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
PASS_THROUGH_MODULES = (nn.Flatten, nn.Dropout, nn.Dropout2d, nn.Identity, MultiStepDropout)


def _is_host_module(m: nn.Module) -> bool:
    """Attention blocks (GAC's TA/SCA, TCJA) declare `non_causal = True`: they mix all time steps."""
    return getattr(type(m), "non_causal", False)


def _units(model: nn.Module):
    """Leaf modules, with each non-causal attention block taken whole."""
    skip = set()
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in skip):
            continue
        if _is_host_module(m):
            skip.add(name)
            yield name, m
        elif not list(m.children()):
            yield name, m


def neuron_convention(m: nn.Module) -> str:
    if type(m).__name__ == "SpikingJellyLIF":
        return f"SpikingJelly LIF: v += (x - v)/{m.tau:g}; spike if v >= {m.v_threshold:g}; hard reset to 0"
    return f"LIF: v = {m.decay:g}*v + x; spike if v > {m.threshold:g}; hard reset to 0"


def _classify(m: nn.Module, kind: str, prev_place: str) -> tuple[str, str, str]:
    """→ (runs_on, why, kind of its output) given the kind of value it receives."""
    if isinstance(m, NEURONS):
        return "chip", "LIF neuron", "binary"
    if _is_host_module(m):
        return "host", "attention gate: needs all T steps (non-causal), output graded", "graded"
    if isinstance(m, SYNAPSE_MODULES):
        if kind == "analog":
            return "host", "synapse on analog values (not spike-driven)", "analog"
        return "chip", f"synapse on {kind} spikes", "analog"
    if isinstance(m, NORMS):
        return prev_place, "folds into the preceding synapse", "analog"
    if isinstance(m, nn.MaxPool2d) and kind == "binary":
        return "chip", "max-pool over binary spikes = OR (sum-pool + fire on >= 1)", "binary"
    if isinstance(m, nn.MaxPool2d) and kind == "graded":
        return "host", "max-pool of gated (graded) values, beside the gate", "graded"
    if isinstance(m, VotingLayer):
        return "host", "voting average (readout)", "analog"
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)) and kind in ("binary", "graded"):
        return "chip", "average-pool over spikes folds into the next synapse", "graded"
    if isinstance(m, PASS_THROUGH_MODULES) or (isinstance(m, nn.Sequential) and len(m) == 0):  # empty = identity shortcut
        return prev_place, "reshapes or passes values through", kind
    return "host", f"{type(m).__name__} on {kind} values", "analog"


def _placements(model: nn.Module, arch: str) -> dict[int, tuple[str, str | None]]:
    """Module (by id) → (where the compiler runs its node, for a synapse the kind of value it reads there): the
    partition of the graph after the float passes. IR nodes are named by module path, but a module reachable under
    two names (GAC's `conv1` and `conv1_s`) has one name here and maybe the other there, hence the ids."""
    graph = run_passes(convert(model, arch), pipeline(None))
    placed = {}
    for name, node in graph.nodes.items():
        reads = graph.nodes[node.inputs[0]].kind if isinstance(node, ir.SYNAPSES) else None
        try:
            placed[id(model.get_submodule(name))] = (node.placement, reads)
        except AttributeError:  # a node the passes made (sums, relays, the readout): no module of its own
            pass
    return placed


def describe(model: nn.Module, arch: str) -> dict:
    spec = get_arch(arch)
    meta_model = copy.deepcopy(model).to("meta")
    units = list(_units(meta_model))
    calls, shapes = [], {}

    def hook(name):
        def record(_, __, y):
            calls.append(name)
            shapes.setdefault(name, list(y.shape) if isinstance(y, torch.Tensor) else None)
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in units]
    try:
        with torch.no_grad():
            meta_model(torch.zeros((1, *model.input_shape), device="meta"))
    finally:
        for h in handles:
            h.remove()

    modules = dict(units)
    placed = _placements(model, arch)
    kind = "event-count" if spec.reads_events else "analog"  # TCJA reads event frames, GAC reads pixels
    place = "host"
    rows, seen = [], set()
    for name in calls:
        m = modules[name]
        place, why, kind = _classify(m, kind, place)
        if id(model.get_submodule(name)) in placed:
            place, reads = placed[id(model.get_submodule(name))]
            if reads is not None:  # what the synapse reads once the passes ran (e.g. spikes once a pool folded in)
                why = f"synapse on {reads} spikes" if reads != "analog" else "synapse on analog values (not " \
                                                                               "spike-driven)"
        elif isinstance(m, SYNAPSE_MODULES):  # a shortcut conv, which unroll_residual_stream composes into the sums
            place, why = "chip", ("residual stream: unroll_residual_stream composes it into the chip synapses of the "
                                  "sums that neurons read (the encoder's share of them on the host)")
        if name in seen:
            continue
        seen.add(name)
        rows.append({"name": name, "type": type(m).__name__, "output_shape": shapes[name],
                     "params": sum(p.numel() for p in model.get_submodule(name).parameters()),
                     "runs_on": place, "why": why})
    conventions = Counter(neuron_convention(m) for m in model.modules() if isinstance(m, NEURONS))
    return {"arch": arch, "source": spec.source, "parameters": sum(p.numel() for p in model.parameters()),
            "timesteps": getattr(model, "timesteps", None), "input_shape": list(model.input_shape),
            "layers": rows,
            "neuron_conventions": [{"convention": c, "count": n} for c, n in conventions.items()],
            "ops": {"chip": sum(r["runs_on"] == "chip" for r in rows),
                    "host": sum(r["runs_on"] == "host" for r in rows)}}
