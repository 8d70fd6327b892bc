"""maxpool_to_or: a max-pool over binary spikes becomes an OR (a depthwise sum-pool synapse into a neuron that fires
on one spike). Preserves the spikes exactly; max-pools over other values are left as they are."""
from functools import partial

import pytest
import torch

from helpers import demo_model
from snn2hw import ir
from snn2hw.convert import convert
from snn2hw.data import DEMO_DATA
from snn2hw.passes.fold import fold_batchnorm, fold_tcja_gates, normalise_neurons
from snn2hw.passes.pipeline import run_passes
from snn2hw.passes.pooling import maxpool_to_or


def _pools(graph):
    return [n for n, node in graph.nodes.items() if isinstance(node, ir.MaxPool2d)]


def test_maxpool_to_or_preserves_spikes_exactly():
    """On tcja-tiny with its gates folded, both max-pools read binary spikes: both become ORs with the same spikes."""
    model, x = demo_model("tcja-tiny")
    calib = torch.as_tensor(DEMO_DATA["digit-events"]("train")[0][:128])
    graph = run_passes(convert(model), [fold_batchnorm, normalise_neurons, partial(fold_tcja_gates, calibration=calib)])
    pools = _pools(graph)
    assert len(pools) == 2 and all(graph.nodes[graph.nodes[p].inputs[0]].kind == "binary" for p in pools)
    ored = maxpool_to_or(graph).infer()
    assert not _pools(ored) and ored.notes[-1].startswith("maxpool_to_or: 2 max-pools")
    for p in pools:  # the OR keeps the pool's name, shape and readers; its sum-pool reads the pool's input
        node, pool = ored.nodes[p], graph.nodes[p]
        assert isinstance(node, ir.LIF) and node.inputs == [f"{p}.sum"] and node.shape == pool.shape
        assert ored.nodes[f"{p}.sum"].inputs == pool.inputs and ored.consumers(p) == graph.consumers(p)
    (out_before, before), (out_after, after) = graph.run(x, record=True), ored.run(x, record=True)
    assert torch.equal(out_after, out_before)
    for name in graph.nodes:  # every value, the pools' spikes included, exactly
        assert torch.equal(after[name], before[name]), name
    for p in pools:  # windows of several spikes (count >= 2) and of none: the OR's threshold is what decides
        counts = after[f"{p}.sum"]
        assert counts.max() >= 2 and before[p].any() and not before[p].all(), p


def test_maxpool_to_or_leaves_max_pools_on_graded_values_alone():
    """With TCJA's gates on the host (the default strategy), the max-pools read graded gate outputs: no OR."""
    model, x = demo_model("tcja-tiny")
    graph = run_passes(convert(model), [fold_batchnorm, normalise_neurons])
    pools = _pools(graph)
    assert len(pools) == 2 and all(graph.nodes[graph.nodes[p].inputs[0]].kind == "graded" for p in pools)
    same = maxpool_to_or(graph).infer()
    assert _pools(same) == pools and list(same.nodes) == list(graph.nodes)
    assert same.notes[-1].startswith("maxpool_to_or: 0 max-pools")
    assert torch.equal(same.run(x)[0], graph.run(x)[0])


@pytest.mark.parametrize("source_kind", ["binary", "graded", "analog"])
@pytest.mark.parametrize("kernel, stride, padding", [
    ((2, 2), (2, 2), (0, 0)),  # TCJA's pools
    ((3, 3), (2, 2), (1, 1)),  # overlapping windows over a padded edge (ResNet's stem pool)
    ((2, 3), (1, 2), (1, 0)),  # rectangular
])
def test_maxpool_to_or_is_the_max_pool_on_binary_spikes_for_any_window(source_kind, kernel, stride, padding):
    nodes = {"x": ir.Input("x", [], timesteps=3, source_kind=source_kind),
             "pool": ir.MaxPool2d("pool", ["x"], kernel_size=kernel, stride=stride, padding=padding),
             "out": ir.Readout("out", ["pool"], mode="per_step_tn")}
    graph = ir.Graph(nodes, 3, (3, 4, 7, 9)).infer()
    ored = maxpool_to_or(graph).infer()
    assert isinstance(ored.nodes["pool"], ir.MaxPool2d if source_kind != "binary" else ir.LIF)
    torch.manual_seed(0)
    for density in (0.05, 0.3, 0.9):
        spikes = (torch.rand(5, 3, 4, 7, 9) < density).float()
        assert torch.equal(ored.run(spikes)[0], graph.run(spikes)[0]), density
