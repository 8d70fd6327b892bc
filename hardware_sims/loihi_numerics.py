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
* All arrays are batch-first: ``[N, ...]`` for one time step, ``[N, T, ...]`` for a run. The functions compute on
  torch tensors (the simulator's, on its device) and take numpy arrays too (:func:`numpy_or_torch`); values are
  int64 (spikes ``bool``), the int32/int16 widths Lava uses emulated with :func:`wrap_signed`, except the LIF's
  int32 path, where bounds show Lava's int32 arithmetic never wraps (:func:`lif_dynamics`).
* Time steps: our index ``k = 0..T-1`` is Lava's ``time_step = k + 1`` (Lava counts from 1).
* **Every Dense/Conv delays by one step**: at ``time_step`` t it first sends the accumulation it computed at t-1
  (its ``a_buff``/``a_buf`` Var, initially 0), then accumulates the spikes that arrive at t. A LIF at step t therefore
  sees the synaptic input of the spikes of step t-1, and receives 0 at the first step (the tests' reference runners,
  ``tests/lava_reference.py``, model this shift; the simulator works in logical steps, see ``fixed_point``).
* Conv helpers take torch layouts (weights ``(Cout, Cin/groups, kH, kW)``, spikes ``[N, C, H, W]``, stride/padding/
  dilation in ``(H, W)`` order). Lava's Conv uses ``(Cout, kW, kH, Cin/groups)`` weights (a true convolution, so
  spatially flipped), ``(X, Y, C) = (W, H, C)`` tensors and ``(X, Y)`` parameters:
  see :func:`torch_to_lava_conv_weight`.
