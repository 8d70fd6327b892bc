"""GAC + MS-ResNet, re-implemented from bollossom/GAC (CODE/CIFAR/models and CODE/ImageNet/models).

Both official variants share the same shape of network:

    image [N, C, H, W] --repeat over T--> conv + BN (real-valued "stem")
    GAC encoder:   s = LIF(stem);   e = sigmoid(TA(stem) * SCA(stem)) * s                       (graded spikes)
    MS-ResNet:     x_{k+1} = BN2(conv2(LIF(BN1(conv1(LIF(x_k)))))) + shortcut(x_k)             (real-valued stream)
                   shortcut = identity, or BN(conv1x1(x_k)) on the real stream when the shape changes
    head:          y[n, t] = Linear(avgpool(LIF(x_last))[n, t])    -> [N, T, classes]   (the scripts average over T)

The two official files differ in layout, neuron and module names, so this file has two families of modules:
- CIFAR (`MSResNetCifar`): tensors are `[N, T, ...]`; neuron `LIFSpike` = LeakyLIF(decay 0.5, threshold 1.0);
  every conv/BN is wrapped so the official state_dict names appear, including the names under which the official
  code registers the *same* conv/BN a second time (e.g. `layer1.0.conv1.weight` and
  `layer1.0.conv1_s.layer.module.weight` are one tensor).
- ImageNet (`MSResNetImageNet`): tensors are `[T, N, ...]`; neuron `mem_update` = LeakyLIF(decay 0.25, threshold
  0.5); the GAC encoder swaps to `[N, T, ...]` internally.
Convs, BNs, pooling and Linear act on each time step independently (applied to the N*T images at once); only the
neurons and TA look across time steps.
"""
import torch
from torch import nn
from torch.nn import functional as F

from .neurons import LeakyLIF

CIFAR_LIF = dict(decay=0.5, threshold=1.0, time_dim=1)
IMAGENET_LIF = dict(decay=0.25, threshold=0.5, time_dim=0)


def _per_step(fn, x):
    """Apply a per-image function to every (a, b) of a `[A, B, ...]` sequence: fn(x.flatten(0, 1)) -> [A, B, ...]."""
    return fn(x.flatten(0, 1)).unflatten(0, x.shape[:2])


# ------------------------------------------------------------------------------------------------ GAC encoder


