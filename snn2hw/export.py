"""`snn2hw export`: a trained checkpoint → a deployment directory, written atomically.

    manifest.json        format version, source, T, segments in execution order with their files, cuts,
                         per-layer quantization parameters and latencies, input/output specs, snn2hw version,
                         and the SHA-256 of every file below but report.md
    chip/<seg>.json/.npz the exact Lava form of each chip segment (exporters/lava_spec.py)
    chip/<seg>.nir       each chip segment as a NIR graph (float weights; Loihi integers in metadata)
    chip/<seg>.net       lava-dl netx HDF5, where the segment is a plain chain (netx cannot express branches) whose
                         biases are on netx's grid (`--netx` puts them there): always spike for spike the chip spec
    host/<seg>.onnx      each host segment (with the spikes of its own neurons as extra outputs)
    graph.json           the structure of the source and deployed graphs, for the energy accounting (graph_json.py)
    source/              the checkpoint (weights only, with its arch; a NIR graph: its file as given) and the
                         calibration inputs: provenance, and
                         what the float rungs rebuild the compiled graph from (checked against the chip files)
    report.md            what was folded, quantized and cut, and why
"""
import json
import math
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from . import ir
from .checkpoint import Loaded, save_checkpoint
from .compile import Compiled, compile_model
from .deployment import GRAPH_FILE, NETX_FILE, build_manifest, build_netx_manifest, sha256, source_copy
from .energy import DEFAULT_SYSTEM, check_system, chip_model, load_preset, loihi_resources
from .errors import UserError
from .exporters.lava_spec import chip_segment_spec
from .exporters.loihi2_evidence import EVIDENCE, hardware_problem, spec_constructs
from .exporters.netx_export import off_grid_layers, sequential_problem, write_netx
from .exporters.nir_export import chip_segment_to_nir, write_nir
from .exporters.onnx_host import PINNED_OPSET, export_host_segment
from .files import jsonable
from .graph_json import graph_to_json
from .hardware_sims import loihi_formats as fmt
from .hardware_sims.loihi_formats import identity_as_conv
from .models.zoo import NIR_ARCH
from .netx_import import NetxNetwork, netx_graph
from .passes.quantize import A_SAFE, weight_summary
from .passes.residual import residual_terms

def _chip_specs(compiled: Compiled) -> dict[str, tuple[dict, dict]]:
    """Every chip segment's spec and arrays, refused (before anything is written) where one uses a construct no
    public Loihi 2 run shows (`loihi2_evidence.hardware_problem`)."""
    specs = {s["name"]: chip_segment_spec(compiled.fixed, s) for s in compiled.fixed.segments
             if s["placement"] == "chip"}
    for spec, _ in specs.values():
        problem = hardware_problem(spec)
        if problem is not None:
            raise UserError(f"{problem[0].upper()}{problem[1:]}; nothing was written.")
    return specs


def _write_chip(compiled: Compiled, segment: dict, chip_dir: Path, spec: dict, arrays: dict) -> dict:
    name = segment["name"]
    (chip_dir / f"{name}.json").write_text(json.dumps(jsonable(spec), indent=1))
    np.savez(chip_dir / f"{name}.npz", **arrays)
    write_nir(chip_dir / f"{name}.nir", chip_segment_to_nir(compiled.folded, compiled.fixed, segment))
    files = {"lava_spec": f"chip/{name}.json", "lava_arrays": f"chip/{name}.npz", "nir": f"chip/{name}.nir"}
    netx = {"written": False, "why_not": _netx_problem(spec, arrays)}
    if netx["why_not"] is None:
        written = write_netx(spec, arrays, chip_dir / f"{name}.net")
        if not written["bit_exact"]:
            raise ValueError(f"{name}.net is not bit-exact although its biases are on netx's grid")
        files["netx"] = f"chip/{name}.net"
        netx = {"written": True, "load": written["load"]}
    return {"files": files, "latency": max(n["depth"] for n in spec["nodes"]), "steps": spec["steps"],
            "inputs": [i["name"] for i in spec["inputs"]], "outputs": [o["name"] for o in spec["outputs"]],
            "netx": netx, "constructs": spec_constructs(spec)}


def _netx_problem(spec: dict, arrays: dict) -> str | None:
    """Why no `.net` is written for this chip segment: netx cannot express it, or it can but not exactly."""
    problem = sequential_problem(spec)
    off = [] if problem else off_grid_layers(spec, arrays)
    return problem or (f"the biases of {', '.join(off)} are finer than netx's grid (bias_exp 6): export with --netx "
                       "to quantize them on it, at the cost `snn2hw simulate --ladder --netx` shows" if off else None)


