"""Float (PyTorch) forward time per sample of the zoo models, batch 1 vs batched, measured in one run.

The float forward is the reference every other backend is compared against (issue: fixed point at most 3x it).
"""
import time

import torch

from snn2hw.models.zoo import build_model

CASES = [("tcja-tiny", 64), ("gac-msresnet-tiny", 64), ("gac-msresnet18-cifar", 8)]
REPEATS = 3


def _per_sample_seconds(model, batch: int) -> float:
    x = torch.rand(batch, *model.input_shape)
    with torch.no_grad():
        model(x)  # warm-up: first call allocates
        best = float("inf")
        for _ in range(REPEATS):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return best / batch


def run() -> list[dict]:
    rows = []
    for arch, batch in CASES:
        torch.manual_seed(0)
        model = build_model(arch)
        single = _per_sample_seconds(model, 1)
        batched = _per_sample_seconds(model, batch)
        rows.append({"arch": arch, "batch": batch, "ms_per_sample_batch1": round(single * 1e3, 3),
                     "ms_per_sample_batched": round(batched * 1e3, 3), "batching_speedup": round(single / batched, 2)})
    return rows
