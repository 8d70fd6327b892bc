"""Reading a lava-dl `.net` file (slayer's `export_hdf5`, the format Loihi 2 users run with netx) into the blocks
netx builds from it, as the Lava processes' parameters: what `hdf5.Network` would hand to Lava, in snn2hw's layout.

A `.net` is a chain: `layer/<i>` for i = 0, 1, ... holds a `type` (input, conv, flatten, dense) and its parameters.
Each block is a synapse (none for the input layer) followed by a neuron, as netx 0.6.0 maps it
(lava-dl `src/lava/lib/dl/netx/hdf5.py`, `utils.py`, read at lava-nc/lava-dl d825ac5):

    neuron      CUBA: LIF (LIFReset with a reset interval): vth = vThMant, du = iDecay - 1, dv = vDecay,
                bias_exp = 6, bias_mant = the layer's `bias` (per channel or per neuron), truncated to an integer.
                SDNN: Delta in an input layer, Sigma in a `sigma_output` layer, else SigmaDelta (ReLU, whatever the
                file's `activation`: netx passes none); vth = vThMant and bias as above, both scaled by Lava by
                2^(spike_exp + state_exp) = 2^12; graded spikes of `messageBits` (16 if absent); no reset
    input       with a neuron: a neuron without a synapse; `net.inp` feeds its `a_in` directly; a LIF's bias is 0
                unless the caller sets `bias_mant` (lava-dl's hardware tests put the image there: one frame held for
                every step); an SDNN input (Delta) takes values at every step. Without a neuron: only the input's
                shape; `net.inp` feeds the first block's synapse, with the `input_message_bits` netx is given (0:
                spikes; snn2hw's own .net files record theirs as a root attribute)
    conv        Lava Conv with the file's (Cout, Cin/g, kH, kW) weights truncated to integers; stride, padding,
                dilation in (H, W) order; no weight_exp (Lava's Conv ignores it)
    flatten     the next dense reads the previous block's spikes flattened in (C, H, W) order
    dense       Lava Dense with netx's `optimize_weight_bits` of the integer weights: w << s, num_weight_bits and
                weight_exp = -s (`exporters.netx_export.dense_weight_format`); Lava decides the sign mode. With a
                `delay` (per synapse, per output or per input): a DelayDense, delays clamped to 0..62 (a delay d
                reaches the neuron d + 1 steps later). A conv's delays netx ignores: refused
Shapes are (C, H, W) or (F,), the file's own order (netx reverses them to Lava's (X, Y, Z)). Blocks are named
`layer<i>` after their index in the file. What netx itself cannot run, or snn2hw does not run yet, is refused in one
sentence naming the layer.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from . import ir
from .errors import UserError
from .exporters.netx_export import dense_weight_format
from .hardware_sims import loihi_formats as fmt

CUBA_TYPES = ("CUBA", "LOIHI")


@dataclass
class NetxBlock:
    """One netx block: `op` input | conv | dense, its synapse's parameters and its neuron's. `neuron`: cuba (LIF:
    du, dv, vth, bias_mant · 2^bias_exp), or an SDNN neuron — delta (an input layer: Delta), sigma_delta
    (SigmaDelta with ReLU, bias_mant its bias), sigma (a `sigma_output` layer: Sigma) — whose vth and bias Lava scales
    by 2^(NETX_SPIKE_EXP + NETX_STATE_EXP); `message_bits`: 0 for binary spikes, else the graded payload's bits."""
    name: str
    op: str
    shape: tuple  # the neurons: (C, H, W) or (F,)
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray  # per neuron, `shape`
    bias_exp: int = fmt.NETX_BIAS_EXP
    neuron: str = "cuba"
    message_bits: int = 0
    weight: np.ndarray | None = None  # conv: (Cout, Cin/g, kH, kW); dense: (out, in) as netx hands it to Lava
    conv: dict = field(default_factory=dict)  # stride, padding, dilation (H, W), groups
    num_weight_bits: int = fmt.DEFAULT_NUM_WEIGHT_BITS  # dense
    weight_exp: int = fmt.DEFAULT_WEIGHT_EXP  # dense
    flatten_input: bool = False  # dense after a flatten layer
    delays: np.ndarray | None = None  # dense: (out, in) synaptic delays, 0..NETX_MAX_DELAY (a DelayDense)


