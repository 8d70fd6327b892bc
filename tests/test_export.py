"""`snn2hw export`: the deployment directory, its atomicity, and running it back."""
import json

import numpy as np
import pytest
import torch

from helpers import calibrated
from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint, save_checkpoint
from snn2hw.compile import compile_model
from snn2hw.data import CALIBRATION_SAMPLES, DEMO_DATA
from snn2hw.demo import demo_checkpoint
from snn2hw.deployment import load_deployment
from snn2hw.errors import UserError
from snn2hw.export import export_deployment
from snn2hw.hardware_sims.runner import run_fixed
from snn2hw.ladder import simulate
from snn2hw.models.zoo import build_model


@pytest.fixture(scope="module")
def gac_export(tmp_path_factory, run_cli_module):
    out = tmp_path_factory.mktemp("deploy") / "gac"
    res = run_cli_module("export", demo_checkpoint("gac-msresnet-tiny"), "--target", "loihi", "-o", out)
    assert res.returncode == 0, res.stderr
    return out, res


def test_deployment_directory_has_every_file_the_manifest_names(gac_export):
    import nir
    import onnx

    out, res = gac_export
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["arch"] == "gac-msresnet-tiny" and manifest["timesteps"] == 4
    assert manifest["output"] == {"shape": [None, 4, 10], "readout": "per_step_nt",  # official [N, T, classes]
                                  "tensor": "output"}
    assert manifest["spiking_layers"][0] == "encoder_lif" and len(manifest["spiking_layers"]) == 6
    assert [s["placement"] for s in manifest["segments"]] == ["host", "chip", "host"]
    for seg in manifest["segments"]:
        for rel in seg["files"].values():
            assert (out / rel).is_file(), rel
        if seg["placement"] == "chip":
            graph = nir.read(out / seg["files"]["nir"])
            assert len(graph.nodes) > 5
        else:
            onnx.checker.check_model(onnx.load(out / seg["files"]["onnx"]))
    assert {c["direction"] for c in manifest["cuts"]} == {"host->chip", "chip->host"}
    chip = next(s for s in manifest["segments"] if s["placement"] == "chip")  # every construct has a public run
    assert "several synapses summed into one neuron's input port" in chip["constructs"]
    assert manifest["residual"] == "relay"
    relays = [layer for layer in manifest["layers"] if layer["layer"].endswith((".relay", ".delay1"))]
    assert relays and all("vth" not in layer for layer in relays)
    assert all("vth" in layer for layer in manifest["layers"] if layer not in relays)
    report = (out / "report.md").read_text()
    assert "membrane shortcut" in report and "relayed (`--residual relay`)" in report and "balance_delays" in report
    assert "chip1" in res.stdout  # the summary table


