"""Loihi fixed-point numerics, bit-exact with lava-nc 0.10.0's ``fixed_pt`` process models.

This is the numeric core of the golden model (DESIGN.md, semantics contract level 3). Every function here
reproduces one piece of a Lava process model, including the integer widths Lava's numpy code happens to use:
where Lava's arithmetic wraps, saturates or rounds, so do we. Sources (lava-nc 0.10.0 wheel):

* ``lava/proc/lif/models.py``        ``AbstractPyLifModelFixed``, ``PyLifModelBitAcc``, ``PyLifResetModelBitAcc``
* ``lava/proc/dense/models.py``      ``AbstractPyDenseModelBitAcc`` (``PyDenseModelBitAcc``)
* ``lava/utils/weightutils.py``      ``determine_sign_mode``, ``clip_weights``, ``truncate_weights``
* ``lava/proc/conv/models.py``       ``PyConvModelFixed``;  ``lava/proc/conv/utils.py``: ``conv``, ``conv_scipy``,
  ``signed_clamp``
* ``lava/magma/compiler/channels/pypychannel.py`` (``CspSendPort.send`` copies into a buffer of the *sending* port's
  dtype), ``lava/magma/core/model/py/ports.py`` (``PyInPortVectorDense.recv`` sums all incoming channels onto
  ``zeros(shape, receiving dtype)``), ``lava/magma/compiler/builders/py_builder.py`` (ndarray Vars are allocated
  with the LavaPyType dtype and filled with ``var[:] = value``, i.e. a C cast).

Conventions
-----------
* All arrays are batch-first: ``[N, ...]`` for one time step, ``[N, T, ...]`` for a run. Values are returned as
  ``np.int64`` (spikes as ``bool``); the int32/int16 widths Lava uses are emulated with :func:`wrap_signed`.
* Time steps: our index ``k = 0..T-1`` is Lava's ``time_step = k + 1`` (Lava counts from 1).
* **Every Dense/Conv delays by one step**: at ``time_step`` t it first sends the accumulation it computed at t-1
  (its ``a_buff``/``a_buf`` Var, initially 0), then accumulates the spikes that arrive at t. A LIF at step t therefore
  sees the synaptic input of the spikes of step t-1, and receives 0 at the first step. :func:`delay` does this shift;
  the ``run_*`` helpers apply it.
* Conv helpers take torch layouts (weights ``(Cout, Cin/groups, kH, kW)``, spikes ``[N, C, H, W]``, stride/padding/
  dilation in ``(H, W)`` order). Lava's Conv uses ``(Cout, kW, kH, Cin/groups)`` weights (a true convolution, so
  spatially flipped), ``(X, Y, C) = (W, H, C)`` tensors and ``(X, Y)`` parameters:
  see :func:`torch_to_lava_conv_weight`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

ArrayLike = Union[np.ndarray, int, Sequence[int]]

# ---------------------------------------------------------------------------------------------------------------------
# Numeric formats. Line numbers refer to the lava-nc 0.10.0 wheel (.venv-lava/lib/python3.10/site-packages/lava/).
# ---------------------------------------------------------------------------------------------------------------------

# Storage widths that Lava's Python models really compute in (LavaPyType dtypes; `precision=` is never enforced).
INT16_BITS = 16
INT32_BITS = 32

# --- Dense (proc/dense/models.py, utils/weightutils.py) ---
# weights Var: LavaPyType(np.ndarray, np.int32, precision=8)                          dense/models.py:68
WEIGHT_STORAGE_BITS = INT32_BITS
# clip_weights(..., num_bits=8) is hard-coded in run_spk                              dense/models.py:87
WEIGHT_CLIP_BITS = 8
# clip_weights: min = -2**8 * mixed, max = 2**8 - 1 (sign-flipped for inhibitory)    weightutils.py:283-284
WEIGHT_MIN_MIXED = -(2 ** WEIGHT_CLIP_BITS)          # -256
WEIGHT_MAX = 2 ** WEIGHT_CLIP_BITS - 1               # 255 (excitatory and mixed); inhibitory: [-255, 0]
# proc_params.get("num_weight_bits", 8)                                               dense/models.py:83
DEFAULT_NUM_WEIGHT_BITS = 8
# truncate_weights(max_num_weight_bits=8): drop 8 - num_weight_bits (+1 if mixed) LSBs   weightutils.py:207,236
MAX_NUM_WEIGHT_BITS = 8
MIXED_SIGN_DROPPED_LSBS = 1
# weight_exp: proc_params.get("weight_exp", 0); acc << e if e > 0 else acc >> -e (arithmetic, floors)  :78,103-107
DEFAULT_WEIGHT_EXP = 0
# a_out / a_buff: LavaPyType(..., np.int32, precision=16); the channel buffer is int32,
# so the int64 accumulation is cast (wrapped) to 32 bits when sent, not clipped to 16  dense/models.py:64-65
DENSE_OUT_BITS = INT32_BITS

# --- Conv (proc/conv/models.py, proc/conv/utils.py) ---
# weight Var: LavaPyType(np.ndarray, np.int32, precision=8); no clip, no truncation    conv/models.py:76
# weight_exp and num_weight_bits are Vars but run_spk never reads them                 conv/models.py:31-51
# conv in float64 (scipy.signal.convolve2d per (out, in) channel pair), then .astype(int32)   conv/utils.py:214-218
# a_buf = signed_clamp(x, bits=24) = (x + 2**23) % 2**24 - 2**23: a 24-bit WRAP, not a saturation
#                                                                     conv/models.py:78-79, conv/utils.py:83-84
CONV_OUT_BITS = 24
FLOAT64_EXACT_LIMIT = 2 ** 53                        # float64 sums of integers are exact below this
FLOAT32_EXACT_LIMIT = 2 ** 24                        # float32 likewise (the simulator's fast conv path)

# --- LIF (proc/lif/models.py, AbstractPyLifModelFixed / PyLifModelBitAcc) ---
# a_in: LavaPyType(PyInPort.VEC_DENSE, np.int16, precision=16); recv() adds int32 channel data onto int16 zeros,
# so the activation really is int32 when it comes from Dense/Conv/RingBuffer     lif/models.py:78, ports.py:346-351
A_IN_BITS = INT32_BITS
# u, v: LavaPyType(np.ndarray, np.int32, precision=24)                                 lif/models.py:80-81
UV_STORAGE_BITS = INT32_BITS
# du, dv: LavaPyType(int, np.uint16, precision=12) (cls int: not cast)                 lif/models.py:82-83
DECAY_BITS = 12
DECAY_MAX = 2 ** DECAY_BITS - 1                      # 4095
# bias_mant: np.int16 precision=13; bias_exp: np.int16 precision=3                     lif/models.py:84-85
BIAS_MANT_BITS = 13                                  # documented range -4096..4095 (docstring :254)
BIAS_MANT_MIN = -(2 ** (BIAS_MANT_BITS - 1))
BIAS_MANT_MAX = 2 ** (BIAS_MANT_BITS - 1) - 1
BIAS_EXP_BITS = 3                                    # documented 0..7 (:256); Lava also right-shifts for negatives
BIAS_EXP_MIN = 0
BIAS_EXP_MAX = 2 ** BIAS_EXP_BITS - 1
BIAS_STORAGE_BITS = INT16_BITS                       # both Vars are int16 arrays
# ds_offset = 1, dm_offset = 0: added to du / dv so that a decay of exactly 4096 is expressible   lif/models.py:94-95
DS_OFFSET = 1
DM_OFFSET = 0
# uv_bitwidth = 24, max_uv_val = 2**23                                                 lif/models.py:101-102
UV_BITS = 24
MAX_UV_VAL = 2 ** (UV_BITS - 1)                      # 8388608; u wraps around this (once), v saturates inside it
V_MAX = MAX_UV_VAL - 1                               # pos_voltage_limit                          :177
V_MIN = -MAX_UV_VAL + 1                              # neg_voltage_limit (symmetric: -(2**23 - 1)) :176
# decay_shift = 12, decay_unity = 2**12                                                lif/models.py:104-105
DECAY_SHIFT = 12
DECAY_UNITY = 2 ** DECAY_SHIFT                       # 4096
# vth_shift = act_shift = 6 (MSB alignment)                                            lif/models.py:107-108
VTH_SHIFT = 6
ACT_SHIFT = 6
# vth: LavaPyType(int, np.int32, precision=17), documented 0..131071 (:257, :262)
VTH_BITS = 17
VTH_MAX = 2 ** VTH_BITS - 1

SIGN_MODES = ("null", "mixed", "excitatory", "inhibitory")   # lava.utils.weightutils.SignMode (values 0..3)


# ---------------------------------------------------------------------------------------------------------------------
# Integer-width helpers
# ---------------------------------------------------------------------------------------------------------------------

def wrap_signed(x: ArrayLike, bits: int) -> np.ndarray:
    """Two's-complement wrap of integers to ``bits`` bits: ``((x + 2**(bits-1)) mod 2**bits) - 2**(bits-1)``.

    This is what a C cast to a narrower int type does (Lava's ``var[:] = value``, channel buffers, int32 overflow)
    and also exactly Lava's Conv ``signed_clamp`` (which, despite its name, wraps)."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    half = np.int64(1) << (bits - 1)
    if x.size == 0 or (x.min() >= -half and x.max() < half):  # the common case, two reads instead of three passes
        return x
    mask = (np.int64(1) << bits) - 1
    return ((x + half) & mask) - half


def _as_int(x: ArrayLike, name: str) -> np.ndarray:
    """Integer view of an input; Lava casts float Vars to its integer dtypes by truncation toward zero."""
    a = np.asarray(x)
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return a.astype(np.int64, copy=False)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} has non-finite values")
        return np.trunc(a).astype(np.int64)
    raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")


