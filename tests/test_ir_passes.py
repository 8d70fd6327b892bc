"""The graph IR reproduces every zoo model exactly; each pass preserves what it promises."""
import dataclasses

import pytest
import torch
from torch import nn

from snn2hw import ir
from snn2hw.activity import spiking_layers
from helpers import assert_first_divergence_is_a_tie, calibrated
from snn2hw.checkpoint import load_checkpoint
from snn2hw.convert import convert
from snn2hw.data import DEMO_DATA
from snn2hw.demo import demo_checkpoint
from snn2hw.errors import UserError
from snn2hw.models.zoo import ARCHS, build_model
from snn2hw.passes import fold_avgpool_conv, fold_avgpool_linear, fold_batchnorm, normalise_neurons, run_passes


def _model_spikes(model, x):
    """Every neuron's spikes from the torch model itself, as `[T, N, ...]`."""
    spikes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: spikes.__setitem__(n, o if m.time_dim == 0
                                                                             else o.transpose(0, 1)))
             for n, m in spiking_layers(model).items()]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    return out, spikes


def _demo(arch):
    model = load_checkpoint(demo_checkpoint(arch)).model
    x = torch.as_tensor(DEMO_DATA[ARCHS[arch].demo_data]("test")[0][:60])
    return model, x


def _calibrated(arch, x, **options):
    """Random weights with realistic BatchNorm statistics (see helpers.calibrated)."""
    torch.manual_seed(0)
    return calibrated(build_model(arch, **options), x)


OFFICIAL = [  # (arch, options, input): official widths; T and image size reduced where only runtime changes
    ("gac-msresnet18-cifar", {}, lambda: torch.randn(2, 3, 32, 32)),
    ("msresnet18-cifar", {"timesteps": 3}, lambda: torch.randn(2, 3, 32, 32)),
    ("gac-msresnet18-imagenet", {"timesteps": 2}, lambda: torch.randn(2, 3, 64, 64)),
    ("tcja-dvs128", {"timesteps": 2}, lambda: (torch.rand(1, 2, 2, 128, 128) < 0.05).float()),
    ("tcja-cifar10dvs", {"timesteps": 2}, lambda: (torch.rand(1, 2, 2, 128, 128) < 0.05).float()),
    ("tcja-ncaltech101", {"timesteps": 2}, lambda: (torch.rand(1, 2, 2, 180, 240) < 0.05).float()),
]


def _check_exact(model, x):
    graph = convert(model)
    want_out, want_spikes = _model_spikes(model, x)
    out, values = graph.run(x, record=True)
    assert torch.equal(out, want_out)
    assert want_spikes.keys() <= values.keys()
    for name, s in want_spikes.items():
        assert torch.equal(values[name], s), name
    assert sum(s.sum() for s in want_spikes.values()) > 0
    return graph, values


@pytest.mark.parametrize("arch", ["tcja-tiny", "gac-msresnet-tiny"])
def test_graph_reproduces_demo_models_bit_for_bit(arch):
    _check_exact(*_demo(arch))


@pytest.mark.parametrize("arch, options, make_input", OFFICIAL, ids=[a for a, _, _ in OFFICIAL])
def test_graph_reproduces_official_archs_and_passes_preserve_spikes(arch, options, make_input):
    torch.manual_seed(1)
    x = make_input()
    model = _calibrated(arch, x, **options)
    graph, values = _check_exact(model, x)
    compiled = run_passes(graph)
    assert not any(isinstance(n, ir.BatchNorm) for n in compiled.nodes.values())
    out, after = compiled.run(x, record=True)
    lifs = [n for n, node in compiled.nodes.items() if isinstance(node, ir.LIF)]
    assert_first_divergence_is_a_tie(graph, values, after, lifs)


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


def test_normalise_neurons_moves_decay_input_into_the_weights():
    model, x = _demo("tcja-tiny")
    graph = fold_batchnorm(convert(model)).infer()
    normal = normalise_neurons(graph).infer()
    for name, node in graph.nodes.items():
        if isinstance(node, ir.LIF):
            new = normal.nodes[name]
            assert (node.tau, node.input_scale) == (2.0, 0.5) and (new.tau, new.input_scale) == (None, 1.0)
            assert new.decay == 0.5 and new.fire_at_threshold  # SpikingJelly fires at v >= threshold
            src = node.inputs[0]
            assert torch.equal(normal.nodes[src].weight, graph.nodes[src].weight / 2)
    before, after = graph.run(x, record=True)[1], normal.run(x, record=True)[1]
    for name, node in normal.nodes.items():
        if isinstance(node, ir.LIF):
            assert torch.equal(before[name], after[name]), name


