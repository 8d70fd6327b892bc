"""The semantics ladder: running a model on one rung (float → folded → fixed point) and comparing the rungs.

`run_model` runs the float torch model with per-layer spike counts; `simulate` runs any rung; `ladder` gives
accuracy, firing rates and the quantization report per rung, and where spikes first diverge (`first_divergence`).
"""
import copy
import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.distributed
from torch import nn

from . import ir
from .compile import Compiled
from .errors import UserError
from .files import write_text_atomic
from .hardware_sims.runner import RunRecord, fixed_chip, graph_segments, run_fixed, segments_runner
from .hardware_sims.loihi_formats import ACT_SHIFT
from .models.neurons import NEURONS
from .models.zoo import class_scores

RUNGS = ("torch", "folded", "fixed")


def spiking_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, NEURONS)}


@torch.no_grad()
def run_model(model: nn.Module, x: np.ndarray, batch_size: int = 32, progress=None):
    """→ (output as the model's forward returns it, {layer: spike counts [N, T]}) for inputs `x` (batch first), on
    the device the model's parameters are on.

    Counts sum a layer's spikes over all neurons of each sample and time step.
    """
    device = next(model.parameters(), torch.empty(0)).device
    layers = spiking_layers(model)
    counts: dict[str, list[np.ndarray]] = {}  # filled in the order the layers run

    def hook(name, module):
        def record(_, __, out):
            dims = [d for d in range(out.dim()) if d not in (module.time_dim, _batch_dim(module))]
            c = out.sum(dim=dims) if dims else out
            if module.time_dim < _batch_dim(module):  # [T, N] → [N, T]
                c = c.transpose(0, 1)
            counts.setdefault(name, []).append(c.round().to(torch.int64).cpu().numpy())
        return record

    handles = [m.register_forward_hook(hook(n, m)) for n, m in layers.items()]
    outputs = []
    try:
        for start in range(0, len(x), batch_size):
            batch = torch.as_tensor(x[start:start + batch_size], dtype=torch.float32).to(device)
            outputs.append(model(batch).cpu().numpy())
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


def layer_divergences(reference: dict, other: dict, layers: list[str]) -> dict[str, dict]:
    """Per layer: the first step at which any of these samples differs (None: none does), the spikes that differ
    at that step, and the spikes that differ in all; `reference`/`other` map layer → `[T, N, ...]` spikes. Integers
    that combine exactly over disjoint sets of samples (`combined_divergence`)."""
    counts = {}
    for n in layers:
        diff = (reference[n] != other[n]).flatten(2).sum(2).sum(1)  # [T]: differing spikes per step
        steps = diff.nonzero()
        first = int(steps[0]) if len(steps) else None
        counts[n] = {"first_step": first, "count": 0 if first is None else int(diff[first]),
                     "mismatches": int(diff.sum())}
    return counts


def combined_divergence(parts: list[dict], layers: list[str]) -> tuple[Divergence | None, dict[str, int]]:
    """`layer_divergences` of disjoint sets of samples → (over all of them: the earliest step at which any layer
    differs and at that step the first layer in execution order, with its differing spikes; {layer: differing
    spikes}).

    Everything downstream of that layer inherits the difference, so it is the one place where the two executions'
    numerics (not their inputs) disagree."""
    first = None
    for n in layers:
        steps = [p[n]["first_step"] for p in parts if p[n]["first_step"] is not None]
        if steps and (first is None or min(steps) < first.step):
            step = min(steps)
            first = Divergence(n, step, sum(p[n]["count"] for p in parts if p[n]["first_step"] == step))
    return first, {n: sum(p[n]["mismatches"] for p in parts) for n in layers}


def first_divergence(reference: dict, other: dict, layers: list[str]) -> Divergence | None:
    """The earliest step at which any layer differs, and at that step the first layer in execution order."""
    return combined_divergence([layer_divergences(reference, other, layers)], layers)[0]


def spike_mismatches(reference: dict, other: dict, layers: list[str]) -> dict[str, int]:
    """Number of differing spikes per layer; `reference`/`other` map layer → `[T, N, ...]` spikes."""
    return combined_divergence([layer_divergences(reference, other, layers)], layers)[1]


# ---------------------------------------------------------------------------------------------------- rungs


def spiking_nodes(graph: ir.Graph) -> list[str]:
    return [n for n, node in graph.nodes.items() if isinstance(node, ir.LIF)]


def spike_counts(layers: list[str], values: dict) -> dict[str, np.ndarray]:
    """Per-layer spike counts `[N, T]` from `[T, N, ...]` spike tensors, in the order of `layers`."""
    return {n: values[n].flatten(2).sum(2).T.round().to(torch.int64).cpu().numpy() for n in layers}


