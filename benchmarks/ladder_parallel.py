"""The ladder data-parallel with torch.distributed (gloo, CPU): samples per second of the whole ladder (float, folded
and fixed point, plus the divergence probe on the first batch, split across the ranks) in one process and in two,
on the official-size gac-msresnet18-cifar with seeded random weights. Two processes get one torch thread each, as
torchrun gives them (OMP_NUM_THREADS=1); the single process runs twice: with one thread (the work each rank does,
so the speed-up from it is the scaling across processes) and with the default threads, as a user runs it (whose
intra-op threads already use the cores the second process would). The compile (identical on every rank) is done
once, before the timing. Goal: >= 1.8x with 2 processes on the 2-core machine."""
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


def _rank(rank: int, world: int, port: int, compiled_model, x, y, seconds) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    reuse_freed_memory()  # a spawned interpreter: as `snn2hw simulate` under torchrun sets it
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.distributed.barrier()
        start = time.perf_counter()
        report = ladder(compiled_model, ArraySamples(x, y), BATCH, torch.distributed.group.WORLD)
        seconds[rank] = time.perf_counter() - start
        if rank == 0:
            seconds[world] = report["accuracy"]["fixed"]
    finally:
        torch.distributed.destroy_process_group()


def run() -> list[dict]:
    c, x = compiled(ARCH, SAMPLES)
    x = x.numpy()
    y = np.random.default_rng(0).integers(0, 10, len(x))
    threads = torch.get_num_threads()
    single = {}
    for n in (1, threads):
        torch.set_num_threads(n)
        start = time.perf_counter()
        report = ladder(c, ArraySamples(x, y), BATCH)
        single[n] = time.perf_counter() - start
    torch.set_num_threads(threads)
    seconds = mp.Manager().dict()
    mp.spawn(_rank, args=(2, _free_port(), c, x, y, seconds), nprocs=2, join=True)
    two = max(seconds[0], seconds[1])
    assert seconds[2] == report["accuracy"]["fixed"]  # the same report: checked in tests, here a sanity check
    runs = [(f"1 ({n} thread{'s' * (n > 1)})", s, [round(s, 2)]) for n, s in single.items()]
    runs.append(("2 (1 thread each)", two, [round(seconds[r], 2) for r in range(2)]))
    return [{"arch": ARCH, "samples": SAMPLES, "batch": BATCH, "processes": p, "seconds": round(s, 2),
             "seconds_per_rank": ranks, "samples_per_s": round(SAMPLES / s, 3),
             "speedup_over_1_thread": round(single[1] / s, 2), "speedup_over_default": round(single[threads] / s, 2)}
            for p, s, ranks in runs]
