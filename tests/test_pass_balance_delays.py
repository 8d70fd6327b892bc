"""balance_delays: the terms of every chip sum arrive at one step, earlier ones delayed by chains of relays (no
synaptic delay: no public Loihi 2 run shows one); the function is unchanged; a real-weighted term on the stream is
computed into a relay of its own before it waits."""
import pytest
import torch

from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.convert import convert
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.passes.fold import fold_batchnorm, normalise_neurons
from snn2hw.passes.partition import placements
from snn2hw.passes.relay import _depths, balance_delays, is_identity, relay_sums
from snn2hw.passes.residual import unroll_residual_stream


def _relayed(unroll: bool):
    model = load_checkpoint(demo_checkpoint("gac-msresnet-tiny")).model
    graph = normalise_neurons(fold_batchnorm(convert(model, "gac-msresnet-tiny")).infer()).infer()
    if unroll:
        graph = unroll_residual_stream(graph).infer()
    x = torch.as_tensor(evaluation_data("digits", "gac-msresnet-tiny")[0][:24])
    return relay_sums(graph).infer(), x


def _arrivals(graph):
    """Every chip sum → the depths its terms arrive at (host-fed terms arrive when needed: left out)."""
    depth = _depths(graph, placements(graph))
    return {n: {depth[i] for i in node.inputs if depth[i] is not None}
            for n, node in graph.nodes.items() if isinstance(node, ir.Add) and depth[n] is not None}


@pytest.mark.parametrize("unroll", [False, True])
def test_balance_delays_preserves_the_function_and_makes_every_sum_arrive_at_once(unroll):
    before, x = _relayed(unroll)
    assert any(len(d) > 1 for d in _arrivals(before).values())  # the demo needs balancing
    after = balance_delays(before).infer()
    out_before, values_before = before.run(x, record=True)
    out_after, values_after = after.run(x, record=True)
    assert torch.equal(out_before, out_after)
    assert all(torch.equal(values_before[n], values_after[n]) for n in before.nodes)
    assert all(len(d) == 1 for d in _arrivals(after).values())
    links = [n for n in after.nodes if n not in before.nodes]
    assert links and all(isinstance(after.nodes[n], ir.Relay) or is_identity(after.nodes[n]) for n in links)
    assert balance_delays(after).nodes.keys() == after.nodes.keys()  # balanced: nothing more to do


def test_a_downsample_on_the_stream_is_computed_before_it_waits():
    before, _ = _relayed(unroll=False)
    after = balance_delays(before).infer()
    downsample = next(n for n in after.nodes if "downsample" in n and isinstance(after.nodes[n], ir.Conv2d))
    # it still reads the stream's relay directly; its result goes into a relay of its own, which waits
    assert isinstance(after.nodes[after.nodes[downsample].inputs[0]], ir.Relay)
    assert after.consumers(downsample) == [f"{downsample}.relay"]
    # spike sources (unroll) are delayed before their synapse instead: one chain per source, shared
    unrolled = balance_delays(_relayed(unroll=True)[0])
    chains = [n for n, node in unrolled.nodes.items() if isinstance(node, ir.Relay) and ".delay" in n]
    assert chains and all(unrolled.nodes[n.rsplit(".delay", 1)[0]].kind == "binary" for n in chains)
