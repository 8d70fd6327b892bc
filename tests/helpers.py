"""Helpers shared by several test files."""
import torch
from torch import nn


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
    from snn2hw.compare import first_divergence

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