def _shift(x: np.ndarray, exp: ArrayLike) -> np.ndarray:
    """``x << exp`` where exp >= 0, else ``x >> -exp`` (arithmetic: floors), in int64. Counts are capped at 63
    because numpy defines int64 shifts by >= 64 as 0 (left) / sign fill (right), which is what a cap gives too."""
    exp = np.asarray(exp, dtype=np.int64)
    left = np.left_shift(x, np.clip(exp, 0, 63))
    right = np.right_shift(x, np.clip(-exp, 0, 63))
    return np.where(exp >= 0, left, right)


def _decay(x: np.ndarray, factor: int) -> np.ndarray:
    """``sign(x*f) * (|x*f| >> 12)``: Loihi's multiply-and-shift decay rounds the magnitude down (toward zero)."""
    if factor == 0:  # du = 4095: no current memory, the deployments' usual case
        return np.zeros_like(x)
    p = x * np.int64(factor)
    return np.sign(p) * (np.abs(p) >> DECAY_SHIFT)


# ---------------------------------------------------------------------------------------------------------------------
# Dense
# ---------------------------------------------------------------------------------------------------------------------

def _sign_mode_name(mode) -> str:
    if mode is None:
        raise ValueError("sign mode is None")
    if hasattr(mode, "name"):                      # a lava SignMode enum passed through
        mode = mode.name
    if isinstance(mode, (int, np.integer)):
        return SIGN_MODES[int(mode)]
    m = str(mode).lower()
    if m not in SIGN_MODES:
        raise ValueError(f"sign_mode must be one of {SIGN_MODES}, got {mode!r}")
    return m


