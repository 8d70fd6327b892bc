"""Host segments as ONNX (`host/<segment>.onnx` in a deployment directory); `hardware_sims.host_runner` runs them.

A host segment's ONNX graph computes exactly that segment's IR nodes: their own `run` methods, captured by
`torch.export` and translated by PyTorch's ONNX exporter (`dynamo=True`, with onnxscript). Its interface, all float32:

- inputs: what the segment reads from outside itself, in order of first use. The segment holding the Input node
  reads the model input `[N, *input_shape]` under the name `MODEL_INPUT`; every other input is an IR tensor
  `[T, N, ...]` produced by an earlier segment: chip spikes as 0/1, a relay's graded spikes back in float units
  (divided by σ, its carried bias added), or host values.
- outputs: the segment's tensors that a later segment reads or that are the graph's output, in execution order
  (then any `extra_outputs` asked for). Each is `[T, N, ...]`, except the Readout's official layout (`[N, T, K]`,
  `[T, N, K]` or `[N, K]`).
- names: the ONNX IR specification wants C90 identifiers, and IR names hold dots (`conv.0.0`), so every character
  outside [A-Za-z0-9_] becomes '_', a leading digit gets a '_' before it, and a name already taken (by an input or
  an output) gets a suffix `_2`, `_3`, .... The model's metadata `snn2hw.inputs` and `snn2hw.outputs` (JSON lists
  of [ONNX name, IR name]) map them back; the host runner takes and returns IR names (and `MODEL_INPUT`).
- shapes: T and the per-sample shapes are static; the batch axis N is the dynamic dimension "N".
"""
import contextlib
import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import ir
from ..files import atomic_path

# Opset 18 (ONNX 1.13, December 2022; `onnx.helper.VERSION_TABLE`) is the lowest opset torch's exporter translates to
# directly: its op library is written for 18 (`TORCHLIB_OPSET = 18` in torch/onnx/_internal/exporter/_constants.py,
# torch 2.13), and for a lower opset it exports at 18 and then runs ONNX's version converter, which it warns "may not
# be successful" (_compat.py). onnxruntime has run opset 18 since 1.14 (February 2023; its compatibility table), so a
# host segment loads in any runtime of the last years, not only the pinned onnxruntime 1.3x. The ops these segments
# use (Conv with explicit asymmetric pads, MaxPool, AveragePool, ReduceMean, ReduceMax, MatMul, Sigmoid, Relu, Greater,
# Where, Cast, Tile, Expand, Add, Mul, Reshape, Transpose, Squeeze, Unsqueeze, and Shape, Gather, Slice, Concat on the
# batch size) keep their opset-18 semantics: later versions of them only add input types and options (AveragePool's
# dilations, Cast's saturation to float8), per `onnx.defs`' schema history.
PINNED_OPSET = 18
MODEL_INPUT = "model_input"  # the raw model input `[N, *input_shape]`, which has no IR tensor name
BATCH_DIM = "N"
EXPORT_BATCH = 2  # samples in the example tensors traced at export; any N runs afterwards


def segment_interface(graph: ir.Graph, segment: dict) -> tuple[list[str], list[str]]:
    """→ (IR names the segment reads from outside, IR names of its tensors read by later segments or being the
    graph's output), both in execution order; the model input is `MODEL_INPUT`."""
    if segment["placement"] != "host":
        raise ValueError(f"segment {segment['name']} runs on the {segment['placement']}, not on the host")
    members = set(segment["nodes"])
    inputs: list[str] = []
    for name in segment["nodes"]:
        node = graph.nodes[name]
        for src in [MODEL_INPUT] if isinstance(node, ir.Input) else node.inputs:
            if src not in members and src not in inputs:
                inputs.append(src)
    read_later = {i for node in graph.nodes.values() if node.name not in members for i in node.inputs}
    outputs = [n for n in segment["nodes"] if n in read_later or n == graph.output]
    return inputs, outputs


class HostSegment(nn.Module):
    """Evaluates the nodes of one host segment, in execution order, by their IR `run` methods.

    `forward(*inputs)` takes the tensors named `input_names` in that order and returns a tuple of the tensors named
    `output_names` (see the module docstring for shapes). The IR nodes are shared with the graph, not copied."""

    def __init__(self, graph: ir.Graph, segment: dict, extra_outputs: tuple[str, ...] = ()):
        super().__init__()
        self.input_names, self.output_names = segment_interface(graph, segment)
        for name in extra_outputs:
            if name not in segment["nodes"]:
                raise ValueError(f"{name} is not a node of segment {segment['name']}")
        self.output_names += [n for n in extra_outputs if n not in self.output_names]
        self.nodes = [graph.nodes[n] for n in segment["nodes"]]
        # Registered so that train()/eval() and parameters() reach the attention modules the nodes run.
        self.host_modules = nn.ModuleList(n.module for n in self.nodes if isinstance(n, ir.HostModule))

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = dict(zip(self.input_names, xs))
        for node in self.nodes:
            args = [values[MODEL_INPUT]] if isinstance(node, ir.Input) else [values[i] for i in node.inputs]
            values[node.name] = _run(node, args)
        return tuple(values[n] for n in self.output_names)


