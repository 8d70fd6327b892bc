"""Shaping the chip graph as Loihi 2 runs it: every value a synapse or the host reads is sent by a neuron
(`relay_sums`), and the synapses of one neuron read sources of one depth (`balance_delays`).

On Loihi 2 a synapse reads the spikes of neurons (or of a host input adapter) and feeds one neuron's input port;
no value goes from synapse to synapse, the host reads neurons, and no public Loihi 2 run uses a synaptic delay
(`exporters/loihi2_evidence.py`). A `Relay` neuron (Lava's `GradedVec`, which public Loihi 2 runs use) sends the sum
its input port received as a signed graded spike, so it carries the real values the models need between synapses:

* `relay_sums`: every sum (an Add: MS-ResNet's residual stream, or a sum the residual unroll made) is sent by a
  relay, and so is a synapse's accumulation that no neuron reads (a readout, a pool before a Linear); a neuron or
  sum that would read a value no synapse sends (a relay, a host tensor) reads it through an identity synapse. Biases stay where they are in float; the quantizer
  moves a relay's share to the synapses that read it, since a GradedVec has no bias.
* `balance_delays`: each synapse adds one step on Loihi, so the terms of a sum computed along paths of different
  lengths would arrive at different steps; an earlier term reads its source through a chain of relays, one step
  each, instead of a synaptic delay.
"""
import torch

from .. import ir
from .partition import placements


def identity_synapse(name: str, source: str, shape: tuple) -> ir.Node:
    """y = x through one-to-one synapses of weight 1 from `source` (values of `shape`): a 1x1 conv on `(C, H, W)`
    values, a Linear on flat ones."""
    eye = torch.eye(shape[0])
    if len(shape) == 1:
        return ir.Linear(name, [source], weight=eye)
    return ir.Conv2d(name, [source], weight=eye.view(*eye.shape, 1, 1), stride=(1, 1), padding=(0, 0))


def _relay(name: str, source: str) -> ir.Relay:
    return ir.Relay(name, [source])


def relay_sums(graph: ir.Graph) -> ir.Graph:
    """Insert a Relay after every chip Add and after every chip synapse that something other than a neuron or a sum
    reads (the Readout, a flatten before a Linear); make every chip neuron and Add read a non-synapse value (a
    relay, a host tensor) through an identity synapse
    (`<reader>.from.<value>`). Needs inferred shapes.

    Preserves: the function exactly (a relay is the identity, and so is an identity synapse: 1·x)."""
    placed = placements(graph)
    old = graph.nodes
    nodes: dict[str, ir.Node] = {}
    renamed: dict[str, str] = {}  # a value now read through its relay → the relay

    def through_synapse(reader: str, value: str) -> str:
        """The name `reader` reads `value` by, inserting an identity synapse where `value` is not a synapse."""
        shape, value = old[value].shape, renamed.get(value, value)
        if isinstance(nodes[value], ir.HOPS):
            return value
        synapse = identity_synapse(f"{reader}.from.{value}", value, shape)
        nodes[synapse.name] = synapse
        return synapse.name

    count = 0
    for name, node in old.items():
        node = node.copy()
        on_chip = placed[name] == "chip"
        if on_chip and isinstance(node, (ir.Add, ir.LIF)):
            node.inputs = [through_synapse(name, i) for i in node.inputs]
        else:
            node.inputs = [renamed.get(i, i) for i in node.inputs]
        nodes[name] = node
        relayed = isinstance(node, ir.Add) or (isinstance(node, ir.SYNAPSES) and any(
            not isinstance(old[r], (*ir.NEURONS, ir.Add)) for r in graph.consumers(name)))
        if on_chip and relayed:
            nodes[f"{name}.relay"] = _relay(f"{name}.relay", name)
            renamed[name] = f"{name}.relay"
            count += 1
    identities = sum(1 for n in nodes if n not in old and not isinstance(nodes[n], ir.Relay))
    return graph.replace(nodes, f"relay_sums: {count} sums and readouts sent by relay neurons, {identities} identity "
                                "synapses in front of neurons and sums that read a relay or a host value")


