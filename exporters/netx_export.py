"""A sequential chip segment as a lava-dl netx `.net` file (`chip/<segment>.net`), as netx 0.6.0 reads it.

Input: the chip segment spec of `lava_spec.chip_segment_spec` (the exact integer form). Output: an HDF5 file

    /layer/0          type [b'input'], shape (C, H, W) or (F,)      no `neuron`: netx only takes the input shape
    /layer/<i>        one block per synapse + neuron pair, in chain order:
        conv          type [b'conv'], shape (C, H, W), weight (Cout, Cin/g, kH, kW) (torch layout; netx flips it),
                      stride, padding, dilation (H, W), groups, optional bias, neuron/
        flatten       type [b'flatten'] before a dense that reads a (C, H, W) layer (netx flattens in C, H, W order)
        dense         type [b'dense'], shape (out,), weight (out, in), optional bias, neuron/
        neuron/       type b'CUBA', iDecay = du + 1 (netx subtracts 1), vDecay = dv, vThMant = vth,
                      refDelay 1, gradedSpike False (netx ignores the last two; slayer writes them)
    root attributes   the `hdf5.Network` keyword arguments that make the file run as our simulator does
                      (`input_message_bits`, `reset_interval`, `reset_offset`) and the segment name;
                      layer attributes name the snn2hw nodes of each block

A segment is *sequential* (netx has no branches or sums of synapses) when it has one input (spikes or graded
payloads), every synapse is a conv or dense feeding exactly one LIF that no other synapse feeds, each node feeds
the next one only, and its only output is the last LIF. netx expresses everything in such a chain
exactly except biases: netx sets `bias_exp = 6`, so our effective bias `bias_mant << bias_exp` is exact only where
it is a multiple of 64; elsewhere we write the nearest multiple, and :func:`write_netx` reports per layer what
is exact. Dense weights go through netx's `optimize_weight_bits` and Lava's Dense truncation; we check that this
round trip is lossless (it is for every weight matrix our quantizer produces).

Loading and running (Lava environment):

    net = netx.hdf5.Network(path, input_message_bits=m, reset_interval=T, reset_offset=1)
    RingBuffer(data).s_out.connect(net.inp)        # data (X, Y, C, steps) = our (C, H, W) transposed, or (N, steps)

* Graded input: netx passes `input_message_bits` to the first block's synapse (`num_message_bits`), so a source
  connected to `net.inp` delivers integers, not just spikes. The file cannot carry it (netx reads no such key),
  hence the root attribute. An `input` layer *with* a neuron would not help: netx makes it an `Input` block whose
  `inp` port is connected to nothing (its neuron is driven only through `net.in_layer.neuron.bias_mant`, one value
  per neuron held over the whole run, the way lava-dl's tinynet test drives it) and whose ProcessModel Lava cannot
  compile when a source is connected to `net.inp`. So the input layer here has no neuron, and the first real
  block receives the source directly, as in lava-dl's ntidigits test.
* Alignment: every netx block is a synapse (one step of delay, like Lava's Dense/Conv) followed by its neuron, so
  block j (0-based, in `net.layers`) shows logical step t of a sample at Lava step t + j + 1: its depth in the
  spec. A run of N samples back to back takes N·T + depth(last) steps.
* Reset: `reset_interval=T, reset_offset=1` makes netx build LIFReset neurons with `reset_offset` 1 + 1 + j for
  block j (netx adds one for Lava's 1-based time and one per block), i.e. block j is zeroed at (0-based) Lava
  steps j + 1 + k·T: exactly when its first input of sample k arrives. So every sample starts from reset state,
  as in the simulator, and a neuron with a bias never integrates before its input arrives. (Offset 0 would zero
  each layer one step early; the tests see the difference.)
* Output: the chain's last LIF, `net.out`. A segment that ends in a relay neuron (a readout's graded spikes) or
  uses identity synapses is not a chain here: netx has no GradedVec neuron and no one-to-one synapse.
"""
from pathlib import Path
from typing import Optional

import h5py
import numpy as np

from ..files import atomic_path
from ..hardware_sims import loihi_formats as fmt
from ..hardware_sims.loihi_numerics import effective_bias, effective_dense_weights, netx_bias_mant

NETX_MIXED_MAX, NETX_MIXED_MIN = 127, -128  # optimize_weight_bits scales mixed-sign weights into [-128, 127]


