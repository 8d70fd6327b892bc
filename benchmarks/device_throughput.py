"""The ladder's rungs on each device torch sees: samples per second of the float model and of the fixed-point
simulator (every host and chip node on the device, the neurons' state in integer tensors), and on a GPU, whether
the fixed-point outputs and every layer's spikes equal the CPU's array for array. Official-size GAC models with
seeded random weights; ImageNet only where a GPU runs it (224² on 2 CPU cores takes minutes per batch). Goal: the
fixed point at >= 500 CIFAR samples/s on one H200.

With no CUDA device the rows are the CPU's alone: the code path a GPU takes, minus the device."""
import torch

from snn2hw.device import resolve_device
from snn2hw.hardware_sims.runner import run_fixed

from .common import best_of, compiled

CASES = [("gac-msresnet18-cifar", 16, False), ("gac-msresnet18-imagenet", 8, True)]  # (arch, batch, GPU only)


def run() -> list[dict]:
    devices = [torch.device("cpu")] + ([resolve_device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for arch, batch, gpu_only in CASES:
        if gpu_only and len(devices) == 1:
            continue
        c, x = compiled(arch, batch)
        reference = run_fixed(c.fixed, x)
        for device in devices:
            model = c.model.to(device)
            x_on = x.to(device)

            def float_pass():
                with torch.no_grad():
                    model(x_on)
                if device.type == "cuda":
                    torch.cuda.synchronize()
            float_s = best_of(float_pass)
            fixed_s = best_of(lambda: run_fixed(c.fixed, x, device=device))
            out, act = run_fixed(c.fixed, x, device=device)
            equal = torch.equal(out.cpu(), reference[0]) and all(
                torch.equal(act.values[k].cpu(), v) for k, v in reference[1].values.items())
            rows.append({"arch": arch, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                         "batch": batch, "float_samples_per_s": round(batch / float_s, 1),
                         "fixed_samples_per_s": round(batch / fixed_s, 1),
                         "fixed_over_float": round(fixed_s / float_s, 2),
                         "equals_cpu": "-" if device.type == "cpu" else bool(equal)})
        c.model.to("cpu")
    return rows
