"""Where the fixed-point simulator's time goes: a cProfile of `run_fixed` on gac-msresnet18-cifar (8 samples),
the functions with the most time of their own."""
import cProfile
import pstats

from snn2hw.hardware_sims.runner import run_fixed

from .common import compiled

ARCH, BATCH, TOP = "gac-msresnet18-cifar", 8, 10


def run() -> list[dict]:
    c, x = compiled(ARCH, BATCH)
    run_fixed(c.fixed, x)  # warm-up
    profile = cProfile.Profile()
    profile.runcall(run_fixed, c.fixed, x)
    stats = pstats.Stats(profile).stats
    total = sum(own for _, _, own, _, _ in stats.values())
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:TOP]
    return [{"function": f"{file.rsplit('/', 1)[-1]}:{line}({name})" if line else name, "calls": calls,
             "own_s": round(own, 3), "share": f"{own / total:.0%}", "cumulative_s": round(cum, 3)}
            for (file, line, name), (_, calls, own, cum, _) in top]
