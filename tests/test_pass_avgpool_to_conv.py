"""avgpool_to_conv: an average pool no conv absorbs becomes a depthwise conv synapse of weights 1/(kh·kw), so the
MS-ResNet head's Linear reads the pooled averages (through a relay) rather than a Linear with the pool folded in;
the function is kept up to float rounding."""
import torch

from helpers import demo_model
from snn2hw import ir
from snn2hw.convert import convert
from snn2hw.passes.fold import fold_batchnorm
from snn2hw.passes.pipeline import run_passes
from snn2hw.passes.pooling import avgpool_to_conv


def test_avgpool_to_conv_keeps_the_function_and_the_linears_fan_in():
    model, x = demo_model("gac-msresnet-tiny")
    graph = run_passes(convert(model), [fold_batchnorm])
    pool = next(n for n in graph.nodes.values() if isinstance(n, ir.AvgPool2d))
    converted = avgpool_to_conv(graph).infer()
    assert not any(isinstance(n, ir.AvgPool2d) for n in converted.nodes.values())
    conv = converted.nodes[pool.name]
    channels, height, width = graph.nodes[pool.inputs[0]].shape
    assert isinstance(conv, ir.Conv2d) and conv.groups == channels and conv.bias is None
    kernel = (height // pool.shape[1], width // pool.shape[2])
    assert torch.equal(conv.weight, torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1])))
    assert conv.shape == pool.shape and converted.nodes["fc1"].weight.shape == graph.nodes["fc1"].weight.shape
    torch.testing.assert_close(converted.run(x)[0], graph.run(x)[0], rtol=1e-5, atol=1e-5)


def test_an_adaptive_pool_of_unequal_windows_is_left_alone():
    nodes = {"x": ir.Input("x", [], timesteps=2, source_kind="binary"),
             "pool": ir.AvgPool2d("pool", ["x"], output_size=(2, 2)),
             "out": ir.Readout("out", ["pool"], mode="per_step_tn")}
    graph = ir.Graph(nodes, 2, (2, 3, 5, 5)).infer()  # 5 is not a multiple of 2
    assert isinstance(avgpool_to_conv(graph).nodes["pool"], ir.AvgPool2d)
