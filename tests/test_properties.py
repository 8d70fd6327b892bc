"""Property-based tests (hypothesis) of the Loihi fixed-point arithmetic and of the quantizer.

The arithmetic is checked against a reference written here with Python's unbounded integers from the equations
of DESIGN.md and the rules `loihi_numerics` declares (widths, wraps, shifts), so any int64 overflow or
rounding slip in the numpy code shows up as a mismatch. The quantizer is checked through its public `quantize`
pass on a one-layer chip graph: formats, rounding bounds, signs, scale invariance and idempotence.
Every constant comes from `loihi_numerics` / `quantize`; the examples are derandomized so CI is reproducible.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from snn2hw import ir
from snn2hw import quantize as qz
from snn2hw.hardware_sims import loihi_numerics as ln
from snn2hw.hardware_sims.fixed_point import run_fixed
from snn2hw.partition import partition_host_chip

# Fixed examples, no example database: a failure in CI reproduces locally, and no run depends on an earlier one.
PROPERTY = settings(derandomize=True, database=None, deadline=None, max_examples=150, print_blob=True)
QUANT_PROPERTY = settings(PROPERTY, max_examples=50)  # every example runs a whole quantize pass

INT64 = np.iinfo(np.int64)
# |a| below this keeps a << ACT_SHIFT inside the 24-bit range of u (the limit the quantizer's A_SAFE halves)
A_NO_WRAP = 2 ** (ln.UV_BITS - 1 - ln.ACT_SHIFT)


def _edges(*bits):
    """Values around ±2**b that lie in int64: where wraps, saturations and shifts change behaviour."""
    return [v for b in bits for s in (-1, 1) for d in (-1, 0, 1)
            if INT64.min <= (v := s * (1 << b) + d) <= INT64.max]


def _ints(lo, hi, *edge_bits):
    edges = [e for e in _edges(*edge_bits) + [lo, hi] if lo <= e <= hi]
    return st.one_of(st.integers(lo, hi), st.sampled_from(edges))


ANY_INT64 = _ints(INT64.min, INT64.max, ln.UV_BITS - 1, ln.INT32_BITS - 1, 62, 63)
DECAYS = _ints(0, ln.DECAY_MAX)
VTHS = _ints(0, ln.VTH_MAX)
BIAS_MANTS = _ints(ln.BIAS_MANT_MIN, ln.BIAS_MANT_MAX)
BIAS_EXPS = st.integers(ln.BIAS_EXP_MIN, ln.BIAS_EXP_MAX)
INT16 = st.integers(-(2 ** (ln.INT16_BITS - 1)), 2 ** (ln.INT16_BITS - 1) - 1)


# ---------------------------------------------------------------------------------------------------------------------
# Big-int reference
# ---------------------------------------------------------------------------------------------------------------------

def _wrap(x: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return (x + half) % (1 << bits) - half


def _shift(x: int, e: int) -> int:
    return x << e if e >= 0 else x >> -e  # Python's >> floors, as an arithmetic shift does


def _decay(x: int, factor: int) -> int:
    p = x * factor
    return ((p > 0) - (p < 0)) * (abs(p) >> ln.DECAY_SHIFT)


def _bias(mant: int, exp: int) -> int:
    return _wrap(_shift(_wrap(mant, ln.BIAS_STORAGE_BITS), _wrap(exp, ln.BIAS_STORAGE_BITS)), ln.INT32_BITS)


def _lif_reference(u, v, a, du, dv, vth, mant, exp):
    """DESIGN.md's step with the storage widths loihi_numerics declares: u, v, a_in held in int32, the sums in
    int32, and u's "wrap to 24 bit" being Lava's single conditional +-2**24 (not a modulo)."""
    u, v, a = (_wrap(z, ln.INT32_BITS) for z in (u, v, a))
    x = _wrap(_decay(u, ln.DECAY_UNITY - (du + ln.DS_OFFSET)) + _wrap(a << ln.ACT_SHIFT, ln.INT32_BITS), ln.INT32_BITS)
    u_new = x - 2 * ln.MAX_UV_VAL if x > ln.MAX_UV_VAL else (x + 2 * ln.MAX_UV_VAL if x <= -ln.MAX_UV_VAL else x)
    y = _decay(v, ln.DECAY_UNITY - (dv + ln.DM_OFFSET))
    v_new = min(max(_wrap(y + u_new + _bias(mant, exp), ln.INT32_BITS), ln.V_MIN), ln.V_MAX)
    s = v_new > (vth << ln.VTH_SHIFT)
    return u_new, 0 if s else v_new, s


def _step(neurons, du, dv, vth):
    """lif_step on columns (u, v, a, bias_mant, bias_exp) of `neurons`, one sample."""
    u, v, a, m, e = (np.array([[n[i] for n in neurons]], dtype=np.int64) for i in range(5))
    u2, v2, s = ln.lif_step(u, v, a, du, dv, vth, m, e)
    return u2[0], v2[0], s[0]


# ---------------------------------------------------------------------------------------------------------------------
# Arithmetic: LIF
# ---------------------------------------------------------------------------------------------------------------------

NEURONS = st.lists(st.tuples(ANY_INT64, ANY_INT64, ANY_INT64, INT16, INT16), min_size=1, max_size=12)


@PROPERTY
@given(NEURONS, DECAYS, DECAYS, VTHS)
def test_lif_step_equals_the_big_int_reference_on_any_int64_state(neurons, du, dv, vth):
    u, v, s = _step(neurons, du, dv, vth)
    want = [_lif_reference(*n[:3], du, dv, vth, *n[3:]) for n in neurons]
    assert [(int(a), int(b), bool(c)) for a, b, c in zip(u, v, s)] == want


@PROPERTY
@given(NEURONS, DECAYS, DECAYS, VTHS)
def test_lif_state_stays_in_its_declared_widths(neurons, du, dv, vth):
    u, v, _ = _step(neurons, du, dv, vth)
    assert ((v >= ln.V_MIN) & (v <= ln.V_MAX)).all()  # v saturates, whatever comes in
    assert np.array_equal(ln.wrap_signed(u, ln.UV_STORAGE_BITS), u)  # u never leaves its int32 Var


@PROPERTY
@given(st.lists(st.tuples(_ints(-ln.MAX_UV_VAL + 1, ln.MAX_UV_VAL), _ints(-A_NO_WRAP + 1, A_NO_WRAP - 1)),
                min_size=1, max_size=12), DECAYS)
def test_current_wraps_into_24_bits_for_reachable_state_and_input(pairs, du):
    # From a u Lava can produce and |a| < 2**17, one conditional wrap lands in (-2**23, 2**23], congruent mod 2**24.
    u, _, _ = _step([(uu, 0, a, 0, 0) for uu, a in pairs], du, 0, ln.VTH_MAX)
    for (u0, a), got in zip(pairs, u):
        assert -ln.MAX_UV_VAL < got <= ln.MAX_UV_VAL
        exact = _decay(u0, ln.DECAY_UNITY - (du + ln.DS_OFFSET)) + (a << ln.ACT_SHIFT)
        assert (int(got) - exact) % (2 ** ln.UV_BITS) == 0


@PROPERTY
@given(st.lists(st.tuples(_ints(-ln.MAX_UV_VAL + 1, ln.MAX_UV_VAL), _ints(ln.V_MIN, ln.VTH_MAX << ln.VTH_SHIFT)),
                min_size=1, max_size=12), DECAYS, DECAYS)
def test_decay_scales_the_magnitude_and_rounds_toward_zero(pairs, du, dv):
    # u decays with no input; v decays with u = 0 and cannot reach the threshold, so neither is wrapped or reset.
    u, _, _ = _step([(u0, 0, 0, 0, 0) for u0, _ in pairs], du, 0, ln.VTH_MAX)
    _, v, s = _step([(0, v0, 0, 0, 0) for _, v0 in pairs], 0, dv, ln.VTH_MAX)
    assert not s.any()
    for (u0, v0), u1, v1 in zip(pairs, u, v):
        for old, new, factor in ((u0, int(u1), ln.DECAY_UNITY - (du + ln.DS_OFFSET)),
                                 (v0, int(v1), ln.DECAY_UNITY - (dv + ln.DM_OFFSET))):
            assert new == 0 or (new > 0) == (old > 0)  # the sign survives or the value dies
            # |new| = floor(|old| * factor / 4096): the magnitude rounds down, whatever the sign
            assert abs(new) * ln.DECAY_UNITY <= abs(old) * factor < (abs(new) + 1) * ln.DECAY_UNITY


@PROPERTY
@given(st.lists(st.tuples(ANY_INT64, ANY_INT64), min_size=1, max_size=12), DECAYS, VTHS)
def test_du_max_means_no_current_memory(pairs, dv, vth):
    # DESIGN.md: du = 4095 makes u = a every step, so the old u cannot matter
    u, _, _ = _step([(u0, 0, a, 0, 0) for u0, a in pairs], ln.DECAY_MAX, dv, vth)
    from_rest, _, _ = _step([(0, 0, a, 0, 0) for _, a in pairs], ln.DECAY_MAX, dv, vth)
    assert np.array_equal(u, from_rest)


@PROPERTY
@given(VTHS, st.lists(st.tuples(st.booleans(), st.integers(-3, 3), _ints(-A_NO_WRAP + 1, A_NO_WRAP - 1),
                                BIAS_MANTS, BIAS_EXPS), min_size=1, max_size=12))
def test_spike_rule_is_strict_and_resets_v_only(vth, cases):
    # From rest, v before the spike test is (a << 6) + bias, saturated; inputs within 3 of vth probe the tie.
    neurons = [(0, 0, min(max(vth + d, -A_NO_WRAP + 1), A_NO_WRAP - 1) if near else a, m, e)
               for near, d, a, m, e in cases]
    u, v, s = _step(neurons, 0, 0, vth)
    for (_, _, a, m, e), u1, v1, s1 in zip(neurons, u, v, s):
        v_pre = min(max((a << ln.ACT_SHIFT) + (m << e), ln.V_MIN), ln.V_MAX)
        assert bool(s1) == (v_pre > vth << ln.VTH_SHIFT)
        assert int(v1) == (0 if s1 else v_pre)
        assert int(u1) == a << ln.ACT_SHIFT  # the spike does not touch u
    _, _, s_tie = _step([(0, 0, vth, 0, 0)], 0, 0, vth)
    assert not s_tie.any()


@PROPERTY
@given(NEURONS, DECAYS, DECAYS, VTHS, VTHS)
def test_current_never_depends_on_voltage_or_threshold(neurons, du, dv, vth1, vth2):
    u1, _, _ = _step(neurons, du, dv, vth1)
    u2, _, _ = _step([(u, 0, a, m, e) for u, _, a, m, e in neurons], du, 0, vth2)
    assert np.array_equal(u1, u2)


@PROPERTY
@given(st.lists(st.tuples(_ints(-(ln.MAX_UV_VAL // 2), ln.MAX_UV_VAL // 2), _ints(ln.V_MIN, ln.V_MAX),
                          _ints(-A_NO_WRAP // 4, A_NO_WRAP // 4), st.integers(0, A_NO_WRAP // 4),
                          BIAS_MANTS, BIAS_EXPS, st.integers(0, ln.MAX_UV_VAL)), min_size=1, max_size=12),
       DECAYS, DECAYS, VTHS)
def test_more_input_bias_or_voltage_never_lowers_the_next_state(cases, du, dv, vth):
    # |u|, |a| small enough that u does not wrap: then u, the pre-spike v and the spike are monotone in a, b and v.
    base = [(u0, v0, a, m, e) for u0, v0, a, _, m, e, _ in cases]
    more_a = [(u0, v0, a + da, m, e) for u0, v0, a, da, m, e, _ in cases]
    more_b = [(u0, v0, a, min(m + da, ln.BIAS_MANT_MAX), e) for u0, v0, a, da, m, e, _ in cases]
    more_v = [(u0, min(v0 + dv0, ln.V_MAX), a, m, e) for u0, v0, a, _, m, e, dv0 in cases]
    u, v, s = _step(base, du, dv, vth)
    for variant in (more_a, more_b, more_v):
        u2, v2, s2 = _step(variant, du, dv, vth)
        assert (u2 >= u).all() and (s2 >= s).all()
        # where the larger one did not fire, neither did the other: both are voltages before any reset
        assert (v2[~s2] >= v[~s2]).all()


@PROPERTY
@given(NEURONS, DECAYS, DECAYS, VTHS, st.integers(1, 9), st.integers(-20, 20), st.integers(0, 30))
def test_lif_reset_zeroes_state_exactly_once_per_interval(neurons, du, dv, vth, interval, offset, start):
    due = [ln.lif_reset_due(k, interval, offset) for k in range(start, start + interval)]
    assert sum(due) == 1
    u, v, a, m, e = (np.array([[n[i] for n in neurons]], dtype=np.int64) for i in range(5))
    for k in range(start, start + interval):
        got = ln.lif_reset_step(u, v, a, du, dv, vth, m, e, step_index=k, reset_interval=interval,
                                reset_offset=offset)
        # a reset integrates this step's input onto zero state; otherwise the step is a plain LIF step
        want = ln.lif_step(*((0 * u, 0 * v) if due[k - start] else (u, v)), a, du, dv, vth, m, e)
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert ln.lif_reset_due(0, interval, 1)  # offset 1: windows start at the first step


# ---------------------------------------------------------------------------------------------------------------------
# Arithmetic: bias, weights, synapses
# ---------------------------------------------------------------------------------------------------------------------

@PROPERTY
@given(st.lists(st.tuples(BIAS_MANTS, BIAS_EXPS), min_size=1, max_size=12),
       st.lists(st.tuples(INT16, INT16), min_size=1, max_size=12))
def test_effective_bias_is_exact_in_range_and_int32_outside(in_range, anything):
    m, e = (np.array(c, dtype=np.int64) for c in zip(*in_range))
    got = ln.effective_bias(m, e)
    assert got.tolist() == [mm * 2 ** ee for mm, ee in in_range]  # the declared formats never need a wrap
    assert np.abs(got).max() < ln.MAX_UV_VAL  # and a bias alone cannot saturate v
    m, e = (np.array(c, dtype=np.int64) for c in zip(*anything))
    assert ln.effective_bias(m, e).tolist() == [_bias(mm, ee) for mm, ee in anything]


@PROPERTY
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 6)),
                  elements=_ints(-(2 ** (ln.INT32_BITS - 1)), 2 ** (ln.INT32_BITS - 1) - 1, ln.WEIGHT_CLIP_BITS)),
       st.integers(1, ln.MAX_NUM_WEIGHT_BITS))
def test_effective_dense_weights_clip_then_truncate_as_declared(w, bits):
    mode = ln.dense_sign_mode(w)
    got = ln.effective_dense_weights(w, bits)
    n = ln.MAX_NUM_WEIGHT_BITS - bits + (ln.MIXED_SIGN_DROPPED_LSBS if mode == "mixed" else 0)
    lo, hi = {"mixed": (ln.WEIGHT_MIN_MIXED, ln.WEIGHT_MAX), "excitatory": (0, ln.WEIGHT_MAX),
              "inhibitory": (-ln.WEIGHT_MAX, 0)}[mode]
    clipped = np.clip(w, lo, hi)
    assert ((got >= lo) & (got <= hi)).all() and (got % 2 ** n == 0).all()
    # mixed and excitatory floor to the 2**n grid; inhibitory truncates the magnitude (toward zero)
    drop = got - clipped if mode == "inhibitory" else clipped - got
    assert ((drop >= 0) & (drop < 2 ** n)).all()
    assert (got * w >= 0).all()  # no weight changes sign
    assert np.array_equal(ln.effective_dense_weights(got, bits, sign_mode=mode), got)


@PROPERTY
@given(st.data(), st.integers(1, 4), st.integers(1, 8), st.integers(1, 3),
       st.integers(-2 * ln.INT32_BITS, 2 * ln.INT32_BITS), st.sampled_from([0, qz.GRADED_MESSAGE_BITS]))
def test_dense_accumulate_equals_the_big_int_sum(data, n_out, n_in, batch, weight_exp, message_bits):
    w = data.draw(hnp.arrays(np.int64, (n_out, n_in), elements=_ints(ln.WEIGHT_MIN_MIXED, ln.WEIGHT_MAX)))
    s = data.draw(hnp.arrays(np.int64, (batch, n_in), elements=ANY_INT64))
    got = ln.dense_accumulate(w, s, weight_exp, message_bits)
    for row, out in zip(s.tolist(), got.tolist()):
        for o, value in enumerate(out):
            if message_bits:  # int32 weights.dot(int32 payloads): the product sum wraps before the shift
                acc = _wrap(sum(int(wi) * _wrap(si, ln.INT32_BITS) for wi, si in zip(w[o], row)), ln.INT32_BITS)
            else:  # any non-zero input is one spike
                acc = sum(int(wi) for wi, si in zip(w[o], row) if si)
            assert value == _wrap(_shift(acc, weight_exp), ln.DENSE_OUT_BITS)


def _up_to(m):
    """Integers in [-m, m], often exactly ±m, so that sums reach their bound."""
    return st.one_of(st.integers(-m, m), st.sampled_from([-m, m]))


def _naive_correlation(w, s, stride, padding, dilation, groups):
    """torch conv2d (cross-correlation, zero padding) on Python ints."""
    n, c, h, wd = s.shape
    cout, cin_g, kh, kw = w.shape
    ho, wo = ln.conv_output_hw((h, wd), (kh, kw), stride, padding, dilation)
    out = np.zeros((n, cout, ho, wo), dtype=object)
    for b in range(n):
        for o in range(cout):
            g = o // (cout // groups)
            for y in range(ho):
                for x in range(wo):
                    total = 0
                    for ci in range(cin_g):
                        for i in range(kh):
                            for j in range(kw):
                                yy, xx = y * stride - padding + i * dilation, x * stride - padding + j * dilation
                                if 0 <= yy < h and 0 <= xx < wd:
                                    total += int(w[o, ci, i, j]) * int(s[b, g * cin_g + ci, yy, xx])
                    out[b, o, y, x] = total
    return out


@PROPERTY
@given(st.data(), st.integers(1, 2), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 2),
       st.integers(0, 1), st.integers(1, 2), st.sampled_from([0, qz.GRADED_MESSAGE_BITS]),
       st.sampled_from([1, ln.WEIGHT_MAX, 2 ** 12, 2 ** 20, 2 ** (ln.INT32_BITS - 1) - 1]),
       st.sampled_from([1, 2 ** 8, 2 ** 16, 2 ** (qz.GRADED_MESSAGE_BITS - 1)]))
def test_conv_accumulate_is_exact_then_wraps_to_24_bits(data, groups, cin_g, cout_g, k, stride, padding, dilation,
                                                        message_bits, w_max, s_max):
    # Magnitudes put the bound on partial sums on either side of the float32 (2**24) and float64 (2**53)
    # exactness limits and of int32: the float conv must be exact there, or refuse to answer.
    size = data.draw(st.integers(max(1, dilation * (k - 1) + 1 - 2 * padding), 6))
    s_max = s_max if message_bits else 1
    w = data.draw(hnp.arrays(np.int64, (groups * cout_g, cin_g, k, k), elements=_up_to(w_max)))
    s = data.draw(hnp.arrays(np.int64, (2, groups * cin_g, size, size), elements=_up_to(s_max)))
    payload = s if message_bits else (s != 0).astype(np.int64)  # binary mode: any non-zero is one spike
    exact = _naive_correlation(w, payload, stride, padding, dilation, groups)
    bound = int(np.abs(w).max()) * int(np.abs(payload).max()) * w[0].size
    if bound >= ln.FLOAT64_EXACT_LIMIT or np.abs(exact).max() >= 2 ** (ln.INT32_BITS - 1):
        with pytest.raises(OverflowError):
            ln.conv_accumulate(w, s, stride, padding, dilation, groups, message_bits)
        return
    got = ln.conv_accumulate(w, s, stride, padding, dilation, groups, message_bits)
    assert got.tolist() == np.vectorize(lambda z: _wrap(z, ln.CONV_OUT_BITS), otypes=[object])(exact).tolist()


@PROPERTY
@given(st.lists(ANY_INT64, min_size=1, max_size=12), st.integers(2, 64))
def test_wrap_signed_is_the_twos_complement_wrap(x, bits):
    got = ln.wrap_signed(np.array(x, dtype=np.int64), bits)
    assert got.tolist() == [_wrap(v, bits) for v in x]
    half = 2 ** (bits - 1)
    assert all(-half <= g < half for g in got.tolist())


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
    return fixed.nodes["fc"].quant, fixed.nodes["lif"].quant, fixed.quant_report[0], fixed


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
    assert ((w >= ln.WEIGHT_MIN_MIXED) & (w <= ln.WEIGHT_MAX)).all()
    if (w < 0).any() and (w > 0).any():
        assert (w % 2 == 0).all() and w.max() <= qz.WEIGHT_GRID_MAX
    assert np.array_equal(ln.effective_dense_weights(w), w)  # nothing for Lava's clip/LSB drop to change
    assert fc["payload_frac_bits"] == 0  # binary spikes carry no fraction
    assert ln.lif_format_errors(lif["du"], lif["dv"], lif["vth"], lif["bias_mant"], lif["bias_exp"]) == []
    assert lif["du"] == ln.DECAY_MAX


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
        assert np.abs(fc["weight"]).max() == qz.WEIGHT_GRID_MAX
    elif "threshold" in binding:
        assert lif["vth"] == ln.VTH_MAX
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
        * fc["scale"] * 2 ** ln.ACT_SHIFT  # the bias in v's units
    mant, exp = lif["bias_mant"], lif["bias_exp"]
    rounded = np.rint(b_v / 2.0 ** exp)
    saturated = int(((rounded > ln.BIAS_MANT_MAX) | (rounded < ln.BIAS_MANT_MIN)).sum())
    assert [n for n in report["notes"] if "saturate" in n] == ([f"{saturated} biases saturate at {ln.BIAS_MANT_BITS}"
                                                                f"-bit mantissa << {exp}"] if saturated else [])
    assert (np.sign(mant) * np.sign(b_v) >= 0).all() and (mant[b_v == 0] == 0).all()
    peak = np.abs(b_v).max()
    if peak <= ln.BIAS_MANT_MAX * 2 ** ln.BIAS_EXP_MAX:  # the smallest exponent that holds the largest bias
        assert exp == ln.BIAS_EXP_MIN or peak > ln.BIAS_MANT_MAX * 2 ** (exp - 1)
    else:
        assert exp == ln.BIAS_EXP_MAX
    # within half a step of the mantissa range the bias rounds to the nearest; beyond it saturates, keeping its sign
    near = (b_v >= (ln.BIAS_MANT_MIN - 0.5) * 2 ** exp) & (b_v <= (ln.BIAS_MANT_MAX + 0.5) * 2 ** exp)
    assert (np.abs(b_v[near] - mant[near] * 2.0 ** exp) <= 2.0 ** exp / 2).all()
    assert (mant[~near] == np.where(b_v[~near] > 0, ln.BIAS_MANT_MAX, ln.BIAS_MANT_MIN)).all()


@QUANT_PROPERTY
@given(layers())
def test_decay_is_the_nearest_12_bit_value(layer):
    decay = layer[3]
    _, lif, _, _ = _quantized(*layer)
    err = abs(1 - lif["dv"] / ln.DECAY_UNITY - decay)
    # dv = 4096 (decay 0) is not expressible: it becomes DECAY_MAX, one step away
    assert err <= (1 if lif["dv"] == ln.DECAY_MAX else 0.5) / ln.DECAY_UNITY


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
    w_int = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-qz.WEIGHT_GRID_MAX, qz.WEIGHT_GRID_MAX)))
    w_int.flat[data.draw(st.integers(0, w_int.size - 1))] = data.draw(st.sampled_from([-1, 1])) * qz.WEIGHT_GRID_MAX
    if (w_int < 0).any() and (w_int > 0).any():
        w_int = 2 * (w_int // 2)  # mixed sign: the even grid (the peak, 254, is even already)
    mant = data.draw(hnp.arrays(np.int64, (shape[0],), elements=st.integers(-ln.BIAS_MANT_MAX, ln.BIAS_MANT_MAX)))
    unit = 2.0 ** -k  # one integer step in float units
    bias = (mant * 2.0 ** bias_exp * unit / 2 ** ln.ACT_SHIFT).astype(np.float32)
    calib = data.draw(hnp.arrays(np.float32, (3, TIMESTEPS, shape[1]), elements=st.sampled_from([0.0, 1.0])))
    fc, lif, _, _ = _quantized((w_int * unit).astype(np.float32), bias, vth * unit, 1 - dv / ln.DECAY_UNITY, calib)
    assert fc["scale"] == 2.0 ** k and np.array_equal(fc["weight"], w_int)
    assert (lif["vth"], lif["dv"]) == (vth, dv)
    assert np.array_equal(ln.effective_bias(lif["bias_mant"], lif["bias_exp"]), ln.effective_bias(mant, bias_exp))

