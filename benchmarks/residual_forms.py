"""MS-ResNet's residual stream on chip, relayed or unrolled (`--residual relay|unroll`): what each form costs at
official size — Loihi 2 cores and chips (the resource model), synapse weights on chip against the model's own, the
largest fan-in of one neuron, the relay neurons added and the values the host sends the chip per step.

Official-size models with seeded random weights and BatchNorm statistics of their random inputs
(`common.model_and_inputs`), compiled on a few calibration samples; the counts depend on the weights only through
the weights that quantize to zero. Counted as `--residual auto` counts them: on the float graphs."""
from snn2hw import ir
from snn2hw.compile import compile_model
from snn2hw.energy import chip_costs, chip_model, load_preset

from .common import model_and_inputs

CASES = [("gac-msresnet18-cifar", 4), ("gac-msresnet18-imagenet", 2)]  # (arch, calibration samples)


def run() -> list[dict]:
    rows = []
    for arch, calibration in CASES:
        model, x = model_and_inputs(arch, calibration)
        compiled = compile_model(model, arch, x, "host", "auto")
        model_weights = sum(n.weight.numel() for n in compiled.source.nodes.values() if isinstance(n, ir.SYNAPSES))
        # the form kept, quantized: weights that round to zero are gone, identities hold their chosen form
        quantized = chip_costs(compiled.fixed, chip_model(load_preset("loihi2"))[0])["chip_weights"]
        for form, costs in compiled.residual_forms.items():
            kept = form == compiled.residual
            rows.append({"arch": arch, "residual": form, "chosen by auto": kept,
                         **costs, "model_weights": model_weights,
                         "chip / model weights": round(costs["chip_weights"] / model_weights, 3),
                         "quantized chip / model weights": round(quantized / model_weights, 3) if kept else None})
        del model, compiled
    return rows
