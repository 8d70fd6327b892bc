"""`snn2hw demo`: the bundled demo models, end to end, as far as the pipeline goes."""
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from .activity import run_model
from .checkpoint import load_checkpoint
from .data import DEMO_DATA
from .models.zoo import ARCHS, class_scores


def demo_checkpoint(arch: str) -> Path:
    from . import models

    return Path(models.__file__).parent / "checkpoints" / f"{arch}.pt"


def run_demo(outdir: Path, console: Console) -> dict:
    from .cli import spike_table

    outdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for arch in (a.name for a in ARCHS.values() if a.demo_data):
        loaded = load_checkpoint(demo_checkpoint(arch))
        x, y = DEMO_DATA[ARCHS[arch].demo_data]("test")
        with console.status(f"{arch}: float model on {len(x)} test digits"):
            output, counts = run_model(loaded.model, x)
        acc = float((class_scores(arch, torch.as_tensor(output)).argmax(1).numpy() == y).mean())
        np.savez(outdir / f"{arch}-float.npz", output=output, **{f"spike_counts/{k}": v for k, v in counts.items()})
        console.print(spike_table(f"{arch}: float model, {len(x)} test digits, accuracy {acc:.2%}", counts))
        results[arch] = {"accuracy": acc, "samples": len(x)}
    console.print(f"results in {outdir}/")
    return results
