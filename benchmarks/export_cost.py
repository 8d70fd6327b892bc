"""`snn2hw export` time and peak memory at official size (goal for gac-msresnet34-imagenet on a 2-core machine:
under 30 s and under 4 GB). Each export runs as the user runs it, a CLI subprocess, on a checkpoint with seeded
random weights (BatchNorm statistics from the inputs) and random calibration inputs; peak memory is the
subprocess's maximum resident set."""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from snn2hw.checkpoint import save_checkpoint

from .common import model_and_inputs

# (arch, calibration samples, export options): two sizes for the ImageNet-34 separate the fixed cost from the
# per-sample cost; TCJA with its gates folded runs the calibration set through the float graph twice (gate means,
# then quantization), in batches, so its peak memory should not grow with the samples either.
CASES = [("gac-msresnet18-cifar", 16, ()), ("gac-msresnet34-imagenet", 4, ()), ("gac-msresnet34-imagenet", 16, ()),
         ("tcja-cifar10dvs", 4, ("--tcja", "fold")), ("tcja-cifar10dvs", 16, ("--tcja", "fold"))]


# The export runs under a fresh, small interpreter that reports its child's peak RSS: a child forked straight from
# this process would start with this process's resident pages, and ru_maxrss keeps that high-water mark across exec.
_LAUNCHER = """import os, sys
pid = os.spawnv(os.P_NOWAIT, sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)"""


def _export(checkpoint: Path, calibration: Path, out: Path, options=()) -> tuple[float, int]:
    """→ (wall seconds, peak RSS bytes) of one CLI export (on Hala Point: the ImageNet models need more chips than the
    default Kapoho Point has)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, "-m", "snn2hw.cli", "export", str(checkpoint),
                           "--target", "loihi", "-o", str(out), "--calibration", str(calibration),
                           "--system", "halapoint", *options],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    code, peak_kb = map(int, done.stdout.split()[-2:])
    if code != 0:
        raise RuntimeError(f"export of {checkpoint} failed with exit code {code}: {done.stderr[-2000:]}")
    return wall, peak_kb * 1024  # Linux reports kilobytes


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="snn2hw-bench-") as tmp:
        tmp = Path(tmp)
        for arch, samples, options in CASES:
            model, x = model_and_inputs(arch, samples)
            save_checkpoint(tmp / f"{arch}.pt", model, arch, {})
            np.save(tmp / f"{arch}.calibration.npy", x.numpy())
            del model
            wall, peak = _export(tmp / f"{arch}.pt", tmp / f"{arch}.calibration.npy", tmp / arch, options)
            size = sum(f.stat().st_size for f in (tmp / arch).rglob("*") if f.is_file())
            rows.append({"arch": arch, "options": " ".join(options), "calibration_samples": samples, "wall_s": round(wall, 1),
                         "peak_rss_gb": round(peak / 2 ** 30, 2), "deployment_mb": round(size / 2 ** 20)})
    return rows
