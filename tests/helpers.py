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
