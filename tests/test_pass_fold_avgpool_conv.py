"""fold_avgpool_conv: an average pool before a conv folds into the conv (kernel (K - 1) s + k, stride times s), which
then reads the spikes themselves. Preserves the function up to float rounding; a pool whose dropped edge the conv's
padding would read is left alone."""
import pytest
import torch

from snn2hw import ir
from snn2hw.passes.pooling import fold_avgpool_conv


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
