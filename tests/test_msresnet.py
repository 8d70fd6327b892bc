"""GAC + MS-ResNet zoo models: official parameter counts and state_dict names, and the forward equations checked
against small numpy computations (bollossom/GAC, CODE/CIFAR/models and CODE/ImageNet/models)."""
import copy

import numpy as np
import pytest
import torch

from snn2hw.models import msresnet as ms
from snn2hw.models.neurons import LeakyLIF


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def cifar():
    torch.manual_seed(0)
    return ms.gac_msresnet18_cifar().eval()


@pytest.fixture(scope="module")
def imagenet18():
    torch.manual_seed(0)
    return ms.gac_msresnet18_imagenet().eval()


# ------------------------------------------------------------------------------------------- numpy references


def lif_np(x, decay, threshold, axis):
    """v = decay * v + x; s = v > threshold; v = 0 where s (loop over `axis`)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    v, out = np.zeros_like(x[0]), []
    for x_t in x:
        v = decay * v + x_t
        s = (v > threshold).astype(np.float64)
        v = v * (1 - s)
        out.append(s)
    return np.moveaxis(np.stack(out), 0, axis)


def bn_np(x, bn, channel_axis):
    """Eval BatchNorm: (x - mean) / sqrt(var + eps) * w + b, per channel."""
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    p = {k: getattr(bn, k).detach().double().numpy().reshape(shape)
         for k in ("running_mean", "running_var", "weight", "bias")}
    return (x - p["running_mean"]) / np.sqrt(p["running_var"] + bn.eps) * p["weight"] + p["bias"]


def conv_same_np(x, w):
    """Cross-correlation of x [C, H, W] with w [O, C, k, k], 'same' padding: (k-1)//2 before, the rest after."""
    k = w.shape[-1]
    before = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (before, k - 1 - before), (before, k - 1 - before)))
    h, wd = x.shape[1:]
    return np.array([[[np.sum(w[o] * xp[:, i:i + k, j:j + k]) for j in range(wd)] for i in range(h)]
                     for o in range(w.shape[0])])


def set_bn(bn, mean, var, weight, bias):
    with torch.no_grad():
        for name, value in (("running_mean", mean), ("running_var", var), ("weight", weight), ("bias", bias)):
            getattr(bn, name).copy_(torch.tensor(value, dtype=getattr(bn, name).dtype))


# ------------------------------------------------------------------------------------ official sizes and names


@pytest.mark.parametrize("build, count", [
    (ms.gac_msresnet18_cifar, 12_633_198),
    (ms.msresnet18_cifar, 12_502_090),
    (ms.gac_msresnet18_imagenet, 11_824_824),
    (ms.gac_msresnet34_imagenet, 21_932_984),
])
def test_official_parameter_counts(build, count):
    with torch.device("meta"):
        assert n_params(build()) == count


CIFAR_KEYS = {  # read from CODE/CIFAR/models/MS_ResNet.py (+ layers.py tdLayer/tdBatchNorm, GAU.py TA/SCA)
    "conv1.weight": (64, 3, 3, 3),
    "bn1.bn.running_var": (64,),
    "bn1.seqbn.module.weight": (64,),
    "conv1_s.layer.module.weight": (64, 3, 3, 3),
    "conv1_s.bn.seqbn.module.num_batches_tracked": (),
    "layer1.0.conv1.weight": (128, 64, 3, 3),
    "layer1.0.bn2.bn.bias": (128,),
    "layer1.0.downsample.layer.module.weight": (128, 64, 1, 1),
    "layer1.0.downsample.bn.seqbn.module.running_mean": (128,),
    "layer1.2.conv2_s.layer.module.weight": (128, 128, 3, 3),
    "layer2.0.downsample.layer.module.weight": (256, 128, 1, 1),
    "layer3.1.conv2.weight": (512, 512, 3, 3),
    "fc1.weight": (10, 512),
    "fc1_s.layer.module.bias": (10,),
    "encoding.TA.sharedMLP.0.weight": (3, 6, 1, 1, 1),
    "encoding.TA.sharedMLP.2.weight": (6, 3, 1, 1, 1),
    "encoding.SCA.sharedMLP.0.weight": (64, 64, 4, 4),
    "encoding.SCA.sharedMLP.2.weight": (64, 64, 4, 4),
}
IMAGENET18_KEYS = {  # read from CODE/ImageNet/models/MS_ResNet.py
    "conv1.0.weight": (64, 3, 7, 7),
    "conv1.1.bn.running_mean": (64,),
    "encoding.TA.sharedMLP.0.weight": (2, 4, 1, 1, 1),
    "encoding.SCA.sharedMLP.2.weight": (64, 64, 4, 4),
    "conv2_x.0.conv1.weight": (64, 64, 3, 3),
    "conv2_x.0.shortcut.0.weight": (64, 64, 1, 1),  # stride 2 in the first stage too: it has a shortcut conv
    "conv2_x.0.shortcut.1.bn.num_batches_tracked": (),
    "conv3_x.1.bn2.bn.weight": (128,),
    "conv5_x.0.shortcut.0.weight": (512, 256, 1, 1),
    "fc1.weight": (1000, 512),
    "fc1_s.layer.module.bias": (1000,),
}


