"""TCJA-SNN (Zhu et al., TNNLS 2024) as built by the official code, github.com/ridgerchu/TCJA.

Every network here has the official module tree, so `state_dict()` keys and shapes equal the official ones and an
official checkpoint's `'net'` entry loads with `strict=True`. The forward pass computes what the official evaluation
computes: input `[N, T, 2, H, W]` (event frames), output as the official `forward` returns it.

Conventions shared by all networks (official `src/dvs128.py`, `src/cifar10dvs.py`, `src/caltech101.py`):
- Inside, tensors are time-major `[T, N, ...]`; stateless layers (conv, BN, pooling, linear) run on `[T*N, ...]`
  through `SeqToANN`, as SpikingJelly's `SeqToANNContainer` does.
- Every neuron is SpikingJelly's `MultiStepLIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True,
  detach_reset=True)`, i.e. `SpikingJellyLIF(2.0)`.
- The DVS128 `forward` votes on the rate over T and returns `[N, num_classes]`; the CIFAR10-DVS and N-Caltech101
  `forward`s return per-step outputs `y[T, N, K]`, which their scripts average over T (`zoo.class_scores`).
"""
import torch
import torch.nn.functional as F
from torch import nn

from . import msresnet
from .neurons import LeakyLIF, SpikingJellyLIF

__all__ = [
    "SeqToANN", "TCJA", "VotingLayer", "MultiStepDropout", "TCJANet",
    "tcja_dvs128", "tcja_cifar10dvs", "tcja_ncaltech101", "tcja_tiny",
    "TETTCJA", "TETLayer", "TETVGG", "tcja_tet_ncaltech101", "tcja_tet_cifar10dvs", "tcja_tet_vgg_ncaltech101",
]

LIF_TAU = 2.0
TET_DECAY, TET_THRESHOLD = 0.5, 1.0  # TET's LIFSpike(thresh=1.0, tau=0.5)


class SeqToANN(nn.Sequential):
    """Applies stateless layers to every time step at once: `[T, N, ...] -> [T*N, ...] -> layers -> [T, N, ...]`.

    Subclasses `nn.Sequential` so the wrapped layers are keyed `<index>.<i>.…` as in SpikingJelly's container.
    """

    def forward(self, x):
        y = super().forward(x.flatten(0, 1))
        return y.view(x.shape[0], x.shape[1], *y.shape[1:])