def dense_sign_mode(w: ArrayLike) -> str:
    """Lava's ``determine_sign_mode``: ``'excitatory'`` if min(w) >= 0 (this includes all-zero), else
    ``'inhibitory'`` if max(w) <= 0, else ``'mixed'``. Evaluated on the int32-stored weights."""
    w = wrap_signed(_as_int(w, "weights"), WEIGHT_STORAGE_BITS)
    if w.min() >= 0:
        return "excitatory"
    if w.max() <= 0:
        return "inhibitory"
    return "mixed"


def effective_dense_weights(w: ArrayLike, num_weight_bits: int = DEFAULT_NUM_WEIGHT_BITS,
                            sign_mode: Optional[str] = None) -> np.ndarray:
    """The weights ``PyDenseModelBitAcc`` really multiplies with (it rewrites them on its first step).

    With ``n = 8 - num_weight_bits (+1 if mixed)`` and the sign mode of the *whole* matrix (or ``sign_mode``):

    * mixed       (some w < 0 and some w > 0): ``w = clip(w, -256, 255)``; ``w = (w >> n) << n``.
      With 8 bits n = 1: the LSB is dropped with an arithmetic shift, so odd weights go to the next *lower* even
      value (7 → 6, -7 → -8, 255 → 254, -257 → -256).
    * excitatory  (all w >= 0, including all zero) and ``'null'``: ``w = clip(w, 0, 255)``; ``(w >> n) << n`` with
      n = 8 - num_weight_bits, so with 8 bits nothing is dropped: odd weights stay odd.
    * inhibitory  (all w <= 0): ``w = -clip(-w, 0, 255)`` (so -256 becomes -255); the magnitude is truncated,
      ``-((-w >> n) << n)`` (toward zero), and with 8 bits nothing is dropped.

    Non-integer input is truncated toward zero first, as Lava's int32 weights Var does. The result is int64.
    """
    w = wrap_signed(_as_int(w, "weights"), WEIGHT_STORAGE_BITS)
    mode = dense_sign_mode(w) if sign_mode is None else _sign_mode_name(sign_mode)
    mixed = mode == "mixed"
    n = MAX_NUM_WEIGHT_BITS - int(num_weight_bits) + int(mixed)
    if not 0 <= n < MAX_NUM_WEIGHT_BITS + 1:
        raise ValueError(f"num_weight_bits={num_weight_bits} is outside 1..8 (Lava would shift by {n} bits)")
    if mode == "inhibitory":
        m = np.clip(-w, 0, WEIGHT_MAX)
        return -((m >> n) << n)
    lo = WEIGHT_MIN_MIXED if mixed else 0
    w = np.clip(w, lo, WEIGHT_MAX)
    return (w >> n) << n


