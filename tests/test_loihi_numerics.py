"""The fixed-point numeric core equals Lava 0.10.0's fixed_pt process models: hand-computed values, then
spike-for-spike and state-for-state against Lava itself on adversarial cases (one Lava run for all of them)."""
import json
import subprocess

import numpy as np
import pytest
import torch

from snn2hw.hardware_sims import loihi_formats as lf
from snn2hw.hardware_sims import loihi_numerics as ln

import lava_reference as ref

# ---------------------------------------------------------------------------------------------------------------------
# Pure numpy: hand-computed values
# ---------------------------------------------------------------------------------------------------------------------


def test_constants_are_the_lava_formats():
    assert (lf.WEIGHT_MIN_MIXED, lf.WEIGHT_MAX) == (-256, 255)
    assert (lf.DECAY_UNITY, lf.DECAY_SHIFT, lf.DS_OFFSET, lf.DM_OFFSET) == (4096, 12, 1, 0)
    assert (lf.VTH_SHIFT, lf.ACT_SHIFT) == (6, 6)
    assert (lf.MAX_UV_VAL, lf.V_MAX, lf.V_MIN) == (2 ** 23, 2 ** 23 - 1, -(2 ** 23 - 1))
    assert (lf.VTH_MAX, lf.DECAY_MAX, lf.BIAS_MANT_MIN, lf.BIAS_MANT_MAX, lf.BIAS_EXP_MAX) == (
        131071, 4095, -4096, 4095, 7)
    assert lf.CONV_OUT_BITS == 24


def test_wrap_signed():
    np.testing.assert_array_equal(ln.wrap_signed([2 ** 31, -2 ** 31 - 1, 5, 2 ** 23], 32),
                                  [-2 ** 31, 2 ** 31 - 1, 5, 2 ** 23])
    np.testing.assert_array_equal(ln.wrap_signed([2 ** 23, -2 ** 23 - 1, 3 * 2 ** 22], 24),
                                  [-2 ** 23, 2 ** 23 - 1, -2 ** 22])


def test_effective_dense_weights_mixed_sign_clips_and_drops_the_lsb():
    w = np.array([[7, -7, 255, -257, 300, 1, -1, 0, -256, 254]])
    np.testing.assert_array_equal(ln.effective_dense_weights(w), [[6, -8, 254, -256, 254, 0, -2, 0, -256, 254]])
    assert ln.dense_sign_mode(w) == "mixed"
    # 6 weight bits, mixed: 8 - 6 + 1 = 3 LSBs go, rounding toward minus infinity
    np.testing.assert_array_equal(ln.effective_dense_weights([[7, -7, 100, -100]], num_weight_bits=6),
                                  [[0, -8, 96, -104]])


def test_effective_dense_weights_single_sign_keep_odd_values():
    # all >= 0 (zero included): clip to [0, 255], nothing dropped with 8 bits
    np.testing.assert_array_equal(ln.effective_dense_weights([[7, 300, 0, 255]]), [[7, 255, 0, 255]])
    # all <= 0: clip to [-255, 0] (so -256 becomes -255), nothing dropped with 8 bits
    np.testing.assert_array_equal(ln.effective_dense_weights([[-7, -256, -300, 0]]), [[-7, -255, -255, 0]])
    # fewer bits: excitatory floors, inhibitory truncates the magnitude (toward zero)
    np.testing.assert_array_equal(ln.effective_dense_weights([[7, 6, 5]], num_weight_bits=6), [[4, 4, 4]])
    np.testing.assert_array_equal(ln.effective_dense_weights([[-7, -6, -3]], num_weight_bits=6), [[-4, -4, 0]])
    assert ln.dense_sign_mode(np.zeros((2, 2))) == "excitatory"
    # an explicit sign mode overrides the detected one (Lava's proc_params["sign_mode"])
    np.testing.assert_array_equal(ln.effective_dense_weights([[7, 3]], sign_mode="mixed"), [[6, 2]])
    # float weights are truncated toward zero like Lava's int32 Var
    np.testing.assert_array_equal(ln.effective_dense_weights([[2.7, -2.7]]), [[2, -2]])
    with pytest.raises(ValueError):
        ln.effective_dense_weights([[1]], num_weight_bits=9)


