"""The compiler flow: torch model → graph IR → the ordered passes (`passes.pipeline`) → partitioned, quantized graph."""
from dataclasses import dataclass

import torch
from torch import nn

from . import ir
from .convert import convert
from .passes.pipeline import pipeline, run_passes


@dataclass
class Compiled:
    arch: str
    model: nn.Module  # the float reference (level 1)
    source: ir.Graph  # the model as converted, before any pass (runs bit-identically to the model)
    folded: ir.Graph  # folded float, partitioned (level 2): the graph before the last pass, `quantize`
    fixed: ir.Graph  # quantized (level 3)
    tcja: str
    residual: str


def compile_model(model: nn.Module, arch: str, calibration: torch.Tensor, tcja: str = "host",
                  residual: str = "relay") -> Compiled:
    source = convert(model, arch)
    *float_passes, quantize = pipeline(calibration, tcja, residual)
    folded = run_passes(source, float_passes)
    return Compiled(arch, model, source, folded, run_passes(folded, [quantize]), tcja, residual)
