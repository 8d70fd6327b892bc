"""From a torch model of the zoo to the graph IR (`convert`).

One small handler per module type emits IR nodes and returns the name of the node holding its output. Containers
of the source models (SpikingJelly's SeqToANN, GAC's TdLayer, ...) only apply their contents to every time step,
which every IR node already does, so they unwrap. Anything without a handler stops the conversion with its module
path and type. A NIR graph's network (`NIRNet`) converts node by node, its IR nodes named after the NIR nodes.
"""
from torch import nn

from . import ir
from .errors import UserError
from .models import msresnet, nir_net, tcja
from .models.neurons import LeakyLIF, SpikingJellyLIF
from .models.zoo import get_arch


class _Builder:
    def __init__(self):
        self.nodes: dict[str, ir.Node] = {}

    def add(self, node: ir.Node) -> str:
        self.nodes[node.name] = node
        return node.name

    def module(self, path: str, m: nn.Module, x: str) -> str:
        """Emit the nodes of module `m` (at module path `path`) applied to node `x`; → its output node."""
        for types, handler in _HANDLERS:
            if isinstance(m, types):
                return handler(self, path, m, x)
        raise UserError(f"module {path or '<root>'} ({type(m).__name__}) is not supported by snn2hw's converter.")

    def children(self, path: str, m: nn.Module, x: str) -> str:
        # _modules, not named_children(): that skips a module seen before, and the TET VGGs reuse one pool
        for name, child in m._modules.items():
            x = self.module(f"{path}.{name}" if path else name, child, x)
        return x


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv(b, path, m: nn.Conv2d, x):
    return b.add(ir.Conv2d(path, [x], weight=m.weight.detach().clone(),
                           bias=None if m.bias is None else m.bias.detach().clone(), stride=_pair(m.stride),
                           padding=m.padding if isinstance(m.padding, str) else _pair(m.padding),
                           dilation=_pair(m.dilation), groups=m.groups))


def _linear(b, path, m: nn.Linear, x):
    return b.add(ir.Linear(path, [x], weight=m.weight.detach().clone(),
                           bias=None if m.bias is None else m.bias.detach().clone()))


def _batchnorm(b, path, m: nn.BatchNorm2d, x):
    return b.add(ir.BatchNorm(path, [x], mean=m.running_mean.clone(), var=m.running_var.clone(),
                              weight=m.weight.detach().clone(), bias=m.bias.detach().clone(), eps=m.eps))


def _lif(b, path, m, x):
    if isinstance(m, SpikingJellyLIF):
        return b.add(ir.LIF(path, [x], decay=1.0 - 1.0 / m.tau, threshold=m.v_threshold, input_scale=1.0 / m.tau,
                            fire_at_threshold=True, tau=m.tau))
    return b.add(ir.LIF(path, [x], decay=m.decay, threshold=m.threshold))


def _maxpool(b, path, m: nn.MaxPool2d, x):
    return b.add(ir.MaxPool2d(path, [x], kernel_size=_pair(m.kernel_size), stride=_pair(m.stride or m.kernel_size),
                              padding=_pair(m.padding)))


def _avgpool(b, path, m, x):
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return b.add(ir.AvgPool2d(path, [x], output_size=_pair(m.output_size)))
    if _pair(m.padding) != (0, 0) or m.ceil_mode:
        raise UserError(f"module {path} (AvgPool2d) pads its input or rounds its output size up, which snn2hw's "
                        "AvgPool2d does not.")
    return b.add(ir.AvgPool2d(path, [x], kernel_size=_pair(m.kernel_size), stride=_pair(m.stride or m.kernel_size)))


def _flatten(b, path, m, x):
    return b.add(ir.Flatten(path, [x]))


def _identity(b, path, m, x):
    return x  # dropout is the identity at inference


def _tcja_gate(b, path, m, x):
    return b.add(ir.HostModule(path, [x], module=m, time_dim=1 if isinstance(m, tcja.TETTCJA) else 0))


def _tet_layer(b, path, m: tcja.TETLayer, x):
    return b.module(f"{path}.act", m.act, b.module(f"{path}.fwd", m.fwd, x))


def _td_layer(b, path, m: msresnet.TdLayer, x):
    x = b.module(f"{path}.layer.module", m.layer.module, x)
    return x if m.bn is None else b.module(f"{path}.bn", m.bn, x)