IMAGENET34_KEYS = {
    "conv2_x.2.bn1.bn.bias": (64,),
    "conv4_x.5.conv2.weight": (256, 256, 3, 3),
    "conv5_x.2.bn2.bn.running_var": (512,),
    "encoding.TA.sharedMLP.2.weight": (4, 2, 1, 1, 1),
}


@pytest.mark.parametrize("build, expected, total", [
    (ms.gac_msresnet18_cifar, CIFAR_KEYS, 415),
    (ms.msresnet18_cifar, {k: v for k, v in CIFAR_KEYS.items() if not k.startswith("encoding.")}, 411),
    (ms.gac_msresnet18_imagenet, IMAGENET18_KEYS, 134),
    (ms.gac_msresnet34_imagenet, IMAGENET34_KEYS, 230),
])
def test_state_dict_keys_match_official(build, expected, total):
    with torch.device("meta"):
        sd = build().state_dict()
    assert len(sd) == total
    assert {k: tuple(sd[k].shape) for k in expected if k in sd} == expected
    assert build is ms.msresnet18_cifar or "encoding.SCA.sharedMLP.0.weight" in sd
    assert build is not ms.msresnet18_cifar or not any(k.startswith("encoding.") for k in sd)


def test_aliased_official_names_are_one_tensor(cifar):
    """The official CIFAR code registers each conv/BN twice; a checkpoint loads into one shared tensor."""
    sd = cifar.state_dict()
    assert sd["layer1.0.conv1.weight"].data_ptr() == sd["layer1.0.conv1_s.layer.module.weight"].data_ptr()
    assert sd["bn1.bn.weight"].data_ptr() == sd["conv1_s.bn.seqbn.module.weight"].data_ptr()
    assert sd["fc1.weight"].data_ptr() == sd["fc1_s.layer.module.weight"].data_ptr()
    fresh = ms.gac_msresnet18_cifar()
    fresh.load_state_dict({k: v + 1 if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    assert torch.equal(fresh.layer3[1].conv2_s.layer.module.weight, cifar.layer3[1].conv2.weight + 1)


def test_neuron_conventions(cifar, imagenet18):
    for model, expected in ((cifar, (0.5, 1.0, 1)), (imagenet18, (0.25, 0.5, 0))):
        lifs = [m for m in model.modules() if isinstance(m, LeakyLIF)]
        assert len(lifs) == 2 + 2 * sum(1 for m in model.modules() if isinstance(m, (ms.BasicBlockMS, ms.BasicBlock18)))
        assert {(m.decay, m.threshold, m.time_dim) for m in lifs} == {expected}


def test_imagenet_official_init(imagenet18):
    assert torch.all(imagenet18.conv1[1].bn.weight == 0.5)
    assert torch.all(imagenet18.conv3_x[0].bn1.bn.weight == 0.5)
    assert torch.all(imagenet18.conv3_x[0].shortcut[1].bn.weight == 0.5)
    assert torch.all(imagenet18.conv3_x[0].bn2.bn.weight == 0)


# -------------------------------------------------------------------------------------- GAC encoder equations


def test_gac_matches_numpy_and_mixes_time_steps():
    """e = sigmoid(TA(u) * SCA(u)) * s with TA = MLP(mean_chw u) + MLP(max_chw u), SCA = conv4(relu(conv4(u)))."""
    T, C, H, W = 4, 2, 3, 3
    rng = np.random.default_rng(1)
    u = rng.normal(size=(1, T, C, H, W))
    s = (rng.random((1, T, C, H, W)) < 0.5).astype(np.float64)
    w1 = np.array([[1.0, 0.0, -0.5, 0.0], [0.0, 0.5, 0.0, 1.0]])  # T -> T/2
    w2 = np.array([[1.0, 0.5], [0.0, 1.0], [0.5, 0.5], [-1.0, 2.0]])  # T/2 -> T
    ka, kb = rng.normal(size=(C, C, 4, 4)) * 0.3, rng.normal(size=(C, C, 4, 4)) * 0.3

    def mlp(z):
        return w2 @ np.maximum(w1 @ z, 0)

    ta = mlp(u[0].mean(axis=(1, 2, 3))) + mlp(u[0].max(axis=(1, 2, 3)))
    sca = np.stack([conv_same_np(np.maximum(conv_same_np(u[0, t], ka), 0), kb) for t in range(T)])
    expected = 1 / (1 + np.exp(-ta[:, None, None, None] * sca)) * s[0]

    gac = ms.GAC(T, C, kernel_size=4).double()
    with torch.no_grad():
        gac.TA.sharedMLP[0].weight.copy_(torch.tensor(w1).view(2, 4, 1, 1, 1))
        gac.TA.sharedMLP[2].weight.copy_(torch.tensor(w2).view(4, 2, 1, 1, 1))
        gac.SCA.sharedMLP[0].weight.copy_(torch.tensor(ka))
        gac.SCA.sharedMLP[2].weight.copy_(torch.tensor(kb))
        out = gac(torch.tensor(u), torch.tensor(s))
        np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-12, atol=1e-12)
        # The ImageNet layout [T, N, ...] gives the same numbers, transposed.
        gac.time_dim = 0
        out_tn = gac(torch.tensor(u).transpose(0, 1), torch.tensor(s).transpose(0, 1))
        np.testing.assert_allclose(out_tn[:, 0].numpy(), expected, rtol=1e-12, atol=1e-12)
        gac.time_dim = 1
        # Not causal: changing only the last step changes the gate of the first.
        u2 = torch.tensor(u).clone()
        u2[:, T - 1] += 3.0
        later = gac(u2, torch.tensor(s))
    assert not torch.allclose(later[:, 0], out[:, 0])
    assert torch.all((out >= 0) & (out < 1)) and torch.all(out[torch.tensor(s) == 0] == 0)
    assert ((out > 0) & (out < 1)).any()  # graded, not binary


# -------------------------------------------------------------------------------- residual stream equations


def test_cifar_block_adds_real_valued_stream():
    """out = BN2(conv2(LIF(BN1(conv1(LIF(x)))))) + x, on 1x1 images where a 3x3 conv is its centre tap."""
    block = ms.BasicBlockMS(2, 2).double().eval()
    w1, w2 = np.array([[1.5, 0.0], [0.5, 1.0]]), np.array([[1.0, -2.0], [0.25, 1.0]])
    with torch.no_grad():
        for conv, w in ((block.conv1, w1), (block.conv2, w2)):
            conv.weight.zero_()
            conv.weight[:, :, 1, 1] = torch.tensor(w)
    set_bn(block.bn1.bn, [0.1, -0.2], [0.5, 2.0], [1.2, 0.8], [0.05, 0.3])
    set_bn(block.bn2.bn, [0.0, 0.3], [1.0, 0.25], [0.7, 1.1], [-0.1, 0.2])
    x = np.array([[0.6, -0.3], [0.7, 1.4], [0.2, 0.9], [1.3, -0.8], [0.4, 0.55]]).reshape(1, 5, 2, 1, 1)

    s1 = lif_np(x, 0.5, 1.0, axis=1)
    h = bn_np(np.einsum("oc,ntchw->ntohw", w1, s1), block.bn1.bn, 2)
    s2 = lif_np(h, 0.5, 1.0, axis=1)
    expected = bn_np(np.einsum("oc,ntchw->ntohw", w2, s2), block.bn2.bn, 2) + x
    with torch.no_grad():
        out = block(torch.tensor(x)).numpy()
    assert s1.any() and s2.any() and not s2.all()  # the hand-set values make both neurons fire sometimes
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)

    set_bn(block.bn2.bn, [0.0, 0.3], [1.0, 0.25], [0.0, 0.0], [0.0, 0.0])  # residual branch silenced
    with torch.no_grad():
        assert torch.equal(block(torch.tensor(x)), torch.tensor(x))  # the real values pass unchanged, not spikes