def _run(node: ir.Node, args: list[torch.Tensor]) -> torch.Tensor:
    """`node.run`, except adaptive average pooling. Where the windows differ in size, torch's decomposition of it
    gathers each window offset separately: TCJA's CIFAR10-DVS net pools 128 → 48, and that one layer becomes 47 ONNX
    nodes and 630 KB of indices. The pooling is separable: each output row averages input rows [⌊iH/h⌋, ⌈(i+1)H/h⌉),
    and columns alike, so it is two matmuls with constant matrices (4 nodes, 53 KB)."""
    if isinstance(node, ir.AvgPool2d) and node.output_size is not None:
        (out_h, out_w), (in_h, in_w) = node.output_size, args[0].shape[-2:]
        return _averaging_matrix(out_h, in_h) @ args[0] @ _averaging_matrix(out_w, in_w).T
    return node.run(*args)


def _averaging_matrix(out: int, size: int) -> torch.Tensor:
    """Built in numpy, so that the ONNX export sees one constant, not the assignments that fill it."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        low, high = i * size // out, -(-(i + 1) * size // out)
        m[i, low:high] = 1 / (high - low)
    return torch.from_numpy(m)


def host_segment_module(graph: ir.Graph, segment: dict, extra_outputs: tuple[str, ...] = ()) -> HostSegment:
    """The torch module computing one host segment (`HostSegment`), in eval mode. `extra_outputs` names further
    nodes of the segment to return after the regular outputs (e.g. the GAC encoder's spikes, for inspection)."""
    return HostSegment(graph, segment, extra_outputs).eval()


def onnx_names(names: list[str]) -> list[str]:
    """C90 identifiers for `names`, distinct from each other (the rule in the module docstring)."""
    taken: set[str] = set()
    out = []
    for name in names:
        base = re.sub(r"\W", "_", name, flags=re.ASCII)
        base = f"_{base}" if not base or base[0].isdigit() else base
        candidate, k = base, 1
        while candidate in taken:
            k += 1
            candidate = f"{base}_{k}"
        taken.add(candidate)
        out.append(candidate)
    return out


def _example_inputs(graph: ir.Graph, names: list[str], batch: int) -> list[torch.Tensor]:
    """Zero tensors of the shapes a segment reads, with `batch` samples."""
    return [torch.zeros(batch, *graph.input_shape) if name == MODEL_INPUT else
            torch.zeros(graph.timesteps, batch, *graph.nodes[name].shape) for name in names]


@contextlib.contextmanager
def _quiet_exporter():
    """Silence, while the block runs, the two messages torch's exporter (torch 2.13.0) emits on every export that
    this project can do nothing about; anything else it says still shows.

    - FutureWarning "`isinstance(treespec, LeafSpec)` is deprecated": torch.export's `run_decompositions` deep-copies
      its module call graph, and unpickling the copy's argument specs builds the deprecated `LeafSpec`
      (torch/export/exported_program.py, `_get_updated_module_call_graph`).
    - "torchvision is not installed. Skipping torchvision::nms" (and three more ops), logged at WARNING level while
      the exporter builds its op registry: torchvision is absent here on purpose (requirements/main-nodeps.txt), and
      host segments use none of its ops."""
    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")

    registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    registry_log.addFilter(keep)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        registry_log.removeFilter(keep)


def export_host_segment(graph: ir.Graph, segment: dict, path, opset: int = PINNED_OPSET,
                        extra_outputs: tuple[str, ...] = ()) -> Path:
    """Write the segment as an ONNX model at `path` (normally `host/<segment>.onnx`), checked by `onnx.checker`
    (with strict shape inference), atomically: a temporary file in the same directory renamed over `path`.
    `extra_outputs` as in `host_segment_module` (a deployment's host segments add their neurons' spikes). → `path`."""
    import onnx  # a second of import time: only exports pay it, not every command that reads this module

    module = host_segment_module(graph, segment, extra_outputs)
    # Inputs and outputs are named together: an input and an output must never share an ONNX name.
    names = onnx_names(module.input_names + module.output_names)
    in_names, out_names = names[:len(module.input_names)], names[len(module.input_names):]
    # One Dim shared by all inputs: they hold the same samples. torch.export fails (rather than fixing N at
    # EXPORT_BATCH) if the segment's code needs N to be a particular size; the LIF loop over the time axis is unrolled,
    # T being static in every deployment.
    batch = torch.export.Dim(BATCH_DIM)
    dynamic_shapes = (tuple({0 if i == MODEL_INPUT else 1: batch} for i in module.input_names),)  # for `*xs`
    with _quiet_exporter():
        program = torch.onnx.export(module, tuple(_example_inputs(graph, module.input_names, EXPORT_BATCH)),
                                    input_names=in_names, output_names=out_names, dynamic_shapes=dynamic_shapes,
                                    opset_version=opset, dynamo=True, verbose=False)  # verbose=None prints progress
    model = program.model_proto
    for value in model.graph.output:  # torch.export derives the output shapes; the module docstring promises them
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims.count(BATCH_DIM) != 1 or not all(isinstance(d, int) or d == BATCH_DIM for d in dims):
            raise ValueError(f"output {value.name} has no single batch axis {BATCH_DIM} (shape {dims})")
    onnx.helper.set_model_props(model, {
        "snn2hw.segment": segment["name"], "snn2hw.timesteps": str(graph.timesteps),
        "snn2hw.inputs": json.dumps([list(p) for p in zip(in_names, module.input_names)]),
        "snn2hw.outputs": json.dumps([list(p) for p in zip(out_names, module.output_names)])})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return path
