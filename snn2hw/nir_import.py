"""Reading a NIR graph (`.nir`, neuromorphs/NIR 1.0.8: what SpikingJelly 2.0, snntorch, norse and sinabs write) into
a `NIRNet` (models/nir_net.py), the float reference that `compile_model(model, "nir", calibration)` deploys as it
deploys the zoo's models.

    Input, Output        one each; the Input's shape is one sample at one step (no batch, no time axis)
    Affine, Linear       nn.Linear on every step (Linear: no bias); the input must be a vector
    Conv2d               nn.Conv2d on every step (weight (Cout, Cin/groups, kH, kW), bias, stride, padding, dilation)
    SumPool2d            y[t] = the sum over each window of x[t]: a depthwise nn.Conv2d of unit weights, no bias
    AvgPool2d            nn.AvgPool2d (padding counted in the mean, torch's default)
    Flatten              nn.Flatten over the sample's axes (NIR's start_dim/end_dim exclude the batch)
    Scale, Threshold     elementwise: y = x * scale;  z = x > threshold
    IF, LIF, CubaLIF     forward Euler with step dt (equations: models/nir_net.py)
Several edges into one node are summed (NIR's rule), in the file's edge order. Nodes the Output does not depend on
are left out. Anything else (Delay, LI, CubaLI, I, Conv1d, nested graphs, cycles) is refused in one sentence naming
the node.

dt, the step in the unit of the graph's time constants: the caller's, else the graph's metadata `dt` (snn2hw's own
chip/*.nir record dt = 1e-4 s, exporters/nir_export.py), else 1. NIR has no standard key for it and SpikingJelly 2.0 and snntorch record none;
both export with dt = 1e-4 by default (SpikingJelly's LIFNode(tau) becomes LIF(tau = tau·dt, r = 1), its IFNode
IF(r = 1/dt)), so their graphs need dt = 1e-4: a time constant shorter than dt is refused, naming it.
T, the number of steps: the caller's, else the graph's metadata `timesteps` (snn2hw's own export).
"""
import graphlib
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import nir
import numpy as np
import torch
from torch import nn

from .checkpoint import HDF5_MAGIC, Loaded
from .errors import UserError
from .files import atomic_path
from .models import nir_net
from .models.zoo import MAX_TIMESTEPS, NIR_ARCH

SUPPORTED = ("Input", "Output", "Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d", "Flatten", "Scale",
             "Threshold", "IF", "LIF", "CubaLIF")
_TIME_CONSTANTS = {"LIF": ("tau",), "CubaLIF": ("tau_syn", "tau_mem")}


@dataclass
class NIRLoaded(Loaded):
    """A NIR graph loaded as arch `nir`; `options` holds the `timesteps` and `dt` it runs with."""
    dt: float = 1.0
    dt_source: str = ""  # "given", "graph metadata 'dt'" or "default (the graph records no dt)"


