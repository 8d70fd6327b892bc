"""A netx block chain (`snn2hw.netx_import`) run in fixed point step by step in Lava's time, as netx's processes run
it on Lava and on Loihi 2: the states each layer reports after every step, bias-driven steps before its first input
and the LIFReset schedule included (the chip-spec simulator, `fixed_point`, works in logical time instead, which
gives the same outputs but not the states before a layer's first input).

At Lava step k (0-based), block j's neuron receives its synapse's accumulation of block j-1's spikes at step k-1
(every Dense/Conv sends last step's accumulation first; 0 at k = 0); the input block's neuron receives `net.inp`
directly (no synapse). With a reset interval R, a LIF block j is a `LIFReset` with offset `reset_offset + 1 + j`
(netx's `_create`), so it is zeroed at the step its first input of each window arrives; SDNN neurons are never reset
(netx ignores the interval for them) and send graded spikes, which the next synapse weighs with their
`message_bits`. The numerics are `loihi_numerics`'.
"""
from dataclasses import dataclass

import numpy as np

from . import loihi_numerics as num
from .loihi_formats import A_IN_BITS, NETX_MAX_DELAY, NETX_SPIKE_EXP, NETX_STATE_EXP


@dataclass
class BlockTrace:
    """One block's run, `[N, steps, *shape]`: spikes (bool; an SDNN neuron's graded spikes as integers) and, if
    recorded, its state after each step: a LIF's current u and voltage v (v = 0 in the step a neuron spikes, as
    Lava's CPU models report it; Loihi 2 silicon reports 128 there, lava#282), an SDNN neuron's sigma."""
    s: np.ndarray
    u: np.ndarray | None = None
    v: np.ndarray | None = None
    sigma: np.ndarray | None = None

    def states(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (("u", self.u), ("v", self.v), ("sigma", self.sigma)) if v is not None}


STATES = {"cuba": ("u", "v"), "delta": (), "sigma_delta": ("sigma",), "sigma": ("sigma",)}


class _Neuron:
    """A block's neurons on N samples, one Lava step at a time: `step(a_in)` → what they send (`loihi_numerics`)."""

    def __init__(self, block, bias: np.ndarray | None, samples: int):
        self.block = block
        zeros = np.zeros((samples, *block.shape), np.int64)
        scale = 1 << (NETX_SPIKE_EXP + NETX_STATE_EXP)  # SDNN: Lava scales vth and bias when it builds the process
        if block.neuron == "cuba":
            self.u, self.v = zeros, zeros.copy()
            self.bias = num.effective_bias(block.bias_mant if bias is None else bias, block.bias_exp)
        else:
            self.sigma, self.act, self.residue = zeros, zeros.copy(), zeros.copy()
            self.vth, self.bias = block.vth * scale, block.bias_mant * scale

    def reset(self) -> None:
        if self.block.neuron == "cuba":
            self.u[...], self.v[...] = 0, 0

    def step(self, a: np.ndarray) -> np.ndarray:
        b, a = self.block, num.wrap_signed(a, A_IN_BITS)
        if b.neuron == "cuba":
            self.u, self.v, s = num.lif_dynamics(self.u, self.v, a, b.du, b.dv, b.vth, self.bias)
            return s
        if b.neuron == "delta":
            s, self.act, self.residue = num.delta_step(a, self.act, self.residue, self.vth, NETX_SPIKE_EXP,
                                                       NETX_STATE_EXP)
            return s
        if b.neuron == "sigma":
            self.sigma = num.sigma_step(a, self.sigma)
            return self.sigma
        s, self.sigma, self.act, self.residue = num.sigma_delta_step(a, self.sigma, self.act, self.residue, self.bias,
                                                                     self.vth, NETX_STATE_EXP)
        return s


