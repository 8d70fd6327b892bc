"""MS-ResNet's residual stream on chip, relayed or unrolled (`--residual relay|unroll`): what each form costs at
official size — Loihi 2 cores and chips (the resource model), synapse weights on chip against the model's own, the
largest fan-in of one neuron, the relay neurons added and the values the host sends the chip per step.

Official-size models with seeded random weights and BatchNorm statistics of their random inputs
(`common.model_and_inputs`), compiled on a few calibration samples; the counts depend on the weights only through
the weights that quantize to zero."""
import math

import torch

from snn2hw import ir
from snn2hw.compile import compile_model
from snn2hw.energy import chip_model, load_preset, loihi_resources

from .common import model_and_inputs

CASES = [("gac-msresnet18-cifar", 4), ("gac-msresnet18-imagenet", 2)]  # (arch, calibration samples)


def form_costs(compiled) -> dict:
    """The chip costs of one compiled form."""
    graph = compiled.fixed
    resources = loihi_resources(graph, chip_model(load_preset("loihi2"))[0])
    model_weights = sum(n.weight.numel() for n in compiled.source.nodes.values() if isinstance(n, ir.SYNAPSES))
    host_to_chip = [c for c in graph.cuts if c["direction"] == "host->chip"]
    return {"cores": resources["cores"], "chips": resources["chips"],
            "chip weights": sum(r["weights"] for r in resources["layers"]), "model weights": model_weights,
            "max fan-in": max(r["max_fan_in"] for r in resources["layers"]),
            "relay neurons": sum(math.prod(n.shape) for n in graph.nodes.values()
                                 if isinstance(n, ir.Relay) and n.placement == "chip"),
            "host→chip tensors": len({c["tensor"] for c in host_to_chip}),
            "host→chip values / step": sum(c["values_per_step"] for c in host_to_chip)}


def run() -> list[dict]:
    rows = []
    for arch, calibration in CASES:
        model, x = model_and_inputs(arch, calibration)
        for residual in ("relay", "unroll"):
            costs = form_costs(compile_model(model, arch, x, "host", residual))
            rows.append({"arch": arch, "residual": residual, **costs,
                         "chip / model weights": round(costs["chip weights"] / costs["model weights"], 3)})
        del model
    return rows
