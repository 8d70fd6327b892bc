"""quantize: every chip synapse and neuron gets its Loihi integers. It preserves nothing exactly, by design: the
fixed-point simulator's spikes differ from the folded float graph's by quantization only.

The demo models check the whole pass; hypothesis checks the quantizer's properties through the pass on a one-layer
chip graph: formats, rounding bounds, signs, scale invariance and idempotence (every constant from `loihi_formats` /
`quantize`; the examples are derandomized so CI is reproducible)."""
import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from helpers import A_NO_WRAP, BIAS_EXPS, DECAYS, PROPERTY, VTHS, compiled_demo
from snn2hw import ir
from snn2hw.hardware_sims import loihi_formats as lf
from snn2hw.hardware_sims import loihi_numerics as ln
from snn2hw.hardware_sims.runner import run_fixed
from snn2hw.models.zoo import class_scores
from snn2hw.passes import quantize as qz
from snn2hw.passes.partition import partition_host_chip

QUANT_PROPERTY = settings(PROPERTY, max_examples=50)  # every example runs a whole quantize pass


@pytest.mark.parametrize("arch, tcja", [("tcja-tiny", "host"), ("tcja-tiny", "fold"), ("gac-msresnet-tiny", "host")])
def test_quantize_keeps_the_float_graph_and_changes_spikes_by_quantization_only(arch, tcja):
    compiled, x, _, _ = compiled_demo(arch, tcja)
    folded, fixed = compiled.folded, compiled.fixed
    # The pass adds integers, to every chip synapse and neuron, and changes nothing else.
    assert list(fixed.nodes) == list(folded.nodes)
    assert (fixed.segments, fixed.cuts) == (folded.segments, folded.cuts)
    for name, node in folded.nodes.items():
        new = fixed.nodes[name]
        assert type(new) is type(node) and not node.quant
        for field in dataclasses.fields(node):
            a, b = getattr(node, field.name), getattr(new, field.name)
            if field.name != "quant":
                assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, (name, field.name)
        assert bool(new.quant) == (new.placement == "chip" and isinstance(new, (*ir.NEURONS, *ir.SYNAPSES))), name
    x = torch.as_tensor(x)
    float_out, float_values = folded.run(x, record=True)
    assert torch.equal(fixed.run(x)[0], float_out)  # in float, the quantized graph is the folded one
    # The fixed-point run differs by the rounding to those integers only: every chip layer keeps its firing rate and
    # nearly all of its spikes, and the class scores pick the float graph's class on nearly every sample.
    fixed_out, act = run_fixed(fixed, x)
    chip_lifs = [n for n, node in folded.nodes.items() if isinstance(node, ir.LIF) and node.placement == "chip"]
    assert chip_lifs
    for name in chip_lifs:
        want, got = float_values[name].bool(), act.values[name].bool()
        assert want.shape == got.shape and want.any(), name
        assert abs(got.float().mean() - want.float().mean()) < 0.02, name
        assert (got != want).float().mean() < 0.1, name
    agree = class_scores(arch, fixed_out).argmax(1) == class_scores(arch, float_out).argmax(1)
    assert agree.float().mean() >= 0.95
    assert not torch.equal(fixed_out, float_out)  # and it is not exact


