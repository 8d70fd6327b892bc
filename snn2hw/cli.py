"""The `snn2hw` command line. Each command is a thin shell: parse options, call the library, print a table."""
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .checkpoint import load_model, save_checkpoint
from .compile import compile_model
from .data import CALIBRATION_SAMPLES, DEMO_DATA, evaluation_samples, load_inputs, load_npy
from .demo import run_demo
from .deployment import (NETX_FILE, is_netx_deployment, load_deployment, load_netx_deployment,
                         verify_deployment)
from .describe import describe
from .energy import DEFAULT_SYSTEM, MODES, SYSTEMS, load_preset
from .energy.render import print_report, write_html
from .errors import UserError
from .export import export_deployment, export_netx_deployment
from .files import atomic_path, check_output, write_text_atomic
from .hardware_sims.lava_driver import LavaLimits, run_netx_on_lava
from .hardware_sims.runner import fixed_chip, lava_chip
from .measure import analytic_report, deployment_report, netx_report
from .device import resolve_device, reuse_freed_memory
from .ladder import RUNGS, ladder as run_ladder, run_model, simulate as run_backend
from .models.zoo import MAX_TIMESTEPS, class_scores, get_arch
from .netx_import import as_built, read_netx
from .hardware_sims.netx_sim import run_netx
from .passes.quantize import weight_summary

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Deploy trained TCJA-SNN and GAC + MS-ResNet models to Loihi 2 through Lava.")
# Tables are wide; when output is piped, rich would wrap them at 80 columns.
_WIDTH = shutil.get_terminal_size((160, 40)).columns
out = Console(width=_WIDTH)
err = Console(stderr=True, width=_WIDTH)

ArchOpt = typer.Option(None, "--arch", help="Architecture name (see `snn2hw inspect --help`); optional for "
                                            "snn2hw's own checkpoints, which record it.")
ClassesOpt = typer.Option(None, "--num-classes", min=1, help="Classifier size, if not the arch default.")
TimeoutOpt = typer.Option(None, "--timeout", min=1, help="Seconds each chip segment's Lava runs may take "
                                                          "(default: derived from the segment's size).")
MemoryLimitOpt = typer.Option(None, "--memory-limit", min=1, help="MiB of address space each Lava process may "
                                                                    "use (default: no limit).")
TrustOpt = typer.Option(False, "--trust-pickle", help="Allow unpickling Python objects from the checkpoint "
                                                      "(runs code from the file: only for files you trust).")
ResidualOpt = typer.Option("auto", "--residual", help="MS-ResNet's residual stream on chip: relay (carried block to "
                                                      "block by relay neurons), unroll (a sum of synapses on every "
                                                      "earlier block's spikes) or auto (whichever the Loihi 2 "
                                                      "resource model gives fewer cores).")


NetxOpt = typer.Option(False, "--netx", help="Quantize the biases of chip segments that a lava-dl .net can hold "
                       "on netx's grid (bias_exp 6), so their .net files are exact (the ladder shows the cost).")
SystemOpt = typer.Option(DEFAULT_SYSTEM, "--system", help=f"The Loihi 2 system the deployment must fit: "
                         f"{', '.join(SYSTEMS)}, or none.")


