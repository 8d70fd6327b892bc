"""The graph IR: one node per operation, with multi-step time semantics.

Every tensor in the graph is time-major, `[T, N, *shape]`: T time steps of N samples, `shape` being what one sample
carries at one step. Each node has one output, named after the node; `inputs` name the nodes it reads, so joins
(the MS-ResNet shortcut) and fan-out are explicit edges. `kind` says what the output carries:
`analog` (real values), `graded` (spikes with non-binary payloads: event counts, gated spikes) or `binary` (0/1).

Each node's docstring states the equation it computes; `run` is its float execution (the same torch ops the source
model uses, so an untransformed graph reproduces the model exactly). Per-step ops act on each (t, n) independently;
only neurons and host modules look across time.
"""
import copy
import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

KINDS = ("analog", "graded", "binary")
# Float runs over many samples (calibration, gate statistics) go in batches whose largest value `[T, N, ...]` stays
# near this size, so memory stops growing with the number of samples (ImageNet-34: 3.0 GB for 4 samples and for 16).
RUN_BATCH_BYTES = 2 ** 28


def _per_step(fn, x):
    return fn(x.flatten(0, 1)).unflatten(0, x.shape[:2])


@dataclass(eq=False)
class Node:
    name: str
    inputs: list[str]
    shape: tuple = ()  # one sample at one step; set by `Graph.infer`
    kind: str = ""  # analog | graded | binary; set by `Graph.infer`
    placement: str = ""  # host | chip; set by the partition pass
    quant: dict = field(default_factory=dict)  # Loihi fixed-point parameters; set by the quantize pass

    def run(self, *xs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def copy(self, **changes) -> "Node":
        """A new node with the same fields (tensors shared, not cloned) and its own `inputs` list."""
        return dataclasses.replace(self, **{"inputs": list(self.inputs), **changes})

    def out_kind(self, *kinds: str) -> str:
        """Synapses, norms and sums produce real values; nodes that pass values through override this."""
        return "analog"


@dataclass(eq=False)
class Input(Node):
    """The model input as a sequence. `repeat_over_t`: x[t] = image for every t (static images, GAC);
    otherwise the input already has a time axis at dim 1 (`[N, T, ...]`, event frames, TCJA)."""
    timesteps: int = 1
    source_kind: str = "analog"
    repeat_over_t: bool = False

    def run(self, x):
        if self.repeat_over_t:
            return x.unsqueeze(0).repeat(self.timesteps, *([1] * x.dim()))
        return x.transpose(0, 1)

    def out_kind(self):
        return self.source_kind


@dataclass(eq=False)
class Conv2d(Node):
    """y[t] = conv2d(x[t], weight, stride, padding, dilation, groups) + bias."""
    weight: torch.Tensor = None
    bias: torch.Tensor | None = None
    stride: tuple = (1, 1)
    padding: tuple | str = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1

    def run(self, x):
        return _per_step(lambda z: F.conv2d(z, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                            self.groups), x)


@dataclass(eq=False)
class Linear(Node):
    """y[t] = weight @ x[t] + bias."""
    weight: torch.Tensor = None
    bias: torch.Tensor | None = None

    def run(self, x):
        return _per_step(lambda z: F.linear(z, self.weight, self.bias), x)


@dataclass(eq=False)
class BatchNorm(Node):
    """y[t] = (x[t] - mean) / sqrt(var + eps) * weight + bias, per channel (inference statistics)."""
    mean: torch.Tensor = None
    var: torch.Tensor = None
    weight: torch.Tensor = None
    bias: torch.Tensor = None
    eps: float = 1e-5

    def run(self, x):
        return _per_step(lambda z: F.batch_norm(z, self.mean, self.var, self.weight, self.bias, False, 0.0, self.eps),
                         x)


@dataclass(eq=False)
class LIF(Node):
    """Leaky integrate-and-fire with hard reset to 0, from v = 0:

    v[t] = decay * v[t-1] + input_scale * x[t];   s[t] = v[t] > threshold  (>= if fire_at_threshold);   v[t] = 0 where s[t]

    With `tau` set, the charge is computed in SpikingJelly's float order, v + (x - v) / tau (decay 1 - 1/tau,
    input_scale 1/tau), so an untransformed TCJA graph reproduces the model bit for bit.
    """
    decay: float = 0.5
    threshold: float = 1.0
    input_scale: float = 1.0
    fire_at_threshold: bool = False
    tau: float | None = None

    def charge(self, v, x):
        if self.tau is not None:
            return v + (x - v) / self.tau
        return v * self.decay + x * self.input_scale

    def run(self, x):
        return self._integrate(x, keep_membrane=False)[0]

    def trace(self, x):
        """→ (spikes, membrane potential before reset), both `[T, N, ...]`."""
        return self._integrate(x, keep_membrane=True)

    def _integrate(self, x, keep_membrane: bool):
        v = torch.zeros_like(x[0])
        out, vs = [], []
        for x_t in x:
            v = self.charge(v, x_t)
            s = (v >= self.threshold) if self.fire_at_threshold else (v > self.threshold)
            if keep_membrane:
                vs.append(v)
            v = v.masked_fill(s, 0.0)  # the source models' v * (1 - s), up to the sign of zero
            out.append(s)
        return torch.stack(out).to(x.dtype), torch.stack(vs) if keep_membrane else None

    def out_kind(self, *kinds):
        return "binary"


@dataclass(eq=False)
class MaxPool2d(Node):
    """y[t] = max over each kernel window of x[t]; on binary spikes this is an OR."""
    kernel_size: tuple = (2, 2)
    stride: tuple = (2, 2)
    padding: tuple = (0, 0)

    def run(self, x):
        return _per_step(lambda z: F.max_pool2d(z, self.kernel_size, self.stride, self.padding), x)

    def out_kind(self, kind):
        return kind


@dataclass(eq=False)
class AvgPool2d(Node):
    """y[t] = mean over each window of x[t]; `output_size` set means adaptive pooling to that size."""
    kernel_size: tuple = (2, 2)
    stride: tuple = (2, 2)
    output_size: tuple | None = None

    def run(self, x):
        if self.output_size is not None:
            return _per_step(lambda z: F.adaptive_avg_pool2d(z, self.output_size), x)
        return _per_step(lambda z: F.avg_pool2d(z, self.kernel_size, self.stride), x)

    def out_kind(self, kind):
        return "graded" if kind in ("binary", "graded") else kind


@dataclass(eq=False)
class Flatten(Node):
    """y[t] = x[t] flattened to one feature axis (C, H, W order)."""

    def run(self, x):
        return x.flatten(2)

    def out_kind(self, kind):
        return kind


@dataclass(eq=False)
class Add(Node):
    """y[t] = x_1[t] + x_2[t] + ... + x_k[t] (summed left to right) + bias per channel (if any).

    The MS-ResNet membrane shortcut joins here; on chip, an Add feeding a neuron is that neuron's several incoming
    synapse groups, which Lava sums at the neuron's input port."""
    bias: torch.Tensor | None = None

    def run(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        if self.bias is not None:
            y = y + self.bias.view(-1, *([1] * (y.dim() - 3)))
        return y


@dataclass(eq=False)
class Relay(Node):
    """y[t] = x[t]: a graded-spike neuron that sends, every step, the sum its input port received that step.

    On Loihi 2 this is Lava's `GradedVec` with threshold 0 (v = a_in, s = v, no state kept between steps; signed,
    24-bit payloads). It carries a real value that no LIF can hold (MS-ResNet's residual stream, a sum of synapses,
    a readout's accumulation) from synapses to synapses or to the host, and, chained, delays a value by one step
    per relay."""

    def run(self, x):
        return x

    def out_kind(self, kind):
        return "graded"


@dataclass(eq=False)
class HostModule(Node):
    """A non-causal attention block run by its torch module on the whole window: output step t depends on all T
    steps, so it can only run on the host, after the window is complete. `time_dim` is where the module expects
    T (0: `[T, N, ...]`, 1: `[N, T, ...]`). Output: graded spikes (gate in (0, 1) times spikes).
    TCJA: y = x * sigmoid(conv_T(z) * conv_C(z)), z = mean_hw(x).  GAC: e = sigmoid(TA(u) * SCA(u)) * s (inputs u, s).
    `ops`: (MACs, ACs) of one sample's whole window through the module (products and sigmoids as MACs, sums, maxima
    and ReLUs as ACs), set by `convert` from a formula per module type; None where there is no formula (the energy
    counts then leave the node out and say so). `module_type`: the module's class name, kept where the module is
    not (a deployment's graph.json).
    """
    module: nn.Module = None
    time_dim: int = 0
    ops: tuple | None = None
    module_type: str = ""

    def run(self, *xs):
        if self.time_dim == 1:
            return self.module(*(x.transpose(0, 1) for x in xs)).transpose(0, 1)
        return self.module(*xs)

    def out_kind(self, *kinds):
        return "graded"


@dataclass(eq=False)
class Readout(Node):
    """From the last layer's `[T, N, K]` to the official output: "per_step_nt" → `[N, T, K]`, "per_step_tn" →
    `[T, N, K]`, "vote" → votes[n, k] = mean over T and over each group of `voters` consecutive units."""
    mode: str = "per_step_nt"
    voters: int = 1

    @property
    def batch_axis(self) -> int:
        """The axis of the official output that holds the samples (`shape` is the output without it)."""
        return 1 if self.mode == "per_step_tn" else 0

    def run(self, x):
        if self.mode == "per_step_nt":
            return x.transpose(0, 1)
        if self.mode == "vote":
            return F.avg_pool1d(x.mean(0).unsqueeze(1), self.voters, self.voters).squeeze(1)
        return x

    def out_kind(self, kind):
        return "analog"


SYNAPSES = (Conv2d, Linear)
NEURONS = (LIF, Relay)
# One Lava synapse each on chip, so one step of latency each (pooling runs as a sum-pool synapse).
HOPS = (Conv2d, Linear, AvgPool2d, MaxPool2d)
# Nodes that reorganise values without computing new ones, so a value keeps its kind (spikes stay spikes) through
# them. On chip a pooling is a synapse; for the energy counts and the host-side views they are pass-throughs.
POOLING_AND_RESHAPE = (MaxPool2d, AvgPool2d, Flatten)


@dataclass
class Graph:
    """Nodes in execution (topological) order; the first is the Input, the last the Readout."""
    nodes: dict[str, Node]
    timesteps: int
    input_shape: tuple  # one sample, as the source model takes it (batch dim excluded)
    arch: str = ""
    notes: list[str] = field(default_factory=list)  # what passes did, for the report
    segments: list[dict] = field(default_factory=list)  # host/chip segments in execution order (partition pass)
    cuts: list[dict] = field(default_factory=list)  # tensors crossing between segments (partition pass)
    quant_layers: list[dict] = field(default_factory=list)  # per-layer quantization parameters (quantize pass)

    @property
    def output(self) -> str:
        return next(reversed(self.nodes))

    def consumers(self, name: str) -> list[str]:
        return [n.name for n in self.nodes.values() if name in n.inputs]

    def copied_nodes(self) -> dict[str, Node]:
        """Every node copied (`Node.copy`), in order: the starting point of a pass, which must not change its input."""
        return {k: v.copy() for k, v in self.nodes.items()}

    def input_port_feeds(self, neuron: str) -> list[Node]:
        """The nodes whose values a neuron's input port sums: the inputs of the Add it reads (its synapse groups and
        any host values), or its single input."""
        src = self.nodes[self.nodes[neuron].inputs[0]]
        return [self.nodes[i] for i in src.inputs] if isinstance(src, Add) else [src]

    def replace(self, nodes: dict[str, Node], note: str | None = None, **fields) -> "Graph":
        return dataclasses.replace(self, nodes=nodes, notes=self.notes + ([note] if note else []), **fields)

    def to(self, device: torch.device) -> "Graph":
        """This graph with every node's tensors and host modules on `device`: the nodes copied, a tensor or module
        already there shared, a host module elsewhere copied (`nn.Module.to` would move the one this graph and
        others share)."""
        def moved(node: Node) -> Node:
            changes = {}
            for f in dataclasses.fields(node):
                value = getattr(node, f.name)
                if isinstance(value, torch.Tensor):
                    changes[f.name] = value.to(device)
                elif isinstance(value, nn.Module):
                    there = all(t.device == device for t in (*value.parameters(), *value.buffers()))
                    changes[f.name] = value if there else copy.deepcopy(value).to(device)
            return node.copy(**changes)
        return dataclasses.replace(self, nodes={k: moved(v) for k, v in self.nodes.items()})

    @torch.no_grad()
    def run(self, x: torch.Tensor, record: bool = False, observe=None):
        """Float execution on inputs `[N, *input_shape]` → (output, {node: `[T, N, ...]` tensor} if record).
        `observe(name, value)`, if given, sees every node's value as it is computed (statistics without keeping
        every value in memory). A conv that repeats an earlier one (see `shared_convs`) reuses its value."""
        shared = self.shared_convs()

        def reads(node):  # the values a node needs, under the names they are kept by
            return [shared[node.name]] if node.name in shared else [shared.get(i, i) for i in node.inputs]

        last_use = {i: node.name for node in self.nodes.values() for i in reads(node)}
        values: dict[str, torch.Tensor] = {}
        for node in self.nodes.values():
            args = [x] if isinstance(node, Input) else [values[i] for i in reads(node)]
            value = args[0] if node.name in shared else node.run(*args)
            if record or node.name not in shared:
                values[node.name] = value
            if observe is not None:
                observe(node.name, value)
            if not record:
                for i in reads(node):
                    if last_use[i] == node.name:  # free what no later node reads
                        values.pop(i, None)
        out = values[self.output]
        return (out, values) if record else (out, {})

    def observe_in_batches(self, x: torch.Tensor, observe) -> None:
        """`run` over the samples of `x` in batches (sized by RUN_BATCH_BYTES), for `observe` only: statistics over
        a data set without holding its activations."""
        largest = max(math.prod(n.shape) for n in self.nodes.values()) * self.timesteps * 4
        for batch in x.split(max(1, RUN_BATCH_BYTES // largest)):
            self.run(batch, observe=observe)

    def shared_convs(self) -> dict[str, str]:
        """Conv → the earlier conv it repeats: same input and the same weight and bias tensors. The residual unroll
        gives every sum its own copy of a term; on chip each copy has its own delay and scale, in float they are
        one computation."""
        first, shared = {}, {}
        for node in self.nodes.values():
            if isinstance(node, Conv2d):
                key = (shared.get(node.inputs[0], node.inputs[0]), id(node.weight), id(node.bias),
                       repr((node.stride, node.padding, node.dilation, node.groups)))
                if first.setdefault(key, node.name) != node.name:
                    shared[node.name] = first[key]
        return shared

    def infer(self) -> "Graph":
        """Set every node's per-step `shape` (one meta-device run) and value `kind`."""
        meta = torch.zeros((1, *self.input_shape), device="meta")
        values = {}
        for node in self.nodes.values():
            args = [meta] if isinstance(node, Input) else [values[i] for i in node.inputs]
            if isinstance(node, LIF):  # elementwise: its T-step loop on meta tensors costs time and shows nothing
                values[node.name] = args[0]
            else:
                with on_meta(node):
                    values[node.name] = node.run(*args)
            shape = values[node.name].shape
            node.shape = tuple(shape[2:]) if not isinstance(node, Readout) else \
                tuple(shape[:node.batch_axis] + shape[node.batch_axis + 1:])
            node.kind = node.out_kind(*[self.nodes[i].kind for i in node.inputs])
        return self

    def summary(self) -> list[dict]:
        return [{"name": n.name, "op": type(n).__name__, "inputs": n.inputs, "shape": list(n.shape), "kind": n.kind,
                 "placement": n.placement} for n in self.nodes.values()]


class on_meta:
    """Temporarily move a node's tensors (and host module) to the meta device, so shape inference allocates nothing."""

    def __init__(self, node: Node):
        self.node = node
        self.saved = {}

    def __enter__(self):
        for k, v in vars(self.node).items():
            if isinstance(v, torch.Tensor):
                self.saved[k] = v
                setattr(self.node, k, v.to("meta"))
            elif isinstance(v, nn.Module):
                self.saved[k] = v
                setattr(self.node, k, _meta_copy(v))

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            setattr(self.node, k, v)


def _meta_copy(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module).to("meta")


# ------------------------------------------------------------------------------------------ convolution geometry


def conv_taps(in_size: int, out_size: int, kernel: int, stride: int, pad: int, dilation: int):
    """For each output position o and kernel tap u: the input index i = o·s - p + u·d (p = `pad`, the zeros before
    the input) and whether it lies inside the input (taps on zero padding read nothing).
    → (index [out, k], valid [out, k])."""
    o = np.arange(out_size)[:, None]
    u = np.arange(kernel)[None, :]
    index = o * stride - pad + u * dilation
    return index, (index >= 0) & (index < in_size)


def pad_before(padding, kernel: int, dilation: int, dim: int) -> int:
    """Zeros before the input along `dim`: explicit, or PyTorch's 'same' (d(k-1) // 2) and 'valid' (0)."""
    if padding == "same":
        return dilation * (kernel - 1) // 2
    if padding == "valid":
        return 0
    return padding[dim]


def dense_conv_ops(in_channels: int, out_channels: int, groups: int, in_sizes, kernel, stride, padding,
                   dilation) -> int:
    """MACs of an N-d convolution on one input, taps on zero padding excluded:
    c_out · c_in/groups · Π_d #{(o, u): tap u of output o reads inside the input along d}."""
    pairs = 1
    for d, size in enumerate(in_sizes):
        pad = pad_before(padding, kernel[d], dilation[d], d)
        out = size if padding == "same" else (size + 2 * pad - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1
        pairs *= int(conv_taps(size, out, kernel[d], stride[d], pad, dilation[d])[1].sum())
    return out_channels * in_channels // groups * pairs