@pytest.mark.parametrize("arch", ["tcja-tiny", "gac-msresnet-tiny"])
def test_quantized_parameters_fit_loihi_formats_and_calibration_never_wraps(arch):
    compiled, _, _, calib = compiled_demo(arch)
    chip_synapses = [n for n in compiled.fixed.nodes.values()
                     if n.placement == "chip" and n.quant.get("weight") is not None]
    assert chip_synapses
    for node in chip_synapses:
        w = node.quant["weight"]
        if node.quant.get("identity"):  # one weight w / 2^k, exact: the reader's scale is the source's times it
            assert 1 <= w <= lf.WEIGHT_MAX and lf.IDENTITY_WEIGHT_EXP_MIN <= node.quant["weight_exp"] <= 0
            continue
        assert w.min() >= lf.WEIGHT_MIN_MIXED and w.max() <= lf.WEIGHT_MAX
        if w.min() < 0 < w.max():  # Lava's mixed-sign Dense keeps only even weights: ours are even already
            assert np.array_equal(ln.effective_dense_weights(w), w)
    for node in compiled.fixed.nodes.values():
        if isinstance(node, ir.LIF) and node.placement == "chip":
            q = node.quant
            assert lf.lif_format_errors(q["du"], q["dv"], q["vth"], q["bias_mant"], q["bias_exp"]) == []
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
    compiled, _, _, calib = compiled_demo(arch)
    batches, run = [], ir.Graph.run
    monkeypatch.setattr(ir.Graph, "run", lambda self, x, **kw: (batches.append(len(x)), run(self, x, **kw))[1])
    monkeypatch.setattr(ir, "RUN_BATCH_BYTES", 1)  # one sample per batch
    batched = qz.quantize(compiled.folded, torch.as_tensor(calib))
    assert batches == [1] * len(calib)
    _assert_same(compiled.fixed.quant_layers, batched.quant_layers)  # integers exactly, scales to 1e-6
    _assert_same({n: node.quant for n, node in compiled.fixed.nodes.items()},
                 {n: node.quant for n, node in batched.nodes.items()})


# ---------------------------------------------------------------------------------------------------------------------
# Quantizer, through the quantize pass on a chip layer: binary input spikes → Linear → LIF
# ---------------------------------------------------------------------------------------------------------------------

# (outputs, inputs). A fan-in of at most 6 keeps 6 * 254 far below A_SAFE, so the weights or the threshold set the
# scale; a fan-in of hundreds lets the calibration's input headroom set it.
NARROW = st.tuples(st.integers(1, 4), st.integers(1, 6))
SHAPES = NARROW | st.tuples(st.integers(1, 4), st.integers(260, 400))
TIMESTEPS = 2


def _quantized(weight, bias, threshold, decay, calib):
    """→ (Linear quant, LIF quant, the LIF's report entry, the quantized graph)."""
    w = torch.as_tensor(weight)
    nodes = {"input": ir.Input("input", [], timesteps=TIMESTEPS, source_kind="binary"),
             "fc": ir.Linear("fc", ["input"], weight=w, bias=None if bias is None else torch.as_tensor(bias)),
             "lif": ir.LIF("lif", ["fc"], decay=decay, threshold=threshold),
             "out": ir.Readout("out", ["lif"], mode="per_step_tn")}
    graph = partition_host_chip(ir.Graph(nodes, TIMESTEPS, (TIMESTEPS, w.shape[1])).infer())
    fixed = qz.quantize(graph, torch.as_tensor(calib, dtype=torch.float32))
    return fixed.nodes["fc"].quant, fixed.nodes["lif"].quant, fixed.quant_layers[0], fixed


# one sign, a significand and up to 24 octaves below the tensor's top exponent: wide dynamic range within a tensor
ELEMENTS = st.just(0.0) | st.builds(lambda sign, m, j: sign * m * 2.0 ** j, st.sampled_from([-1, 1]),
                                    st.floats(0.5, 1), st.integers(-24, 0))


