"""Host segments as ONNX (`host/<segment>.onnx` in a deployment directory); `hardware_sims.host_runner` runs them.

A host segment's ONNX graph computes exactly that segment's IR nodes: their own `run` methods, traced by PyTorch's
TorchScript exporter (`dynamo=False`). Its interface, all float32:

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
import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import ir
from ..files import atomic_path

# Opset 17 (ONNX 1.12, 2022): onnxruntime (from 1.13) and PyTorch's TorchScript exporter (from torch 1.13) have
# handled it since late 2022, so a host segment loads in any runtime of the last years, not only the pinned
# onnxruntime 1.3x, and it is well inside the exporter's range (up to 20). Every op these segments use is there with
# the semantics later opsets keep (Conv with asymmetric 'same' pads, global average/max pooling, ReduceMean,
# MaxPool, AveragePool, Sigmoid, Relu, Greater, Cast, Split, Tile, Transpose, Reshape); opsets 18+ change only how
# some of them take arguments (axes as inputs), not what they compute.
PINNED_OPSET = 17
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
    """`node.run`, except adaptive average pooling, which torch's ONNX export refuses on these `[T, N, ...]` values
    ("input size not accessible"; TCJA's CIFAR10-DVS net pools 128 → 48). That pooling is separable: each output
    row averages input rows [⌊iH/h⌋, ⌈(i+1)H/h⌉), and columns alike, so it is two matmuls with constant matrices."""
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


def _example_inputs(graph: ir.Graph, names: list[str], batch: int, device: str = "cpu") -> list[torch.Tensor]:
    """Zero tensors of the shapes a segment reads, with `batch` samples."""
    return [torch.zeros(batch, *graph.input_shape, device=device) if name == MODEL_INPUT else
            torch.zeros(graph.timesteps, batch, *graph.nodes[name].shape, device=device) for name in names]


def _output_shapes(module: HostSegment, graph: ir.Graph) -> list[list]:
    """Each output's shape with `BATCH_DIM` on its batch axis: the one axis whose size follows N, found by running
    two batch sizes (the Readout's layouts differ from `[T, N, ...]`) on the meta device, as `Graph.infer` does:
    shapes without computing (on the CPU, 6 s for the GAC encoder of an ImageNet model)."""
    with torch.no_grad(), contextlib.ExitStack() as on_meta:
        for node in module.nodes:
            on_meta.enter_context(ir.on_meta(node))
        a = module(*_example_inputs(graph, module.input_names, EXPORT_BATCH, "meta"))
        b = module(*_example_inputs(graph, module.input_names, EXPORT_BATCH + 1, "meta"))
    shapes = []
    for name, x, y in zip(module.output_names, a, b):
        moved = [d for d, (m, n) in enumerate(zip(x.shape, y.shape)) if m != n]
        if len(moved) != 1:
            raise ValueError(f"output {name} has no single batch axis (shapes {list(x.shape)}, {list(y.shape)})")
        shapes.append([BATCH_DIM if d == moved[0] else size for d, size in enumerate(x.shape)])
    return shapes


@contextlib.contextmanager
def _dynamic_unflatten(opset: int):
    """Export `Tensor.unflatten` as a Reshape whose batch size follows the input, while the block runs.

    `_per_step` (in the IR and in the GAC attention) restores `[T, N]` with `unflatten(0, x.shape[:2])`. The
    TorchScript exporter's own symbolic computes the split position through Add/Mod/Reshape ops that ONNX shape
    inference cannot follow, so the exporter falls back to the traced sizes and folds the *next* `x.shape` into a
    constant: an export at N=2 then rejects any other N. Slicing the shape at constant positions keeps N symbolic.
    The override uses the exporter's public custom-symbolic registry and is removed afterwards."""
    from torch.onnx import symbolic_helper

    @symbolic_helper.parse_args("v", "i", "v")
    def unflatten(g, x, dim, sizes):
        dim %= x.type().dim()
        shape = g.op("Shape", x)
        head = g.op("Slice", shape, g.op("Constant", value_t=torch.tensor([0])),
                    g.op("Constant", value_t=torch.tensor([dim])))
        tail = g.op("Slice", shape, g.op("Constant", value_t=torch.tensor([dim + 1])),
                    g.op("Constant", value_t=torch.tensor([torch.iinfo(torch.int64).max])))
        return g.op("Reshape", x, g.op("Concat", head, sizes, tail, axis_i=0))

    torch.onnx.register_custom_op_symbolic("aten::unflatten", unflatten, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::unflatten", opset)


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
    out_shapes = _output_shapes(module, graph)
    dynamic = {n: {0 if i == MODEL_INPUT else 1: BATCH_DIM} for n, i in zip(in_names, module.input_names)}
    dynamic.update({n: {shape.index(BATCH_DIM): BATCH_DIM} for n, shape in zip(out_names, out_shapes)})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _dynamic_unflatten(opset):
        # The LIF loop iterates over the time axis; T is static in every deployment, so unrolling it is right.
        warnings.filterwarnings("ignore", message="Iterating over a tensor", category=torch.jit.TracerWarning)
        torch.onnx.export(module, tuple(_example_inputs(graph, module.input_names, EXPORT_BATCH)), buffer,
                          input_names=in_names, output_names=out_names, dynamic_axes=dynamic, opset_version=opset,
                          dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    # The exporter names output dims it could not infer with made-up symbols ('Transposeencoding_dim_0'); declare
    # the shapes the module really returns instead (ONNX shape inference cannot check these, so they come from the
    # module's own outputs).
    for value, shape in zip(model.graph.output, out_shapes):
        for dim, size in zip(value.type.tensor_type.shape.dim, shape):
            if size == BATCH_DIM:
                dim.dim_param = BATCH_DIM
            else:
                dim.dim_value = size
    onnx.helper.set_model_props(model, {
        "snn2hw.segment": segment["name"], "snn2hw.timesteps": str(graph.timesteps),
        "snn2hw.inputs": json.dumps([list(p) for p in zip(in_names, module.input_names)]),
        "snn2hw.outputs": json.dumps([list(p) for p in zip(out_names, module.output_names)])})
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return path