@dataclass
class NetxNetwork:
    path: Path
    blocks: list[NetxBlock]
    input_shape: tuple  # what `net.inp` takes: the input neurons, or the first synapse's input
    attributes: dict  # the file's root attributes (snn2hw's .net files: the hdf5.Network arguments they run with)

    @property
    def input_neurons(self) -> bool:
        """Whether the first block is an input neuron layer."""
        return self.blocks[0].op == "input"

    @property
    def input_kind(self) -> str:
        """What `--input` holds: `bias` of LIF input neurons, one frame per sample (as lava-dl's hardware tests
        drive PilotNet); `values` an SDNN input layer (Delta) receives at each step; or `spikes` into the first
        synapse at each step."""
        if not self.input_neurons:
            return "spikes"
        return "bias" if self.blocks[0].neuron == "cuba" else "values"


def _text(group, key: str) -> str:
    value = group[key][()]
    value = value[0] if getattr(value, "shape", ()) else value
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _neuron(path: Path, name: str, layer, shape: tuple, input_layer: bool = False) -> dict:
    if "neuron" not in layer:
        raise UserError(f"{path}: layer {name} has no neuron; snn2hw runs netx blocks with a neuron only.")
    neuron = layer["neuron"]
    kind = _text(neuron, "type")
    bits = int(neuron["messageBits"][()]) if "messageBits" in neuron else None
    bias = np.zeros(shape, np.int64)
    if "bias" in layer and not input_layer:  # an input layer's `bias` is netx's unused input transform
        b = layer["bias"][()].astype(np.int64)  # netx reads it `.astype(int)`: truncation toward zero
        b = b.reshape(-1, *([1] * (len(shape) - 1))) if b.size == shape[0] else b.reshape(shape)
        bias = np.broadcast_to(b, shape).copy()
    if kind in CUBA_TYPES:
        if bits:
            raise UserError(f"{path}: layer {name} sends graded spikes ({bits} message bits) from LIF neurons; "
                            "snn2hw runs binary LIF spikes and SDNN graded spikes only so far.")
        return {"du": int(neuron["iDecay"][()]) - 1, "dv": int(neuron["vDecay"][()]),
                "vth": int(neuron["vThMant"][()]), "bias_mant": bias}
    if kind == "SDNN":  # netx ignores the file's `activation`: SigmaDelta runs its default, ReLU
        role = "delta" if input_layer else "sigma" if "sigma_output" in neuron else "sigma_delta"
        if role == "sigma" and "bias" in layer:
            raise UserError(f"{path}: layer {name} is a sigma output with a bias, which netx cannot build.")
        return {"du": 0, "dv": 0, "vth": int(neuron["vThMant"][()]) if role != "sigma" else 0, "bias_mant": bias,
                "neuron": role, "message_bits": fmt.NETX_SDNN_MESSAGE_BITS if bits is None else bits}
    raise UserError(f"{path}: layer {name} has {kind} neurons; snn2hw runs CUBA (LIF) and SDNN neurons.")


def _dense_delays(path: Path, name: str, delay, weight_shape: tuple) -> np.ndarray:
    """A dense layer's delays as netx builds its DelayDense: (out, in), per output or per input if one-dimensional,
    clamped to 0..62 and truncated to integers (hdf5.py create_dense)."""
    delay = np.asarray(delay, np.float64)
    out, inp = weight_shape
    if delay.shape == (out, inp):
        full = delay
    elif delay.shape == (out,):
        full = np.repeat(delay[:, None], inp, axis=1)
    elif delay.shape == (inp,):
        full = np.repeat(delay[None, :], out, axis=0)
    else:
        raise UserError(f"{path}: layer {name} has delays of shape {delay.shape}, which fit neither its "
                        f"{out} outputs nor its {inp} inputs.")
    if not np.isfinite(full).all() or full.min() < 0:
        raise UserError(f"{path}: layer {name} has negative or non-finite delays.")
    return np.clip(full, 0, fmt.NETX_MAX_DELAY).astype(np.int64)