def test_graph_edges_kinds_and_the_real_valued_shortcut():
    model, _ = _demo("gac-msresnet-tiny")
    graph = convert(model)
    nodes = graph.nodes
    assert nodes["encoding"].inputs == ["conv1_s.bn.bn", "encoder_lif"] and nodes["encoding"].kind == "graded"
    adds = [n for n in nodes.values() if isinstance(n, ir.Add)]
    assert [a.name for a in adds] == ["layer1.0.add", "layer2.0.add"]
    assert adds[0].inputs[1] == "encoding"  # identity shortcut
    down = nodes[adds[1].inputs[1]]  # BN of the conv1x1 downsample, which reads the real stream (not spikes)
    assert nodes[nodes[down.inputs[0]].inputs[0]].name == "layer1.0.add"
    assert nodes["layer1.0.add"].kind == "analog" and nodes["layer2.0.lif1"].kind == "binary"
    assert nodes["layer2.0.downsample.layer.module"].shape == (32, 4, 4)
    assert graph.consumers("layer1.0.add") == ["layer2.0.lif1", "layer2.0.downsample.layer.module"]


def test_unsupported_module_is_named_by_its_path():
    model = build_model("tcja-tiny")
    model.conv[3] = nn.GELU()
    with pytest.raises(UserError, match=r"module conv\.3 \(GELU\) is not supported"):
        convert(model)
    with pytest.raises(UserError, match="Transformer is not supported"):
        convert(nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1).eval())


def _accuracy(graph, arch, x, y):
    from snn2hw.models.zoo import class_scores
    return float((class_scores(arch, graph.run(x)[0]).argmax(1).numpy() == y).mean())


def test_tcja_fold_gates_then_or_pools_put_the_backbone_on_chip_in_one_piece():
    from snn2hw.models import digits
    from snn2hw.partition import partition_host_chip
    from snn2hw.passes import fold_tcja_gates, maxpool_to_or

    model = load_checkpoint(demo_checkpoint("tcja-tiny")).model
    x, y = (torch.as_tensor(a) for a in digits.digit_events("test"))
    calib = torch.as_tensor(digits.digit_events("train")[0][:128])
    graph = run_passes(convert(model), [fold_batchnorm, normalise_neurons])
    folded = fold_tcja_gates(graph, calib).infer()
    assert not any(isinstance(n, ir.HostModule) for n in folded.nodes.values())
    # A static per-channel gate keeps most of the accuracy on the demo (it is reported, not assumed).
    assert _accuracy(folded, "tcja-tiny", x, y.numpy()) >= _accuracy(graph, "tcja-tiny", x, y.numpy()) - 0.03
    ored = maxpool_to_or(folded).infer()
    pools = [n for n, node in folded.nodes.items() if isinstance(node, ir.MaxPool2d)]
    assert pools and all(isinstance(ored.nodes[p], ir.LIF) for p in pools)
    before, after = folded.run(x[:40], record=True), ored.run(x[:40], record=True)
    assert torch.equal(before[0], after[0])
    assert all(torch.equal(before[1][p], after[1][p]) for p in pools)  # OR of binary spikes == max-pool, exactly
    parts = partition_host_chip(ored)
    assert [s["placement"] for s in parts.segments] == ["host", "chip", "host"]
    assert [(c["direction"], c["kind"], c["waits_for_window"]) for c in parts.cuts] == [
        ("host->chip", "graded", False), ("chip->host", "binary", False)]


