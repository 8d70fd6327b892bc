"""How the fixed-point simulator's time grows with the number of time steps T, the batch size and the width (one
factor at a time around T = 4, batch 64, width 16), next to the float forward of the same model: MS-ResNet with
GAC at the demo model's shape (`gac-msresnet-tiny`, seeded random weights)."""
import torch

from snn2hw.hardware_sims.runner import run_fixed

from .common import alternately, compiled

BASE = {"timesteps": 4, "batch": 64, "channels": 16}
GRID = {"timesteps": [2, 4, 8, 16], "batch": [1, 16, 64, 256], "channels": [8, 16, 32, 64]}
ARCH = "gac-msresnet-tiny"


def run() -> list[dict]:
    rows = []
    for factor, values in GRID.items():
        for value in values:
            config = {**BASE, factor: value}
            c, x = compiled(ARCH, config["batch"], timesteps=config["timesteps"], channels=config["channels"])
            with torch.no_grad():
                t = alternately({"float": lambda: c.model(x), "fixed": lambda: run_fixed(c.fixed, x)})
            rows.append({"varied": factor, "T": config["timesteps"], "batch": config["batch"],
                         "width": config["channels"],
                         "float_ms_per_sample": round(t["float"] / config["batch"] * 1e3, 3),
                         "fixed_ms_per_sample": round(t["fixed"] / config["batch"] * 1e3, 3),
                         "fixed_over_float": round(t["fixed"] / t["float"], 2)})
    return rows