def _td_batchnorm(b, path, m, x):
    return _batchnorm(b, f"{path}.bn", m.bn, x)


def _ms_block(b, path, m, x):
    """out = BN2(conv2(LIF(BN1(conv1(LIF(x)))))) + shortcut(x), for both official block classes."""
    if isinstance(m, msresnet.BasicBlockMS):
        stages = [("lif1", m.lif1), ("conv1_s", m.conv1_s), ("lif2", m.lif2), ("conv2_s", m.conv2_s)]
        shortcut = ("downsample", m.downsample)
    else:
        stages = [("lif1", m.lif1), ("conv1", m.conv1), ("bn1", m.bn1), ("lif2", m.lif2), ("conv2", m.conv2),
                  ("bn2", m.bn2)]
        shortcut = ("shortcut", m.shortcut if len(m.shortcut) else None)
    y = x
    for name, child in stages:
        y = b.module(f"{path}.{name}", child, y)
    short = x if shortcut[1] is None else b.module(f"{path}.{shortcut[0]}", shortcut[1], x)
    return b.add(ir.Add(f"{path}.add", [y, short]))


# NIR's neurons as our LIF (v = decay v + input_scale x, hard reset to 0, one value per layer): the NIRNet coefficient
# behind each ir.LIF field, and the NIR parameter it comes from, for the refusals.
_NIR_PARAMS = {"tau_steps": "tau", "v_leak": "v_leak", "decay": "tau", "scale": "r", "leak": "v_leak",
               "current_decay": "tau_syn", "current_scale": "w_in", "v_threshold": "v_threshold",
               "v_reset": "v_reset", "threshold": "threshold"}


def _one_value(path, m, key) -> float:
    values = getattr(m, key).flatten()
    if not bool((values == values[0]).all()):
        raise UserError(f"{type(m).__name__} node {path}: its {_NIR_PARAMS[key]} differs between neurons, and "
                        "snn2hw's LIF has one value per layer (Loihi 2: one du, dv and vth per process).")
    return float(values[0])


def _nir_neuron(b, path, m, x):
    """NIR's IF, LIF and CubaLIF (models/nir_net.py) as ir.LIF, with the same float operations: SpikingJelly's
    order `v + (x - v) / tau` (ir.LIF's `tau`), else `v * decay + x * input_scale`. Refused where our LIF cannot
    compute the same: a reset or leak potential other than 0, a current that decays over steps, parameters that
    differ between neurons."""
    kind = type(m).__name__
    for key in ("v_reset", "v_leak" if getattr(m, "spikingjelly_order", False) else "leak"):
        if hasattr(m, key) and _one_value(path, m, key) != 0.0:
            raise UserError(f"{kind} node {path}: its {_NIR_PARAMS[key]} is not 0, and snn2hw's LIF leaks towards "
                            "and resets to 0.")
    threshold = _one_value(path, m, "v_threshold")
    if isinstance(m, nir_net.LIF) and m.spikingjelly_order:
        tau = _one_value(path, m, "tau_steps")
        return b.add(ir.LIF(path, [x], decay=1.0 - 1.0 / tau, threshold=threshold, input_scale=1.0 / tau, tau=tau))
    decay = 1.0 if isinstance(m, nir_net.IF) else _one_value(path, m, "decay")
    scale = _one_value(path, m, "scale")
    if isinstance(m, nir_net.CubaLIF):
        if _one_value(path, m, "current_decay") != 0.0:
            raise UserError(f"CubaLIF node {path}: its current decays over steps (tau_syn > dt), and snn2hw's LIF "
                            "keeps no current (Loihi's du = 4095).")
        # v = v * decay + (x * w) * s: one input scale computes the same float only if w or s is 1
        current_scale = _one_value(path, m, "current_scale")
        if current_scale != 1.0 and scale != 1.0:
            raise UserError(f"CubaLIF node {path}: both w_in dt/tau_syn ({current_scale:g}) and r dt/tau_mem "
                            f"({scale:g}) differ from 1, and snn2hw's LIF has one input scale.")
        scale = current_scale if scale == 1.0 else scale
    return b.add(ir.LIF(path, [x], decay=decay, threshold=threshold, input_scale=scale))


