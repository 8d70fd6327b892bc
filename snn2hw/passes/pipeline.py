"""THE ordered list of passes from the converted model to the deployable graph (compile and the tests use it).

    fold_batchnorm → normalise_neurons → [fold_tcja_gates, with --tcja fold] → [unroll_residual_stream, with
        --residual unroll] → fold_avgpool_conv → avgpool_to_conv → maxpool_to_or → relay_sums → balance_delays
        → partition_host_chip → quantize → [netx_bias_grid, with --netx]

Every pass before `quantize` keeps the graph in float (the ladder's "folded" rung is the graph just before it);
`quantize` sets the Loihi integers, and `netx_bias_grid` (`--netx`) moves the biases of segments a `.net` can hold
onto netx's grid. Each pass is a function from graph to graph; `run_passes` re-infers shapes and value kinds after each one,
since later passes read them.
"""
from functools import partial

import torch

from .. import ir
from ..errors import UserError
from .fold import fold_batchnorm, fold_tcja_gates, normalise_neurons
from .partition import partition_host_chip
from .netx_grid import netx_bias_grid
from .pooling import avgpool_to_conv, fold_avgpool_conv, maxpool_to_or
from .quantize import quantize
from .relay import balance_delays, relay_sums
from .residual import unroll_residual_stream

TCJA_STRATEGIES = ("host", "fold")
# relay: MS-ResNet's residual stream carried block to block by relay neurons; unroll: every stream value rewritten
# as a sum of synapses on the spikes of every earlier block (`unroll_residual_stream`)
RESIDUAL_FORMS = ("relay", "unroll")


def pipeline(calibration: torch.Tensor | None, tcja: str = "host", residual: str = "relay",
             netx: bool = False) -> list:
    """The passes in order. `calibration` (inputs `[N, ...]`) feeds the gate statistics of `--tcja fold` and the
    quantizer; without it (None) the list ends at the partition: a float graph with the deployment's structure.
    `netx` (`--netx`): the biases of segments a `.net` can hold go on netx's grid (`netx_bias_grid`)."""
    if tcja not in TCJA_STRATEGIES:
        raise UserError(f"--tcja {tcja!r} is not a strategy; use one of {', '.join(TCJA_STRATEGIES)}.")
    if residual not in RESIDUAL_FORMS:
        raise UserError(f"--residual {residual!r} is not a form; use one of {', '.join(RESIDUAL_FORMS)} or auto.")
    if calibration is None and tcja == "fold":
        raise ValueError("--tcja fold needs calibration inputs for the gate statistics")
    gates = [partial(fold_tcja_gates, calibration=calibration)] if tcja == "fold" else []
    quantizing = [partial(quantize, calibration=calibration), *([netx_bias_grid] if netx else [])] \
        if calibration is not None else []
    unroll = [unroll_residual_stream] if residual == "unroll" else []
    return [fold_batchnorm, normalise_neurons, *gates, *unroll, fold_avgpool_conv, avgpool_to_conv, maxpool_to_or,
            relay_sums, balance_delays, partition_host_chip, *quantizing]


def float_and_integer(passes: list) -> tuple[list, list]:
    """`passes` split where the integers begin: (the float passes, `quantize` and what follows it)."""
    k = next((i for i, p in enumerate(passes) if getattr(p, "func", p) is quantize), len(passes))
    return passes[:k], passes[k:]


def run_passes(graph: ir.Graph, passes: list) -> ir.Graph:
    for step in passes:
        graph = step(graph).infer()
    return graph
