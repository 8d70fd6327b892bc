"""A NIR graph (neuromorphs/NIR) as a torch model: `NIRNet`, built by `snn2hw.nir_import.load_nir`.

NIR states neurons as ODEs; a NIR graph runs here in discrete time with a step `dt` (in the unit of the graph's time
constants), integrated by forward Euler as SpikingJelly's, snntorch's and norse's NIR readers do. Every neuron starts
from v = 0 (and I = 0), fires on v > v_threshold (strict, NIR's rule) and is set to v_reset where it fired.
Parameters are per neuron (the layer's shape); the coefficients are computed from them in float64 and kept in
float32, the dtype the model runs in. dt is taken at the precision the graph stores each parameter in, so that
tau = dt in a float32 file is one step exactly (float32(1e-3) is not 1e-3). The synapses, pools and flatten are
torch's own modules applied to every step.
"""
import numpy as np
import torch
from torch import nn


def _f32(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=torch.float32)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def dt_as(dt: float, param) -> np.float64:
    """dt rounded to the precision `param` is stored in (see the module docstring), in float64."""
    dtype = np.asarray(param).dtype
    return np.float64(np.asarray(dt, dtype=dtype if dtype.kind == "f" else np.float64))


class _Neuron(nn.Module):
    """The loop NIR's spiking neurons share, on `[T, N, ...]` from v = 0:
    v[t] = charge(v[t-1], x[t]);   z[t] = v[t] > v_threshold;   v[t] = v_reset where z[t]."""

    def __init__(self, v_threshold, v_reset):
        super().__init__()
        self.register_buffer("v_threshold", _f32(v_threshold))
        self.register_buffer("v_reset", _f32(v_reset))

    def forward(self, x):
        v = torch.zeros_like(x[0])
        out = []
        for x_t in x:
            v = self.charge(v, x_t)
            z = v > self.v_threshold
            v = torch.where(z, self.v_reset, v)
            out.append(z)
        return torch.stack(out).to(x.dtype)


class LIF(_Neuron):
    """NIR LIF: tau dv/dt = (v_leak - v) + r I. Forward Euler, x[t] the sum of the node's input edges:

        v[t] = v[t-1] + dt/tau (v_leak - v[t-1] + r x[t])

    evaluated in float32 in the order of the framework whose export the parameters are (both orders are the same
    equation; the order decides the last bit, so each source model's float run is reproduced exactly):
        r = 1:  v + (x - (v - v_leak)) / (tau/dt)             SpikingJelly's LIFNode(decay_input=True), exported as
                                                              tau = tau_sj dt, r = 1, v_leak = v_reset
        else:   v (1 - dt/tau) + x (r dt/tau) + v_leak dt/tau  snntorch's Leaky, beta v + x (r = tau/dt, v_leak = 0)
    """

    def __init__(self, tau, r, v_leak, v_threshold, v_reset, dt: float):
        super().__init__(v_threshold, v_reset)
        k = dt_as(dt, tau) / _f64(tau)
        self.spikingjelly_order = bool(np.all(np.asarray(r) == 1))
        if self.spikingjelly_order:
            self.register_buffer("tau_steps", _f32(1 / k))
            self.register_buffer("v_leak", _f32(v_leak))
        else:
            self.register_buffer("decay", _f32(1 - k))
            self.register_buffer("scale", _f32(_f64(r) * k))
            self.register_buffer("leak", _f32(_f64(v_leak) * k))

    def charge(self, v, x):
        if self.spikingjelly_order:
            return v + (x - (v - self.v_leak)) / self.tau_steps
        return v * self.decay + x * self.scale + self.leak


class IF(_Neuron):
    """NIR IF: dv/dt = r I. Forward Euler: v[t] = v[t-1] + (dt r) x[t] (SpikingJelly's IFNode, exported with
    r = 1/dt: v + x)."""

    def __init__(self, r, v_threshold, v_reset, dt: float):
        super().__init__(v_threshold, v_reset)
        self.register_buffer("scale", _f32(dt_as(dt, r) * _f64(r)))

    def charge(self, v, x):
        return v + x * self.scale


