"""Helpers shared by several test files."""
import numpy as np
import torch
from hypothesis import settings, strategies as st
from torch import nn

from snn2hw.hardware_sims import loihi_formats as lf


def calibrated(model, x):
    """`model` in eval mode with realistic BatchNorm statistics: the running stats of the input `x` itself, and
    static shapes (`input_shape`) following `x`, which tests reduce from the official sizes."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: the statistics of the calibration batch
    model.train()
    with torch.no_grad():
        model(x)
    model.input_shape = tuple(x.shape[1:])
    return model.eval()


def assert_first_divergence_is_a_tie(graph, before: dict, after: dict, layers: list[str]) -> None:
    """Where spikes of two float executions of `graph` first differ, the membrane sat on the threshold (a few
    neurons, |v - threshold| < 1e-3): a change of float rounding, not of numerics. Later flips inherit it."""
    from snn2hw.ladder import first_divergence

    first = first_divergence(before, after, layers)
    if first is None:
        return
    node = graph.nodes[first.layer]
    _, v = node.trace(before[node.inputs[0]])
    flipped = before[first.layer][first.step] != after[first.layer][first.step]
    assert first.count <= 5 and (v[first.step][flipped] - node.threshold).abs().max() < 1e-3, first


class FileCreatingPayload:
    """Pickled, this unpickles by creating the file `target`: the proof that loading a checkpoint ran code."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def demo_model(arch):
    """A bundled demo model (tcja-tiny, gac-msresnet-tiny) and the first 60 inputs of its test set → (model, x)."""
    from snn2hw.checkpoint import load_checkpoint
    from snn2hw.data import DEMO_DATA
    from snn2hw.demo import demo_checkpoint
    from snn2hw.models.zoo import ARCHS

    model = load_checkpoint(demo_checkpoint(arch)).model
    x = torch.as_tensor(DEMO_DATA[ARCHS[arch].demo_data]("test")[0][:60])
    return model, x


def compiled_demo(arch, tcja="host"):
    """A demo model compiled on its digits calibration inputs → (Compiled, test inputs, labels, calibration)."""
    from snn2hw.checkpoint import load_checkpoint
    from snn2hw.compile import compile_model
    from snn2hw.data import evaluation_data
    from snn2hw.demo import demo_checkpoint

    model = load_checkpoint(demo_checkpoint(arch)).model
    x, y, calib = evaluation_data("digits", arch)
    return compile_model(model, arch, torch.as_tensor(calib), tcja), x, y, calib


# ---------------------------------------------------------------------------------------------------------------------
# Hypothesis settings and strategies shared by the properties of the Lava numerics (test_properties.py) and of the
# quantizer (test_pass_quantize.py). Every constant comes from loihi_formats.
# ---------------------------------------------------------------------------------------------------------------------

# Fixed examples, no example database: a failure in CI reproduces locally, and no run depends on an earlier one.
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=150, print_blob=True)

INT64 = np.iinfo(np.int64)
# |a| below this keeps a << ACT_SHIFT inside the 24-bit range of u (the limit the quantizer's A_SAFE halves)
A_NO_WRAP = 2 ** (lf.UV_BITS - 1 - lf.ACT_SHIFT)


def _edges(*bits):
    """Values around ±2**b that lie in int64: where wraps, saturations and shifts change behaviour."""
    return [v for b in bits for s in (-1, 1) for d in (-1, 0, 1)
            if INT64.min <= (v := s * (1 << b) + d) <= INT64.max]


def ints(lo, hi, *edge_bits):
    """Integers in [lo, hi], often lo, hi or a value around ±2**b for b in `edge_bits`."""
    edges = [e for e in _edges(*edge_bits) + [lo, hi] if lo <= e <= hi]
    return st.one_of(st.integers(lo, hi), st.sampled_from(edges))


DECAYS = ints(0, lf.DECAY_MAX)
VTHS = ints(0, lf.VTH_MAX)
BIAS_EXPS = st.integers(lf.BIAS_EXP_MIN, lf.BIAS_EXP_MAX)