def _chain(spec: dict) -> tuple[Optional[str], list[tuple[dict, dict, bool]]]:
    """→ (why the segment is not a netx chain or None, [(synapse, its LIF, flatten before)])."""
    if spec.get("format") != fmt.CHIP_SPEC_FORMAT:
        return f"unknown chip spec format {spec.get('format')!r}", []
    inputs = spec["inputs"]
    if len(inputs) != 1:
        return f"{len(inputs)} inputs (netx has one input port)", []
    nodes = spec["nodes"]
    blocks = []
    prev = inputs[0]["name"]
    i = 0
    while i < len(nodes):
        flatten = nodes[i]["op"] == "flatten"
        if flatten:
            if nodes[i]["input"] != prev or i + 1 >= len(nodes) or nodes[i + 1]["op"] != "dense":
                return f"flatten {nodes[i]['name']} is not between a layer and a dense", []
            prev = nodes[i]["name"]
            i += 1
        syn = nodes[i]
        if syn["op"] not in ("conv", "dense"):
            return f"{syn['name']} ({syn['op']}) is not a conv or dense synapse where the chain needs one", []
        if syn["input"] != prev:
            return f"{syn['name']} reads {syn['input']}, not the previous layer {prev} (a branch)", []
        if syn["op"] == "dense" and len(syn["shape_in"]) != 1:
            return f"dense {syn['name']} reads a {len(syn['shape_in'])}-d tensor without a flatten", []
        lif = nodes[i + 1] if i + 1 < len(nodes) else None
        if lif is None or lif["op"] != "lif":
            return f"{syn['name']} feeds {lif['name'] + ' (' + lif['op'] + ')' if lif else 'nothing'}, not a LIF " \
                   "(netx's CUBA blocks)", []
        if lif["synapses"] != [syn["name"]]:
            return f"neuron {lif['name']} sums {len(lif['synapses'])} synapses", []
        blocks.append((syn, lif, flatten))
        prev = lif["name"]
        i += 2
    outputs = spec["outputs"]
    if [o["name"] for o in outputs] != [prev]:
        return f"the segment's outputs {[o['name'] for o in outputs]} are not just its last layer {prev}", []
    return None, blocks


def sequential_problem(spec: dict) -> Optional[str]:
    """Why netx cannot express this chip segment (one sentence), or None when it can."""
    return _chain(spec)[0]


def is_sequential(spec: dict) -> bool:
    """Whether the chip segment is a plain chain that a netx `.net` file expresses (see the module docstring)."""
    return sequential_problem(spec) is None


def off_grid_layers(spec: dict, arrays: dict[str, np.ndarray]) -> list[str]:
    """The LIF layers of a netx chain whose biases a `.net` cannot hold exactly (not multiples of 64)."""
    return [lif["name"] for _, lif, _ in _chain(spec)[1]
            if not _netx_bias(np.asarray(arrays[lif["bias_mant"]]), lif["bias_exp"])[1]["bias_exact"]]


def _netx_bias(bias_mant: np.ndarray, bias_exp: int) -> tuple[np.ndarray, dict]:
    """Our per-neuron bias → netx's bias (applied as `bias << 6`), nearest where not exact, and the verdict."""
    b = effective_bias(bias_mant, bias_exp)
    netx = netx_bias_mant(bias_mant, bias_exp)
    err = (netx << fmt.NETX_BIAS_EXP) - b
    note = {"bias_exact": bool(not err.any()), "bias_neurons_off": int(np.count_nonzero(err)),
            "bias_max_error": int(np.abs(err).max(initial=0))}
    if netx.size and (netx.min() < fmt.BIAS_MANT_MIN or netx.max() > fmt.BIAS_MANT_MAX):
        # Lava's simulator stores bias_mant in int16 and computes it; Loihi's 13-bit field could not hold it.
        note["bias_outside_13_bits"] = [int(netx.min()), int(netx.max())]
    return netx, note


def dense_weight_format(weight: np.ndarray) -> tuple[np.ndarray, int, int]:
    """netx 0.6.0's `optimize_weight_bits` (utils.py), what netx hands Lava's Dense for integer weights `w`
    (out, in): mixed-sign weights clipped to [-256, 254]; scale = the largest factor keeping them within 127/-128
    (mixed), 255 (excitatory) or -256 (inhibitory); s = floor(log2 scale) (+1 if mixed); 2^n the largest power
    (≤ 2^8) dividing every weight, n reduced by 1 if mixed. → (w << s, num_weight_bits = 8 - s - n,
    weight_exp = -s). netx does not pass its sign mode on: Lava's Dense decides it from the shifted weights. Raises
    ValueError where netx cannot scale: all weights zero, or weights beyond 8 bits (a negative shift)."""
    w = weight.astype(np.int64)
    if (w.max() > fmt.WEIGHT_GRID_MAX and w.min() < 0) or (w.min() < fmt.WEIGHT_MIN_MIXED and w.max() > 0):
        w = np.clip(w, fmt.WEIGHT_MIN_MIXED, fmt.WEIGHT_GRID_MAX)
    high, low = int(w.max()), int(w.min())
    signed = int(low < 0 <= high)
    if signed:
        scale = min(NETX_MIXED_MAX / high if high else np.inf, NETX_MIXED_MIN / low)
    else:
        scale = fmt.WEIGHT_MAX / high if low >= 0 and high else fmt.WEIGHT_MIN_MIXED / low if high < 0 else np.inf
    if not np.isfinite(scale):
        raise ValueError("all its weights are zero, which netx cannot scale")
    shift = int(np.floor(np.log2(scale))) + signed
    if shift < 0:
        raise ValueError("its weights exceed 8 bits, which netx would shift by a negative count")
    n = next((k for k in range(fmt.MAX_NUM_WEIGHT_BITS, 0, -1) if not (w % (1 << k)).any()), 0) - signed
    return w << shift, fmt.MAX_NUM_WEIGHT_BITS - shift - n, -shift


