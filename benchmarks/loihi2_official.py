"""The official models on Loihi 2, from the chip model (`snn2hw energy --preset loihi2` on a deployment): cores,
chips, time per step, ms and mJ per sample, and where the time and energy go.

Each model is official size with seeded random weights and BatchNorm statistics measured on its random inputs
(`common.model_and_inputs`), exported for Hala Point (the ImageNet model needs more chips than a Kapoho Point has),
then run in fixed point on a few random samples: the firing rates are those of random-weight models, not of trained
ones."""
import tempfile
from pathlib import Path

import numpy as np

from snn2hw.checkpoint import save_checkpoint
from snn2hw.deployment import load_deployment
from snn2hw.energy import SYSTEMS, load_preset
from snn2hw.measure import deployment_report

from .common import model_and_inputs
from .export_cost import _export

CASES = [("gac-msresnet18-cifar", 8, 4), ("gac-msresnet18-imagenet", 4, 2), ("tcja-dvs128", 4, 2)]  # (arch,
# calibration samples, measured samples)


def run() -> list[dict]:
    rows = []
    preset = load_preset("loihi2")
    with tempfile.TemporaryDirectory(prefix="snn2hw-bench-") as tmp:
        tmp = Path(tmp)
        for arch, calibration, measured in CASES:
            model, x = model_and_inputs(arch, calibration + measured)
            save_checkpoint(tmp / f"{arch}.pt", model, arch, {})
            np.save(tmp / f"{arch}.calibration.npy", x[:calibration].numpy())
            del model
            _export(tmp / f"{arch}.pt", tmp / f"{arch}.calibration.npy", tmp / arch)
            report = deployment_report(load_deployment(tmp / arch), x[calibration:].numpy(), "fixed", preset,
                                       system="halapoint")
            chip, faithful = report["loihi2"], report["modes"]["faithful"]
            rows.append({"arch": arch, "T": report["timesteps"], "samples": measured, "cores": chip["cores"],
                         "chips": chip["chips"], "fits kapohopoint": chip["chips"] <= SYSTEMS["kapohopoint"].chips,
                         "unplaced layers": len(chip["violations"]),
                         "µs / step": round(chip["time_per_step_us"], 1),
                         "host I/O share": round(chip["io_share"], 2), "ms / sample": round(chip["latency_ms"], 2),
                         "mJ / sample": round(report["total_energy_mj"], 3),
                         "chip dynamic mJ": round(chip["dynamic_mj"], 3), "static mJ": round(chip["static_mj"], 3),
                         "host mJ": round(faithful["host_mj"], 3), "transfer mJ": round(faithful["transfer_mj"], 3),
                         "busiest layer": chip["busiest_layer"]})
    return rows
