"""unroll_residual_stream: the real-valued MS-ResNet stream becomes sums of synapses on spike/host sources, with the
same spikes (up to threshold ties) and the structure, costs and delays it promises; with it, `compose_convs` and the
IR's run of the unroll's repeated term copies (computed once)."""
import pytest
import torch

from helpers import assert_first_divergence_is_a_tie, calibrated
from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.convert import convert
from snn2hw.demo import demo_checkpoint
from snn2hw.errors import UserError
from snn2hw.models import msresnet
from snn2hw.models.digits import digit_images
from snn2hw.models.zoo import build_model
from snn2hw.passes.fold import fold_batchnorm
from snn2hw.passes.residual import compose_convs, residual_terms, unroll_residual_stream


def _unroll(model, x):
    """→ (folded graph, its values, unrolled graph, its values); asserts that spikes first differ at a tie."""
    folded = fold_batchnorm(convert(model)).infer()
    unrolled = unroll_residual_stream(folded).infer()
    _, before = folded.run(x, record=True)
    _, after = unrolled.run(x, record=True)
    lifs = [n for n, node in folded.nodes.items() if isinstance(node, ir.LIF)]
    assert [n for n, node in unrolled.nodes.items() if isinstance(node, ir.LIF)] == lifs
    assert sum(before[n].sum() for n in lifs) > 0
    assert_first_divergence_is_a_tie(folded, before, after, lifs)
    return folded, before, unrolled, after


def _assert_unrolled(graph, x0):
    """Every Add reads only convs, each on a spike source or on the stream's start `x0`; → {add: its terms}."""
    sums = {}
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Add):
            assert all(isinstance(graph.nodes[i], ir.Conv2d) and graph.nodes[i].bias is None for i in node.inputs)
            sources = [graph.nodes[i].inputs[0] for i in node.inputs]
            assert all(isinstance(graph.nodes[s], ir.LIF) or s == x0 for s in sources), sources
            assert all(isinstance(graph.nodes[r], ir.LIF) for r in graph.consumers(name))
            sums[name] = node.inputs
    return sums


def test_run_computes_a_repeated_conv_once_and_shows_every_node():
    torch.manual_seed(0)
    w, other = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    conv = dict(stride=(1, 1), padding=(1, 1))
    nodes = {"x": ir.Input("x", [], timesteps=2, source_kind="analog"),
             "a": ir.Conv2d("a", ["x"], weight=w, **conv),
             "a_copy": ir.Conv2d("a_copy", ["x"], weight=w, **conv),  # same input, same tensor: a repeat
             "b": ir.Conv2d("b", ["x"], weight=other, **conv),  # same input, other weights: not a repeat
             "sum": ir.Add("sum", ["a", "a_copy", "b"]),
             "out": ir.Readout("out", ["sum"], mode="per_step_tn")}
    graph = ir.Graph(nodes, 2, (2, 1, 5, 5)).infer()
    assert graph.shared_convs() == {"a_copy": "a"}
    x = torch.randn(3, 2, 1, 5, 5)
    seen = {}
    out, _ = graph.run(x, observe=lambda name, value: seen.setdefault(name, value))
    xs = x.transpose(0, 1)
    expected = {name: nodes[name].run(xs) for name in ("a", "a_copy", "b")}
    assert list(seen) == list(nodes)
    for name, value in expected.items():
        assert torch.equal(seen[name], value)
    assert torch.equal(seen["sum"], expected["a"] + expected["a_copy"] + expected["b"])
    assert torch.equal(out, nodes["out"].run(seen["sum"]))


def test_compose_convs_by_hand():
    w1 = torch.stack([torch.ones(3, 3), torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])]).unsqueeze(1)
    first = ir.Conv2d("conv", ["x"], weight=w1, bias=torch.tensor([1.0, 3.0]), stride=(1, 1), padding=(1, 1))
    second = ir.Conv2d("down", ["conv"], weight=torch.tensor([2.0, -1.0]).view(1, 2, 1, 1),
                       bias=torch.tensor([0.5]), stride=(2, 2))
    both = compose_convs(first, second)
    # 2 * ones - laplacian; bias 2 * 1 - 3 + 0.5
    assert torch.equal(both.weight, torch.tensor([[[[2.0, 1, 2], [1, 6, 1], [2, 1, 2]]]]))
    assert torch.equal(both.bias, torch.tensor([-0.5])) and both.stride == (2, 2) and both.padding == (1, 1)
    torch.manual_seed(0)
    for size in (6, 7):  # even and odd: the last sampled output sits on the padded edge for odd sizes
        x = torch.randint(-3, 4, (2, 1, 1, size, size)).float()
        assert torch.equal(both.run(x), second.run(first.run(x)))
    first.stride = (2, 2)  # across two downsamplings the strides multiply
    wide = ir.Conv2d("down", ["conv"], weight=torch.randint(-2, 3, (3, 2, 1, 1)).float(), stride=(2, 2))
    x = torch.randint(-3, 4, (1, 2, 1, 13, 13)).float()
    assert compose_convs(first, wide).stride == (4, 4)
    assert torch.equal(compose_convs(first, wide).run(x), wide.run(first.run(x)))