def _system(name: str) -> str | None:
    if name != "none" and name not in SYSTEMS:
        raise UserError(f"--system {name!r}: use one of {', '.join(SYSTEMS)} or none.")
    return None if name == "none" else name


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option `name` came from the command line (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _only(ctx: typer.Context, mode: str, *allowed: str) -> None:
    """Refuse, in one sentence, any option given on the command line that `mode` does not use (`allowed`: the
    command's parameter names): an option silently ignored would make the user believe it took effect."""
    for param in ctx.command.params:
        if param.param_type_name == "option" and param.name not in allowed and _given(ctx, param.name):
            raise UserError(f"{max(param.opts, key=len)} has no effect {mode}.")


def _model_options(ctx: typer.Context, arch: str) -> None:
    """Refuse --tcja on a model without TCJA gates and --residual on one without MS-ResNet's residual stream."""
    family = get_arch(arch).family
    for name, flag, needs in (("tcja", "--tcja", ("tcja",)), ("residual", "--residual", ("msresnet", "nir"))):
        if _given(ctx, name) and family not in needs:
            what = "TCJA gates" if name == "tcja" else "residual stream"
            raise UserError(f"{flag} has no effect on {arch}, which has no {what}.")


def _lava_limits(timeout: float | None, memory_limit_mib: int | None):
    return LavaLimits(timeout, memory_limit_mib * 2 ** 20 if memory_limit_mib else None)


DeviceOpt = typer.Option(None, "--device", help="Where the torch, folded and fixed-point runs and the ladder compute: "
                         "cpu or cuda (default: cuda where torch sees a GPU; the chip's integer arithmetic is the "
                         "same, the float parts round as the GPU does).")
TimestepsOpt = typer.Option(None, "--timesteps", min=1, max=MAX_TIMESTEPS,
                            help="T: for a checkpoint whose weights do not determine it (e.g. MS-ResNet without GAC), "
                                 "a NIR graph that records none, or a .net (which stores no T).")


DtOpt = typer.Option(None, "--dt",
                     help="For a NIR graph: the step its time constants are measured in (default: the graph's "
                          "metadata 'dt', else 1; SpikingJelly's and snntorch's exports need 1e-4).")


def _load(checkpoint: Path, arch, num_classes, trust_pickle, timesteps=None, dt=None):
    loaded = load_model(checkpoint, arch, num_classes, trust_pickle, timesteps, dt)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in loaded.notes:
        err.print(f"[dim]note: {note}[/dim]")
    return loaded


def spike_table(title: str, counts: dict[str, np.ndarray]) -> Table:
    table = Table(title=title)
    for col, justify in [("layer", "left"), ("spikes / sample", "right"), ("per step (mean over samples)", "left")]:
        table.add_column(col, justify=justify)
    for name, c in counts.items():
        per_step = " ".join(f"{v:.0f}" for v in c.mean(axis=0))
        table.add_row(name, f"{c.sum(axis=1).mean():.1f}", per_step)
    return table


@app.command()
def inspect(checkpoint: Path, arch: Optional[str] = ArchOpt, num_classes: Optional[int] = ClassesOpt,
            as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
            trust_pickle: bool = TrustOpt, timesteps: Optional[int] = TimestepsOpt, dt: Optional[float] = DtOpt):
    """Architecture table, parameter count, neuron conventions, spike-driven (chip) and host ops; for a lava-dl
    `.net`, its blocks as netx runs them; for a deployment directory, its segments, every file checked against the
    SHA-256 its manifest records."""
    if checkpoint.suffix == ".net":
        _inspect_netx(read_netx(checkpoint), as_json)
        return
    if is_netx_deployment(checkpoint):  # every file checked against its hash as it is loaded
        _inspect_netx(load_netx_deployment(checkpoint)[0], as_json)
        return
    if checkpoint.is_dir():
        _inspect_deployment(checkpoint, as_json)
        return
    loaded = _load(checkpoint, arch, num_classes, trust_pickle, timesteps, dt)
    info = describe(loaded.model, loaded.arch)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    out.print(f"[bold]{info['arch']}[/bold] ({info['source']}): {info['parameters']:,} parameters, "
              f"T = {info['timesteps']}, input [N, {', '.join(map(str, info['input_shape']))}]", soft_wrap=True)
    table = Table(title="layers")
    for col in ("layer", "type", "output (one sample)", "params", "runs on", "why"):
        table.add_column(col)
    for row in info["layers"]:
        table.add_row(row["name"], row["type"], str(row["output_shape"]), f"{row['params']:,}", row["runs_on"],
                      row["why"])
    out.print(table)
    out.print("neurons: " + "; ".join(f"{n['convention']} ×{n['count']}" for n in info["neuron_conventions"]))


def _inspect_netx(net, as_json: bool) -> None:
    rows = [{"layer": b.name, "type": b.op, "shape": list(b.shape), "neurons": int(np.prod(b.shape)),
             "weights": 0 if b.weight is None else int(b.weight.size), "neuron": b.neuron,
             "message bits": b.message_bits, "du": b.du, "dv": b.dv, "vth": b.vth}
            for b in net.blocks]
    if as_json:
        print(json.dumps({"file": str(net.path), "input_shape": list(net.input_shape),
                          "input_neurons": net.input_neurons, "input": net.input_kind, "blocks": rows}, indent=2))
        return
    out.print(_rows_table(f"{net.path.name}: lava-dl netx blocks (input {list(net.input_shape)}, --input: "
                          f"{INPUT_KINDS[net.input_kind]})", rows))


def _rows_table(title: str, rows: list[dict]) -> Table:
    """A table of rows that share their keys, the keys as its columns."""
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for row in rows:
        table.add_row(*map(str, row.values()))
    return table


def _inspect_deployment(path: Path, as_json: bool) -> None:
    manifest = verify_deployment(path)
    rows = [{"segment": s["name"], "runs on": s["placement"], "nodes": len(s["nodes"]),
             "files": ", ".join(s["files"].values())} for s in manifest["segments"]]
    if as_json:
        print(json.dumps({"path": str(path), "arch": manifest["source"]["arch"], "timesteps": manifest["timesteps"],
                          "files_verified": len(manifest["file_sha256"]), "segments": rows}, indent=2))
        return
    out.print(_rows_table(f"{path}: {manifest['source']['arch']}, T = {manifest['timesteps']}", rows))
    out.print(f"all {len(manifest['file_sha256'])} files match the SHA-256 the manifest records", soft_wrap=True)


INPUT_KINDS = {"bias": "the input neurons' bias, one frame per sample", "values": "the SDNN input layer's values "
               "at each step", "spikes": "spikes into the first synapse at each step"}


def _netx_inputs(net, input: Path, timesteps: int, samples: int | None) -> np.ndarray:
    """A `.net`'s inputs from `--input` (`NetxNetwork.input_kind`): the LIF input neurons' bias per sample
    `[N, C, H, W]`, or what `net.inp` receives at each step `[N, T, ...]`; integers, as Loihi receives them."""
    shape = net.input_shape if net.input_kind == "bias" else (timesteps, *net.input_shape)
    x = load_npy(input, "--input", tuple(shape))[:samples]
    if not np.array_equal(x, np.round(x)):
        raise UserError(f"--input {input} holds non-integers; a .net takes the integers Loihi receives.")
    return x.astype(np.int64)


def _netx_to_run(path: Path, timesteps: int | None, skip: int, reset_offset: int | None):
    """(network as netx builds it, T) from a `.net` and the options, or from a `.net`'s deployment, which records
    both."""
    if path.suffix == ".net":
        if timesteps is None:
            raise UserError(f"{path} needs --timesteps T (a .net stores no T).")
        return as_built(read_netx(path), skip, reset_offset), timesteps
    if skip or reset_offset is not None:
        raise UserError(f"--skip-layers and --reset-offset are recorded in the deployment {path}; export again to "
                        "change them.")
    net, recorded = load_netx_deployment(path)
    if timesteps not in (None, recorded):
        raise UserError(f"--timesteps {timesteps}: the deployment {path} runs T = {recorded}.")
    return net, recorded


def _simulate_netx(net, timesteps: int, input: Path | None, save: Path | None, backend: str,
                   record_states: bool, samples: int | None, lava_limits: LavaLimits) -> None:
    """A lava-dl `.net` step by step as netx runs it on Lava and Loihi 2: in snn2hw's fixed point, or by netx itself
    on Lava's CPU backend."""
    path = net.path
    if backend not in ("fixed", "lava"):
        raise UserError(f"--backend {backend!r} does not run a .net; use fixed or lava (netx's own loader on "
                        "Lava's CPU backend).")
    if input is None or save is None:
        raise UserError(f"simulate {path} needs --input and --save.")
    x = _netx_inputs(net, input, timesteps, samples)
    with out.status(f"{path.name}: {len(x)} samples on {backend}"):
        traces = run_netx(net, x, timesteps, record_states) if backend == "fixed" else \
            run_netx_on_lava(net, x, timesteps, record_states, lava_limits)
    counts = {k: (t.s != 0).reshape(*t.s.shape[:2], -1).sum(2) for k, t in traces.items()}
    arrays = {"output": traces[net.blocks[-1].name].s, **{f"spike_counts/{k}": c for k, c in counts.items()}}
    if record_states:
        arrays.update({f"{key}/{k}": value for k, t in traces.items() for key, value in t.states().items()})
        arrays.update({f"spikes/{k}": t.s for k, t in traces.items()})
    _save_npz(save, arrays)
    where = "fixed point" if backend == "fixed" else "netx on Lava"
    out.print(spike_table(f"{path.name} on {input.name} ({len(x)} samples, {timesteps} steps each, {where})",
                          counts))
    out.print(f"saved {save}")


@app.command()
def simulate(ctx: typer.Context, checkpoint: Path,
             input: Optional[Path] = typer.Option(None, "--input", help="Inputs, .npy, batch first."),
             save: Optional[Path] = typer.Option(None, "--save", help="Where to write outputs and spike counts (.npz)."),
             arch: Optional[str] = ArchOpt, num_classes: Optional[int] = ClassesOpt,
             backend: Optional[str] = typer.Option(None, "--backend", help="torch (float model; the default), "
                                                   "folded (BN folded, neurons normalised) or fixed (Loihi fixed "
                                                   "point; the default for a .net, which also runs on lava: netx on "
                                                   "Lava)."),
             calibration: Optional[Path] = typer.Option(None, "--calibration", help="Inputs (.npy) that set the "
                                                         "fixed-point scales; default: the first 256 inputs."),
             tcja: str = typer.Option("host", "--tcja", help="TCJA gates: host (exact) or fold (static scales)."),
             residual: str = ResidualOpt, netx: bool = NetxOpt,
             ladder: bool = typer.Option(False, "--ladder", help="Accuracy and firing rates float → folded → fixed."),
             data: Optional[str] = typer.Option(None, "--data", help="For --ladder: digits, NAME:ROOT or an .npz "
                                                                      "with x and y."),
             limit: Optional[int] = typer.Option(None, "--limit", min=1, help="For --ladder: at most this many samples."),
             json_out: Optional[Path] = typer.Option(None, "--json", help="For --ladder: write the report as JSON."),
             resume: Optional[Path] = typer.Option(None, "--resume", help="For --ladder: keep the progress in this "
                                                   "file after every batch, and continue from it if it holds this "
                                                   "run's (under torchrun, one file per rank: FILE.rankN)."),
             batch_size: int = typer.Option(64, "--batch-size", min=1), device: Optional[str] = DeviceOpt,
             labels: Optional[Path] = typer.Option(None, "--labels", help="Optional .npy of labels: prints accuracy."),
             samples: Optional[int] = typer.Option(None, "--samples", min=1, help="Run only the first N inputs."),
             timeout: Optional[float] = TimeoutOpt, memory_limit: Optional[int] = MemoryLimitOpt,
             trust_pickle: bool = TrustOpt,
             timesteps: Optional[int] = TimestepsOpt, dt: Optional[float] = DtOpt,
             record_states: bool = typer.Option(False, "--record-states", help="For a .net: also save spikes/ and "
                                                "the states (u/ and v/, or sigma/) of every layer after every step "
                                                "[N, T, ...]"),
             skip: int = typer.Option(0, "--skip-layers", min=0, help="For a .net: netx's skip_layers, run without "
                                      "the file's first N layers; --input then feeds the first kept synapse."),
             reset_offset: Optional[int] = typer.Option(None, "--reset-offset", min=0, help="For a .net: netx's "
                                                        "reset_offset (default: the file's, else 0).")):
    """Run a checkpoint, a deployment directory or a lava-dl .net on inputs and save `output` and
    `spike_counts/<layer>` ([N, T]); or, with --ladder, compare float → folded → fixed point on a data set."""
    reads = (checkpoint, input, calibration, labels)
    if save is not None:
        check_output(save, "--save", suffix=".npz", reads=reads)
    if json_out is not None:
        check_output(json_out, "--json", suffix=".json", reads=reads)
    if checkpoint.suffix == ".net" or is_netx_deployment(checkpoint):
        _only(ctx, "on a .net", "input", "save", "backend", "samples", "timeout", "memory_limit", "timesteps",
              "record_states", "skip", "reset_offset")
        _simulate_netx(*_netx_to_run(checkpoint, timesteps, skip, reset_offset), input, save, backend or "fixed",
                       record_states, samples, _lava_limits(timeout, memory_limit))
        return
    backend = backend or "torch"
    deployed = checkpoint.is_dir()
    if deployed:
        _only(ctx, "on a deployment directory (it records its model, T and options)", "input", "save", "backend",
              "batch_size", "samples", "timeout", "memory_limit")
    elif ladder:
        _only(ctx, "with --ladder", "arch", "num_classes", "calibration", "tcja", "residual", "netx", "ladder", "data",
              "limit", "json_out", "resume", "batch_size", "device", "trust_pickle", "timesteps", "dt")
    else:
        _only(ctx, "on a checkpoint without --ladder", "input", "save", "arch", "num_classes", "backend", "calibration",
              "tcja", "residual", "netx", "batch_size", "device", "labels", "trust_pickle", "timesteps", "dt")
    if backend not in RUNGS + (("lava",) if deployed else ()):
        raise UserError(f"--backend {backend!r} is not available; use one of {', '.join(RUNGS)}"
                        f"{', lava' if deployed else ' (lava runs a deployment directory: snn2hw export first)'}.")
    where = None if deployed else resolve_device(device)
    if deployed:
        dep = load_deployment(checkpoint)
        _simulate_deployment(dep, backend, input, save, batch_size, _lava_limits(timeout, memory_limit), samples)
        return
    loaded = _load(checkpoint, arch, num_classes, trust_pickle, timesteps, dt)
    _model_options(ctx, loaded.arch)
    if ladder:
        if data is None:
            raise UserError("--ladder needs --data (digits, NAME:ROOT or an .npz with x and y).")
        samples, calib = evaluation_samples(data, loaded.arch, limit)
        if calibration is not None:
            calib = load_inputs(calibration, "--calibration", loaded.model, loaded.arch)
        compiled = compile_model(loaded.model, loaded.arch, torch.as_tensor(calib), tcja, residual, netx)
        _ladder(loaded.arch, compiled, samples, batch_size, json_out, resume, where)
        return
    if input is None or save is None:
        raise UserError("simulate needs --input and --save (or --ladder with --data).")
    x = load_inputs(input, "--input", loaded.model, loaded.arch)
    y = None
    if labels is not None:
        y = load_npy(labels, "--labels")
        if y.shape != (len(x),):
            raise UserError(f"--labels {labels} has shape {y.shape}; expected ({len(x)},), one label per input.")
    if backend == "torch":
        output, counts = run_model(loaded.model.to(where), x, batch_size)
    else:
        calib = load_inputs(calibration, "--calibration", loaded.model, loaded.arch) if calibration \
            else x[:CALIBRATION_SAMPLES]
        compiled = compile_model(loaded.model, loaded.arch, torch.as_tensor(calib), tcja, residual, netx)
        output, counts = run_backend(compiled, backend, x, batch_size, where)
    _save_npz(save, {"output": output, **{f"spike_counts/{k}": v for k, v in counts.items()}})
    out.print(spike_table(f"{loaded.arch} on {input.name} ({len(x)} samples, backend {backend})", counts))
    if y is not None:
        acc = float((class_scores(loaded.arch, torch.as_tensor(output)).argmax(1).numpy() == y).mean())
        out.print(f"accuracy: {acc:.2%}")
    out.print(f"saved {save}")


def _simulate_deployment(dep, backend, input, save, batch_size, lava_limits, samples):
    """Run a deployment directory: fixed and lava from its files (host segments by onnxruntime, chip segments by the
    fixed-point simulator or Lava's CPU backend), torch and folded from its recompiled source."""
    if input is None or save is None:
        raise UserError("simulate needs --input and --save.")
    x = dep.load_inputs(input, "--input")[:samples]
    if backend in ("fixed", "lava"):
        chip = fixed_chip if backend == "fixed" else partial(lava_chip, limits=lava_limits)
        with out.status(f"{dep.arch}: host segments (onnxruntime) and chip segments ({backend})") as status:
            # Lava runs every sample back to back in one run (a run per batch would restart Lava each time).
            output, counts = dep.simulate(x, chip, batch_size if backend == "fixed" else len(x),
                                          lambda what: status.update(f"running {what}"))
    else:
        output, counts = run_backend(dep.compiled, backend, x, batch_size)
    _save_npz(save, {"output": output, **{f"spike_counts/{k}": v for k, v in counts.items()}})
    out.print(spike_table(f"{dep.path.name} on {input.name} ({len(x)} samples, backend {backend})", counts))
    out.print(f"saved {save}")


@contextlib.contextmanager
def _process_group(device: torch.device):
    """Under torchrun (WORLD_SIZE > 1): a process group over the ranks, torch.distributed's own engine (gloo on CPUs,
    NCCL on GPUs); else None. An error on a rank names the rank; a rank whose peer died says so in one sentence
    (torchrun then stops the others)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield None
        return
    torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    try:
        yield torch.distributed.group.WORLD
    except UserError as e:
        raise UserError(f"rank {rank} of {world}: {e}") from None
    except RuntimeError as e:
        if "gloo" not in str(e):  # gloo's transport errors (a peer gone) are plain RuntimeErrors naming it
            raise
        reason = str(e).strip().splitlines()[0].split("] ", 1)[-1][:160]
        raise UserError(f"rank {rank} of {world}: stopped, since another rank failed ({reason}).") from None
    finally:
        torch.distributed.destroy_process_group()


def _ladder(arch, compiled, samples, batch_size, json_out, resume, device):
    with _process_group(device) as group, \
            out.status(f"{arch}: float, folded and fixed point on {len(samples)} samples ({device})") as status:
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            """Samples/s through all three rungs and the time left, on this rank's share."""
            rate = done / (time.perf_counter() - t0)
            status.update(f"{arch}: {done}/{total} samples through float, folded and fixed point, "
                          f"{rate:.2f} samples/s, {(total - done) / rate:.0f} s left")
        report = run_ladder(compiled, samples, batch_size, group, progress, resume, device)
    if report is None:
        return  # a rank other than 0 under torchrun: rank 0 reports
    acc = report["accuracy"]
    strategy = f"--tcja {compiled.tcja}{', --netx' if compiled.netx else ''}"
    out.print(f"[bold]{arch}[/bold] ({strategy}), {len(samples)} samples: accuracy float {acc['torch']:.2%} → "
              f"folded {acc['folded']:.2%} → fixed {acc['fixed']:.2%}", soft_wrap=True)
    table = Table(title="firing rate per layer (spikes per neuron per step)")
    for col in ("layer", "float", "folded", "fixed", "fixed - float"):
        table.add_column(col)
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for row in report["layers"]:
        table.add_row(row["layer"], fmt(row["rate_torch"]), fmt(row["rate_folded"]), fmt(row["rate_fixed"]),
                      fmt(row["delta_fixed"]))
    out.print(table)
    quant = Table(title=f"quantization per chip layer (membrane SQNR and states on the first {report['probe_samples']} "
                        "samples)")
    for col in ("layer", "scale σ", "vth", "dv", "weight SQNR dB", "per-channel cost dB", "payload bits",
                "membrane SQNR dB", "max |a|", "u wraps", "v saturations", "notes"):
        quant.add_column(col)
    for row in report["quantization"]:
        syn = row["synapses"]
        quant.add_row(row["layer"], f"{row['scale']:.1f}", str(row.get("vth", "-")), str(row.get("dv", "-")),
                      " ".join(weight_summary(s) for s in syn) or "-",
                      " ".join(str(s.get("per_channel_scale_cost_db", "-")) for s in syn) or "-",
                      " ".join(str(s["payload_frac_bits"]) for s in syn) or "-",
                      str(row.get("membrane_sqnr_db", "-")), str(row.get("max_abs_input", "-")),
                      str(row.get("u_wraps", "-")), str(row.get("v_saturations", "-")), "; ".join(row["notes"]))
    out.print(quant)
    for key, label in (("float_vs_folded", "float → folded"), ("folded_vs_fixed", "folded → fixed")):
        first = report[key]["first"]
        where = "no spike differs" if first is None else \
            f"first divergence at {first['layer']}, step {first['step']} ({first['count']} spikes)"
        out.print(f"{label}: {where} on the first {report['probe_samples']} samples; "
                  f"{sum(report[key]['mismatches'].values())} differing spikes in all")
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=2))
        out.print(f"wrote {json_out}")


