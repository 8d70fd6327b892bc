"""Spiking neurons exactly as the source models compute them in the forward pass.

Both neurons are multi-step: they take the whole input sequence and loop over the time axis (`time_dim`), starting
from v = 0. Neither holds parameters or buffers, so they add nothing to a state_dict. The backward pass uses a
triangle surrogate (GAC's ZIF); it only matters for training the demo models.
"""
import torch
from torch import nn


class _Heaviside(torch.autograd.Function):
    """Forward: (x >= 0) if at_zero else (x > 0). Backward: triangle surrogate of width `gamma` (GAC's ZIF)."""

    @staticmethod
    def forward(ctx, x, at_zero: bool, gamma: float):
        ctx.save_for_backward(x)
        ctx.gamma = gamma
        return (x >= 0).to(x.dtype) if at_zero else (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        g = ctx.gamma
        return grad * (g - x.abs()).clamp(min=0) / (g * g), None, None


class _MultiStepLIF(nn.Module):
    """The loop both conventions share: charge, fire, hard reset to 0, one time step at a time from v = 0."""

    time_dim: int

    def forward(self, x):
        v = torch.zeros_like(x.select(self.time_dim, 0))
        out = []
        for x_t in x.unbind(self.time_dim):
            v = self.charge(v, x_t)
            s = self.fire(v)
            v = v * (1.0 - s)
            out.append(s)
        return torch.stack(out, self.time_dim)


class SpikingJellyLIF(_MultiStepLIF):
    """SpikingJelly `MultiStepLIFNode(tau, decay_input=True, v_reset=0)` as used by TCJA, on `[T, N, ...]`.

    v[t] = v[t-1] + (x[t] - v[t-1]) / tau;   s[t] = v[t] >= v_threshold;   v[t] = 0 where s[t]   (hard reset)
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, time_dim: int = 0):
        super().__init__()
        self.tau, self.v_threshold, self.time_dim = tau, v_threshold, time_dim

    def charge(self, v, x):
        return v + (x - v) / self.tau  # SpikingJelly's order of operations, so float results are identical

    def fire(self, v):
        return _Heaviside.apply(v - self.v_threshold, True, 1.0)

    def extra_repr(self):
        return f"tau={self.tau}, v_threshold={self.v_threshold}, time_dim={self.time_dim}"


class LeakyLIF(_MultiStepLIF):
    """GAC's `LIFSpike` (decay 0.5, threshold 1.0, on `[N, T, ...]`) and the ImageNet MS-ResNet `mem_update`
    (decay 0.25, threshold 0.5, on `[T, N, ...]`).

    v[t] = decay * v[t-1] + x[t];   s[t] = v[t] > threshold;   v[t] = 0 where s[t]   (hard reset)
    """

    def __init__(self, decay: float = 0.5, threshold: float = 1.0, time_dim: int = 1):
        super().__init__()
        self.decay, self.threshold, self.time_dim = decay, threshold, time_dim

    def charge(self, v, x):
        return v * self.decay + x

    def fire(self, v):
        return _Heaviside.apply(v - self.threshold, False, 1.0)

    def extra_repr(self):
        return f"decay={self.decay}, threshold={self.threshold}, time_dim={self.time_dim}"


NEURONS = (SpikingJellyLIF, LeakyLIF)  # the spiking layers of the zoo
