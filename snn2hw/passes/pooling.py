"""Pooling passes: average pools folded into the synapse after them, max-pools over spikes turned into ORs (Loihi
has no pooling of its own).

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


def _pool_matrix(pool: ir.AvgPool2d, in_hw: tuple) -> torch.Tensor:
    """The average-pool of one channel as a matrix `[out_h*out_w, in_h*in_w]` (pooling acts on channels alike)."""
    basis = torch.eye(in_hw[0] * in_hw[1], dtype=torch.float64).view(-1, 1, *in_hw)
    probe = pool.copy(inputs=[])
    return probe.run(basis.unsqueeze(0)).squeeze(0).flatten(1).T


def fold_avgpool_linear(graph: ir.Graph) -> ir.Graph:
    """AvgPool2d → Flatten → Linear becomes one Linear on the unpooled spikes: W'[k, c, p] = Σ_q W[k, c, q] P[q, p]
    with P the pooling matrix of one channel. The MS-ResNet head then reads binary spikes instead of averages.

    Preserves: the function up to float rounding."""
    nodes = graph.copied_nodes()
    folded = []
    for name, pool in graph.nodes.items():
        readers = graph.consumers(name)
        if not isinstance(pool, ir.AvgPool2d) or len(readers) != 1:
            continue
        flat = graph.nodes[readers[0]]
        linear_readers = graph.consumers(flat.name)
        if not isinstance(flat, ir.Flatten) or len(linear_readers) != 1:
            continue
        linear = graph.nodes[linear_readers[0]]
        if not isinstance(linear, ir.Linear):
            continue
        src = graph.nodes[pool.inputs[0]]
        channels, *hw = src.shape
        matrix = _pool_matrix(pool, tuple(hw)).to(linear.weight.dtype)  # [out_hw, in_hw]
        w = linear.weight.view(linear.weight.shape[0], channels, -1) @ matrix
        nodes[flat.name] = ir.Flatten(flat.name, [src.name])
        nodes[linear.name] = linear.copy(weight=w.flatten(1), inputs=[flat.name])
        del nodes[name]
        folded.append(name)
    return graph.replace(nodes, f"fold_avgpool_linear: folded {', '.join(folded) or 'no'} average-pool(s) into the "
                                "linear layer after them")


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