def _save_npz(path: Path, arrays: dict) -> None:
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


@app.command()
def export(ctx: typer.Context, checkpoint: Path,
           outdir: Path = typer.Option(..., "-o", "--outdir", help="Deployment directory to write."),
           arch: Optional[str] = ArchOpt, num_classes: Optional[int] = ClassesOpt,
           target: str = typer.Option("loihi", "--target", help="Only loihi (Loihi 2 through Lava)."),
           calibration: Optional[Path] = typer.Option(None, "--calibration", help="Inputs (.npy) that set the "
                                                       "fixed-point scales; the demo models default to digits."),
           tcja: str = typer.Option("host", "--tcja", help="TCJA gates: host (exact) or fold (static scales)."),
           residual: str = ResidualOpt, netx: bool = NetxOpt,
           system: str = SystemOpt, trust_pickle: bool = TrustOpt,
           timesteps: Optional[int] = TimestepsOpt, dt: Optional[float] = DtOpt,
           skip: int = typer.Option(0, "--skip-layers", min=0, help="For a .net: netx's skip_layers."),
           reset_offset: Optional[int] = typer.Option(None, "--reset-offset", min=0, help="For a .net: netx's "
                                                      "reset_offset.")):
    """Fold, quantize, partition and write a deployment directory (manifest, chip NIR and Lava files, host ONNX);
    for a lava-dl .net, a deployment holding the file as netx loads it. Refused if the chip part does not fit the
    Loihi 2 system."""
    check_output(outdir, "-o", folder=True, reads=(checkpoint, calibration))
    if target != "loihi":
        raise UserError(f"--target {target!r} is not supported; use loihi.")
    system_name = _system(system)
    if checkpoint.suffix == ".net":
        _only(ctx, "on a .net", "outdir", "target", "system", "timesteps", "skip", "reset_offset")
        if timesteps is None:
            raise UserError(f"export {checkpoint} needs --timesteps T (a .net stores no T).")
        manifest = export_netx_deployment(as_built(read_netx(checkpoint), skip, reset_offset), outdir, timesteps,
                                          system_name)
        _print_fit(manifest)
        out.print(f"wrote {outdir}/ (manifest.json, report.md, {NETX_FILE})")
        return
    _only(ctx, "on a checkpoint", "outdir", "arch", "num_classes", "target", "calibration", "tcja", "residual", "netx",
          "system", "trust_pickle", "timesteps", "dt")
    loaded = _load(checkpoint, arch, num_classes, trust_pickle, timesteps, dt)
    _model_options(ctx, loaded.arch)
    if calibration is not None:
        calib = load_inputs(calibration, "--calibration", loaded.model, loaded.arch)[:CALIBRATION_SAMPLES]
    elif get_arch(loaded.arch).demo_data:
        calib = DEMO_DATA[get_arch(loaded.arch).demo_data]("train")[0][:CALIBRATION_SAMPLES]
    else:
        raise UserError(f"--calibration is required for {loaded.arch}: sample inputs set the fixed-point scales.")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task("export")
        manifest = export_deployment(loaded, calib, outdir, tcja, lambda what: bar.update(task, description=what),
                                     system_name, residual, netx)
    table = Table(title=f"{loaded.arch} → {outdir} (T = {manifest['timesteps']}, TCJA gates: {manifest['tcja']})")
    for col in ("segment", "runs on", "layers", "neurons", "synapse weights", "Lava latency", "files"):
        table.add_column(col)
    for s in manifest["segments"]:
        table.add_row(s["name"], s["placement"], str(s["layers"]), f"{s['neurons']:,}", f"{s['synapse_weights']:,}",
                      str(s.get("latency", "-")), " ".join(s["files"].values()))
    out.print(table)
    out.print(f"{len(manifest['cuts'])} cuts between host and chip; passes: " +
              "; ".join(p.split(":")[0] for p in manifest["passes"]), soft_wrap=True)
    _print_fit(manifest)
    out.print(f"wrote {outdir}/ (manifest.json, report.md)")


