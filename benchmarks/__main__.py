"""`python -m benchmarks [OUT.json]`: run every benchmark, print tables, write one JSON (default bench-out.json)."""
import json
import platform
import shutil
import sys
import warnings

import torch
from rich.console import Console
from rich.table import Table

from . import float_forward

BENCHMARKS = {"float_forward": float_forward.run}


def main(out_path: str = "bench-out.json") -> None:
    warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
    console = Console(width=shutil.get_terminal_size((160, 40)).columns)
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "threads": torch.get_num_threads()}}
    for name, run in BENCHMARKS.items():
        rows = run()
        table = Table(title=name)
        for col in rows[0]:
            table.add_column(col)
        for row in rows:
            table.add_row(*map(str, row.values()))
        console.print(table)
        results[name] = rows
    with open(out_path, "w") as f:
        json.dump(results, f, indent=2)
    console.print(f"wrote {out_path}")


if __name__ == "__main__":
    main(*sys.argv[1:])
