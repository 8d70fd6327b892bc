"""Running a deployment: its segments in execution order, each host segment by its host runner (torch on an
in-memory graph, onnxruntime on the exported ONNX) and each chip segment by a chip runner — the fixed-point
simulator or Lava's CPU backend, one interface — with the values crossing host↔chip converted in one place
(`to_chip`, `from_chip`). A chip segment is always run from its chip spec, the exporter's artifact, whether the spec
was just made from a compiled graph (`graph_segments`) or read from a deployment directory.
"""
import functools
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .. import ir
from ..errors import UserError
from ..exporters.lava_spec import chip_segment_spec
from ..exporters.onnx_host import MODEL_INPUT
from . import fixed_point, lava_driver
from .host_runner import OnnxHostSession


def to_chip(entry: dict, value: torch.Tensor) -> np.ndarray:
    """A host value as the integers the chip receives at spec input `entry`: round(value · 2^q) (q = 0 for spikes
    and event counts)."""
    return np.rint(value.double().cpu().numpy() * 2 ** entry["frac_bits"]).astype(np.int64)


def from_chip(node: dict, arrays: dict[str, np.ndarray], value: np.ndarray) -> torch.Tensor:
    """A chip neuron layer's values as the host reads them, float32: a LIF's spikes as 0/1; a relay's graded spikes
    back in float units, a / σ + the bias it does not send (`node`: the layer's spec entry)."""
    value = torch.from_numpy(np.require(value, requirements=("C", "W")))  # as Lava's or our runner returned it
    if node["op"] != "relay":
        return value.to(torch.float32)
    out = value.to(torch.float64).div_(node["scale"])  # in place: relays are the largest layers
    if node["bias"] is not None:
        out.add_(torch.as_tensor(arrays[node["bias"]]))
    return out.to(torch.float32)


def neuron_layers(spec: dict) -> list[str]:
    """Every neuron layer of a chip spec, LIFs and relays: what a run probes (the energy counts read them all)."""
    return [n["name"] for n in spec["nodes"] if n["op"] in ("lif", "relay")]


@dataclass
class ChipSegment:
    """A chip segment as both chip runners take it: its spec and integer arrays (`exporters.lava_spec`)."""
    name: str
    spec: dict
    arrays: dict[str, np.ndarray]

    @functools.cached_property
    def repeats(self) -> dict[str, str]:
        """For the fixed-point runner: the synapses it computes once (`fixed_point.repeated_synapses`)."""
        return fixed_point.repeated_synapses(self.spec, self.arrays)


