"""Quantization to Loihi formats, the fixed-point simulator, and the accuracy ladder."""
import json

import numpy as np
import pytest
import torch

from helpers import calibrated
from snn2hw import ir, quantize
from snn2hw.checkpoint import load_checkpoint
from snn2hw.compile import compile_model
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.hardware_sims import fixed_point
from snn2hw.hardware_sims import loihi_numerics as fmt
from snn2hw.hardware_sims.fixed_point import run_fixed
from snn2hw.models.zoo import build_model
from snn2hw.simulate import ladder


def _compiled(arch, tcja="host"):
    model = load_checkpoint(demo_checkpoint(arch)).model
    x, y, calib = evaluation_data("digits", arch)
    return compile_model(model, arch, torch.as_tensor(calib), tcja), x, y, calib


@pytest.mark.parametrize("arch, tcja", [("tcja-tiny", "host"), ("tcja-tiny", "fold"), ("gac-msresnet-tiny", "host")])
def test_ladder_on_digits_loses_at_most_one_point_from_float_to_fixed(arch, tcja):
    compiled, x, y, _ = _compiled(arch, tcja)
    report = ladder(compiled, x, y)
    acc = report["accuracy"]
    assert acc["torch"] >= 0.9 and acc["fixed"] >= acc["torch"] - 0.01, acc
    if tcja == "host":  # folding BN and normalising neurons only changes float rounding
        assert acc["folded"] == acc["torch"]
        assert sum(report["float_vs_folded"]["mismatches"].values()) == 0
    # Quantization moves each layer's firing rate by little (fold changes the function itself: compare to folded).
    assert all(abs(row["rate_fixed"] - row["rate_folded"]) < 0.02 for row in report["layers"])


@pytest.mark.parametrize("arch", ["tcja-tiny", "gac-msresnet-tiny"])
def test_quantized_parameters_fit_loihi_formats_and_calibration_never_wraps(arch):
    compiled, _, _, calib = _compiled(arch)
    chip_synapses = [n for n in compiled.fixed.nodes.values() if n.placement == "chip" and n.quant.get("weight") is not None]
    assert chip_synapses
    for node in chip_synapses:
        w = node.quant["weight"]
        assert w.min() >= fmt.WEIGHT_MIN_MIXED and w.max() <= fmt.WEIGHT_MAX
        if w.min() < 0 < w.max():  # Lava's mixed-sign Dense keeps only even weights: ours are even already
            assert np.array_equal(fmt.effective_dense_weights(w), w)
    for node in compiled.fixed.nodes.values():
        if isinstance(node, ir.LIF) and node.placement == "chip":
            q = node.quant
            assert fmt.lif_format_errors(q["du"], q["dv"], q["vth"], q["bias_mant"], q["bias_exp"]) == []
    _, act = run_fixed(compiled.fixed, torch.as_tensor(calib))
    assert sum(act.u_wraps.values()) == 0 and sum(act.v_saturations.values()) == 0
    assert max(act.max_abs_input.values()) < 2 ** 17


def _assert_same(a, b, where=""):
    """Equal nested values; floats within 1e-6 relative: host float ops (TCJA's attention) round differently at
    another batch size, so a calibration peak, and a scale set by it, can move in the seventh digit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-6), where
    else:
        assert np.array_equal(a, b), where


@pytest.mark.parametrize("arch", ["tcja-tiny", "gac-msresnet-tiny"])
def test_calibration_in_batches_gives_the_same_quantization(arch, monkeypatch):
    compiled, _, _, calib = _compiled(arch)
    assert quantize.calibration_batch(compiled.folded) >= len(calib)  # the default: one batch here
    monkeypatch.setattr(quantize, "CALIBRATION_BATCH_BYTES", 1)  # one sample per batch
    assert quantize.calibration_batch(compiled.folded) == 1
    batched = quantize.quantize(compiled.folded, torch.as_tensor(calib))
    _assert_same(compiled.fixed.quant_report, batched.quant_report)  # integers exactly, scales to 1e-6
    _assert_same({n: node.quant for n, node in compiled.fixed.nodes.items()},
                 {n: node.quant for n, node in batched.nodes.items()})


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
    compiled, x, _, _ = _compiled("tcja-tiny")
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
    repeats = fixed_point._repeated_convs(graph)
    # The unroll's copies of a term, in sums whose scale the same term sets: most of this model's copies.
    assert len(repeats) >= len(graph.shared_convs()) // 2, (repeats, graph.shared_convs())
    for name, first in repeats.items():
        assert graph.nodes[name].inputs == graph.nodes[first].inputs
        assert np.array_equal(graph.nodes[name].quant["weight"], graph.nodes[first].quant["weight"])
    out, act = run_fixed(graph, x)
    monkeypatch.setattr(fixed_point, "_repeated_convs", lambda graph: {})
    every_conv_out, every_conv = run_fixed(graph, x)
    assert torch.equal(out, every_conv_out)
    assert act.values.keys() == every_conv.values.keys()
    assert all(torch.equal(act.values[k], every_conv.values[k]) for k in act.values)
    assert act.cut_inputs.keys() == every_conv.cut_inputs.keys()
    assert all(np.array_equal(act.cut_inputs[k], every_conv.cut_inputs[k]) for k in act.cut_inputs)
    assert (act.max_abs_input, act.u_wraps, act.v_saturations) == \
        (every_conv.max_abs_input, every_conv.u_wraps, every_conv.v_saturations)


def test_cli_ladder_and_fixed_backend(run_cli, tmp_path):
    ckpt = demo_checkpoint("gac-msresnet-tiny")
    res = run_cli("simulate", ckpt, "--ladder", "--data", "digits", "--limit", "120", "--json", tmp_path / "l.json")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "l.json").read_text())
    assert set(report["accuracy"]) == {"torch", "folded", "fixed"} and report["samples"] == 120
    neurons = [r for r in report["quantization"] if "vth" in r]
    assert len(neurons) == 5 and all(r["membrane_sqnr_db"] > 10 and r["u_wraps"] == 0 for r in neurons)
    assert all(s["weight_sqnr_db"] > 30 for r in report["quantization"] for s in r["synapses"])
    x = evaluation_data("digits", "gac-msresnet-tiny")[0][:10]
    np.save(tmp_path / "x.npy", x)
    res = run_cli("simulate", ckpt, "--backend", "fixed", "--input", tmp_path / "x.npy", "--save", tmp_path / "o.npz")
    assert res.returncode == 0, res.stderr
    out = np.load(tmp_path / "o.npz")
    assert out["output"].shape == (10, 4, 10) and out["spike_counts/head_lif"].shape == (10, 4)
