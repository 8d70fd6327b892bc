"""The compiler flow: torch model → graph IR → ordered passes → partitioned, quantized graph.

    convert → fold_batchnorm → normalise_neurons → [fold_tcja_gates, with --tcja fold] → unroll_residual_stream
            → fold_avgpool_linear → fold_avgpool_conv → maxpool_to_or → partition_host_chip → quantize
"""
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from . import ir
from .convert import convert
from .errors import UserError
from .partition import partition_host_chip
from .passes import fold_avgpool_conv, fold_avgpool_linear, fold_batchnorm, fold_tcja_gates, maxpool_to_or, \
    normalise_neurons, run_passes
from .quantize import quantize
from .residual import unroll_residual_stream

TCJA_STRATEGIES = ("host", "fold")


@dataclass
class Compiled:
    arch: str
    model: nn.Module  # the float reference (level 1)
    source: ir.Graph  # the model as converted, before any pass (runs bit-identically to the model)
    folded: ir.Graph  # folded float, partitioned (level 2)
    fixed: ir.Graph  # quantized (level 3)
    tcja: str


def pass_pipeline(calibration: torch.Tensor, tcja: str = "host") -> list:
    if tcja not in TCJA_STRATEGIES:
        raise UserError(f"--tcja {tcja!r} is not a strategy; use one of {', '.join(TCJA_STRATEGIES)}.")
    gates = [partial(fold_tcja_gates, calibration=calibration)] if tcja == "fold" else []
    return [fold_batchnorm, normalise_neurons, *gates, unroll_residual_stream, fold_avgpool_linear, fold_avgpool_conv,
            maxpool_to_or]


def compile_model(model: nn.Module, arch: str, calibration: torch.Tensor, tcja: str = "host") -> Compiled:
    source = convert(model, arch)
    folded = partition_host_chip(run_passes(source, pass_pipeline(calibration, tcja)))
    return Compiled(arch, model, source, folded, quantize(folded, calibration), tcja)