def test_tcja_fold_averages_each_gate_over_every_sample_and_step_batch_by_batch(monkeypatch):
    from snn2hw import quantize
    from snn2hw.models import digits
    from snn2hw.passes import _mean_gates

    model = load_checkpoint(demo_checkpoint("tcja-tiny")).model
    calib = torch.as_tensor(digits.digit_events("train")[0][:20])
    graph = run_passes(convert(model), [fold_batchnorm, normalise_neurons])
    gates = [n for n, node in graph.nodes.items() if isinstance(node, ir.HostModule)]
    _, values = graph.run(calib, record=True)
    want = {g: graph.nodes[g].module.gate(values[graph.nodes[g].inputs[0]]).mean(dim=(0, 1)) for g in gates}
    monkeypatch.setattr(quantize, "CALIBRATION_BATCH_BYTES", 1)  # one sample per batch
    got = _mean_gates(graph, gates, calib)
    assert got.keys() == want.keys() and len(got) == 2
    for g in gates:
        torch.testing.assert_close(got[g], want[g], rtol=1e-6, atol=1e-7)
        assert 0 < float(got[g].min()) < float(got[g].max()) < 1, g  # sigmoid gates, per channel


def test_tcja_host_strategy_cuts_at_every_gate_and_waits_for_the_window():
    from snn2hw.partition import partition_host_chip

    model = load_checkpoint(demo_checkpoint("tcja-tiny")).model
    parts = partition_host_chip(run_passes(convert(model)))
    gates = [n for n, node in parts.nodes.items() if isinstance(node, ir.HostModule)]
    assert all(parts.nodes[g].placement == "host" for g in gates) and len(gates) == 2
    to_chip = [c for c in parts.cuts if c["direction"] == "host->chip"]
    assert [c["waits_for_window"] for c in to_chip] == [False, True, True]  # after the first gate, all is non-causal
    assert to_chip[1] == {**to_chip[1], "kind": "graded", "shape": [16, 8, 8], "values_per_step": 1024}


@pytest.mark.parametrize("hw, pool, conv, folds", [
    ((8, 8), (2, 2), dict(stride=(1, 1), padding=(1, 1)), True),   # TCJA CIFAR10-DVS: pool 2, conv 3x3 pad 1
    ((8, 10), (2, 2), dict(stride=(2, 2), padding=(1, 1)), True),  # a strided conv after the pool
    ((9, 9), (3, 3), dict(stride=(1, 1), padding=(0, 0)), True),   # no padding, pool 3
    ((7, 8), (2, 2), dict(stride=(1, 1), padding=(1, 1)), False),  # the pool drops row 7: the conv's padding would
])                                                                 # read it
def test_fold_avgpool_conv_reads_the_spikes_and_keeps_the_function(hw, pool, conv, folds):
    torch.manual_seed(0)
    nodes = {"x": ir.Input("x", [], timesteps=3, source_kind="binary"),
             "pool": ir.AvgPool2d("pool", ["x"], kernel_size=pool, stride=pool),
             "conv": ir.Conv2d("conv", ["pool"], weight=torch.randn(5, 4, 3, 3), bias=torch.randn(5), **conv),
             "out": ir.Readout("out", ["conv"], mode="per_step_tn")}
    graph = ir.Graph(nodes, 3, (3, 4, *hw)).infer()
    folded = fold_avgpool_conv(graph).infer()
    assert ("pool" not in folded.nodes) == folds
    if folds:
        composed = folded.nodes["conv"]
        assert composed.inputs == ["x"] and composed.shape == nodes["conv"].shape
        assert composed.weight.shape[2:] == ((3 - 1) * pool[0] + pool[0],) * 2  # (K - 1) s + k
    spikes = (torch.rand(6, 3, 4, *hw) < 0.3).float()
    torch.testing.assert_close(folded.run(spikes)[0], graph.run(spikes)[0], rtol=1e-5, atol=1e-5)


def test_fold_avgpool_linear_makes_the_head_read_binary_spikes():
    model, x = _demo("gac-msresnet-tiny")
    graph = run_passes(convert(model), [fold_batchnorm])
    folded = fold_avgpool_linear(graph).infer()
    assert not any(isinstance(n, ir.AvgPool2d) for n in folded.nodes.values())
    fc = folded.nodes["fc1"]
    assert folded.nodes[fc.inputs[0]].kind == "binary" and fc.weight.shape == (10, 32 * 4 * 4)
    torch.testing.assert_close(folded.run(x)[0], graph.run(x)[0], rtol=1e-5, atol=1e-5)
