"""Spike-for-spike comparison of two executions of the same graph (the ladder's divergence report)."""
from dataclasses import dataclass

import torch


@dataclass
class Divergence:
    layer: str
    step: int
    count: int  # spikes that differ at that layer and step


def spike_mismatches(reference: dict, other: dict, layers: list[str]) -> dict[str, int]:
    """Number of differing spikes per layer; `reference`/`other` map layer → `[T, N, ...]` spikes."""
    return {n: int((reference[n] != other[n]).sum()) for n in layers}


def first_divergence(reference: dict, other: dict, layers: list[str]) -> Divergence | None:
    """The earliest time step at which any layer differs, and at that step the first layer in execution order.

    Everything downstream of it inherits the difference, so this is the one place where the two executions'
    numerics (not their inputs) disagree."""
    first = None
    for n in layers:
        diff = (reference[n] != other[n]).flatten(1).any(1).nonzero()
        if len(diff) and (first is None or int(diff[0]) < first.step):
            t = int(diff[0])
            first = Divergence(n, t, int((reference[n][t] != other[n][t]).sum()))
    return first