def _write_host(compiled: Compiled, segment: dict, host_dir: Path) -> dict:
    path = host_dir / f"{segment['name']}.onnx"
    # The host's own neurons (GAC's encoder) as extra outputs: their spikes count in the per-layer results.
    neurons = tuple(n for n in segment["nodes"] if isinstance(compiled.fixed.nodes[n], ir.LIF))
    export_host_segment(compiled.fixed, segment, path, extra_outputs=neurons)
    return {"files": {"onnx": f"host/{path.name}"}, "opset": PINNED_OPSET}


def _counts(graph: ir.Graph, segment: dict) -> dict:
    nodes = [graph.nodes[n] for n in segment["nodes"]]
    return {"layers": len(nodes),
            "neurons": sum(math.prod(n.shape) for n in nodes if isinstance(n, ir.LIF)),
            "synapse_weights": sum(math.prod(n.shape) if n.quant.get("identity")
                                   and not identity_as_conv(n.shape, n.quant["weight_exp"]) else n.weight.numel()
                                   for n in nodes if isinstance(n, ir.SYNAPSES))}


def _check_outdir(outdir: Path) -> None:
    if outdir.exists() and not (outdir / "manifest.json").is_file():
        raise UserError(f"-o {outdir} exists and is not a deployment directory; refusing to replace it.")


def _fitted(graph: ir.Graph, system: str | None) -> dict:
    """The graph's Loihi 2 resources, refused (before anything is written) if they need more chips than `system`."""
    resources = loihi_resources(graph, chip_model(load_preset("loihi2"))[0], system)
    if system is not None:
        check_system(resources, system)
    return resources


def _written(outdir: Path, write) -> None:
    """`write(tmp)` into a fresh folder beside `outdir`, then swapped in (`_replace`); nothing left on failure."""
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = outdir.parent / f".{outdir.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        _replace(tmp, outdir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _hashes(tmp: Path) -> dict[str, str]:
    return {p.relative_to(tmp).as_posix(): sha256(p.read_bytes()) for p in sorted(tmp.rglob("*")) if p.is_file()}


def export_netx_deployment(net: NetxNetwork, outdir: Path, timesteps: int,
                           system: str | None = DEFAULT_SYSTEM) -> dict:
    """A deployment of a lava-dl `.net` (as netx builds it: `netx_import.as_built`): the file itself as the chip
    segment, which netx loads and both netx simulators run, with its manifest and report; refused before anything
    is written if it does not fit `system`. Atomic, as `export_deployment`."""
    outdir = Path(outdir)
    _check_outdir(outdir)
    resources = _fitted(netx_graph(net, timesteps), system)
    manifest = {}

    def write(tmp: Path) -> None:
        (tmp / "chip").mkdir(parents=True)
        shutil.copyfile(net.path, tmp / NETX_FILE)
        manifest.update(build_netx_manifest(net, Path(net.path), timesteps, resources, _hashes(tmp)))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        src = manifest["source"]
        (tmp / "report.md").write_text("\n\n".join([
            f"# Deployment of {Path(src['checkpoint']).name} (lava-dl netx) to Loihi 2",
            f"Source `{src['checkpoint']}` (sha256 `{src['sha256'][:16]}…`), T = {timesteps} (the reset interval), "
            f"netx arguments {manifest['netx']}, input {manifest['input']}, snn2hw {manifest['snn2hw_version']}.",
            f"`{NETX_FILE}` is the file as netx loads it: `snn2hw simulate|energy` on this folder run it in fixed "
            "point (`--backend fixed`) or by netx on Lava's CPU backend (`--backend lava`).",
            "## Loihi 2 resources", _loihi2_summary(manifest["loihi2"])]) + "\n")

    _written(outdir, write)
    return manifest