def _nir_threshold(b, path, m, x):
    """z = x > threshold is a LIF that forgets everything each step: decay 0, input scale 1."""
    return b.add(ir.LIF(path, [x], decay=0.0, threshold=_one_value(path, m, "threshold"), input_scale=1.0))


def _nir_scale(b, path, m, x):
    raise UserError(f"Scale node {path}: snn2hw's graph has no elementwise scale that computes it exactly; fold it "
                    "into the synapse next to it before exporting the graph.")


_HANDLERS = [
    (nir_net.NEURONS, _nir_neuron),
    (nir_net.Threshold, _nir_threshold),
    (nir_net.Scale, _nir_scale),
    ((SpikingJellyLIF, LeakyLIF), _lif),
    (nn.Conv2d, _conv),  # SeqConv2d too
    (nn.Linear, _linear),
    (nn.BatchNorm2d, _batchnorm),
    (nn.MaxPool2d, _maxpool),
    ((nn.AvgPool2d, nn.AdaptiveAvgPool2d), _avgpool),
    (nn.Flatten, _flatten),
    ((nn.Dropout, tcja.MultiStepDropout, nn.Identity), _identity),
    (tcja.TCJA, _tcja_gate),  # TETTCJA too
    (tcja.TETLayer, _tet_layer),
    (msresnet.TdLayer, _td_layer),
    (msresnet.TdBatchNorm, _td_batchnorm),
    (msresnet.SeqBatchNorm, _td_batchnorm),
    ((msresnet.BasicBlockMS, msresnet.BasicBlock18), _ms_block),
    ((nn.Sequential, msresnet.SeqToANN), lambda b, path, m, x: b.children(path, m, x)),  # tcja.SeqToANN is a Sequential
]


def _convert_tcja(model: tcja.TCJANet, b: _Builder) -> None:
    x = b.add(ir.Input("input", [], timesteps=model.timesteps, source_kind="graded"))  # event counts, [N, T, ...]
    x = b.module("conv", model.conv, x)
    x = b.module("fc", model.fc, x)
    if model.vote is not None:
        b.add(ir.Readout("output", [x], mode="vote", voters=model.vote.voters))
    else:
        b.add(ir.Readout("output", [x], mode="per_step_tn"))


def _convert_tet_vgg(model: tcja.TETVGG, b: _Builder, events: bool) -> None:
    x = b.add(ir.Input("input", [], timesteps=model.timesteps, source_kind="graded" if events else "analog"))
    x = b.module("features", model.features, x)
    x = b.add(ir.Flatten("flatten", [x]))
    for name in model.head:
        x = b.module(name, getattr(model, name), x)
    b.add(ir.Readout("output", [x], mode="per_step_nt"))


def _convert_msresnet(model, b: _Builder) -> None:
    x = b.add(ir.Input("input", [], timesteps=model.timesteps, repeat_over_t=True))
    cifar = isinstance(model, msresnet.MSResNetCifar)
    x = b.module("conv1_s" if cifar else "conv1", model.conv1_s if cifar else model.conv1, x)
    if model.encoding is not None:
        spikes = b.module("encoder_lif", model.encoder_lif, x)
        x = b.add(ir.HostModule("encoding", [x, spikes], module=model.encoding, time_dim=model.encoding.time_dim))
    stages = [f"layer{i}" for i in range(1, model.num_stages + 1)] if cifar else \
        [f"conv{i}_x" for i in range(2, 6)]
    for stage in stages:
        x = b.module(stage, getattr(model, stage), x)
    x = b.module("head_lif", model.head_lif, x)
    x = b.module("avgpool", model.avgpool, x)
    x = b.add(ir.Flatten("flatten", [x]))
    x = b.module("fc1", model.fc1, x)
    b.add(ir.Readout("output", [x], mode="per_step_nt"))


def _nir_sum(b: _Builder, name: str, sources: list[str]) -> str:
    """The value a NIR node reads: its one source, or the sum of its edges (`<node>.join`)."""
    return sources[0] if len(sources) == 1 else b.add(ir.Add(f"{name}.join", list(sources)))