@st.composite
def float_tensors(draw, shape, exponent):
    """float32 tensors of magnitude up to 2**exponent (subnormal values included): general, all zero, a single
    non-zero value, of one sign, one sign per row (Lava decides the sign mode for the whole matrix, not per output
    channel), or constant (the largest sums a fan-in can produce)."""
    x = (draw(hnp.arrays(np.float64, shape, elements=ELEMENTS)) * 2.0 ** exponent).astype(np.float32)
    kind = draw(st.sampled_from(["any", "zero", "single", "negative", "positive", "signed rows", "constant"]))
    if kind == "signed rows":
        signs = draw(hnp.arrays(np.float32, (shape[0],) + (1,) * (len(shape) - 1), elements=st.sampled_from([-1, 1])))
        return np.abs(x) * signs
    if kind == "zero":
        return np.zeros_like(x)
    if kind == "single":
        keep = np.zeros(x.size, bool)
        keep[draw(st.integers(0, x.size - 1))] = True
        return np.where(keep.reshape(shape), x, np.float32(0))
    if kind in ("negative", "positive"):
        return np.abs(x) * np.float32(-1 if kind == "negative" else 1)
    if kind == "constant":
        return np.full_like(x, x.flat[np.abs(x).argmax()])
    return x


@st.composite
def layers(draw, shapes=NARROW):
    """A layer at any magnitude from 2**-130 to 2**90 (float32 sums stay finite), with a threshold anywhere or
    within a few octaves of the largest weight, so that each of the scale's limits gets to bind."""
    shape = draw(shapes)
    exponent = draw(st.integers(-130, 90))
    weight = draw(float_tensors(shape, exponent))
    bias = draw(st.none() | float_tensors((shape[0],), exponent + draw(st.integers(-8, 8))))
    peak = float(np.abs(weight).max())
    if peak > 0 and draw(st.booleans()):
        threshold = peak * draw(st.floats(0.5, 1)) * 2.0 ** draw(st.integers(-4, 12))
    else:
        threshold = draw(st.floats(2.0 ** -40, 2.0 ** 40))
    decay = draw(st.floats(0, 1))
    calib = draw(hnp.arrays(np.float32, (3, TIMESTEPS, shape[1]), elements=st.sampled_from([0.0, 1.0])))
    return weight, bias, threshold, decay, calib


@QUANT_PROPERTY
@given(layers())
def test_quantized_parameters_fit_their_formats_and_lava_keeps_the_weights(layer):
    fc, lif, _, _ = _quantized(*layer)
    assert abs(lif["vth"] - layer[2] * fc["scale"]) <= 0.5  # the threshold rounds to the nearest integer
    w = fc["weight"]
    assert ((w >= lf.WEIGHT_MIN_MIXED) & (w <= lf.WEIGHT_MAX)).all()
    if (w < 0).any() and (w > 0).any():
        assert (w % 2 == 0).all() and w.max() <= lf.WEIGHT_GRID_MAX
    assert np.array_equal(ln.effective_dense_weights(w), w)  # nothing for Lava's clip/LSB drop to change
    assert fc["payload_frac_bits"] == 0  # binary spikes carry no fraction
    assert lf.lif_format_errors(lif["du"], lif["dv"], lif["vth"], lif["bias_mant"], lif["bias_exp"]) == []
    assert lif["du"] == lf.DECAY_MAX


@QUANT_PROPERTY
@given(layers())
def test_weights_round_to_the_nearest_grid_point_with_sign_and_zero_kept(layer):
    weight = layer[0]
    fc, _, _, _ = _quantized(*layer)
    scaled = weight.astype(np.float64) * fc["scale"]
    mixed = (weight < 0).any() and (weight > 0).any()
    # the grid step is 2 where Lava's mixed-sign Dense drops the LSB, else 1; the scale never forces a clip
    assert (np.abs(scaled - fc["weight"]) <= (1.0 if mixed else 0.5)).all()
    assert (np.sign(fc["weight"]) * np.sign(weight) >= 0).all()
    assert (fc["weight"][weight == 0] == 0).all()


@QUANT_PROPERTY
@given(layers(SHAPES))
def test_scale_uses_the_binding_limit_fully_and_calibration_never_wraps(layer):
    calib = layer[4]
    fc, lif, entry, fixed = _quantized(*layer)
    binding = next((n for n in entry["notes"] if n.startswith("scale set by")), None)
    assert fc["scale"] > 0
    if binding is None:  # the weights set the scale: their peak lands on the grid's end, not below it
        assert np.abs(fc["weight"]).max() == lf.WEIGHT_GRID_MAX
    elif "threshold" in binding:
        assert lif["vth"] == lf.VTH_MAX
    _, act = run_fixed(fixed, torch.as_tensor(calib))  # the headroom keeps every calibration input below the wrap
    assert act.u_wraps["lif"] == 0 and act.max_abs_input["lif"] < A_NO_WRAP