def export_deployment(loaded: Loaded, calibration: np.ndarray, outdir: Path, tcja: str = "host",
                      progress=None, system: str | None = DEFAULT_SYSTEM, residual: str = "auto",
                      netx: bool = False) -> dict:
    """Compile and write the deployment directory; on any failure nothing is left at `outdir` (an earlier
    deployment there stays as it was). A deployment whose chip part does not fit the Loihi 2 `system` (None: no
    check), or uses a construct no public Loihi 2 run shows, is refused before anything is written."""
    step = progress or (lambda _: None)
    outdir = Path(outdir)
    _check_outdir(outdir)
    step("compiling")
    compiled = compile_model(loaded.model, loaded.arch, torch.as_tensor(calibration), tcja, residual, netx)
    resources = _fitted(compiled.fixed, system)
    specs = _chip_specs(compiled)
    manifest = {}

    def write(tmp: Path) -> None:
        for sub in ("chip", "host", "source"):
            (tmp / sub).mkdir(parents=True)
        if loaded.arch == NIR_ARCH:
            shutil.copyfile(loaded.path, tmp / source_copy(loaded.arch))
        else:
            save_checkpoint(tmp / source_copy(loaded.arch), loaded.model, loaded.arch, loaded.options)
        np.save(tmp / "source" / "calibration.npy", calibration)
        (tmp / GRAPH_FILE).write_text(json.dumps({"source": graph_to_json(compiled.source),
                                                  "deployed": graph_to_json(compiled.fixed)}))
        segments = []
        for segment in compiled.fixed.segments:
            step(f"writing {segment['name']}")
            entry = _write_chip(compiled, segment, tmp / "chip", *specs[segment["name"]]) \
                if segment["placement"] == "chip" else _write_host(compiled, segment, tmp / "host")
            segments.append({"name": segment["name"], "placement": segment["placement"],
                             "nodes": segment["nodes"], **_counts(compiled.fixed, segment), **entry})
        manifest.update(build_manifest(loaded, compiled, segments, calibration, _hashes(tmp), resources))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        (tmp / "report.md").write_text(export_report(manifest, compiled))

    _written(outdir, write)
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