def test_downsample_acts_on_real_stream():
    """With the residual branch silenced, out = BN(conv1x1 stride 2 (x)) of the membrane values themselves."""
    block = ms.BasicBlockMS(1, 2, stride=2).double().eval()
    set_bn(block.bn2.bn, [0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0])
    conv, bn = block.downsample.layer.module, block.downsample.bn.bn
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -0.5]).view(2, 1, 1, 1))
    set_bn(bn, [0.1, -0.1], [4.0, 0.5], [1.0, 2.0], [0.3, 0.0])
    x = np.array([[[0.3, -1.2], [0.8, 2.5]], [[-0.7, 0.1], [1.9, 0.0]], [[1.25, 5.0], [-3.0, 0.4]]])
    x = x.reshape(1, 3, 1, 2, 2)
    expected = bn_np(np.array([2.0, -0.5]).reshape(1, 1, 2, 1, 1) * x[..., :1, :1], bn, 2)
    with torch.no_grad():
        out = block(torch.tensor(x)).numpy()
    assert out.shape == (1, 3, 2, 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_imagenet_block_time_first():
    """BasicBlock18 on [T, N, C, H, W] with LIF decay 0.25, threshold 0.5 along dim 0; fresh blocks are the identity
    (BN2 weight starts at 0, as the official TDBN-zero init)."""
    block = ms.BasicBlock18(1, 1).double().eval()
    x = torch.tensor([[0.3, 0.7], [0.3, -0.2], [0.3, 0.1]], dtype=torch.float64).view(3, 2, 1, 1, 1)
    with torch.no_grad():
        assert torch.equal(block(x), x)
        block.conv1.weight.zero_()
        block.conv1.weight[0, 0, 1, 1] = 1.0
        block.conv2.weight.zero_()
        block.conv2.weight[0, 0, 1, 1] = 1.0
    set_bn(block.bn1.bn, [0.0], [1.0], [1.0], [0.0])
    set_bn(block.bn2.bn, [0.0], [1.0], [1.0], [0.0])
    s1 = lif_np(x.numpy(), 0.25, 0.5, axis=0)  # sample 0 (constant 0.3): 0.3, 0.375, 0.39375 never fires
    expected = bn_np(lif_np(bn_np(s1, block.bn1.bn, 2), 0.25, 0.5, axis=0), block.bn2.bn, 2) + x.numpy()
    with torch.no_grad():
        out = block(x).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    assert s1[:, 0].sum() == 0 and s1[:, 1].sum() == 1  # over time (dim 0), not over the batch


# ----------------------------------------------------------------------------------------- whole networks


def test_cifar_forward_one_sample(cifar):
    image = torch.rand(1, 3, 32, 32)
    seen = {}
    hooks = [cifar.encoding.register_forward_hook(lambda m, i, o: seen.update(enc=o)),
             cifar.layer1.register_forward_pre_hook(lambda m, i: seen.update(stream=i[0]))]
    try:
        with torch.no_grad():
            out = cifar(image)
    finally:
        for h in hooks:
            h.remove()
    assert image.shape == (1, 3, 32, 32)  # the official code unsqueezes the caller's tensor in place; we don't
    assert out.shape == (1, 6, 10) and torch.isfinite(out).all()
    assert seen["stream"] is seen["enc"] and seen["enc"].shape == (1, 6, 64, 32, 32)
    assert ((seen["enc"] > 0) & (seen["enc"] < 1)).any()  # the backbone starts from graded GAC output


def test_imagenet_forward_layout(imagenet18):
    """[N, 3, H, W] -> [N, T, 1000]; time is internal dim 0, so a sample's output does not depend on its batch."""
    torch.manual_seed(3)
    imagenet18 = copy.deepcopy(imagenet18)
    with torch.no_grad():  # the official init zeroes every residual branch; open them so spikes reach the head
        for m in imagenet18.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(0.0, 0.3)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = imagenet18(images)
        alone = imagenet18(images[1:])
    assert out.shape == (2, 4, 1000)
    torch.testing.assert_close(out[1:], alone)
    assert not torch.allclose(out[:, 0], out[:, 1])  # the neurons make the steps differ


def test_tiny_demo_model():
    torch.manual_seed(0)
    model = ms.gac_msresnet_tiny()
    assert (model.timesteps, model.input_shape) == (4, (1, 8, 8))
    assert n_params(model) < 100_000
    blocks = [m for m in model.modules() if isinstance(m, ms.BasicBlockMS)]
    assert len(blocks) == 2 and blocks[0].downsample is None and blocks[1].downsample is not None
    assert isinstance(model.encoding, ms.GAC)
    images = torch.rand(3, 1, 8, 8)
    out = model(images)
    assert out.shape == (3, 4, 10)
    out.mean(1).sum().backward()
    assert model.encoding.SCA.sharedMLP[0].weight.grad.abs().sum() > 0
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images)[2:], model(images[2:]))
