"""fold_avgpool_linear: AvgPool2d → Flatten → Linear becomes one Linear on the unpooled spikes, so the MS-ResNet
head reads binary spikes. Preserves the function up to float rounding."""
import torch

from helpers import demo_model
from snn2hw import ir
from snn2hw.convert import convert
from snn2hw.passes.fold import fold_batchnorm
from snn2hw.passes.pipeline import run_passes
from snn2hw.passes.pooling import fold_avgpool_linear


def test_fold_avgpool_linear_makes_the_head_read_binary_spikes_and_keeps_the_function():
    model, x = demo_model("gac-msresnet-tiny")
    graph = run_passes(convert(model), [fold_batchnorm])
    folded = fold_avgpool_linear(graph).infer()
    assert not any(isinstance(n, ir.AvgPool2d) for n in folded.nodes.values())
    fc = folded.nodes["fc1"]
    assert folded.nodes[fc.inputs[0]].kind == "binary" and fc.weight.shape == (10, 32 * 4 * 4)
    torch.testing.assert_close(folded.run(x)[0], graph.run(x)[0], rtol=1e-5, atol=1e-5)
