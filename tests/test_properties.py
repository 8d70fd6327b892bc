"""Property-based tests (hypothesis) of the Loihi fixed-point arithmetic.

The arithmetic is checked against a reference written here with Python's unbounded integers from the equations
of DESIGN.md and the rules `loihi_numerics` declares (widths, wraps, shifts), so any int64 overflow or
rounding slip in the numpy code shows up as a mismatch. (The quantizer's properties, through its public `quantize`
pass, are in test_pass_quantize.py; both share the settings and strategies in helpers.py.)
Every constant comes from `loihi_numerics`; the examples are derandomized so CI is reproducible.
"""
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from helpers import A_NO_WRAP, BIAS_EXPS, DECAYS, INT64, PROPERTY, VTHS, ints
from snn2hw.hardware_sims import loihi_formats as lf
from snn2hw.hardware_sims import loihi_numerics as ln

import lava_reference as ref

ANY_INT64 = ints(INT64.min, INT64.max, lf.UV_BITS - 1, lf.INT32_BITS - 1, 62, 63)
BIAS_MANTS = ints(lf.BIAS_MANT_MIN, lf.BIAS_MANT_MAX)
INT16 = st.integers(-(2 ** (lf.INT16_BITS - 1)), 2 ** (lf.INT16_BITS - 1) - 1)


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
    return ((p > 0) - (p < 0)) * (abs(p) >> lf.DECAY_SHIFT)


def _bias(mant: int, exp: int) -> int:
    return _wrap(_shift(_wrap(mant, lf.BIAS_STORAGE_BITS), _wrap(exp, lf.BIAS_STORAGE_BITS)), lf.INT32_BITS)


def _lif_reference(u, v, a, du, dv, vth, mant, exp):
    """DESIGN.md's step with the storage widths loihi_numerics declares: u, v, a_in held in int32, the sums in
    int32, and u's "wrap to 24 bit" being Lava's single conditional +-2**24 (not a modulo)."""
    u, v, a = (_wrap(z, lf.INT32_BITS) for z in (u, v, a))
    x = _wrap(_decay(u, lf.DECAY_UNITY - (du + lf.DS_OFFSET)) + _wrap(a << lf.ACT_SHIFT, lf.INT32_BITS), lf.INT32_BITS)
    u_new = x - 2 * lf.MAX_UV_VAL if x > lf.MAX_UV_VAL else (x + 2 * lf.MAX_UV_VAL if x <= -lf.MAX_UV_VAL else x)
    y = _decay(v, lf.DECAY_UNITY - (dv + lf.DM_OFFSET))
    v_new = min(max(_wrap(y + u_new + _bias(mant, exp), lf.INT32_BITS), lf.V_MIN), lf.V_MAX)
    s = v_new > (vth << lf.VTH_SHIFT)
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
@given(st.lists(st.lists(ints(-A_NO_WRAP + 1, A_NO_WRAP - 1, lf.UV_BITS - 1 - lf.ACT_SHIFT), min_size=6, max_size=6),
                min_size=1, max_size=8), st.lists(BIAS_MANTS, min_size=6, max_size=6), BIAS_EXPS, DECAYS, DECAYS, VTHS)
def test_lif_dynamics_given_the_input_peak_equals_the_big_int_reference_over_a_run(steps, mants, exp, du, dv, vth):
    """The simulator's int32 path (|a| < 2**17 over the run, so no int32 sum wraps and u keeps within 24 bits):
    every step's u, v and spikes equal the big-int reference's, from rest, whatever the decays."""
    a = torch.tensor(steps)  # [T, 6 neurons]
    bias = ln.effective_bias(torch.tensor(mants), exp)
    u = v = torch.zeros(6, dtype=torch.int64)
    want = [(0, 0)] * 6
    for t in range(len(steps)):
        u, v, s = ln.lif_dynamics(u, v, a[t], du, dv, vth, bias, a_peak=int(a.abs().max()))
        want = [_lif_reference(*want[i], steps[t][i], du, dv, vth, mants[i], exp) for i in range(6)]
        assert u.dtype == torch.int32  # the path under test
        assert [(int(x), int(y), bool(z)) for x, y, z in zip(u, v, s)] == want
        want = [w[:2] for w in want]