def test_inspect_checks_every_file_of_a_deployment(gac_export, run_cli):
    out, _ = gac_export
    res = run_cli("inspect", out, "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert info["files_verified"] == len(manifest["file_sha256"]) >= 8  # 2 ONNX, 3 chip, checkpoint, calibration, graph
    assert [(r["segment"], r["runs on"]) for r in info["segments"]] == \
        [(s["name"], s["placement"]) for s in manifest["segments"]]


def test_deployment_runs_from_its_files_as_the_compiled_graph_runs(gac_export):
    """Fixed point from the files (chip specs, host ONNX) gives the outputs and spike counts of the compiled graph in
    memory (chip specs made on the fly, host nodes in torch), and loading builds no model."""
    out, _ = gac_export
    dep = load_deployment(out)
    model = load_checkpoint(demo_checkpoint("gac-msresnet-tiny")).model
    x, _ = DEMO_DATA["digit-images"]("test")
    calib = DEMO_DATA["digit-images"]("train")[0][:CALIBRATION_SAMPLES]
    direct = compile_model(model, "gac-msresnet-tiny", torch.as_tensor(calib))
    from_files, files_counts = dep.simulate(x[:40], batch_size=16)
    in_memory, memory_counts = simulate(direct, "fixed", x[:40], batch_size=16)
    assert "compiled" not in vars(dep)  # nothing was recompiled
    np.testing.assert_allclose(from_files, in_memory, rtol=1e-6, atol=1e-6)  # host float ops: onnxruntime vs torch
    assert files_counts.keys() == memory_counts.keys() and len(files_counts) == 6  # the encoder's spikes included
    for layer, counts in memory_counts.items():
        assert np.array_equal(files_counts[layer], counts), layer
        assert counts.sum() > 0, layer
    assert np.array_equal(run_fixed(dep.compiled.fixed, x[:8])[0], run_fixed(direct.fixed, x[:8])[0])



def test_chip_arrays_are_stored_in_the_smallest_type_of_their_loihi_format(gac_export):
    out, _ = gac_export
    spec = json.loads((out / "chip" / "chip1.json").read_text())
    with np.load(out / "chip" / "chip1.npz", allow_pickle=False) as f:
        dtypes = {k: f[k].dtype for k in f.files}
    for node in spec["nodes"]:
        for key in ("weight", "bias_mant"):  # 9-bit weights [-256, 255], 13-bit mantissas
            if isinstance(node.get(key), str):
                assert dtypes[node[key]] == np.int16, (node["name"], key)


def test_chip_values_outside_their_loihi_format_are_refused_not_wrapped():
    from snn2hw.exporters.lava_spec import chip_segment_spec

    model = load_checkpoint(demo_checkpoint("gac-msresnet-tiny")).model
    c = compile_model(model, "gac-msresnet-tiny", torch.as_tensor(DEMO_DATA["digit-images"]("train")[0][:16]))
    seg = next(s for s in c.fixed.segments if s["placement"] == "chip")
    synapse = next(c.fixed.nodes[n] for n in seg["nodes"]
                   if "weight" in c.fixed.nodes[n].quant and not c.fixed.nodes[n].quant.get("identity"))
    synapse.quant["weight"] = synapse.quant["weight"].copy()
    synapse.quant["weight"].flat[0] = 2 ** 15  # int16 would store -32768
    with pytest.raises(ValueError, match=f"{synapse.name} weights: values outside the Loihi format"):
        chip_segment_spec(c.fixed, seg)

def test_tampered_chip_file_is_refused(gac_export, tmp_path, run_cli):
    import shutil

    out, _ = gac_export
    copy = tmp_path / "tampered"
    shutil.copytree(out, copy)
    spec = json.loads((copy / "chip" / "chip1.json").read_text())
    next(n for n in spec["nodes"] if n["op"] == "lif")["vth"] += 1
    (copy / "chip" / "chip1.json").write_text(json.dumps(spec))
    np.save(tmp_path / "x.npy", DEMO_DATA["digit-images"]("test")[0][:2])
    res = run_cli("simulate", copy, "--backend", "fixed", "--input", tmp_path / "x.npy", "--save", tmp_path / "o.npz")
    assert res.returncode == 2 and "chip1.json" in res.stderr and "edited or corrupt" in res.stderr
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.lava
def test_cli_lava_backend_saves_what_the_fixed_backend_saves(gac_export, lava_python, tmp_path, run_cli):
    out, _ = gac_export
    np.save(tmp_path / "x.npy", DEMO_DATA["digit-images"]("test")[0][:5])
    saved = {}
    for backend in ("fixed", "lava"):
        res = run_cli("simulate", out, "--backend", backend, "--input", tmp_path / "x.npy", "--samples", "3",
                      "--save", tmp_path / f"{backend}.npz")
        assert res.returncode == 0, res.stderr
        with np.load(tmp_path / f"{backend}.npz") as f:
            saved[backend] = {k: f[k] for k in f.files}
    fixed, lava = saved["fixed"], saved["lava"]
    # encoder_lif on the host, five layers on chip
    assert fixed.keys() == lava.keys() and len([k for k in fixed if k.startswith("spike_counts/")]) == 6
    for key in fixed:
        assert fixed[key].shape[0] == 3, key
        if key.startswith("spike_counts/"):
            assert np.array_equal(fixed[key], lava[key]), key
    # The host segments run in onnxruntime for Lava and in torch for the simulator: float rounding only.
    np.testing.assert_allclose(lava["output"], fixed["output"], atol=1e-4)


@pytest.mark.lava
def test_cli_memory_limit_is_applied_to_the_lava_run(gac_export, lava_python, tmp_path, run_cli):
    out, _ = gac_export
    np.save(tmp_path / "x.npy", DEMO_DATA["digit-images"]("test")[0][:1])
    res = run_cli("simulate", out, "--backend", "lava", "--input", tmp_path / "x.npy", "--memory-limit", "100",
                  "--save", tmp_path / "o.npz")
    assert res.returncode == 2
    assert "chip segment chip1: the Lava run ran out of memory (limit 100 MiB per process)" in res.stderr
    assert not (tmp_path / "o.npz").exists()


def test_official_tcja_cifar10dvs_exports_with_its_gates_folded(tmp_path):
    # Its input is pooled 128 → 48 (adaptive), and it average-pools spikes and gated spikes before convs.
    from snn2hw.exporters.onnx_host import MODEL_INPUT
    from snn2hw.hardware_sims.host_runner import run_host_segment_onnx

    torch.manual_seed(0)
    calib = torch.poisson(torch.full((2, 10, 2, 128, 128), 0.1))
    save_checkpoint(tmp_path / "m.pt", calibrated(build_model("tcja-cifar10dvs"), calib), "tcja-cifar10dvs", {})
    manifest = export_deployment(load_checkpoint(tmp_path / "m.pt"), calib.numpy(), tmp_path / "deploy", "fold")
    assert [s["placement"] for s in manifest["segments"]] == ["host", "chip", "host"]
    assert manifest["output"] == {"shape": [10, None, 10], "readout": "per_step_tn", "tensor": "output"}  # [T, N, K]
    graph = load_deployment(tmp_path / "deploy").compiled.fixed
    pools = [n for n in graph.nodes.values() if isinstance(n, ir.AvgPool2d)]
    assert [(p.name, p.placement, p.output_size) for p in pools] == [("conv.0.0", "host", (48, 48))]
    assert {"conv.6.0", "conv.11.0", "conv.17.0"} <= {n.name for n in graph.nodes.values()
                                                      if isinstance(n, ir.Conv2d) and n.weight.shape[2:] == (6, 6)}
    got = run_host_segment_onnx(tmp_path / "deploy" / "host" / "host0.onnx", {MODEL_INPUT: calib.numpy()})
    (name, value), = got.items()
    with torch.no_grad():
        want = graph.run(calib, record=True)[1][name]  # torch's adaptive_avg_pool2d
    np.testing.assert_allclose(value, want.numpy(), rtol=1e-5, atol=1e-5)


def test_an_official_checkpoint_trained_at_another_t_and_width_exports_from_the_cli(tmp_path, run_cli):
    """TCJA DVS128 as its script trains it with -T 16 -channels 16 (a reduced width with the official structure),
    saved as the script saves it: the CLI reads T and the width from the weights, exports it, and the deployment
    runs at T = 16 from its files and from its recorded source alike."""
    torch.manual_seed(0)
    calib = torch.poisson(torch.full((2, 16, 2, 128, 128), 0.1))
    model = calibrated(build_model("tcja-dvs128", timesteps=16, channels=16), calib)
    torch.save({"net": model.state_dict(), "epoch": 0, "max_test_acc": 0.0}, tmp_path / "dvs128.pt")
    np.save(tmp_path / "calib.npy", calib.numpy())
    res = run_cli("export", tmp_path / "dvs128.pt", "-o", tmp_path / "deploy", "--calibration", tmp_path / "calib.npy",
                  "--system", "none")
    assert res.returncode == 0, res.stderr
    assert "T = 16, read from the weights (tcja-dvs128's official default is 20)" in res.stderr
    assert "width = 16, read from the weights" in res.stderr
    dep = load_deployment(tmp_path / "deploy")
    assert dep.manifest["timesteps"] == 16 and dep.manifest["source"]["options"]["channels"] == 16
    from_files, _ = dep.simulate(calib.numpy())
    from_source, _ = simulate(dep.compiled, "fixed", calib.numpy(), 2)
    assert from_files.shape == (2, 11) and np.array_equal(from_files, from_source)


@pytest.mark.parametrize("arch, trained, flags", [
    ("gac-msresnet18-cifar", {"timesteps": 4}, []),  # T read from GAC's TA weights
    ("msresnet18-cifar", {"timesteps": 4}, ["--timesteps", "4"]),  # no weight records T: the user says it
])
def test_official_msresnet_at_another_t_exports_at_that_t(tmp_path, run_cli, arch, trained, flags):
    """The GAC README's T = 4 rows at official size, saved bare as the GAC scripts save them: the deployment runs
    at T = 4 and its output has T = 4 steps."""
    torch.manual_seed(0)
    calib = torch.rand(2, 3, 32, 32)
    model = calibrated(build_model(arch, **trained), calib)
    for m in model.modules():  # a channel these random weights never excite: a trained net's variance is not 0
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.clamp_(min=1e-3)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    np.save(tmp_path / "calib.npy", calib.numpy())
    res = run_cli("export", tmp_path / "m.pt", "-o", tmp_path / "deploy", "--calibration", tmp_path / "calib.npy",
                  "--system", "none", *flags)
    assert res.returncode == 0, res.stderr
    dep = load_deployment(tmp_path / "deploy")
    assert dep.manifest["source"]["arch"] == arch and dep.manifest["timesteps"] == 4
    output, _ = dep.simulate(calib.numpy())
    assert output.shape == (2, 4, 10)


@pytest.mark.parametrize("arch, trained, x_shape, out_shape", [
    ("tcja-cifar10dvs", {"timesteps": 16}, (2, 16, 2, 128, 128), (16, 2, 10)),  # the scripts' -T 16
    ("gac-msresnet34-imagenet", {"timesteps": 6, "sca_kernel": 8}, (2, 3, 224, 224), (2, 6, 1000)),  # K = 8 for 34
])
def test_official_configurations_export_and_run_from_their_files(tmp_path, arch, trained, x_shape, out_shape):
    """Official-size networks trained with settings other than the defaults, saved as their repos save them: read
    from the weights, exported, and run from the deployment's files with the T they were trained at."""
    torch.manual_seed(0)
    x = torch.poisson(torch.full(x_shape, 0.3)) if arch.startswith("tcja") else torch.rand(x_shape)
    model = calibrated(build_model(arch, **trained), x)
    for m in model.modules():  # a channel these random weights never excite: a trained net's variance is not 0
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.clamp_(min=1e-3)
    torch.save({"net": model.state_dict()} if arch.startswith("tcja") else model.state_dict(), tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.arch == arch and {k: loaded.options[k] for k in trained} == trained
    export_deployment(loaded, x.numpy(), tmp_path / "deploy", system=None)
    output, _ = load_deployment(tmp_path / "deploy").simulate(x.numpy())
    assert output.shape == out_shape


@pytest.mark.parametrize("tcja", ["host", "fold"])
def test_the_tet_vgg_for_cifar10dvs_exports_and_runs_from_its_files(tmp_path, tcja):
    """VGGSNN_TCJA of the TCJA repo's src/tet/, saved bare as its script saves it, found without --arch: its first
    conv reads real-valued frames on the host, TCJA's gate runs on the host or folds, and the deployment's files
    run as its source compiles."""
    torch.manual_seed(0)
    calib = torch.rand(2, 10, 2, 48, 48)  # frames resized by the data loader: values in [0, 1]
    torch.save(calibrated(build_model("tcja-tet-cifar10dvs"), calib).state_dict(), tmp_path / "tet.pt")
    loaded = load_checkpoint(tmp_path / "tet.pt")
    assert loaded.arch == "tcja-tet-cifar10dvs"
    manifest = export_deployment(loaded, calib.numpy(), tmp_path / "deploy", tcja, system=None)
    placements = [s["placement"] for s in manifest["segments"]]
    assert placements == (["host", "chip", "host", "chip", "host"] if tcja == "host" else ["host", "chip", "host"])
    dep = load_deployment(tmp_path / "deploy")
    from_files, _ = dep.simulate(calib.numpy())
    from_source, _ = simulate(dep.compiled, "fixed", calib.numpy(), 2)
    assert from_files.shape == (2, 10, 10) and np.array_equal(from_files, from_source)


def test_failed_export_leaves_nothing_and_keeps_an_earlier_one(tmp_path, monkeypatch):
    loaded = load_checkpoint(demo_checkpoint("tcja-tiny"))
    calib = DEMO_DATA["digit-events"]("train")[0][:64]
    out = tmp_path / "deploy"
    export_deployment(loaded, calib, out)
    before = (out / "manifest.json").read_text()

    import snn2hw.export

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(snn2hw.export, "export_host_segment", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_deployment(loaded, calib, out)
    assert (out / "manifest.json").read_text() == before  # the earlier export is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy"]  # no partial directories left
    with pytest.raises(RuntimeError):
        export_deployment(loaded, calib, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_export_refuses_to_replace_a_directory_that_is_not_a_deployment(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    loaded = load_checkpoint(demo_checkpoint("tcja-tiny"))
    with pytest.raises(UserError, match="not a deployment directory"):
        export_deployment(loaded, DEMO_DATA["digit-events"]("train")[0][:16], tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
