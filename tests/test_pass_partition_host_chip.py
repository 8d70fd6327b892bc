"""partition_host_chip: every node gets its placement (host or chip); the segments (runs of one placement, in
execution order) and the cuts (every edge between host and chip) are recorded. Preserves the float function: it
only annotates the graph."""
import math

import pytest
import torch

from helpers import demo_model
from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.convert import convert
from snn2hw.data import DEMO_DATA
from snn2hw.demo import demo_checkpoint
from snn2hw.passes.partition import partition_host_chip
from snn2hw.passes.pipeline import pipeline, run_passes


def _before_partition(arch, tcja):
    """The demo model through every pass before the partition → (graph, test inputs)."""
    model, x = demo_model(arch)
    calib = torch.as_tensor(DEMO_DATA["digit-events"]("train")[0][:128]) if tcja == "fold" else None
    passes = pipeline(calib, tcja)
    return run_passes(convert(model), passes[:passes.index(partition_host_chip)]), x


def _waits_for_window(graph, name):
    """Whether a non-causal node (a HostModule) lies on some path into `name`, the node itself included."""
    node = graph.nodes[name]
    return isinstance(node, ir.HostModule) or any(_waits_for_window(graph, i) for i in node.inputs)


@pytest.mark.parametrize("arch, tcja", [("tcja-tiny", "host"), ("tcja-tiny", "fold"), ("gac-msresnet-tiny", "host")])
def test_partition_host_chip_records_every_crossing_and_keeps_the_float_function(arch, tcja):
    graph, x = _before_partition(arch, tcja)
    parts = partition_host_chip(graph)
    nodes = parts.nodes
    assert list(nodes) == list(graph.nodes) and {n.placement for n in nodes.values()} == {"host", "chip"}
    # Segments: every node exactly once, each segment's nodes of its placement and in graph order, placements
    # alternating, and every node's inputs computed in its own segment or an earlier one (an execution order).
    order = [n for s in parts.segments for n in s["nodes"]]
    assert sorted(order) == sorted(nodes) and len(order) == len(nodes)
    position = {n: k for k, n in enumerate(order)}
    for seg in parts.segments:
        assert all(nodes[n].placement == seg["placement"] for n in seg["nodes"]), seg["name"]
        assert seg["nodes"] == [n for n in nodes if n in seg["nodes"]], seg["name"]
    assert all(a["placement"] != b["placement"] for a, b in zip(parts.segments, parts.segments[1:]))
    assert all(position[i] < position[n] for n, node in nodes.items() for i in node.inputs)
    segment_of = {n: s["name"] for s in parts.segments for n in s["nodes"]}
    # Cuts: exactly the edges between host and chip, each with its direction, kind and size.
    crossings = [(i, n) for n, node in nodes.items() for i in node.inputs if nodes[i].placement != node.placement]
    assert crossings and [(c["tensor"], c["to"]) for c in parts.cuts] == crossings
    for cut in parts.cuts:
        src, dst = nodes[cut["tensor"]], nodes[cut["to"]]
        assert cut["direction"] == f"{src.placement}->{dst.placement}"
        assert (cut["from_segment"], cut["to_segment"]) == (segment_of[src.name], segment_of[dst.name])
        assert (cut["kind"], cut["shape"]) == (src.kind, list(src.shape))
        assert cut["values_per_step"] == math.prod(src.shape) > 0
        assert cut["waits_for_window"] == _waits_for_window(graph, src.name)
    # The float function: every value, exactly.
    (out_before, before), (out_after, after) = graph.run(x, record=True), parts.run(x, record=True)
    assert torch.equal(out_after, out_before)
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)


def test_partition_host_chip_keeps_gacs_encoder_on_the_host():
    """GAC's encoder (stem conv, its LIF, the gated attention) runs on the host; the chip receives the encoding as a
    graded payload, only through synapses (the identity synapses of relay_sums), and sends the readout's relay."""
    graph, _ = _before_partition("gac-msresnet-tiny", "host")
    parts = partition_host_chip(graph)
    encoder = ["input", "conv1_s.layer.module", "encoder_lif", "encoding"]
    assert [s["placement"] for s in parts.segments] == ["host", "chip", "host"]
    assert parts.segments[0]["nodes"] == encoder
    assert [(c["tensor"], c["to"], c["kind"]) for c in parts.cuts if c["direction"] == "host->chip"] == [
        ("encoding", "layer1.0.lif1.from.encoding", "graded"), ("encoding", "layer1.0.add.from.encoding", "graded")]
    assert all(isinstance(parts.nodes[c["to"]], ir.SYNAPSES) for c in parts.cuts if c["direction"] == "host->chip")
    assert [(c["tensor"], c["to"]) for c in parts.cuts if c["direction"] == "chip->host"] == [("fc1.relay", "output")]


def test_tcja_host_strategy_cuts_at_every_gate_and_waits_for_the_window():

    model = load_checkpoint(demo_checkpoint("tcja-tiny")).model
    parts = run_passes(convert(model), pipeline(None))
    gates = [n for n, node in parts.nodes.items() if isinstance(node, ir.HostModule)]
    assert all(parts.nodes[g].placement == "host" for g in gates) and len(gates) == 2
    to_chip = [c for c in parts.cuts if c["direction"] == "host->chip"]
    assert [c["waits_for_window"] for c in to_chip] == [False, True, True]  # after the first gate, all is non-causal
    assert to_chip[1] == {**to_chip[1], "kind": "graded", "shape": [16, 8, 8], "values_per_step": 1024}
