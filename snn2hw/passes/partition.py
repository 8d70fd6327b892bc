"""Partition host/chip: which nodes Loihi runs, and what crosses between host and chip.

Chip = spike-driven and causal: synapses fed by spikes (binary or graded), LIF and relay neurons fed by chip
synapses, sums of chip synapses, pooling and reshaping of chip values. Host = everything else: the first synapse on raw input
pixels and what it feeds (the GAC encoder's conv, BN and LIF), non-causal attention (GAC's TA/SCA, TCJA's gates),
and the readout (per-step output, mean over T, voting).
"""
import math

from .. import ir


def _placement(node: ir.Node, graph: ir.Graph, placed: dict[str, str]) -> str:
    if isinstance(node, (ir.Input, ir.HostModule, ir.Readout)):
        return "host"
    sources = [graph.nodes[i] for i in node.inputs]
    if isinstance(node, ir.SYNAPSES):
        # Analog pixels straight from the input stay on the host; any other value the host sends becomes a graded
        # spike payload at the cut, entering the chip through this synapse.
        return "host" if isinstance(sources[0], ir.Input) and sources[0].kind == "analog" else "chip"
    if isinstance(node, ir.NEURONS):
        # Fed by chip synapses, or by graded values the host sends (GAC's encoder output, read through an identity
        # synapse once `relay_sums` has run); a neuron on the host's own analog synapse output (GAC's encoder
        # LIF) is part of the host encoder.
        src = sources[0]
        return "chip" if placed[src.name] == "chip" or src.kind == "graded" else "host"
    if isinstance(node, ir.Add):  # a neuron's synapse groups
        return "chip" if any(placed[s.name] == "chip" for s in sources) else "host"
    return placed[node.inputs[0]]  # pooling, flatten, unfolded BN: where their input is


def placements(graph: ir.Graph) -> dict[str, str]:
    """Node → "host" or "chip", in execution order."""
    placed: dict[str, str] = {}
    for name, node in graph.nodes.items():
        placed[name] = _placement(node, graph, placed)
    return placed


def _waits_for_window(graph: ir.Graph, name: str, memo: dict) -> bool:
    """Whether the value of `name` depends on a non-causal node (all T steps must be known before it exists)."""
    if name not in memo:
        node = graph.nodes[name]
        memo[name] = isinstance(node, ir.HostModule) or any(_waits_for_window(graph, i, memo) for i in node.inputs)
    return memo[name]


def partition_host_chip(graph: ir.Graph) -> ir.Graph:
    """Set every node's `placement`; record segments (maximal runs of one placement in execution order) and cuts
    (every edge between host and chip: shape, kind, values per step and whether it waits for the whole window)."""
    placed = placements(graph)
    nodes = {name: node.copy(placement=placed[name]) for name, node in graph.nodes.items()}

    # A node's stage counts the host/chip crossings on the way to it; a segment is one stage's nodes, so host work
    # that only needs earlier host values (e.g. the encoder's share of every residual sum) joins the host segment.
    stage: dict[str, int] = {}
    for name, node in nodes.items():
        stage[name] = max((stage[i] + (placed[i] != placed[name]) for i in node.inputs), default=0)
    segments = [{"name": f"{placed[names[0]]}{k}", "placement": placed[names[0]], "nodes": names}
                for k in sorted(set(stage.values())) for names in [[n for n in nodes if stage[n] == k]]]
    segment_of = {n: seg["name"] for seg in segments for n in seg["nodes"]}

    memo: dict = {}
    cuts = []
    for name, node in nodes.items():
        for src in node.inputs:
            if placed[src] != placed[name]:
                s = graph.nodes[src]
                cuts.append({"tensor": src, "to": name, "from_segment": segment_of[src], "to_segment": segment_of[name],
                             "direction": f"{placed[src]}->{placed[name]}", "shape": list(s.shape), "kind": s.kind,
                             "values_per_step": math.prod(s.shape),
                             "waits_for_window": _waits_for_window(graph, src, memo)})
    chip = sum(p == "chip" for p in placed.values())
    note = (f"partition_host_chip: {chip} chip nodes, {len(nodes) - chip} host nodes, {len(segments)} segments, "
            f"{len(cuts)} cuts")
    return graph.replace(nodes, note, segments=segments, cuts=cuts)
