"""TCJA-SNN zoo models: equations of the blocks, official module layout, state_dict keys, parameter counts.

Official facts used below come from github.com/ridgerchu/TCJA: `src/layers.py` (TCJA, VotingLayer), `src/dvs128.py`,
`src/cifar10dvs.py`, `src/caltech101.py` (the networks and their SpikingJelly layers).
"""
import numpy as np
import pytest
import torch
from torch import nn

from snn2hw.models.neurons import SpikingJellyLIF
from snn2hw.models.tcja import (
    TCJA, TETTCJA, MultiStepDropout, SeqToANN, TETLayer, VotingLayer, tcja_cifar10dvs, tcja_dvs128, tcja_ncaltech101,
    tcja_tet_cifar10dvs, tcja_tet_ncaltech101, tcja_tet_vgg_ncaltech101, tcja_tiny,
)

BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_bn_keys(index, cin, cout, conv_bias=False):
    keys = {f"conv.{index}.0.weight": (cout, cin, 3, 3)}
    if conv_bias:
        keys[f"conv.{index}.0.bias"] = (cout,)
    for s in BN_SUFFIXES:
        keys[f"conv.{index}.1.{s}"] = () if s == "num_batches_tracked" else (cout,)
    return keys


def _tcja_keys(index, kt, kc, T, C):
    return {f"conv.{index}.conv.weight": (T, T, kt), f"conv.{index}.conv_c.weight": (C, C, kc)}


def official_dvs128_keys():
    """`CextNet(channels=128)` of src/dvs128.py. conv: [0 conv+BN, 1 LIF, 2 pool] x3 (indices 0..8), then
    [conv+BN, LIF, TCJA(4, 4, 20, 128), pool] x2 (9..16). fc: 0 Flatten, 1 Dropout, 2 Linear(2048, 512, no bias),
    3 LIF, 4 Dropout, 5 Linear(512, 110, no bias), 6 LIF."""
    keys = {}
    for i, cin in zip((0, 3, 6, 9, 13), (2, 128, 128, 128, 128)):
        keys.update(_conv_bn_keys(i, cin, 128))
    keys.update(_tcja_keys(11, 4, 4, 20, 128))
    keys.update(_tcja_keys(15, 4, 4, 20, 128))
    keys["fc.2.0.weight"] = (512, 2048)
    keys["fc.5.0.weight"] = (110, 512)
    return keys


def official_cifar10dvs_keys():
    """`VGGNet` of src/cifar10dvs.py: conv.0 AdaptiveAvgPool2d(48); conv+BN (bias=True) at 1, 3, 6, 8, 11, 13, 17, 19;
    TCJA(4, 4, 10, 512) at 15 and 21; AvgPool2d at 5, 10, 16, 22; fc: 0 Flatten, 1 Linear(4608, 10) with bias."""
    keys = {}
    for i, cin, cout in [(1, 2, 64), (3, 64, 128), (6, 128, 256), (8, 256, 256), (11, 256, 512), (13, 512, 512),
                         (17, 512, 512), (19, 512, 512)]:
        keys.update(_conv_bn_keys(i, cin, cout, conv_bias=True))
    keys.update(_tcja_keys(15, 4, 4, 10, 512))
    keys.update(_tcja_keys(21, 4, 4, 10, 512))
    keys["fc.1.0.weight"] = (10, 4608)
    keys["fc.1.0.bias"] = (10,)
    return keys


def official_ncaltech101_keys():
    """`CextNet` of src/caltech101.py: conv+BN at 0, 3, 6, 9, 13 (widths 64, 128, 256, 256, 512), TCJA(4, 4, 14, 256)
    at 11, TCJA(2, 4, 14, 512) at 15; fc as DVS128 with Linear(17920, 1024) and Linear(1024, 101), no bias."""
    keys = {}
    for i, cin, cout in [(0, 2, 64), (3, 64, 128), (6, 128, 256), (9, 256, 256), (13, 256, 512)]:
        keys.update(_conv_bn_keys(i, cin, cout))
    keys.update(_tcja_keys(11, 4, 4, 14, 256))
    keys.update(_tcja_keys(15, 2, 4, 14, 512))
    keys["fc.2.0.weight"] = (1024, 512 * 5 * 7)
    keys["fc.5.0.weight"] = (101, 1024)
    return keys


