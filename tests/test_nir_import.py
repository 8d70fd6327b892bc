"""Importing NIR graphs (nir_import.load_nir → NIRNet, arch nir): the float forward is NIR's equations, the IR graph
runs it bit for bit, and it compiles and runs in fixed point as the zoo's models do; what our LIF cannot compute
exactly is refused in one sentence naming the node."""
import json

import h5py
import nir
import numpy as np
import pytest
import torch

from snn2hw import ir
from snn2hw.checkpoint import file_kind, load_checkpoint
from snn2hw.compile import compile_model
from snn2hw.convert import convert
from snn2hw.errors import UserError
from snn2hw.hardware_sims.runner import run_fixed
from snn2hw.models.zoo import class_scores
from snn2hw.nir_import import load_nir, nir_model

# A power of two, so dt/tau and every product below are exact in float32 and float64 alike: the reference and the
# model then agree at every step, threshold ties included (a tie tests NIR's strict v > v_threshold).
DT = 2.0 ** -10
T = 6
RNG_SEED = 5


def _full(value, shape):
    return np.full(shape, value, dtype=np.float32)


def _dyadic(rng, shape, scale=8):
    """Weights on a grid of 1/scale (a quantized network's): sums of them are exact in float32."""
    return (rng.integers(-scale, scale + 1, shape) / scale).astype(np.float32)


def _conv(rng, cin, cout, hw, bias=True):
    return nir.Conv2d(input_shape=hw, weight=_dyadic(rng, (cout, cin, 3, 3)), stride=1, padding=1, dilation=1,
                      groups=1, bias=_dyadic(rng, cout, 4) if bias else np.zeros(cout, np.float32))


def _lif(shape, tau_steps, r=1.0, threshold=1.0, v_leak=0.0, v_reset=0.0):
    return nir.LIF(tau=_full(tau_steps * DT, shape), r=_full(r, shape), v_leak=_full(v_leak, shape),
                   v_threshold=_full(threshold, shape), v_reset=_full(v_reset, shape))


