"""Host segments as ONNX: the files' interface, and onnxruntime against the torch module and the IR's own execution
on the digits test set, with each segment fed what it really receives (chip values from the fixed-point run)."""
import json

import numpy as np
import onnx
import pytest
import torch

from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.compile import compile_model
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.exporters.onnx_host import (EXPORT_BATCH, MODEL_INPUT, PINNED_OPSET, export_host_segment,
                                        host_segment_module, onnx_names)
from snn2hw.hardware_sims.host_runner import run_host_segment_onnx
from snn2hw.hardware_sims.runner import run_fixed

TOL = 1e-5
# Each host segment: (what it reads, what it passes on, the IR ops it holds), as DESIGN.md's partition puts them.
EXPECTED = {
    "gac-msresnet-tiny": {
        "host0": ([MODEL_INPUT], ["encoding"], ["Input", "Conv2d", "LIF", "HostModule"]),
        "host2": (["fc1.relay"], ["output"], ["Readout"]),
    },
    "tcja-tiny": {
        "host0": ([MODEL_INPUT], ["input"], ["Input"]),
        "host2": (["conv.1"], ["conv.3.0"], ["HostModule", "MaxPool2d"]),
        "host4": (["conv.5"], ["fc.0"], ["HostModule", "MaxPool2d", "Flatten"]),
        "host6": (["fc.6"], ["output"], ["Readout"]),
    },
}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """arch → (graph, {tensor: value every segment may read, N = the whole test set}, {host segment: ONNX file})."""
    cache = {}

    def get(arch):
        if arch not in cache:
            model = load_checkpoint(demo_checkpoint(arch)).model
            x, _, calib = evaluation_data("digits", arch)
            graph = compile_model(model, arch, torch.as_tensor(calib)).fixed
            x = torch.as_tensor(x)
            _, act = run_fixed(graph, x)  # host values, chip spikes as 0/1, readout accumulations in float units
            out = tmp_path_factory.mktemp(arch)
            files = {s["name"]: export_host_segment(graph, s, out / f"{s['name']}.onnx")
                     for s in graph.segments if s["placement"] == "host"}
            cache[arch] = graph, {MODEL_INPUT: x, **act.values}, files
        return cache[arch]
    return get


@pytest.mark.parametrize("arch", EXPECTED)
def test_files_name_inputs_and_outputs_pin_the_opset_and_leave_the_batch_free(arch, deployed):
    graph, _, files = deployed(arch)
    assert files.keys() == EXPECTED[arch].keys()
    assert sorted(p.name for p in next(iter(files.values())).parent.iterdir()) == sorted(f"{s}.onnx" for s in files)
    for segment in graph.segments:
        if segment["placement"] != "host":
            continue
        reads, writes, ops = EXPECTED[arch][segment["name"]]
        module = host_segment_module(graph, segment)
        assert (module.input_names, module.output_names) == (reads, writes)
        assert [type(graph.nodes[n]).__name__ for n in segment["nodes"]] == ops
        model = onnx.load(files[segment["name"]])
        onnx.checker.check_model(model, full_check=True)
        assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [PINNED_OPSET]
        meta = {p.key: p.value for p in model.metadata_props}
        names = onnx_names(reads + writes)
        assert json.loads(meta["snn2hw.inputs"]) == [list(p) for p in zip(names, reads)]
        assert json.loads(meta["snn2hw.outputs"]) == [list(p) for p in zip(names[len(reads):], writes)]
        for value, name in [*zip(model.graph.input, reads), *zip(model.graph.output, writes)]:
            dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            assert value.name.isidentifier(), value.name
            if name == MODEL_INPUT:
                assert dims == ["N", *graph.input_shape]
            elif isinstance(graph.nodes[name], ir.Readout):  # both demo readouts put the samples first
                assert dims == ["N", *graph.nodes[name].shape]
            else:
                assert dims == [graph.timesteps, "N", *graph.nodes[name].shape]


@pytest.mark.parametrize("arch", EXPECTED)
def test_onnxruntime_equals_the_torch_module_and_the_ir_on_the_test_set_for_any_batch(arch, deployed):
    graph, values, files = deployed(arch)
    n = len(values[MODEL_INPUT])
    assert n not in (1, EXPORT_BATCH)  # the files were traced with EXPORT_BATCH samples
    for segment in graph.segments:
        if segment["placement"] != "host":
            continue
        module = host_segment_module(graph, segment)
        ours = run_host_segment_onnx(files[segment["name"]], values)  # every value: it must pick its own
        with torch.no_grad():
            theirs = dict(zip(module.output_names, module(*[values[i] for i in module.input_names])))
        # One sample alone: the batch axis is free down to N = 1.
        first = [values[i][:1] if i == MODEL_INPUT else values[i][:, :1] for i in module.input_names]
        alone = run_host_segment_onnx(files[segment["name"]], dict(zip(module.input_names, first)))
        with torch.no_grad():
            alone_torch = dict(zip(module.output_names, module(*first)))
        for name in module.output_names:
            ir_value = values[name].numpy()  # the fixed-point run executed the same nodes in torch
            assert torch.equal(theirs[name], values[name]), name
            assert ours[name].shape == ir_value.shape and ours[name].dtype == np.float32
            assert np.abs(ours[name] - ir_value).max() <= TOL, (name, np.abs(ours[name] - ir_value).max())
            assert alone[name].shape == alone_torch[name].shape
            assert np.abs(alone[name] - alone_torch[name].numpy()).max() <= TOL, name


