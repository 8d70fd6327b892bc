"""Conversion: the graph IR reproduces every zoo model exactly, with the edges and value kinds it claims, and names
what it cannot convert; the whole pipeline of passes then keeps the official architectures' spikes up to ties."""
import pytest
import torch
from torch import nn

from helpers import assert_first_divergence_is_a_tie, calibrated, demo_model
from snn2hw import ir
from snn2hw.convert import convert
from snn2hw.errors import UserError
from snn2hw.ladder import spiking_layers
from snn2hw.models.zoo import build_model
from snn2hw.passes.pipeline import pipeline, run_passes


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
    _check_exact(*demo_model(arch))


@pytest.mark.parametrize("arch, options, make_input", OFFICIAL, ids=[a for a, _, _ in OFFICIAL])
def test_pipeline_reproduces_official_archs_and_keeps_their_spikes_up_to_ties(arch, options, make_input):
    torch.manual_seed(1)
    x = make_input()
    model = _calibrated(arch, x, **options)
    graph, values = _check_exact(model, x)
    compiled = run_passes(graph, pipeline(None))
    assert not any(isinstance(n, ir.BatchNorm) for n in compiled.nodes.values())
    out, after = compiled.run(x, record=True)
    lifs = [n for n, node in compiled.nodes.items() if isinstance(node, ir.LIF)]
    assert_first_divergence_is_a_tie(graph, values, after, lifs)


def test_graph_edges_kinds_and_the_real_valued_shortcut():
    model, _ = demo_model("gac-msresnet-tiny")
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
