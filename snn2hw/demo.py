"""`snn2hw demo`: the bundled demo models end to end: float accuracy, export, the fixed-point simulator on the
whole test set, and Lava's CPU backend on a few samples, spike for spike against the simulator."""
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from . import models
from .checkpoint import load_checkpoint
from .data import CALIBRATION_SAMPLES, DEMO_DATA
from .deployment import load_deployment
from .export import export_deployment
from .hardware_sims.runner import lava_chip
from .ladder import simulate
from .models.zoo import ARCHS, class_scores

LAVA_SAMPLES = 3


def demo_checkpoint(arch: str) -> Path:
    return Path(models.__file__).parent / "checkpoints" / f"{arch}.pt"


def _accuracy(arch: str, output, y) -> float:
    return float((class_scores(arch, torch.as_tensor(output)).argmax(1).numpy() == y).mean())


def run_demo(outdir: Path, console: Console, lava_samples: int = LAVA_SAMPLES) -> dict:
    outdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for arch in (a.name for a in ARCHS.values() if a.demo_data):
        loaded = load_checkpoint(demo_checkpoint(arch))
        data = DEMO_DATA[ARCHS[arch].demo_data]
        x, y = data("test")
        with console.status(f"{arch}: exporting"):
            export_deployment(loaded, data("train")[0][:CALIBRATION_SAMPLES], outdir / arch)
            dep = load_deployment(outdir / arch)
        row = {}
        for backend in ("torch", "folded"):
            with console.status(f"{arch}: {backend} on {len(x)} test digits"):
                row[backend] = _accuracy(arch, simulate(dep.compiled, backend, x)[0], y)
        with console.status(f"{arch}: fixed point from the deployment's files on {len(x)} test digits"):
            fixed_out, fixed_counts = dep.simulate(x)
        row["fixed"] = _accuracy(arch, fixed_out, y)
        with console.status(f"{arch}: Lava CPU backend on {lava_samples} digits"):
            lava_out, lava_counts = dep.simulate(x[:lava_samples], lava_chip, lava_samples)
        table = Table(title=f"{arch}: spikes per layer on {lava_samples} test digits, fixed-point simulator vs Lava")
        for col in ("layer", "runs on", "fixed", "Lava", "per step equal"):
            table.add_column(col)
        equal = 0
        for name, c in lava_counts.items():
            same = np.array_equal(c, fixed_counts[name][:lava_samples])
            equal += same
            table.add_row(name, dep.placement(name), str(int(fixed_counts[name][:lava_samples].sum())),
                          str(int(c.sum())), "yes" if same else "[red]NO[/red]")
        console.print(table)
        out_diff = float(np.abs(lava_out - fixed_out[:lava_samples]).max())
        console.print(f"{arch}: accuracy on {len(x)} test digits: float {row['torch']:.2%}, folded {row['folded']:.2%}, "
                      f"fixed point {row['fixed']:.2%}; Lava == fixed point on {equal}/{len(lava_counts)} layers, "
                      f"outputs differ by at most {out_diff:.2g} (deployment in {outdir / arch})", soft_wrap=True)
        results[arch] = {**row, "lava_layers_equal": equal, "layers": len(lava_counts), "output_max_diff": out_diff}
    return results
