"""Unrolling the MS-ResNet residual stream into synapses that read spikes (`unroll_residual_stream`).

In MS-ResNet the residual stream is real-valued: x_{k+1} = conv2_k(s2_k) + shortcut_k(x_k), where the shortcut is
the identity or a 1x1 conv (BN folded in) applied to the real x_k, and neurons (the next block's lif1, the head LIF)
read x_k. A Loihi neuron only receives synaptic input from spikes, so every x_k is rewritten as the sum of the
synapse groups that feed it:

    x_k = sum_j L_{j->k}(s2_j) + L_{0->k}(x_0) + bias_k

x_0 is where the stream starts (GAC's graded `encoding`, or without GAC the stem conv's analog output: a host->chip
cut), L_{j->k} is conv2_j composed with every shortcut conv between block j and k (one conv, see `compose_convs`),
an identity path is a 1x1 identity conv (one-to-one synapses), and bias_k collects every bias on the way (a
shortcut's bias applies once to the whole stream, so it lives in the sum, not in the terms).

In Lava every synapse adds one step of delay, so the terms of one sum arrive at different steps: a term from a
source at synapse depth d_j into a neuron at depth d_k must be delayed by d_k - 1 - d_j steps (`residual_terms`).
"""
import dataclasses
from dataclasses import dataclass

import torch

from .. import ir
from ..errors import UserError
from .relay import identity_synapse



@dataclass(frozen=True)
class ResidualTerm:
    """One input of a sum: `synapse` (a Conv2d, or a non-synapse node read directly) reading `source`."""
    synapse: str
    source: str
    source_depth: int
    delay: int  # extra steps this term must wait so that all terms of the sum arrive together
    weights: int  # synapse weights (weight tensor elements; 0 for a node read directly)
    kernel: tuple
    stride: tuple


@dataclass(frozen=True)
class ResidualSum:
    """An Add node: its depth (that of the neurons reading it) and its terms, as the export report lists them."""
    add: str
    readers: list[str]
    depth: int
    terms: list[ResidualTerm]


def synapse_depths(graph: ir.Graph) -> dict[str, int]:
    """depth(node) = number of synapse hops on the longest path from the input to the node's output."""
    depth: dict[str, int] = {}
    for node in graph.nodes.values():
        depth[node.name] = max((depth[i] for i in node.inputs), default=0) + isinstance(node, ir.HOPS)
    return depth


def residual_terms(graph: ir.Graph) -> list[ResidualSum]:
    """Every Add of the graph with the delay of each term: delay = depth(add) - depth(term), which for a synapse
    term reading a source at depth d_j into a sum at depth d_k is d_k - 1 - d_j."""
    depth = synapse_depths(graph)
    sums = []
    for node in graph.nodes.values():
        if isinstance(node, ir.Add):
            terms = [_term(graph.nodes[i], depth, depth[node.name]) for i in node.inputs]
            sums.append(ResidualSum(node.name, graph.consumers(node.name), depth[node.name], terms))
    return sums


def _term(node: ir.Node, depth: dict[str, int], sum_depth: int) -> ResidualTerm:
    if isinstance(node, ir.Conv2d):
        source, kernel, stride = node.inputs[0], tuple(node.weight.shape[2:]), tuple(node.stride)
    else:
        source, kernel, stride = node.name, (), ()
    return ResidualTerm(node.name, source, depth[source], sum_depth - depth[node.name],
                        node.weight.numel() if isinstance(node, ir.Conv2d) else 0, kernel, stride)