class TA(nn.Module):
    """Temporal attention of GAC (no sigmoid here; GAC applies it after the product with SCA), on `[N, T, C, H, W]`.

    TA(x)[n, t] = MLP(mean_{c,h,w} x[n, t])[t] + MLP(max_{c,h,w} x[n, t])[t],   MLP(z) = W2 relu(W1 z),
    W1: T -> T // ratio, W2: T // ratio -> T (1x1x1 Conv3d over the time axis, no bias). Output `[N, T, 1, 1, 1]`.
    Every output step depends on every input step: the encoder is not causal.
    """

    def __init__(self, timesteps: int, ratio: int = 2):
        super().__init__()
        self.sharedMLP = nn.Sequential(
            nn.Conv3d(timesteps, timesteps // ratio, 1, bias=False),
            nn.ReLU(),
            nn.Conv3d(timesteps // ratio, timesteps, 1, bias=False),
        )

    def forward(self, x):
        # The 5-D input reads as Conv3d's [batch, channels=T, depth=C, H, W], so the pools reduce C, H and W.
        return self.sharedMLP(F.adaptive_avg_pool3d(x, 1)) + self.sharedMLP(F.adaptive_max_pool3d(x, 1))


class SCA(nn.Module):
    """Spatial-channel attention of GAC, per time step, on `[N, T, C, H, W]`.

    SCA(x)[n, t] = conv_b(relu(conv_a(x[n, t]))), both C -> C (ratio 1), kernel k, no bias, padding 'same'.
    With the official even k = 4, 'same' pads 1 before and 2 after along H and W (PyTorch's rule).
    """

    def __init__(self, channels: int, kernel_size: int = 4, ratio: int = 1):
        super().__init__()
        self.sharedMLP = nn.Sequential(
            nn.Conv2d(channels, channels // ratio, kernel_size, padding="same", bias=False),
            nn.ReLU(),
            nn.Conv2d(channels // ratio, channels, kernel_size, padding="same", bias=False),
        )

    def forward(self, x):
        return _per_step(self.sharedMLP, x)


class GAC(nn.Module):
    """Gated attention coding: e = sigmoid(TA(u) * SCA(u)) * s, where u is the real-valued stem output and
    s = LIF(u) its spikes. The gate lies in (0, 1), so e is graded, not binary.

    `time_dim` is where T sits in u and s (1 for CIFAR's `[N, T, ...]`, 0 for ImageNet's `[T, N, ...]`); the
    attention itself always works on `[N, T, ...]`.
    """

    non_causal = True  # TA mixes all T steps: a host op in any deployment

    def __init__(self, timesteps: int, channels: int, kernel_size: int = 4, time_dim: int = 1):
        super().__init__()
        self.time_dim = time_dim
        self.TA = TA(timesteps)
        self.SCA = SCA(channels, kernel_size)

    def forward(self, u, s):
        if self.time_dim == 0:
            u, s = u.transpose(0, 1), s.transpose(0, 1)
        e = torch.sigmoid(self.TA(u) * self.SCA(u)) * s
        return e.transpose(0, 1) if self.time_dim == 0 else e


# ------------------------------------------------------------------------------------- CIFAR family ([N, T, ...])


class SeqToANN(nn.Module):
    """Apply `module` to every time step (official `SeqToANNContainer`; state_dict prefix `module.`)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return _per_step(self.module, x)


class TdBatchNorm(nn.Module):
    """BatchNorm2d over all N*T images (official CIFAR `tdBatchNorm`): y = (x - mean) / sqrt(var + eps) * w + b.

    The official class registers its BatchNorm2d twice, as `bn` and as `seqbn.module`; checkpoints carry both names
    for one tensor, so this class does too.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)
        self.seqbn = SeqToANN(self.bn)

    def forward(self, x):
        return self.seqbn(x)


class TdLayer(nn.Module):
    """`layer` on every time step, then an optional (already time-distributed) `bn` (official `tdLayer`)."""

    def __init__(self, layer: nn.Module, bn: nn.Module | None = None):
        super().__init__()
        self.layer = SeqToANN(layer)
        self.bn = bn

    def forward(self, x):
        x = self.layer(x)
        return x if self.bn is None else self.bn(x)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)


class BasicBlockMS(nn.Module):
    """MS-ResNet basic block (official CIFAR `BasicBlock_MS`), on the real-valued stream x `[N, T, C, H, W]`:

    out = BN2(conv2(LIF(BN1(conv1(LIF(x)))))) + shortcut(x),
    shortcut(x) = x, or BN(conv1x1_stride(x)) when stride != 1 or the width changes. The shortcut adds membrane
    potentials (real values), never spikes. conv1 carries the stride.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        # Registration order and the doubled names (conv1 / conv1_s.layer.module, ...) follow the official module,
        # so state_dict keys come out identical and in the same order.
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = TdBatchNorm(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = TdBatchNorm(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = TdLayer(nn.Conv2d(inplanes, planes, 1, stride, bias=False), TdBatchNorm(planes))
        self.conv1_s = TdLayer(self.conv1, self.bn1)
        self.conv2_s = TdLayer(self.conv2, self.bn2)
        self.lif1 = LeakyLIF(**CIFAR_LIF)
        self.lif2 = LeakyLIF(**CIFAR_LIF)

    def forward(self, x):
        out = self.conv2_s(self.lif2(self.conv1_s(self.lif1(x))))
        return out + (x if self.downsample is None else self.downsample(x))


class MSResNetCifar(nn.Module):
    """GAC + MS-ResNet of the official CIFAR code (`ResNet` in CODE/CIFAR/models/MS_ResNet.py), generalised in depth,
    widths and input channels so the demo model is built from the same code.

    x[n, t] = image[n] for t < T   ->  u = BN(conv3x3(x))  ->  GAC: e = sigmoid(TA(u) * SCA(u)) * LIF(u)
    (without GAC the stream starts at u itself)  ->  stages of `BasicBlockMS`  ->  LIF -> global avg-pool -> Linear
    per step. Output `[N, T, num_classes]`; the official scripts average it over T (dim 1) before argmax/loss.
    """

    def __init__(self, stages, num_classes: int, timesteps: int, input_shape: tuple[int, int, int],
                 stem_channels: int = 64, using_gac: bool = True, sca_kernel: int = 4):
        """`stages`: one (width, blocks, stride) per stage; the official net is ((128, 3, 1), (256, 3, 2), (512, 2, 2))
        named layer1..layer3."""
        super().__init__()
        self.timesteps = timesteps
        self.input_shape = tuple(input_shape)
        self.using_gac = using_gac
        self.conv1 = _conv3x3(input_shape[0], stem_channels)
        self.bn1 = TdBatchNorm(stem_channels)
        self.conv1_s = TdLayer(self.conv1, self.bn1)
        width = stem_channels
        for i, (planes, blocks, stride) in enumerate(stages, start=1):
            layer = [BasicBlockMS(width, planes, stride)] + [BasicBlockMS(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            width = planes
        self.num_stages = len(stages)
        self.avgpool = TdLayer(nn.AdaptiveAvgPool2d((1, 1)))
        self.fc1 = nn.Linear(width, num_classes)
        self.fc1_s = TdLayer(self.fc1)
        self.encoder_lif = LeakyLIF(**CIFAR_LIF)
        self.head_lif = LeakyLIF(**CIFAR_LIF)
        self.encoding = GAC(timesteps, stem_channels, sca_kernel, time_dim=1) if using_gac else None

    def forward(self, image):
        # The official `add_dimention` unsqueezes the caller's tensor in place; this copy leaves it untouched.
        x = self.conv1_s(image.unsqueeze(1).repeat(1, self.timesteps, 1, 1, 1))
        if self.encoding is not None:
            x = self.encoding(x, self.encoder_lif(x))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        x = self.avgpool(self.head_lif(x))
        return self.fc1_s(torch.flatten(x, 2))


def gac_msresnet18_cifar(num_classes: int = 10, timesteps: int = 6, sca_kernel: int = 4) -> MSResNetCifar:
    """Official `msresnet18(num_classes)` with GAC (`using_GAC=True`, T = 6): input `[N, 3, 32, 32]` -> `[N, T, classes]`."""
    return MSResNetCifar(((128, 3, 1), (256, 3, 2), (512, 2, 2)), num_classes, timesteps, (3, 32, 32),
                         sca_kernel=sca_kernel)


def msresnet18_cifar(num_classes: int = 10, timesteps: int = 6) -> MSResNetCifar:
    """Official `msresnet18(num_classes, using_GAC=False)`: the stem's BN output enters layer1 directly."""
    return MSResNetCifar(((128, 3, 1), (256, 3, 2), (512, 2, 2)), num_classes, timesteps, (3, 32, 32),
                         using_gac=False)


def gac_msresnet_tiny(num_classes: int = 10, timesteps: int = 4, channels: int = 16,
                      sca_kernel: int = 4) -> MSResNetCifar:
    """Demo model on 8x8 grey digits `[N, 1, 8, 8]` -> `[N, T, classes]`: the CIFAR GAC + MS-ResNet with one block of
    width `channels` (identity shortcut) and one of width 2*channels, stride 2 (conv1x1 + BN shortcut)."""
    return MSResNetCifar(((channels, 1, 1), (2 * channels, 1, 2)), num_classes, timesteps, (1, 8, 8),
                         stem_channels=channels, sca_kernel=sca_kernel)


# ---------------------------------------------------------------------------------- ImageNet family ([T, N, ...])


class SeqConv2d(nn.Conv2d):
    """Conv2d applied to every time step of `[T, N, C, H, W]` (official `Snn_Conv2d`; same state_dict entries)."""

    def forward(self, x):
        return _per_step(super().forward, x)


class SeqBatchNorm(nn.Module):
    """Per-channel BN over all T*N images (official `batch_norm_2d`, whose BatchNorm3d on `[N, C, T, H, W]` normalises
    over the same N, T, H, W): y = (x - mean) / sqrt(var + eps) * w + b. state_dict prefix `bn.`.
    `init_weight` is the official initial w: 0.5 (`batch_norm_2d`, = threshold) or 0 (`batch_norm_2d1`)."""

    def __init__(self, num_features: int, init_weight: float = 0.5):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features)
        nn.init.constant_(self.bn.weight, init_weight)

    def forward(self, x):
        return _per_step(self.bn, x)


class BasicBlock18(nn.Module):
    """MS-ResNet basic block of the official ImageNet code (`BasicBlock_18`), on `[T, N, C, H, W]`:

    out = BN2(conv2(LIF(BN1(conv1(LIF(x)))))) + shortcut(x),  shortcut = identity or BN(conv1x1_stride(x)).
    BN2 starts at weight 0 (each block starts as the identity on the real stream).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.lif1 = LeakyLIF(**IMAGENET_LIF)
        self.conv1 = SeqConv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = SeqBatchNorm(out_channels)
        self.lif2 = LeakyLIF(**IMAGENET_LIF)
        self.conv2 = SeqConv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = SeqBatchNorm(out_channels, init_weight=0.0)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(SeqConv2d(in_channels, out_channels, 1, stride, bias=False),
                                          SeqBatchNorm(out_channels))

    def forward(self, x):
        return self.bn2(self.conv2(self.lif2(self.bn1(self.conv1(self.lif1(x)))))) + self.shortcut(x)


class MSResNetImageNet(nn.Module):
    """GAC + MS-ResNet of the official ImageNet code (`ResNet_origin_18` in CODE/ImageNet/models/MS_ResNet.py).

    x[t] = image for t < T (`[T, N, 3, H, W]`)  ->  u = BN(conv7x7 stride 2 (x))  ->  GAC: sigmoid(TA(u)*SCA(u))*LIF(u)
    ->  conv2_x..conv5_x, each a stage of `BasicBlock18` whose first block has stride 2 (the official code defines a
    max-pool after the stem but never calls it)  ->  LIF -> global avg-pool -> Linear per step  ->  `[N, T, classes]`.
    """

    def __init__(self, blocks_per_stage, num_classes: int = 1000, timesteps: int = 4,
                 input_shape: tuple[int, int, int] = (3, 224, 224), sca_kernel: int = 4):
        super().__init__()
        self.timesteps = timesteps
        self.input_shape = tuple(input_shape)
        self.conv1 = nn.Sequential(SeqConv2d(input_shape[0], 64, 7, 2, padding=3, bias=False), SeqBatchNorm(64))
        self.encoding = GAC(timesteps, 64, kernel_size=sca_kernel, time_dim=0)
        self.encoder_lif = LeakyLIF(**IMAGENET_LIF)
        self.head_lif = LeakyLIF(**IMAGENET_LIF)
        width = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage), start=2):
            stage = [BasicBlock18(width, planes, 2)] + [BasicBlock18(planes, planes) for _ in range(blocks - 1)]
            setattr(self, f"conv{i}_x", nn.Sequential(*stage))
            width = planes
        self.avgpool = TdLayer(nn.AdaptiveAvgPool2d((1, 1)))
        self.fc1 = nn.Linear(width, num_classes)
        # The official model registers fc1 a second time under fc1_s (and checkpoints carry both names).
        self.fc1_s = TdLayer(self.fc1)
        # Official `_initialize_weights`: applies to every Conv2d, the encoder's SCA convs included.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, image):
        x = self.conv1(image.unsqueeze(0).repeat(self.timesteps, 1, 1, 1, 1))
        x = self.encoding(x, self.encoder_lif(x))
        x = self.conv5_x(self.conv4_x(self.conv3_x(self.conv2_x(x))))
        x = self.avgpool(self.head_lif(x))
        return self.fc1_s(torch.flatten(x, 2)).transpose(0, 1)


def gac_msresnet18_imagenet(num_classes: int = 1000, timesteps: int = 4, sca_kernel: int = 4) -> MSResNetImageNet:
    """Official ImageNet `resnet18()` (blocks 2-2-2-2, T = `time_window` = 4): `[N, 3, 224, 224]` -> `[N, T, classes]`."""
    return MSResNetImageNet((2, 2, 2, 2), num_classes, timesteps, sca_kernel=sca_kernel)


def gac_msresnet34_imagenet(num_classes: int = 1000, timesteps: int = 4, sca_kernel: int = 4) -> MSResNetImageNet:
    """Official ImageNet `resnet34()` (blocks 3-4-6-3, T = 4; SCA kernel 4 as the official file builds it, though
    its comment prescribes 8 for ResNet-34): `[N, 3, 224, 224]` -> `[N, T, classes]`."""
    return MSResNetImageNet((3, 4, 6, 3), num_classes, timesteps, sca_kernel=sca_kernel)
