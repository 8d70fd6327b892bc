"""normalise_neurons: a neuron's decay input (SpikingJelly's 1/tau) moves into the weights of the synapse that feeds
it. Preserves the function up to float rounding (for tau = 2 the scaling by 1/2 is exact)."""
import torch

from helpers import demo_model
from snn2hw import ir
from snn2hw.convert import convert
from snn2hw.passes.fold import fold_batchnorm, normalise_neurons


def test_normalise_neurons_moves_decay_input_into_the_weights_with_the_same_spikes():
    model, x = demo_model("tcja-tiny")
    graph = fold_batchnorm(convert(model)).infer()
    normal = normalise_neurons(graph).infer()
    for name, node in graph.nodes.items():
        if isinstance(node, ir.LIF):
            new = normal.nodes[name]
            assert (node.tau, node.input_scale) == (2.0, 0.5) and (new.tau, new.input_scale) == (None, 1.0)
            assert new.decay == 0.5 and new.fire_at_threshold  # SpikingJelly fires at v >= threshold
            src = node.inputs[0]
            assert torch.equal(normal.nodes[src].weight, graph.nodes[src].weight / 2)
    before, after = graph.run(x, record=True)[1], normal.run(x, record=True)[1]
    for name, node in normal.nodes.items():
        if isinstance(node, ir.LIF):
            assert torch.equal(before[name], after[name]), name


def test_normalise_neurons_leaves_neurons_without_decay_input_alone():
    model, x = demo_model("gac-msresnet-tiny")  # its neurons charge v + x: nothing to move
    graph = fold_batchnorm(convert(model)).infer()
    normal = normalise_neurons(graph).infer()
    assert list(normal.nodes) == list(graph.nodes) and normal.notes[-1].endswith("synapses of 0 neurons")
    for name, node in graph.nodes.items():
        for field in ("weight", "bias"):
            if getattr(node, field, None) is not None:
                assert torch.equal(getattr(normal.nodes[name], field), getattr(node, field)), (name, field)
        if isinstance(node, ir.LIF):
            assert (normal.nodes[name].tau, normal.nodes[name].input_scale) == (None, 1.0)
    before, after = graph.run(x, record=True), normal.run(x, record=True)
    assert torch.equal(before[0], after[0])
    assert all(torch.equal(before[1][n], after[1][n]) for n in graph.nodes)


def test_normalise_neurons_scales_every_term_of_a_sum_the_neuron_reads():
    """A residual join into a SpikingJelly-form LIF (NIR's LIF with r = 1): 1/tau moves into the synapse term's
    weights and, for the term that is no synapse (here the input itself), into a new one-to-one synapse."""
    import nir
    import numpy as np

    from snn2hw.nir_import import nir_model

    full = lambda v: np.full(4, v, dtype=np.float32)  # noqa: E731
    graph = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Linear(weight=np.random.default_rng(0).normal(0, 1, (4, 4)).astype(np.float32)),
        "lif": nir.LIF(tau=full(2.0), r=full(1.0), v_leak=full(0.0), v_threshold=full(0.5)),
        "out": nir.Output(output_type={"output": np.array([4])})},
        edges=[("in", "fc"), ("fc", "lif"), ("in", "lif"), ("lif", "out")], metadata={"dt": 1.0}, type_check=False)
    source = convert(nir_model(graph, "test", timesteps=8)[0], "nir")
    normal = normalise_neurons(source).infer()
    lif = normal.nodes["lif"]
    assert (source.nodes["lif"].input_scale, lif.input_scale, lif.tau) == (0.5, 1.0, None)
    assert normal.nodes["lif.join"].inputs == ["fc", "lif.join.scaled.in"]
    assert list(normal.nodes).index("lif.join.scaled.in") < list(normal.nodes).index("lif.join")
    assert torch.equal(normal.nodes["fc"].weight, source.nodes["fc"].weight / 2)
    assert torch.equal(normal.nodes["lif.join.scaled.in"].weight, torch.eye(4) / 2)
    torch.manual_seed(0)
    x = torch.randn(64, 8, 4)
    spikes = source.run(x)[0]
    assert spikes.any() and torch.equal(normal.run(x)[0], spikes)  # tau = 2: the spikes of the same membranes