def _print_fit(manifest: dict) -> None:
    loihi2 = manifest["loihi2"]
    fits = "" if loihi2["system"] is None else f", fits {loihi2['system']['name']}"
    out.print(f"Loihi 2: {loihi2['cores']:,} cores on {loihi2['chips']:,} chip(s){fits} (resource model, not the "
              "compiler: see report.md)", soft_wrap=True)
    for message in loihi2["unplaced"]:
        out.print(f"[yellow]not placed:[/yellow] {message}", soft_wrap=True)


@app.command()
def energy(ctx: typer.Context,
           deploy_dir: Optional[Path] = typer.Argument(None, help="A deployment directory (snn2hw export), a "
                                                       "lava-dl .net, or a checkpoint or NIR graph (exported to a "
                                                       "temporary deployment first)."),
           input: Optional[Path] = typer.Option(None, "--input", help="Inputs (.npy) whose activity is counted."),
           backend: str = typer.Option("fixed", "--backend", help="fixed, folded or lava: where the activity comes from."),
           arch: Optional[str] = typer.Option(None, "--arch", help="Analytic mode (no data): the architecture."),
           timesteps: Optional[int] = typer.Option(None, "--timesteps", min=1, max=MAX_TIMESTEPS,
                                                   help="Analytic mode, a .net or a NIR graph: T."),
           firing_rate: Optional[str] = typer.Option(None, "--firing-rate", help="Analytic mode: a rate in [0, 1] "
                                                     "or a JSON of per-layer rates."),
           mode: str = typer.Option("faithful", "--mode", help="paper (the published convention) or faithful."),
           preset: Optional[str] = typer.Option(None, "--preset", help="45nm, int8-45nm, loihi2, or a TOML path "
                                                "(default: loihi2 for a deployment or .net, 45nm for the analytic "
                                                "mode and --mode paper)."),
           system: str = SystemOpt,
           samples: Optional[int] = typer.Option(None, "--samples", min=1),
           batch_size: int = typer.Option(64, "--batch-size", min=1),
           timeout: Optional[float] = TimeoutOpt, memory_limit: Optional[int] = MemoryLimitOpt,
           dt: Optional[float] = DtOpt,
           json_out: Optional[Path] = typer.Option(None, "--json"),
           html_out: Optional[Path] = typer.Option(None, "--html")):
    """MAC vs AC counts and energy per layer and per host/chip segment, paper and faithful modes side by side, and the
    Loihi 2 chip model (cores, chips, time per step, static energy); from a deployment or a .net and data, or
    analytically from firing rates."""
    for path, option, suffix in ((json_out, "--json", ".json"), (html_out, "--html", ".html")):
        if path is not None:
            check_output(path, option, suffix=suffix, reads=(deploy_dir, input))
    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: use one of {', '.join(MODES)}.")
    system_name = _system(system)
    cost = load_preset(preset or ("loihi2" if deploy_dir is not None and mode == "faithful" else "45nm"))
    if deploy_dir is not None and (deploy_dir.suffix == ".net" or is_netx_deployment(deploy_dir)):
        _only(ctx, "on a .net", "deploy_dir", "input", "mode", "preset", "system", "samples", "batch_size", "timesteps",
              "json_out", "html_out")
        if input is None:
            raise UserError(f"energy {deploy_dir} needs --input X.npy.")
        net, timesteps = _netx_to_run(deploy_dir, timesteps, 0, None)
        x = _netx_inputs(net, input, timesteps, samples)
        with out.status(f"{deploy_dir.name}: fixed point on {len(x)} samples"):
            report = netx_report(net, x, timesteps, cost, mode, system_name, batch_size)
    elif deploy_dir is not None and deploy_dir.is_file():
        _only(ctx, "on a checkpoint or NIR graph", "deploy_dir", "input", "backend", "mode", "preset", "system",
              "samples", "batch_size", "timeout", "memory_limit", "timesteps", "dt", "json_out", "html_out")
        if input is None:
            raise UserError(f"energy {deploy_dir} needs --input X.npy.")
        loaded = _load(deploy_dir, None, None, False, timesteps, dt)
        x = load_inputs(input, "--input", loaded.model, loaded.arch)[:samples]
        # The deployment `export` would write, counted as `energy DEPLOY_DIR` counts it: one path for both.
        with tempfile.TemporaryDirectory(prefix="snn2hw-energy-") as tmp, \
                out.status(f"{deploy_dir.name}: exporting, then the {backend} backend on {len(x)} samples"):
            export_deployment(loaded, x[:CALIBRATION_SAMPLES], Path(tmp) / "deployment", system=system_name)
            report = deployment_report(load_deployment(Path(tmp) / "deployment"), x, backend, cost, mode,
                                       system_name, batch_size, _lava_limits(timeout, memory_limit))
        report["origin"] = str(deploy_dir)
    elif deploy_dir is not None:
        _only(ctx, "on a deployment directory (--arch, --timesteps and --firing-rate are for the analytic mode)",
              "deploy_dir", "input", "backend", "mode", "preset", "system", "samples", "batch_size", "timeout",
              "memory_limit", "json_out", "html_out")
        if input is None:
            raise UserError(f"energy {deploy_dir} needs --input X.npy (or use --arch with --firing-rate).")
        dep = load_deployment(deploy_dir)
        x = dep.load_inputs(input, "--input")[:samples]
        with out.status(f"{deploy_dir}: {backend} backend on {len(x)} samples"):
            report = deployment_report(dep, x, backend, cost, mode, system_name, batch_size,
                                       _lava_limits(timeout, memory_limit))
    else:
        if arch is None or firing_rate is None:
            raise UserError("energy needs DEPLOY_DIR with --input, or --arch with --firing-rate.")
        _only(ctx, "in the analytic mode (--arch with --firing-rate: no data is run)", "arch", "timesteps",
              "firing_rate", "mode", "preset", "system", "json_out", "html_out")
        with out.status(f"{arch}: analytic counts"):
            report = analytic_report(arch, timesteps, firing_rate, cost, mode, system_name)
    print_report(report, out)
    if json_out:
        write_text_atomic(json_out, json.dumps(report, indent=1))
        out.print(f"wrote {json_out}")
    if html_out:
        write_html(report, html_out)
        out.print(f"wrote {html_out}")