def test_unroll_residual_stream_keeps_the_demo_models_spikes_with_the_promised_costs_and_delays():
    model = load_checkpoint(demo_checkpoint("gac-msresnet-tiny")).model
    x = torch.as_tensor(digit_images("test")[0])
    folded, before, unrolled, after = _unroll(model, x)
    torch.testing.assert_close(after["output"], before["output"])
    assert "layer1.0.add" in folded.nodes  # the input graph is left as it was
    sums = _assert_unrolled(unrolled, "encoding")
    assert sums == {"layer2.0.lif1.in": ["layer2.0.lif1.in.from.layer1.0.lif2", "layer2.0.lif1.in.from.encoding"],
                    "head_lif.in": ["head_lif.in.from.layer2.0.lif2", "head_lif.in.from.layer1.0.lif2",
                                    "head_lif.in.from.encoding"]}
    nodes = unrolled.nodes
    assert nodes["layer2.0.lif1"].inputs == ["layer2.0.lif1.in"]
    assert torch.equal(nodes["layer2.0.lif1.in.from.encoding"].weight, torch.eye(16).view(16, 16, 1, 1))
    composed = nodes["head_lif.in.from.layer1.0.lif2"]  # conv2 of layer1.0 through the stride-2 downsample
    assert composed.stride == (2, 2) and composed.weight.shape == (32, 16, 3, 3)
    assert not any("downsample" in n or n.endswith(".add") for n in nodes)
    # Depths by hand: encoding 1 (stem), layer1.0.lif2 2, layer2.0.lif1 3, layer2.0.lif2 4, head_lif 5.
    delays = {s.add: [(t.source, t.delay) for t in s.terms] for s in residual_terms(unrolled)}
    assert delays == {"layer2.0.lif1.in": [("layer1.0.lif2", 0), ("encoding", 1)],
                      "head_lif.in": [("layer2.0.lif2", 0), ("layer1.0.lif2", 2), ("encoding", 3)]}
    # weights: - 16*16*9 (conv2) - 32*16 (downsample) + 16*16 (identity) + 16*16*9 + 32*16*9 + 32*16 (three terms)
    assert unrolled.notes[-1].startswith("unroll_residual_stream: 2 sums") and \
        "synapse weights 19,408 -> 24,272, Conv2d nodes 6 -> 8, max fan-in 2 -> 3 terms, max extra delay 2 -> 3" \
        in unrolled.notes[-1]


@pytest.mark.parametrize("stem", [8, 4], ids=["identity", "stride-1 shortcut"])
def test_stream_starting_at_the_analog_stem_becomes_a_graded_cut(stem):
    """Without GAC, x_0 is the stem conv's output (analog), read through the identity (stem width = stage width) or
    a 1x1 stride-1 shortcut conv; either way the terms read the stem's output, never the image."""
    torch.manual_seed(0)
    x = torch.as_tensor(digit_images("test")[0][:100])
    model = msresnet.MSResNetCifar(((8, 2, 1), (16, 1, 2)), 10, 4, (1, 8, 8), stem_channels=stem, using_gac=False)
    folded, _, unrolled, _ = _unroll(calibrated(model, x), x)
    sums = _assert_unrolled(unrolled, "conv1_s.layer.module")
    assert [len(t) for t in sums.values()] == [2, 3, 4]
    assert unrolled.nodes["conv1_s.layer.module"].kind == "analog"
    first = unrolled.nodes["layer1.1.lif1.in.from.conv1_s.layer.module"]
    shortcut = folded.nodes.get("layer1.0.downsample.layer.module")
    assert torch.equal(first.weight, torch.eye(8).view(8, 8, 1, 1) if stem == 8 else shortcut.weight)
    assert unrolled.nodes["head_lif.in.from.conv1_s.layer.module"].stride == (2, 2)


@pytest.mark.parametrize("arch, options, make_input, x0_stride, term_stride", [
    ("gac-msresnet18-cifar", {}, lambda: torch.randn(2, 3, 32, 32), (4, 4), (4, 4)),
    ("gac-msresnet18-imagenet", {"timesteps": 2}, lambda: torch.randn(2, 3, 64, 64), (16, 16), (8, 8)),
])
def test_unroll_residual_stream_keeps_official_size_models_spikes_up_to_threshold_ties(arch, options, make_input,
                                                                                     x0_stride, term_stride):
    torch.manual_seed(1)
    x = make_input()
    torch.manual_seed(0)
    _, _, unrolled, _ = _unroll(calibrated(build_model(arch, **options), x), x)
    sums = _assert_unrolled(unrolled, "encoding")
    assert [len(t) for t in sums.values()] == list(range(2, 10))  # block k's lif1 reads k terms; the head 9
    first_block_lif2 = next(n for n in unrolled.nodes if n.endswith(".lif2"))
    assert unrolled.nodes["head_lif.in.from.encoding"].stride == x0_stride
    assert unrolled.nodes[f"head_lif.in.from.{first_block_lif2}"].stride == term_stride
    assert max(t.delay for s in residual_terms(unrolled) for t in s.terms) == 15  # 2 hops per block, 8 blocks


def test_graph_without_a_residual_stream_passes_through():
    graph = fold_batchnorm(convert(load_checkpoint(demo_checkpoint("tcja-tiny")).model))
    same = unroll_residual_stream(graph)
    assert all(same.nodes[n] is node for n, node in graph.nodes.items()) and same.nodes.keys() == graph.nodes.keys()
    assert "no residual stream" in same.notes[-1]


def test_unfolded_batchnorm_on_the_stream_is_refused():
    graph = convert(load_checkpoint(demo_checkpoint("gac-msresnet-tiny")).model)
    with pytest.raises(UserError, match="BatchNorm on the residual stream: run fold_batchnorm"):
        unroll_residual_stream(graph)