class CubaLIF(_Neuron):
    """NIR CubaLIF: tau_syn dI/dt = -I + w_in S;  tau_mem dv/dt = (v_leak - v) + r I. Forward Euler, the current
    first (norse's CubaLIF, Loihi's u before v, snn2hw's own NIR export), S[t] = x[t] the sum of the input edges:

        I[t] = I[t-1] (1 - dt/tau_syn) + x[t] (w_in dt/tau_syn)
        v[t] = v[t-1] (1 - dt/tau_mem) + I[t] (r dt/tau_mem) + v_leak dt/tau_mem

    With tau_syn = dt the current forgets every step: I[t] = w_in x[t] (SpikingJelly's CUBALIFNode with
    c_decay = 0, snn2hw's export)."""

    def __init__(self, tau_syn, tau_mem, r, v_leak, v_threshold, v_reset, w_in, dt: float):
        super().__init__(v_threshold, v_reset)
        k_syn = dt_as(dt, tau_syn) / _f64(tau_syn)
        k_mem = dt_as(dt, tau_mem) / _f64(tau_mem)
        self.register_buffer("current_decay", _f32(1 - k_syn))
        self.register_buffer("current_scale", _f32(_f64(w_in) * k_syn))
        self.register_buffer("decay", _f32(1 - k_mem))
        self.register_buffer("scale", _f32(_f64(r) * k_mem))
        self.register_buffer("leak", _f32(_f64(v_leak) * k_mem))

    def forward(self, x):
        current, currents = torch.zeros_like(x[0]), []
        for x_t in x:  # the current depends on the input only, so it is filtered first
            current = current * self.current_decay + x_t * self.current_scale
            currents.append(current)
        return super().forward(torch.stack(currents))

    def charge(self, v, current):
        return v * self.decay + current * self.scale + self.leak


class Threshold(nn.Module):
    """NIR Threshold: z[t] = x[t] > threshold (no state)."""

    def __init__(self, threshold):
        super().__init__()
        self.register_buffer("threshold", _f32(threshold))

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


class Scale(nn.Module):
    """NIR Scale: y[t] = x[t] * scale, elementwise."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", _f32(scale))

    def forward(self, x):
        return x * self.scale


NEURONS = (LIF, IF, CubaLIF)


def _per_step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x.flatten(0, 1)).unflatten(0, x.shape[:2])


def _sum(values: list[torch.Tensor]) -> torch.Tensor:
    """Several edges into one node are summed (NIR's rule), left to right in the graph's edge order."""
    total = values[0]
    for v in values[1:]:
        total = total + v
    return total


class NIRNet(nn.Module):
    """A NIR graph's nodes in execution order, on `[N, T, *input]` → `[N, T, *output]`: at every step the graph's
    Input takes x[:, t] and the Output gives the sum of its input edges.

    `layers[i]`, named `names[i]` after its NIR node, reads the nodes `sources[i]` (the Input's name included);
    neurons (`NEURONS`) and Threshold run on the whole sequence, every other layer on each step."""

    def __init__(self, names: list[str], layers: list[nn.Module], sources: list[list[str]], input_name: str,
                 output_name: str, output_sources: list[str], timesteps: int, step_shape: tuple, dt: float):
        super().__init__()
        self.names, self.layers, self.sources = list(names), nn.ModuleList(layers), [list(s) for s in sources]
        self.input_name, self.output_name, self.output_sources = input_name, output_name, list(output_sources)
        self.timesteps, self.dt = timesteps, dt
        self.input_shape = (timesteps, *step_shape)  # one sample, as the zoo's models state it

    def nodes(self):
        """(name, layer, sources) of every node between the Input and the Output, in execution order."""
        return zip(self.names, self.layers, self.sources)

    def forward(self, x):
        values = {self.input_name: x.transpose(0, 1)}
        for name, layer, sources in self.nodes():
            values[name] = run_layer(layer, _sum([values[s] for s in sources]))
        return _sum([values[s] for s in self.output_sources]).transpose(0, 1)


def run_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One layer of a NIRNet on its summed input `[T, N, ...]`."""
    return layer(x) if isinstance(layer, (*NEURONS, Threshold, Scale)) else _per_step(layer, x)
