"""Training recipes for the two demo models on the digits data (CPU, a couple of minutes each).

The losses follow the official repos: TCJA (SpikingJelly style) regresses the voted firing rates onto the one-hot
label with MSE; GAC trains with cross-entropy on the output averaged over time steps.
"""
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import digits
from .zoo import build_model, class_scores, get_arch


@dataclass(frozen=True)
class Recipe:
    data: Callable  # split → (X, y)
    loss: str  # "mse-rates" or "ce-mean"
    epochs: int
    lr: float
    batch_size: int = 64
    options: dict | None = None
    # Scales the default init of Linear weights. The tiny TCJA head sees few, sparse spikes; with PyTorch's default
    # init its LIF units never reach threshold and no gradient flows (the official nets have 2048+ inputs).
    linear_init_gain: float = 1.0


RECIPES = {
    "tcja-tiny": Recipe(digits.digit_events, "mse-rates", epochs=25, lr=1e-2, linear_init_gain=4.0),
    "gac-msresnet-tiny": Recipe(digits.digit_images, "ce-mean", epochs=20, lr=5e-3),
}


def _loss(kind: str, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if kind == "mse-rates":
        return F.mse_loss(scores, F.one_hot(y, scores.shape[1]).to(scores.dtype))
    return F.cross_entropy(scores, y)


@torch.no_grad()
def accuracy(model, arch: str, x: np.ndarray, y: np.ndarray, batch_size: int = 128) -> float:
    model.eval()
    hits = 0
    for s in range(0, len(x), batch_size):
        out = model(torch.as_tensor(x[s:s + batch_size]))
        hits += int((class_scores(arch, out).argmax(1).numpy() == y[s:s + batch_size]).sum())
    return hits / len(x)


def train(arch: str, seed: int = 0, epochs: int | None = None, log: Callable[[str], None] = print):
    """→ (trained model in eval mode, options, metrics)."""
    if arch not in RECIPES:
        raise KeyError(f"no training recipe for {arch!r}; recipes exist for {', '.join(RECIPES)}")
    recipe = RECIPES[arch]
    epochs = epochs or recipe.epochs
    torch.manual_seed(seed)
    options = dict(num_classes=get_arch(arch).num_classes, **(recipe.options or {}))
    model = build_model(arch, **options)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(recipe.linear_init_gain)
    x_train, y_train = recipe.data("train")
    x_test, y_test = recipe.data("test")
    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    steps = epochs * -(-len(x_train) // recipe.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x_train))
        total = 0.0
        for s in range(0, len(order), recipe.batch_size):
            idx = order[s:s + recipe.batch_size]
            scores = class_scores(arch, model(torch.as_tensor(x_train[idx])))
            loss = _loss(recipe.loss, scores, torch.as_tensor(y_train[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(order):.4f} ({time.perf_counter() - start:.0f} s)")
    train_time = time.perf_counter() - start
    metrics = {"test_accuracy": accuracy(model, arch, x_test, y_test),
               "train_accuracy": accuracy(model, arch, x_train, y_train),
               "train_seconds": round(train_time, 1), "epochs": epochs, "seed": seed,
               "data": f"sklearn digits, {len(x_train)} train / {len(x_test)} test"}
    return model.eval(), options, metrics