@PROPERTY
@given(st.lists(ANY_INT64, min_size=1, max_size=12), st.integers(-300, 300), st.integers(-10, 10), st.booleans())
def test_identity_accumulate_equals_the_big_int_reference(s, weight, exp, graded):
    """A one-to-one Sparse: w (one weight's Dense rewrite: clipped to ±255) times the input (graded: through an int32
    channel; binary: s != 0), the product in int32, shifted, sent through an int32 channel."""
    w = max(-lf.WEIGHT_MAX, min(weight, lf.WEIGHT_MAX))
    want = [_wrap(_shift(_wrap(w * _wrap(x, lf.INT32_BITS), lf.INT32_BITS) if graded else w * (x != 0), exp),
                  lf.INT32_BITS) for x in s]
    got = ln.identity_accumulate(weight, exp, np.array(s, dtype=np.int64), num_message_bits=24 if graded else 0)
    assert got.tolist() == want


@PROPERTY
@given(NEURONS, DECAYS, DECAYS, VTHS)
def test_lif_state_stays_in_its_declared_widths(neurons, du, dv, vth):
    u, v, _ = _step(neurons, du, dv, vth)
    assert ((v >= lf.V_MIN) & (v <= lf.V_MAX)).all()  # v saturates, whatever comes in
    assert np.array_equal(ln.wrap_signed(u, lf.UV_STORAGE_BITS), u)  # u never leaves its int32 Var


@PROPERTY
@given(st.lists(st.tuples(ints(-lf.MAX_UV_VAL + 1, lf.MAX_UV_VAL), ints(-A_NO_WRAP + 1, A_NO_WRAP - 1)),
                min_size=1, max_size=12), DECAYS)
def test_current_wraps_into_24_bits_for_reachable_state_and_input(pairs, du):
    # From a u Lava can produce and |a| < 2**17, one conditional wrap lands in (-2**23, 2**23], congruent mod 2**24.
    u, _, _ = _step([(uu, 0, a, 0, 0) for uu, a in pairs], du, 0, lf.VTH_MAX)
    for (u0, a), got in zip(pairs, u):
        assert -lf.MAX_UV_VAL < got <= lf.MAX_UV_VAL
        exact = _decay(u0, lf.DECAY_UNITY - (du + lf.DS_OFFSET)) + (a << lf.ACT_SHIFT)
        assert (int(got) - exact) % (2 ** lf.UV_BITS) == 0


@PROPERTY
@given(st.lists(st.tuples(ints(-lf.MAX_UV_VAL + 1, lf.MAX_UV_VAL), ints(lf.V_MIN, lf.VTH_MAX << lf.VTH_SHIFT)),
                min_size=1, max_size=12), DECAYS, DECAYS)
def test_decay_scales_the_magnitude_and_rounds_toward_zero(pairs, du, dv):
    # u decays with no input; v decays with u = 0 and cannot reach the threshold, so neither is wrapped or reset.
    u, _, _ = _step([(u0, 0, 0, 0, 0) for u0, _ in pairs], du, 0, lf.VTH_MAX)
    _, v, s = _step([(0, v0, 0, 0, 0) for _, v0 in pairs], 0, dv, lf.VTH_MAX)
    assert not s.any()
    for (u0, v0), u1, v1 in zip(pairs, u, v):
        for old, new, factor in ((u0, int(u1), lf.DECAY_UNITY - (du + lf.DS_OFFSET)),
                                 (v0, int(v1), lf.DECAY_UNITY - (dv + lf.DM_OFFSET))):
            assert new == 0 or (new > 0) == (old > 0)  # the sign survives or the value dies
            # |new| = floor(|old| * factor / 4096): the magnitude rounds down, whatever the sign
            assert abs(new) * lf.DECAY_UNITY <= abs(old) * factor < (abs(new) + 1) * lf.DECAY_UNITY


@PROPERTY
@given(st.lists(st.tuples(ANY_INT64, ANY_INT64), min_size=1, max_size=12), DECAYS, VTHS)
def test_du_max_means_no_current_memory(pairs, dv, vth):
    # DESIGN.md: du = 4095 makes u = a every step, so the old u cannot matter
    u, _, _ = _step([(u0, 0, a, 0, 0) for u0, a in pairs], lf.DECAY_MAX, dv, vth)
    from_rest, _, _ = _step([(0, 0, a, 0, 0) for _, a in pairs], lf.DECAY_MAX, dv, vth)
    assert np.array_equal(u, from_rest)