def test_dense_accumulate():
    w = np.array([[1, -2, 3]])
    np.testing.assert_array_equal(ln.dense_accumulate(w, [[1, 1, 0]]), [[-1]])
    np.testing.assert_array_equal(ln.dense_accumulate(w, [[1, 1, 0]], weight_exp=-1), [[-1]])  # -1 >> 1 floors
    np.testing.assert_array_equal(ln.dense_accumulate(w, [[1, 1, 1]], weight_exp=-1), [[1]])
    np.testing.assert_array_equal(ln.dense_accumulate([[-5]], [[1]], weight_exp=-1), [[-3]])
    np.testing.assert_array_equal(ln.dense_accumulate(w, [[1, 0, 1]], weight_exp=2), [[16]])
    # binary mode counts any nonzero input as one spike; graded mode multiplies
    np.testing.assert_array_equal(ln.dense_accumulate(w, [[2, 0, 3]]), [[4]])
    np.testing.assert_array_equal(ln.dense_accumulate(w, [[2, 0, 3]], num_message_bits=8), [[11]])
    # the int32 channel wraps: 765 << 23 = 6417285120 → 6417285120 - 2**32
    np.testing.assert_array_equal(ln.dense_accumulate([[255, 255, 255]], [[1, 1, 1]], weight_exp=23),
                                  [[6417285120 - 2 ** 32]])
    # batch-first
    s = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    np.testing.assert_array_equal(ln.dense_accumulate(w, s), [[1], [-2], [3], [2]])