# ------------------------------------------------------------------------------------------------ report.md
def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("-" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _loihi2_summary(loihi2: dict) -> str:
    system = loihi2["system"]
    fits = "" if system is None else f"; it fits {system['name']} ({system['chips']:,} chip(s))"
    unplaced = "".join(f" Not placed: {m}." for m in loihi2["unplaced"])
    return (f"{loihi2['cores']:,} cores on {loihi2['chips']:,} chip(s){fits}.{unplaced} From the model of the Loihi 2 "
            "compiler's mapping (`snn2hw/energy/resources.py`; its limits are calibrated on lava-dl's PilotNet LIF "
            "or estimated, see the loihi2 preset), not from the compiler itself; `snn2hw energy` gives the layers.")


def export_report(manifest: dict, compiled) -> str:
    src = manifest["source"]
    parts = [
        f"# Deployment of {src['arch']} to Loihi 2",
        f"Source `{src['checkpoint']}` (sha256 `{src['sha256'][:16]}…`), options {src['options']}, T = "
        f"{manifest['timesteps']}, TCJA gates: `{manifest['tcja']}`, snn2hw {manifest['snn2hw_version']}.",
        "## Loihi 2 resources",
        _loihi2_summary(manifest["loihi2"]),
        "## Loihi 2 hardware evidence",
        "What each chip segment is made of, and the public Loihi 2 run that uses each construct (export refuses a "
        "construct without one):",
        _table(["segment", "construct", "public hardware use"],
               [[s["name"], c, EVIDENCE.get(c, "none found")] for s in manifest["segments"]
                for c in s.get("constructs", [])]),
        "## What the compiler did, in order",
        "\n".join(f"1. {note}" for note in manifest["passes"]),
        "## Segments (execution order)",
        _table(["segment", "runs on", "layers", "neurons", "synapse weights", "latency (Lava steps)", "files"],
               [[s["name"], s["placement"], s["layers"], s["neurons"], s["synapse_weights"], s.get("latency"),
                 ", ".join(f"`{f}`" for f in s["files"].values())] for s in manifest["segments"]]),
        "lava-dl netx (`.net`, spike for spike what the chip spec runs): " + "; ".join(
            f"{s['name']}: " + ("written" if s["netx"]["written"] else f"not written ({s['netx']['why_not']})")
            for s in manifest["segments"] if s["placement"] == "chip") + ".",
        "Host segments hold what is not spike-driven or not causal: the first synapse on pixels and the GAC "
        "encoder, TCJA's gates (each output step depends on all T input steps), and the readout.",
        "## Cuts (tensors crossing between host and chip)",
        _table(["tensor", "to", "direction", "kind", "shape", "values per step", "waits for the whole window"],
               [[c["tensor"], c["to"], c["direction"], c["kind"], c["shape"], c["values_per_step"],
                 "yes" if c["waits_for_window"] else "no"] for c in manifest["cuts"]]),
        "## Quantization (Loihi 2 fixed point)",
        f"Each chip neuron layer has one integer scale σ shared by all its synapses: {fmt.WEIGHT_CLIP_BITS}-bit "
        f"even weights W·σ/2^q, threshold vth = θ·σ (fires when v > vth·{2 ** fmt.VTH_SHIFT}), bias as a "
        f"{fmt.BIAS_MANT_BITS}-bit mantissa with a {fmt.BIAS_EXP_BITS}-bit exponent, dv = {fmt.DECAY_UNITY}·(1 - "
        f"decay), du = {fmt.DECAY_MAX}. σ is the largest the {fmt.WEIGHT_CLIP_BITS}-bit weights allow unless the "
        f"input port's headroom (|a| < 2^{int(math.log2(A_SAFE))} on the calibration data) or the "
        f"{fmt.VTH_BITS}-bit threshold caps it.",
        "Identity synapses (one-to-one Sparse) hold one weight w and a weight exponent -k: they multiply by "
        "w / 2^k exactly, and the scale of the layer they feed is chosen to be that multiple of their source's.",
        _table(["layer", "σ", "vth", "dv", "bias exp", "weight SQNR dB (identity: w/2^k)", "per-channel scale cost dB",
                "payload bits", "notes"],
               [[r["layer"], f"{r['scale']:.1f}", r.get("vth"), r.get("dv"), r.get("bias_exp"),
                 " ".join(weight_summary(s) for s in r["synapses"]),
                 " ".join(str(s.get("per_channel_scale_cost_db", "-")) for s in r["synapses"]),
                 " ".join(str(s["payload_frac_bits"]) for s in r["synapses"]), "; ".join(r["notes"])]
                for r in manifest["layers"]]),
    ]
    sums = residual_terms(compiled.fixed)
    if sums:
        how = ("relayed (`--residual relay`): relay neurons (GradedVec) carry it block to block; the shortcut is an "
               "identity synapse, the downsample its 1x1 conv into a relay of its own" if manifest["residual"] ==
               "relay" else "unrolled (`--residual unroll`): every sum reads one synapse group from each earlier "
               "block's spiking layer (composed with the 1x1 downsample convs on the way) and the encoder's output")
        parts += ["## The MS-ResNet membrane shortcut",
                  f"The residual stream is real-valued and Loihi neurons only receive synaptic input, so it is {how}. "
                  "Each sum is a relay neuron, which the neurons reading the stream read through an identity "
                  "synapse. In Lava each synapse adds one step, so an earlier term waits in a chain of relays "
                  "(no public Loihi 2 run uses a synaptic delay) until all terms of a sum arrive together.",
                  _table(["sum", "depth", "terms (source + delay)"],
                         [[s.add, s.depth, ", ".join(f"{t.source}+{t.delay}" for t in s.terms)] for s in sums])]
    forms = manifest.get("residual_forms") or {}
    if forms:
        parts += ["## Relay or unroll",
                  f"`--residual auto` compiled both forms of the stream and kept `{manifest['residual']}`, which the "
                  "Loihi 2 resource model gives fewer cores. Counted on the float graphs, before quantization rounds "
                  "small weights to zero. Their faithful energy needs a run: `snn2hw energy` on this directory "
                  "runs both forms on its inputs and compares them.",
                  _table(["form", "cores", "chips", "chip weights", "max fan-in", "relay neurons",
                          "host→chip tensors", "host→chip values per step"],
                         [[form, f"{c['cores']:,}", c["chips"], f"{c['chip_weights']:,}", f"{c['max_fan_in']:,}",
                           f"{c['relay_neurons']:,}", c["host_to_chip_tensors"],
                           f"{c['host_to_chip_values_per_step']:,}"] for form, c in forms.items()])]
    host_gates = [n for n in compiled.fixed.nodes.values() if isinstance(n, ir.HostModule)]
    if manifest["tcja"] == "fold":
        parts += ["## TCJA gates", "Folded into static per-channel scales (`--tcja fold`): the backbone runs on "
                  "chip in one piece; the accuracy cost is what `snn2hw simulate --ladder --tcja fold` reports."]
    elif any("TCJA" in type(n.module).__name__ for n in host_gates):
        parts += ["## TCJA gates", "Run on the host (`--tcja host`, exact): each gate needs the whole window, so "
                  "the chip segment after it starts only when the previous one has finished all T steps."]
    return "\n\n".join(parts) + "\n"