def read_netx(path) -> NetxNetwork:
    """The blocks of a `.net` file, checked: an unreadable file, an unknown layer type or a feature snn2hw does not
    run is one sentence naming the file and layer."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable lava-dl .net (HDF5) file ({type(e).__name__}).") from None
    with f:
        if "layer" not in f or "0" not in f["layer"]:
            raise UserError(f"{path} has no layer/0: not a lava-dl .net network.")
        layers = f["layer"]
        if _text(layers["0"], "type") != "input":
            raise UserError(f"{path}: layer0 is of type {_text(layers['0'], 'type')!r}, not an input layer.")
        blocks, flatten = [], False
        for i in range(len(layers)):
            name, layer = f"layer{i}", layers[str(i)]
            kind = _text(layer, "type")
            shape = tuple(int(s) for s in np.asarray(layer["shape"][()]).ravel()) if "shape" in layer else ()
            if kind == "flatten":
                flatten = True
                continue
            if "delay" in layer and kind != "dense":
                raise UserError(f"{path}: layer {name} ({kind}) has synaptic delays, which netx ignores for a "
                                f"{kind} layer; snn2hw refuses rather than run something other than the file says.")
            if kind == "input":
                if i != 0:
                    raise UserError(f"{path}: layer {name} is an input layer after the first.")
                input_shape = shape
                if "neuron" in layer:
                    blocks.append(NetxBlock(name, "input", shape, **_neuron(path, name, layer, shape, input_layer=True)))
            elif kind == "conv":
                weight = layer["weight"][()].astype(np.int64)
                weight = weight.reshape(weight.shape[:4])
                blocks.append(NetxBlock(name, "conv", shape, **_neuron(path, name, layer, shape), weight=weight,
                                        conv={"stride": fmt.hw_pair(layer["stride"][()]),
                                              "padding": fmt.hw_pair(layer["padding"][()]),
                                              "dilation": fmt.hw_pair(layer["dilation"][()]),
                                              "groups": int(layer["groups"][()])}))
            elif kind == "dense":
                out = int(np.prod(shape))
                shape = (out,)
                weight = layer["weight"][()].astype(np.int64).reshape(out, -1)
                try:
                    w, bits, exp = dense_weight_format(weight)
                except ValueError as e:
                    raise UserError(f"{path}: layer {name}: {e}.") from None
                delays = _dense_delays(path, name, layer["delay"][()], weight.shape) if "delay" in layer else None
                blocks.append(NetxBlock(name, "dense", shape, **_neuron(path, name, layer, shape), weight=w,
                                        num_weight_bits=bits, weight_exp=exp, flatten_input=flatten, delays=delays))
                flatten = False
            else:
                raise UserError(f"{path}: layer {name} is of type {kind!r}, which netx does not run "
                                "(it runs input, conv, flatten and dense layers).")
        attributes = {k: v.item() if isinstance(v, np.generic) else v for k, v in f.attrs.items()}
    if not blocks:
        raise UserError(f"{path}: no block follows the input layer.")
    return NetxNetwork(path, blocks, input_shape, attributes)


def as_built(net: NetxNetwork, count: int = 0, reset_offset: int | None = None) -> NetxNetwork:
    """The network as netx builds it with `skip_layers=count` and `reset_offset` (None: the file's, or 0): without
    the file's first `count` layers, `net.inp` feeding the first kept block's synapse with the skipped layers'
    message bits (lava-dl's hardware tests run PilotNet so, the input layer's output fed in from outside)."""
    if reset_offset is not None:
        net = NetxNetwork(net.path, net.blocks, net.input_shape, {**net.attributes, "reset_offset": reset_offset})
    if count == 0:
        return net
    kept = [b for b in net.blocks if int(b.name.removeprefix("layer")) >= count]
    skipped = net.blocks[:len(net.blocks) - len(kept)]
    if not kept or not skipped:
        raise UserError(f"--skip-layers {count}: {net.path} would run {'no block' if not kept else 'all its blocks'}; "
                        f"it has {len(net.blocks)} blocks in layer0..{net.blocks[-1].name.removeprefix('layer')}.")
    if kept[0].flatten_input:
        raise UserError(f"--skip-layers {count}: {net.path}'s first kept block reads a flattened map; skip up to a "
                        "conv or a dense after the flatten's input instead.")
    last = skipped[-1]
    return NetxNetwork(net.path, kept, tuple(last.shape), {**net.attributes, "skip_layers": count,
                                                            "input_message_bits": last.message_bits})


def netx_graph(net: NetxNetwork, timesteps: int) -> ir.Graph:
    """The network as snn2hw's graph, deployed as netx deploys it: everything on the chip but the input.

    Per block: its synapse `<layer>.conv` / `<layer>.dense` (the integer weights as the chip's, in `quant`), a
    `<layer>.flatten` before a dense that reads a flattened map, and its neurons `<layer>` (the input neurons too).
    The host writes the LIF input neurons' bias once per sample (cut kind `bias`), or sends values or spikes every
    step; the last block's spikes go to the host every step."""
    kind = {"bias": "analog", "values": "graded", "spikes": "binary"}[net.input_kind]
    nodes = {"input": ir.Input("input", [], tuple(net.input_shape), kind, "host", timesteps=timesteps,
                               source_kind=kind, repeat_over_t=net.input_kind == "bias")}
    prev = "input"
    for b in net.blocks:
        if b.op != "input":
            if b.flatten_input:
                nodes[f"{b.name}.flatten"] = ir.Flatten(f"{b.name}.flatten", [prev], (math.prod(nodes[prev].shape),),
                                                        nodes[prev].kind, "chip")
                prev = f"{b.name}.flatten"
            synapse = f"{b.name}.{b.op}"
            weight = torch.as_tensor(b.weight, dtype=torch.float64)
            common = dict(name=synapse, inputs=[prev], shape=b.shape, kind="analog", placement="chip",
                          quant={"weight": b.weight}, weight=weight)
            nodes[synapse] = ir.Conv2d(**common, stride=b.conv["stride"], padding=b.conv["padding"],
                                       dilation=b.conv["dilation"], groups=b.conv["groups"]) \
                if b.op == "conv" else ir.Linear(**common)
            prev = synapse
        # SDNN neurons are laid out and counted as neurons too; their graded spikes cost MACs downstream
        nodes[b.name] = ir.LIF(b.name, [prev], tuple(b.shape), "binary" if b.neuron == "cuba" else "graded", "chip")
        prev = b.name
    names = list(nodes)
    first = net.blocks[0].name if net.input_neurons else names[1]
    values = math.prod(net.input_shape)
    cuts = [{"tensor": "input", "to": first, "from_segment": "host0", "to_segment": "chip1",
             "direction": "host->chip", "shape": list(net.input_shape),
             "kind": "bias" if net.input_kind == "bias" else kind,
             "values_per_step": values, "waits_for_window": False},
            {"tensor": prev, "to": "host", "from_segment": "chip1", "to_segment": "host",
             "direction": "chip->host", "shape": list(nodes[prev].shape), "kind": nodes[prev].kind,
             "values_per_step": math.prod(nodes[prev].shape), "waits_for_window": False}]
    return ir.Graph(nodes, timesteps, tuple(net.input_shape), arch=net.path.name,
                    segments=[{"name": "host0", "placement": "host", "nodes": ["input"]},
                              {"name": "chip1", "placement": "chip", "nodes": names[1:]}], cuts=cuts)