class TorchHostSegment:
    """A host segment of an in-memory graph, node by node in torch as the float graph runs, on the device the
    graph's tensors are on; every node's value is kept (the ladder and the energy counts read the host's own
    neurons)."""

    def __init__(self, graph: ir.Graph, segment: dict, device: torch.device = torch.device("cpu")):
        self.name, self.device = segment["name"], device
        self.nodes = [graph.nodes[n] for n in segment["nodes"]]

    def run(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        new = {}
        for node in self.nodes:
            args = [values[MODEL_INPUT]] if isinstance(node, ir.Input) else \
                [new[i] if i in new else values[i] for i in node.inputs]
            new[node.name] = node.run(*(a.to(self.device) for a in args))
        return new


class OnnxHostSegment:
    """A host segment run from its exported ONNX file by onnxruntime (opened once): what later segments read, and
    the spikes of the segment's own neurons, which the export adds as outputs."""

    def __init__(self, name: str, path: Path, model: bytes | None = None):
        self.name, self.session = name, OnnxHostSession(path, model)

    def run(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        try:
            results = self.session.run({k: v.numpy() for k, v in values.items() if k in self.session.input_names})
        except ValueError as e:
            raise UserError(f"host segment {self.name}: {e}.") from None
        return {k: torch.as_tensor(v) for k, v in results.items()}


@dataclass
class RunRecord:
    """What a run observed: every value `[T, N, ...]` the host holds (host nodes, chip outputs, the spikes of every
    chip LIF layer as 0/1, every relay's values in float units), the integers each chip input received, and the chip
    LIFs' fixed-point statistics (empty for Lava runs)."""
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    # (host tensor, chip node it feeds) → the integers the chip receives, [T, N, ...]: spikes, payloads or currents
    cut_inputs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    neurons: dict[str, fixed_point.NeuronStats] = field(default_factory=dict)

    @property
    def max_abs_input(self) -> dict[str, int]:
        return {k: s.max_abs_input for k, s in self.neurons.items()}

    @property
    def u_wraps(self) -> dict[str, int]:
        return {k: s.u_wraps for k, s in self.neurons.items()}

    @property
    def v_saturations(self) -> dict[str, int]:
        return {k: s.v_saturations for k, s in self.neurons.items()}

    @property
    def membrane(self) -> dict[str, np.ndarray]:
        return {k: s.membrane for k, s in self.neurons.items() if s.membrane is not None}


def fixed_chip(segment: ChipSegment, inputs: dict, probe: list[str], keep_membrane: bool = False,
               device: torch.device = torch.device("cpu")):
    """The fixed-point chip runner (its convs on `device`)."""
    return fixed_point.run_chip_segment(segment.spec, segment.arrays, inputs, probe, keep_membrane, segment.repeats,
                                        device)


def lava_chip(segment: ChipSegment, inputs: dict, probe: list[str],
              limits: lava_driver.LavaLimits = lava_driver.LavaLimits()):
    """The Lava chip runner (CPU backend, in the Lava environment), within `limits`; it reports no statistics."""
    return lava_driver.run_chip_segment(segment.spec, segment.arrays, inputs, probe, limits.timeout_s,
                                        limits.memory_bytes), {}


@torch.no_grad()
def run_segments(segments: list, output: str, x, chip=fixed_chip, progress=None) -> tuple[torch.Tensor, RunRecord]:
    """Run `segments` in order on model inputs `x` (`[N, *input_shape]`), chip segments by the runner `chip`
    (`fixed_chip`, `lava_chip` or a `partial` of them) with every neuron layer probed. → (the graph's `output`
    value, RunRecord)."""
    values: dict[str, torch.Tensor] = {MODEL_INPUT: torch.as_tensor(x)}
    act = RunRecord()
    sent: dict[tuple, np.ndarray] = {}  # (tensor, frac bits) → its integers: one host value may feed several
    # synapses, each its own spec input
    for segment in segments:
        if progress:
            progress(f"{segment.name} ({'chip' if isinstance(segment, ChipSegment) else 'host'})")
        if not isinstance(segment, ChipSegment):
            values.update(segment.run(values))
            continue
        spec, inputs = segment.spec, {}
        for entry in spec["inputs"]:
            value = values[entry["tensor"]]
            if list(value.shape[2:]) != list(entry["shape"]):
                raise UserError(f"chip segment {segment.name}: its input {entry['name']} is {list(entry['shape'])} "
                                f"per step, but {entry['tensor']} holds {list(value.shape[2:])}.")
            key = (entry["tensor"], entry["frac_bits"])
            if key not in sent:
                sent[key] = to_chip(entry, value)
            inputs[entry["name"]] = act.cut_inputs[(entry["tensor"], entry["to"])] = sent[key]
        layers = neuron_layers(spec)
        try:
            results, stats = chip(segment, inputs, layers)
        except OverflowError as e:  # sums Lava's arithmetic leaves undefined (conv_accumulate)
            raise UserError(f"chip segment {segment.name}: {e}.") from None
        nodes = {n["name"]: n for n in spec["nodes"]}
        values.update({n: from_chip(nodes[n], segment.arrays, results[n])
                       for n in dict.fromkeys([*layers, *(o["name"] for o in spec["outputs"])])})
        act.neurons.update(stats)
    del values[MODEL_INPUT]
    act.values = values
    return values[output], act


def segments_runner(segments: list, output: str, chip=fixed_chip, progress=None):
    """`run_segments` as a function of one batch → (output, values), for running a data set batch by batch."""
    def run(x):
        out, record = run_segments(segments, output, x, chip, progress)
        return out, record.values
    return run


def graph_segments(graph: ir.Graph, device: torch.device = torch.device("cpu")) -> list:
    """The segments of a quantized, partitioned graph in memory: chip ones as their chip specs, host ones in torch on
    `device`."""
    if not graph.quant_layers:
        raise ValueError("running a graph's segments needs a quantized graph (run the quantize pass first)")
    on_device = graph.to(device)
    return [ChipSegment(s["name"], *chip_segment_spec(graph, s)) if s["placement"] == "chip"
            else TorchHostSegment(on_device, s, device) for s in graph.segments]


def run_fixed(graph: ir.Graph, x, keep_membrane: bool = False,
              device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, RunRecord]:
    """The fixed-point run of a quantized graph in memory on inputs `x` `[N, *input_shape]`, its host segments and
    chip convs on `device` → (output as the source model returns it, RunRecord)."""
    return run_segments(graph_segments(graph, device), graph.output, x,
                        partial(fixed_chip, keep_membrane=keep_membrane, device=device))