def _int_matmul(x: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """Exact integer ``x @ w_t`` (int64 semantics). BLAS float64 when every partial sum stays below 2**53."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w_t).max(initial=0)) * x.shape[-1]
    if bound < FLOAT64_EXACT_LIMIT:
        return np.rint(x.astype(np.float64) @ w_t.astype(np.float64)).astype(np.int64)
    return x @ w_t


def dense_accumulate(w_eff: ArrayLike, s_in: ArrayLike, weight_exp: int = DEFAULT_WEIGHT_EXP,
                     num_message_bits: int = 0) -> np.ndarray:
    """One step of ``PyDenseModelBitAcc``'s accumulation, as the next process receives it (one step later).

    ``w_eff``: ``(out, in)`` effective weights (:func:`effective_dense_weights`); ``s_in``: ``[N, in]``.

    * binary (``num_message_bits == 0``): ``acc = W @ (s_in != 0)``, in int64 (Lava sums the selected columns;
      any nonzero input counts as one spike).
    * graded (``num_message_bits > 0``): ``acc = wrap32(W @ s_in)`` (Lava's ``weights.dot(s_in)`` on int32 arrays
      wraps at 32 bits; the input itself arrives through an int32 channel).

    Then ``acc << weight_exp`` if ``weight_exp > 0`` else ``acc >> -weight_exp`` (arithmetic shift: a negative
    exponent rounds toward minus infinity, e.g. -5 >> 1 = -3), and finally ``wrap32`` because ``a_out`` is sent
    through an int32 channel buffer (the declared 16-bit precision is not enforced). Returns ``[N, out]`` int64.
    """
    w = wrap_signed(_as_int(w_eff, "weights"), WEIGHT_STORAGE_BITS)
    s = _as_int(s_in, "s_in")
    if num_message_bits > 0:
        acc = wrap_signed(_int_matmul(wrap_signed(s, INT32_BITS), w.T), INT32_BITS)
    else:
        acc = _int_matmul((s != 0).astype(np.int64), w.T)
    acc = _shift(acc, int(weight_exp))
    return wrap_signed(acc, DENSE_OUT_BITS)


# ---------------------------------------------------------------------------------------------------------------------
# Conv
# ---------------------------------------------------------------------------------------------------------------------

def _pair(x) -> tuple[int, int]:
    if np.isscalar(x):
        return int(x), int(x)
    x = tuple(int(v) for v in x)
    return (x[0], x[0]) if len(x) == 1 else (x[0], x[1])


def torch_to_lava_conv_weight(w: ArrayLike) -> np.ndarray:
    """torch ``(Cout, Cin/g, kH, kW)`` cross-correlation kernel → Lava Conv ``(Cout, kW, kH, Cin/g)`` kernel.

    Lava convolves (scipy ``convolve2d``), so the kernel is flipped in both spatial axes, then ``H, W`` are swapped
    because Lava indexes space as ``(X, Y) = (W, H)``. This is what lava-dl netx does with slayer weights."""
    w = np.asarray(w)
    return np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def lava_to_torch_conv_weight(w: ArrayLike) -> np.ndarray:
    """Inverse of :func:`torch_to_lava_conv_weight`."""
    w = np.asarray(w)
    return np.ascontiguousarray(w.transpose(0, 3, 2, 1)[:, :, ::-1, ::-1])


def torch_to_lava_conv_params(stride=1, padding=0, dilation=1) -> dict:
    """``(H, W)``-ordered torch conv parameters → Lava Conv keyword arguments in ``(X, Y) = (W, H)`` order."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    return {"stride": s[::-1], "padding": p[::-1], "dilation": d[::-1]}


def conv_output_hw(in_hw: tuple[int, int], kernel_hw: tuple[int, int], stride=1, padding=0,
                   dilation=1) -> tuple[int, int]:
    """Output ``(H, W)``: ``floor((n + 2p - d(k-1) - 1) / s) + 1`` per axis (Lava's ``utils.output_shape``)."""
    s, p, d = _pair(stride), _pair(padding), _pair(dilation)
    return tuple((in_hw[i] + 2 * p[i] - d[i] * (kernel_hw[i] - 1) - 1) // s[i] + 1 for i in range(2))


def conv_accumulate(w: ArrayLike, s_in: ArrayLike, stride=1, padding=0, dilation=1, groups: int = 1,
                    num_message_bits: int = 0) -> np.ndarray:
    """One step of ``PyConvModelFixed``'s accumulation, as the next process receives it (one step later).

    ``w``: torch layout ``(Cout, Cin/groups, kH, kW)``; ``s_in``: ``[N, Cin, H, W]``; stride/padding/dilation in
    ``(H, W)`` order (ints or pairs), zero padding. Computes the torch cross-correlation

        ``acc[n, o, y, x] = sum_{c, i, j} w[o, c, i, j] * s[n, g*Cin/g + c, y*sy - py + i*dy, x*sx - px + j*dx]``

    with ``s`` binarised (``s != 0``) when ``num_message_bits == 0``, then ``wrap24(acc)``: Lava's
    ``signed_clamp(x, 24)`` is a two's-complement *wrap*, not a saturation. Weights are used as stored in int32:
    no clip to 8 bits, no LSB drop, and **no weight_exp** (Lava's fixed Conv ignores it). Returns int64
    ``[N, Cout, Ho, Wo]``.

    Lava sums in float64 and casts to int32, so sums of magnitude >= 2**31 have no defined Lava result: we raise
    ``OverflowError`` for them rather than invent one.
    """
    import torch  # the simulator's conv: on integers it is exact while every partial sum is below the dtype's limit

    w = wrap_signed(_as_int(w, "weight"), INT32_BITS)
    s = np.asarray(s_in)
    s = (s != 0) if num_message_bits <= 0 else wrap_signed(_as_int(s, "s_in"), INT32_BITS)
    if s.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv_accumulate expects s_in [N, C, H, W] and w (Cout, Cin/g, kH, kW); "
                         f"got {s.shape} and {w.shape}")
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    s_peak = float(s.any()) if s.dtype == bool else float(np.abs(s).max(initial=0))
    bound = float(np.abs(w).max(initial=0)) * s_peak * fan_in
    if bound >= FLOAT64_EXACT_LIMIT:
        raise OverflowError("conv inputs can reach 2**53: neither Lava's float64 conv nor ours is exact there")
    # float32 convolutions are several times faster (oneDNN, direct algorithm) and just as exact below 2**24
    dtype = torch.float32 if bound < FLOAT32_EXACT_LIMIT else torch.float64
    out = torch.nn.functional.conv2d(torch.from_numpy(s).to(dtype), torch.from_numpy(w).to(dtype),
                                     stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation),
                                     groups=int(groups))
    acc = out.numpy().astype(np.int64)  # exact integers already: the bound holds for every partial sum
    if bound >= 2 ** 31 and np.abs(acc).max(initial=0) >= 2 ** 31:
        raise OverflowError("conv accumulation reaches 2**31: Lava's float64→int32 cast is undefined there")
    return acc if bound < 2 ** (CONV_OUT_BITS - 1) else wrap_signed(acc, CONV_OUT_BITS)


