"""Reference runners of Lava's LIF, Dense → LIF and Conv → LIF, built from `loihi_numerics` and compared with Lava
itself by the tests (batch first, Lava's one-step synaptic delay and LIFReset's reset schedule included)."""
from dataclasses import dataclass
from typing import Optional

import numpy as np

from snn2hw.hardware_sims.loihi_formats import DEFAULT_NUM_WEIGHT_BITS, DEFAULT_WEIGHT_EXP, ArrayLike
from snn2hw.hardware_sims.loihi_numerics import (conv_accumulate, dense_accumulate, effective_dense_weights,
                                                 lif_reset_due, lif_step)


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