def _netx_dense_exact(w: np.ndarray) -> bool:
    """Whether netx 0.6.0 + Lava's fixed Dense apply exactly our dense weights `w` (out, in): netx hands Lava
    `w << s` (`dense_weight_format`), Lava's Dense clips/truncates them (`effective_dense_weights`) and shifts each
    accumulation right by s. That is our accumulation for every input iff the effective weights are `w << s`."""
    w = w.astype(np.int64)
    try:
        shifted, bits, exp = dense_weight_format(w)
        return bool(np.array_equal(effective_dense_weights(shifted, bits), w << -exp))
    except ValueError:  # netx cannot scale them, or a weight bit count Lava cannot apply
        return False


def _write_neuron(group: h5py.Group, params: dict) -> None:
    group.create_dataset("type", data=np.array([b"CUBA"]))
    for key, value in params.items():
        group.create_dataset(key, data=np.int64(value))
    group.create_dataset("refDelay", data=np.int64(1))
    group.create_dataset("gradedSpike", data=False)


def _write_block(group: h5py.Group, syn: dict, lif: dict, arrays: dict) -> dict:
    """One netx block (synapse + neuron) → its per-layer note."""
    weight = np.asarray(arrays[syn["weight"]], dtype=np.int64)
    note = {"synapse": syn["name"], "neuron": lif["name"], "type": syn["op"], "depth": lif["depth"]}
    group.create_dataset("type", data=np.array([syn["op"].encode()]))
    group.create_dataset("shape", data=np.array(syn["shape"], dtype=np.int64))
    # float32 like slayer's exports; netx truncates with .astype(int), exact for our 8-bit integers
    group.create_dataset("weight", data=weight.astype(np.float32))
    if syn["op"] == "conv":
        for key in ("stride", "padding", "dilation"):
            group.create_dataset(key, data=np.array(syn[key], dtype=np.int64))
        group.create_dataset("groups", data=np.int64(syn["groups"]))
        note["weights_exact"] = True  # netx hands conv weights to Lava's Conv unchanged
    else:
        note["weights_exact"] = _netx_dense_exact(weight)
    _write_neuron(group.create_group("neuron"), {"iDecay": lif["du"] + 1, "vDecay": lif["dv"], "vThMant": lif["vth"]})
    bias, bias_note = _netx_bias(np.asarray(arrays[lif["bias_mant"]]), lif["bias_exp"])
    note.update(bias_note)
    if bias.any():
        if syn["op"] == "conv":
            per_channel = bias.reshape(bias.shape[0], -1)
            # netx broadcasts a (C,) bias over the layer; a per-neuron one must be in its (X, Y, C) order
            bias = per_channel[:, 0] if (per_channel == per_channel[:, :1]).all() else bias.transpose(2, 1, 0)
        group.create_dataset("bias", data=bias.astype(np.float32))
    note["bit_exact"] = bool(note["weights_exact"] and note["bias_exact"])
    group.attrs["snn2hw_synapse"] = syn["name"]
    group.attrs["snn2hw_neuron"] = note["neuron"]
    group.attrs["bit_exact"] = note["bit_exact"]
    return note


def write_netx(spec: dict, arrays: dict[str, np.ndarray], path) -> dict:
    """Write a sequential chip segment as a netx `.net` file, atomically (temp file + rename).

    Returns {"file", "segment", "bit_exact", "load" (the `hdf5.Network` keyword arguments), "input" (the spec
    input; the data for `net.inp`), "output" (the spec output and how to read it), "layers" (per netx block in
    `net.layers` order: synapse, neuron, type, depth, weights_exact, bias_exact, bias_neurons_off,
    bias_max_error [in units of the effective bias, i.e. v's LSB], bit_exact, and for a readout how to read it)}.
    Raises ValueError (naming the reason) for a segment netx cannot express."""
    problem, blocks = _chain(spec)
    if problem:
        raise ValueError(f"chip segment {spec.get('segment')}: not expressible in netx: {problem}")
    path = Path(path)
    inp = spec["inputs"][0]
    load = {"input_message_bits": int(blocks[0][0]["num_message_bits"]),
            "reset_interval": int(spec["timesteps"]), "reset_offset": 1}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layer")
        first = layers.create_group("0")
        first.create_dataset("type", data=np.array([b"input"]))
        first.create_dataset("shape", data=np.array(inp["shape"], dtype=np.int64))
        notes, index = [], 1
        for syn, lif, flatten in blocks:
            if flatten:
                layers.create_group(str(index)).create_dataset("type", data=np.array([b"flatten"]))
                index += 1
            notes.append(_write_block(layers.create_group(str(index)), syn, lif, arrays))
            index += 1
        f.attrs["snn2hw_segment"] = spec["segment"]
        for key, value in load.items():
            f.attrs[key] = value
    output = {**spec["outputs"][0], "read": "net.out (spikes)"}
    return {"file": str(path), "segment": spec["segment"], "bit_exact": all(n["bit_exact"] for n in notes),
            "load": load, "input": inp, "output": output, "layers": notes}
