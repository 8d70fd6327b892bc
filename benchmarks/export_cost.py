"""`snn2hw export` time and peak memory at official size (goal for gac-msresnet34-imagenet on a 2-core machine:
under 30 s and under 4 GB). Each export runs as the user runs it, a CLI subprocess, on a checkpoint with seeded
random weights (BatchNorm statistics from the inputs) and random calibration inputs; peak memory is the
subprocess's maximum resident set."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from snn2hw.checkpoint import save_checkpoint

from .common import model_and_inputs

# (arch, calibration samples): two sizes for the ImageNet-34 separate the fixed cost from the per-sample cost
CASES = [("gac-msresnet18-cifar", 16), ("gac-msresnet34-imagenet", 4), ("gac-msresnet34-imagenet", 16)]


def _export(checkpoint: Path, calibration: Path, out: Path) -> tuple[float, int]:
    """→ (wall seconds, peak RSS bytes) of one CLI export."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "snn2hw.cli", "export", str(checkpoint), "--target", "loihi",
                             "-o", str(out), "--calibration", str(calibration)], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)  # wait4, not proc.wait: it also returns the child's peak memory
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"export of {checkpoint} failed with exit code {proc.returncode}")
    return wall, usage.ru_maxrss * 1024  # Linux reports kilobytes


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="snn2hw-bench-") as tmp:
        tmp = Path(tmp)
        for arch, samples in CASES:
            model, x = model_and_inputs(arch, samples)
            save_checkpoint(tmp / f"{arch}.pt", model, arch, {})
            np.save(tmp / f"{arch}.calibration.npy", x.numpy())
            del model
            wall, peak = _export(tmp / f"{arch}.pt", tmp / f"{arch}.calibration.npy", tmp / arch)
            size = sum(f.stat().st_size for f in (tmp / arch).rglob("*") if f.is_file())
            rows.append({"arch": arch, "calibration_samples": samples, "wall_s": round(wall, 1),
                         "peak_rss_gb": round(peak / 2 ** 30, 2), "deployment_mb": round(size / 2 ** 20)})
    return rows
