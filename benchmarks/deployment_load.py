"""Loading a deployment and running 1 sample in fixed point from it, at official size (goal: loading at most 10 % of
the export time and at least 5× faster than rebuilding the deployment from its `source/`, as `simulate DEPLOY_DIR`
did before the files became the artifact).

Per arch, in one run: the export (CLI subprocess, as `export_cost` runs it), then alternately
  load:       `load_deployment` (manifest; the chip specs, integer arrays and ONNX files read and checked against
              their SHA-256; files the run does not read are not read);
  files:      the same load + 1 sample;
  rebuild:    `Deployment.compiled` alone (the checkpoint and calibration inputs read and checked, the whole
              pipeline, the check against the chip files): loading as it was;
  recompile:  load + rebuild + 1 sample through the recompiled graph (`run_fixed`).
Both give the same numbers: host segments by onnxruntime from the files and by torch after a recompile agree to float
rounding (max |Δ| of the output in the table), and the spikes were equal in every run seen."""
import tempfile
import time
from pathlib import Path

import numpy as np

from snn2hw.checkpoint import save_checkpoint
from snn2hw.deployment import load_deployment
from snn2hw.hardware_sims.runner import run_fixed

from .common import model_and_inputs
from .export_cost import _export

CASES = [("gac-msresnet18-cifar", 16), ("gac-msresnet34-imagenet", 4)]  # (arch, calibration samples)


def _from_files(path: Path, x):
    dep = load_deployment(path)
    return dep.run(x)[0]


def _recompiling(path: Path, x):
    dep = load_deployment(path)
    return run_fixed(dep.compiled.fixed, x)[0]


def _rebuild(path: Path, _x):
    dep = load_deployment(path)
    start = time.perf_counter()
    dep.compiled
    return time.perf_counter() - start


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="snn2hw-bench-") as tmp:
        tmp = Path(tmp)
        for arch, samples in CASES:
            model, x = model_and_inputs(arch, samples)
            save_checkpoint(tmp / f"{arch}.pt", model, arch, {})
            np.save(tmp / f"{arch}.calibration.npy", x.numpy())
            del model
            export_s, _ = _export(tmp / f"{arch}.pt", tmp / f"{arch}.calibration.npy", tmp / arch)
            one = x[:1]
            delta = float((_from_files(tmp / arch, one) - _recompiling(tmp / arch, one)).abs().max())
            times = {"files": [], "recompile": [], "load": [], "rebuild": []}
            for _ in range(2):  # alternately, so a slow patch of the machine hits both
                for key, fn in (("files", _from_files), ("recompile", _recompiling),
                                ("load", lambda p, _x: load_deployment(p))):
                    start = time.perf_counter()
                    fn(tmp / arch, one)
                    times[key].append(time.perf_counter() - start)
                times["rebuild"].append(_rebuild(tmp / arch, one))
            best = {k: min(v) for k, v in times.items()}
            rows.append({"arch": arch, "export_s": round(export_s, 1), "load_s": round(best["load"], 2),
                         "rebuild_s": round(best["rebuild"], 2),
                         "rebuild / load": round(best["rebuild"] / best["load"], 1),
                         "load_and_1_sample_s": round(best["files"], 2),
                         "recompile_and_1_sample_s": round(best["recompile"], 2),
                         "load / export": round(best["load"] / export_s, 3),
                         "recompile / files": round(best["recompile"] / best["files"], 1),
                         "output max |Δ|": f"{delta:.1g}"})
    return rows