def load_nir(path, dt: float | None = None, timesteps: int | None = None) -> NIRLoaded:
    """The NIR graph in file `path` as a `NIRNet` in eval mode (arch `nir`), run with step `dt` for `timesteps` steps
    (None: from the graph's metadata, see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"NIR graph {path}: no such file.")
    with open(path, "rb") as f:
        if f.read(len(HDF5_MAGIC)) != HDF5_MAGIC:
            raise UserError(f"{path} is not a NIR graph (NIR graphs are HDF5 files; this one is not).")
    _check_node_types(path)
    try:
        graph = nir.read(path, type_check=False)  # shapes are checked below, node by node, with better messages
    except Exception as e:  # nir raises KeyError/ValueError/TypeError/AssertionError for malformed nodes
        raise UserError(f"NIR graph {path} cannot be read by nir {nir.version} ({_first_line(e)}).") from None
    model, dt, dt_source, timesteps = nir_model(graph, str(path), dt, timesteps)
    notes = [f"dt = {dt:g}, {dt_source}", f"T = {timesteps}"]
    return NIRLoaded(model, NIR_ARCH, {"timesteps": timesteps, "dt": dt}, path, notes, dt=dt, dt_source=dt_source)


def _spikingjelly_nir(model: nn.Module, example: torch.Tensor) -> nir.NIRGraph:
    from spikingjelly.activation_based.nir_exchange import export_to_nir
    return export_to_nir(model, example, dt=1.0)


def _norse_nir(model: nn.Module, example: torch.Tensor) -> nir.NIRGraph:
    from norse.torch.utils.export_nir import to_nir
    return to_nir(model, example, dt=1.0)


# A framework's neuron modules, by the package they come from → its own NIR exporter, asked for dt = 1 so that the
# graph's time constants are in steps, as `from_module` reads them back.
PEER_EXPORTERS = {"spikingjelly": _spikingjelly_nir, "norse": _norse_nir}


def from_module(model: nn.Module, example: torch.Tensor, path) -> NIRLoaded:
    """A PyTorch model of torch.nn layers and SpikingJelly or norse neurons (`PEER_EXPORTERS`), through that
    framework's own NIR export, written to `path` and loaded from it as `load_nir` loads any graph file (the file is
    what a deployment keeps as its source). `example`: an input as the model takes it, time first (`[T, N, ...]`:
    SpikingJelly in multi-step mode, norse), which sets T. The loaded model takes `[N, T, ...]`, as every NIR graph
    does here."""
    packages = {type(m).__module__.split(".")[0] for m in model.modules()}
    framework = next((f for f in PEER_EXPORTERS if f in packages), None)
    if framework is None:
        raise UserError(f"model {type(model).__name__} has no neurons of {' or '.join(PEER_EXPORTERS)}, whose own NIR "
                        "exporters snn2hw uses: export it to NIR with its framework and give snn2hw the file.")
    try:
        graph = PEER_EXPORTERS[framework](model, example)
        with atomic_path(Path(path)) as tmp:
            nir.write(tmp, graph)
    except Exception as e:  # the peer's exporter or nir.write: either fails on what it cannot represent
        raise UserError(f"model {type(model).__name__}: {framework}'s NIR export failed ({_first_line(e)}).") from None
    return load_nir(path, dt=1.0, timesteps=int(example.shape[0]))


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _check_node_types(path: Path) -> None:
    """Refuse, naming the node, a node type snn2hw does not import, before nir.read fails on it less clearly."""
    try:
        with h5py.File(path, "r") as f:
            nodes = f["node"]["nodes"]
            types = {name: nodes[name]["type"][()] for name in nodes}
    except (OSError, KeyError, TypeError) as e:
        raise UserError(f"{path} is an HDF5 file but not a NIR graph ({_first_line(e)}).") from None
    for name, kind in types.items():
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in SUPPORTED:
            raise UserError(f"NIR graph {path}: node {name} is a {kind}, which snn2hw does not import (supported: "
                            f"{', '.join(SUPPORTED)}).")


def resolve_dt(graph: nir.NIRGraph, where: str, dt: float | None) -> tuple[float, str]:
    """(dt, where it came from): the given one, else the graph's metadata `dt`, else 1."""
    if dt is not None:
        raw, source = dt, "given"
    elif "dt" in graph.metadata:
        raw, source = graph.metadata["dt"], "graph metadata 'dt'"
    else:
        return 1.0, "default (the graph records no dt)"
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"NIR graph {where}: dt {raw!r} ({source}) is not a positive number.")
    return value, source


def _timesteps(graph: nir.NIRGraph, where: str, timesteps: int | None) -> int:
    value = timesteps if timesteps is not None else graph.metadata.get("timesteps")
    if value is None:
        raise UserError(f"NIR graph {where} does not record its number of time steps: pass T (--timesteps).")
    if not (isinstance(value, (int, np.integer)) and 1 <= value <= MAX_TIMESTEPS):
        raise UserError(f"NIR graph {where}: T = {value!r} is not a whole number of steps from 1 to {MAX_TIMESTEPS}.")
    return int(value)