class _Synapse:
    """A block's synapse in Lava's time: at each step it sends what it holds for this step and takes in what the
    block before sends. Dense and Conv hold one slot (last step's accumulation); a Dense with delays (Lava's
    DelayDense) holds max_delay + 1, slot d arriving d steps after the next: a spike with delay d reaches the neuron
    d + 1 steps later. Dense rewrites its weights once, at its first step (`effective_dense_weights`); Lava decides
    the sign mode. Graded values if `message_bits` > 0."""

    def __init__(self, block, message_bits: int, samples: int):
        c, bits = block.conv, message_bits
        self.slots = 1
        if block.op == "conv":
            self.accumulate = lambda s: num.conv_accumulate(block.weight, s, c["stride"], c["padding"], c["dilation"],
                                                            c["groups"], bits)[..., None]
        else:
            weight = num.effective_dense_weights(block.weight, block.num_weight_bits)
            if block.delays is None:
                self.accumulate = lambda s: num.dense_accumulate(weight, s.reshape(len(s), -1), block.weight_exp,
                                                                 bits)[..., None]
            else:
                self.slots = NETX_MAX_DELAY + 1
                self.accumulate = lambda s: num.delay_dense_accumulate(weight, block.delays, s.reshape(len(s), -1),
                                                                       NETX_MAX_DELAY, block.weight_exp, bits)
        self.held = np.zeros((samples, *block.shape, self.slots), np.int64)

    def step(self, s_in: np.ndarray | None) -> np.ndarray:
        sent = self.held[..., 0].copy()
        self.held = np.roll(self.held, -1, axis=-1)
        self.held[..., -1] = 0
        if s_in is not None:
            self.held += self.accumulate(s_in)
        return sent


def run_netx_chain(blocks: list, steps: int, input_bias: np.ndarray | None = None,
                   input_spikes: np.ndarray | None = None, reset_interval: int | None = None, reset_offset: int = 0,
                   input_message_bits: int = 0, record_states: bool = False) -> dict[str, BlockTrace]:
    """Run `steps` Lava steps of a block chain on N samples at once, with netx's `Network` arguments: the input
    block's `bias_mant` set to `input_bias` `[N, *shape]` (held for every step), or `input_spikes`
    `[N, steps, ...]` sent to `net.inp` (the input block's `a_in`, or the first block's synapse, with
    `input_message_bits`). → {block name: BlockTrace}."""
    samples = len(input_bias if input_bias is not None else input_spikes)
    synapses = [None if b.op == "input" else
                _Synapse(b, blocks[j - 1].message_bits if j else input_message_bits, samples)
                for j, b in enumerate(blocks)]
    neurons = [_Neuron(b, np.asarray(input_bias) if j == 0 and input_bias is not None else None, samples)
               for j, b in enumerate(blocks)]

    def zeros(block, dtype):
        return np.zeros((samples, steps, *block.shape), dtype)
    traces = {b.name: BlockTrace(zeros(b, bool if b.neuron == "cuba" else np.int64),
                                 **{k: zeros(b, np.int64) for k in STATES[b.neuron] if record_states})
              for b in blocks}
    for k in range(steps):
        # what the block before sends at this step (the first block's synapse reads net.inp)
        previous = None if input_spikes is None else np.asarray(input_spikes[:, k], np.int64)
        for j, block in enumerate(blocks):
            if synapses[j] is None:  # the input neurons: net.inp straight into a_in
                a = previous if previous is not None else np.zeros((samples, *block.shape), np.int64)
            else:
                a = synapses[j].step(previous)
            if reset_interval is not None and num.lif_reset_due(k, reset_interval, reset_offset + 1 + j):
                neurons[j].reset()
            s = neurons[j].step(a)
            trace = traces[block.name]
            trace.s[:, k] = s
            if record_states:
                for key in STATES[block.neuron]:
                    getattr(trace, key)[:, k] = getattr(neurons[j], key)
            previous = s
    return traces


def run_netx(network, x: np.ndarray, timesteps: int, record_states: bool = False) -> dict[str, BlockTrace]:
    """A `.net` network (`netx_import.NetxNetwork`) on inputs `x`, each sample a window of `timesteps` Lava steps
    from reset state, as netx runs a frame with `reset_interval` = `timesteps`: `x` `[N, C, H, W]` sets the LIF input
    neurons' bias where the network has them, else `x` `[N, T, ...]` is what `net.inp` receives at each step. The
    reset offset and input message bits are the file's (`reset_offset`, `input_message_bits` root attributes;
    0 where absent, netx's defaults)."""
    attrs = network.attributes
    reset_offset, message_bits = int(attrs.get("reset_offset", 0)), int(attrs.get("input_message_bits", 0))
    kind = {"input_bias": x} if network.input_kind == "bias" else {"input_spikes": x}
    return run_netx_chain(network.blocks, timesteps, reset_interval=timesteps, reset_offset=reset_offset,
                          input_message_bits=message_bits, record_states=record_states, **kind)