"""
import functools
from contextlib import contextmanager, nullcontext
from typing import Optional

import numpy as np
import torch

from .loihi_formats import (A_IN_BITS, ACT_SHIFT, BIAS_STORAGE_BITS, CONV_OUT_BITS, DECAY_SHIFT, DECAY_UNITY,
                            DEFAULT_NUM_WEIGHT_BITS, DEFAULT_WEIGHT_EXP, DENSE_OUT_BITS, DM_OFFSET, DS_OFFSET,
                            NETX_BIAS_EXP, FLOAT32_EXACT_LIMIT, FLOAT64_EXACT_LIMIT, INT32_BITS, MAX_NUM_WEIGHT_BITS,
                            MAX_UV_VAL, SIGN_MODES, UV_BITS, UV_STORAGE_BITS, V_MAX, V_MIN, VTH_SHIFT, WEIGHT_MAX,
                            WEIGHT_MIN_MIXED, WEIGHT_STORAGE_BITS, ArrayLike, hw_pair)


# ---------------------------------------------------------------------------------------------------------------------
# Integer-width helpers
# ---------------------------------------------------------------------------------------------------------------------

def numpy_or_torch(fn):
    """One implementation for both kinds of caller: the function computes on torch tensors (the simulator's, on its
    device); called without a tensor argument (numpy arrays, lists, ints: the exporters' and the Lava tests' way) it
    returns numpy arrays, as it was given."""
    @functools.wraps(fn)
    def either(*args, **kwargs):
        result = fn(*args, **kwargs)
        if any(isinstance(a, torch.Tensor) for a in (*args, *kwargs.values())):
            return result
        return tuple(map(_numpy, result)) if isinstance(result, tuple) else _numpy(result)
    return either


def _numpy(x):
    return x.cpu().numpy() if isinstance(x, torch.Tensor) else x


def as_int(x, name: str) -> torch.Tensor:
    """An input as an int64 tensor (a numpy array's memory shared where it already is a writable, contiguous int64
    one); Lava casts float Vars to its integer dtypes by truncation toward zero."""
    if not isinstance(x, torch.Tensor):
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
        if a.dtype.kind != "f":
            a = a.astype(np.int64, copy=False)
        x = torch.from_numpy(np.require(a, requirements=("W", "C")))
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} has non-finite values")
        x = x.trunc()
    elif x.is_complex():
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")
    return x.to(torch.int64)


def peak(x: torch.Tensor) -> int:
    """max |x| of an integer tensor (0 if empty), read in one pass."""
    if x.numel() == 0:
        return 0
    lo, hi = torch.aminmax(x)
    return max(-int(lo), int(hi))


@numpy_or_torch
def wrap_signed(x: ArrayLike, bits: int) -> np.ndarray:
    """Two's-complement wrap of integers to ``bits`` bits: ``((x + 2**(bits-1)) mod 2**bits) - 2**(bits-1)``.

    This is what a C cast to a narrower int type does (Lava's ``var[:] = value``, channel buffers, int32 overflow)
    and also exactly Lava's Conv ``signed_clamp`` (which, despite its name, wraps)."""
    x = as_int(x, "x")
    if bits >= 64 or x.numel() == 0:
        return x
    half = 1 << (bits - 1)
    lo, hi = torch.aminmax(x)
    if lo >= -half and hi < half:  # the common case: one read, no arithmetic
        return x
    return ((x + half) & ((1 << bits) - 1)) - half


def _int32_and_peak(x, name: str) -> tuple[torch.Tensor, int]:
    """A graded input as it arrives through an int32 channel (``wrap32``) and its max |value|, from one read of its
    range where it is within int32 already (the usual case)."""
    x = as_int(x, name)
    x_peak = peak(x)
    if x_peak < 2 ** (INT32_BITS - 1):
        return x, x_peak
    x = wrap_signed(x, INT32_BITS)
    return x, peak(x)


def _shift(x: torch.Tensor, exp) -> torch.Tensor:
    """``x << exp`` where exp >= 0, else ``x >> -exp`` (arithmetic: floors), in int64. Counts are capped at 63:
    numpy and torch define int64 shifts by >= 64 as 0 (left) / sign fill (right), which is what a cap gives too."""
    if not isinstance(exp, torch.Tensor) and np.ndim(exp) == 0:  # one count for the whole array: one shift
        e = int(exp)
        return x if e == 0 else x << min(e, 63) if e > 0 else x >> min(-e, 63)
    exp = as_int(exp, "exp").to(x.device)
    return torch.where(exp >= 0, x << exp.clamp(0, 63), x >> (-exp).clamp(0, 63))


def _decay(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``sign(x*f) * (|x*f| >> 12)``: Loihi's multiply-and-shift decay rounds the magnitude down (toward zero).

    In int32 (for |x| < 2**23, a u or v within 24 bits) the 36-bit product is split: with |x| = h·2^12 + l,
    ``|x|·f >> 12 = h·f + (l·f >> 12)``, both parts below 2**24; int32 passes are several times faster than int64's
    (whose multiply has no vector instruction on x86's AVX2)."""
    if factor == 0:  # du = 4095: no current memory, the deployments' usual case
        return torch.zeros_like(x)
    if factor == DECAY_UNITY:  # dv = 0: |x|·2^12 >> 12 is |x|, no leak
        return x
    sign = x.sign() if factor > 0 else -x.sign()  # a negative factor (du or dv beyond 12 bits) flips it
    if x.dtype == torch.int32 and 0 < factor < DECAY_UNITY:
        m = x.abs()
        low = (m & (DECAY_UNITY - 1)).mul_(factor).bitwise_right_shift_(DECAY_SHIFT)
        return m.bitwise_right_shift_(DECAY_SHIFT).mul_(factor).add_(low).mul_(sign)
    return (x.to(torch.int64) * factor).abs_().bitwise_right_shift_(DECAY_SHIFT).mul_(sign)


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
    w = wrap_signed(as_int(w, "weights"), WEIGHT_STORAGE_BITS)
    if w.min() >= 0:
        return "excitatory"
    if w.max() <= 0:
        return "inhibitory"
    return "mixed"


@numpy_or_torch
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
    w = wrap_signed(as_int(w, "weights"), WEIGHT_STORAGE_BITS)
    mode = dense_sign_mode(w) if sign_mode is None else _sign_mode_name(sign_mode)
    mixed = mode == "mixed"
    n = MAX_NUM_WEIGHT_BITS - int(num_weight_bits) + int(mixed)
    if not 0 <= n < MAX_NUM_WEIGHT_BITS + 1:
        raise ValueError(f"num_weight_bits={num_weight_bits} is outside 1..8 (Lava would shift by {n} bits)")
    if mode == "inhibitory":
        m = (-w).clamp(0, WEIGHT_MAX)
        return -((m >> n) << n)
    lo = WEIGHT_MIN_MIXED if mixed else 0
    return (w.clamp(lo, WEIGHT_MAX) >> n) << n


def _int_matmul(x: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """Exact integer ``x @ w_t`` (int64 semantics): a float64 matmul where every partial sum stays below 2**53 (torch
    has no integer matmul on every device), else integer products summed."""
    if peak(x) * peak(w_t) * x.shape[-1] < FLOAT64_EXACT_LIMIT:
        return (x.double() @ w_t.double()).round().to(torch.int64)
    return (x[..., :, None] * w_t).sum(-2)


@numpy_or_torch
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
    s = as_int(s_in, "s_in")
    w = wrap_signed(as_int(w_eff, "weights"), WEIGHT_STORAGE_BITS).to(s.device)
    if num_message_bits > 0:
        acc = wrap_signed(_int_matmul(wrap_signed(s, INT32_BITS), w.T), INT32_BITS)
    else:
        acc = _int_matmul((s != 0).to(torch.int64), w.T)
    acc = _shift(acc, int(weight_exp))
    return wrap_signed(acc, DENSE_OUT_BITS)


@numpy_or_torch
def identity_accumulate(weight: int, weight_exp: int, s_in: ArrayLike, num_message_bits: int = 0) -> np.ndarray:
    """One step of a one-to-one ``Sparse`` (weights ``weight`` on the diagonal; ``PySparseModelBitAcc``,
    lava/proc/sparse/models.py:77-107), as the next process receives it (one step later): ``w · s`` per neuron
    (binary: ``w · [s != 0]``; graded: in int32), then ``<< weight_exp`` or arithmetic ``>> -weight_exp``, sent
    through an int32 channel. ``w`` is rewritten as Dense rewrites its weights (:func:`effective_dense_weights`)."""
    w, e = int(effective_dense_weights([[weight]])[0, 0]), int(weight_exp)
    if num_message_bits > 0:
        s, s_peak = _int32_and_peak(s_in, "s_in")
        acc, bound = s * w, abs(w) * s_peak
        if bound >= 2 ** (INT32_BITS - 1):
            acc, bound = wrap_signed(acc, INT32_BITS), 2 ** (INT32_BITS - 1)
    else:
        acc, bound = _spikes(s_in).to(torch.int64).mul_(w), abs(w)
    acc = _shift(acc, e)  # a right shift keeps int32 values in int32; a left one may leave it
    return wrap_signed(acc, INT32_BITS) if e > 0 and bound << e >= 2 ** (INT32_BITS - 1) else acc


@numpy_or_torch
def delay_dense_accumulate(w_eff: ArrayLike, delays: ArrayLike, s_in: ArrayLike, max_delay: int,
                           weight_exp: int = DEFAULT_WEIGHT_EXP, num_message_bits: int = 0) -> np.ndarray:
    """One step of ``PyDelayDenseModelBitAcc``'s accumulation per delay (lava/proc/dense/models.py, ``calc_act`` and
    ``run_spk``), before it enters the synapse's buffer: ``[N, out, max_delay + 1]``, slot d the part that arrives
    d + 1 steps later.

    ``acc[n, o, d] = Σ_i [delays[o, i] == d] · w[o, i] · s[n, i]`` (binary: s = [s_in != 0]; graded: each product
    in int32, as Lava multiplies int32 arrays), then shifted by ``weight_exp`` per slot, as Dense's whole sum is
    (:func:`dense_accumulate`). The buffer Lava adds it to is int32: sums wrap at 32 bits when they are sent."""
    w = wrap_signed(as_int(w_eff, "weights"), WEIGHT_STORAGE_BITS)
    d = as_int(delays, "delays")
    s = as_int(s_in, "s_in")
    s = wrap_signed(s, INT32_BITS) if num_message_bits > 0 else (s != 0).to(torch.int64)
    w, d = w.to(s.device), d.to(s.device)
    acc = torch.zeros((len(s), w.shape[0], max_delay + 1), dtype=torch.int64, device=s.device)
    for delay in torch.unique(d).tolist():
        part = torch.where(d == delay, w, 0)
        if num_message_bits > 0:
            acc[:, :, delay] = wrap_signed(part[None] * s[:, None, :], INT32_BITS).sum(-1)
        else:
            acc[:, :, delay] = _int_matmul(s, part.T)
    return _shift(acc, int(weight_exp))


# ---------------------------------------------------------------------------------------------------------------------
# Sigma-delta neurons (lava/proc/sdn/models.py, fixed_pt models; every Var and port is int32: sums wrap at 32 bits)
# ---------------------------------------------------------------------------------------------------------------------
def _i32(x: np.ndarray) -> np.ndarray:
    return wrap_signed(x, INT32_BITS)


def _delta_encode(act: np.ndarray, act_prev: np.ndarray, residue: np.ndarray, vth: int):
    """``AbstractDeltaModel.delta_dynamics`` (:72, ``cum_error`` False as netx builds it): delta = act - act_prev +
    residue; s = delta where |delta| >= vth, else 0; the rest stays as residue. → (s, residue)."""
    delta = _i32(_i32(act - act_prev) + residue)
    s = np.where(_i32(np.abs(delta)) >= vth, delta, 0)
    return s, _i32(delta - s)


def delta_step(a_in: np.ndarray, act_prev: np.ndarray, residue: np.ndarray, vth: int, spike_exp: int,
               state_exp: int):
    """One step of ``PyDeltaModelFixed`` (:223): the input scaled to the state, ``act = a_in << (spike_exp +
    state_exp)``, delta-encoded against the last step, sent as ``s >> state_exp``. ``vth`` is the process's, already
    scaled by ``2^(spike_exp + state_exp)``. → (s_out, act, residue)."""
    act = _i32(np.left_shift(a_in, spike_exp + state_exp))
    s, residue = _delta_encode(act, act_prev, residue, vth)
    return np.right_shift(s, state_exp), act, residue


def sigma_delta_step(a_in: np.ndarray, sigma: np.ndarray, act_prev: np.ndarray, residue: np.ndarray, bias: ArrayLike,
                     vth: int, state_exp: int):
    """One step of ``PySigmaDeltaModelFixed`` (:279) with netx's ReLU: sigma += a_in; act = max(sigma + bias, 0);
    delta-encoded against the last step's act, sent as ``s >> state_exp``. ``bias`` and ``vth`` are the process's,
    scaled by ``2^(spike_exp + state_exp)``. → (s_out, sigma, act, residue)."""
    sigma = _i32(a_in + sigma)
    act = np.maximum(_i32(sigma + bias), 0)
    s, residue = _delta_encode(act, act_prev, residue, vth)
    return np.right_shift(s, state_exp), sigma, act, residue


def sigma_step(a_in: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """One step of ``PySigmaModelFixed`` (:197): sigma += a_in, sent as it is (netx's `sigma_output` layer)."""
    return _i32(a_in + sigma)


@numpy_or_torch
def graded_vec_step(a_in: ArrayLike, vth: int = 0) -> np.ndarray:
    """One step of ``PyGradedVecModelFixed`` (lava/proc/graded/models.py:27): v = 0 + a_in (v is zeroed after
    every step), sent as ``v`` where ``|v| > vth``, else 0; int32 throughout. With vth 0 it sends its input sum."""
    v = _i32(as_int(a_in, "a_in"))
    return v if vth == 0 else torch.where(v.abs() > vth, v, 0)  # |v| > 0 sends v, and v = 0 sends 0 alike


# ---------------------------------------------------------------------------------------------------------------------
# Conv
# ---------------------------------------------------------------------------------------------------------------------
@contextmanager
def _exact_cuda():
    """cuDNN off (its Winograd and FFT convolutions round) and TF32 off for cuDNN and for the GEMM CUDA convolves with
    instead (a caller's `torch.set_float32_matmul_precision` would otherwise reach it), restored afterwards."""
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=False, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


def _spikes(x) -> torch.Tensor:
    """Binary inputs as a bool tensor: any nonzero value is one spike."""
    if isinstance(x, torch.Tensor):
        return x if x.dtype == torch.bool else x != 0
    return torch.from_numpy(np.asarray(x) != 0)


def _binary_bound(weight_bound: int, s: torch.Tensor) -> int:
    """The largest |sum| of binary inputs `s` under weights whose sums reach at most `weight_bound`: that bound, or
    0 where nothing spikes. The input is read only where the bound could reach the 24-bit wrap (where it matters)."""
    return weight_bound if weight_bound < 2 ** (CONV_OUT_BITS - 1) else weight_bound * int(bool(s.any()))


@numpy_or_torch
def conv_accumulate(w: ArrayLike, s_in: ArrayLike, stride=1, padding=0, dilation=1, groups: int = 1,
                    num_message_bits: int = 0, device: str | torch.device = "cpu") -> np.ndarray:
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

    ``device``: where torch convolves and the result lies (the same integers on every device, see below).
    """
    device = torch.device(device)
    w = wrap_signed(as_int(w, "weight"), INT32_BITS)
    s, s_peak = (_spikes(s_in), None) if num_message_bits <= 0 else _int32_and_peak(s_in, "s_in")
    if s.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv_accumulate expects s_in [N, C, H, W] and w (Cout, Cin/g, kH, kW); "
                         f"got {tuple(s.shape)} and {tuple(w.shape)}")
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    bound = peak(w) * fan_in * s_peak if s_peak is not None else _binary_bound(peak(w) * fan_in, s)
    if bound >= FLOAT64_EXACT_LIMIT:
        raise OverflowError("conv inputs can reach 2**53: neither Lava's float64 conv nor ours is exact there")
    # float32 convolutions are several times faster (oneDNN, direct algorithm) and just as exact below 2**24
    dtype = torch.float32 if bound < FLOAT32_EXACT_LIMIT else torch.float64
    # On CUDA, cuDNN may pick Winograd or FFT algorithms, whose rounding is not exact on integers, and TF32, which
    # keeps 10 mantissa bits; with both off, CUDA's own im2col + GEMM sums exact products as the CPU does.
    with _exact_cuda() if device.type == "cuda" else nullcontext():
        out = torch.nn.functional.conv2d(s.to(device, dtype), w.to(device, dtype), stride=hw_pair(stride),
                                         padding=hw_pair(padding), dilation=hw_pair(dilation), groups=int(groups))
    acc = out.to(torch.int64)  # exact integers already: the bound holds for every partial sum
    if bound >= 2 ** 31 and peak(acc) >= 2 ** 31:
        raise OverflowError("conv accumulation reaches 2**31: Lava's float64→int32 cast is undefined there")
    return acc if bound < 2 ** (CONV_OUT_BITS - 1) else wrap_signed(acc, CONV_OUT_BITS)


@numpy_or_torch
def identity_conv_accumulate(weight: int, s_in: ArrayLike, num_message_bits: int = 0) -> np.ndarray:
    """:func:`conv_accumulate` of the 1x1 kernel ``weight · I`` (``loihi_formats.identity_kernel``) on ``s_in``
    ``[..., C, H, W]``: every sum has one term, so it is the product ``weight · s`` (``s`` binarised, or wrapped to
    int32, as the conv takes it), wrapped to 24 bits as the conv's sums are: the same integers, without the C²
    kernel. Raises ``OverflowError`` where the conv would (a product of magnitude >= 2**31)."""
    w = int(wrap_signed(as_int(weight, "weight"), INT32_BITS))
    if num_message_bits <= 0:
        s = _spikes(s_in)
        bound, acc = _binary_bound(abs(w), s), s.to(torch.int64).mul_(w)
    else:
        s, s_peak = _int32_and_peak(s_in, "s_in")
        bound, acc = abs(w) * s_peak, s * w
    if bound >= 2 ** 31:  # the largest |product|, reached
        raise OverflowError("conv accumulation reaches 2**31: Lava's float64→int32 cast is undefined there")
    return acc if bound < 2 ** (CONV_OUT_BITS - 1) else wrap_signed(acc, CONV_OUT_BITS)


# ---------------------------------------------------------------------------------------------------------------------
# LIF
# ---------------------------------------------------------------------------------------------------------------------

@numpy_or_torch
def effective_bias(bias_mant: ArrayLike, bias_exp: ArrayLike) -> np.ndarray:
    """``bias_mant << bias_exp`` if ``bias_exp >= 0`` else ``bias_mant >> -bias_exp``.

    Both Vars are stored as int16; the shift happens in int32 (Lava's ``scale_bias``), and the right shift is
    arithmetic, so a negative mantissa with a negative exponent rounds toward minus infinity (-5 >> 1 = -3)."""
    m = wrap_signed(as_int(bias_mant, "bias_mant"), BIAS_STORAGE_BITS)
    e = wrap_signed(as_int(bias_exp, "bias_exp"), BIAS_STORAGE_BITS)
    # an int32 left shift by >= 32 gives 0; the int64 shift then the int32 wrap gives the same
    return wrap_signed(_shift(m, e if e.ndim else int(e)), INT32_BITS)


def netx_bias_mant(bias_mant: ArrayLike, bias_exp: int) -> np.ndarray:
    """The mantissa netx's fixed ``bias_exp = 6`` (``NETX_BIAS_EXP``) needs for our ``bias_mant << bias_exp``: the
    nearest (ties upward), so ``netx_bias_mant << 6`` equals ours wherever ours is a multiple of 64."""
    b = effective_bias(bias_mant, bias_exp)
    return (b + (1 << (NETX_BIAS_EXP - 1))) >> NETX_BIAS_EXP


@numpy_or_torch
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
    u = wrap_signed(as_int(u, "u"), UV_STORAGE_BITS)
    v = wrap_signed(as_int(v, "v"), UV_STORAGE_BITS)
    a = wrap_signed(as_int(a_in, "a_in"), A_IN_BITS)
    return lif_dynamics(u, v, a, du, dv, vth, effective_bias(bias_mant, bias_exp))


@numpy_or_torch
def lif_dynamics(u: ArrayLike, v: ArrayLike, a: ArrayLike, du: int, dv: int, vth: int, bias: ArrayLike,
                 a_peak: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`lif_step` for ``u``, ``v`` already within their storage width and ``a`` within ``A_IN_BITS`` (what the
    previous step and an inport sum deliver), with ``bias`` = :func:`effective_bias`: the simulator's inner loop,
    which need not re-check what it produced itself.

    ``a_peak``: max |a| over every step the state ``u`` has seen, if the caller knows it. Below ``2**17`` (and with
    |bias| < 2**30) no sum can leave int32 and |x| < 2**24, so u stays within ``(-2**23, 2**23]`` and its one
    conditional wrap is ``((x + 2**23 - 1) mod 2**24) - (2**23 - 1)``: the same integers, computed in int32 tensors
    (returned as such; ``v`` of ``a``'s shape) in fewer passes. Otherwise in int64, every wrap as Lava's int32
    arithmetic makes it."""
    u, v, a, bias = (x if isinstance(x, torch.Tensor) and x.dtype in (torch.int32, torch.int64) else as_int(x, n)
                     for x, n in ((u, "u"), (v, "v"), (a, "a"), (bias, "bias")))
    current_decay, voltage_decay = DECAY_UNITY - (int(du) + DS_OFFSET), DECAY_UNITY - (int(dv) + DM_OFFSET)
    # v lies in [V_MIN, V_MAX]: a threshold beyond either side compares as that side does, and fits int32
    threshold = min(max(int(vth) << VTH_SHIFT, V_MIN - 1), V_MAX)
    decays_shrink = all(0 <= f <= DECAY_UNITY for f in (current_decay, voltage_decay))  # du, dv within 12 bits
    if a_peak is not None and a_peak < 2 ** (UV_BITS - 1 - ACT_SHIFT) and peak(bias) < 2 ** 30 and decays_shrink:
        u, v, a, bias = (x.to(torch.int32) for x in (u, v, a, bias.to(v.device)))
        u_new = a << ACT_SHIFT
        if current_decay:
            u_new = (u_new + _decay(u, current_decay)).add_(MAX_UV_VAL - 1).bitwise_and_(2 * MAX_UV_VAL - 1)
            u_new.sub_(MAX_UV_VAL - 1)
        v_new = (u_new + bias).add_(_decay(v, voltage_decay)).clamp_(V_MIN, V_MAX)
        s = v_new > threshold
        return u_new, v_new.mul_(~s), s  # a product with the kept: masked_fill is several times slower
    u, v, a, bias = (x.to(torch.int64) for x in (u, v, a, bias.to(v.device)))
    x = wrap_signed(_decay(u, current_decay) + wrap_signed(a << ACT_SHIFT, INT32_BITS), INT32_BITS)
    u_new = x
    if x.numel() and (x.max() > MAX_UV_VAL or x.min() <= -MAX_UV_VAL):
        u_new = torch.where(x > MAX_UV_VAL, x - 2 * MAX_UV_VAL, x)
        u_new = torch.where(u_new <= -MAX_UV_VAL, x + 2 * MAX_UV_VAL, u_new)
    v_new = wrap_signed(_decay(v, voltage_decay) + u_new + bias, INT32_BITS).clamp(V_MIN, V_MAX)
    s = v_new > threshold
    return u_new, v_new.masked_fill_(s, 0), s


def lif_reset_due(step_index: int, reset_interval: int, reset_offset: int = 0) -> bool:
    """Whether ``PyLifResetModelBitAcc`` (Lava's ``LIFReset``) zeroes u and v before step ``step_index`` (0-based),
    after that step's input has arrived: Lava tests ``time_step % reset_interval == reset_offset % reset_interval``
    with ``time_step`` counting from 1 (lif/models.py). So ``reset_offset=1`` resets before steps 0, T, 2T, ...:
    windows of ``reset_interval`` steps from the first step."""
    if reset_interval < 1:
        raise ValueError("reset_interval must be >= 1")
    return (step_index + 1) % reset_interval == reset_offset % reset_interval


@numpy_or_torch
def inport_sum(*a: ArrayLike) -> np.ndarray:
    """What a LIF's ``a_in`` receives from several connections: the int32 channel values summed in int32.

    Wrapping after every addition equals one wrap of the exact int64 sum (both are the sum modulo 2**32)."""
    terms = [as_int(x, "a") for x in a]
    if not terms:
        return torch.zeros((), dtype=torch.int64)
    total = terms[0] if len(terms) == 1 else terms[0] + terms[1]  # one term is its own sum: no copy (callers never
    # write to the result); the terms after the second are added in place
    for x in terms[2:]:  # int64 overflow wraps modulo 2**64, a multiple of 2**32: the final wrap is still exact
        total = total.add_(x) if x.shape == total.shape else total + x
    return wrap_signed(total, INT32_BITS)