def nir_model(graph: nir.NIRGraph, where: str, dt: float | None = None,
              timesteps: int | None = None) -> tuple[nir_net.NIRNet, float, str, int]:
    """A NIR graph in memory → (its NIRNet in eval mode, dt, where dt came from, T). `where` names the graph in
    errors (its file)."""
    dt, dt_source = resolve_dt(graph, where, dt)
    timesteps = _timesteps(graph, where, timesteps)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    for name, kind in kinds.items():
        if kind not in SUPPORTED:
            raise UserError(f"NIR graph {where}: node {name} is a {kind}, which snn2hw does not import (supported: "
                            f"{', '.join(SUPPORTED)}).")
    inputs = [n for n, k in kinds.items() if k == "Input"]
    outputs = [n for n, k in kinds.items() if k == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise UserError(f"NIR graph {where} has {len(inputs)} Input and {len(outputs)} Output nodes; snn2hw runs "
                        "graphs with one of each.")
    (input_name,), (output_name,) = inputs, outputs
    sources = _sources(graph, where, input_name, output_name)
    order = _execution_order(sources, where, input_name, output_name)
    step_shape = _input_shape(graph.nodes[input_name], where, input_name)

    shapes = {input_name: step_shape}
    names, layers = [], []
    for name in order:
        in_shape = _joined_shape(shapes, sources[name], where, name)
        if name == output_name:
            break
        node = graph.nodes[name]
        _check_finite(node, where, name)
        layer = _layer(node, in_shape, dt, dt_source, where, name)
        shapes[name] = _output_shape(layer, in_shape, where, name, kinds[name])
        names.append(name)
        layers.append(layer)
    model = nir_net.NIRNet(names, layers, [sources[n] for n in names], input_name, output_name, sources[output_name],
                           timesteps, step_shape, dt)
    return model.eval(), dt, dt_source, timesteps


def _sources(graph, where, input_name, output_name) -> dict[str, list[str]]:
    """Node → the nodes whose edges enter it, in the file's edge order."""
    sources = {name: [] for name in graph.nodes}
    for edge in graph.edges:
        a, b = (str(e) for e in edge)
        for end in (a, b):
            if end not in graph.nodes:
                raise UserError(f"NIR graph {where}: edge {a} -> {b} names {end}, which is not a node of the graph.")
        if b == input_name or a == output_name:
            raise UserError(f"NIR graph {where}: edge {a} -> {b} enters the Input or leaves the Output.")
        sources[b].append(a)
    return sources


def _execution_order(sources, where, input_name, output_name) -> list[str]:
    """The nodes the Output depends on, in an order that runs every node after its sources."""
    needed, todo = set(), [output_name]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            if name != input_name and not sources[name]:
                raise UserError(f"NIR graph {where}: node {name} has no input edge, so it computes nothing from the "
                                "Input.")
            todo += sources[name]
    try:
        return [n for n in graphlib.TopologicalSorter({n: sources[n] for n in needed}).static_order()
                if n != input_name]
    except graphlib.CycleError as e:
        raise UserError(f"NIR graph {where} has a cycle ({' -> '.join(e.args[1])}); snn2hw runs feed-forward "
                        "graphs only.") from None


def _input_shape(node: nir.Input, where: str, name: str) -> tuple:
    shape = node.input_type.get("input")
    dims = [] if shape is None else np.atleast_1d(np.asarray(shape)).tolist()
    if not dims or not all(isinstance(d, (int, float)) and d == int(d) and d >= 1 for d in dims):
        raise UserError(f"NIR graph {where}: Input {name} has no shape of positive sizes ({shape!r}); snn2hw needs "
                        "the shape of one sample.")
    return tuple(int(d) for d in dims)


def _joined_shape(shapes, sources, where, name) -> tuple:
    joined = {shapes[s] for s in sources}
    if len(joined) != 1:
        raise UserError(f"NIR graph {where}: node {name} sums edges of different shapes "
                        f"({', '.join(f'{s} {shapes[s]}' for s in sources)}).")
    return joined.pop()


def _check_finite(node, where, name) -> None:
    for key, value in vars(node).items():
        if key in ("metadata", "input_type", "output_type"):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiu" and not np.isfinite(value).all():
            raise UserError(f"NIR graph {where}: {type(node).__name__} {name} has NaN or Inf values in {key}.")


def _ints(value, count: int = 2) -> tuple:
    """A NIR size (a scalar, or one value per axis) as `count` ints."""
    values = np.atleast_1d(np.asarray(value)).astype(np.int64).tolist()
    return tuple(values * count if len(values) == 1 else values)


def _padding(value):
    if isinstance(value, (str, bytes)):
        return value.decode() if isinstance(value, bytes) else value
    return _ints(value)


def _tensor(value) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float32))


