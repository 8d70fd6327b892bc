"""Pooling passes: average pools folded into the conv after them or turned into depthwise conv synapses, max-pools
over spikes turned into ORs (Loihi has no pooling of its own).

Each pass returns a new graph and adds a line to `graph.notes` saying what it did, for the export report.
"""
import torch

from .. import ir


def maxpool_to_or(graph: ir.Graph) -> ir.Graph:
    """Max-pool over binary spikes is an OR: a depthwise sum-pool synapse (weights 1) into a neuron without memory
    that fires when its window holds at least one spike (v = x, fire on x > 1/2). Loihi has no max-pool; this
    costs one synapse layer and one neuron layer (and so one step of latency on Lava).

    Preserves: the spikes exactly (counts are integers: count > 1/2 iff count >= 1)."""
    nodes = {}
    converted = []
    for name, node in graph.nodes.items():
        src = graph.nodes[node.inputs[0]] if node.inputs else None
        if isinstance(node, ir.MaxPool2d) and src.kind == "binary":
            channels = src.shape[0]
            pool = ir.Conv2d(f"{name}.sum", list(node.inputs), weight=torch.ones(channels, 1, *node.kernel_size),
                             stride=node.stride, padding=node.padding, groups=channels)
            nodes[pool.name] = pool
            nodes[name] = ir.LIF(name, [pool.name], decay=0.0, threshold=0.5)
            converted.append(name)
        else:
            nodes[name] = node.copy()
    return graph.replace(nodes, f"maxpool_to_or: {len(converted)} max-pools over binary spikes became "
                                "sum-pool + fire-on-one neurons")


def avgpool_to_conv(graph: ir.Graph) -> ir.Graph:
    """An average pool that no conv after it absorbs (`fold_avgpool_conv`; the MS-ResNet head's, before its Linear)
    becomes the synapse it is on chip: a depthwise Conv2d of weight 1/(kh·kw) per tap, kernel and stride the pool's
    (adaptive: the input size over the output size, which must divide it). `relay_sums` then sends its values by a
    relay to the Linear, which reads C·h·w averages instead of the C·H·W spikes a Linear with the pool folded in
    would read: for ImageNet's head 512 inputs per neuron, not 25,088, and 0.5 M weights, not 12.8 M.

    Preserves: the function up to float rounding (a sum of weighted taps instead of a mean)."""
    nodes = graph.copied_nodes()
    converted = []
    for name, pool in graph.nodes.items():
        if not isinstance(pool, ir.AvgPool2d):
            continue
        channels, *in_hw = graph.nodes[pool.inputs[0]].shape
        if pool.output_size is not None:
            if any(i % o for i, o in zip(in_hw, pool.shape[1:])):
                continue  # windows of unequal sizes: no single kernel; the pool stays (and is refused on chip)
            kernel = tuple(i // o for i, o in zip(in_hw, pool.shape[1:]))
            stride = kernel
        else:
            kernel, stride = tuple(pool.kernel_size), tuple(pool.stride)
        weight = torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]))
        nodes[name] = ir.Conv2d(name, list(pool.inputs), weight=weight, stride=stride, padding=(0, 0),
                                groups=channels)
        converted.append(name)
    return graph.replace(nodes, f"avgpool_to_conv: {', '.join(converted) or 'no'} average-pool(s) became depthwise "
                                "conv synapses")


def fold_avgpool_conv(graph: ir.Graph) -> ir.Graph:
    """AvgPool2d (kernel k, stride s) → Conv2d (kernel K, stride S, padding P) becomes one Conv2d on the unpooled
    input, kernel (K-1)s + k, stride S s, padding P s:

        W'[o, c, i s + a, j s + b] += W[o, c, i, j] / k²     (0 <= a, b < k)

    exact where the pool covers its input to the last row and column (out·s >= in on both axes), so that the conv's
    zero padding of the pooled map is zero padding of the input too. TCJA's CIFAR10-DVS and N-Caltech101 nets pool
    spikes this way; the conv then reads binary spikes on chip, with k² times the weights per output.

    Preserves: the function up to float rounding."""
    nodes = graph.copied_nodes()
    folded = []
    for name, pool in graph.nodes.items():
        readers = graph.consumers(name)
        if not isinstance(pool, ir.AvgPool2d) or pool.output_size is not None or len(readers) != 1:
            continue
        conv = graph.nodes[readers[0]]
        in_hw = graph.nodes[pool.inputs[0]].shape[1:]
        if not (isinstance(conv, ir.Conv2d) and not isinstance(conv.padding, str) and tuple(conv.dilation) == (1, 1)
                and all(o * s >= i for o, s, i in zip(pool.shape[1:], pool.stride, in_hw))):
            continue
        (k_h, k_w), (s_h, s_w) = pool.kernel_size, pool.stride
        out_c, in_c, big_h, big_w = conv.weight.shape
        weight = torch.zeros(out_c, in_c, (big_h - 1) * s_h + k_h, (big_w - 1) * s_w + k_w, dtype=torch.float64)
        for a in range(k_h):
            for b in range(k_w):
                weight[:, :, a:a + big_h * s_h:s_h, b:b + big_w * s_w:s_w] += conv.weight.double() / (k_h * k_w)
        nodes[conv.name] = conv.copy(
            inputs=list(pool.inputs), weight=weight.to(conv.weight.dtype),
            stride=(conv.stride[0] * s_h, conv.stride[1] * s_w), padding=(conv.padding[0] * s_h, conv.padding[1] * s_w))
        del nodes[name]
        folded.append(f"{name} into {conv.name} (kernel {tuple(weight.shape[2:])})")
    return graph.replace(nodes, f"fold_avgpool_conv: folded {'; '.join(folded) or 'no average-pool'} into the conv "
                                "after it")
