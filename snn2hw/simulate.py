"""Running a model on one rung of the semantics ladder, and the ladder itself (float → folded → fixed)."""
import numpy as np
import torch

from . import ir
from .activity import run_model
from .compare import first_divergence, spike_mismatches
from .compile import Compiled
from .hardware_sims.fixed_point import run_fixed
from .models.zoo import class_scores

BACKENDS = ("torch", "folded", "fixed")


def _counts(graph: ir.Graph, values: dict) -> dict[str, np.ndarray]:
    """Per-layer spike counts `[N, T]` from `[T, N, ...]` spike tensors, in execution order."""
    return {n: values[n].flatten(2).sum(2).T.round().to(torch.int64).numpy()
            for n, node in graph.nodes.items() if isinstance(node, ir.LIF)}


def _spikes(graph: ir.Graph, backend: str, x: torch.Tensor):
    """→ (output, {layer: [T, N, ...] spikes}) of the folded or fixed graph."""
    if backend == "folded":
        out, values = graph.run(x, record=True)
    else:
        out, act = run_fixed(graph, x)
        values = act.values
    return out, {n: values[n] for n, node in graph.nodes.items() if isinstance(node, ir.LIF)}


def simulate(compiled: Compiled, backend: str, x: np.ndarray, batch_size: int = 64):
    """→ (output as the official forward returns it, {layer: spike counts [N, T]})."""
    if backend == "torch":
        return run_model(compiled.model, x, batch_size)
    graph = compiled.folded if backend == "folded" else compiled.fixed
    outputs, counts = [], []
    for start in range(0, len(x), batch_size):
        out, spikes = _spikes(graph, backend, torch.as_tensor(x[start:start + batch_size]))
        outputs.append(out.numpy())
        counts.append(_counts(graph, spikes))
    return np.concatenate(outputs), {k: np.concatenate([c[k] for c in counts]) for k in counts[0]}


def ladder(compiled: Compiled, x: np.ndarray, y: np.ndarray, batch_size: int = 64) -> dict:
    """Accuracy and per-layer firing rates for float → folded → fixed, and where spikes first diverge."""
    rungs = {}
    spikes = {}
    for backend in BACKENDS:
        out, counts = simulate(compiled, backend, x, batch_size)
        acc = float((class_scores(compiled.arch, torch.as_tensor(out)).argmax(1).numpy() == y).mean())
        neurons = {n: int(np.prod(node.shape)) for n, node in compiled.folded.nodes.items() if isinstance(node, ir.LIF)}
        rates = {n: float(c.mean() / neurons[n]) for n, c in counts.items() if n in neurons}
        rungs[backend] = {"accuracy": acc, "firing_rate": rates}
    # Divergence needs the full spike tensors; a slice of the data keeps it affordable.
    probe = torch.as_tensor(x[:batch_size])
    _, source_spikes = _spikes(compiled.source, "folded", probe)
    _, folded_spikes = _spikes(compiled.folded, "folded", probe)
    _, fixed_spikes = _spikes(compiled.fixed, "fixed", probe)
    layers = list(folded_spikes)
    shared = [n for n in layers if n in source_spikes]
    base = rungs["torch"]["firing_rate"]
    return {
        "arch": compiled.arch, "samples": len(x), "tcja": compiled.tcja,
        "accuracy": {k: v["accuracy"] for k, v in rungs.items()},
        "layers": [{"layer": n, **{f"rate_{k}": rungs[k]["firing_rate"].get(n) for k in BACKENDS},
                    "delta_folded": _delta(rungs["folded"]["firing_rate"].get(n), base.get(n)),
                    "delta_fixed": _delta(rungs["fixed"]["firing_rate"].get(n), base.get(n))} for n in layers],
        "float_vs_folded": _divergence(source_spikes, folded_spikes, shared),
        "folded_vs_fixed": _divergence(folded_spikes, fixed_spikes, layers),
        "probe_samples": len(probe),
    }


def _divergence(a: dict, b: dict, layers: list[str]) -> dict:
    first = first_divergence(a, b, layers)
    return {"first": None if first is None else vars(first), "mismatches": spike_mismatches(a, b, layers)}


def _delta(value, base):
    return None if value is None or base is None else value - base