def compose_convs(first: ir.Conv2d, second: ir.Conv2d) -> ir.Conv2d:
    """second(first(x)) as one conv, when `second` is 1x1 without padding (a shortcut conv):

        w[o, i, u, v] = sum_c w2[o, c] w1[c, i, u, v],  b = w2 b1 + b2,  stride s1 * s2, padding and dilation of first.

    Exact at the edges too: a 1x1 conv without padding only samples first's output every s2 pixels, and those samples
    are first's kernel placed every s1 * s2 pixels on the same padded input (output size floor(floor(m/s1)/s2) =
    floor(m/(s1 s2)), m = H + 2p - dilated kernel). Computed in float64, stored in first's dtype.
    """
    _check_composable(first, second)
    mix = second.weight[:, :, 0, 0].double()
    weight = torch.einsum("oc,ciuv->oiuv", mix, first.weight.double()).to(first.weight.dtype)
    stride = (first.stride[0] * second.stride[0], first.stride[1] * second.stride[1])
    return dataclasses.replace(first, name=f"{first.name}+{second.name}", weight=weight,
                               bias=_through(second, first.bias), stride=stride, shape=second.shape)


def _pointwise(conv: ir.Conv2d) -> bool:
    return tuple(conv.weight.shape[2:]) == (1, 1) and tuple(conv.padding) == (0, 0) and conv.groups == 1


def _check_composable(first: ir.Conv2d, second: ir.Conv2d) -> None:
    if not _pointwise(second):
        raise UserError(f"residual-stream conv {second.name} is not a 1x1 conv without padding or groups: "
                        "unroll_residual_stream cannot compose it exactly.")
    if first.groups != 1 or isinstance(first.padding, str):
        raise UserError(f"conv {first.name} (groups or string padding) cannot be composed with the residual-stream "
                        f"conv {second.name}.")


def _through(conv: ir.Conv2d, bias: torch.Tensor | None) -> torch.Tensor | None:
    """A per-channel constant b through a 1x1 conv without padding: w b + conv.bias (still per-channel)."""
    out = conv.bias
    if bias is not None:
        mixed = (conv.weight[:, :, 0, 0].double() @ bias.double()).to(bias.dtype)
        out = mixed if out is None else mixed + out
    return out