def tcja_numpy(x, w_t, w_c):
    """The TCJA equation with explicit loops; PyTorch's 'same' puts (k-1)//2 zeros before and the rest after."""
    T, N, C = x.shape[:3]
    z = x.mean(axis=(3, 4))
    kt, kc = w_t.shape[2], w_c.shape[2]
    lt, lc = (kt - 1) // 2, (kc - 1) // 2
    a = np.zeros((T, N, C))
    b = np.zeros((T, N, C))
    for t in range(T):
        for n in range(N):
            for c in range(C):
                for j in range(kt):
                    if 0 <= c + j - lt < C:
                        a[t, n, c] += w_t[t, :, j] @ z[:, n, c + j - lt]
                for j in range(kc):
                    if 0 <= t + j - lc < T:
                        b[t, n, c] += w_c[c, :, j] @ z[t + j - lc, n, :]
    return x * (1 / (1 + np.exp(-a * b)))[..., None, None]


@pytest.mark.parametrize("kt, kc, T, C", [(4, 4, 5, 6), (2, 4, 4, 3), (3, 5, 6, 7)])
def test_tcja_matches_equation(kt, kc, T, C):
    g = torch.Generator().manual_seed(kt * 100 + kc)
    m = TCJA(kt, kc, T, C)
    with torch.no_grad():
        m.conv.weight.copy_(torch.randn(m.conv.weight.shape, generator=g))
        m.conv_c.weight.copy_(torch.randn(m.conv_c.weight.shape, generator=g))
    x = (torch.rand(T, 2, C, 3, 2, generator=g) < 0.5).float()
    expected = tcja_numpy(x.double().numpy(), m.conv.weight.double().detach().numpy(),
                          m.conv_c.weight.double().detach().numpy())
    np.testing.assert_allclose(m(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_tcja_even_kernel_pads_one_before_two_after():
    """Hand case, T=4, C=2, one pixel. conv (k=4, over channels) picks tap 2 of step t: a[t, c] = z[t, c+1];
    conv_c (k=4, over time) picks tap 0 of channel c: b[t, c] = z[t-1, c]. Taps are offset by -1 (one zero before)."""
    m = TCJA(4, 4, 4, 2)
    with torch.no_grad():
        m.conv.weight.zero_()
        m.conv_c.weight.zero_()
        for t in range(4):
            m.conv.weight[t, t, 2] = 1.0
        for c in range(2):
            m.conv_c.weight[c, c, 0] = 1.0
    z = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])  # z[t, c]
    x = z[:, None, :, None, None]
    # a = [[2, 0], [4, 0], [6, 0], [8, 0]];  b = [[0, 0], [1, 2], [3, 4], [5, 6]];  a*b = [[0,0],[4,0],[18,0],[40,0]]
    ab = torch.tensor([[0.0, 0.0], [4.0, 0.0], [18.0, 0.0], [40.0, 0.0]])
    torch.testing.assert_close(m.gate(x)[:, 0], torch.sigmoid(ab), rtol=0, atol=0)
    torch.testing.assert_close(m(x)[:, 0, :, 0, 0], z * torch.sigmoid(ab), rtol=0, atol=0)


def test_tcja_gate_is_per_sample_and_broadcast_over_pixels():
    m = TCJA(4, 4, 6, 5)
    x = (torch.rand(6, 3, 5, 4, 4) < 0.4).float()
    y = m(x)
    torch.testing.assert_close(y[:, 1:2], m(x[:, 1:2]))
    ratio = y[x > 0] / x[x > 0]
    gate = m.gate(x)[..., None, None].expand_as(x)[x > 0]
    torch.testing.assert_close(ratio, gate)


def test_voting_groups_consecutive_outputs():
    x = torch.arange(20.0).reshape(1, 20).repeat(2, 1)
    x[1] *= 2
    torch.testing.assert_close(VotingLayer(10)(x), torch.tensor([[4.5, 14.5], [9.0, 29.0]]))
    torch.testing.assert_close(VotingLayer(2)(torch.tensor([[1.0, 0.0, 1.0, 1.0]])), torch.tensor([[0.5, 1.0]]))


