"""Lava vs the fixed-point simulator on official-size gac-msresnet18-cifar (random weights, BN statistics from the
inputs), spike for spike: `python -m benchmarks.lava_official [SAMPLES]`. Slow: Lava's Conv calls scipy once per
channel pair and step. Prints per-layer equality and the time ratio."""
import sys
import time

import numpy as np
import torch
from torch import nn

from snn2hw.compile import compile_model
from snn2hw.exporters.lava_spec import chip_segment_spec
from snn2hw.hardware_sims.fixed_point import run_fixed
from snn2hw.lava_backend import run_chip_segment
from snn2hw.models.zoo import build_model


def main(samples: int = 2, timeout: int = 7200) -> dict:
    torch.manual_seed(0)
    x = torch.randn(max(samples, 4), 3, 32, 32)
    model = build_model("gac-msresnet18-cifar")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()
    compiled = compile_model(model, "gac-msresnet18-cifar", x)
    start = time.perf_counter()
    _, act = run_fixed(compiled.fixed, x[:samples])
    fixed_s = time.perf_counter() - start
    result = {"samples": samples, "fixed_seconds": round(fixed_s, 2), "layers": {}}
    for seg in (s for s in compiled.fixed.segments if s["placement"] == "chip"):
        spec, arrays = chip_segment_spec(compiled.fixed, seg)
        inputs = {i["name"]: act.cut_inputs[(i["tensor"], i["to"])] for i in spec["inputs"]}
        start = time.perf_counter()
        out = run_chip_segment(spec, arrays, inputs, spec["spiking_layers"], timeout=timeout)
        result["lava_seconds"] = round(time.perf_counter() - start, 1)
        for layer in spec["spiking_layers"]:
            same = bool(np.array_equal(out[layer].astype(bool), act.values[layer].numpy().astype(bool)))
            result["layers"][layer] = {"equal": same, "spikes": int(out[layer].sum())}
    result["all_equal"] = all(v["equal"] for v in result["layers"].values())
    result["lava_over_fixed"] = round(result["lava_seconds"] / fixed_s, 1)
    print(result)
    return result


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
