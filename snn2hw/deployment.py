"""The deployment directory's manifest, both ways (`build_manifest` writes it, `read_manifest` checks it), and
loading a deployment to run it from its files: `snn2hw simulate|energy DEPLOY_DIR`.

The files are the truth: loading reads the chip specs and integer arrays and the host ONNX files, which the
fixed-point simulator and Lava run alike, each checked against the SHA-256 the manifest records; no torch model is
built. Every other file is checked when something reads it (`graph.json` for the energy accounting, `source/` for a
recompile), and `verify_deployment` checks them all (`snn2hw inspect DEPLOY_DIR`). The source checkpoint and
calibration inputs (`source/`) stay for provenance and for what needs the float model (the torch and folded
backends, the ladder): `Deployment.compiled` recompiles them, deterministically, and checks the result against the
chip files.
"""
import datetime
import functools
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import __version__, ir
from .checkpoint import Loaded, load_model
from .compile import Compiled, compile_model
from .data import load_inputs, load_npy
from .models.zoo import NIR_ARCH
from .errors import UserError
from .files import jsonable
from .graph_json import graph_from_json
from .exporters.lava_spec import chip_segment_spec, spec_problem
from .exporters.onnx_host import MODEL_INPUT
from .ladder import run_in_batches, spiking_nodes
from .hardware_sims.loihi_formats import identity_kernel
from .hardware_sims.runner import (ChipSegment, OnnxHostSegment, RunRecord, fixed_chip, neuron_layers, run_segments,
                                   segments_runner)
from .netx_import import NetxNetwork, as_built, read_netx
from .passes.pipeline import RESIDUAL_FORMS, TCJA_STRATEGIES

FORMAT_VERSION = 5  # 2: file_sha256; 3: output tensor, spiking layers, graph.json, host neurons' spikes in the ONNX;
# 4: chip specs of format 2 (relay neurons, inputs through synapses, no injected currents or delays); 5: netx (biases
# of netx chains on netx's grid)
GRAPH_FILE = "graph.json"
NETX_KIND = "netx"  # a deployment of a lava-dl .net: the file itself is the chip segment
NETX_FILE = "chip/network.net"


# --------------------------------------------------------------------------------------------- writing


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _with_batch_axis(node) -> list:
    """The official output's shape with None where the samples go (second in TCJA's `[T, N, classes]`)."""
    axis = getattr(node, "batch_axis", 0)
    return [*node.shape[:axis], None, *node.shape[axis:]]


def source_copy(arch: str) -> str:
    """Where a deployment keeps its source: a NIR graph's file as it was given, a checkpoint as snn2hw saves it."""
    return "source/graph.nir" if arch == NIR_ARCH else "source/checkpoint.pt"


def build_manifest(loaded: Loaded, compiled: Compiled, segments: list[dict], calibration: np.ndarray,
                   files: dict[str, str], resources: dict) -> dict:
    graph = compiled.fixed
    first, last = graph.nodes[next(iter(graph.nodes))], graph.nodes[graph.output]
    return jsonable({
        "format_version": FORMAT_VERSION, "snn2hw_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": {"checkpoint": str(loaded.path), "sha256": sha256(loaded.path.read_bytes()), "arch": loaded.arch,
                   "options": loaded.options, "copy": source_copy(loaded.arch)},
        "target": "loihi2", "timesteps": graph.timesteps, "tcja": compiled.tcja, "netx": compiled.netx,
        "residual": compiled.residual, "residual_forms": compiled.residual_forms,
        "input": {"shape": [None, *graph.input_shape], "kind": first.kind,
                  "repeat_over_t": getattr(first, "repeat_over_t", False)},
        "output": {"shape": _with_batch_axis(last), "readout": getattr(last, "mode", None), "tensor": graph.output},
        "spiking_layers": spiking_nodes(graph),
        "calibration": {"samples": len(calibration), "file": "source/calibration.npy"},
        "graph": GRAPH_FILE, "passes": graph.notes, "segments": segments, "cuts": graph.cuts,
        "layers": graph.quant_layers,
        "loihi2": {"cores": resources["cores"], "chips": resources["chips"], "system": resources.get("system"),
                   "unplaced": [v["message"] for v in resources["violations"]]},
        "file_sha256": files,
    })


