"""The fixed-point simulator with glibc's default allocator policy and with the one `snn2hw` sets
(`device.reuse_freed_memory`): ms per sample and the minor page faults of one run, on gac-msresnet18-cifar, each
policy in a fresh interpreter (a policy, once set, stays for the process)."""
import json
import subprocess
import sys
from pathlib import Path

ARCH, BATCH, RUNS = "gac-msresnet18-cifar", 8, 3

_CHILD = f"""
import json, resource, sys, time
from snn2hw.device import reuse_freed_memory
if sys.argv[1] == "reuse_freed_memory":
    assert reuse_freed_memory()
from benchmarks.common import compiled
from snn2hw.hardware_sims.runner import run_fixed
c, x = compiled({ARCH!r}, {BATCH})
run_fixed(c.fixed, x)  # warm-up
best = faults = None
for _ in range({RUNS}):
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    run_fixed(c.fixed, x)
    seconds = time.perf_counter() - start
    if best is None or seconds < best:
        best, faults = seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps([best, faults]))
"""


def run() -> list[dict]:
    measured = {}
    for policy in ("glibc default", "reuse_freed_memory"):
        out = subprocess.run([sys.executable, "-c", _CHILD, policy], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parents[1])
        measured[policy] = json.loads(out.stdout.strip().splitlines()[-1])
    default_s = measured["glibc default"][0]
    return [{"arch": ARCH, "batch": BATCH, "allocator": policy, "fixed_ms_per_sample": round(s / BATCH * 1e3, 1),
             "minor_page_faults_per_run": faults, "speedup": round(default_s / s, 2)}
            for policy, (s, faults) in measured.items()]