# ---------------------------------------------------------------------------------------------------------------------
# LIF
# ---------------------------------------------------------------------------------------------------------------------

def effective_bias(bias_mant: ArrayLike, bias_exp: ArrayLike) -> np.ndarray:
    """``bias_mant << bias_exp`` if ``bias_exp >= 0`` else ``bias_mant >> -bias_exp``.

    Both Vars are stored as int16; the shift happens in int32 (Lava's ``scale_bias``), and the right shift is
    arithmetic, so a negative mantissa with a negative exponent rounds toward minus infinity (-5 >> 1 = -3)."""
    m = wrap_signed(_as_int(bias_mant, "bias_mant"), BIAS_STORAGE_BITS)
    e = wrap_signed(_as_int(bias_exp, "bias_exp"), BIAS_STORAGE_BITS)
    # numpy's int32 left shift by >= 32 gives 0; the int64 shift then the int32 wrap gives the same
    return wrap_signed(_shift(m, e), INT32_BITS)


def lif_step(u: ArrayLike, v: ArrayLike, a_in: ArrayLike, du: int, dv: int, vth: int,
             bias_mant: ArrayLike = 0, bias_exp: ArrayLike = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One time step of ``PyLifModelBitAcc``. Shapes ``[N, ...]``; du, dv, vth scalars; bias per neuron.

    ::

        a   = wrap32(a_in)                                        # int32 channel
        x   = u * (4096 - (du + 1));  x = sign(x) * (|x| >> 12)   # decay, magnitude rounded toward zero
        x   = wrap32(x + wrap32(a << 6))                          # int32 arithmetic
        u'  = x - 2**24 if x > 2**23 else (x + 2**24 if x <= -2**23 else x)
        y   = v * (4096 - dv);        y = sign(y) * (|y| >> 12)
        v'  = clip(wrap32(y + u' + b), -(2**23 - 1), 2**23 - 1)   # b = effective_bias(bias_mant, bias_exp)
        s   = v' > (vth << 6)                                     # strict
        v'[s] = 0                                                 # u is never reset; no refractory period

    The "24-bit wrap" of u is a single conditional add/subtract, not a modulo: x = 2**23 stays 2**23 (one above the
    24-bit range), x = -2**23 becomes +2**23, and |x| >= 3 * 2**23 (inputs with |a| >= 2**17) leaves u outside 24
    bits, to be saturated only in v. Returns ``(u', v', s)``: int64, int64, bool.
    """
    u = wrap_signed(_as_int(u, "u"), UV_STORAGE_BITS)
    v = wrap_signed(_as_int(v, "v"), UV_STORAGE_BITS)
    a = wrap_signed(_as_int(a_in, "a_in"), A_IN_BITS)
    return lif_dynamics(u, v, a, du, dv, vth, effective_bias(bias_mant, bias_exp))


def lif_dynamics(u: np.ndarray, v: np.ndarray, a: np.ndarray, du: int, dv: int, vth: int,
                 bias: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`lif_step` for int64 ``u``, ``v`` already within their storage width and ``a`` within ``A_IN_BITS``
    (what the previous step and an inport sum deliver), with ``bias`` = :func:`effective_bias`: the simulator's
    inner loop, which need not re-check what it produced itself."""
    x = _decay(u, DECAY_UNITY - (int(du) + DS_OFFSET))
    x = wrap_signed(x + wrap_signed(a << ACT_SHIFT, INT32_BITS), INT32_BITS)
    if x.size and (x.max() > MAX_UV_VAL or x.min() <= -MAX_UV_VAL):
        u_new = np.where(x > MAX_UV_VAL, x - 2 * MAX_UV_VAL, x)
        u_new = np.where(u_new <= -MAX_UV_VAL, x + 2 * MAX_UV_VAL, u_new)
    else:
        u_new = x

    y = _decay(v, DECAY_UNITY - (int(dv) + DM_OFFSET))
    v_new = np.clip(wrap_signed(y + u_new + bias, INT32_BITS), V_MIN, V_MAX)
    s = v_new > (np.int64(vth) << VTH_SHIFT)
    v_new[s] = 0
    return u_new, v_new, s


