"""Where torch computes: `--device cpu|cuda`."""
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
