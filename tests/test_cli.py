"""The CLI skeleton end to end, through the installed console script."""
import json

import numpy as np
import pytest
import torch

from snn2hw.ladder import spiking_layers
from snn2hw.checkpoint import save_checkpoint
from snn2hw.models import digits
from snn2hw.models.zoo import build_model


@pytest.fixture(scope="module")
def gac_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("gac-msresnet-tiny")
    path = tmp_path_factory.mktemp("ckpt") / "gac.pt"
    torch.save(model.state_dict(), path)  # a bare state_dict, as the GAC repo saves
    return path, model


def test_simulate_saves_official_output_and_per_layer_counts(run_cli, gac_ckpt, tmp_path):
    path, model = gac_ckpt
    x, y = digits.digit_images("test")
    np.save(tmp_path / "x.npy", x[:12])
    res = run_cli("simulate", path, "--arch", "gac-msresnet-tiny", "--backend", "torch",
                  "--input", tmp_path / "x.npy", "--save", tmp_path / "out.npz", "--batch-size", "12")
    assert res.returncode == 0, res.stderr
    out = np.load(tmp_path / "out.npz")
    spikes = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: spikes.__setitem__(n, o))
             for n, m in spiking_layers(model).items()]
    with torch.no_grad():
        want = model(torch.as_tensor(x[:12])).numpy()
    for h in hooks:
        h.remove()
    np.testing.assert_array_equal(out["output"], want)
    assert want.shape == (12, model.timesteps, 10)
    assert sorted(k[len("spike_counts/"):] for k in out.files if k != "output") == sorted(spikes)
    for name, s in spikes.items():  # GAC layout [N, T, ...]
        np.testing.assert_array_equal(out[f"spike_counts/{name}"], s.flatten(2).sum(2).numpy())


def test_inspect_reports_parameters_and_host_chip_roles(run_cli, gac_ckpt):
    path, model = gac_ckpt
    res = run_cli("inspect", path, "--arch", "gac-msresnet-tiny", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    places = {row["name"]: row["runs_on"] for row in info["layers"]}
    convs = [r for r in info["layers"] if r["type"] == "Conv2d"]
    assert convs[0]["runs_on"] == "host"  # the first conv sees analog pixels
    assert any(r["runs_on"] == "chip" for r in convs)
    # Where the compiler puts them: the encoder's neuron is part of the host encoder, the others on chip.
    assert {n: places[n] for n in spiking_layers(model)} == {n: "host" if n == "encoder_lif" else "chip"
                                                             for n in spiking_layers(model)}
    table = run_cli("inspect", path, "--arch", "gac-msresnet-tiny")
    assert table.returncode == 0 and f"{info['parameters']:,} parameters" in table.stdout


@pytest.mark.parametrize("case", ["bad-shape", "no-input", "no-checkpoint", "unknown-arch", "nan"])
def test_bad_input_is_one_sentence_and_exit_2(run_cli, gac_ckpt, tmp_path, case):
    path, _ = gac_ckpt
    x = digits.digit_images("test")[0][:2]
    args = dict(ckpt=path, arch="gac-msresnet-tiny", inp=tmp_path / "x.npy")
    if case == "bad-shape":
        x = x[:, :, :4]
    elif case == "nan":
        x = x.copy()
        x[0, 0, 0, 0] = np.nan
    elif case == "no-input":
        args["inp"] = tmp_path / "missing.npy"
    elif case == "no-checkpoint":
        args["ckpt"] = tmp_path / "missing.pt"
    elif case == "unknown-arch":
        args["arch"] = "resnet50"
    np.save(tmp_path / "x.npy", x)
    res = run_cli("simulate", args["ckpt"], "--arch", args["arch"], "--input", args["inp"],
                  "--save", tmp_path / "out.npz")
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.stderr
    assert not (tmp_path / "out.npz").exists()


def test_inspect_roles_of_the_tcja_demo_model():
    from snn2hw.checkpoint import load_checkpoint
    from snn2hw.demo import demo_checkpoint
    from snn2hw.describe import describe

    loaded = load_checkpoint(demo_checkpoint("tcja-tiny"))
    rows = {r["name"]: r for r in describe(loaded.model, "tcja-tiny")["layers"]}
    types = {}
    for r in rows.values():
        types.setdefault(r["type"], set()).add(r["runs_on"])
    assert types["TCJA"] == {"host"} and types["VotingLayer"] == {"host"}  # non-causal gates and the readout
    assert types["SpikingJellyLIF"] == {"chip"} and types["Linear"] == {"chip"}
    assert types["MaxPool2d"] == {"host"}  # the pools read gated values: they stay beside the gates
    assert rows["conv.4.0"]["why"] == "synapse on graded spikes"  # the conv after a TCJA gate
    assert rows["fc.5.0"]["why"] == "synapse on binary spikes"
    assert rows["conv.0.0"]["output_shape"] == [8, 16, 16, 16]