def lif_reset_due(step_index: int, reset_interval: int, reset_offset: int = 0) -> bool:
    """Whether ``PyLifResetModelBitAcc`` zeroes u and v before step ``step_index`` (0-based).

    Lava tests ``time_step % reset_interval == reset_offset % reset_interval`` with ``time_step`` counting from 1.
    So ``reset_offset=0`` resets before steps T, 2T, ... (the first window is one step short), and
    ``reset_offset=1`` resets before steps 1, T+1, 2T+1, ...: use offset 1 for windows of ``reset_interval`` steps
    starting at the first step."""
    if reset_interval < 1:
        raise ValueError("reset_interval must be >= 1")
    return (step_index + 1) % reset_interval == reset_offset % reset_interval


def lif_reset_step(u: ArrayLike, v: ArrayLike, a_in: ArrayLike, du: int, dv: int, vth: int,
                   bias_mant: ArrayLike = 0, bias_exp: ArrayLike = 0, *, step_index: int,
                   reset_interval: int, reset_offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One step of ``PyLifResetModelBitAcc`` (Lava's ``LIFReset``): if :func:`lif_reset_due`, u and v are set to 0
    *after* the input of this step has been received and *before* the dynamics, so this step's input is still
    integrated (onto zero state); otherwise exactly :func:`lif_step`. The reset does not touch synapses: a Dense/Conv
    upstream still delivers, one step late, what the previous window sent it."""
    if lif_reset_due(step_index, reset_interval, reset_offset):
        u = np.zeros_like(np.asarray(u, dtype=np.int64))
        v = np.zeros_like(np.asarray(v, dtype=np.int64))
    return lif_step(u, v, a_in, du, dv, vth, bias_mant, bias_exp)


def inport_sum(*a: ArrayLike) -> np.ndarray:
    """What a LIF's ``a_in`` receives from several connections: the int32 channel values summed in int32.

    Wrapping after every addition equals one wrap of the exact int64 sum (both are the sum modulo 2**32)."""
    terms = [_as_int(x, "a") for x in a]
    if not terms:
        return np.asarray(0, dtype=np.int64)
    total = np.array(np.broadcast_to(terms[0], np.broadcast_shapes(*(x.shape for x in terms))), dtype=np.int64)
    for x in terms[1:]:
        total += x  # int64 overflow wraps modulo 2**64, a multiple of 2**32: the final wrap is still exact
    return wrap_signed(total, INT32_BITS)


@dataclass
class LifTrace:
    """A LIF layer's run: spikes ``s`` (bool), current ``u`` and voltage ``v`` (int64), each ``[N, T, ...]``,
    the values a Lava Monitor reads after each step."""
    s: np.ndarray
    u: np.ndarray
    v: np.ndarray


def delay(a: ArrayLike, steps: int = 1) -> np.ndarray:
    """Shift ``[N, T, ...]`` by ``steps`` along T, filling with 0: the synaptic delay of Dense/Conv."""
    a = np.asarray(a, dtype=np.int64)
    out = np.zeros_like(a)
    if steps < a.shape[1]:
        out[:, steps:] = a[:, :a.shape[1] - steps]
    return out


def run_lif(a: ArrayLike, du: int, dv: int, vth: int, bias_mant: ArrayLike = 0, bias_exp: ArrayLike = 0,
            u0: ArrayLike = 0, v0: ArrayLike = 0, reset_interval: Optional[int] = None,
            reset_offset: int = 0) -> LifTrace:
    """Run a LIF (``LIFReset`` if ``reset_interval`` is given) over ``a[N, T, ...]``, the input *as received* at
    each step (already delayed). ``u0``/``v0`` are the initial states (broadcast to ``[N, ...]``)."""
    a = np.asarray(a, dtype=np.int64)
    shape = (a.shape[0],) + a.shape[2:]
    u = np.broadcast_to(np.asarray(u0, dtype=np.int64), shape).copy()
    v = np.broadcast_to(np.asarray(v0, dtype=np.int64), shape).copy()
    s_tr = np.zeros(a.shape, dtype=bool)
    u_tr = np.zeros(a.shape, dtype=np.int64)
    v_tr = np.zeros(a.shape, dtype=np.int64)
    for k in range(a.shape[1]):
        if reset_interval is not None:
            u, v, s = lif_reset_step(u, v, a[:, k], du, dv, vth, bias_mant, bias_exp, step_index=k,
                                     reset_interval=reset_interval, reset_offset=reset_offset)
        else:
            u, v, s = lif_step(u, v, a[:, k], du, dv, vth, bias_mant, bias_exp)
        s_tr[:, k], u_tr[:, k], v_tr[:, k] = s, u, v
    return LifTrace(s=s_tr, u=u_tr, v=v_tr)


def run_dense_lif(weights: ArrayLike, spikes: ArrayLike, *, du: int, dv: int, vth: int,
                  bias_mant: ArrayLike = 0, bias_exp: ArrayLike = 0, weight_exp: int = DEFAULT_WEIGHT_EXP,
                  num_weight_bits: int = DEFAULT_NUM_WEIGHT_BITS, sign_mode: Optional[str] = None,
                  num_message_bits: int = 0, u0: ArrayLike = 0, v0: ArrayLike = 0,
                  reset_interval: Optional[int] = None, reset_offset: int = 0) -> LifTrace:
    """Lava's ``source → Dense(weights) → LIF`` over ``spikes[N, T, in]``; the LIF input at step k is the Dense
    accumulation of ``spikes[:, k-1]`` (0 at k = 0). ``weights`` are the raw ``(out, in)`` Dense weights."""
    spikes = np.asarray(spikes)
    n, t = spikes.shape[:2]
    w_eff = effective_dense_weights(weights, num_weight_bits, sign_mode)
    acc = dense_accumulate(w_eff, spikes.reshape(n * t, -1), weight_exp, num_message_bits)
    a = delay(acc.reshape(n, t, -1))
    return run_lif(a, du, dv, vth, bias_mant, bias_exp, u0, v0, reset_interval, reset_offset)


def run_conv_lif(weight: ArrayLike, spikes: ArrayLike, *, du: int, dv: int, vth: int, stride=1, padding=0,
                 dilation=1, groups: int = 1, num_message_bits: int = 0, bias_mant: ArrayLike = 0,
                 bias_exp: ArrayLike = 0, u0: ArrayLike = 0, v0: ArrayLike = 0,
                 reset_interval: Optional[int] = None, reset_offset: int = 0) -> LifTrace:
    """Lava's ``source → Conv → LIF`` over ``spikes[N, T, C, H, W]`` (torch layouts, see :func:`conv_accumulate`);
    one step of delay as for Dense. Traces are ``[N, T, Cout, Ho, Wo]``."""
    spikes = np.asarray(spikes)
    n, t = spikes.shape[:2]
    acc = conv_accumulate(weight, spikes.reshape((n * t,) + spikes.shape[2:]), stride, padding, dilation, groups,
                          num_message_bits)
    a = delay(acc.reshape((n, t) + acc.shape[1:]))
    return run_lif(a, du, dv, vth, bias_mant, bias_exp, u0, v0, reset_interval, reset_offset)


def lif_format_errors(du: int, dv: int, vth: int, bias_mant: ArrayLike = 0, bias_exp: ArrayLike = 0) -> list[str]:
    """Parameters outside Loihi's documented formats (Lava itself accepts them and computes something):
    du, dv 12-bit unsigned, vth 17-bit unsigned, bias_mant 13-bit signed, bias_exp 3-bit unsigned."""
    errors = []
    for name, val in (("du", du), ("dv", dv)):
        if not 0 <= int(val) <= DECAY_MAX:
            errors.append(f"{name}={val} is outside 0..{DECAY_MAX}")
    if not 0 <= int(vth) <= VTH_MAX:
        errors.append(f"vth={vth} is outside 0..{VTH_MAX}")
    m, e = np.asarray(bias_mant), np.asarray(bias_exp)
    if m.size and (m.min() < BIAS_MANT_MIN or m.max() > BIAS_MANT_MAX):
        errors.append(f"bias_mant spans {m.min()}..{m.max()}, outside {BIAS_MANT_MIN}..{BIAS_MANT_MAX}")
    if e.size and (e.min() < BIAS_EXP_MIN or e.max() > BIAS_EXP_MAX):
        errors.append(f"bias_exp spans {e.min()}..{e.max()}, outside {BIAS_EXP_MIN}..{BIAS_EXP_MAX}")
    return errors