def rung_runner(compiled: Compiled, backend: str, device: torch.device = torch.device("cpu")):
    """A batch `[N, ...]` → (output, {node: `[T, N, ...]` value}) on the folded graph or in fixed point, on
    `device`."""
    if backend == "folded":
        graph = compiled.folded.to(device)
        return lambda x: graph.run(x.to(device), record=True)
    # chip specs made once
    return segments_runner(graph_segments(compiled.fixed, device), compiled.fixed.output,
                           partial(fixed_chip, device=device))


def run_in_batches(run, layers: list[str], x: np.ndarray, batch_size: int = 64):
    """`run` (batch → (output, values)) over `x` → (outputs concatenated, {layer: spike counts [N, T]})."""
    outputs, counts = [], []
    for start in range(0, len(x), batch_size):
        out, values = run(torch.as_tensor(x[start:start + batch_size]))
        outputs.append(out.cpu().numpy())
        counts.append(spike_counts(layers, values))
    return np.concatenate(outputs), {k: np.concatenate([c[k] for c in counts]) for k in counts[0]}


def simulate(compiled: Compiled, backend: str, x: np.ndarray, batch_size: int = 64,
             device: torch.device = torch.device("cpu")):
    """→ (output as the official forward returns it, {layer: spike counts [N, T]})."""
    return rung_simulator(compiled, backend, batch_size, device)(x)


def rung_simulator(compiled: Compiled, backend: str, batch_size: int = 64, device: torch.device = torch.device("cpu")):
    """`simulate` on one rung as a function of the inputs, its runner built once (a fixed-point runner makes its
    chip specs when built)."""
    if backend == "torch":
        model = compiled.model if device.type == "cpu" else copy.deepcopy(compiled.model).to(device)
        return lambda x: run_model(model, x, batch_size)
    graph = compiled.folded if backend == "folded" else compiled.fixed
    runner, layers = rung_runner(compiled, backend, device), spiking_nodes(graph)
    return lambda x: run_in_batches(runner, layers, x, batch_size)


def _count(totals: dict, arch: str, out: np.ndarray, counts: dict, y: np.ndarray) -> None:
    """Add one batch of one rung to its totals: integers that add up across batches and shards (correct answers
    and each layer's spikes, with the samples and (sample, step) pairs they were counted over)."""
    totals["correct"] += int((class_scores(arch, torch.as_tensor(out)).argmax(1).numpy() == y).sum())
    totals["samples"] += len(y)
    totals["sample_steps"] += next(iter(counts.values())).size  # [samples, T]
    for n, c in counts.items():
        totals["spikes"][n] = totals["spikes"].get(n, 0) + int(c.sum())


def _summed(totals: dict, group) -> dict:
    """`totals` summed over the ranks of torch.distributed `group` (None: this process alone), exactly (int64)."""
    if group is None:
        return totals
    names = list(totals["spikes"])
    # NCCL reduces only tensors on the rank's GPU (resolve_device made it the current one)
    where = torch.device("cuda") if torch.distributed.get_backend(group) == "nccl" else torch.device("cpu")
    flat = torch.tensor([totals["correct"], totals["samples"], totals["sample_steps"],
                         *(totals["spikes"][n] for n in names)], dtype=torch.int64, device=where)
    torch.distributed.all_reduce(flat, group=group)
    correct, samples, sample_steps, *spikes = flat.tolist()
    return {"correct": correct, "samples": samples, "sample_steps": sample_steps, "spikes": dict(zip(names, spikes))}


def shard(n: int, rank: int, world: int) -> slice:
    """Rank `rank`'s contiguous share of `n` samples (the first ranks take one more where `world` does not divide;
    a rank gets none where `n` < `world`)."""
    size, extra = divmod(n, world)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (rank < extra))


def _model_fingerprint(compiled: Compiled) -> str:
    """The weights and the fixed-point scales (which the calibration inputs set) of a compiled model, hashed: two
    NIR graphs, or two checkpoints of one arch, are different runs."""
    digest = hashlib.sha256()
    for name, tensor in compiled.model.state_dict().items():
        digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(repr(compiled.fixed.quant_layers).encode())
    return digest.hexdigest()


