"""What every benchmark needs: the models and inputs they run on, and timing that survives a noisy machine.

Timings are the best of a few repeats, and the things a ratio compares are timed alternately in the same run, so
a slow patch of the machine hits both sides of the ratio."""
import time

import numpy as np
import torch
from torch import nn

from snn2hw.checkpoint import load_checkpoint
from snn2hw.compile import compile_model
from snn2hw.demo import demo_checkpoint
from snn2hw.models.zoo import ARCHS, build_model

TINY = ("tcja-tiny", "gac-msresnet-tiny")
CALIBRATION = 32  # samples for the benchmarked compiles (export benchmarks state their own)


def model_and_inputs(arch: str, samples: int, **options) -> tuple[nn.Module, torch.Tensor]:
    """The demo models with their trained weights on real test digits; any other zoo model with seeded random
    weights, BatchNorm statistics measured on its (random, seeded) inputs so activity is realistic, not saturated."""
    if arch in TINY and not options:
        from snn2hw.data import DEMO_DATA
        x, _ = DEMO_DATA[ARCHS[arch].demo_data]("test")
        return load_checkpoint(demo_checkpoint(arch)).model.eval(), torch.as_tensor(x[:samples])
    torch.manual_seed(0)
    model = build_model(arch, **options)
    # TCJA reads DVS event counts per pixel and frame (sparse integers), the others images in [0, 1)
    x = torch.poisson(torch.full((samples, *model.input_shape), 0.1)) if ARCHS[arch].family == "tcja" else \
        torch.rand(samples, *model.input_shape)
    with_bn_statistics(model, x[:8])
    return model, x


def with_bn_statistics(model: nn.Module, x: torch.Tensor) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batch
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def compiled(arch: str, samples: int, residual: str = "auto", **options):
    """`arch` (with zoo `options`) compiled as `snn2hw` does (`--residual`), and `samples` inputs."""
    model, x = model_and_inputs(arch, max(samples, CALIBRATION), **options)
    return compile_model(model, arch, x[:CALIBRATION], residual=residual), x[:samples]


def best_of(fn, repeats: int = 3) -> float:
    """Seconds: the fastest of `repeats` calls (after one warm-up call)."""
    return alternately({"fn": fn}, repeats)["fn"]


def alternately(fns: dict, repeats: int = 3) -> dict[str, float]:
    """Seconds per function: each is called once to warm up, then all in turn `repeats` times; the fastest."""
    for fn in fns.values():
        fn()
    best = {k: np.inf for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - start)
    return best
