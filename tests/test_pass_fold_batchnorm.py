"""fold_batchnorm: a BatchNorm after a synapse becomes that synapse's weights and bias. Preserves the function up to
float rounding (spikes change only at exact threshold ties)."""
import pytest
import torch

from helpers import assert_first_divergence_is_a_tie, demo_model
from snn2hw import ir
from snn2hw.convert import convert
from snn2hw.passes.fold import fold_batchnorm


@pytest.mark.parametrize("arch", ["tcja-tiny", "gac-msresnet-tiny"])
def test_fold_batchnorm_preserves_the_demo_models_spikes_up_to_threshold_ties(arch):
    model, x = demo_model(arch)
    graph = convert(model)
    folded = fold_batchnorm(graph).infer()
    bns = [n for n, node in graph.nodes.items() if isinstance(node, ir.BatchNorm)]
    assert bns and not any(isinstance(node, ir.BatchNorm) for node in folded.nodes.values())
    assert list(folded.nodes) == [n for n in graph.nodes if n not in bns]  # nothing else added, removed or moved
    out_before, before = graph.run(x, record=True)
    out_after, after = folded.run(x, record=True)
    for bn in bns:  # the synapse now computes what its BatchNorm did
        torch.testing.assert_close(after[graph.nodes[bn].inputs[0]], before[bn], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_after, out_before, rtol=1e-5, atol=1e-5)
    lifs = [n for n, node in graph.nodes.items() if isinstance(node, ir.LIF)]
    assert sum(before[n].sum() for n in lifs) > 0
    assert_first_divergence_is_a_tie(graph, before, after, lifs)


def test_fold_batchnorm_matches_the_formula():
    w = torch.tensor([[[[1.0, -2.0]]], [[[0.5, 4.0]]]])  # 2 output channels, 1 input, 1x2 kernel
    graph = ir.Graph({
        "input": ir.Input("input", [], timesteps=2, source_kind="analog", repeat_over_t=True),
        "conv": ir.Conv2d("conv", ["input"], weight=w, bias=torch.tensor([0.25, -1.0])),
        "bn": ir.BatchNorm("bn", ["conv"], mean=torch.tensor([1.0, -2.0]), var=torch.tensor([3.0, 0.0]),
                           weight=torch.tensor([2.0, -1.0]), bias=torch.tensor([0.5, 0.0]), eps=1.0),
        "lif": ir.LIF("lif", ["bn"]),
        "output": ir.Readout("output", ["lif"], mode="per_step_tn"),
    }, timesteps=2, input_shape=(1, 1, 2)).infer()
    folded = fold_batchnorm(graph).infer()
    conv = folded.nodes["conv"]
    assert "bn" not in folded.nodes and folded.nodes["lif"].inputs == ["conv"]
    # scale = g / sqrt(var + eps) = [2/2, -1/1] = [1, -1]; b' = (b - mean) * scale + beta = [-0.75 + 0.5, -1.0]
    assert torch.equal(conv.weight, torch.tensor([[[[1.0, -2.0]]], [[[-0.5, -4.0]]]]))
    assert torch.equal(conv.bias, torch.tensor([-0.25, -1.0]))
    assert torch.equal(graph.nodes["conv"].weight, w)  # the input graph is left as it was
    x = torch.tensor([[[[1.0, 0.5]]], [[[-1.0, 2.0]]]])
    before = graph.run(x, record=True)[1]["bn"]
    after = folded.run(x, record=True)[1]["conv"]
    torch.testing.assert_close(after, before)
