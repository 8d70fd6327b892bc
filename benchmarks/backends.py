"""The fixed-point simulator against Lava's CPU backend (same deployment, same samples, spike for spike) and
against the PyTorch float forward of the same model (the practical limit). Goals: at least 100x faster than Lava,
at most 3x the float time.

Lava runs each chip segment in the Lava environment (one OS process per Lava process, messages every step);
`lava_wall_s` is the whole call as a user waits for it, `lava_run_s` the steps alone (start-up and compilation
excluded). The fixed-point time is the whole model, host parts included, so the speed-up is a lower bound."""
import numpy as np
import torch

from snn2hw.exporters.lava_spec import chip_segment_spec
from snn2hw.hardware_sims.runner import run_fixed
from snn2hw.hardware_sims.lava_driver import run_chip_segment_timed

from .common import TINY, alternately, best_of, compiled

FLOAT_CASES = [("tcja-tiny", 64), ("gac-msresnet-tiny", 64), ("gac-msresnet18-cifar", 8)]
LAVA_CASES = [("tcja-tiny", 32), ("gac-msresnet-tiny", 32)]
LAVA_FULL_CASES = [("gac-msresnet18-cifar", 2)]  # about an hour on 2 cores: `python -m benchmarks --full`
LAVA_TIMEOUT_S = 4 * 3600


def fixed_vs_float() -> list[dict]:
    rows = []
    for arch, batch in FLOAT_CASES:
        c, x = compiled(arch, batch)
        with torch.no_grad():
            t = alternately({"float": lambda: c.model(x), "folded": lambda: c.folded.run(x),
                             "fixed": lambda: run_fixed(c.fixed, x)})
        rows.append({"arch": arch, "batch": batch, **{f"{k}_ms_per_sample": round(v / batch * 1e3, 3)
                                                       for k, v in t.items()},
                     "fixed_over_float": round(t["fixed"] / t["float"], 2)})
    return rows


def fixed_vs_lava(full: bool = False) -> list[dict]:
    rows = []
    for arch, samples in LAVA_CASES + (LAVA_FULL_CASES if full else []):
        c, x = compiled(arch, samples)
        _, act = run_fixed(c.fixed, x)
        fixed_s = best_of(lambda: run_fixed(c.fixed, x))
        lava = {"wall_s": 0.0, "run_s": 0.0, "processes": 0}
        equal = layers = 0
        for segment in (s for s in c.fixed.segments if s["placement"] == "chip"):
            spec, arrays = chip_segment_spec(c.fixed, segment)
            inputs = {i["name"]: act.cut_inputs[(i["tensor"], i["to"])] for i in spec["inputs"]}
            out, stats = run_chip_segment_timed(spec, arrays, inputs, spec["spiking_layers"], LAVA_TIMEOUT_S)
            for key in lava:
                lava[key] += stats[key]
            for layer in spec["spiking_layers"]:
                equal += np.array_equal(out[layer], act.values[layer].numpy().astype(bool))
                layers += 1
        rows.append({"arch": arch, "samples": samples, "lava_processes": lava["processes"],
                     "lava_wall_s": round(lava["wall_s"], 2), "lava_run_s": round(lava["run_s"], 2),
                     "fixed_s": round(fixed_s, 4), "speedup_wall": round(lava["wall_s"] / fixed_s),
                     "speedup_run": round(lava["run_s"] / fixed_s), "spike_identical_layers": f"{equal}/{layers}",
                     "trained": arch in TINY})
    return rows
