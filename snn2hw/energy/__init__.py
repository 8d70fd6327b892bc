"""Energy accounting: from recorded activity (or assumed firing rates) and a graph to MACs, ACs, neuron updates,
spikes and host↔chip transfers per layer, priced by a cost preset, in the paper and faithful modes, with the Loihi 2
chip model: cores, chips, time per step and static energy. It runs nothing: `snn2hw.measure` runs the backends and
feeds `RecordedActivity`.

presets.py   cost presets (the TOML files in presets/): energies per op, and the chip model's limits, times, power
counts.py    synapse geometry, activity, the counts of both modes (the equations are in its docstring)
resources.py Loihi 2 cores per layer (the compiler's mechanisms) and the systems a deployment fits
timing.py    Loihi 2 time per step, latency and static energy from the per-core work
report.py    the report: both modes priced, compared, with rates, resources and time; the analytic mode's rates
render.py    the report as terminal tables and an offline HTML page
"""
from .counts import (CATEGORIES, MODES, Count, RateActivity, RecordedActivity, faithful_counts, fanout_map,
                     layer_rates, max_fan_in, paper_counts, paper_flops, transfers)
from .presets import BASES, Cost, Preset, builtin_presets, chip_model, load_preset
from .report import build_report, comparison, paper_report, parse_rates
from .resources import DEFAULT_SYSTEM, SYSTEMS, check_system, chip_costs, loihi_resources

__all__ = ["BASES", "CATEGORIES", "DEFAULT_SYSTEM", "MODES", "SYSTEMS", "Cost", "Count", "Preset", "RateActivity",
           "RecordedActivity", "build_report", "builtin_presets", "check_system", "chip_costs", "chip_model",
           "comparison",
           "faithful_counts", "fanout_map", "layer_rates", "load_preset", "loihi_resources", "max_fan_in",
           "paper_counts", "paper_flops", "paper_report", "parse_rates", "transfers"]
