"""Energy accounting: from recorded activity (or assumed firing rates) and a graph to MACs, ACs, neuron updates,
spikes and host↔chip transfers per layer, priced by a cost preset, in the paper and faithful modes, with a Loihi 2
resource estimate. It runs nothing: `snn2hw.measure` runs the backends and feeds `RecordedActivity`.

presets.py   cost presets (the TOML files in presets/) and Loihi 2 core limits
counts.py    synapse geometry, activity, the counts of both modes (the equations are in its docstring)
resources.py Loihi 2 resources of the chip layers
report.py    the report: both modes priced, compared, with rates and resources; the analytic mode's rates
render.py    the report as terminal tables and an offline HTML page
"""
from .counts import (CATEGORIES, MODES, Count, RateActivity, RecordedActivity, faithful_counts, fanout_map,
                     layer_rates, max_fan_in, paper_counts, paper_flops, transfers)
from .presets import Cost, Preset, builtin_presets, core_limits, load_preset
from .report import build_report, comparison, paper_report, parse_rates
from .resources import WEIGHT_BITS, loihi_resources

__all__ = ["CATEGORIES", "MODES", "WEIGHT_BITS", "Cost", "Count", "Preset", "RateActivity", "RecordedActivity",
           "build_report", "builtin_presets", "comparison", "core_limits", "faithful_counts", "fanout_map",
           "layer_rates", "load_preset", "loihi_resources", "max_fan_in", "paper_counts", "paper_flops",
           "paper_report", "parse_rates", "transfers"]