class _Progress:
    """`--resume FILE`: the totals of every batch a ladder run has completed, written after each batch (atomically),
    so a killed run continues from its last completed batch with the same integers. The file names the run (arch,
    weights and scales, T, compile options, device, samples, batch size, this rank's share, the data's fingerprint)
    and is refused for another."""

    def __init__(self, path: Path, compiled: Compiled, samples, batch_size: int, mine: slice, device: torch.device):
        self.path = path
        self.run = {"arch": compiled.arch, "model": _model_fingerprint(compiled), "timesteps": compiled.fixed.timesteps,
                    "tcja": compiled.tcja, "residual": compiled.residual, "netx": compiled.netx, "device": device.type,
                    "samples": len(samples), "batch_size": batch_size, "share": [mine.start, mine.stop],
                    "data": samples.fingerprint()}
        self.saved = None
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                same = saved["run"] == self.run
            except (OSError, ValueError, KeyError, TypeError):
                raise UserError(f"--resume {path} is not a progress file snn2hw wrote.") from None
            if not same:
                raise UserError(f"--resume {path} holds the progress of another run (its arch, options, data or "
                                "batch size differ); remove it or name another file.")
            self.saved = saved["totals"]

    def save(self, totals: dict) -> None:
        write_text_atomic(self.path, json.dumps({"run": self.run, "totals": totals}))


def ladder(compiled: Compiled, samples, batch_size: int = 64, group=None, progress=None, resume=None,
           device: torch.device = torch.device("cpu")) -> dict | None:
    """Accuracy and per-layer firing rates for float → folded → fixed, the quantization report and where spikes
    first diverge, on `samples` (`data.ArraySamples` or `data.DatasetSamples`, read a batch at a time; every batch
    runs through the three rungs before the next is read) on `device`.

    With a torch.distributed process group (`group`; under torchrun), each rank runs its share of the samples
    (`shard`) and its share of the probe (the first batch, run again with every value and membrane kept for the
    divergences and the quantization report); the integer totals are summed across ranks and the probe's parts
    combined on rank 0 in sample order, so the report equals the single-process one to the bit (a mean of integers
    is exact in float64); rank 0 builds it and the other ranks get None. `progress(samples done, samples)`, on this
    rank's share. `resume`: a progress file (`_Progress`; one per rank, `FILE.rankN`) that a killed run continues
    from."""
    rank, world = (torch.distributed.get_rank(group), torch.distributed.get_world_size(group)) if group else (0, 1)
    if len(samples) < world:
        raise UserError(f"the ladder on {len(samples)} samples cannot be split over {world} processes.")
    mine = shard(len(samples), rank, world)
    progress_file = None if resume is None else _Progress(Path(f"{resume}.rank{rank}") if world > 1 else Path(resume),
                                                          compiled, samples, batch_size, mine, device)
    runs = {backend: rung_simulator(compiled, backend, batch_size, device) for backend in RUNGS}
    totals = (progress_file and progress_file.saved) or {
        "batches": 0, "rungs": {b: {"correct": 0, "samples": 0, "sample_steps": 0, "spikes": {}} for b in RUNGS}}
    for b, start in enumerate(range(mine.start, mine.stop, batch_size)):
        if b < totals["batches"]:
            continue
        x, y = samples.batch(start, min(start + batch_size, mine.stop))
        for backend, run in runs.items():
            _count(totals["rungs"][backend], compiled.arch, *run(x), y)
        totals["batches"] = b + 1
        if progress_file:
            progress_file.save(totals)
        if progress:
            progress(min(start + batch_size, mine.stop) - mine.start, mine.stop - mine.start)
    neurons = {n: int(np.prod(node.shape)) for n, node in compiled.folded.nodes.items() if isinstance(node, ir.LIF)}
    rungs = {}
    for backend in RUNGS:
        summed = _summed(totals["rungs"][backend], group)
        rungs[backend] = {"accuracy": float(np.float64(summed["correct"]) / summed["samples"]),
                          "firing_rate": {n: float(np.float64(s) / summed["sample_steps"] / neurons[n])
                                          for n, s in summed["spikes"].items() if n in neurons}}
    probe = shard(min(batch_size, len(samples)), rank, world)  # this rank's part of the first batch
    part = probe_counts(compiled, samples.batch(probe.start, probe.stop)[0], device) if probe.stop > probe.start \
        else None
    parts = [part]
    if group is not None:
        parts = [None] * world if rank == 0 else None
        torch.distributed.gather_object(part, parts, dst=0, group=group)
    if rank != 0:
        return None
    parts = [p for p in parts if p is not None]  # in rank order: sample order
    layers = spiking_nodes(compiled.folded)
    shared = [n for n in layers if n in spiking_nodes(compiled.source)]
    base = rungs["torch"]["firing_rate"]
    return {
        "arch": compiled.arch, "samples": len(samples), "tcja": compiled.tcja, "netx": compiled.netx,
        "accuracy": {k: v["accuracy"] for k, v in rungs.items()},
        "layers": [{"layer": n, **{f"rate_{k}": rungs[k]["firing_rate"].get(n) for k in RUNGS},
                    "delta_folded": _delta(rungs["folded"]["firing_rate"].get(n), base.get(n)),
                    "delta_fixed": _delta(rungs["fixed"]["firing_rate"].get(n), base.get(n))} for n in layers],
        "quantization": measured_quantization(compiled, [p["quantization"] for p in parts]),
        "float_vs_folded": _divergence([p["float_vs_folded"] for p in parts], shared),
        "folded_vs_fixed": _divergence([p["folded_vs_fixed"] for p in parts], layers),
        "probe_samples": min(batch_size, len(samples)),
    }