def _naive_correlation(w, s, stride, padding, dilation, groups):
    """Direct loop definition of a torch conv2d (cross-correlation) on integers."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = s.shape
    co, cg, kh, kw = w.shape
    sp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=np.int64)
    sp[:, :, ph:ph + h, pw:pw + wd] = s
    ho, wo = lf.conv_output_hw((h, wd), (kh, kw), stride, padding, dilation)
    out = np.zeros((n, co, ho, wo), dtype=np.int64)
    og = co // groups
    for o in range(co):
        g = o // og
        for y in range(ho):
            for x in range(wo):
                rows = slice(y * sh, y * sh + dh * (kh - 1) + 1, dh)
                cols = slice(x * sw, x * sw + dw * (kw - 1) + 1, dw)
                patch = sp[:, g * cg:(g + 1) * cg, rows, cols]
                out[:, o, y, x] = (patch * w[o]).sum(axis=(1, 2, 3))
    return out


def test_conv_accumulate_hand_values():
    # cross-correlation orientation: a single input spike at (0, 0), padding 1, kernel [[1, 2], [3, 4]]
    s = np.zeros((1, 1, 2, 2), dtype=int)
    s[0, 0, 0, 0] = 1
    w = np.array([[[[1, 2], [3, 4]]]])
    np.testing.assert_array_equal(ln.conv_accumulate(w, s, padding=1)[0, 0], [[4, 3, 0], [2, 1, 0], [0, 0, 0]])
    # 24-bit wrap, not saturation: 3 * 2**22 → -2**22; no clip of out-of-range weights, no weight_exp
    s = np.ones((1, 1, 1, 3), dtype=int)
    np.testing.assert_array_equal(ln.conv_accumulate(np.full((1, 1, 1, 3), 2 ** 22), s), [[[[-2 ** 22]]]])
    np.testing.assert_array_equal(ln.conv_accumulate(np.full((1, 1, 1, 3), 1000), s), [[[[3000]]]])
    with pytest.raises(OverflowError):
        ln.conv_accumulate(np.full((1, 1, 1, 3), 2 ** 30), s)


def test_conv_accumulate_matches_a_direct_loop():
    rng = np.random.default_rng(0)
    for stride, padding, dilation, groups, graded in [((2, 2), (1, 1), (1, 1), 1, False),
                                                      ((1, 2), (2, 1), (2, 1), 2, False),
                                                      ((1, 1), (0, 0), (1, 1), 1, True)]:
        w = rng.integers(-300, 301, size=(6, 4 // groups, 3, 2))
        s = rng.integers(0, 4, size=(3, 4, 8, 7)) * (rng.random((3, 4, 8, 7)) < 0.5)
        got = ln.conv_accumulate(w, s, stride, padding, dilation, groups, num_message_bits=8 if graded else 0)
        ref = _naive_correlation(w, s if graded else (s != 0).astype(int), stride, padding, dilation, groups)
        np.testing.assert_array_equal(got, ln.wrap_signed(ref, 24))


@pytest.mark.parametrize("channels", [7000, 7400])  # max |partial sum| just below / above float32's 2**24
def test_conv_accumulate_is_exact_at_the_float32_limit(channels):
    rng = np.random.default_rng(1)
    s = np.stack([np.ones((channels, 3, 3), bool), rng.random((channels, 3, 3)) < 0.5])
    w = np.stack([np.full((channels, 3, 3), 255), rng.integers(-255, 256, (channels, 3, 3))])
    got = ln.conv_accumulate(w, s)[:, :, 0, 0]
    ref = np.einsum("ochw,nchw->no", w.astype(np.int64), s.astype(np.int64))
    assert abs(ref[0, 0]) > 2 ** 23  # the sums really come close to the limit
    np.testing.assert_array_equal(got, ln.wrap_signed(ref, 24))


def test_conv_weight_layout_round_trip():
    w = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    lw = lf.torch_to_lava_conv_weight(w)
    assert lw.shape == (2, 5, 4, 3)
    assert lw[1, 0, 0, 2] == w[1, 2, 3, 4]                      # flipped in both spatial axes
    np.testing.assert_array_equal(lf.lava_to_torch_conv_weight(lw), w)
    assert lf.torch_to_lava_conv_params((1, 2), (3, 4), (5, 6)) == {"stride": (2, 1), "padding": (4, 3),
                                                                  "dilation": (6, 5)}


def test_effective_bias():
    np.testing.assert_array_equal(ln.effective_bias([-5, 5, 3, -4096, 40000, -1], [-1, -1, 2, 7, 0, -3]),
                                  [-3, 2, 12, -524288, 40000 - 65536, -1])


def test_lif_step_hand_values():
    # u = a << 6 with du = 4095; dv = 0 keeps v
    u, v, s = ln.lif_step([[0]], [[0]], [[10]], du=4095, dv=0, vth=20)
    assert (u.item(), v.item(), s.item()) == (640, 640, False)
    # decay rounds the magnitude toward zero: -5 * 2048 / 4096 = -2.5 → -2
    u, v, s = ln.lif_step([[-5]], [[0]], [[0]], du=2047, dv=0, vth=20)
    assert (u.item(), v.item()) == (-2, -2)
    # dv = 4095: v * 1 >> 12
    u, v, s = ln.lif_step([[0]], [[-8191]], [[0]], du=0, dv=4095, vth=20)
    assert v.item() == -1
    # the 24-bit "wrap": 2**23 stays, -2**23 becomes +2**23, 2**23 + 64 wraps, 2**26 wraps only once,
    # and a << 6 first wraps in int32 (2**25 << 6 = 2**31 → -2**31, then + 2**24)
    a = np.array([[2 ** 17, -2 ** 17, 2 ** 17 + 1, 2 ** 20, 2 ** 25]])
    u, v, s = ln.lif_step(np.zeros_like(a), np.zeros_like(a), a, du=4095, dv=0, vth=2 ** 17)
    np.testing.assert_array_equal(u, [[2 ** 23, 2 ** 23, 64 - 2 ** 23, 2 ** 26 - 2 ** 24, -2 ** 31 + 2 ** 24]])
    # v saturates symmetrically at ±(2**23 - 1)
    np.testing.assert_array_equal(v, [[2 ** 23 - 1, 2 ** 23 - 1, 64 - 2 ** 23, 2 ** 23 - 1, -(2 ** 23 - 1)]])
    assert not s.any()                                          # vth << 6 = 2**23 is out of reach
    # strict threshold: v == vth << 6 does not fire, one more does; only v resets
    u, v, s = ln.lif_step([[0, 0]], [[0, 0]], [[10, 10]], du=4095, dv=4095, vth=10, bias_mant=[0, 1])
    np.testing.assert_array_equal(s, [[False, True]])
    np.testing.assert_array_equal(v, [[640, 0]])
    np.testing.assert_array_equal(u, [[640, 640]])


def test_lif_reset_schedule():
    assert [k for k in range(10) if ln.lif_reset_due(k, 4, 0)] == [3, 7]
    assert [k for k in range(10) if ln.lif_reset_due(k, 4, 1)] == [0, 4, 8]
    assert [k for k in range(10) if ln.lif_reset_due(k, 4, 5)] == [0, 4, 8]
    assert all(ln.lif_reset_due(k, 1, 0) for k in range(5))
    u, v, s = ref.lif_reset_step([[100]], [[100]], [[1]], 0, 0, 10, step_index=0, reset_interval=4, reset_offset=1)
    assert (u.item(), v.item()) == (64, 64)                     # state zeroed, this step's input still counted


def test_inport_sum_wraps_in_int32():
    np.testing.assert_array_equal(ln.inport_sum([2 ** 31 - 1], [1], [5]), [-2 ** 31 + 5])
    np.testing.assert_array_equal(ln.inport_sum(1, 2, np.array([1, 2, 3])), [4, 5, 6])  # terms broadcast


@pytest.mark.parametrize("du, dv, vth", [(4095, 2048, 2 ** 25 + 3), (5000, 0, 100), (0, 4100, 10), (0, 0, -3)])
def test_lif_dynamics_int32_path_equals_the_int64_path_beyond_lavas_formats(du, dv, vth):
    """Parameters outside Lava's 12-bit decays and 17-bit threshold (which chip specs are not checked against
    here): a threshold whose << 6 leaves int32, negative decay factors. The path given the input's peak computes
    what the general one does, step by step."""
    a = torch.as_tensor(np.random.default_rng(0).integers(-2 ** 16, 2 ** 16, (5, 2, 64)))
    bias = ln.effective_bias(torch.arange(-64, 64, 2), 3)
    state = {"int64": (torch.zeros(2, 64, dtype=torch.int64),) * 2, "peak": (torch.zeros(2, 64, dtype=torch.int64),) * 2}
    for t in range(len(a)):
        *state["int64"], s64 = ln.lif_dynamics(*state["int64"], a[t], du, dv, vth, bias)
        *state["peak"], s32 = ln.lif_dynamics(*state["peak"], a[t], du, dv, vth, bias, a_peak=2 ** 16)
        assert torch.equal(s64, s32) and all(torch.equal(x, y.long()) for x, y in zip(state["int64"], state["peak"]))


def test_graded_vec_step_takes_numpy_with_a_threshold():
    np.testing.assert_array_equal(ln.graded_vec_step(np.array([1, -5, 2]), vth=1), [0, -5, 2])


def test_run_dense_lif_reproduces_the_environment_check():
    """Same case as test_environments: Dense(10) delays one step, u = 640, fires when v > 1280."""
    tr = ref.run_dense_lif([[10]], np.ones((1, 10, 1), dtype=int), du=4095, dv=0, vth=20)
    np.testing.assert_array_equal(tr.v[0, :, 0], [0, 640, 1280, 0, 640, 1280, 0, 640, 1280, 0])
    np.testing.assert_array_equal(tr.s[0, :, 0], [0, 0, 0, 1, 0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(ref.delay(np.arange(6).reshape(1, 6)), [[0, 0, 1, 2, 3, 4]])


def test_batch_equals_one_sample_at_a_time():
    rng = np.random.default_rng(1)
    w = rng.integers(-40, 41, size=(5, 9))
    spikes = rng.random((4, 12, 9)) < 0.4
    kw = dict(du=1000, dv=200, vth=30, bias_mant=rng.integers(-50, 50, 5), bias_exp=1, weight_exp=1)
    batch = ref.run_dense_lif(w, spikes, **kw)
    for i in range(4):
        one = ref.run_dense_lif(w, spikes[i:i + 1], **kw)
        for key in ("s", "u", "v"):
            np.testing.assert_array_equal(getattr(batch, key)[i:i + 1], getattr(one, key))


def test_lif_format_errors():
    assert lf.lif_format_errors(4095, 0, 131071, [-4096, 4095], [0, 7]) == []
    assert len(lf.lif_format_errors(4096, -1, 131072, [5000], [-1])) == 5


# ---------------------------------------------------------------------------------------------------------------------
# Against Lava itself
# ---------------------------------------------------------------------------------------------------------------------

LAVA_SCRIPT = r"""
import json, sys
import numpy as np
from lava.proc.io.source import RingBuffer
from lava.proc.dense.process import Dense
from lava.proc.conv.process import Conv
from lava.proc.lif.process import LIF, LIFReset
from lava.proc.monitor.process import Monitor
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.magma.core.run_conditions import RunSteps

