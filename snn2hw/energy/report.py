"""The energy report: both modes priced by a preset, per layer, per segment and host/chip/transfer totals, their
comparison row by row, firing rates and the Loihi 2 resource estimate (a JSON-ready dict); and the firing rates
of the analytic mode (`parse_rates`)."""
import datetime
import json
from pathlib import Path

import numpy as np

from .. import __version__, ir
from ..errors import UserError
from .counts import CATEGORIES, MODES, Count, faithful_counts, layer_rates, paper_counts, transfers
from .presets import Preset, chip_model
from .resources import loihi_resources
from .timing import chip_time, static_energy_mj


def _layer_row(count: Count, preset: Preset, segment: str | None, timesteps: int) -> dict:
    split = count.energy_split_pj(preset)
    return {"name": count.name, "op": count.op, "segment": segment, "placement": count.placement,
            "category": count.category, "macs": float(count.macs.sum()), "acs": float(count.acs.sum()),
            "neuron_updates": float(count.neuron_updates.sum()), "spikes": float(count.spikes.sum()),
            "dense_synaptic_ops": count.dense * timesteps, "flops": count.flops * timesteps,
            "energy_mj": sum(split.values()) * 1e-9, "energy_split_mj": {k: v * 1e-9 for k, v in split.items()},
            "counted": count.counted, "note": count.note}


def _mode_report(counts: list[Count], preset: Preset, timesteps: int, segments: list[dict], cuts: list[dict]) -> dict:
    """Per-layer rows, per-segment and host/chip/transfer totals of one mode."""
    segment_of = {n: s["name"] for s in segments for n in s["nodes"]}
    layers = [_layer_row(c, preset, segment_of.get(c.name), timesteps) for c in counts]
    for cut in cuts:
        cut["energy_mj"] = cut["bits"] * preset.transfer_bit.value * 1e-9
    compute = {p: sum(r["energy_mj"] for r in layers if r["placement"] == p) for p in ("host", "chip")}
    transfer = sum(c["energy_mj"] for c in cuts)
    return {"total_energy_mj": compute["host"] + compute["chip"] + transfer, "host_mj": compute["host"],
            "chip_mj": compute["chip"], "transfer_mj": transfer, "layers": layers, "cuts": cuts,
            "segments": [{"name": s["name"], "placement": s["placement"],
                          "energy_mj": sum(r["energy_mj"] for r in layers if r["segment"] == s["name"])}
                         for s in segments]}


def paper_report(source: ir.Graph, rates: dict[str, np.ndarray], preset: Preset) -> dict:
    """The paper mode alone (`paper_counts` priced by `preset`): all it needs is the model's shapes and the rates."""
    return _mode_report(paper_counts(source, rates), preset, source.timesteps, [], [])


def comparison(paper: dict, faithful: dict) -> list[dict]:
    """Energy per category in both modes, with why they differ."""
    def per_category(mode, category):
        if category == "host-chip transfers":
            return mode["transfer_mj"]
        if category == "chip static power":
            return mode.get("static_mj", 0.0)
        return sum(r["energy_mj"] for r in mode["layers"] if r["category"] == category)
    return [{"row": c, "paper_mj": per_category(paper, c), "faithful_mj": per_category(faithful, c), "why": why}
            for c, why in CATEGORIES.items()]


def build_report(source: ir.Graph, deployed: ir.Graph, activity, preset: Preset, mode: str = "faithful",
                 system: str | None = None, **context) -> dict:
    """Both modes, their comparison, firing rates per layer and step, and the Loihi 2 chip model: cores and chips
    (and whether they fit `system`), time per step, latency, and the chip's dynamic and static energy. The faithful
    total includes the static energy where the preset has a static power.
    `activity`: a `RecordedActivity` or `RateActivity` of `deployed`; `context`: fields copied into the report."""
    if mode not in MODES:
        raise UserError(f"--mode {mode!r}: use one of {', '.join(MODES)}.")
    timesteps = deployed.timesteps
    rates = layer_rates(deployed, activity)
    missing = [n for n, node in source.nodes.items() if isinstance(node, ir.LIF) and n not in rates]
    if missing:
        raise UserError(f"the deployed graph has no neuron layer {missing[0]} of the model: cannot apply the paper "
                        "view.")
    counts = faithful_counts(deployed, activity)
    faithful = _mode_report(counts, preset, timesteps, deployed.segments, transfers(deployed, activity))
    limits, times = chip_model(preset)
    loihi2 = loihi_resources(deployed, limits, system)
    loihi2.update(chip_time(counts, loihi2, faithful["cuts"], times, timesteps),
                  times={k: vars(v) for k, v in times.items()})
    loihi2["static_mj"] = static_energy_mj(preset.power, loihi2["chips"], loihi2["latency_ms"])
    loihi2["dynamic_mj"] = faithful["chip_mj"]
    faithful["static_mj"] = loihi2["static_mj"]
    faithful["total_energy_mj"] += loihi2["static_mj"]
    paper = paper_report(source, rates, preset)
    chosen = faithful if mode == "faithful" else paper
    return {**context, "snn2hw_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "timesteps": timesteps, "mode": mode, "preset": preset.name,
            "total_energy_mj": chosen["total_energy_mj"], "layers": chosen["layers"],
            "modes": {"paper": paper, "faithful": faithful}, "comparison": comparison(paper, faithful),
            "firing_rate": {n: [float(v) for v in r] for n, r in rates.items()},
            "preset_costs": preset.summary(),
            "loihi2": loihi2,
            "units": "per sample (one inference); energies in mJ"}


def parse_rates(spec: str, graph: ir.Graph) -> tuple[dict[str, np.ndarray], float]:
    """`--firing-rate`: a number in [0, 1] for every neuron layer, or a JSON file mapping layer names to a rate or
    to T per-step rates, with optional "default" (for unnamed layers) and "input" (non-zero fraction of the input).
    → ({layer: rates [T]}, input density)."""
    timesteps = graph.timesteps
    try:
        table = {"default": float(spec)}
    except ValueError:
        path = Path(spec)
        if not path.is_file():
            raise UserError(f"--firing-rate {spec}: neither a number nor an existing JSON file.") from None
        try:
            table = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"--firing-rate {path} is not valid JSON ({e.__class__.__name__}).") from None
        if not isinstance(table, dict):
            raise UserError(f"--firing-rate {path} must hold an object of layer names to rates.")
    layers = [name for name, node in graph.nodes.items() if isinstance(node, ir.LIF)]
    unknown = sorted(set(table) - set(layers) - {"default", "input"})
    if unknown:
        raise UserError(f"--firing-rate {spec} names {', '.join(unknown)}, which {graph.arch or 'the model'} has no "
                        f"neuron layer called (its layers: {', '.join(layers)}).")
    rates = {}
    for name, node in graph.nodes.items():
        if isinstance(node, ir.LIF):
            if name not in table and "default" not in table:
                raise UserError(f"--firing-rate {spec} gives no rate for layer {name} (and no \"default\").")
            rates[name] = _rate_array(table.get(name, table.get("default")), timesteps, name)
    return rates, float(_rate_array(table.get("input", 1.0), timesteps, "input")[0])


def _rate_array(value, timesteps: int, name: str) -> np.ndarray:
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), (timesteps,)) \
        if isinstance(value, (int, float)) or (isinstance(value, list) and len(value) == timesteps
                                               and all(isinstance(v, (int, float)) for v in value)) else None
    if values is None or not ((values >= 0) & (values <= 1)).all():
        raise UserError(f"--firing-rate: the rate of {name} must be a number in [0, 1] or a list of {timesteps} "
                        "of them.")
    return np.array(values)
