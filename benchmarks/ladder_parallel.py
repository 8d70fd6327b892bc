"""The ladder data-parallel with torch.distributed (gloo, CPU): samples per second of the whole ladder (float, folded
and fixed point, plus the divergence probe on the first batch, split across the ranks) in one process and in two,
on the official-size gac-msresnet18-cifar with seeded random weights. Two processes get one torch thread each, as
torchrun gives them (OMP_NUM_THREADS=1); the single process runs twice: with one thread (the work each rank does,
so the speed-up from it is the scaling across processes) and with the default threads, as a user runs it (whose
intra-op threads already use the cores the second process would). The compile (identical on every rank) is done
once, before the timing. Two control rows: one single-thread ladder on half the samples alone, and two such
(independent processes, no process group, the even and the odd samples) at once: what the machine gives two processes
of this work (their "speed-up" is alone over at once: 1.0 if they do not slow each other).
Goal: >= 1.8x with 2 processes on the 2-core machine."""
import os
import socket
import time

import numpy as np
import torch
import torch.distributed
import torch.multiprocessing as mp

from snn2hw.data import ArraySamples
from snn2hw.device import reuse_freed_memory
from snn2hw.ladder import ladder

from .common import compiled

ARCH, SAMPLES, BATCH = "gac-msresnet18-cifar", 32, 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, compiled_model, x, y, seconds, distributed: bool = True) -> None:
    """One rank of the data-parallel ladder; or, `distributed` False, one of `world` independent single-process
    ladders on every world-th sample (no process group): how fast the machine runs that many processes at once."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    reuse_freed_memory()  # a spawned interpreter: as `snn2hw simulate` under torchrun sets it
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.distributed.barrier()
        start = time.perf_counter()
        if distributed:
            report = ladder(compiled_model, ArraySamples(x, y), BATCH, torch.distributed.group.WORLD)
        else:
            report = ladder(compiled_model, ArraySamples(x[rank::world], y[rank::world]), BATCH)
        seconds[rank] = time.perf_counter() - start
        if rank == 0:
            seconds[world] = report["accuracy"]["fixed"]
    finally:
        torch.distributed.destroy_process_group()


def _single(c, x, y, threads: int) -> tuple[float, dict]:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    report = ladder(c, ArraySamples(x, y), BATCH)
    return time.perf_counter() - start, report


def run() -> list[dict]:
    c, x = compiled(ARCH, SAMPLES)
    x = x.numpy()
    y = np.random.default_rng(0).integers(0, 10, len(x))
    threads = torch.get_num_threads()
    one, report = _single(c, x, y, 1)
    default, _ = _single(c, x, y, threads)
    half, _ = _single(c, x[::2], y[::2], 1)
    torch.set_num_threads(threads)
    runs = [("1 (1 thread)", SAMPLES, one, [one]), (f"1 ({threads} threads)", SAMPLES, default, [default])]
    for distributed in (True, False):
        seconds = mp.Manager().dict()
        mp.spawn(_rank, args=(2, _free_port(), c, x, y, seconds, distributed), nprocs=2, join=True)
        if distributed:
            assert seconds[2] == report["accuracy"]["fixed"]  # the same report: checked in tests, a sanity check
            runs.append(("2 (1 thread each)", SAMPLES, max(seconds[0], seconds[1]), [seconds[0], seconds[1]]))
        else:
            runs.append(("control: 1 (1 thread) alone", SAMPLES // 2, half, [half]))
            runs.append(("control: 2 independent at once (1 thread each)", SAMPLES // 2, max(seconds[0], seconds[1]),
                         [seconds[0], seconds[1]]))
    return [{"arch": ARCH, "samples_per_process": n, "batch": BATCH, "processes": p, "seconds": round(s, 2),
             "seconds_per_rank": [round(r, 2) for r in ranks], "samples_per_s": round(SAMPLES / s, 3) if n == SAMPLES
             else "-", "speedup_over_1_thread": round(one / s, 2) if n == SAMPLES else round(half / s, 2),
             "speedup_over_default": round(default / s, 2) if n == SAMPLES else "-"}
            for p, n, s, ranks in runs]