def _convert_nir(model: nir_net.NIRNet, b: _Builder) -> None:
    # What the graph's input carries is unknown (pixels, event counts, spikes): analog keeps the first synapse on
    # the host, which is right for all three.
    b.add(ir.Input(model.input_name, [], timesteps=model.timesteps))
    for name, layer, sources in model.nodes():
        if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
            raise UserError(f"Flatten node {name}: it keeps some axes apart, and snn2hw's Flatten makes one vector.")
        b.module(name, layer, _nir_sum(b, name, sources))
    b.add(ir.Readout(model.output_name, [_nir_sum(b, model.output_name, model.output_sources)], mode="per_step_nt"))


def host_module_ops(module: nn.Module, shape: tuple, timesteps: int) -> tuple[int, int] | None:
    """(MACs, ACs) of one sample's whole window through a non-causal host module on inputs `[T, C, H, W]`; None for
    a module without a formula. Products and sigmoids count as MACs (one each: a lower bound for the sigmoid), sums,
    maxima and ReLUs as ACs.

    GAC (bollossom/GAC GAU.py; models/msresnet.py), r = T // ratio:
        TA   mean and max over C·H·W: 2·T·C·H·W ACs; shared MLP on both: 2·(T·r + r·T) MACs;
             2·r ReLU + T sum ACs
        SCA  two k×k 'same' convs C→C/ρ→C per step: T·(conv_a + conv_b) MACs (`ir.dense_conv_ops`);
             T·C/ρ·H·W ReLU ACs
        gate sigmoid(TA · SCA) · spikes: 3·T·C·H·W MACs (product, sigmoid, gating)
    TCJA (ridgerchu/TCJA src/layers.py; models/tcja.py):
        squeeze mean over H·W: T·C·H·W ACs; Conv1d T→T (k_t, along C) and C→C (k_c, along T), 'same':
        dense MACs; sigmoid(a · b): 2·T·C MACs; x · gate: T·C·H·W MACs
    """
    c, h, w = shape
    volume = timesteps * c * h * w
    if isinstance(module, msresnet.GAC):
        mlp_in, mlp_out = module.TA.sharedMLP[0], module.SCA.sharedMLP[0]
        hidden = mlp_in.out_channels
        sca = sum(_module_conv_ops(m, (h, w)) for m in module.SCA.sharedMLP if isinstance(m, nn.Conv2d))
        macs = timesteps * sca + 2 * 2 * timesteps * hidden + 3 * volume
        acs = 2 * volume + 2 * hidden + timesteps + timesteps * mlp_out.out_channels * h * w
        return macs, acs
    if isinstance(module, tcja.TCJA):
        convs = _module_conv_ops(module.temporal_conv, (c,)) + _module_conv_ops(module.conv_c, (timesteps,))
        return convs + 2 * timesteps * c + volume, volume
    return None


def _module_conv_ops(conv: nn.Module, in_sizes: tuple) -> int:
    return ir.dense_conv_ops(conv.in_channels, conv.out_channels, conv.groups, in_sizes, conv.kernel_size,
                             conv.stride, conv.padding, conv.dilation)


def convert(model: nn.Module, arch: str = "") -> ir.Graph:
    """The IR of a zoo model (in eval mode), with shapes and value kinds inferred, and each host module's op count
    (`host_module_ops`)."""
    if model.training:
        raise ValueError("convert a model in eval mode: BatchNorm must use its running statistics")
    b = _Builder()
    if isinstance(model, tcja.TCJANet):
        _convert_tcja(model, b)
    elif isinstance(model, tcja.TETVGG):
        _convert_tet_vgg(model, b, get_arch(arch).reads_events if arch else True)
    elif isinstance(model, (msresnet.MSResNetCifar, msresnet.MSResNetImageNet)):
        _convert_msresnet(model, b)
    elif isinstance(model, nir_net.NIRNet):
        _convert_nir(model, b)
    else:
        raise UserError(f"model {type(model).__name__} is not supported by snn2hw's converter (supported: the "
                        "TCJA and GAC/MS-ResNet networks of the zoo, and NIR graphs: a model of SpikingJelly or norse "
                        "neurons goes through its own NIR export with snn2hw.nir_import.from_module).")
    graph = ir.Graph(b.nodes, model.timesteps, tuple(model.input_shape), arch).infer()
    for node in graph.nodes.values():
        if isinstance(node, ir.HostModule):
            node.ops = host_module_ops(node.module, graph.nodes[node.inputs[0]].shape, graph.timesteps)
            node.module_type = type(node.module).__name__
    return graph