def test_gac_encoder_spikes_from_onnxruntime_are_exactly_the_irs(deployed, tmp_path):
    graph, values, files = deployed("gac-msresnet-tiny")
    segment = graph.segments[0]
    path = export_host_segment(graph, segment, tmp_path / "host0.onnx", extra_outputs=("encoder_lif",))
    spikes = run_host_segment_onnx(path, values)["encoder_lif"]
    want = values["encoder_lif"].numpy()
    assert 0.05 < want.mean() < 0.95  # a real test: many spikes and many silent neurons
    assert int((spikes != want).sum()) == 0  # binary: equal, not close
    # The deployed file passes on only the gated spikes: where the IR's neuron is silent they are exactly 0 (the
    # converse need not hold: onnxruntime's Sigmoid returns 0 below about -16, torch's only below about -88).
    encoding = run_host_segment_onnx(files["host0"], values)["encoding"]
    assert not encoding[want == 0].any()


def test_an_export_warns_and_prints_nothing(deployed, tmp_path, recwarn, capfd):
    # recwarn records every warning, also ones already shown once: the TorchScript exporter (dynamo=False) warned a
    # DeprecationWarning on each export, and torch's own FutureWarning and torchvision log lines must stay filtered.
    graph, _, _ = deployed("tcja-tiny")
    capfd.readouterr()
    export_host_segment(graph, graph.segments[2], tmp_path / "host2.onnx")
    # Only torch's note on the TCJA attention's even-kernel 'same' convolution may come: any first run of that conv
    # in the process gives it, exported or not.
    warned = [f"{w.category.__name__}: {w.message}" for w in recwarn]
    assert [w for w in warned if not w.startswith("UserWarning: Using padding='same' with even kernel")] == []
    assert capfd.readouterr() == ("", "")  # neither the exporter's progress lines nor its logged warnings


def test_names_are_c_identifiers_distinct_from_each_other():
    assert onnx_names(["conv.0.0", "conv_0_0", "1x", "", "layer2.0.lif1.in.from.encoding"]) == \
        ["conv_0_0", "conv_0_0_2", "_1x", "_", "layer2_0_lif1_in_from_encoding"]


def test_bad_calls_fail_clearly_and_a_failed_export_keeps_the_earlier_file(deployed, tmp_path, monkeypatch):
    graph, values, files = deployed("tcja-tiny")
    chip, host = graph.segments[1], graph.segments[2]
    with pytest.raises(ValueError, match="chip1 runs on the chip"):
        host_segment_module(graph, chip)
    with pytest.raises(ValueError, match="conv.4.0 is not a node of segment host2"):
        host_segment_module(graph, host, extra_outputs=("conv.4.0",))
    with pytest.raises(ValueError, match="no values for the segment's inputs conv.1"):
        run_host_segment_onnx(files["host2"], {MODEL_INPUT: values[MODEL_INPUT]})
    path = export_host_segment(graph, host, tmp_path / "host2.onnx")
    before = path.read_bytes()

    def reject(*args, **kwargs):
        raise onnx.checker.ValidationError("rejected")
    monkeypatch.setattr(onnx.checker, "check_model", reject)
    with pytest.raises(onnx.checker.ValidationError):  # another segment: a completed write would change the bytes
        export_host_segment(graph, graph.segments[4], path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["host2.onnx"]


def _pooling_graph(size) -> ir.Graph:
    """One host segment: a graded input `[N, T=3, 2, 10, 15]` pooled adaptively to `size`, flattened, read out."""
    from snn2hw.passes.partition import partition_host_chip

    nodes = {"input": ir.Input("input", [], timesteps=3, source_kind="graded"),
             "pool": ir.AvgPool2d("pool", ["input"], output_size=size),
             "flat": ir.Flatten("flat", ["pool"]),
             "output": ir.Readout("output", ["flat"], mode="per_step_tn")}
    graph = partition_host_chip(ir.Graph(nodes, 3, (3, 2, 10, 15)).infer())
    assert [s["placement"] for s in graph.segments] == ["host"]
    return graph


@pytest.mark.parametrize("size", [(5, 5), (4, 6)])  # dividing 10x15 or not (TCJA CIFAR10-DVS: 128 → 48)
def test_adaptive_average_pooling_exports(size, tmp_path):
    # Exported as two matmuls, not torch's own decomposition (see `_run`): the values must still be the IR's.
    graph = _pooling_graph(size)
    path = export_host_segment(graph, graph.segments[0], tmp_path / "host0.onnx")
    x = torch.poisson(torch.full((5, 3, 2, 10, 15), 2.0))
    got = run_host_segment_onnx(path, {MODEL_INPUT: x.numpy()})["output"]
    want = graph.run(x)[0].numpy()
    assert got.shape == want.shape == (3, 5, 2 * size[0] * size[1])
    np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


def test_an_output_without_a_batch_axis_is_refused(tmp_path, monkeypatch):
    graph = _pooling_graph((5, 5))
    monkeypatch.setattr(ir.Readout, "run", lambda self, x: x[:, 0])  # the first sample's values, for any N
    with pytest.raises(ValueError, match=r"output output has no single batch axis N \(shape \[3, 50\]\)"):
        export_host_segment(graph, graph.segments[0], tmp_path / "host0.onnx")
    assert not any(tmp_path.iterdir())