@QUANT_PROPERTY
@given(st.integers(300, 400), st.integers(1, 3), st.integers(-60, 60), st.data())
def test_input_headroom_binds_tightly_when_calibration_inputs_are_strong(fan_in, n_out, exponent, data):
    # Hundreds of same-sign weights near the peak, all spiking at once: 254 per weight would wrap u, so the
    # calibration peak, not the weights, sets σ; the strongest integer input then sits at A_SAFE within rounding.
    weight = data.draw(hnp.arrays(np.float64, (n_out, fan_in), elements=st.floats(0.9, 1)))
    weight = (weight * data.draw(st.sampled_from([-1, 1])) * 2.0 ** exponent).astype(np.float32)
    calib = data.draw(hnp.arrays(np.float32, (2, TIMESTEPS, fan_in), elements=st.sampled_from([0.0, 1.0])))
    calib[0, 0] = 1
    fc, _, entry, fixed = _quantized(weight, None, 2.0 ** exponent, 0.5, calib)
    assert "scale set by the input headroom" in entry["notes"]
    _, act = run_fixed(fixed, torch.as_tensor(calib))
    slack = fan_in / 2  # a single-sign layer rounds each weight by at most half a step
    assert qz.A_SAFE - slack <= act.max_abs_input["lif"] <= qz.A_SAFE + slack and act.u_wraps["lif"] == 0


@QUANT_PROPERTY
@given(layers())
def test_bias_mantissa_and_exponent_round_trip_or_saturate_with_its_sign(layer):
    _, bias, _, _, _ = layer
    fc, lif, report, _ = _quantized(*layer)
    b_v = (np.zeros(fc["weight"].shape[0]) if bias is None else bias.astype(np.float64)) \
        * fc["scale"] * 2 ** lf.ACT_SHIFT  # the bias in v's units
    mant, exp = lif["bias_mant"], lif["bias_exp"]
    rounded = np.rint(b_v / 2.0 ** exp)
    saturated = int(((rounded > lf.BIAS_MANT_MAX) | (rounded < lf.BIAS_MANT_MIN)).sum())
    assert [n for n in report["notes"] if "saturate" in n] == ([f"{saturated} biases saturate at {lf.BIAS_MANT_BITS}"
                                                                f"-bit mantissa << {exp}"] if saturated else [])
    assert (np.sign(mant) * np.sign(b_v) >= 0).all() and (mant[b_v == 0] == 0).all()
    peak = np.abs(b_v).max()
    if peak <= lf.BIAS_MANT_MAX * 2 ** lf.BIAS_EXP_MAX:  # the smallest exponent that holds the largest bias
        assert exp == lf.BIAS_EXP_MIN or peak > lf.BIAS_MANT_MAX * 2 ** (exp - 1)
    else:
        assert exp == lf.BIAS_EXP_MAX
    # within half a step of the mantissa range the bias rounds to the nearest; beyond it saturates, keeping its sign
    near = (b_v >= (lf.BIAS_MANT_MIN - 0.5) * 2 ** exp) & (b_v <= (lf.BIAS_MANT_MAX + 0.5) * 2 ** exp)
    assert (np.abs(b_v[near] - mant[near] * 2.0 ** exp) <= 2.0 ** exp / 2).all()
    assert (mant[~near] == np.where(b_v[~near] > 0, lf.BIAS_MANT_MAX, lf.BIAS_MANT_MIN)).all()


