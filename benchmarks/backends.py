"""The fixed-point simulator against Lava's CPU backend (same deployment, same samples, spike for spike and relay
value for relay value at every neuron layer; an official-size segment runs as several Lava runs, `split_segment`) and
against the PyTorch float forward of the same model (the practical limit). Goals: at least 100x faster than Lava,
at most 3x the float time.

Lava runs each chip segment in the Lava environment (one OS process per Lava process, messages every step);
`lava_wall_s` is the whole call as a user waits for it, `lava_run_s` the steps alone (start-up and compilation
excluded). The fixed-point time is the whole model, host parts included, so the speed-up is a lower bound."""
import numpy as np
import torch

from snn2hw import ir
from snn2hw.exporters.lava_spec import chip_segment_spec
from snn2hw.hardware_sims import fixed_point
from snn2hw.hardware_sims.runner import neuron_layers, run_fixed
from snn2hw.hardware_sims.lava_driver import run_chip_segment_timed

from .common import TINY, alternately, best_of, compiled

# (arch, batch, --residual): MS-ResNet's residual stream relayed on chip (what `auto` picks) and unrolled
FLOAT_CASES = [("tcja-tiny", 64, "auto"), ("gac-msresnet-tiny", 64, "auto"), ("gac-msresnet18-cifar", 8, "relay"),
               ("gac-msresnet18-cifar", 8, "unroll")]
LAVA_CASES = [("tcja-tiny", 32), ("gac-msresnet-tiny", 32)]
# Official size with random weights: `python -m benchmarks --full` (minutes per sample on 2 cores)
LAVA_FULL_CASES = [("gac-msresnet18-cifar", 2), ("tcja-dvs128", 2)]


def fixed_vs_float() -> list[dict]:
    rows = []
    for arch, batch, residual in FLOAT_CASES:
        c, x = compiled(arch, batch, residual)
        with torch.no_grad():
            t = alternately({"float": lambda: c.model(x), "folded": lambda: c.folded.run(x),
                             "fixed": lambda: run_fixed(c.fixed, x)})
        stream = any(isinstance(n, ir.Add) for n in c.source.nodes.values())
        rows.append({"arch": arch, "residual": c.residual if stream else "-", "batch": batch,
                     **{f"{k}_ms_per_sample": round(v / batch * 1e3, 3) for k, v in t.items()},
                     "fixed_over_float": round(t["fixed"] / t["float"], 2)})
    return rows


def fixed_vs_lava(full: bool = False) -> list[dict]:
    rows = []
    for arch, samples in LAVA_CASES + (LAVA_FULL_CASES if full else []):
        c, x = compiled(arch, samples)
        _, act = run_fixed(c.fixed, x)
        fixed_s = best_of(lambda: run_fixed(c.fixed, x))
        lava = {"wall_s": 0.0, "run_s": 0.0, "processes": 0, "lava_runs": 0, "sparse_convs": [], "convs": 0}
        equal = layers = spikes = 0
        for segment in (s for s in c.fixed.segments if s["placement"] == "chip"):
            spec, arrays = chip_segment_spec(c.fixed, segment)
            inputs = {i["name"]: act.cut_inputs[(i["tensor"], i["to"])] for i in spec["inputs"]}
            probe = neuron_layers(spec)
            want, _ = fixed_point.run_chip_segment(spec, arrays, inputs, probe)
            out, stats = run_chip_segment_timed(spec, arrays, inputs, probe)  # the default timeout
            for key in ("wall_s", "run_s", "processes", "lava_runs", "sparse_convs"):
                lava[key] += stats[key]
            lava["convs"] += sum(n["op"] == "conv" for n in spec["nodes"])
            for layer in probe:  # LIF spikes, relays' graded integers
                equal += np.array_equal(out[layer], want[layer])
                layers += 1
            spikes += sum(int(np.count_nonzero(want[k])) for k in spec["spiking_layers"])
        rows.append({"arch": arch, "samples": samples, "lava_runs": lava["lava_runs"],
                     "lava_processes": lava["processes"],
                     "convs_as_sparse": f"{len(lava['sparse_convs'])}/{lava['convs']}",
                     "lava_wall_s": round(lava["wall_s"], 2), "lava_s_per_sample": round(lava["wall_s"] / samples, 1),
                     "lava_run_s": round(lava["run_s"], 2), "fixed_s": round(fixed_s, 4),
                     "speedup_wall": round(lava["wall_s"] / fixed_s), "speedup_run": round(lava["run_s"] / fixed_s),
                     "identical_layers": f"{equal}/{layers}", "spikes": spikes, "trained": arch in TINY})
    return rows
