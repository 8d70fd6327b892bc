"""relay_sums: every chip sum and readout accumulation is sent by a relay neuron, and every chip neuron or sum reads
a value no synapse sends through an identity synapse; the function is unchanged (relays and identities are y = x)."""
import pytest
import torch

from helpers import compiled_demo
from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.convert import convert
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.passes.fold import fold_batchnorm, normalise_neurons
from snn2hw.passes.partition import placements
from snn2hw.passes.relay import is_identity, relay_sums
from snn2hw.passes.residual import unroll_residual_stream


def _folded(arch, unroll=False):
    model = load_checkpoint(demo_checkpoint(arch)).model
    graph = normalise_neurons(fold_batchnorm(convert(model, arch)).infer()).infer()
    if unroll:
        graph = unroll_residual_stream(graph).infer()
    x = torch.as_tensor(evaluation_data("digits", arch)[0][:24])
    return graph, x


@pytest.mark.parametrize("unroll", [False, True])
def test_relay_sums_preserves_the_function_and_sends_every_sum_by_a_relay(unroll):
    before, x = _folded("gac-msresnet-tiny", unroll)
    after = relay_sums(before).infer()
    out_before, values_before = before.run(x, record=True)
    out_after, values_after = after.run(x, record=True)
    assert torch.equal(out_before, out_after)  # y = x and 1·x: not a single float changes
    assert all(torch.equal(values_before[n], values_after[n]) for n in before.nodes)
    placed = placements(after)
    for name, node in after.nodes.items():
        if placed[name] != "chip":
            continue
        readers = [after.nodes[r] for r in after.consumers(name)]
        if isinstance(node, ir.Add):  # read by its relay alone; its terms are synapses
            assert [type(r) for r in readers] == [ir.Relay]
            assert all(isinstance(after.nodes[i], ir.SYNAPSES) for i in node.inputs)
        if isinstance(node, ir.LIF):  # reads one synapse
            assert isinstance(after.nodes[node.inputs[0]], ir.HOPS)
        if isinstance(node, ir.SYNAPSES):  # no synapse reads a synapse; the host reads no synapse
            assert not isinstance(after.nodes[node.inputs[0]], ir.SYNAPSES)
            assert not any(isinstance(r, ir.Readout) for r in readers)
    added = [n for n in after.nodes if n not in before.nodes]
    assert all(isinstance(after.nodes[n], ir.Relay) or is_identity(after.nodes[n]) for n in added)
    assert any(isinstance(after.nodes[n], ir.Relay) for n in added)


def test_relay_sums_leaves_a_graph_without_sums_or_readout_synapses_unchanged():
    before, _ = _folded("tcja-tiny")
    after = relay_sums(before)
    assert list(after.nodes) == list(before.nodes)


def test_the_compiled_gac_demo_reads_its_output_from_a_relay():
    compiled = compiled_demo("gac-msresnet-tiny")[0]
    graph = compiled.fixed
    readout = graph.nodes[graph.output]
    assert isinstance(graph.nodes[readout.inputs[0]], ir.Relay)
    assert graph.nodes[readout.inputs[0]].placement == "chip"