def conv_net(rng) -> nir.NIRGraph:
    """conv → LIF (r = 1: SpikingJelly's form) → sum-pool → flatten → affine → LIF (r = tau/dt: snntorch's form)."""
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 8, 8])}),
        "conv": _conv(rng, 2, 6, (8, 8)),
        "lif1": _lif((6, 8, 8), 2),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([6, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=_dyadic(rng, (10, 96)), bias=_dyadic(rng, 10, 4)),
        "lif2": _lif((10,), 4, r=4.0),
        "output": nir.Output(output_type={"output": np.array([10])}),
    }
    edges = [("input", "conv"), ("conv", "lif1"), ("lif1", "pool"), ("pool", "flat"), ("flat", "fc"),
             ("fc", "lif2"), ("lif2", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": DT}, type_check=False)


def residual_net(rng) -> nir.NIRGraph:
    """conv → IF → conv → CubaLIF → conv, joined with the IF's spikes (a residual add) into a LIF → avg-pool →
    flatten → linear → Threshold. Records no dt."""
    shape = (4, 8, 8)
    nodes = {
        "x": nir.Input(input_type={"input": np.array([2, 8, 8])}),
        "conv0": _conv(rng, 2, 4, (8, 8)),
        "if0": nir.IF(r=_full(1 / DT, shape), v_threshold=_full(1.0, shape), v_reset=_full(0.0, shape)),
        "conv1": _conv(rng, 4, 4, (8, 8)),
        "cuba": nir.CubaLIF(tau_syn=_full(DT, shape), tau_mem=_full(2 * DT, shape), r=_full(2.0, shape),
                            v_leak=_full(0.0, shape), v_threshold=_full(0.5, shape), v_reset=_full(0.0, shape),
                            w_in=_full(1.0, shape)),
        "conv2": _conv(rng, 4, 4, (8, 8), bias=False),
        "lif": _lif(shape, 2),
        "pool": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Linear(weight=_dyadic(rng, (5, 64))),
        "spike": nir.Threshold(threshold=_full(0.25, (5,))),
        "y": nir.Output(output_type={"output": np.array([5])}),
    }
    edges = [("x", "conv0"), ("conv0", "if0"), ("if0", "conv1"), ("conv1", "cuba"), ("cuba", "conv2"),
             ("conv2", "lif"), ("if0", "lif"), ("lif", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "spike"),
             ("spike", "y")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


# ---------------------------------------------------------------------------------------------------------------------
# The reference: NIR's equations, forward Euler with step dt, written out in numpy (float64), one node at a time.
# ---------------------------------------------------------------------------------------------------------------------

def _ref_conv(node, x):  # x [N, C, H, W]
    w, p = node.weight.astype(np.float64), int(np.atleast_1d(node.padding)[0])
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    kh, kw = w.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], xp.shape[2] - kh + 1, xp.shape[3] - kw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = np.einsum("ncuv,ocuv->no", xp[:, :, i:i + kh, j:j + kw], w)
    return out + node.bias.reshape(-1, 1, 1)


def _ref_pool(x, k, mean):
    n, c, h, w = x.shape
    sums = x.reshape(n, c, h // k, k, w // k, k).sum(axis=(3, 5))
    return sums / (k * k) if mean else sums


def _ref_neuron(node, xs):
    """xs [T, N, ...] → spikes, integrating NIR's ODE by forward Euler."""
    v, current, out = np.zeros_like(xs[0]), np.zeros_like(xs[0]), []
    for x in xs:
        if isinstance(node, nir.LIF):
            v = v + DT / node.tau * (node.v_leak - v + node.r * x)
        elif isinstance(node, nir.IF):
            v = v + DT * node.r * x
        else:  # CubaLIF, the current first
            current = current + DT / node.tau_syn * (node.w_in * x - current)
            v = v + DT / node.tau_mem * (node.v_leak - v + node.r * current)
        z = v > node.v_threshold
        v = np.where(z, node.v_reset, v)
        out.append(z.astype(np.float64))
    return np.stack(out)


def reference(graph: nir.NIRGraph, x: np.ndarray) -> np.ndarray:
    """The graph on x [N, T, ...] → its Output per step [N, T, ...]; edges into a node are summed."""
    values = {}
    pending = dict(graph.nodes)
    while pending:
        for name, node in list(pending.items()):
            sources = [a for a, b in graph.edges if b == name]
            if not all(s in values for s in sources):
                continue
            del pending[name]
            if isinstance(node, nir.Input):
                values[name] = x.transpose(1, 0, *range(2, x.ndim)).astype(np.float64)
                continue
            xs = sum(values[s] for s in sources)
            if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
                values[name] = _ref_neuron(node, xs)
            elif isinstance(node, nir.Threshold):
                values[name] = (xs > node.threshold).astype(np.float64)
            elif isinstance(node, nir.Output):
                values[name] = xs
            else:
                values[name] = np.stack([_ref_step(node, x_t) for x_t in xs])
    (out,) = [values[n] for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    return out.transpose(1, 0, *range(2, out.ndim))


def _ref_step(node, x):
    if isinstance(node, nir.Conv2d):
        return _ref_conv(node, x)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        return _ref_pool(x, int(np.atleast_1d(node.kernel_size)[0]), isinstance(node, nir.AvgPool2d))
    if isinstance(node, nir.Flatten):
        return x.reshape(len(x), -1)
    if isinstance(node, nir.Affine):
        return x @ node.weight.T.astype(np.float64) + node.bias
    return x @ node.weight.T.astype(np.float64)  # Linear


# ---------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Both graphs written to .nir files, and binary input spikes [N, T, 2, 8, 8] (rate 0.3)."""
    rng = np.random.default_rng(RNG_SEED)
    folder = tmp_path_factory.mktemp("nir")
    graphs = {"conv": conv_net(rng), "residual": residual_net(rng)}
    for name, graph in graphs.items():
        nir.write(folder / f"{name}.nir", graph)
    x = (rng.random((48, T, 2, 8, 8)) < 0.3).astype(np.float32)
    return folder, graphs, x


@pytest.mark.parametrize("net", ["conv", "residual"])
def test_float_forward_is_nir_equations_by_forward_euler(written, net):
    folder, graphs, x = written
    loaded = load_nir(folder / f"{net}.nir", dt=None if net == "conv" else DT, timesteps=T)
    assert (loaded.arch, loaded.dt, loaded.options) == ("nir", DT, {"timesteps": T, "dt": DT})
    assert loaded.dt_source == ("graph metadata 'dt'" if net == "conv" else "given")
    assert loaded.model.input_shape == (T, 2, 8, 8) and not loaded.model.training
    with torch.no_grad():
        got = loaded.model(torch.as_tensor(x))
    want = reference(graphs[net], x)
    assert got.shape == want.shape and np.array_equal(got.numpy(), want)
    assert 0.05 < want.mean() < 0.95  # the output layer fires, and not always


def test_default_dt_is_one_step_and_too_long_a_step_is_refused(written):
    folder, graphs, _ = written
    with pytest.raises(UserError, match=r"IF if0|LIF lif|CubaLIF cuba") as e:
        load_nir(folder / "residual.nir", timesteps=T)  # records no dt: dt = 1, far longer than its time constants
    assert "shorter than the step dt = 1 (default (the graph records no dt))" in str(e.value)
    assert "pass the dt" in str(e.value)


@pytest.mark.parametrize("net", ["conv", "residual"])
def test_ir_graph_runs_the_model_bit_for_bit_and_compiles_to_fixed_point(written, net):
    folder, _, x = written
    model = load_nir(folder / f"{net}.nir", dt=DT, timesteps=T).model
    x = torch.as_tensor(x)
    compiled = compile_model(model, "nir", x[:24])
    with torch.no_grad():
        want = model(x)
    assert torch.equal(compiled.source.run(x)[0], want)
    assert isinstance(compiled.source.nodes[next(iter(compiled.source.nodes))], ir.Input)
    if net == "residual":
        assert compiled.source.nodes["lif.join"].inputs == ["conv2", "if0"]  # the join, in the file's edge order
        assert set(compiled.residual_forms) == {"relay", "unroll"}  # auto compared both forms of the sum
    assert any(s["placement"] == "chip" for s in compiled.fixed.segments)
    folded_out, folded = compiled.folded.run(x, record=True)
    assert torch.equal(folded_out, want)  # tau = 2 steps: moving 1/tau into the weights is exact
    fixed_out, act = run_fixed(compiled.fixed, x)
    # No v saturation is asked of lif2 (decay 0.75): its v reaches 4x its input, beyond the headroom the quantizer
    # keeps (sized for the zoo's decays <= 0.5), so a few strongly inhibited neurons saturate at -2^23.
    assert sum(act.u_wraps.values()) == 0
    chip_lifs = [n for n, node in compiled.fixed.nodes.items() if isinstance(node, ir.LIF) and node.placement == "chip"]
    assert chip_lifs
    for name in chip_lifs:  # quantization moves a few spikes, not the layers' activity
        want_s, got_s = folded[name].bool(), act.values[name].bool()
        assert want_s.any() and (got_s != want_s).float().mean() < 0.1, name
    assert (fixed_out != folded_out).float().mean() < 0.1  # the output spikes (class_scores: their mean over T)
    assert class_scores("nir", fixed_out).shape == (len(x), fixed_out.shape[2])


def test_float32_time_constants_equal_to_dt_are_one_step_exactly(tmp_path):
    """float32(1e-3) is not 1e-3: dt is taken at the file's precision, so tau_syn = dt is a current without memory
    (snn2hw's LIF) and tau = 2 dt halves exactly."""
    shape = (3,)
    graph = nir.NIRGraph(nodes={
        "in": nir.Input(input_type={"input": np.array([4])}),
        "fc": nir.Linear(weight=np.arange(12, dtype=np.float32).reshape(3, 4) / 8),
        "cuba": nir.CubaLIF(tau_syn=_full(1e-3, shape), tau_mem=_full(2e-3, shape), r=_full(2.0, shape),
                            v_leak=_full(0.0, shape), v_threshold=_full(1.0, shape), w_in=_full(1.0, shape)),
        "out": nir.Output(output_type={"output": np.array([3])})},
        edges=[("in", "fc"), ("fc", "cuba"), ("cuba", "out")], type_check=False)
    model = nir_model(graph, "test", dt=1e-3, timesteps=3)[0]
    lif = convert(model, "nir").nodes["cuba"]
    assert (lif.decay, lif.input_scale) == (0.5, 1.0)


def _graph_with(node, shape=(4,), edges=None, metadata=None):
    """in → fc (Linear) → `node` → out, or `edges` among those names."""
    nodes = {"in": nir.Input(input_type={"input": np.array([4])}),
             "fc": nir.Linear(weight=np.eye(*shape, 4, dtype=np.float32)),
             "node": node, "out": nir.Output(output_type={"output": np.array(shape)})}
    edges = edges or [("in", "fc"), ("fc", "node"), ("node", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata or {"dt": 1.0}, type_check=False)


@pytest.mark.parametrize("node, message", [
    (nir.Scale(scale=_full(2.0, 4)), "Scale node node: snn2hw's graph has no elementwise scale"),
    (nir.CubaLIF(tau_syn=_full(2.0, 4), tau_mem=_full(2.0, 4), r=_full(2.0, 4), v_leak=_full(0, 4),
                 v_threshold=_full(1, 4)), "CubaLIF node node: its current decays over steps"),
    (nir.LIF(tau=_full(2.0, 4), r=_full(1.0, 4), v_leak=_full(0, 4), v_threshold=_full(1, 4), v_reset=_full(-1, 4)),
     "LIF node node: its v_reset is not 0"),
    (nir.LIF(tau=_full(4.0, 4), r=_full(4.0, 4), v_leak=_full(0.5, 4), v_threshold=_full(1, 4)),
     "LIF node node: its v_leak is not 0"),
    (nir.LIF(tau=np.array([2, 2, 3, 2], np.float32), r=_full(1.0, 4), v_leak=_full(0, 4), v_threshold=_full(1, 4)),
     "LIF node node: its tau differs between neurons"),
    (nir.CubaLIF(tau_syn=_full(1.0, 4), tau_mem=_full(2.0, 4), r=_full(4.0, 4), v_leak=_full(0, 4),
                 v_threshold=_full(1, 4), w_in=_full(3.0, 4)), "CubaLIF node node: both w_in"),
], ids=["scale", "current-decay", "v-reset", "v-leak", "per-neuron-tau", "two-input-scales"])
def test_what_our_lif_cannot_compute_exactly_is_refused_at_conversion(node, message):
    model = nir_model(_graph_with(node), "test", timesteps=4)[0]
    with torch.no_grad():
        assert model(torch.ones(2, 4, 4)).shape == (2, 4, 4)  # the float model runs it; only the IR cannot
    with pytest.raises(UserError, match=message):
        convert(model, "nir")


def test_bad_graphs_are_one_sentence_errors_naming_the_file_and_node(tmp_path):
    lif = nir.LIF(tau=_full(2.0, 4), r=_full(1.0, 4), v_leak=_full(0, 4), v_threshold=_full(1, 4))
    cases = {
        "unsupported": (_graph_with(nir.LI(tau=_full(2.0, 4), r=_full(1.0, 4), v_leak=_full(0, 4))),
                        r"node node is a LI, which snn2hw does not import"),
        "nan": (_graph_with(nir.Affine(weight=np.full((4, 4), np.nan, np.float32), bias=_full(0, 4))),
                r"Affine node has NaN or Inf values in weight"),
        "no-input-shape": (None, r"Input in has no shape of positive sizes"),
        "cycle": (_graph_with(lif, edges=[("in", "fc"), ("fc", "node"), ("node", "fc"), ("node", "out")]),
                  r"has a cycle"),
        "no-timesteps": (_graph_with(lif, metadata={"dt": 1.0}), r"does not record its number of time steps"),
        "bad-shape": (_graph_with(nir.Conv2d(input_shape=(1, 1), weight=_full(1, (2, 4, 3, 3)), stride=1, padding=1,
                                             dilation=1, groups=1, bias=_full(0, 2))),
                      r"Conv2d node has weights \(2, 4, 3, 3\) \(groups 1\) for an input of shape \(4,\)"),
    }
    for name, (graph, message) in cases.items():
        path = tmp_path / f"{name}.nir"
        if graph is None:
            graph = _graph_with(lif)
            graph.nodes["in"] = nir.Input(input_type={"input": np.array([])})
        nir.write(path, graph)
        with pytest.raises(UserError, match=message) as e:
            load_nir(path, timesteps=None if name == "no-timesteps" else 4)
        text = str(e.value)
        assert str(path) in text and text.count(". ") == 0 and "\n" not in text, text


def test_files_that_are_no_nir_graph_are_refused_by_content(tmp_path):
    text = tmp_path / "model.nir"
    text.write_text("not a graph")
    with pytest.raises(UserError, match="is not a NIR graph"):
        load_nir(text, timesteps=4)
    other = tmp_path / "data.nir"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(UserError, match="is an HDF5 file but not a NIR graph"):
        load_nir(other, timesteps=4)


def test_a_nir_or_netx_file_given_as_a_checkpoint_says_what_it_is(written, tmp_path):
    folder, _, _ = written
    graph = folder / "conv.nir"
    netx = tmp_path / "net.pt"  # a lava-dl .net under a checkpoint's name
    with h5py.File(netx, "w") as f:
        f.create_group("layer").create_group("0")["type"] = b"input"
    plain = tmp_path / "data.pt"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    torch.save({"w": torch.zeros(2)}, tmp_path / "real.pt")
    assert [file_kind(p) for p in (graph, netx, plain, tmp_path / "real.pt")] == ["nir", "netx", "hdf5", "other"]
    for path, message in [(graph, "is a NIR graph, not a PyTorch checkpoint"),
                          (netx, "is a lava-dl netx network"), (plain, "is an HDF5 file, neither")]:
        with pytest.raises(UserError, match=message) as e:
            load_checkpoint(path, arch="tcja-tiny")
        assert "weights_only" not in str(e.value)


# ---------------------------------------------------------------------------------------------------------------------
# SpikingJelly 2.0's own NIR export, read back: our float forward is SpikingJelly's, exactly.
# ---------------------------------------------------------------------------------------------------------------------

def _spikingjelly_nets():
    """(name, a multi-step SpikingJelly net on [T, N, 2, 8, 8]) with weights strong enough to fire."""
    from torch import nn
    from spikingjelly.activation_based import functional, layer, neuron

    class Block(nn.Module):  # SpikingJelly's spiking ResNet block: sn2(conv2(sn1(conv1(x))) + x)
        def __init__(self, c):
            super().__init__()
            self.conv1, self.sn1 = layer.Conv2d(c, c, 3, padding=1), neuron.LIFNode(tau=2.0)
            self.conv2, self.sn2 = layer.Conv2d(c, c, 3, padding=1), neuron.LIFNode(tau=2.0, decay_input=False)

        def forward(self, x):
            return self.sn2(self.conv2(self.sn1(self.conv1(x))) + x)

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.sn0 = layer.Conv2d(2, 8, 3, padding=1), neuron.IFNode()
            self.block, self.pool, self.flat = Block(8), layer.AvgPool2d(2), layer.Flatten()
            self.fc, self.sn3 = layer.Linear(128, 10), neuron.LIFNode(tau=2.0)

        def forward(self, x):
            return self.sn3(self.fc(self.flat(self.pool(self.block(self.sn0(self.stem(x)))))))

    torch.manual_seed(2)
    plain = nn.Sequential(layer.Conv2d(2, 8, 3, padding=1), neuron.LIFNode(tau=2.0), layer.AvgPool2d(2),
                          layer.Flatten(), layer.Linear(128, 10), neuron.LIFNode(tau=2.0))
    nets = [("conv", plain), ("residual", Residual())]
    for _, net in nets:
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(8)  # PyTorch's default init is too weak to make tau = 2 neurons fire
        functional.set_step_mode(net, "m")
    return nets


@pytest.mark.parametrize("index", [0, 1], ids=["conv", "residual"])
def test_spikingjelly_export_imports_to_spikingjellys_own_forward(tmp_path, index):
    """Exact: SpikingJelly's LIFNode charges v + (x - (v - v_reset)) / tau, which NIR's LIF with r = 1 computes in
    that order, and decay_input=False with tau = 2 (v - v/2 + x) is v * 0.5 + x exactly. SpikingJelly fires on
    v >= v_threshold and NIR on v > v_threshold: a membrane exactly on the threshold would differ (none here)."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    name, net = _spikingjelly_nets()[index]
    x = torch.rand(32, T, 2, 8, 8) * 4  # analog frames
    export_to_nir(net, x[:1].transpose(0, 1), tmp_path / f"{name}.nir", dt=1e-4)  # SpikingJelly's default dt
    functional.reset_net(net)
    with torch.no_grad():
        want = net(x.transpose(0, 1)).transpose(0, 1)
    loaded = load_nir(tmp_path / f"{name}.nir", dt=1e-4, timesteps=T)
    with torch.no_grad():
        got = loaded.model(x)
    assert 0.02 < want.mean() < 0.95
    assert (got - want).abs().max() == 0
    compiled = compile_model(loaded.model, "nir", x[:16])
    assert torch.equal(compiled.source.run(x)[0], got)


def _fixed_equals_lava(run_cli, tmp_path) -> dict:
    """`simulate DIR --backend fixed` and `--backend lava` on `tmp_path/dep` with inputs `tmp_path/x.npy`: every saved
    array equal → the fixed-point run's arrays."""
    runs = {}
    for backend in ("fixed", "lava"):
        res = run_cli("simulate", tmp_path / "dep", "--backend", backend, "--input", tmp_path / "x.npy",
                      "--save", tmp_path / f"{backend}.npz")
        assert res.returncode == 0, res.stderr
        runs[backend] = dict(np.load(tmp_path / f"{backend}.npz"))
    assert runs["fixed"].keys() == runs["lava"].keys()
    for key, value in runs["fixed"].items():
        assert np.array_equal(runs["lava"][key], value), key
    return runs["fixed"]


@pytest.mark.lava
@pytest.mark.parametrize("index", [0, 1], ids=["conv", "residual"])
def test_spikingjelly_graphs_go_through_the_command_line_to_lava(tmp_path, index, run_cli, lava_python):
    """`snn2hw simulate|export|simulate DEPLOY --backend fixed|lava|energy` on SpikingJelly 2.0's own export: the
    float output is SpikingJelly's forward, and Lava's CPU backend runs the exported chip segments spike for spike
    as the fixed-point simulator does."""
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    name, net = _spikingjelly_nets()[index]
    x = torch.rand(12, T, 2, 8, 8) * 4
    graph = tmp_path / f"{name}.nir"
    export_to_nir(net, x[:1].transpose(0, 1), graph, dt=1e-4)
    functional.reset_net(net)
    with torch.no_grad():
        want = net(x.transpose(0, 1)).transpose(0, 1).numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    given = ["--dt", "1e-4", "--timesteps", str(T)]
    res = run_cli("simulate", graph, *given, "--input", tmp_path / "x.npy", "--save", tmp_path / "float.npz")
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "float.npz")["output"], want)
    res = run_cli("export", graph, *given, "--calibration", tmp_path / "x.npy", "-o", tmp_path / "dep")
    assert res.returncode == 0, res.stderr
    fixed = _fixed_equals_lava(run_cli, tmp_path)
    assert fixed["output"].shape == want.shape and fixed["output"].any()
    res = run_cli("simulate", tmp_path / "dep", "--backend", "torch", "--input", tmp_path / "x.npy",
                  "--save", tmp_path / "again.npz")  # the float model rebuilt from the deployment's source/
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "again.npz")["output"], want)
    res = run_cli("energy", tmp_path / "dep", "--input", tmp_path / "x.npy", "--json", tmp_path / "e.json")
    assert res.returncode == 0, res.stderr
    # the graph itself: exported to a temporary deployment, then counted as that deployment is
    res = run_cli("energy", graph, *given, "--input", tmp_path / "x.npy", "--json", tmp_path / "graph.json")
    assert res.returncode == 0, res.stderr
    from_graph, from_deployment = (json.loads((tmp_path / f).read_text()) for f in ("graph.json", "e.json"))
    assert from_graph.pop("origin") == str(graph) and from_deployment.pop("origin") == str(tmp_path / "dep")
    del from_graph["created"], from_deployment["created"]
    assert from_graph == from_deployment and from_graph["modes"]["faithful"]["total_energy_mj"] > 0


def test_a_spikingjelly_model_in_python_goes_through_its_own_nir_export(tmp_path):
    """`from_module`: the Python API for a model of torch.nn layers and SpikingJelly neurons. Its float forward is
    SpikingJelly's, exactly, and it compiles as any NIR graph; a plain torch model is refused in one sentence."""
    from spikingjelly.activation_based import functional
    from snn2hw.nir_import import from_module

    name, net = _spikingjelly_nets()[1]
    x = torch.rand(16, T, 2, 8, 8) * 4
    loaded = from_module(net, x[:1].transpose(0, 1), tmp_path / "model.nir")
    functional.reset_net(net)
    with torch.no_grad():
        want = net(x.transpose(0, 1)).transpose(0, 1)
        got = loaded.model(x)
    assert loaded.path == tmp_path / "model.nir" and loaded.options == {"timesteps": T, "dt": 1.0}
    assert 0.02 < want.mean() < 0.95 and (got - want).abs().max() == 0
    compiled = compile_model(loaded.model, "nir", x[:8])
    assert torch.equal(compiled.source.run(x)[0], got)
    with pytest.raises(UserError, match=r"model Sequential has no neurons of spikingjelly or norse"):
        from_module(torch.nn.Sequential(torch.nn.Linear(4, 2)), torch.zeros(T, 1, 4), tmp_path / "plain.nir")
    with pytest.raises(UserError, match=r"NIR graphs: a model of SpikingJelly or norse neurons goes through its own "
                                        r"NIR export with snn2hw.nir_import.from_module"):
        convert(net.eval())


def test_a_norse_model_whose_graph_nir_cannot_write_is_one_sentence(tmp_path):
    """norse 1.1.0 exports LIFBoxCell's parameters as scalars, which nir 1.0.8's writer refuses: said in one
    sentence naming the framework, and no file is left."""
    import norse.torch as norse
    from snn2hw.nir_import import from_module

    model = norse.SequentialState(torch.nn.Linear(4, 3), norse.LIFBoxCell())
    with pytest.raises(UserError, match=r"^model SequentialState: norse's NIR export failed \(TypeError: "):
        from_module(model, torch.rand(T, 1, 4), tmp_path / "norse.nir")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.lava
def test_an_if_neuron_on_chip_exports_as_nirs_if_and_runs_on_lava(tmp_path, run_cli, lava_python):
    """A neuron that does not leak (NIR's IF, decay 1: Loihi's dv = 0) inside the chip part: the chip NIR states it
    as NIR's IF (a CubaLIF has no time constant for it), and Lava runs the deployment as the fixed-point simulator."""
    rng = np.random.default_rng(0)
    w = lambda *shape: (rng.integers(-8, 9, shape) / 8).astype(np.float32)  # noqa: E731
    conv = lambda cin: nir.Conv2d(input_shape=(6, 6), weight=w(4, cin, 3, 3), stride=1, padding=1,  # noqa: E731
                                  dilation=1, groups=1, bias=np.zeros(4, np.float32))
    graph = nir.NIRGraph.from_list(
        nir.Input(np.array([2, 6, 6])), conv(2), _lif((4, 6, 6), 2.0), conv(4),
        nir.IF(r=_full(1.0 / DT, (4, 6, 6)), v_threshold=_full(1.0, (4, 6, 6))),  # v += x each step
        nir.Flatten(input_type={"input": np.array([4, 6, 6])}, start_dim=0, end_dim=-1), nir.Linear(w(5, 144)),
        _lif((5,), 2.0), nir.Output(np.array([5])))
    nir.write(tmp_path / "if.nir", graph)
    np.save(tmp_path / "x.npy", (rng.random((8, 4, 2, 6, 6)) * 3).astype(np.float32))
    res = run_cli("export", tmp_path / "if.nir", "--timesteps", "4", "--dt", str(DT), "--calibration",
                  tmp_path / "x.npy", "-o", tmp_path / "dep")
    assert res.returncode == 0, res.stderr
    kinds = [type(n).__name__ for f in (tmp_path / "dep" / "chip").glob("*.nir") for n in nir.read(f).nodes.values()]
    assert "IF" in kinds, kinds
    fixed = _fixed_equals_lava(run_cli, tmp_path)
    if_layer = next(n for n, node in graph.nodes.items() if isinstance(node, nir.IF))
    assert fixed[f"spike_counts/{if_layer}"].sum() > 0, fixed.keys()
