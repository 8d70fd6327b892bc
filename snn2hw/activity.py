"""Running a torch model over a batch of samples and recording per-layer spike counts."""
import numpy as np
import torch
from torch import nn

from .models.neurons import LeakyLIF, SpikingJellyLIF

NEURONS = (SpikingJellyLIF, LeakyLIF)


def spiking_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, NEURONS)}


@torch.no_grad()
def run_model(model: nn.Module, x: np.ndarray, batch_size: int = 32, progress=None):
    """→ (output as the model's forward returns it, {layer: spike counts [N, T]}) for inputs `x` (batch first).

    Counts sum a layer's spikes over all neurons of each sample and time step.
    """
    layers = spiking_layers(model)
    counts: dict[str, list[np.ndarray]] = {}  # filled in the order the layers run

    def hook(name, module):
        def record(_, __, out):
            dims = [d for d in range(out.dim()) if d not in (module.time_dim, _batch_dim(module))]
            c = out.sum(dim=dims) if dims else out
            if module.time_dim < _batch_dim(module):  # [T, N] → [N, T]
                c = c.transpose(0, 1)
            counts.setdefault(name, []).append(c.round().to(torch.int64).numpy())
        return record

    handles = [m.register_forward_hook(hook(n, m)) for n, m in layers.items()]
    outputs = []
    try:
        for start in range(0, len(x), batch_size):
            outputs.append(model(torch.as_tensor(x[start:start + batch_size], dtype=torch.float32)).numpy())
            if progress:
                progress(min(start + batch_size, len(x)))
    finally:
        for h in handles:
            h.remove()
    return np.concatenate(outputs), {n: np.concatenate(c) for n, c in counts.items()}


def _batch_dim(module) -> int:
    # The source models keep batch and time as the two leading dims: [T, N, ...] or [N, T, ...].
    return 1 if module.time_dim == 0 else 0
