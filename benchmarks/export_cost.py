"""`snn2hw export` time and peak memory at official size (goal for gac-msresnet34-imagenet on a 2-core machine:
under 30 s and under 4 GB). Each export runs as the user runs it, a CLI subprocess, on a checkpoint with seeded
random weights (BatchNorm statistics from the inputs) and CALIBRATION_SAMPLES random calibration inputs; peak
memory is the subprocess's maximum resident set."""
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from snn2hw.checkpoint import save_checkpoint

from .common import model_and_inputs

CASES = ["gac-msresnet18-cifar", "gac-msresnet34-imagenet"]
CALIBRATION_SAMPLES = 16


def _export(checkpoint: Path, calibration: Path, out: Path) -> tuple[float, int]:
    """→ (wall seconds, peak RSS bytes) of one CLI export."""
    start = time.perf_counter()
    pid = os.spawnv(os.P_NOWAIT, sys.executable, [sys.executable, "-m", "snn2hw.cli", "export", str(checkpoint),
                                                  "--target", "loihi", "-o", str(out),
                                                  "--calibration", str(calibration)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"export of {checkpoint} failed with exit status {status}")
    return wall, usage.ru_maxrss * 1024  # Linux reports kilobytes


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="snn2hw-bench-") as tmp:
        tmp = Path(tmp)
        for arch in CASES:
            model, x = model_and_inputs(arch, CALIBRATION_SAMPLES)
            save_checkpoint(tmp / f"{arch}.pt", model, arch, {})
            np.save(tmp / f"{arch}.calibration.npy", x.numpy())
            del model
            wall, peak = _export(tmp / f"{arch}.pt", tmp / f"{arch}.calibration.npy", tmp / arch)
            size = sum(f.stat().st_size for f in (tmp / arch).rglob("*") if f.is_file())
            rows.append({"arch": arch, "calibration_samples": CALIBRATION_SAMPLES, "wall_s": round(wall, 1),
                         "peak_rss_gb": round(peak / 2 ** 30, 2), "deployment_mb": round(size / 2 ** 20)})
    return rows
