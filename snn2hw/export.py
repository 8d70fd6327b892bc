"""`snn2hw export`: a trained checkpoint → a deployment directory, written atomically.

    manifest.json        format version, source, T, segments in execution order with their files, cuts,
                         per-layer quantization parameters and latencies, input/output specs, snn2hw version,
                         and the SHA-256 of every file below but report.md
    chip/<seg>.json/.npz the exact Lava form of each chip segment (exporters/lava_spec.py)
    chip/<seg>.nir       each chip segment as a NIR graph (float weights; Loihi integers in metadata)
    chip/<seg>.net       lava-dl netx HDF5, where the segment is a plain chain (netx cannot express branches)
    host/<seg>.onnx      each host segment
    source/              the checkpoint (weights only, with its arch) and the calibration inputs, so every
                         backend can rebuild the same compiled graph and check it against the chip files
    report.md            what was folded, quantized and cut, and why
"""
import datetime
import hashlib
import json
import math
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import __version__, ir
from .checkpoint import Loaded, save_checkpoint
from .compile import Compiled, compile_model
from .errors import UserError

FORMAT_VERSION = 2  # 2: file_sha256


def _jsonable(value):
    """JSON for the manifest: numpy scalars to Python, infinities (a lossless SQNR) to null."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_chip(compiled: Compiled, segment: dict, chip_dir: Path) -> dict:
    from .exporters.lava_spec import chip_segment_spec
    from .exporters.netx_export import sequential_problem, write_netx
    from .exporters.nir_export import chip_segment_to_nir, write_nir

    spec, arrays = chip_segment_spec(compiled.fixed, segment)
    name = segment["name"]
    (chip_dir / f"{name}.json").write_text(json.dumps(_jsonable(spec), indent=1))
    np.savez(chip_dir / f"{name}.npz", **arrays)
    write_nir(chip_dir / f"{name}.nir", chip_segment_to_nir(compiled.folded, compiled.fixed, segment))
    files = {"lava_spec": f"chip/{name}.json", "lava_arrays": f"chip/{name}.npz", "nir": f"chip/{name}.nir"}
    netx = {"written": False, "why_not": sequential_problem(spec)}
    if netx["why_not"] is None:
        written = write_netx(spec, arrays, chip_dir / f"{name}.net")
        files["netx"] = f"chip/{name}.net"
        netx = {"written": True, "bit_exact": written["bit_exact"], "load": written["load"],
                "inexact_layers": [layer["neuron"] for layer in written["layers"] if not layer["bit_exact"]]}
    return {"files": files, "latency": max(n["depth"] for n in spec["nodes"]), "steps": spec["steps"],
            "inputs": [i["name"] for i in spec["inputs"]], "outputs": [o["name"] for o in spec["outputs"]],
            "netx": netx}


def _write_host(compiled: Compiled, segment: dict, host_dir: Path) -> dict:
    from .exporters.onnx_host import PINNED_OPSET, export_host_segment

    path = host_dir / f"{segment['name']}.onnx"
    export_host_segment(compiled.fixed, segment, path)
    return {"files": {"onnx": f"host/{path.name}"}, "opset": PINNED_OPSET}


def _counts(graph: ir.Graph, segment: dict) -> dict:
    nodes = [graph.nodes[n] for n in segment["nodes"]]
    return {"layers": len(nodes),
            "neurons": sum(math.prod(n.shape) for n in nodes if isinstance(n, ir.LIF)),
            "synapse_weights": sum(n.weight.numel() for n in nodes if isinstance(n, (ir.Conv2d, ir.Linear)))}


def _with_batch_axis(node) -> list:
    """The official output's shape with None where the samples go (second in TCJA's `[T, N, classes]`)."""
    axis = getattr(node, "batch_axis", 0)
    return [*node.shape[:axis], None, *node.shape[axis:]]


def build_manifest(loaded: Loaded, compiled: Compiled, segments: list[dict], calibration: np.ndarray,
                   files: dict[str, str]) -> dict:
    graph = compiled.fixed
    first, last = graph.nodes[next(iter(graph.nodes))], graph.nodes[graph.output]
    return _jsonable({
        "format_version": FORMAT_VERSION, "snn2hw_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": {"checkpoint": str(loaded.path), "sha256": _sha256(loaded.path), "arch": loaded.arch,
                   "options": loaded.options, "copy": "source/checkpoint.pt"},
        "target": "loihi2", "timesteps": graph.timesteps, "tcja": compiled.tcja,
        "input": {"shape": [None, *graph.input_shape], "kind": first.kind,
                  "repeat_over_t": getattr(first, "repeat_over_t", False)},
        "output": {"shape": _with_batch_axis(last), "readout": getattr(last, "mode", None)},
        "calibration": {"samples": len(calibration), "file": "source/calibration.npy"},
        "passes": graph.notes, "segments": segments, "cuts": graph.cuts, "layers": graph.quant_report,
        "file_sha256": files,
    })


def export_deployment(loaded: Loaded, calibration: np.ndarray, outdir: Path, tcja: str = "host",
                      progress=None) -> dict:
    """Compile and write the deployment directory; on any failure nothing is left at `outdir` (an earlier
    deployment there stays as it was)."""
    step = progress or (lambda _: None)
    step("compiling")
    compiled = compile_model(loaded.model, loaded.arch, torch.as_tensor(calibration), tcja)
    outdir = Path(outdir)
    if outdir.exists() and not (outdir / "manifest.json").is_file():
        raise UserError(f"-o {outdir} exists and is not a deployment directory; refusing to replace it.")
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = outdir.parent / f".{outdir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for sub in ("chip", "host", "source"):
            (tmp / sub).mkdir(parents=True)
        save_checkpoint(tmp / "source" / "checkpoint.pt", loaded.model, loaded.arch, loaded.options)
        np.save(tmp / "source" / "calibration.npy", calibration)
        segments = []
        for segment in compiled.fixed.segments:
            step(f"writing {segment['name']}")
            write = _write_chip if segment["placement"] == "chip" else _write_host
            entry = write(compiled, segment, tmp / segment["placement"])
            segments.append({"name": segment["name"], "placement": segment["placement"],
                             "nodes": segment["nodes"], **_counts(compiled.fixed, segment), **entry})
        files = {p.relative_to(tmp).as_posix(): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = build_manifest(loaded, compiled, segments, calibration, files)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        from .report import export_report
        (tmp / "report.md").write_text(export_report(manifest, compiled))
        _replace(tmp, outdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


@contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM until the block is done (the CLI turns them into exceptions): between the two
    renames of `_replace` an exception would leave no deployment at the path, and the old one under a hidden name."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _replace(tmp: Path, outdir: Path) -> None:
    """Swap the finished directory in: the old one is moved aside first and removed only after the rename."""
    old = outdir.parent / f".{outdir.name}.old-{os.getpid()}"
    with _signals_deferred():
        if outdir.exists():
            outdir.rename(old)
        try:
            tmp.rename(outdir)
        except BaseException:
            if old.exists():
                old.rename(outdir)
            raise
    shutil.rmtree(old, ignore_errors=True)  # the swap is done: removing the old copy may be interrupted
