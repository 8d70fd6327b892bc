"""netx_bias_grid: the LIF biases of every chip segment that lava-dl netx can write as a `.net` file, on netx's grid.

netx fixes every CUBA neuron's `bias_exp` at 6 (`loihi_formats.NETX_BIAS_EXP`), so a `.net` holds a bias
`b = bias_mant << bias_exp` exactly only where b is a multiple of 64 (one unit of a synaptic input: Lava's LIF
adds `a_in << 6`). Moving those biases to that grid before anything is written makes the `.net` and the chip spec
the same network: netx on Lava then equals the fixed-point simulator spike for spike. Segments netx cannot express
(several inputs, relays, sums of synapses) keep the quantizer's finer biases.
"""
import numpy as np

from .. import ir
from ..exporters.lava_spec import chip_segment_spec
from ..exporters.netx_export import sequential_problem
from ..hardware_sims import loihi_formats as fmt
from ..hardware_sims.loihi_numerics import netx_bias_mant


def netx_bias_grid(graph: ir.Graph) -> ir.Graph:
    """Every LIF of a chip segment that is a netx chain (`netx_export.sequential_problem`) with `bias_exp` below 6
    gets `bias_mant` = its bias rounded to the nearest multiple of 64 (ties upward), over 64, and `bias_exp` 6
    (a larger exponent is on the grid already).

    Preserves: every node, edge, weight, threshold, decay and scale, every segment, and every bias outside those
    chains; a moved bias is within 32 (v units) of the quantizer's, so within 32 + 2^(bias_exp - 1) of the float
    bias times the scale."""
    if not graph.quant_layers:
        raise ValueError("netx_bias_grid needs a quantized graph (run the quantize pass first)")
    moved = {}
    for segment in (s for s in graph.segments if s["placement"] == "chip"):
        spec, _ = chip_segment_spec(graph, segment)
        if sequential_problem(spec) is not None:
            continue
        for name in spec["spiking_layers"]:
            q = graph.nodes[name].quant
            if q["bias_exp"] < fmt.NETX_BIAS_EXP:
                moved[name] = {**q, "bias_mant": netx_bias_mant(q["bias_mant"], q["bias_exp"]).astype(np.int64),
                               "bias_exp": fmt.NETX_BIAS_EXP}
    if not moved:
        return graph
    nodes = {k: v.copy(quant=moved[k]) if k in moved else v for k, v in graph.nodes.items()}
    report = [{**e, "bias_exp": fmt.NETX_BIAS_EXP, "bias_grid": "netx"} if e["layer"] in moved else e
              for e in graph.quant_layers]
    return graph.replace(nodes, f"netx_bias_grid: {len(moved)} LIF layers", quant_layers=report)