# --------------------------------------------------------------------------------------------- reading


def _field(file: Path, obj: dict, key: str, kind: type, where: str = ""):
    value = obj.get(key)
    if not isinstance(value, kind):
        raise UserError(f"{file}: '{where}{key}' is missing or not a {kind.__name__}.")
    return value


def _relative(file: Path, rel: str) -> str:
    if Path(rel).is_absolute() or ".." in Path(rel).parts or not rel:
        raise UserError(f"{file} names {rel!r}, which is not a path inside the deployment.")
    return rel


def _manifest_json(path: Path) -> tuple[Path, dict]:
    file = path / "manifest.json"
    if not file.is_file():
        raise UserError(f"{path} is not a deployment directory (no manifest.json).")
    try:
        manifest = json.loads(file.read_bytes())
    except (ValueError, RecursionError) as e:  # ValueError: bad JSON, bad UTF-8, an integer of 4300+ digits
        raise UserError(f"{file} is not valid JSON ({e.__class__.__name__}).") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{file} is not a format-{FORMAT_VERSION} snn2hw manifest (re-export with this snn2hw).")
    return file, manifest


def is_netx_deployment(path) -> bool:
    """Whether `path` is a deployment of a lava-dl `.net` (`export NET.net`), which the netx simulators run."""
    try:
        return json.loads((Path(path) / "manifest.json").read_bytes()).get("kind") == NETX_KIND
    except (OSError, ValueError, RecursionError, AttributeError):
        return False


def read_manifest(path) -> dict:
    """`path/manifest.json`, checked to have every entry that loading and running the deployment read, with its type
    (file names relative to the deployment, inside it)."""
    path = Path(path)
    file, manifest = _manifest_json(path)
    source = _field(file, manifest, "source", dict)
    for key in ("copy", "arch"):
        _field(file, source, key, str, "source.")
    _relative(file, source["copy"])
    _relative(file, _field(file, _field(file, manifest, "calibration", dict), "file", str, "calibration."))
    _relative(file, _field(file, manifest, "graph", str))
    if _field(file, manifest, "tcja", str) not in TCJA_STRATEGIES:
        raise UserError(f"{file}: 'tcja' is {manifest['tcja']!r}, not one of {', '.join(TCJA_STRATEGIES)}.")
    _field(file, manifest, "netx", bool)
    if _field(file, manifest, "residual", str) not in RESIDUAL_FORMS:
        raise UserError(f"{file}: 'residual' is {manifest['residual']!r}, not one of {', '.join(RESIDUAL_FORMS)}.")
    _field(file, _field(file, manifest, "output", dict), "tensor", str, "output.")
    inputs = _field(file, manifest, "input", dict)
    _field(file, inputs, "kind", str, "input.")
    if not all(isinstance(d, int) for d in _field(file, inputs, "shape", list, "input.")[1:]):
        raise UserError(f"{file}: 'input.shape' holds something that is not a size.")
    if not all(isinstance(n, str) for n in _field(file, manifest, "spiking_layers", list)):
        raise UserError(f"{file}: 'spiking_layers' holds something that is not a layer name.")
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
    for rel in (source["copy"], manifest["calibration"]["file"], manifest["graph"]):
        if rel not in hashes:
            raise UserError(f"{file}: {rel} has no entry in 'file_sha256'.")
    return manifest


def _file(path: Path, rel: str) -> Path:
    f = path / rel
    if not f.is_file():
        raise UserError(f"deployment {path} is missing {rel}.")
    return f