class TCJA(nn.Module):
    """Temporal-Channel Joint Attention on spikes `x[T, N, C, H, W]`.

    z[t, n, c] = mean_{h, w} x[t, n, c, h, w]
    a[t, n, c] = sum_{t'} sum_{j < k_t} Wt[t, t', j] * z[t', n, c + j - l(k_t)]     (`conv`: Conv1d, T -> T channels,
                                                                                     sliding along the channel axis)
    b[t, n, c] = sum_{c'} sum_{j < k_c} Wc[c, c', j] * z[t + j - l(k_c), n, c']     (`conv_c`: Conv1d, C -> C channels,
                                                                                     sliding along the time axis)
    y[t, n, c, h, w] = x[t, n, c, h, w] * sigmoid(a[t, n, c] * b[t, n, c])

    Out-of-range z is 0. Both convs use PyTorch's `padding='same'`, which for an even kernel pads asymmetrically:
    l(k) = (k - 1) // 2 zeros before and k - 1 - l(k) after (k = 4: one before, two after; k = 2: none before, one
    after). Note the official names: `conv` (kernel_size_t) mixes time steps and `conv_c` (kernel_size_c) mixes
    channels. The gate depends on all T steps, so the output at step t is not causal. No bias, no state.
    """

    non_causal = True  # the Conv1d over T mixes all steps: a host op unless folded to static scales

    def __init__(self, kernel_size_t: int, kernel_size_c: int, timesteps: int, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(timesteps, timesteps, kernel_size_t, padding="same", bias=False)
        self.conv_c = nn.Conv1d(channels, channels, kernel_size_c, padding="same", bias=False)

    @property
    def temporal_conv(self) -> nn.Conv1d:
        return self.conv

    def gate(self, x):
        """The multiplicative gate sigmoid(a * b) of time-major `x`, shape `[T, N, C]`."""
        z = x.mean(dim=(3, 4))
        a = self.conv(z.transpose(0, 1)).transpose(0, 1)
        b = self.conv_c(z.permute(1, 2, 0)).permute(2, 0, 1)
        return torch.sigmoid(a * b)

    def forward(self, x):
        return x * self.gate(x)[..., None, None]


class VotingLayer(nn.Module):
    """Average of consecutive groups of `voters` outputs: votes[n, k] = (1/V) * sum_{j < V} x[n, k*V + j]."""

    def __init__(self, voters: int):
        super().__init__()
        self.voters = voters

    def forward(self, x):
        # avg_pool1d is the official op (nn.AvgPool1d(V, V)); kept so the rounding matches it exactly.
        return F.avg_pool1d(x.unsqueeze(1), self.voters, self.voters).squeeze(1)

    def extra_repr(self):
        return f"voters={self.voters}"


class MultiStepDropout(nn.Module):
    """SpikingJelly's `MultiStepDropout`: in training, one Bernoulli mask (scaled by 1/(1-p)) shared by all T steps
    of a forward pass; identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training:
            return x
        return x * F.dropout(torch.ones_like(x[0]), self.p, training=True)

    def extra_repr(self):
        return f"p={self.p}"


class TCJANet(nn.Module):
    """`conv` (features) and `fc` (classifier) on time-major tensors, then the rate over time, then optional voting.

    x[N, T, 2, H, W] -> y = fc(conv(x^T))[T, N, K] -> with voting: vote((1/T) * sum_t y[t]) [N, K]; else y.
    """

    def __init__(self, conv: nn.Sequential, fc: nn.Sequential, voters: int | None,
                 timesteps: int, input_shape: tuple[int, ...]):
        super().__init__()
        self.conv = conv
        self.fc = fc
        self.vote = VotingLayer(voters) if voters else None
        self.timesteps = timesteps
        self.input_shape = input_shape

    def forward(self, x):
        y = self.fc(self.conv(x.transpose(0, 1)))
        # As the official forwards: DVS128 votes on the rate over T; the CIFAR10-DVS and N-Caltech101 nets return
        # the per-step outputs [T, N, K] and their scripts average them.
        return self.vote(y.mean(0)) if self.vote is not None else y


def _conv_bn_lif(cin: int, cout: int, bias: bool = False) -> list[nn.Module]:
    """Official `conv3x3`: Conv2d(3x3, padding 1) + BatchNorm2d, then the LIF neuron (two Sequential entries)."""
    return [SeqToANN(nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout)), SpikingJellyLIF(LIF_TAU)]


def _max_pool() -> nn.Module:
    return SeqToANN(nn.MaxPool2d(2, 2))


def _spiking_head(in_features: int, hidden: int, outputs: int, output_neuron: bool = True) -> nn.Sequential:
    """Flatten, dropout, Linear (no bias) + LIF, dropout, Linear (no bias) [+ LIF: the output layer spikes]."""
    return nn.Sequential(
        nn.Flatten(2),
        MultiStepDropout(0.5),
        SeqToANN(nn.Linear(in_features, hidden, bias=False)),
        SpikingJellyLIF(LIF_TAU),
        MultiStepDropout(0.5),
        SeqToANN(nn.Linear(hidden, outputs, bias=False)),
        *([SpikingJellyLIF(LIF_TAU)] if output_neuron else []),
    )


def tcja_dvs128(num_classes: int = 11, timesteps: int = 20, channels: int = 128) -> TCJANet:
    """`CextNet` of `src/dvs128.py` (DVS128 Gesture): input `[N, T, 2, 128, 128]` -> votes `[N, num_classes]`.

    Five conv blocks of `channels` filters, each followed by 2x2 max-pooling (128 -> 4); the last two have TCJA(4, 4)
    between the LIF and the pooling. Head: 2048 -> 512 -> 10 * num_classes spiking units, averaged over T, then
    10-way voting. The official code fixes TCJA to T = 20 and 128 channels; here they follow the arguments.
    """
    c = channels
    layers = [*_conv_bn_lif(2, c), _max_pool()]
    for _ in range(2):
        layers += [*_conv_bn_lif(c, c), _max_pool()]
    for _ in range(2):
        layers += [*_conv_bn_lif(c, c), TCJA(4, 4, timesteps, c), _max_pool()]
    fc = _spiking_head(c * 4 * 4, c * 2 * 2, 10 * num_classes)
    return TCJANet(nn.Sequential(*layers), fc, 10, timesteps, (timesteps, 2, 128, 128))


def tcja_cifar10dvs(num_classes: int = 10, timesteps: int = 10) -> TCJANet:
    """`VGGNet` of `src/cifar10dvs.py` (CIFAR10-DVS): input `[N, T, 2, 128, 128]` -> `[T, N, num_classes]`.

    Adaptive average pooling to 48x48, then a VGG of eight conv blocks (conv with bias here) in pairs of widths
    64/128, 256/256, 512/512, 512/512, each pair followed by 2x2 average pooling (48 -> 3); TCJA(4, 4) after the
    third and fourth pair. Head: one Linear (with bias) on the 512*3*3 features and no neuron, so the output is the
    real-valued readout per step.
    """
    layers = [SeqToANN(nn.AdaptiveAvgPool2d(48))]
    widths = [(2, 64, 128), (128, 256, 256), (256, 512, 512), (512, 512, 512)]
    for i, (cin, mid, cout) in enumerate(widths):
        layers += [*_conv_bn_lif(cin, mid, bias=True), *_conv_bn_lif(mid, cout, bias=True)]
        if i >= 2:
            layers.append(TCJA(4, 4, timesteps, cout))
        layers.append(SeqToANN(nn.AvgPool2d(2, 2)))
    fc = nn.Sequential(nn.Flatten(2), SeqToANN(nn.Linear(512 * 3 * 3, num_classes)))
    return TCJANet(nn.Sequential(*layers), fc, None, timesteps, (timesteps, 2, 128, 128))


def tcja_ncaltech101(num_classes: int = 101, timesteps: int = 14) -> TCJANet:
    """`CextNet` of `src/caltech101.py` (N-Caltech101): input `[N, T, 2, 180, 240]` -> spikes `[T, N, num_classes]`.

    Five conv blocks of widths 64, 128, 256, 256, 512, each followed by 2x2 max-pooling (180x240 -> 5x7); TCJA(4, 4)
    after the fourth LIF and TCJA(2, 4) after the fifth. Head: 512*5*7 -> 1024 -> num_classes spiking units per step
    (the official net builds a VotingLayer but never calls it).
    """
    return _caltech_cextnet(num_classes, timesteps, (2, 4), output_neuron=True)


def tcja_tet_ncaltech101(num_classes: int = 101, timesteps: int = 14) -> TCJANet:
    """`CextNet` of `src/tet/caltech101.py` (N-Caltech101 trained with TET): `[N, T, 2, 180, 240]` -> `[T, N, K]`.

    `tcja_ncaltech101` with TCJA(4, 4) after both the fourth and the fifth LIF, and no output neuron: the head ends in
    the second Linear, whose real-valued outputs per step the TET loss and the evaluation (mean over T) read.
    """
    return _caltech_cextnet(num_classes, timesteps, (4, 4), output_neuron=False)


def _caltech_cextnet(num_classes: int, timesteps: int, last_tcja: tuple[int, int], output_neuron: bool) -> TCJANet:
    layers = []
    for cin, cout, tcja_kernels in [(2, 64, None), (64, 128, None), (128, 256, None), (256, 256, (4, 4)),
                                    (256, 512, last_tcja)]:
        layers += _conv_bn_lif(cin, cout)
        if tcja_kernels:
            layers.append(TCJA(*tcja_kernels, timesteps, cout))
        layers.append(_max_pool())
    fc = _spiking_head(512 * 5 * 7, 1024, num_classes, output_neuron)
    return TCJANet(nn.Sequential(*layers), fc, None, timesteps, (timesteps, 2, 180, 240))


def tcja_tiny(num_classes: int = 10, timesteps: int = 8, channels: int = 16) -> TCJANet:
    """Demo network from the DVS128 blocks: input `[N, T, 2, 16, 16]` -> votes `[N, num_classes]`.

    Two conv blocks of `channels` filters, each LIF -> TCJA(4, 4) -> 2x2 max-pooling (16 -> 4); the DVS128 head
    (c*16 -> c*4 -> 10 * num_classes spiking units) and 10-way voting.
    """
    c = channels
    layers = []
    for cin in (2, c):
        layers += [*_conv_bn_lif(cin, c), TCJA(4, 4, timesteps, c), _max_pool()]
    fc = _spiking_head(c * 4 * 4, c * 2 * 2, 10 * num_classes)
    return TCJANet(nn.Sequential(*layers), fc, 10, timesteps, (timesteps, 2, 16, 16))


# ---------------------------------------------------------------------------------------------------------------------
# The TET networks of `src/tet/` (temporal efficient training): batch-first `[N, T, ...]`, TET's neuron and layers
# (`src/tet/models/layers.py`, the TET repository's file with a TCJA added), as `src/tet/models/VGG_models.py` builds
# them. Their scripts save `model.state_dict()` bare and average the per-step outputs over T (`outputs.mean(1)`).
# ---------------------------------------------------------------------------------------------------------------------


class TETTCJA(TCJA):
    """TCJA as `src/tet/models/layers.py` builds it: the same gate (its `gate` takes time-major `x` like TCJA's) on
    batch-first `x[N, T, C, H, W]`, its temporal conv inside a Sequential (key `conv.0.weight`)."""

    def __init__(self, kernel_size_t: int, kernel_size_c: int, timesteps: int, channels: int):
        super().__init__(kernel_size_t, kernel_size_c, timesteps, channels)
        self.conv = nn.Sequential(self.conv)

    @property
    def temporal_conv(self) -> nn.Conv1d:
        return self.conv[0]

    def forward(self, x):
        return x * self.gate(x.transpose(0, 1)).transpose(0, 1)[..., None, None]


class TETLayer(nn.Module):
    """TET's `Layer`: conv (with bias) and BatchNorm per step, then TET's `LIFSpike`, on `[N, T, C, H, W]`.

    LIFSpike (thresh 1.0, tau 0.5): v[t] = 0.5 v[t-1] + x[t]; s[t] = v[t] > 1; v[t] = 0 where s[t], which is
    `LeakyLIF(0.5, 1.0)`."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.fwd = msresnet.SeqToANN(nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout)))
        self.act = LeakyLIF(TET_DECAY, TET_THRESHOLD, time_dim=1)

    def forward(self, x):
        return self.act(self.fwd(x))


class TETVGG(nn.Module):
    """`VGGSNN_TCJA` and `VGGSNN_TCJA_NCAL` of `src/tet/models/VGG_models.py`: `features` (TET layers, TCJA, pooling),
    flattened per step, then the classifier; the output `[N, T, K]` is the real-valued readout per step (no output
    neuron). `head` is (classifier,) for CIFAR10-DVS, or (classifier_1, act, classifier_2) for N-Caltech101."""

    def __init__(self, features: list, head: dict, timesteps: int, input_shape: tuple[int, ...]):
        super().__init__()
        self.features = nn.Sequential(*features)
        for name, module in head.items():
            setattr(self, name, module)
        self.head = list(head)
        self.timesteps = timesteps
        self.input_shape = input_shape

    def forward(self, x):
        x = torch.flatten(self.features(x), 2)
        for name in self.head:
            x = getattr(self, name)(x)
        return x


def tcja_tet_cifar10dvs(num_classes: int = 10, timesteps: int = 10) -> TETVGG:
    """`VGGSNN_TCJA` (CIFAR10-DVS at 48x48, the frames resized by the data loader to values in [0, 1]):
    `[N, T, 2, 48, 48]` -> `[N, T, K]`. Eight TET layers 64, 128 | 256, 256 | 512, 512 | 512, 512, TCJA(2, 2)
    after the second, 2x2 average pooling after each pair (48 -> 3), one Linear (with bias)."""
    pool = msresnet.SeqToANN(nn.AvgPool2d(2))  # one instance, as the official code shares it
    features = [TETLayer(2, 64), TETLayer(64, 128), TETTCJA(2, 2, timesteps, 128), pool,
                TETLayer(128, 256), TETLayer(256, 256), pool, TETLayer(256, 512), TETLayer(512, 512), pool,
                TETLayer(512, 512), TETLayer(512, 512), pool]
    return TETVGG(features, {"classifier": msresnet.SeqToANN(nn.Linear(512 * 3 * 3, num_classes))}, timesteps,
                  (timesteps, 2, 48, 48))


def tcja_tet_vgg_ncaltech101(num_classes: int = 101, timesteps: int = 14) -> TETVGG:
    """`VGGSNN_TCJA_NCAL` (N-Caltech101 event frames): `[N, T, 2, 180, 240]` -> `[N, T, K]`. TET layers 64, 128, 256,
    256, 512 with 2x2 max-pooling after each (180x240 -> 5x7), TCJA(4, 4) after the fourth and fifth; head: dropout,
    Linear (with bias) 17920 -> 1024, LIFSpike, dropout, Linear 1024 -> K."""
    pool = msresnet.SeqToANN(nn.MaxPool2d(2))
    features = [TETLayer(2, 64), pool, TETLayer(64, 128), pool, TETLayer(128, 256), pool, TETLayer(256, 256),
                TETTCJA(4, 4, timesteps, 256), pool, TETLayer(256, 512), TETTCJA(4, 4, timesteps, 512), pool]
    head = {"classifier_1": nn.Sequential(msresnet.SeqToANN(nn.Sequential(MultiStepDropout(0.5),
                                                                          nn.Linear(512 * 5 * 7, 1024)))),
            "act": LeakyLIF(TET_DECAY, TET_THRESHOLD, time_dim=1),
            "classifier_2": nn.Sequential(MultiStepDropout(0.5), msresnet.SeqToANN(nn.Linear(1024, num_classes)))}
    return TETVGG(features, head, timesteps, (timesteps, 2, 180, 240))