def test_dropout_mask_shared_over_time_and_identity_in_eval():
    d = MultiStepDropout(0.5)
    x = torch.ones(6, 4, 50)
    y = d(x)
    assert torch.equal(y, y[0].expand_as(y))
    assert set(y.unique().tolist()) == {0.0, 2.0}
    d.eval()
    assert torch.equal(d(x), x)


def test_seq_to_ann_applies_layers_per_step():
    layer = SeqToANN(nn.Conv2d(2, 3, 3, padding=1), nn.MaxPool2d(2, 2))
    x = torch.randn(4, 2, 2, 6, 6)
    expected = torch.stack([layer[1](layer[0](x[t])) for t in range(4)])
    torch.testing.assert_close(layer(x), expected)


def _layout(net):
    """One letter per entry of `net.conv`: C conv+BN, L LIF, A TCJA, M max-pool, V avg-pool, D adaptive avg-pool."""
    letters = []
    for m in net.conv:
        if isinstance(m, SpikingJellyLIF):
            assert (m.tau, m.v_threshold, m.time_dim) == (2.0, 1.0, 0)
            letters.append("L")
        elif isinstance(m, TCJA):
            letters.append("A")
        else:
            inner = {nn.Conv2d: "C", nn.MaxPool2d: "M", nn.AvgPool2d: "V", nn.AdaptiveAvgPool2d: "D"}
            letters.append(inner[type(m[0])])
    return "".join(letters)


def test_layouts_follow_official_order():
    assert _layout(tcja_dvs128()) == "CLM" * 3 + "CLAM" * 2
    assert _layout(tcja_cifar10dvs()) == "D" + "CLCLV" * 2 + "CLCLAV" * 2
    assert _layout(tcja_ncaltech101()) == "CLM" * 3 + "CLAM" * 2
    assert _layout(tcja_tiny()) == "CLAM" * 2
    fc = [type(m) for m in tcja_dvs128().fc]
    assert fc == [nn.Flatten, MultiStepDropout, SeqToANN, SpikingJellyLIF, MultiStepDropout, SeqToANN,
                  SpikingJellyLIF]


@pytest.mark.parametrize("build, official_keys, n_params", [
    (tcja_dvs128, official_dvs128_keys, 1_832_576),
    (tcja_cifar10dvs, official_cifar10dvs_keys, 11_369_450),
    (tcja_ncaltech101, official_ncaltech101_keys, 21_907_096),
])
def test_state_dict_matches_official(build, official_keys, n_params):
    net = build()
    expected = official_keys()
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == expected
    assert sum(p.numel() for p in net.parameters()) == n_params
    # An official-format checkpoint (keys from the official layer list) loads strictly and its values arrive.
    sd = {k: (torch.tensor(7) if s == () else torch.rand(s)) for k, s in expected.items()}
    net.load_state_dict(sd, strict=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, sd[k])


def test_state_dict_counts():
    assert len(tcja_dvs128().state_dict()) == 36
    assert len(tcja_cifar10dvs().state_dict()) == 62
    assert len(tcja_ncaltech101().state_dict()) == 36
    assert sum(p.numel() for p in tcja_tiny().parameters()) < 100_000


def test_module_attributes():
    assert (tcja_dvs128().timesteps, tcja_dvs128().input_shape) == (20, (20, 2, 128, 128))
    assert (tcja_cifar10dvs().timesteps, tcja_cifar10dvs().input_shape) == (10, (10, 2, 128, 128))
    assert (tcja_ncaltech101().timesteps, tcja_ncaltech101().input_shape) == (14, (14, 2, 180, 240))
    assert (tcja_tiny().timesteps, tcja_tiny().input_shape) == (8, (8, 2, 16, 16))
    assert tcja_tiny(timesteps=5).conv[2].conv.weight.shape == (5, 5, 4)