@QUANT_PROPERTY
@given(layers())
def test_decay_is_the_nearest_12_bit_value(layer):
    decay = layer[3]
    _, lif, _, _ = _quantized(*layer)
    err = abs(1 - lif["dv"] / lf.DECAY_UNITY - decay)
    # dv = 4096 (decay 0) is not expressible: it becomes DECAY_MAX, one step away
    assert err <= (1 if lif["dv"] == lf.DECAY_MAX else 0.5) / lf.DECAY_UNITY


@QUANT_PROPERTY
@given(st.data(), SHAPES, st.integers(-16, 16))
def test_scaling_a_layer_by_a_power_of_two_gives_the_same_integers(data, shape, k):
    # Magnitudes in [2**-20, 2**20] keep every float32 value, sum and product normal after scaling by 2**k, so
    # every float operation scales exactly and σ must absorb 2**k alone.
    normal = st.one_of(st.just(0.0), st.floats(2.0 ** -20, 2.0 ** 20, width=32),
                       st.floats(-(2.0 ** 20), -(2.0 ** -20), width=32))
    weight = data.draw(hnp.arrays(np.float32, shape, elements=normal))
    bias = data.draw(hnp.arrays(np.float32, (shape[0],), elements=normal))
    threshold = data.draw(st.floats(2.0 ** -20, 2.0 ** 20))
    decay = data.draw(st.floats(0, 1))
    calib = data.draw(hnp.arrays(np.float32, (3, TIMESTEPS, shape[1]), elements=st.sampled_from([0.0, 1.0])))
    fc1, lif1, _, _ = _quantized(weight, bias, threshold, decay, calib)
    f = np.float32(2.0 ** k)
    fc2, lif2, _, _ = _quantized(weight * f, bias * f, threshold * 2.0 ** k, decay, calib)
    assert np.array_equal(fc1["weight"], fc2["weight"]) and fc2["scale"] == fc1["scale"] / 2.0 ** k
    for key in ("vth", "dv", "du", "bias_exp"):
        assert lif1[key] == lif2[key], key
    assert np.array_equal(lif1["bias_mant"], lif2["bias_mant"])


@QUANT_PROPERTY
@given(st.data(), NARROW, st.integers(-16, 16), VTHS, DECAYS, BIAS_EXPS)
def test_representable_parameters_quantize_to_themselves(data, shape, k, vth, dv, bias_exp):
    # Integer weights on Lava's grid whose peak is the grid maximum, at float scale 2**-k, with a fan-in too small
    # for the headroom to bind: σ = 2**k exactly.
    w_int = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-lf.WEIGHT_GRID_MAX, lf.WEIGHT_GRID_MAX)))
    w_int.flat[data.draw(st.integers(0, w_int.size - 1))] = data.draw(st.sampled_from([-1, 1])) * lf.WEIGHT_GRID_MAX
    if (w_int < 0).any() and (w_int > 0).any():
        w_int = 2 * (w_int // 2)  # mixed sign: the even grid (the peak, 254, is even already)
    mant = data.draw(hnp.arrays(np.int64, (shape[0],), elements=st.integers(-lf.BIAS_MANT_MAX, lf.BIAS_MANT_MAX)))
    unit = 2.0 ** -k  # one integer step in float units
    bias = (mant * 2.0 ** bias_exp * unit / 2 ** lf.ACT_SHIFT).astype(np.float32)
    calib = data.draw(hnp.arrays(np.float32, (3, TIMESTEPS, shape[1]), elements=st.sampled_from([0.0, 1.0])))
    fc, lif, _, _ = _quantized((w_int * unit).astype(np.float32), bias, vth * unit, 1 - dv / lf.DECAY_UNITY, calib)
    assert fc["scale"] == 2.0 ** k and np.array_equal(fc["weight"], w_int)
    assert (lif["vth"], lif["dv"]) == (vth, dv)
    assert np.array_equal(ln.effective_bias(lif["bias_mant"], lif["bias_exp"]), ln.effective_bias(mant, bias_exp))

