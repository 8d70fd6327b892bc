"""Every numeric format of Loihi 2 and of Lava's fixed-point process models, as named constants with their source,
and the layout conventions that go with them. Nothing else in snn2hw defines a width, a range or a shift: the
passes, exporters, simulators and energy accounting all read them here.

Each constant says where it comes from: lava-nc 0.10.0's process models (file:line in the wheel,
``.venv-lava/lib/python3.10/site-packages/lava/``; verified bit-exact by :mod:`loihi_numerics` against Lava itself),
or a Loihi 2 document. This module needs numpy only: the Lava runner loads it by path in the Lava environment.
"""
from typing import Sequence, Union

import numpy as np

ArrayLike = Union[np.ndarray, int, Sequence[int]]

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

# --- Derived formats the compiler uses ---
# The largest weight on the grid a mixed-sign Dense keeps: it drops the LSB, so 255 becomes 254   weightutils.py:236
WEIGHT_GRID_MAX = WEIGHT_MAX - 1
# Graded spikes (num_message_bits > 0) carry 24-bit payloads: Loihi 2's graded-spike message width as Lava's Dense
# and Sparse models take it (their num_message_bits Var; documented, lava/proc/dense/process.py docstring)
GRADED_MESSAGE_BITS = 24
# Host → chip graded payloads: the widest a public Loihi 2 hardware run sends (lava-dl test_hdf5_nx.py:228-229, PilotNet
# SDNN's PyToN3ConvAdapter with num_message_bits=16); taken from the document, signed.
HOST_MESSAGE_BITS = 16
# A relay neuron (Lava's GradedVec with vth 0: v = a_in, sent as is) holds v in 24 bits (its fixed_pt model's declared
# precision, lava/proc/graded/models.py:51; the CPU model computes in int32), so its input sum must stay below 2^23.
RELAY_BITS = 24
# The most an identity synapse (a one-to-one Sparse) divides by: weight_exp down to -7, as lava_va's GradedSparse runs
# on Loihi 2 (lava-nc/lava 6a98a524, src/lava/networks/gradedvecnetwork.py:275-278, tutorial01 cell 34); documented
# by that public run, not the hardware's limit.
IDENTITY_WEIGHT_EXP_MIN = -7


def identity_as_conv(shape, weight_exp: int) -> bool:
    """Whether an identity synapse onto neurons of `shape` runs as a 1x1 Conv (kernel w·I: C² weights shared over
    the map) rather than a one-to-one Sparse (one weight per neuron): where it needs no weight exponent (Loihi 2's
    Conv ignores weight_exp, lava#803) and the kernel is the smaller."""
    return weight_exp == 0 and len(shape) == 3 and shape[0] ** 2 < shape[0] * shape[1] * shape[2]


def identity_kernel(weight: int, channels: int) -> np.ndarray:
    """The 1x1 conv kernel `(C, C, 1, 1)` (torch layout) of an identity synapse of weight `weight`."""
    return (np.eye(channels, dtype=np.int64) * weight)[:, :, None, None]

# --- lava-dl netx 0.6.0 (lava/lib/dl/netx/hdf5.py, get_neuron_params): the bias exponent of every CUBA neuron ---
NETX_BIAS_EXP = 6
# A dense layer's synaptic delays: netx clamps them to 0..62 (hdf5.py create_dense) and builds a DelayDense with
# max_delay 62 (blocks/process.py Dense); Loihi 2 holds 6 delay bits (0..63, lava/proc/dense/models.py
# PyDelayDenseModelBitAcc). A spike with delay d reaches the neuron d + 1 steps later.
NETX_MAX_DELAY = 62
# SDNN (sigma-delta) neurons as netx builds them (hdf5.py get_neuron_params): graded spikes of 16 bits unless the file
# says otherwise, spike_exp 6 (the Network default) and state_exp 6; Lava scales vth and bias by
# 2^(spike_exp + state_exp) when it builds the process (lava/proc/sdn/process.py:99, :179-180).
NETX_SDNN_MESSAGE_BITS = 16
NETX_SPIKE_EXP = 6
NETX_STATE_EXP = 6

# --- The chip segment spec (exporters/lava_spec.py): the file both simulators and the netx writer read ---
CHIP_SPEC_FORMAT = 2


def synapse_connections(node: dict, weight_shape=None) -> int:
    """The connections of a spec synapse node (a conv's `weight_shape` (Cout, Cin/g, kH, kW) as stored; every kernel
    position counted, padding included): what a Sparse of it holds at most. 0 for neurons and flatten."""
    if node["op"] == "conv":
        return int(np.prod(node["shape"])) * int(np.prod(weight_shape[1:]))
    if node["op"] == "dense":
        return int(np.prod(node["shape"])) * int(np.prod(node["shape_in"]))
    return int(np.prod(node["shape"])) if node["op"] == "identity" else 0


# ---------------------------------------------------------------------------------------------------------------------
# Layouts: torch (C, H, W) vs Lava (X, Y, Z) = (W, H, C)
# ---------------------------------------------------------------------------------------------------------------------

def hw_pair(x) -> tuple[int, int]:
    """An (H, W) pair of ints from a scalar or a 1- or 2-element sequence (numpy scalars and arrays too)."""
    x = tuple(int(v) for v in np.atleast_1d(np.asarray(x)))
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
    s, p, d = hw_pair(stride), hw_pair(padding), hw_pair(dilation)
    return {"stride": s[::-1], "padding": p[::-1], "dilation": d[::-1]}


def conv_output_hw(in_hw: tuple[int, int], kernel_hw: tuple[int, int], stride=1, padding=0,
                   dilation=1) -> tuple[int, int]:
    """Output ``(H, W)``: ``floor((n + 2p - d(k-1) - 1) / s) + 1`` per axis (Lava's ``utils.output_shape``)."""
    s, p, d = hw_pair(stride), hw_pair(padding), hw_pair(dilation)
    return tuple((in_hw[i] + 2 * p[i] - d[i] * (kernel_hw[i] - 1) - 1) // s[i] + 1 for i in range(2))


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