def _excite(net):
    """Strong BN gains so spikes reach the output (default init leaves deep layers silent)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.fill_(0.01)
                m.weight.uniform_(1.5, 3.0, generator=g)
                m.bias.uniform_(-0.2, 0.6, generator=g)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 3.0 / m.in_features ** 0.5, generator=g)
            elif isinstance(m, nn.Conv1d):
                m.weight.normal_(0.0, 1.0, generator=g)
    return net.eval()


def _events(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < 0.15).float() * torch.randint(1, 4, shape, generator=g).float()


def test_tiny_forward_votes_rates_and_is_deterministic():
    torch.manual_seed(0)
    net = _excite(tcja_tiny())
    x = _events((3, 8, 2, 16, 16), seed=1)
    with torch.no_grad():
        y = net(x)
        spikes = net.fc(net.conv(x.transpose(0, 1)))
        assert torch.equal(net(x), y)
        assert torch.equal(net(x[1:2]), y[1:2])
    assert y.shape == (3, 10)
    assert spikes.shape == (8, 3, 100) and set(spikes.unique().tolist()) <= {0.0, 1.0} and spikes.sum() > 0
    # votes = mean over T of the output spikes, then mean over each group of 10 consecutive units
    torch.testing.assert_close(y, spikes.mean(0).view(3, 10, 10).mean(-1))
    torch.testing.assert_close(y * 80, (y * 80).round(), rtol=0, atol=1e-5)


def test_tiny_trains():
    net = tcja_tiny()
    x = _events((4, 8, 2, 16, 16), seed=2)
    loss = nn.functional.mse_loss(net(x), torch.full((4, 10), 0.1))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("build, shape, k", [
    (tcja_dvs128, (1, 2, 2, 128, 128), (1, 11)),  # votes
    (tcja_cifar10dvs, (1, 2, 2, 128, 128), (2, 1, 10)),  # per step [T, N, K]
    (tcja_ncaltech101, (1, 2, 2, 180, 240), (2, 1, 101)),
])
def test_official_nets_forward_one_sample(build, shape, k):
    net = _excite(build(timesteps=2))
    with torch.no_grad():
        y = net(_events(shape, seed=4))
    assert y.shape == k
    assert torch.isfinite(y).all() and y.abs().sum() > 0


# -------------------------------------------------------------------------------------------------------------------
# The TET networks of src/tet/ (official facts: src/tet/models/layers.py `Layer`, `LIFSpike`, `TCJA`,
# `SeqToANNContainer`; src/tet/models/VGG_models.py `VGGSNN_TCJA`, `VGGSNN_TCJA_NCAL`; src/tet/caltech101.py `CextNet`)
# -------------------------------------------------------------------------------------------------------------------

def _tet_layer_keys(index, cin, cout):
    keys = {f"features.{index}.fwd.module.0.weight": (cout, cin, 3, 3), f"features.{index}.fwd.module.0.bias": (cout,)}
    for s in BN_SUFFIXES:
        keys[f"features.{index}.fwd.module.1.{s}"] = () if s == "num_batches_tracked" else (cout,)
    return keys


def official_tet_cifar10dvs_keys():
    """`VGGSNN_TCJA`: features 0 L(2,64), 1 L(64,128), 2 TCJA(2, 2, 10, 128), 3 pool, 4 L, 5 L, 6 pool, 7 L, 8 L, 9 pool,
    10 L, 11 L, 12 pool; classifier SeqToANNContainer(Linear(512*3*3, 10))."""
    keys = {}
    for i, cin, cout in [(0, 2, 64), (1, 64, 128), (4, 128, 256), (5, 256, 256), (7, 256, 512), (8, 512, 512),
                         (10, 512, 512), (11, 512, 512)]:
        keys.update(_tet_layer_keys(i, cin, cout))
    keys.update({"features.2.conv.0.weight": (10, 10, 2), "features.2.conv_c.weight": (128, 128, 2),
                 "classifier.module.weight": (10, 4608), "classifier.module.bias": (10,)})
    return keys


def official_tet_vgg_ncaltech101_keys():
    """`VGGSNN_TCJA_NCAL`: features 0 L(2,64), 1 pool, 2 L(64,128), 3 pool, 4 L(128,256), 5 pool, 6 L(256,256),
    7 TCJA(4, 4, 14, 256), 8 pool, 9 L(256,512), 10 TCJA(4, 4, 14, 512), 11 pool; classifier_1 = Sequential(
    SeqToANNContainer(Dropout, Linear(17920, 1024))), act LIFSpike, classifier_2 = Sequential(Dropout,
    SeqToANNContainer(Linear(1024, 101)))."""
    keys = {}
    for i, cin, cout in [(0, 2, 64), (2, 64, 128), (4, 128, 256), (6, 256, 256), (9, 256, 512)]:
        keys.update(_tet_layer_keys(i, cin, cout))
    keys.update({"features.7.conv.0.weight": (14, 14, 4), "features.7.conv_c.weight": (256, 256, 4),
                 "features.10.conv.0.weight": (14, 14, 4), "features.10.conv_c.weight": (512, 512, 4),
                 "classifier_1.0.module.1.weight": (1024, 17920), "classifier_1.0.module.1.bias": (1024,),
                 "classifier_2.1.module.weight": (101, 1024), "classifier_2.1.module.bias": (101,)})
    return keys


def official_tet_ncaltech101_keys():
    """`CextNet` of src/tet/caltech101.py: the N-Caltech101 CextNet with TCJA(4, 4, 14, ·) at conv.11 and conv.15
    and no output neuron after fc.5."""
    keys = official_ncaltech101_keys()
    keys["conv.15.conv.weight"] = (14, 14, 4)
    return keys


@pytest.mark.parametrize("build, official_keys, n_params", [
    (tcja_tet_cifar10dvs, official_tet_cifar10dvs_keys, 9_304_466),
    (tcja_tet_vgg_ncaltech101, official_tet_vgg_ncaltech101_keys, 21_909_829),
    (tcja_tet_ncaltech101, official_tet_ncaltech101_keys, 21_907_488),
])
def test_tet_state_dicts_match_official(build, official_keys, n_params):
    test_state_dict_matches_official(build, official_keys, n_params)


def test_tet_neuron_and_gate_are_the_official_equations():
    """LIFSpike(thresh 1.0, tau 0.5): v = 0.5 v + x, fires when v > 1 (strictly), hard reset; the TET TCJA is the
    same gate as src/layers.py's on batch-first tensors."""
    act = TETLayer(2, 4).act
    x = torch.tensor([1.0, 1.0, 0.5, 1.25])[None, :, None]  # [N=1, T=4, 1]
    v, want = 0.0, []
    for x_t in x[0, :, 0].tolist():
        v = 0.5 * v + x_t
        want.append(float(v > 1.0))
        v = 0.0 if v > 1.0 else v
    assert act(x)[0, :, 0].tolist() == want == [0.0, 1.0, 0.0, 1.0]
    torch.manual_seed(0)
    tet, plain = TETTCJA(4, 2, 6, 5), TCJA(4, 2, 6, 5)
    plain.conv.weight.data.copy_(tet.conv[0].weight)
    plain.conv_c.weight.data.copy_(tet.conv_c.weight)
    x = torch.rand(3, 6, 5, 4, 4)  # [N, T, C, H, W]
    assert torch.equal(tet(x), plain(x.transpose(0, 1)).transpose(0, 1))


@pytest.mark.parametrize("build, shape, k", [
    (tcja_tet_cifar10dvs, (1, 10, 2, 48, 48), (1, 10, 10)),  # [N, T, K]
    (tcja_tet_vgg_ncaltech101, (1, 14, 2, 180, 240), (1, 14, 101)),
    (tcja_tet_ncaltech101, (1, 14, 2, 180, 240), (14, 1, 101)),  # [T, N, K]
])
def test_tet_nets_forward_and_convert_exactly(build, shape, k):
    from snn2hw.convert import convert

    net = _excite(build())
    x = _events(shape, seed=5)
    with torch.no_grad():
        y = net(x)
        assert y.shape == k and torch.isfinite(y).all() and y.abs().sum() > 0
        assert torch.equal(convert(net, build.__name__.replace("_", "-")).run(x)[0], y)
