"""The fixed-point simulator: the per-step equations of DESIGN.md on a demo layer, an official-size GAC-MS-ResNet-18,
and the residual unroll's repeated term copies computed once."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from helpers import calibrated, compiled_demo
from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint, save_checkpoint
from snn2hw.compile import compile_model
from snn2hw.deployment import load_deployment
from snn2hw.export import export_deployment
from snn2hw.hardware_sims import fixed_point
from snn2hw.hardware_sims.runner import ChipSegment, graph_segments, run_fixed
from snn2hw.ladder import simulate
from snn2hw.models.zoo import build_model


def _lif_by_design_md(a, du, dv, vth, bias):
    """DESIGN.md's per-step equations, written out independently of loihi_numerics, on int64 arrays [T, ...]."""
    def rtz(x):  # sign(x) * (|x| >> 12)
        return np.sign(x) * (np.abs(x) >> 12)
    u = np.zeros(a.shape[1:], np.int64)
    v = np.zeros(a.shape[1:], np.int64)
    out = []
    for t in range(len(a)):
        x = rtz(u * (4096 - (du + 1))) + (a[t] << 6)
        u = np.where(x > 2 ** 23, x - 2 ** 24, x)
        u = np.where(u <= -2 ** 23, x + 2 ** 24, u)
        v = np.clip(rtz(v * (4096 - dv)) + u + bias, -(2 ** 23 - 1), 2 ** 23 - 1)
        s = v > (vth << 6)
        v = np.where(s, 0, v)
        out.append(s)
    return np.stack(out)


def test_fixed_simulator_layer_equals_design_md_equations():
    compiled, x, _, _ = compiled_demo("tcja-tiny")
    graph = compiled.fixed
    conv, lif = graph.nodes["conv.0.0"], graph.nodes["conv.1"]
    _, act = run_fixed(graph, torch.as_tensor(x[:6]))
    events = torch.as_tensor(x[:6]).transpose(0, 1).double()  # integer event counts: the payload as it is
    a = torch.nn.functional.conv2d(events.flatten(0, 1), torch.as_tensor(conv.quant["weight"]).double(),
                                   stride=conv.stride, padding=conv.padding).unflatten(0, events.shape[:2])
    q = lif.quant
    bias = (q["bias_mant"] << q["bias_exp"]).astype(np.int64)
    want = _lif_by_design_md(np.rint(a.numpy()).astype(np.int64), q["du"], q["dv"], q["vth"], bias)
    got = act.values["conv.1"].numpy().astype(bool)
    assert np.array_equal(got, want) and want.sum() > 0


@pytest.fixture(scope="module")
def official_gac18():
    """gac-msresnet18-cifar at official size, T = 4, seeded random weights → (compiled, calibration inputs)."""
    torch.manual_seed(3)
    calib = torch.randn(4, 3, 32, 32)
    model = calibrated(build_model("gac-msresnet18-cifar", timesteps=4), calib)
    return compile_model(model, "gac-msresnet18-cifar", calib), calib


def test_fixed_point_on_official_size_gac_msresnet18(official_gac18):
    compiled, calib = official_gac18
    assert [s["placement"] for s in compiled.folded.segments] == ["host", "chip", "host"]
    x = calib[:2]
    folded_out, values = compiled.folded.run(x, record=True)
    fixed_out, act = run_fixed(compiled.fixed, x)
    assert sum(act.u_wraps.values()) == 0
    for name, node in compiled.folded.nodes.items():
        if isinstance(node, ir.LIF) and node.placement == "chip":
            # Quantization moves firing rates a little; it must not silence or saturate a layer.
            rate_f, rate_q = float(values[name].mean()), float(act.values[name].mean())
            assert abs(rate_f - rate_q) < 0.05, (name, rate_f, rate_q)
    assert torch.corrcoef(torch.stack([folded_out.flatten(), fixed_out.flatten()]))[0, 1] > 0.9


def test_fixed_point_computes_repeated_term_copies_once_with_the_same_result(official_gac18, monkeypatch):
    compiled, calib = official_gac18
    graph, x = compiled.fixed, calib[:2]
    repeats = {k: v for s in graph_segments(graph) if isinstance(s, ChipSegment) for k, v in s.repeats.items()}
    # The unroll's copies of a term, in sums whose scale the same term sets: most of this model's copies.
    assert len(repeats) >= len(graph.shared_convs()) // 2, (repeats, graph.shared_convs())
    for name, first in repeats.items():
        assert graph.nodes[name].inputs == graph.nodes[first].inputs
        assert np.array_equal(graph.nodes[name].quant["weight"], graph.nodes[first].quant["weight"])
    out, act = run_fixed(graph, x)
    monkeypatch.setattr(fixed_point, "repeated_synapses", lambda spec, arrays: {})
    every_conv_out, every_conv = run_fixed(graph, x)
    assert torch.equal(out, every_conv_out)
    assert act.values.keys() == every_conv.values.keys()
    assert all(torch.equal(act.values[k], every_conv.values[k]) for k in act.values)
    assert act.cut_inputs.keys() == every_conv.cut_inputs.keys()
    assert all(np.array_equal(act.cut_inputs[k], every_conv.cut_inputs[k]) for k in act.cut_inputs)
    assert (act.max_abs_input, act.u_wraps, act.v_saturations) == \
        (every_conv.max_abs_input, every_conv.u_wraps, every_conv.v_saturations)


@pytest.mark.slow
def test_official_gac18_deployment_runs_from_its_files_as_the_recompiled_graph(official_gac18, tmp_path):
    """At official size too, the deployment's files (chip specs in fixed point, host segments by onnxruntime) give
    the spike counts of every layer and the outputs that rebuilding the graph from its `source/` gives (what
    `simulate DEPLOY_DIR` ran before), and running them builds no model."""
    compiled, calib = official_gac18
    model = copy.deepcopy(compiled.model)
    for m in model.modules():  # a channel the random inputs never reach has variance 0, which loading refuses
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.clamp_(min=1e-3)
    save_checkpoint(tmp_path / "m.pt", model, "gac-msresnet18-cifar", {"timesteps": 4})
    export_deployment(load_checkpoint(tmp_path / "m.pt"), calib.numpy(), tmp_path / "deploy", system=None)
    dep = load_deployment(tmp_path / "deploy")
    x = calib[:2].numpy()
    from_files, files_counts = dep.simulate(x)
    assert "compiled" not in vars(dep)
    recompiled, recompiled_counts = simulate(dep.compiled, "fixed", x)
    assert files_counts.keys() == recompiled_counts.keys() and len(files_counts) == 18
    for layer, counts in recompiled_counts.items():
        assert np.array_equal(files_counts[layer], counts), layer
    assert sum(int(c.sum()) for c in recompiled_counts.values()) > 1000
    np.testing.assert_allclose(from_files, recompiled, rtol=1e-5, atol=1e-5)  # host float: onnxruntime vs torch
