"""fold_tcja_gates (`--tcja fold`): each TCJA gate becomes a static per-channel scale folded into the next synapse.
Preserves not the function (the gate loses its dependence on time and sample; the accuracy cost is measured), but
buys a causal backbone that runs on chip in one piece, with no host round trip."""
import torch

from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.convert import convert
from snn2hw.demo import demo_checkpoint
from snn2hw.models import digits
from snn2hw.models.zoo import class_scores
from snn2hw.passes.fold import _mean_gates, fold_batchnorm, fold_tcja_gates, normalise_neurons
from snn2hw.passes.partition import partition_host_chip
from snn2hw.passes.pipeline import run_passes
from snn2hw.passes.pooling import maxpool_to_or


def _accuracy(graph, arch, x, y):
    return float((class_scores(arch, graph.run(x)[0]).argmax(1).numpy() == y).mean())


def test_fold_tcja_gates_puts_the_backbone_on_chip_in_one_piece_at_little_accuracy_cost():
    model = load_checkpoint(demo_checkpoint("tcja-tiny")).model
    x, y = (torch.as_tensor(a) for a in digits.digit_events("test"))
    calib = torch.as_tensor(digits.digit_events("train")[0][:128])
    graph = run_passes(convert(model), [fold_batchnorm, normalise_neurons])
    folded = fold_tcja_gates(graph, calib).infer()
    assert not any(isinstance(n, ir.HostModule) for n in folded.nodes.values())
    # A static per-channel gate keeps most of the accuracy on the demo (it is reported, not assumed).
    assert _accuracy(folded, "tcja-tiny", x, y.numpy()) >= _accuracy(graph, "tcja-tiny", x, y.numpy()) - 0.03
    ored = maxpool_to_or(folded).infer()
    pools = [n for n, node in folded.nodes.items() if isinstance(node, ir.MaxPool2d)]
    assert pools and all(isinstance(ored.nodes[p], ir.LIF) for p in pools)
    before, after = folded.run(x[:40], record=True), ored.run(x[:40], record=True)
    assert torch.equal(before[0], after[0])
    assert all(torch.equal(before[1][p], after[1][p]) for p in pools)  # OR of binary spikes == max-pool, exactly
    parts = partition_host_chip(ored)
    assert [s["placement"] for s in parts.segments] == ["host", "chip", "host"]
    assert [(c["direction"], c["kind"], c["waits_for_window"]) for c in parts.cuts] == [
        ("host->chip", "graded", False), ("chip->host", "binary", False)]


def test_fold_tcja_gates_averages_each_gate_over_every_sample_and_step_batch_by_batch(monkeypatch):
    model = load_checkpoint(demo_checkpoint("tcja-tiny")).model
    calib = torch.as_tensor(digits.digit_events("train")[0][:20])
    graph = run_passes(convert(model), [fold_batchnorm, normalise_neurons])
    gates = [n for n, node in graph.nodes.items() if isinstance(node, ir.HostModule)]
    _, values = graph.run(calib, record=True)
    want = {g: graph.nodes[g].module.gate(values[graph.nodes[g].inputs[0]]).mean(dim=(0, 1)) for g in gates}
    monkeypatch.setattr(ir, "RUN_BATCH_BYTES", 1)  # one sample per batch
    got = _mean_gates(graph, gates, calib)
    assert got.keys() == want.keys() and len(got) == 2
    for g in gates:
        torch.testing.assert_close(got[g], want[g], rtol=1e-6, atol=1e-7)
        assert 0 < float(got[g].min()) < float(got[g].max()) < 1, g  # sigmoid gates, per channel
