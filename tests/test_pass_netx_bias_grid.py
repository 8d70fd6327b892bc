"""netx_bias_grid: the LIF biases of every chip segment that netx can write as a `.net` move onto netx's grid
(multiples of 64: bias_exp 6), each to the nearest point; everything else, and every segment netx cannot express,
is the quantizer's."""
import numpy as np
import pytest
import torch

from helpers import compiled_demo
from snn2hw.exporters.lava_spec import chip_segment_spec
from snn2hw.exporters.netx_export import is_sequential
from snn2hw.hardware_sims import loihi_formats as lf
from snn2hw.hardware_sims.loihi_numerics import effective_bias
from snn2hw.passes.netx_grid import netx_bias_grid
from snn2hw.passes.quantize import quantize


def _same_quant(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k]) if isinstance(a[k], (np.ndarray, torch.Tensor)) else a[k] == b[k] for k in a)


@pytest.mark.parametrize("arch, tcja", [("tcja-tiny", "host"), ("tcja-tiny", "fold"), ("gac-msresnet-tiny", "host")])
def test_netx_bias_grid_moves_only_the_biases_of_netx_chains_to_the_nearest_multiple_of_64(arch, tcja):
    compiled, _, _, calib = compiled_demo(arch, tcja)
    before = quantize(compiled.folded, torch.as_tensor(calib)).infer()
    after = netx_bias_grid(before)
    assert after is not before or arch == "gac-msresnet-tiny"
    chains = {lif for s in before.segments if s["placement"] == "chip"
              for spec in [chip_segment_spec(before, s)[0]] if is_sequential(spec) for lif in spec["spiking_layers"]}
    assert bool(chains) == (arch == "tcja-tiny")  # GAC's one segment has two inputs and relays: no .net
    assert list(after.nodes) == list(before.nodes) and after.segments == before.segments
    moved = 0
    for name, node in before.nodes.items():
        new = after.nodes[name]
        assert new.inputs == node.inputs
        if name not in chains:
            assert _same_quant(new.quant, node.quant), name
            continue
        rest = lambda q: {k: v for k, v in q.items() if k not in ("bias_mant", "bias_exp")}  # noqa: E731
        assert _same_quant(rest(new.quant), rest(node.quant)), name
        old_b = effective_bias(node.quant["bias_mant"], node.quant["bias_exp"])
        new_b = effective_bias(new.quant["bias_mant"], new.quant["bias_exp"])
        assert new.quant["bias_exp"] >= lf.NETX_BIAS_EXP and not (new_b % 2 ** lf.NETX_BIAS_EXP).any(), name
        assert np.abs(new_b - old_b).max(initial=0) <= 2 ** (lf.NETX_BIAS_EXP - 1), name
        assert np.abs(new.quant["bias_mant"]).max(initial=0) <= lf.BIAS_MANT_MAX
        moved += int((new_b != old_b).sum())
    if arch == "tcja-tiny":
        assert moved > 0, "no bias was off the grid: the test would prove nothing"
    assert netx_bias_grid(after) is after  # on the grid already: nothing left to move