spec = json.load(open(sys.argv[1]))
arrays = np.load(sys.argv[2])
out = {}
for case in spec:
    name = case["name"]
    get = lambda key: arrays[name + "__" + key]
    data = get("input")
    T = data.shape[-1]
    src = RingBuffer(data=data)
    lif_kw = dict(shape=tuple(case["lif_shape"]), du=case["du"], dv=case["dv"], vth=case["vth"],
                  bias_mant=get("bias_mant"), bias_exp=get("bias_exp"), u=get("u0"), v=get("v0"))
    if case.get("reset_interval"):
        lif = LIFReset(reset_interval=case["reset_interval"], reset_offset=case["reset_offset"], **lif_kw)
    else:
        lif = LIF(**lif_kw)
    syn = None
    if case["kind"] == "dense":
        syn = Dense(weights=get("weights"), weight_exp=case["weight_exp"], num_weight_bits=case["num_weight_bits"],
                    num_message_bits=case["num_message_bits"])
    elif case["kind"] == "conv":
        syn = Conv(weight=get("weight"), input_shape=tuple(data.shape[:-1]), stride=tuple(case["stride"]),
                   padding=tuple(case["padding"]), dilation=tuple(case["dilation"]), groups=case["groups"],
                   num_message_bits=case["num_message_bits"], weight_exp=case.get("weight_exp", 0))
    if syn is None:
        src.s_out.connect(lif.a_in)
    else:
        src.s_out.connect(syn.s_in)
        syn.a_out.connect(lif.a_in)
    targets = {"u": lif.u, "v": lif.v, "s": lif.s_out}
    if syn is not None:
        targets["a"] = syn.a_out
    monitors = {}
    for key, target in targets.items():
        monitors[key] = Monitor()
        monitors[key].probe(target, T)
    lif.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    for key, target in targets.items():
        out[name + "__" + key] = np.asarray(monitors[key].get_data()[target.process.name][target.name])
    lif.stop()