def _depths(graph: ir.Graph, placed: dict[str, str]) -> dict[str, int | None]:
    """Chip depth of every node's value: the Lava step its logical step 0 leaves at, counting one per synapse
    (pooling included). None for host values and for synapses reading them: the host sends a value when it is
    needed, so such a synapse arrives with whatever it is summed with."""
    depth: dict[str, int | None] = {}
    for name, node in graph.nodes.items():
        if placed[name] != "chip":
            depth[name] = None
        elif isinstance(node, ir.HOPS):
            depth[name] = None if depth[node.inputs[0]] is None else depth[node.inputs[0]] + 1
        else:
            known = [depth[i] for i in node.inputs if depth[i] is not None]
            depth[name] = max(known, default=1 if isinstance(node, ir.NEURONS + (ir.Add,)) else None)
    return depth


def is_identity(synapse: ir.Node) -> bool:
    """Whether `synapse` is one-to-one with weight 1 and no bias (`identity_synapse`): y = x."""
    if not isinstance(synapse, ir.SYNAPSES) or synapse.bias is not None:
        return False
    w = synapse.weight
    if isinstance(synapse, ir.Conv2d):
        if tuple(w.shape[2:]) != (1, 1) or tuple(synapse.stride) != (1, 1) or synapse.groups != 1 \
                or tuple(synapse.padding) != (0, 0):
            return False
        w = w[:, :, 0, 0]
    return w.shape[0] == w.shape[1] and torch.equal(w, torch.eye(len(w), dtype=w.dtype))


def balance_delays(graph: ir.Graph) -> ir.Graph:
    """Where the chip synapses summed at one neuron (through an Add) read sources of different depths, delay each
    earlier term by relays, one step per link (`<value>.delay<k>`, a relay behind an identity synapse):

    * a term on spikes, or an identity, reads its source through the source's chain (shared by every reader);
    * a term with real weights on graded values (a downsample conv on the residual stream) is computed first, into a
      relay of its own (`<term>.relay`), which is delayed and read through an identity synapse: its weights then
      meet the stream at full precision, and the identity rescales to the sum (`quantize`).

    Preserves: the function exactly (relays and identity synapses are identities)."""
    placed = placements(graph)
    depth = _depths(graph, placed)
    late: dict[str, int] = {}  # synapse → the steps it arrives too early
    for name, node in graph.nodes.items():
        if placed[name] == "chip" and isinstance(node, ir.Add):
            for i in node.inputs:
                if depth[i] is not None and depth[i] < depth[name]:
                    late[i] = depth[name] - depth[i]
    if not late:
        return graph.replace(dict(graph.nodes), "balance_delays: every sum's terms arrive together, unchanged")
    chains: dict[str, list[str]] = {}  # value → itself and its delayed copies, one step apart
    nodes: dict[str, ir.Node] = {}
    renamed: dict[str, str] = {}

    def delayed(value: str, steps: int, shape: tuple) -> str:
        chain = chains.setdefault(value, [value])
        while len(chain) <= steps:
            link = identity_synapse(f"{value}.delay{len(chain)}.in", chain[-1], shape)
            nodes[link.name] = link
            nodes[f"{value}.delay{len(chain)}"] = _relay(f"{value}.delay{len(chain)}", link.name)
            chain.append(f"{value}.delay{len(chain)}")
        return chain[steps]

    for name, node in graph.nodes.items():
        node = node.copy(inputs=[renamed.get(i, i) for i in node.inputs])
        if name not in late:
            nodes[name] = node
            continue
        source = graph.nodes[node.inputs[0]]
        if source.kind == "binary" or is_identity(node):
            nodes[name] = node.copy(inputs=[delayed(source.name, late[name], source.shape)])
            continue
        nodes[name] = node
        nodes[f"{name}.relay"] = _relay(f"{name}.relay", name)
        end = delayed(f"{name}.relay", late[name] - 1, graph.nodes[name].shape)
        reader = identity_synapse(f"{graph.consumers(name)[0]}.from.{end}", end, graph.nodes[name].shape)
        nodes[reader.name] = reader
        renamed[name] = reader.name
    links = sum(len(c) - 1 for c in chains.values())
    listing = ", ".join(f"{s} +{len(c) - 1}" for s, c in chains.items())
    return graph.replace(nodes, f"balance_delays: {links} relays delay {len(chains)} values ({listing})")