@PROPERTY
@given(VTHS, st.lists(st.tuples(st.booleans(), st.integers(-3, 3), ints(-A_NO_WRAP + 1, A_NO_WRAP - 1),
                                BIAS_MANTS, BIAS_EXPS), min_size=1, max_size=12))
def test_spike_rule_is_strict_and_resets_v_only(vth, cases):
    # From rest, v before the spike test is (a << 6) + bias, saturated; inputs within 3 of vth probe the tie.
    neurons = [(0, 0, min(max(vth + d, -A_NO_WRAP + 1), A_NO_WRAP - 1) if near else a, m, e)
               for near, d, a, m, e in cases]
    u, v, s = _step(neurons, 0, 0, vth)
    for (_, _, a, m, e), u1, v1, s1 in zip(neurons, u, v, s):
        v_pre = min(max((a << lf.ACT_SHIFT) + (m << e), lf.V_MIN), lf.V_MAX)
        assert bool(s1) == (v_pre > vth << lf.VTH_SHIFT)
        assert int(v1) == (0 if s1 else v_pre)
        assert int(u1) == a << lf.ACT_SHIFT  # the spike does not touch u
    _, _, s_tie = _step([(0, 0, vth, 0, 0)], 0, 0, vth)
    assert not s_tie.any()


@PROPERTY
@given(NEURONS, DECAYS, DECAYS, VTHS, VTHS)
def test_current_never_depends_on_voltage_or_threshold(neurons, du, dv, vth1, vth2):
    u1, _, _ = _step(neurons, du, dv, vth1)
    u2, _, _ = _step([(u, 0, a, m, e) for u, _, a, m, e in neurons], du, 0, vth2)
    assert np.array_equal(u1, u2)