def probe_counts(compiled: Compiled, x: np.ndarray, device: torch.device = torch.device("cpu")) -> dict:
    """The probe on samples `x`: the source, folded and fixed-point graphs run with every value (and the fixed
    membranes) kept → the divergences between them (`layer_divergences`) and the quantization counts
    (`quantization_counts`), parts that combine exactly with other samples' parts."""
    x = torch.as_tensor(x)
    source_spikes = compiled.source.to(device).run(x.to(device), record=True)[1]
    folded_values = compiled.folded.to(device).run(x.to(device), record=True)[1]
    fixed_run = run_fixed(compiled.fixed, x, keep_membrane=True, device=device)[1]
    layers = spiking_nodes(compiled.folded)
    shared = [n for n in layers if n in spiking_nodes(compiled.source)]
    fixed_values = {n: fixed_run.values[n].to(device) for n in layers}
    return {"float_vs_folded": layer_divergences(source_spikes, folded_values, shared),
            "folded_vs_fixed": layer_divergences(folded_values, fixed_values, layers),
            "quantization": quantization_counts(compiled, folded_values, fixed_run)}


def quantization_counts(compiled: Compiled, float_values: dict, act: RunRecord) -> dict[str, dict]:
    """Per chip LIF layer, on a run's samples: each sample's sums of the squared folded float membrane v after each
    step (`signal`) and of its squared difference to the fixed-point v / (64 σ) (`noise`; end to end, so spike flips
    upstream count as noise), the largest input, and the steps that wrapped u or saturated v."""
    counts = {}
    for entry in compiled.fixed.quant_layers:
        name = entry["layer"]
        node = compiled.folded.nodes[name]
        if not isinstance(node, ir.LIF):
            continue
        spikes, v = node.trace(float_values[node.inputs[0]])
        v_float = (v * (1 - spikes)).double().cpu().numpy()
        v_fixed = act.membrane[name] / (entry["scale"] * 2 ** ACT_SHIFT)
        counts[name] = {"signal": _per_sample_sums(v_float ** 2), "noise": _per_sample_sums((v_float - v_fixed) ** 2),
                        "max_abs_input": act.max_abs_input[name], "u_wraps": act.u_wraps[name],
                        "v_saturations": act.v_saturations[name]}
    return counts


def _per_sample_sums(values: np.ndarray) -> list[float]:
    """`[T, N, ...]` → each sample's sum, over one contiguous row per sample: the same float whatever else was in
    the batch, so sums of these in sample order do not depend on how the samples were split."""
    return np.ascontiguousarray(np.moveaxis(values, 1, 0)).reshape(values.shape[1], -1).sum(axis=1).tolist()


def measured_quantization(compiled: Compiled, parts: list[dict]) -> list[dict]:
    """The quantize pass's per-layer report, completed by `quantization_counts` of the probe's samples (`parts`, in
    sample order): SQNR of the membrane potential, the largest input, and how many steps wrapped u or saturated
    v."""
    rows = []
    for entry in compiled.fixed.quant_layers:
        row = dict(entry)
        name = entry["layer"]
        if name in parts[0]:
            signal, noise = (float(np.sum([s for p in parts for s in p[name][key]])) for key in ("signal", "noise"))
            row["membrane_sqnr_db"] = round(10 * np.log10(signal / noise), 2) if noise else None
            row.update(max_abs_input=max(p[name]["max_abs_input"] for p in parts),
                       u_wraps=sum(p[name]["u_wraps"] for p in parts),
                       v_saturations=sum(p[name]["v_saturations"] for p in parts))
        rows.append(row)
    return rows


def _divergence(parts: list[dict], layers: list[str]) -> dict:
    first, mismatches = combined_divergence(parts, layers)
    return {"first": None if first is None else vars(first), "mismatches": mismatches}


def _delta(value, base):
    return None if value is None or base is None else value - base