np.savez(sys.argv[3], **out)
"""


def _flat(x, n):
    """Per-neuron parameter (scalar or [n]) → int64 [n]."""
    return np.broadcast_to(np.asarray(x, dtype=np.int64), (n,)).copy()


def _lif_case(name, a, du, dv, vth, bias_mant=0, bias_exp=0, u0=0, v0=0, reset=None):
    """RingBuffer → LIF directly (no delay): arbitrary int32 inputs. a: [N, T, n]; Lava sees N*n neurons."""
    n_s, t, n = a.shape
    p = {k: _flat(x, n) for k, x in dict(bias_mant=bias_mant, bias_exp=bias_exp, u0=u0, v0=v0).items()}
    expected = ref.run_lif(a, du, dv, vth, p["bias_mant"], p["bias_exp"], p["u0"], p["v0"],
                          *(reset or (None, 0)))
    spec = dict(name=name, kind="lif", lif_shape=[n_s * n], du=du, dv=dv, vth=vth)
    if reset:
        spec.update(reset_interval=reset[0], reset_offset=reset[1])
    arrays = {"input": a.transpose(0, 2, 1).reshape(n_s * n, t), **{k: np.tile(x, n_s) for k, x in p.items()}}
    to_ours = lambda x: x.reshape(t, n_s, n).transpose(1, 0, 2)  # noqa: E731  Lava (T, N*n) → [N, T, n]
    return spec, arrays, expected, None, to_ours


def _dense_case(name, w, spikes, du, dv, vth, bias_mant=0, bias_exp=0, weight_exp=0, num_weight_bits=8,
                num_message_bits=0):
    """RingBuffer → Dense → LIF. N samples run in one Lava Dense as a block-diagonal weight matrix (zeros do not
    change the sign mode), so this also checks our batch dimension."""
    n_s, t, n_in = spikes.shape
    n_out = w.shape[0]
    bm, be = _flat(bias_mant, n_out), _flat(bias_exp, n_out)
    expected = ref.run_dense_lif(w, spikes, du=du, dv=dv, vth=vth, bias_mant=bm, bias_exp=be, weight_exp=weight_exp,
                                num_weight_bits=num_weight_bits, num_message_bits=num_message_bits)
    acc = ln.dense_accumulate(ln.effective_dense_weights(w, num_weight_bits), spikes.reshape(n_s * t, n_in),
                              weight_exp, num_message_bits)
    a_expected = ref.delay(acc.reshape(n_s, t, n_out))
    spec = dict(name=name, kind="dense", lif_shape=[n_s * n_out], du=du, dv=dv, vth=vth, weight_exp=weight_exp,
                num_weight_bits=num_weight_bits, num_message_bits=num_message_bits)
    arrays = {"input": spikes.transpose(0, 2, 1).reshape(n_s * n_in, t), "weights": np.kron(np.eye(n_s, dtype=int), w),
              "bias_mant": np.tile(bm, n_s), "bias_exp": np.tile(be, n_s), "u0": np.zeros(n_s * n_out, dtype=int),
              "v0": np.zeros(n_s * n_out, dtype=int)}
    to_ours = lambda x: x.reshape(t, n_s, n_out).transpose(1, 0, 2)  # noqa: E731
    return spec, arrays, expected, a_expected, to_ours


def _conv_case(name, w, spikes, du, dv, vth, stride, padding, dilation=(1, 1), groups=1, bias_mant=0, bias_exp=0,
               num_message_bits=0, weight_exp=0):
    """RingBuffer → Conv → LIF for one sample (torch layouts here, Lava's (X, Y, C) layouts in the script).
    weight_exp is passed to Lava's Conv, which must ignore it."""
    _, t = spikes.shape[:2]
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    acc = ln.conv_accumulate(w, spikes[0], num_message_bits=num_message_bits, **kw)   # [T, Co, Ho, Wo]
    out_shape = acc.shape[1:]
    bm = np.broadcast_to(np.asarray(bias_mant, dtype=np.int64).reshape(-1, 1, 1), out_shape)
    be = np.broadcast_to(np.asarray(bias_exp, dtype=np.int64).reshape(-1, 1, 1), out_shape)
    expected = ref.run_conv_lif(w, spikes, du=du, dv=dv, vth=vth, bias_mant=bm, bias_exp=be,
                               num_message_bits=num_message_bits, **kw)
    lava_kw = lf.torch_to_lava_conv_params(stride, padding, dilation)
    spec = dict(name=name, kind="conv", lif_shape=list(out_shape[::-1]), du=du, dv=dv, vth=vth, groups=groups,
                num_message_bits=num_message_bits, weight_exp=weight_exp,
                **{k: list(v) for k, v in lava_kw.items()})
    zeros = np.zeros(out_shape[::-1], dtype=int)
    arrays = {"input": spikes[0].transpose(3, 2, 1, 0), "weight": lf.torch_to_lava_conv_weight(w),
              "bias_mant": bm.transpose(2, 1, 0), "bias_exp": be.transpose(2, 1, 0), "u0": zeros, "v0": zeros}
    to_ours = lambda x: x.transpose(0, 3, 2, 1)[None]  # noqa: E731  Lava (T, X, Y, C) → [1, T, C, H, W]
    return spec, arrays, expected, ref.delay(acc[None]), to_ours


def _build_cases():
    rng = np.random.default_rng(2026)
    cases = []
    # -- LIF alone, arbitrary int32 inputs --
    a = np.array([2 ** 17, -2 ** 17, 2 ** 17 + 1, -2 ** 17 - 1, 2 ** 20, -2 ** 20, 2 ** 25 + 3, -2 ** 25 - 3,
                  2 ** 31 - 1, -2 ** 31, 12345, 0])
    a = np.stack([np.roll(a, k) for k in range(6)])[None]                        # [1, 6, 12]
    cases.append(_lif_case("u_wrap_du4095", a, du=4095, dv=0, vth=2 ** 17))
    cases.append(_lif_case("u_wrap_du0_near_limit", rng.integers(-3, 4, size=(2, 8, 5)), du=0, dv=1, vth=100000,
                           u0=[2 ** 23 - 70, -2 ** 23 + 70, 2 ** 23 - 1, -2 ** 23 + 1, 0],
                           v0=[2 ** 23 - 1, -2 ** 23 + 1, 5, -5, 0]))
    big = np.array([2 ** 16, -2 ** 16, 2 ** 15, -2 ** 15, 100])
    cases.append(_lif_case("v_saturation_no_fire", np.broadcast_to(big, (1, 10, 5)).copy(), du=4095, dv=0,
                           vth=2 ** 17))
    cases.append(_lif_case("v_saturation_fires_at_max_vth", np.broadcast_to(big, (1, 6, 5)).copy(), du=4095, dv=0,
                           vth=2 ** 17 - 1))
    cases.append(_lif_case("negative_bias_negative_exp", rng.integers(-2, 3, size=(2, 12, 8)), du=4095, dv=4095,
                           vth=3, bias_mant=[-5, -1, -4096, 4095, 7, -3, 40000, -40000],
                           bias_exp=[-1, -3, 7, 7, -2, 0, 0, -1]))
    cases.append(_lif_case("du4095_dv0", rng.integers(-50, 60, size=(2, 15, 6)), du=4095, dv=0, vth=120,
                           bias_mant=rng.integers(-20, 20, 6), bias_exp=3))
    cases.append(_lif_case("dv4095", rng.integers(-80, 120, size=(2, 15, 6)), du=2900, dv=4095, vth=40,
                           bias_mant=rng.integers(-100, 100, 6), bias_exp=-2))
    # v == vth << 6 = 640 must not fire; 641 must (du = dv = 4095 make v = (a << 6) + bias each step)
    cases.append(_lif_case("vth_boundary", np.broadcast_to([10, 10, 9, 9, 10, 10], (1, 5, 6)).copy(), du=4095,
                           dv=4095, vth=10, bias_mant=[0, 1, 64, 65, -1, 4]))
    cases.append(_lif_case("many_neurons_steps", rng.integers(-200, 260, size=(3, 25, 7)), du=1000, dv=300, vth=50,
                           bias_mant=rng.integers(-300, 300, 7), bias_exp=rng.integers(-3, 4, 7),
                           u0=rng.integers(-5000, 5000, 7), v0=rng.integers(-3000, 3000, 7)))
    a = rng.integers(0, 40, size=(2, 13, 4))
    cases.append(_lif_case("lif_reset_offset1", a, du=500, dv=200, vth=60, bias_mant=3, bias_exp=2, reset=(4, 1)))
    cases.append(_lif_case("lif_reset_offset0", a, du=500, dv=200, vth=60, bias_mant=3, bias_exp=2, reset=(4, 0)))
    # -- Dense → LIF --
    w = rng.integers(-300, 301, size=(6, 12))
    w[0, :10] = [255, -256, -257, 256, 1, -1, 3, -3, 254, -255]
    spikes = (rng.random((2, 20, 12)) < 0.4) * rng.choice([1, 3], size=(2, 20, 12))   # 3 still counts as one spike
    cases.append(_dense_case("dense_mixed_odd_wexp2", w, spikes, du=2000, dv=100, vth=200, bias_mant=-7, bias_exp=2,
                             weight_exp=2))
    cases.append(_dense_case("dense_mixed_wexp_neg", w, spikes, du=3000, dv=600, vth=5, weight_exp=-3))
    cases.append(_dense_case("dense_all_positive", rng.integers(0, 300, size=(5, 10)) | 1,
                             rng.random((2, 16, 10)) < 0.3, du=1500, dv=400, vth=300, bias_mant=-30, bias_exp=3,
                             weight_exp=-1))
    wn = -rng.integers(0, 300, size=(5, 10))
    wn[0, :3] = [-256, -257, -1]
    cases.append(_dense_case("dense_all_negative_wexp_neg", wn, rng.random((2, 16, 10)) < 0.4, du=4095, dv=800, vth=20,
                             bias_mant=1000, bias_exp=1, weight_exp=-3))
    cases.append(_dense_case("dense_6_weight_bits", w, spikes, du=100, dv=50, vth=300, weight_exp=1,
                             num_weight_bits=6))
    cases.append(_dense_case("dense_graded", w, rng.integers(-20, 256, size=(2, 12, 12)), du=3500, dv=700,
                             vth=1000, weight_exp=-4, num_message_bits=8))
    cases.append(_dense_case("dense_int32_overflow", np.full((3, 8), 255), np.ones((1, 5, 8), dtype=int), du=4095,
                             dv=4095, vth=100, weight_exp=21))
    # -- Conv → LIF --
    w = rng.integers(-300, 301, size=(4, 3, 3, 3))
    cases.append(_conv_case("conv_stride2_pad1", w, rng.random((1, 6, 3, 7, 6)) < 0.4, du=3000, dv=500, vth=100,
                            stride=(2, 2), padding=(1, 1), bias_mant=[-20, 0, 20, 40], bias_exp=2, weight_exp=3))
    w = rng.integers(-200, 201, size=(6, 2, 3, 2))
    cases.append(_conv_case("conv_groups_dilation_asym", w, rng.random((1, 5, 4, 8, 7)) < 0.5, du=2000, dv=1000,
                            vth=50, stride=(1, 2), padding=(2, 1), dilation=(2, 1), groups=2))
    cases.append(_conv_case("conv_graded", rng.integers(-100, 101, size=(3, 2, 2, 3)),
                            rng.integers(0, 50, size=(1, 4, 2, 5, 6)), du=3800, dv=3000, vth=5000, stride=(1, 1),
                            padding=(0, 1), num_message_bits=8))
    w = rng.choice([-1, 1], size=(2, 2, 3, 3)) * 2 ** 20
    w[0] = 2 ** 20 - 3                                   # 18 * (2**20 - 3) at inner positions: wraps past 2**23
    cases.append(_conv_case("conv_24bit_wrap", w,
                            np.ones((1, 4, 2, 5, 5), dtype=int), du=4095, dv=4095, vth=1000, stride=(1, 1),
                            padding=(1, 1)))
    return cases


CASES = _build_cases()
SILENT_CASES = {"u_wrap_du4095", "v_saturation_no_fire", "dense_int32_overflow"}  # vth out of reach by design


@pytest.fixture(scope="module")
def lava_results(lava_python, tmp_path_factory):
    """Every case in one Lava process (imports and process spawning dominate; ~15 s in all)."""
    tmp = tmp_path_factory.mktemp("lava_numerics")
    spec = [c[0] for c in CASES]
    arrays = {f"{c[0]['name']}__{k}": np.ascontiguousarray(v).astype(np.int64) for c in CASES for k, v in c[1].items()}
    (tmp / "spec.json").write_text(json.dumps(spec))
    np.savez(tmp / "in.npz", **arrays)
    (tmp / "run.py").write_text(LAVA_SCRIPT)
    result = subprocess.run([str(lava_python), str(tmp / "run.py"), str(tmp / "spec.json"), str(tmp / "in.npz"),
                             str(tmp / "out.npz")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(tmp / "out.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.lava
@pytest.mark.parametrize("case", CASES, ids=[c[0]["name"] for c in CASES])
def test_matches_lava(case, lava_results):
    spec, _, expected, a_expected, to_ours = case
    name = spec["name"]
    got = {k: to_ours(lava_results[f"{name}__{k}"]) for k in ("s", "u", "v")}
    assert np.array_equal(got["s"], expected.s), f"{name}: spikes differ at {np.argwhere(got['s'] != expected.s)[:5]}"
    assert np.array_equal(got["u"], expected.u), f"{name}: u differs at {np.argwhere(got['u'] != expected.u)[:5]}"
    assert np.array_equal(got["v"], expected.v), f"{name}: v differs at {np.argwhere(got['v'] != expected.v)[:5]}"
    if a_expected is not None:
        a = to_ours(lava_results[f"{name}__a"])
        assert np.array_equal(a, a_expected), f"{name}: synaptic output differs at {np.argwhere(a != a_expected)[:5]}"
    if name not in SILENT_CASES:
        assert 0 < expected.s.mean() < 1, f"{name}: the case should fire sometimes, not never or always"


@pytest.mark.parametrize("weight, bits, peak", [(37, 0, 1), (-128, 0, 1), (90, 24, 2 ** 23), (-127, 16, 2 ** 15),
                                                (127, 24, 2 ** 23 - 1)])
def test_identity_conv_accumulate_is_the_1x1_identity_conv(weight, bits, peak):
    """The product per neuron equals Lava's Conv of the kernel weight·I, wraps at 24 bits included (90 · 2^23
    wraps; binary inputs count any non-zero value as a spike)."""
    rng = np.random.default_rng(abs(weight) + bits)
    s = rng.integers(-peak, peak + 1, (3, 6, 5, 4)) * (rng.random((3, 6, 5, 4)) < 0.5)
    want = ln.conv_accumulate(lf.identity_kernel(weight, 6), s, num_message_bits=bits)
    got = ln.identity_conv_accumulate(weight, s, bits)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert bits < 24 or np.abs(weight * s).max() >= 2 ** 23  # the wrap case is really exercised
