"""`python -m benchmarks [--full] [--out OUT.json]` (what `make bench` runs): every benchmark in one run, a table
each, and one JSON with the machine and all rows. `--full` adds Lava on the official-size gac-msresnet18-cifar and
tcja-dvs128 (minutes per sample on 2 cores)."""
import argparse
import json
import os
import platform
import shutil
import time
import warnings
from functools import partial

import torch
from rich.console import Console
from rich.table import Table

from snn2hw.device import reuse_freed_memory

from . import (allocator, backends, deployment_load, device_throughput, export_cost, ladder_parallel, loihi2_calibration, loihi2_official,
               profile_fixed, residual_forms, scaling)



def benchmarks(full: bool) -> dict:
    return {"fixed_vs_lava": partial(backends.fixed_vs_lava, full), "fixed_vs_float": backends.fixed_vs_float,
            "export_cost": export_cost.run, "deployment_load": deployment_load.run, "scaling": scaling.run,
            "fixed_point_profile": profile_fixed.run, "loihi2_calibration": loihi2_calibration.run,
            "loihi2_official": loihi2_official.run, "residual_forms": residual_forms.run,
            "ladder_parallel": ladder_parallel.run, "device_throughput": device_throughput.run,
            "allocator": allocator.run}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--full", action="store_true", help="also Lava on the official-size gac-msresnet18-cifar and "
                        "tcja-dvs128 (minutes per sample)")
    parser.add_argument("--out", default="bench-out.json")
    parser.add_argument("--only", nargs="*", choices=list(benchmarks(False)), help="run only these benchmarks")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    reuse_freed_memory()  # as the CLI runs: what a user's runs get
    console = Console(width=shutil.get_terminal_size((160, 40)).columns)
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                           "date": time.strftime("%Y-%m-%d %H:%M")}}
    for name, bench in benchmarks(args.full).items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        with console.status(f"benchmark {name}"):
            rows = bench()
        table = Table(title=f"{name} ({time.perf_counter() - start:.0f} s)")
        for col in rows[0]:
            table.add_column(col)
        for row in rows:
            table.add_row(*map(str, row.values()))
        console.print(table)
        results[name] = rows
        with open(args.out, "w") as f:  # after every benchmark: a long run stopped early keeps what it measured
            json.dump(results, f, indent=2)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