def read_verified(path, manifest: dict, rels) -> dict[str, bytes]:
    """The bytes of the files `rels` of a deployment, each checked against the SHA-256 its manifest
    (`read_manifest`) records: a file changed since the export is refused, naming it. What is run is read once and
    is what was checked."""
    path = Path(path)
    files = {}
    for rel in rels:
        data = _file(path, rel).read_bytes()
        if sha256(data) != manifest["file_sha256"][rel]:
            raise UserError(f"{path / rel} does not match the SHA-256 its manifest records (edited or corrupt).")
        files[rel] = data
    return files


def verify_deployment(path) -> dict:
    """Every file a deployment's manifest records is there with its SHA-256 → the manifest."""
    manifest = read_manifest(path)
    for rel in manifest["file_sha256"]:
        read_verified(path, manifest, [rel])
    return manifest


def _chip_segment(path: Path, entry: dict, files: dict[str, bytes]) -> ChipSegment:
    spec_file = path / entry["files"]["lava_spec"]
    try:
        spec = json.loads(files[entry["files"]["lava_spec"]])
        with np.load(io.BytesIO(files[entry["files"]["lava_arrays"]]), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:
        raise UserError(f"{spec_file.parent}/{entry['name']}: unreadable chip files ({type(e).__name__}).") from None
    problem = spec_problem(spec, arrays)
    if problem is None and spec["segment"] != entry["name"]:
        problem = f"it is segment {spec['segment']!r}, not {entry['name']!r}"
    if problem is not None:
        raise UserError(f"{spec_file}: {problem} (edited or corrupt).")
    return ChipSegment(entry["name"], spec, arrays)


def _host_segment(path: Path, entry: dict, files: dict[str, bytes]) -> OnnxHostSegment:
    try:
        return OnnxHostSegment(entry["name"], path / entry["files"]["onnx"], files[entry["files"]["onnx"]])
    except ValueError as e:
        raise UserError(f"{e}.") from None


def _check_dataflow(path: Path, manifest: dict, segments: list) -> None:
    """Every segment reads only what the model input and earlier segments produce, and the manifest's output and
    spiking layers are among what the segments produce."""
    produced = {MODEL_INPUT}
    for segment in segments:
        if isinstance(segment, ChipSegment):
            reads = [i["tensor"] for i in segment.spec["inputs"]]
            writes = [o["name"] for o in segment.spec["outputs"]] + neuron_layers(segment.spec)
        else:
            reads, writes = segment.session.input_names, segment.session.output_names
        missing = sorted(set(reads) - produced)
        if missing:
            raise UserError(f"{path}/manifest.json: segment {segment.name} reads {missing[0]}, which no earlier "
                            "segment produces (edited or corrupt).")
        produced |= set(writes)
    unknown = sorted({manifest["output"]["tensor"], *manifest["spiking_layers"]} - produced)
    if unknown:
        raise UserError(f"{path}/manifest.json: it names {unknown[0]} as an output or spiking layer, which no "
                        "segment produces (edited or corrupt).")


def _synapse_weight(node: dict, arrays: dict) -> np.ndarray:
    """A chip spec synapse's integer weights in the IR's layout; an identity's: its weight on the diagonal."""
    if node["op"] != "identity":
        return arrays[node["weight"]]
    kernel = identity_kernel(node["weight"], node["shape"][0])
    return kernel if len(node["shape"]) == 3 else kernel[:, :, 0, 0]


@dataclass
class Deployment:
    """A deployment directory, loaded: its manifest and its segments as the runners take them (chip specs with their
    integer arrays, host ONNX files), in execution order."""
    path: Path
    manifest: dict
    segments: list

    @property
    def output(self) -> str:
        return self.manifest["output"]["tensor"]

    @property
    def spiking_layers(self) -> list[str]:
        return self.manifest["spiking_layers"]

    @property
    def arch(self) -> str:
        return self.manifest["source"]["arch"]

    def run(self, x: np.ndarray, chip=fixed_chip, progress=None) -> tuple[torch.Tensor, RunRecord]:
        """The deployment's segments on inputs `x` `[N, ...]`, chip segments by the chip runner `chip`
        (`runner.fixed_chip` or `runner.lava_chip`) → (output as the source model returns it, RunRecord)."""
        return run_segments(self.segments, self.output, x, chip, progress)

    def simulate(self, x: np.ndarray, chip=fixed_chip, batch_size: int = 64, progress=None):
        """`run` over `x` in batches of `batch_size` → (outputs, {spiking layer: spike counts [N, T]})."""
        return run_in_batches(segments_runner(self.segments, self.output, chip, progress), self.spiking_layers, x,
                              batch_size)

    def placement(self, name: str) -> str:
        return next(s["placement"] for s in self.manifest["segments"] if name in s["nodes"])

    def load_inputs(self, path: Path, option: str) -> np.ndarray:
        """Inputs `[N, ...]` of this deployment from `.npy`, checked against its input shape (event counts where the
        model reads event frames)."""
        spec = self.manifest["input"]
        return load_npy(path, option, tuple(spec["shape"][1:]), events=spec["kind"] == "graded")

    @functools.cached_property
    def graphs(self) -> tuple[ir.Graph, ir.Graph]:
        """(source, deployed): the graphs' structure from `graph.json`, tensors shape-only except the chip synapses'
        weights, the integers of the chip files (what the energy accounting counts on)."""
        chip_nodes = [(n, s.arrays) for s in self.segments if isinstance(s, ChipSegment) for n in s.spec["nodes"]]
        weights = {n["name"]: _synapse_weight(n, arrays) for n, arrays in chip_nodes
                   if "weight" in n}  # checked at load (`spec_problem`)
        file = self.path / self.manifest["graph"]
        text = read_verified(self.path, self.manifest, [self.manifest["graph"]])[self.manifest["graph"]]
        try:
            data = json.loads(text)
            source, deployed = graph_from_json(data["source"]), graph_from_json(data["deployed"], weights)
            for node, _ in chip_nodes:
                if node["op"] == "identity":  # what the resource model reads: its form
                    deployed.nodes[node["name"]].quant = {k: node[k] for k in ("weight", "weight_exp")} | \
                        {"identity": True}
            same = [(s["name"], s["nodes"]) for s in deployed.segments] == \
                [(s["name"], s["nodes"]) for s in self.manifest["segments"]]
        except (ValueError, KeyError, TypeError, AttributeError, RuntimeError, RecursionError, IndexError) as e:
            raise UserError(f"{file} is not a graph this snn2hw wrote ({type(e).__name__}).") from None
        if not same:
            raise UserError(f"{file}: its segments are not the manifest's (edited or corrupt).")
        return source, deployed

    @functools.cached_property
    def source_model(self) -> tuple[Loaded, torch.Tensor]:
        """(the source checkpoint, the calibration inputs) from `source/`, checked against their hashes."""
        path, manifest = self.path, self.manifest
        read_verified(path, manifest, [manifest["source"]["copy"], manifest["calibration"]["file"]])
        source = manifest["source"]
        if source["arch"] == NIR_ARCH:  # a graph file records neither the step nor T it was exported with
            loaded = load_model(_file(path, source["copy"]), timesteps=source["options"]["timesteps"],
                                dt=source["options"]["dt"])
        else:
            loaded = load_model(_file(path, source["copy"]))
        calibration = load_inputs(_file(path, manifest["calibration"]["file"]), "calibration", loaded.model,
                                  loaded.arch)
        return loaded, torch.as_tensor(calibration)

    @functools.cached_property
    def compiled(self) -> Compiled:
        """The compiled graphs, rebuilt from `source/` (for the float rungs: the torch and folded backends, and the
        energy accounting's folded backend), checked to give exactly the chip files."""
        path, manifest = self.path, self.manifest
        loaded, calibration = self.source_model
        compiled = compile_model(loaded.model, loaded.arch, calibration, manifest["tcja"], manifest["residual"],
                                 manifest["netx"])
        layout = [(s["name"], s["placement"], s["nodes"]) for s in compiled.fixed.segments]
        if [(e["name"], e["placement"], e["nodes"]) for e in manifest["segments"]] != layout:
            raise UserError(f"{path}/manifest.json: its segments do not match what its source checkpoint compiles to.")
        for segment, entry, stored in zip(compiled.fixed.segments, manifest["segments"], self.segments):
            if segment["placement"] != "chip":
                continue
            spec, arrays = chip_segment_spec(compiled.fixed, segment)
            if stored.spec["nodes"] != json.loads(json.dumps(jsonable(spec["nodes"]))) \
                    or stored.arrays.keys() != arrays.keys() \
                    or not all(np.array_equal(stored.arrays[k], arrays[k]) for k in arrays):
                raise UserError(f"{path / entry['files']['lava_spec']}: the chip segment differs from what its "
                                "source checkpoint compiles to (edited or corrupt).")
        return compiled


def load_deployment(path) -> Deployment:
    """Read a deployment directory: the manifest checked, the segments' files read and checked against their hashes
    (no model is built)."""
    path = Path(path)
    manifest = read_manifest(path)
    read = [e["files"][role] for e in manifest["segments"] for role in ("lava_spec", "lava_arrays", "onnx")
            if role in e["files"]]
    files = read_verified(path, manifest, read)
    segments = [_chip_segment(path, e, files) if e["placement"] == "chip" else _host_segment(path, e, files)
                for e in manifest["segments"]]
    _check_dataflow(path, manifest, segments)
    return Deployment(path, manifest, segments)


# --------------------------------------------------------------------------------------------- a lava-dl .net


def build_netx_manifest(net: NetxNetwork, source: Path, timesteps: int, resources: dict, files: dict) -> dict:
    """The manifest of a `.net`'s deployment: the file as netx loads it, the netx arguments it runs with (T as the
    reset interval, `skip_layers`, `reset_offset`), its input and the Loihi 2 resources."""
    attrs = net.attributes
    return jsonable({
        "format_version": FORMAT_VERSION, "kind": NETX_KIND, "snn2hw_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": {"checkpoint": str(source), "sha256": files[NETX_FILE], "arch": "netx",  # the copy's bytes
                   "copy": NETX_FILE},
        "target": "loihi2", "timesteps": timesteps,
        "netx": {"skip_layers": int(attrs.get("skip_layers", 0)), "reset_offset": int(attrs.get("reset_offset", 0))},
        "input": {"shape": [None, *net.input_shape], "kind": net.input_kind},
        "loihi2": {"cores": resources["cores"], "chips": resources["chips"], "system": resources.get("system"),
                   "unplaced": [v["message"] for v in resources["violations"]]},
        "file_sha256": files})


def load_netx_deployment(path) -> tuple[NetxNetwork, int]:
    """A `.net`'s deployment, every file checked against its hash → (the network as netx builds it, T)."""
    path = Path(path)
    file, manifest = _manifest_json(path)
    hashes = _field(file, manifest, "file_sha256", dict)
    timesteps, args = _field(file, manifest, "timesteps", int), _field(file, manifest, "netx", dict)
    if NETX_FILE not in hashes or timesteps < 1 or not all(isinstance(args.get(k), int) and args[k] >= 0
                                                           for k in ("skip_layers", "reset_offset")):
        raise UserError(f"{file} is not the manifest of a .net deployment this snn2hw wrote (edited or corrupt).")
    read_verified(path, manifest, list(hashes))
    return as_built(read_netx(path / NETX_FILE), args["skip_layers"], args["reset_offset"]), timesteps
