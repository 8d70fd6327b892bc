"""The semantics ladder: running a model on one rung (float → folded → fixed point) and comparing the rungs.

`run_model` runs the float torch model with per-layer spike counts; `simulate` runs any rung; `ladder` gives
accuracy, firing rates and the quantization report per rung, and where spikes first diverge (`first_divergence`).
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed
from torch import nn

from . import ir
from .compile import Compiled
from .errors import UserError
from .files import write_text_atomic
from .hardware_sims.runner import RunRecord, graph_segments, run_fixed, segments_runner
from .hardware_sims.loihi_formats import ACT_SHIFT
from .models.neurons import NEURONS
from .models.zoo import class_scores

RUNGS = ("torch", "folded", "fixed")


def spiking_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, NEURONS)}


@torch.no_grad()
def run_model(model: nn.Module, x: np.ndarray, batch_size: int = 32, progress=None):
    """→ (output as the model's forward returns it, {layer: spike counts [N, T]}) for inputs `x` (batch first).

    Counts sum a layer's spikes over all neurons of each sample and time step.
    """
    layers = spiking_layers(model)
    counts: dict[str, list[np.ndarray]] = {}  # filled in the order the layers run

    def hook(name, module):
        def record(_, __, out):
            dims = [d for d in range(out.dim()) if d not in (module.time_dim, _batch_dim(module))]
            c = out.sum(dim=dims) if dims else out
            if module.time_dim < _batch_dim(module):  # [T, N] → [N, T]
                c = c.transpose(0, 1)
            counts.setdefault(name, []).append(c.round().to(torch.int64).numpy())
        return record

    handles = [m.register_forward_hook(hook(n, m)) for n, m in layers.items()]
    outputs = []
    try:
        for start in range(0, len(x), batch_size):
            outputs.append(model(torch.as_tensor(x[start:start + batch_size], dtype=torch.float32)).numpy())
            if progress:
                progress(min(start + batch_size, len(x)))
    finally:
        for h in handles:
            h.remove()
    return np.concatenate(outputs), {n: np.concatenate(c) for n, c in counts.items()}


def _batch_dim(module) -> int:
    # The source models keep batch and time as the two leading dims: [T, N, ...] or [N, T, ...].
    return 1 if module.time_dim == 0 else 0


# ------------------------------------------------------------------------------------------------ divergence


@dataclass
class Divergence:
    layer: str
    step: int
    count: int  # spikes that differ at that layer and step


def spike_mismatches(reference: dict, other: dict, layers: list[str]) -> dict[str, int]:
    """Number of differing spikes per layer; `reference`/`other` map layer → `[T, N, ...]` spikes."""
    return {n: int((reference[n] != other[n]).sum()) for n in layers}


def first_divergence(reference: dict, other: dict, layers: list[str]) -> Divergence | None:
    """The earliest time step at which any layer differs, and at that step the first layer in execution order.

    Everything downstream of it inherits the difference, so this is the one place where the two executions'
    numerics (not their inputs) disagree."""
    first = None
    for n in layers:
        diff = (reference[n] != other[n]).flatten(1).any(1).nonzero()
        if len(diff) and (first is None or int(diff[0]) < first.step):
            t = int(diff[0])
            first = Divergence(n, t, int((reference[n][t] != other[n][t]).sum()))
    return first


# ---------------------------------------------------------------------------------------------------- rungs


def spiking_nodes(graph: ir.Graph) -> list[str]:
    return [n for n, node in graph.nodes.items() if isinstance(node, ir.LIF)]


def spike_counts(layers: list[str], values: dict) -> dict[str, np.ndarray]:
    """Per-layer spike counts `[N, T]` from `[T, N, ...]` spike tensors, in the order of `layers`."""
    return {n: values[n].flatten(2).sum(2).T.round().to(torch.int64).numpy() for n in layers}


def rung_runner(compiled: Compiled, backend: str):
    """A batch `[N, ...]` → (output, {node: `[T, N, ...]` value}) on the folded graph or in fixed point."""
    if backend == "folded":
        return lambda x: compiled.folded.run(x, record=True)
    return segments_runner(graph_segments(compiled.fixed), compiled.fixed.output)  # chip specs made once


def run_in_batches(run, layers: list[str], x: np.ndarray, batch_size: int = 64):
    """`run` (batch → (output, values)) over `x` → (outputs concatenated, {layer: spike counts [N, T]})."""
    outputs, counts = [], []
    for start in range(0, len(x), batch_size):
        out, values = run(torch.as_tensor(x[start:start + batch_size]))
        outputs.append(out.numpy())
        counts.append(spike_counts(layers, values))
    return np.concatenate(outputs), {k: np.concatenate([c[k] for c in counts]) for k in counts[0]}


def simulate(compiled: Compiled, backend: str, x: np.ndarray, batch_size: int = 64):
    """→ (output as the official forward returns it, {layer: spike counts [N, T]})."""
    return rung_simulator(compiled, backend, batch_size)(x)


def rung_simulator(compiled: Compiled, backend: str, batch_size: int = 64):
    """`simulate` on one rung as a function of the inputs, its runner built once (a fixed-point runner makes its
    chip specs when built)."""
    if backend == "torch":
        return lambda x: run_model(compiled.model, x, batch_size)
    graph = compiled.folded if backend == "folded" else compiled.fixed
    runner, layers = rung_runner(compiled, backend), spiking_nodes(graph)
    return lambda x: run_in_batches(runner, layers, x, batch_size)


def _rung_totals(compiled: Compiled, backend: str, x: np.ndarray, y: np.ndarray, batch_size: int,
                 progress=None, saved: dict | None = None, save=None) -> dict:
    """What one rung counts on `x`, batch by batch, as integers that add up across batches and shards: correct
    answers and each layer's spikes, with the samples and (sample, step) pairs they were counted over. `saved`: the
    totals of the batches a killed run completed (they are skipped); `save(totals)` after every batch."""
    totals = saved or {"batches": 0, "correct": 0, "samples": 0, "sample_steps": 0, "spikes": {}}
    run = rung_simulator(compiled, backend, batch_size)
    for b, start in enumerate(range(0, len(x), batch_size)):
        if b < totals["batches"]:
            continue
        batch = slice(start, start + batch_size)
        out, counts = run(x[batch])
        totals["correct"] += int((class_scores(compiled.arch, torch.as_tensor(out)).argmax(1).numpy()
                                  == y[batch]).sum())
        totals["samples"] += len(x[batch])
        totals["sample_steps"] += next(iter(counts.values())).size  # [samples, T]
        for n, c in counts.items():
            totals["spikes"][n] = totals["spikes"].get(n, 0) + int(c.sum())
        totals["batches"] = b + 1
        if save:
            save(totals)
        if progress:
            progress(min(start + batch_size, len(x)))
    return totals


def _summed(totals: dict, group) -> dict:
    """`totals` summed over the ranks of torch.distributed `group` (None: this process alone), exactly (int64)."""
    if group is None:
        return totals
    names = list(totals["spikes"])
    flat = torch.tensor([totals["correct"], totals["samples"], totals["sample_steps"],
                         *(totals["spikes"][n] for n in names)], dtype=torch.int64)
    torch.distributed.all_reduce(flat, group=group)
    correct, samples, sample_steps, *spikes = flat.tolist()
    return {"correct": correct, "samples": samples, "sample_steps": sample_steps, "spikes": dict(zip(names, spikes))}


def shard(n: int, rank: int, world: int, head: int = 0) -> slice:
    """Rank `rank`'s contiguous share of `n` samples (the first ranks take one more where `world` does not divide).
    `head`: work rank 0 does besides (the ladder's probe, in samples), counted as samples it already has, so the
    ranks finish together; ignored where it would leave rank 0 no sample."""
    if head and (n + head) // world <= head:
        head = 0
    size, extra = divmod(n + head, world)
    start = rank * size + min(rank, extra)
    return slice(max(start - head, 0), start + size + (rank < extra) - head)


class _Progress:
    """`--resume FILE`: the totals of every batch a ladder run has completed, written after each batch (atomically),
    so a killed run continues from its last completed batch with the same integers. The file names the run (arch,
    T, compile options, samples, batch size, this rank's share, a hash of the data) and is refused for another."""

    def __init__(self, path: Path, compiled: Compiled, x: np.ndarray, y: np.ndarray, batch_size: int, mine: slice):
        self.path = path
        self.run = {"arch": compiled.arch, "timesteps": compiled.fixed.timesteps, "tcja": compiled.tcja,
                    "residual": compiled.residual, "netx": compiled.netx, "samples": len(x),
                    "batch_size": batch_size, "share": [mine.start, mine.stop],
                    "data_sha256": hashlib.sha256(np.ascontiguousarray(x).tobytes()
                                                  + np.ascontiguousarray(y).tobytes()).hexdigest()}
        self.rungs = {}
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                same = saved["run"] == self.run
            except (OSError, ValueError, KeyError, TypeError):
                raise UserError(f"--resume {path} is not a progress file snn2hw wrote.") from None
            if not same:
                raise UserError(f"--resume {path} holds the progress of another run (its arch, options, data or "
                                "batch size differ); remove it or name another file.")
            self.rungs = saved["rungs"]

    def rung(self, backend: str) -> tuple[dict | None, object]:
        def save(totals: dict) -> None:
            self.rungs[backend] = totals
            write_text_atomic(self.path, json.dumps({"run": self.run, "rungs": self.rungs}))
        return self.rungs.get(backend), save


def ladder(compiled: Compiled, x: np.ndarray, y: np.ndarray, batch_size: int = 64, group=None,
           progress=None, resume=None) -> dict | None:
    """Accuracy and per-layer firing rates for float → folded → fixed, and where spikes first diverge.

    With a torch.distributed process group (`group`; under torchrun), each rank runs its share of the samples
    (`shard`) and the integer totals are summed across ranks, so the report equals the single-process one to the
    bit (a mean of integers is exact in float64); rank 0 builds it (the divergence probe runs there) and the other
    ranks get None. `progress(rung, samples done, samples)`, on this rank's share. `resume`: a progress file
    (`_Progress`; one per rank, `FILE.rankN`) that a killed run continues from."""
    rank, world = (torch.distributed.get_rank(group), torch.distributed.get_world_size(group)) if group else (0, 1)
    if len(x) < world:
        raise UserError(f"the ladder on {len(x)} samples cannot be split over {world} processes.")
    probe = torch.as_tensor(x[:batch_size])  # the divergence and quantization probe, rank 0's extra work
    mine = shard(len(x), rank, world, len(probe) if world > 1 else 0)
    progress_file = None if resume is None else _Progress(Path(f"{resume}.rank{rank}") if world > 1 else Path(resume),
                                                          compiled, x, y, batch_size, mine)
    rungs = {}
    neurons = {n: int(np.prod(node.shape)) for n, node in compiled.folded.nodes.items() if isinstance(node, ir.LIF)}
    for backend in RUNGS:
        report = (lambda done, rung=backend: progress(rung, done, len(x[mine]))) if progress else None
        saved, save = progress_file.rung(backend) if progress_file else (None, None)
        totals = _summed(_rung_totals(compiled, backend, x[mine], y[mine], batch_size, report, saved, save), group)
        acc = float(np.float64(totals["correct"]) / totals["samples"])
        rates = {n: float(np.float64(s) / totals["sample_steps"] / neurons[n]) for n, s in totals["spikes"].items()
                 if n in neurons}
        rungs[backend] = {"accuracy": acc, "firing_rate": rates}
    if rank != 0:
        return None
    # Divergence needs the full spike tensors; a slice of the data keeps it affordable.
    source_spikes = compiled.source.run(probe, record=True)[1]
    folded_values = compiled.folded.run(probe, record=True)[1]
    fixed_run = run_fixed(compiled.fixed, probe, keep_membrane=True)[1]
    layers = spiking_nodes(compiled.folded)
    shared = [n for n in layers if n in spiking_nodes(compiled.source)]
    base = rungs["torch"]["firing_rate"]
    return {
        "arch": compiled.arch, "samples": len(x), "tcja": compiled.tcja, "netx": compiled.netx,
        "accuracy": {k: v["accuracy"] for k, v in rungs.items()},
        "layers": [{"layer": n, **{f"rate_{k}": rungs[k]["firing_rate"].get(n) for k in RUNGS},
                    "delta_folded": _delta(rungs["folded"]["firing_rate"].get(n), base.get(n)),
                    "delta_fixed": _delta(rungs["fixed"]["firing_rate"].get(n), base.get(n))} for n in layers],
        "quantization": measured_quantization(compiled, folded_values, fixed_run),
        "float_vs_folded": _divergence(source_spikes, folded_values, shared),
        "folded_vs_fixed": _divergence(folded_values, fixed_run.values, layers),
        "probe_samples": len(probe),
    }


def measured_quantization(compiled: Compiled, float_values: dict, act: RunRecord) -> list[dict]:
    """The quantize pass's per-layer report, completed by runs on the same inputs (the folded graph's recorded
    values, and a fixed-point run that kept the membranes): SQNR of the membrane potential (fixed point v / (64 σ)
    against the folded float v after each step, end to end, so spike flips upstream count as noise), the largest
    input, and how many steps wrapped u or saturated v."""
    rows = []
    for entry in compiled.fixed.quant_layers:
        row = dict(entry)
        name = entry["layer"]
        node = compiled.folded.nodes[name]
        if isinstance(node, ir.LIF):
            spikes, v = node.trace(float_values[node.inputs[0]])
            v_float = (v * (1 - spikes)).double().numpy()
            v_fixed = act.membrane[name] / (entry["scale"] * 2 ** ACT_SHIFT)
            noise = float(((v_float - v_fixed) ** 2).sum())
            row["membrane_sqnr_db"] = round(10 * np.log10(float((v_float ** 2).sum()) / noise), 2) if noise else None
            row.update(max_abs_input=act.max_abs_input[name], u_wraps=act.u_wraps[name],
                       v_saturations=act.v_saturations[name])
        rows.append(row)
    return rows


def _divergence(a: dict, b: dict, layers: list[str]) -> dict:
    first = first_divergence(a, b, layers)
    return {"first": None if first is None else vars(first), "mismatches": spike_mismatches(a, b, layers)}


def _delta(value, base):
    return None if value is None or base is None else value - base
