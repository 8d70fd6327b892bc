"""Reading a deployment directory back and running it: `snn2hw simulate DEPLOY_DIR --backend fixed|lava`.

The directory carries its source checkpoint and calibration inputs, so loading recompiles the same graph
(compilation is deterministic) and then checks it against the chip files: a deployment whose files no longer match
what its manifest says it was built from is refused, naming the file.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .compile import Compiled, compile_model
from .data import load_npy
from .errors import UserError
from .export import FORMAT_VERSION


@dataclass
class Deployment:
    path: Path
    manifest: dict
    compiled: Compiled


def _read_manifest(path: Path) -> dict:
    file = path / "manifest.json"
    if not file.is_file():
        raise UserError(f"{path} is not a deployment directory (no manifest.json).")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{file} is not valid JSON ({e.__class__.__name__}).") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{file} is not a format-{FORMAT_VERSION} snn2hw manifest.")
    for key in ("source", "segments", "calibration", "tcja"):
        if key not in manifest:
            raise UserError(f"{file} lacks the '{key}' entry.")
    return manifest


def _file(path: Path, rel: str) -> Path:
    f = path / rel
    if not f.is_file():
        raise UserError(f"deployment {path} is missing {rel}.")
    return f


def load_deployment(path) -> Deployment:
    from .exporters.lava_spec import chip_segment_spec

    path = Path(path)
    manifest = _read_manifest(path)
    loaded = load_checkpoint(_file(path, manifest["source"]["copy"]))
    shape = tuple(loaded.model.input_shape)
    calibration = load_npy(_file(path, manifest["calibration"]["file"]), "calibration", shape)
    compiled = compile_model(loaded.model, loaded.arch, torch.as_tensor(calibration), manifest["tcja"])
    segments = {s["name"]: s for s in compiled.fixed.segments}
    for entry in manifest["segments"]:
        if entry["name"] not in segments or segments[entry["name"]]["nodes"] != entry["nodes"]:
            raise UserError(f"{path}/manifest.json: segment {entry['name']} does not match its source checkpoint.")
        if entry["placement"] != "chip":
            _file(path, entry["files"]["onnx"])
            continue
        spec, arrays = chip_segment_spec(compiled.fixed, segments[entry["name"]])
        spec_file = _file(path, entry["files"]["lava_spec"])
        try:
            stored = json.loads(spec_file.read_text())
            with np.load(_file(path, entry["files"]["lava_arrays"]), allow_pickle=False) as f:
                stored_arrays = {k: f[k] for k in f.files}
        except Exception as e:
            raise UserError(f"{spec_file.parent}/{entry['name']}: unreadable chip files ({type(e).__name__}).") from None
        if stored.get("nodes") != json.loads(json.dumps(spec["nodes"])) or stored_arrays.keys() != arrays.keys() \
                or not all(np.array_equal(stored_arrays[k], arrays[k]) for k in arrays):
            raise UserError(f"{spec_file}: the chip segment differs from what its source checkpoint compiles to "
                            "(edited or corrupt).")
    return Deployment(path, manifest, compiled)


def _chip_inputs(spec: dict, values: dict) -> dict[str, np.ndarray]:
    """The integers the chip receives for each spec input, `[T, N, ...]` (as the fixed simulator makes them)."""
    inputs = {}
    for i in spec["inputs"]:
        v = values[i["tensor"]].double().numpy()
        factor = i["scale"] if i["payload"] == "current" else 2 ** i["frac_bits"]
        inputs[i["name"]] = np.rint(v * factor).astype(np.int64)
    return inputs


def _host_spikes(graph, segment: dict, values: dict) -> dict:
    """Spikes of the host's own neurons (the GAC encoder's), for the per-layer counts: the ONNX segment passes on
    only what later segments read, so these come from the same segment run in torch with them as extra outputs."""
    from . import ir
    from .exporters.onnx_host import host_segment_module

    lifs = tuple(n for n in segment["nodes"] if isinstance(graph.nodes[n], ir.LIF))
    if not lifs:
        return {}
    module = host_segment_module(graph, segment, extra_outputs=lifs)
    with torch.no_grad():
        outputs = module(*(values[n] for n in module.input_names))
    return {n: v for n, v in zip(module.output_names, outputs) if n in lifs}


def run_lava(dep: Deployment, x: np.ndarray, timeout: float, progress=None):
    """Host segments by onnxruntime, chip segments on Lava's CPU backend, in the manifest's order.
    → (output, {spiking layer: spikes [T, N, ...]}) with chip layers read from Lava."""
    from .exporters.lava_spec import chip_segment_spec
    from .exporters.onnx_host import MODEL_INPUT, run_host_segment_onnx
    from .lava_backend import run_chip_segment

    graph = dep.compiled.fixed
    segments = {s["name"]: s for s in graph.segments}
    values: dict[str, torch.Tensor] = {MODEL_INPUT: torch.as_tensor(x)}
    spikes = {}
    for entry in dep.manifest["segments"]:
        if progress:
            progress(f"{entry['name']} ({entry['placement']})")
        if entry["placement"] == "host":
            results = run_host_segment_onnx(dep.path / entry["files"]["onnx"],
                                            {k: v.numpy() for k, v in values.items()})
            spikes.update(_host_spikes(graph, segments[entry["name"]], values))
            values.update({k: torch.as_tensor(v) for k, v in results.items()})
            continue
        spec, arrays = chip_segment_spec(graph, segments[entry["name"]])
        out = run_chip_segment(spec, arrays, _chip_inputs(spec, values), spec["spiking_layers"], timeout)
        for o in spec["outputs"]:
            value = out[o["name"]].astype(np.float64)
            if o["kind"] == "accumulation":
                value = value / o["scale"]
                if o["bias"] is not None:
                    bias = arrays[o["bias"]]
                    value = value + bias.reshape(-1, *([1] * (value.ndim - 3)))
            values[o["name"]] = torch.as_tensor(value.astype(np.float32))
        spikes.update({k: torch.as_tensor(out[k].astype(np.float32)) for k in spec["spiking_layers"]})
    return values[graph.output].numpy(), spikes
