"""Where torch computes: `--device cpu|cuda`, and how the process keeps the memory its tensors free."""
import ctypes
import os

import torch

from .errors import UserError

DEVICES = ("cpu", "cuda")


def resolve_device(name: str | None) -> torch.device:
    """`--device`: cpu, or cuda (the default where torch sees a CUDA device; under torchrun each rank takes the GPU
    of its LOCAL_RANK). On CUDA, TF32 and reduced-precision reductions are turned off and cuDNN's algorithm choice
    made deterministic, so the float runs are as close to the CPU's as a GPU allows; the fixed-point simulator's
    integers are the same on both (`loihi_numerics.conv_accumulate`)."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in DEVICES:
        raise UserError(f"--device {name!r} is not a device snn2hw runs on; use {' or '.join(DEVICES)}.")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
        raise UserError(f"--device cuda: torch {torch.__version__} ({build}) sees no CUDA device on this machine; "
                        "use --device cpu.")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    if rank >= torch.cuda.device_count():
        raise UserError(f"--device cuda: this machine's rank {rank} has no GPU of its own ({torch.cuda.device_count()} "
                        "visible); start at most that many processes per machine, or use --device cpu.")
    device = torch.device("cuda", rank)
    torch.cuda.set_device(device)
    return device


# glibc's mallopt parameters (malloc.h); a trim threshold is an int there, so 2 GiB - 1 is the most it takes
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
TRIM_THRESHOLD_MAX = 2 ** 31 - 1


def reuse_freed_memory() -> bool:
    """Keep the memory a batch's tensors free in the process, for the next ones, instead of giving it back to the
    system. glibc returns every block above its mmap threshold (32 MiB at most) on free, and trims the heap's top, so
    each large tensor of each step is fresh memory the kernel faults in and zeroes again: a fifth to a third of the
    fixed-point simulator's time on gac-msresnet18-cifar (`make bench BENCH_ARGS="--only allocator"`, BENCHMARKS.md).
    PyTorch's CPU tuning guide preloads a caching allocator (jemalloc, tcmalloc) for the same reason; glibc's own
    `mallopt` does it without one: large blocks from the heap (mmap only where the heap cannot grow) and 2 GiB of free
    top kept. Without glibc (macOS, musl) nothing changes. → whether the policy is in place."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_MAX))
