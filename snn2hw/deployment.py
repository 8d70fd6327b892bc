"""Reading a deployment directory back and running it: `snn2hw simulate DEPLOY_DIR --backend fixed|lava`.

The directory carries its source checkpoint and calibration inputs, so loading recompiles the same graph
(compilation is deterministic) and then checks it against the chip files: a deployment whose files no longer match
what its manifest says it was built from is refused, naming the file.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .compile import TCJA_STRATEGIES, Compiled, compile_model
from .data import load_inputs
from .errors import UserError
from .export import FORMAT_VERSION
from .lava_backend import LavaLimits, run_chip_segment


@dataclass
class Deployment:
    path: Path
    manifest: dict
    compiled: Compiled


def _field(file: Path, obj: dict, key: str, kind: type, where: str = ""):
    value = obj.get(key)
    if not isinstance(value, kind):
        raise UserError(f"{file}: '{where}{key}' is missing or not a {kind.__name__}.")
    return value


def _relative(file: Path, rel: str) -> str:
    if Path(rel).is_absolute() or ".." in Path(rel).parts or not rel:
        raise UserError(f"{file} names {rel!r}, which is not a path inside the deployment.")
    return rel


def read_manifest(path) -> dict:
    """`path/manifest.json`, checked to have every entry that loading and running the deployment read, with its type
    (file names relative to the deployment, inside it)."""
    path = Path(path)
    file = path / "manifest.json"
    if not file.is_file():
        raise UserError(f"{path} is not a deployment directory (no manifest.json).")
    try:
        manifest = json.loads(file.read_bytes())
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, an integer of 4300+ digits
        raise UserError(f"{file} is not valid JSON ({e.__class__.__name__}).") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{file} is not a format-{FORMAT_VERSION} snn2hw manifest (re-export with this snn2hw).")
    source = _field(file, manifest, "source", dict)
    for key in ("copy", "arch"):
        _field(file, source, key, str, "source.")
    _relative(file, source["copy"])
    _relative(file, _field(file, _field(file, manifest, "calibration", dict), "file", str, "calibration."))
    if _field(file, manifest, "tcja", str) not in TCJA_STRATEGIES:
        raise UserError(f"{file}: 'tcja' is {manifest['tcja']!r}, not one of {', '.join(TCJA_STRATEGIES)}.")
    hashes = _field(file, manifest, "file_sha256", dict)
    for rel, digest in hashes.items():
        if not isinstance(digest, str):
            raise UserError(f"{file}: 'file_sha256.{rel}' is not a string.")
        _relative(file, rel)
    segments = _field(file, manifest, "segments", list)
    for i, entry in enumerate(segments):
        if not isinstance(entry, dict):
            raise UserError(f"{file}: 'segments[{i}]' is not an object.")
        where = f"segments[{i}]."
        _field(file, entry, "name", str, where)
        if _field(file, entry, "placement", str, where) not in ("host", "chip"):
            raise UserError(f"{file}: '{where}placement' is {entry['placement']!r}, not 'host' or 'chip'.")
        if not all(isinstance(n, str) for n in _field(file, entry, "nodes", list, where)):
            raise UserError(f"{file}: '{where}nodes' holds something that is not a node name.")
        files = _field(file, entry, "files", dict, where)
        for role in ("onnx",) if entry["placement"] == "host" else ("lava_spec", "lava_arrays", "nir"):
            _field(file, files, role, str, f"{where}files.")
        for rel in files.values():
            if not isinstance(rel, str) or _relative(file, rel) not in hashes:
                raise UserError(f"{file}: '{where}files' names {rel!r}, which has no entry in 'file_sha256'.")
    for rel in (source["copy"], manifest["calibration"]["file"]):
        if rel not in hashes:
            raise UserError(f"{file}: {rel} has no entry in 'file_sha256'.")
    return manifest


def _file(path: Path, rel: str) -> Path:
    f = path / rel
    if not f.is_file():
        raise UserError(f"deployment {path} is missing {rel}.")
    return f


def verify_files(path, manifest: dict) -> None:
    """Every file the manifest records (`read_manifest`) is there with the recorded SHA-256: catches any change to
    the files that loading does not otherwise check (NIR, netx, ONNX) as well as to those it recompiles."""
    path = Path(path)
    for rel, digest in manifest["file_sha256"].items():
        if hashlib.sha256(_file(path, rel).read_bytes()).hexdigest() != digest:
            raise UserError(f"{path / rel} does not match the SHA-256 its manifest records (edited or corrupt).")


def load_deployment(path) -> Deployment:
    from .exporters.lava_spec import chip_segment_spec

    path = Path(path)
    manifest = read_manifest(path)
    verify_files(path, manifest)
    loaded = load_checkpoint(_file(path, manifest["source"]["copy"]))
    calibration = load_inputs(_file(path, manifest["calibration"]["file"]), "calibration", loaded.model, loaded.arch)
    compiled = compile_model(loaded.model, loaded.arch, torch.as_tensor(calibration), manifest["tcja"])
    segments = {s["name"]: s for s in compiled.fixed.segments}
    layout = [(s["name"], s["placement"], s["nodes"]) for s in segments.values()]
    if [(e["name"], e["placement"], e["nodes"]) for e in manifest["segments"]] != layout:
        raise UserError(f"{path}/manifest.json: its segments do not match what its source checkpoint compiles to.")
    for entry in manifest["segments"]:
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


def run_lava(dep: Deployment, x: np.ndarray, limits: LavaLimits = LavaLimits(), progress=None):
    """Host segments by onnxruntime, chip segments on Lava's CPU backend, in the manifest's order.
    → (output, {spiking layer: spikes [T, N, ...]}) with chip layers read from Lava. `limits`: a `LavaLimits` for
    every chip segment's run."""
    from .exporters.lava_spec import chip_segment_spec
    from .exporters.onnx_host import MODEL_INPUT, run_host_segment_onnx

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
        out = run_chip_segment(spec, arrays, _chip_inputs(spec, values), spec["spiking_layers"], limits.timeout_s,
                               limits.memory_bytes)
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