def _layer(node, in_shape: tuple, dt: float, dt_source: str, where: str, name: str) -> nn.Module:
    kind = type(node).__name__
    if kind in ("Affine", "Linear"):
        w = np.asarray(node.weight)
        if w.ndim != 2 or in_shape != (w.shape[1],):
            raise UserError(f"NIR graph {where}: {kind} {name} has weights {w.shape} for an input of shape "
                            f"{in_shape}; snn2hw takes a 2-D weight on a vector input.")
        layer = nn.Linear(w.shape[1], w.shape[0], bias=kind == "Affine")
        layer.weight.data = _tensor(w)
        if kind == "Affine":
            layer.bias.data = _tensor(node.bias)
        return layer
    if kind == "Conv2d":
        w, groups = np.asarray(node.weight), int(node.groups)
        if w.ndim != 4 or len(in_shape) != 3 or in_shape[0] != w.shape[1] * groups:
            raise UserError(f"NIR graph {where}: Conv2d {name} has weights {w.shape} (groups {groups}) for an input "
                            f"of shape {in_shape}.")
        layer = nn.Conv2d(w.shape[1] * groups, w.shape[0], w.shape[2:], _ints(node.stride), _padding(node.padding),
                          _ints(node.dilation), groups)
        layer.weight.data, layer.bias.data = _tensor(w), _tensor(node.bias)
        return layer
    if kind in ("SumPool2d", "AvgPool2d"):
        if len(in_shape) != 3:
            raise UserError(f"NIR graph {where}: {kind} {name} needs a (C, H, W) input, not {in_shape}.")
        kernel, stride, padding = _ints(node.kernel_size), _ints(node.stride), _ints(node.padding)
        if kind == "AvgPool2d":
            return nn.AvgPool2d(kernel, stride, padding)
        channels = in_shape[0]
        layer = nn.Conv2d(channels, channels, kernel, stride, padding, groups=channels, bias=False)
        layer.weight.data = torch.ones_like(layer.weight)
        return layer
    if kind == "Flatten":
        dims = (int(node.start_dim), int(node.end_dim))
        if not all(-len(in_shape) <= d < len(in_shape) for d in dims):
            raise UserError(f"NIR graph {where}: Flatten {name} flattens axes {dims[0]}..{dims[1]} of an input of "
                            f"shape {in_shape}.")
        start, end = (d % len(in_shape) for d in dims)
        return nn.Flatten(start + 1, -1 if end == len(in_shape) - 1 else end + 1)  # + 1: the batch axis
    if kind == "Scale":
        return nir_net.Scale(_broadcasting(node.scale, in_shape, where, name, kind, "scale"))
    if kind == "Threshold":
        return nir_net.Threshold(_broadcasting(node.threshold, in_shape, where, name, kind, "threshold"))
    params = {k: _broadcasting(v, in_shape, where, name, kind, k) for k, v in vars(node).items()
              if isinstance(v, np.ndarray) and k not in ("input_type", "output_type")}
    for key in _TIME_CONSTANTS.get(kind, ()):
        shortest = params[key].min()
        if shortest < nir_net.dt_as(dt, params[key]):  # dt in the parameter's precision, as NIRNet takes it
            raise UserError(f"NIR graph {where}: {kind} {name} has {key} {shortest:g}, shorter than the step dt = "
                            f"{dt:g} ({dt_source}); pass the dt the graph was exported with (SpikingJelly and "
                            "snntorch: 1e-4).")
    if kind == "IF":
        return nir_net.IF(params["r"], params["v_threshold"], params["v_reset"], dt)
    if kind == "LIF":
        return nir_net.LIF(params["tau"], params["r"], params["v_leak"], params["v_threshold"], params["v_reset"], dt)
    return nir_net.CubaLIF(params["tau_syn"], params["tau_mem"], params["r"], params["v_leak"],
                           params["v_threshold"], params["v_reset"], params["w_in"], dt)


def _broadcasting(value, in_shape, where, name, kind, key) -> np.ndarray:
    """A per-neuron parameter (in the precision the file stores it), checked to broadcast to the layer's shape
    without growing it."""
    value = np.asarray(value)
    try:
        fits = np.broadcast_shapes(value.shape, in_shape) == tuple(in_shape)
    except ValueError:
        fits = False
    if not fits:
        raise UserError(f"NIR graph {where}: {kind} {name} has {key} of shape {value.shape} for an input of shape "
                        f"{tuple(in_shape)}.")
    return value


def _output_shape(layer, in_shape, where, name, kind) -> tuple:
    """One step of one sample through `layer`: its output shape, or one sentence on why it cannot take its input."""
    try:
        with torch.no_grad():
            out = nir_net.run_layer(layer, torch.zeros((1, 1, *in_shape)))
    except RuntimeError as e:
        raise UserError(f"NIR graph {where}: {kind} {name} cannot take an input of shape {in_shape} "
                        f"({_first_line(e)}).") from None
    return tuple(out.shape[2:])