@PROPERTY
@given(st.lists(st.tuples(ints(-(lf.MAX_UV_VAL // 2), lf.MAX_UV_VAL // 2), ints(lf.V_MIN, lf.V_MAX),
                          ints(-A_NO_WRAP // 4, A_NO_WRAP // 4), st.integers(0, A_NO_WRAP // 4),
                          BIAS_MANTS, BIAS_EXPS, st.integers(0, lf.MAX_UV_VAL)), min_size=1, max_size=12),
       DECAYS, DECAYS, VTHS)
def test_more_input_bias_or_voltage_never_lowers_the_next_state(cases, du, dv, vth):
    # |u|, |a| small enough that u does not wrap: then u, the pre-spike v and the spike are monotone in a, b and v.
    base = [(u0, v0, a, m, e) for u0, v0, a, _, m, e, _ in cases]
    more_a = [(u0, v0, a + da, m, e) for u0, v0, a, da, m, e, _ in cases]
    more_b = [(u0, v0, a, min(m + da, lf.BIAS_MANT_MAX), e) for u0, v0, a, da, m, e, _ in cases]
    more_v = [(u0, min(v0 + dv0, lf.V_MAX), a, m, e) for u0, v0, a, _, m, e, dv0 in cases]
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
        got = ref.lif_reset_step(u, v, a, du, dv, vth, m, e, step_index=k, reset_interval=interval,
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
    assert np.abs(got).max() < lf.MAX_UV_VAL  # and a bias alone cannot saturate v
    m, e = (np.array(c, dtype=np.int64) for c in zip(*anything))
    assert ln.effective_bias(m, e).tolist() == [_bias(mm, ee) for mm, ee in anything]


@PROPERTY
@given(hnp.arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 6)),
                  elements=ints(-(2 ** (lf.INT32_BITS - 1)), 2 ** (lf.INT32_BITS - 1) - 1, lf.WEIGHT_CLIP_BITS)),
       st.integers(1, lf.MAX_NUM_WEIGHT_BITS))
def test_effective_dense_weights_clip_then_truncate_as_declared(w, bits):
    mode = ln.dense_sign_mode(w)
    got = ln.effective_dense_weights(w, bits)
    n = lf.MAX_NUM_WEIGHT_BITS - bits + (lf.MIXED_SIGN_DROPPED_LSBS if mode == "mixed" else 0)
    lo, hi = {"mixed": (lf.WEIGHT_MIN_MIXED, lf.WEIGHT_MAX), "excitatory": (0, lf.WEIGHT_MAX),
              "inhibitory": (-lf.WEIGHT_MAX, 0)}[mode]
    clipped = np.clip(w, lo, hi)
    assert ((got >= lo) & (got <= hi)).all() and (got % 2 ** n == 0).all()
    # mixed and excitatory floor to the 2**n grid; inhibitory truncates the magnitude (toward zero)
    drop = got - clipped if mode == "inhibitory" else clipped - got
    assert ((drop >= 0) & (drop < 2 ** n)).all()
    assert (got * w >= 0).all()  # no weight changes sign
    assert np.array_equal(ln.effective_dense_weights(got, bits, sign_mode=mode), got)


@PROPERTY
@given(st.data(), st.integers(1, 4), st.integers(1, 8), st.integers(1, 3),
       st.integers(-2 * lf.INT32_BITS, 2 * lf.INT32_BITS), st.sampled_from([0, lf.GRADED_MESSAGE_BITS]))
def test_dense_accumulate_equals_the_big_int_sum(data, n_out, n_in, batch, weight_exp, message_bits):
    w = data.draw(hnp.arrays(np.int64, (n_out, n_in), elements=ints(lf.WEIGHT_MIN_MIXED, lf.WEIGHT_MAX)))
    s = data.draw(hnp.arrays(np.int64, (batch, n_in), elements=ANY_INT64))
    got = ln.dense_accumulate(w, s, weight_exp, message_bits)
    for row, out in zip(s.tolist(), got.tolist()):
        for o, value in enumerate(out):
            if message_bits:  # int32 weights.dot(int32 payloads): the product sum wraps before the shift
                acc = _wrap(sum(int(wi) * _wrap(si, lf.INT32_BITS) for wi, si in zip(w[o], row)), lf.INT32_BITS)
            else:  # any non-zero input is one spike
                acc = sum(int(wi) for wi, si in zip(w[o], row) if si)
            assert value == _wrap(_shift(acc, weight_exp), lf.DENSE_OUT_BITS)


def _up_to(m):
    """Integers in [-m, m], often exactly ±m, so that sums reach their bound."""
    return st.one_of(st.integers(-m, m), st.sampled_from([-m, m]))


def _naive_correlation(w, s, stride, padding, dilation, groups):
    """torch conv2d (cross-correlation, zero padding) on Python ints."""
    n, c, h, wd = s.shape
    cout, cin_g, kh, kw = w.shape
    ho, wo = lf.conv_output_hw((h, wd), (kh, kw), stride, padding, dilation)
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
       st.integers(0, 1), st.integers(1, 2), st.sampled_from([0, lf.GRADED_MESSAGE_BITS]),
       st.sampled_from([1, lf.WEIGHT_MAX, 2 ** 12, 2 ** 20, 2 ** (lf.INT32_BITS - 1) - 1]),
       st.sampled_from([1, 2 ** 8, 2 ** 16, 2 ** (lf.GRADED_MESSAGE_BITS - 1)]))
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
    if bound >= lf.FLOAT64_EXACT_LIMIT or np.abs(exact).max() >= 2 ** (lf.INT32_BITS - 1):
        with pytest.raises(OverflowError):
            ln.conv_accumulate(w, s, stride, padding, dilation, groups, message_bits)
        return
    got = ln.conv_accumulate(w, s, stride, padding, dilation, groups, message_bits)
    assert got.tolist() == np.vectorize(lambda z: _wrap(z, lf.CONV_OUT_BITS), otypes=[object])(exact).tolist()


@PROPERTY
@given(st.lists(ANY_INT64, min_size=1, max_size=12), st.integers(2, 64))
def test_wrap_signed_is_the_twos_complement_wrap(x, bits):
    got = ln.wrap_signed(np.array(x, dtype=np.int64), bits)
    assert got.tolist() == [_wrap(v, bits) for v in x]
    half = 2 ** (bits - 1)
    assert all(-half <= g < half for g in got.tolist())