@app.command()
def train(arch: str = typer.Argument(..., help="tcja-tiny or gac-msresnet-tiny"),
          output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write."),
          seed: int = typer.Option(0, "--seed"), epochs: Optional[int] = typer.Option(None, "--epochs", min=1)):
    """Train a demo model on the digits data (CPU, a few minutes) and save an snn2hw checkpoint."""
    check_output(output, "-o", suffix=".pt")
    # the recipes load the digits data, whose scipy.ndimage import costs every other command a second
    from .models.train import RECIPES, train as run_training

    if arch not in RECIPES:
        raise UserError(f"no training recipe for {arch!r}; recipes exist for {', '.join(RECIPES)}.")
    model, options, metrics = run_training(arch, seed=seed, epochs=epochs, log=out.print)
    save_checkpoint(output, model, arch, options, metrics=metrics)
    out.print(f"{arch}: test accuracy {metrics['test_accuracy']:.2%} after {metrics['train_seconds']} s; saved {output}")


@app.command()
def demo(outdir: Path = typer.Option(Path("demo-out"), "-o", "--outdir", help="Where to write results.")):
    """Run the bundled demo models end to end on the digits test set."""
    check_output(outdir, "-o", folder=True)
    run_demo(outdir, out)


class _Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread so that `finally` blocks remove temporary files. Not a
    KeyboardInterrupt, which typer would turn into a silent exit, and Python's default SIGTERM runs no cleanup."""


def _interrupt(signum, frame):
    raise _Interrupted(signum)


def main():
    # torch warns on every forward that padding='same' with an even kernel (TCJA's Conv1d) costs a padded copy.
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    reuse_freed_memory()
    try:
        # Not standalone: typer would print a bad option value as a multi-line usage box.
        result = app(standalone_mode=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except typer.TyperException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # its message is the help text (`snn2hw` alone)
            print(e.format_message())
        else:
            print(f"error: {e.format_message()}", file=sys.stderr)
        sys.exit(e.exit_code)
    except _Interrupted as e:
        signum = e.args[0]
        print(f"error: interrupted by {signal.Signals(signum).name}; the command did not finish.", file=sys.stderr)
        sys.exit(128 + signum)
    sys.exit(result if isinstance(result, int) else 0)  # typer returns --help's exit code, a command None


if __name__ == "__main__":
    main()