def _plus(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return b if a is None else a if b is None else a + b


def _stream(graph: ir.Graph) -> set[str]:
    """The real-valued stream: the Adds and the convs that read it (shortcut convs), in execution order."""
    stream: set[str] = set()
    for node in graph.nodes.values():
        if isinstance(node, ir.Add) or (isinstance(node, ir.Conv2d) and node.inputs[0] in stream):
            stream.add(node.name)
    return stream


def _expand(nodes: dict[str, ir.Node], stream: set[str], name: str,
            memo: dict) -> tuple[list[ir.Conv2d], torch.Tensor | None]:
    """Stream value `name` as (bias-free terms, each a conv on one non-stream source; the summed bias).
    `memo` keeps each stream value's expansion, so every sum that reads it shares the same term weights (composed
    once; runs can then compute a shared term once, see `Graph.run`)."""
    if name not in memo:
        memo[name] = _expand_once(nodes, stream, name, memo)
    return memo[name]


def _expand_once(nodes, stream, name, memo):
    node = nodes[name]
    if isinstance(node, ir.Add):
        terms, bias = [], node.bias
        for i in node.inputs:
            t, b = _expand(nodes, stream, i, memo)
            terms, bias = terms + t, _plus(bias, b)
        return terms, bias
    if isinstance(node, ir.BatchNorm):
        raise UserError(f"{name} is a BatchNorm on the residual stream: run fold_batchnorm before "
                        "unroll_residual_stream.")
    if isinstance(node, ir.Conv2d) and nodes[node.inputs[0]].kind != "analog":
        # already a synapse on spikes: a block's conv2, or a shortcut conv on GAC's graded encoding
        return [dataclasses.replace(node, inputs=list(node.inputs), bias=None)], node.bias
    if name in stream or (isinstance(node, ir.Conv2d) and _pointwise(node)):
        # a shortcut conv on the real stream (or on an analog x_0): it acts on every term and on the bias
        terms, bias = _expand(nodes, stream, node.inputs[0], memo)
        unbiased = dataclasses.replace(node, bias=None)
        return [compose_convs(t, unbiased) for t in terms], _through(node, bias)
    return [identity_synapse(node.name, node.name, node.shape)], None  # x_0 itself (GAC's encoding, or the stem
    # conv), read one-to-one


def _unrolled_sum(nodes, stream, value: str, add_name: str, memo: dict) -> list[ir.Node]:
    """The term convs (named `<add>.from.<source>`) and the n-ary Add that replace stream value `value`."""
    terms, bias = _expand(nodes, stream, value, memo)
    named = [dataclasses.replace(t, name=f"{add_name}.from.{t.inputs[0]}") for t in terms]
    return named + [ir.Add(add_name, [t.name for t in named], nodes[value].shape, "analog", bias=bias)]


def _put(nodes: dict[str, ir.Node], node: ir.Node) -> None:
    if node.name in nodes:  # two paths from one source into one sum, or two sums named after one reader
        raise UserError(f"unroll_residual_stream would create {node.name} twice; this stream shape is not supported.")
    nodes[node.name] = node


def _live(nodes: dict[str, ir.Node], output: str) -> dict[str, ir.Node]:
    """Only the nodes the output depends on, in their order."""
    needed, todo = set(), [output]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed.add(name)
            todo += nodes[name].inputs
    return {k: v for k, v in nodes.items() if k in needed}


def unroll_residual_stream(graph: ir.Graph) -> ir.Graph:
    """Replace every real-valued stream value that a non-stream node (a neuron) reads by an n-ary Add of synapses
    on spike (or host) sources: x_k = sum_j L_{j->k}(s2_j) + L_{0->k}(x_0) + bias_k (see the module docstring).

    The sum is named `<reader>.in` (or keeps the stream node's name if several nodes read it); the old Adds,
    shortcut convs and conv2 nodes become dead and are removed. Needs folded BatchNorm and inferred shapes and
    kinds (a conv on spikes is a term; a 1x1 conv on an analog value is a shortcut on x_0).
    Preserves: the function up to float rounding (spikes change only at exact threshold ties)."""
    stream = _stream(graph)
    if not stream:
        return graph.replace(dict(graph.nodes), "unroll_residual_stream: no residual stream (no Add), unchanged")
    readers = {s: [r for r in graph.consumers(s) if r not in stream] for s in stream}
    nodes, renamed, memo = {}, {}, {}
    for name, node in graph.nodes.items():
        if name not in stream:
            _put(nodes, dataclasses.replace(node, inputs=[renamed.get(i, i) for i in node.inputs]))
        elif readers[name]:  # emitted where the old value was: every source of the sum is already above
            renamed[name] = f"{readers[name][0]}.in" if len(readers[name]) == 1 else name
            for new in _unrolled_sum(graph.nodes, stream, name, renamed[name], memo):
                _put(nodes, new)
    live = _live(nodes, graph.output)
    return graph.replace(live, _cost_note(graph, graph.replace(live)))


def _cost_note(before: ir.Graph, after: ir.Graph) -> str:
    def weights(g):
        return sum(n.weight.numel() for n in g.nodes.values() if isinstance(n, ir.SYNAPSES))

    def convs(g):
        return sum(isinstance(n, ir.Conv2d) for n in g.nodes.values())

    def fan_in(sums):
        return max(len(s.terms) for s in sums)

    def delay(sums):
        return max(t.delay for s in sums for t in s.terms)

    old, new = residual_terms(before), residual_terms(after)
    listing = "; ".join(f"{s.add} <- " + ", ".join(f"{t.source}+{t.delay}" for t in s.terms) for s in new)
    return (f"unroll_residual_stream: {len(new)} sums of synapses on spike/host sources replace the real-valued "
            f"stream; synapse weights {weights(before):,} -> {weights(after):,}, Conv2d nodes {convs(before)} -> "
            f"{convs(after)}, max fan-in {fan_in(old)} -> {fan_in(new)} terms, max extra delay {delay(old)} -> "
            f"{delay(new)} steps (term source+delay: {listing})")
