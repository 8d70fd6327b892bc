"""The architecture registry: arch name → builder, source, input convention, and the builder options a
checkpoint's weights determine."""
import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import msresnet, nir_net, tcja


# The most steps --timesteps takes: far above the official 2-20, so a mistyped T fails at once instead of allocating
# T x T weights or T-step activations (a million steps asked for 16 TB).
MAX_TIMESTEPS = 1024
NIR_ARCH = "nir"  # a NIR graph's own network: built from the graph file (snn2hw.nir_import.load_nir), no checkpoint


@dataclass(frozen=True)
class Arch:
    name: str
    family: str  # "tcja", "msresnet" or "nir": decides the neuron convention and which ops are host-only
    build: Callable[..., nn.Module]
    source: str  # the official file this re-implements
    num_classes: int  # the official default
    output_time_dim: int | None  # where the official output has its T axis (averaged for scores); None: no T axis
    demo_data: str | None = None  # "digit-events" or "digit-images" for the bundled demo models
    from_weights: tuple[Callable[[dict], dict], ...] = ()  # builder options read off a state_dict's shapes
    events: bool | None = None  # the input is event counts (integers); None: as the family (TCJA reads events)

    @property
    def reads_events(self) -> bool:
        return self.family == "tcja" if self.events is None else self.events


def _tcja_timesteps(sd: dict) -> dict:
    """T from TCJA's temporal convs: a Conv1d over the T axis, T → T (keys `….conv.weight`, or `….conv.0.weight`
    in the TET networks; `[T, T, k]`)."""
    found = {int(v.shape[0]) for k, v in sd.items()
             if (k.endswith(".conv.weight") or k.endswith(".conv.0.weight")) and v.dim() == 3}
    return {"timesteps": found.pop()} if len(found) == 1 else {}


def _gac_timesteps_and_kernel(sd: dict) -> dict:
    """T from GAC's temporal attention (TA: Conv3d T → T/2 → T, its last `[T, T/2, 1, 1, 1]`) and the SCA kernel
    (its convs `[C, C, k, k]`; the official ImageNet code's comment: K = 4 for ResNet-18, 8 for ResNet-34)."""
    ta, sca = sd.get("encoding.TA.sharedMLP.2.weight"), sd.get("encoding.SCA.sharedMLP.0.weight")
    return {**({"timesteps": int(ta.shape[0])} if ta is not None and ta.dim() == 5 else {}),
            **({"sca_kernel": int(sca.shape[-1])} if sca is not None and sca.dim() == 4 else {})}


def _first_conv_width(key: str) -> Callable[[dict], dict]:
    """`channels`, the builder's width option, from the output channels of the first conv (`key`)."""
    def read(sd: dict) -> dict:
        w = sd.get(key)
        return {"channels": int(w.shape[0])} if w is not None and w.dim() == 4 else {}
    return read


ARCHS: dict[str, Arch] = {a.name: a for a in [
    Arch("tcja-dvs128", "tcja", tcja.tcja_dvs128, "ridgerchu/TCJA src/dvs128.py", 11, None,
         from_weights=(_tcja_timesteps, _first_conv_width("conv.0.0.weight"))),
    Arch("tcja-cifar10dvs", "tcja", tcja.tcja_cifar10dvs, "ridgerchu/TCJA src/cifar10dvs.py", 10, 0,
         from_weights=(_tcja_timesteps,)),
    Arch("tcja-ncaltech101", "tcja", tcja.tcja_ncaltech101, "ridgerchu/TCJA src/caltech101.py", 101, 0,
         from_weights=(_tcja_timesteps,)),
    Arch("tcja-tet-ncaltech101", "tcja", tcja.tcja_tet_ncaltech101, "ridgerchu/TCJA src/tet/caltech101.py", 101, 0,
         from_weights=(_tcja_timesteps,)),
    Arch("tcja-tet-cifar10dvs", "tcja", tcja.tcja_tet_cifar10dvs,
         "ridgerchu/TCJA src/tet/models/VGG_models.py VGGSNN_TCJA", 10, 1, from_weights=(_tcja_timesteps,),
         events=False),
    Arch("tcja-tet-vgg-ncaltech101", "tcja", tcja.tcja_tet_vgg_ncaltech101,
         "ridgerchu/TCJA src/tet/models/VGG_models.py VGGSNN_TCJA_NCAL", 101, 1, from_weights=(_tcja_timesteps,)),
    Arch("tcja-tiny", "tcja", tcja.tcja_tiny, "snn2hw demo (TCJA DVS128 blocks, few channels)", 10, None,
         "digit-events", (_tcja_timesteps, _first_conv_width("conv.0.0.weight"))),
    Arch("gac-msresnet18-cifar", "msresnet", msresnet.gac_msresnet18_cifar,
         "bollossom/GAC CODE/CIFAR/models/MS_ResNet.py", 10, 1, from_weights=(_gac_timesteps_and_kernel,)),
    Arch("msresnet18-cifar", "msresnet", msresnet.msresnet18_cifar,
         "bollossom/GAC CODE/CIFAR/models/MS_ResNet.py (using_GAC=False)", 10, 1),
    Arch("gac-msresnet18-imagenet", "msresnet", msresnet.gac_msresnet18_imagenet,
         "bollossom/GAC CODE/ImageNet/models/MS_ResNet.py", 1000, 1, from_weights=(_gac_timesteps_and_kernel,)),
    Arch("gac-msresnet34-imagenet", "msresnet", msresnet.gac_msresnet34_imagenet,
         "bollossom/GAC CODE/ImageNet/models/MS_ResNet.py", 1000, 1, from_weights=(_gac_timesteps_and_kernel,)),
    Arch("gac-msresnet-tiny", "msresnet", msresnet.gac_msresnet_tiny,
         "snn2hw demo (GAC + MS-ResNet blocks, few channels)", 10, 1,
         "digit-images", (_gac_timesteps_and_kernel, _first_conv_width("conv1.weight"))),
    # The output per step [N, T, K] (the graph's Output node), scored by its mean over T; the class count is the
    # Output's size, so the arch has none of its own (0).
    Arch(NIR_ARCH, "nir", nir_net.NIRNet, "a NIR graph (neuromorphs/NIR 1.0.8), read by snn2hw.nir_import.load_nir",
         0, 1, events=False),
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


def builder_options(name: str) -> dict:
    """The options arch `name`'s builder takes, with their official defaults (num_classes excluded)."""
    params = inspect.signature(get_arch(name).build).parameters
    return {k: p.default for k, p in params.items() if k != "num_classes"}


def options_from_weights(name: str, sd: dict) -> dict:
    """The builder options a state_dict's shapes determine for arch `name` (e.g. T from TCJA's temporal convs)."""
    found = {}
    for read in get_arch(name).from_weights:
        found.update(read(sd))
    return found


def build_model(name: str, num_classes: int | None = None, device: str | torch.device | None = None,
                **options) -> nn.Module:
    """Build arch `name` in eval mode. `device="meta"` builds without allocating weights (for shape checks)."""
    arch = get_arch(name)
    with torch.device(device or "cpu"):
        model = arch.build(num_classes=num_classes or arch.num_classes, **options)
    return model.eval()
