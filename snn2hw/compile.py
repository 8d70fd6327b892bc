"""The compiler flow: torch model → graph IR → the ordered passes (`passes.pipeline`) → partitioned, quantized graph.

MS-ResNet's residual stream has two chip forms (`--residual relay|unroll`); `auto` compiles both up to the
partition and keeps the one the Loihi 2 resource model gives fewer cores (relay on a tie), recording both forms'
costs (`energy.chip_costs`, on the float graphs: before quantization rounds small weights to zero)."""
from dataclasses import dataclass, field

import torch
from torch import nn

from . import ir
from .convert import convert
from .energy import chip_costs, chip_model, load_preset
from .passes.pipeline import RESIDUAL_FORMS, float_and_integer, pipeline, run_passes

AUTO = "auto"


@dataclass
class Compiled:
    arch: str
    model: nn.Module  # the float reference (level 1)
    source: ir.Graph  # the model as converted, before any pass (runs bit-identically to the model)
    folded: ir.Graph  # folded float, partitioned (level 2): the graph before `quantize`
    fixed: ir.Graph  # quantized (level 3)
    tcja: str
    residual: str  # the form compiled: relay or unroll
    residual_forms: dict = field(default_factory=dict)  # form → its chip costs, where `auto` compared both
    netx: bool = False  # the biases of netx chains on netx's grid (`--netx`)


def compile_model(model: nn.Module, arch: str, calibration: torch.Tensor, tcja: str = "host",
                  residual: str = AUTO, netx: bool = False) -> Compiled:
    source = convert(model, arch)
    if residual != AUTO:
        forms = (residual,)
    elif any(isinstance(n, ir.Add) for n in source.nodes.values()):  # a residual stream: both forms to compare
        forms = RESIDUAL_FORMS
    else:
        forms = ("relay",)  # no stream: the forms are the same graph
    folded, integer_passes = {}, []
    for form in forms:
        float_passes, integer_passes = float_and_integer(pipeline(calibration, tcja, form, netx))
        folded[form] = run_passes(source, float_passes)
    costs = {}
    if len(forms) > 1:
        limits = chip_model(load_preset("loihi2"))[0]
        costs = {form: chip_costs(graph, limits) for form, graph in folded.items()}
    chosen = min(forms, key=lambda form: costs[form]["cores"]) if costs else forms[0]
    return Compiled(arch, model, source, folded[chosen], run_passes(folded[chosen], integer_passes), tcja, chosen,
                    costs, netx)
