"""The architecture registry: arch name → builder, source and input convention."""
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import msresnet, tcja


@dataclass(frozen=True)
class Arch:
    name: str
    family: str  # "tcja" or "msresnet": decides the neuron convention and which ops are host-only
    build: Callable[..., nn.Module]
    source: str  # the official file this re-implements
    num_classes: int  # the official default
    output_time_dim: int | None  # where the official output has its T axis (averaged for scores); None: no T axis
    demo_data: str | None = None  # "digit-events" or "digit-images" for the bundled demo models


ARCHS: dict[str, Arch] = {a.name: a for a in [
    Arch("tcja-dvs128", "tcja", tcja.tcja_dvs128, "ridgerchu/TCJA src/dvs128.py", 11, None),
    Arch("tcja-cifar10dvs", "tcja", tcja.tcja_cifar10dvs, "ridgerchu/TCJA src/cifar10dvs.py", 10, 0),
    Arch("tcja-ncaltech101", "tcja", tcja.tcja_ncaltech101, "ridgerchu/TCJA src/caltech101.py", 101, 0),
    Arch("tcja-tiny", "tcja", tcja.tcja_tiny, "snn2hw demo (TCJA DVS128 blocks, few channels)", 10, None,
         "digit-events"),
    Arch("gac-msresnet18-cifar", "msresnet", msresnet.gac_msresnet18_cifar,
         "bollossom/GAC CODE/CIFAR/models/MS_ResNet.py", 10, 1),
    Arch("msresnet18-cifar", "msresnet", msresnet.msresnet18_cifar,
         "bollossom/GAC CODE/CIFAR/models/MS_ResNet.py (using_GAC=False)", 10, 1),
    Arch("gac-msresnet18-imagenet", "msresnet", msresnet.gac_msresnet18_imagenet,
         "bollossom/GAC CODE/ImageNet/models/MS_ResNet.py", 1000, 1),
    Arch("gac-msresnet34-imagenet", "msresnet", msresnet.gac_msresnet34_imagenet,
         "bollossom/GAC CODE/ImageNet/models/MS_ResNet.py", 1000, 1),
    Arch("gac-msresnet-tiny", "msresnet", msresnet.gac_msresnet_tiny,
         "snn2hw demo (GAC + MS-ResNet blocks, few channels)", 10, 1,
         "digit-images"),
]}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise KeyError(f"unknown arch {name!r}; known: {', '.join(ARCHS)}")
    return ARCHS[name]


def class_scores(arch: str, output: torch.Tensor) -> torch.Tensor:
    """`[N, classes]` scores from what the official forward returns, averaged over T as the official evaluation
    does where the forward returns one output per time step."""
    time_dim = get_arch(arch).output_time_dim
    return output if time_dim is None else output.mean(dim=time_dim)


def build_model(name: str, num_classes: int | None = None, device: str | torch.device | None = None,
                **options) -> nn.Module:
    """Build arch `name` in eval mode. `device="meta"` builds without allocating weights (for shape checks)."""
    arch = get_arch(name)
    with torch.device(device or "cpu"):
        model = arch.build(num_classes=num_classes or arch.num_classes, **options)
    return model.eval()
