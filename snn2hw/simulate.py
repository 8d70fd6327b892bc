"""Running a model on one rung of the semantics ladder, and the ladder itself (float → folded → fixed)."""
import numpy as np
import torch

from . import ir
from .activity import run_model
from .compare import first_divergence, spike_mismatches
from .compile import Compiled
from .hardware_sims.fixed_point import run_fixed
from .hardware_sims.loihi_numerics import ACT_SHIFT
from .models.zoo import class_scores

BACKENDS = ("torch", "folded", "fixed")


def spike_counts(graph: ir.Graph, values: dict) -> dict[str, np.ndarray]:
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
        counts.append(spike_counts(graph, spikes))
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
        "quantization": quantization_report(compiled, probe),
        "float_vs_folded": _divergence(source_spikes, folded_spikes, shared),
        "folded_vs_fixed": _divergence(folded_spikes, fixed_spikes, layers),
        "probe_samples": len(probe),
    }


def quantization_report(compiled: Compiled, x: torch.Tensor) -> list[dict]:
    """The quantize pass's per-layer report, completed by a run on `x`: SQNR of the membrane potential (fixed point
    v / (64 σ) against the folded float v after each step, end to end, so spike flips upstream count as noise),
    the largest input, and how many steps wrapped u or saturated v."""
    _, float_values = compiled.folded.run(x, record=True)
    _, act = run_fixed(compiled.fixed, x, keep_membrane=True)
    rows = []
    for entry in compiled.fixed.quant_report:
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
