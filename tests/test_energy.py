"""Energy accounting: counts against NeuroBench, SpikingJelly and syops where their definitions coincide (and the
documented differences where they do not), the GAC encoder and TCJA gates, the published GAC ImageNet energies,
Loihi 2 resources, presets, and the command's JSON and offline HTML."""
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.cli import app
from snn2hw.compile import compile_model
from snn2hw.convert import convert
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.deployment import load_deployment
from snn2hw.energy import (RateActivity, RecordedActivity, build_report, fanout_map, faithful_counts, load_preset,
                           loihi_resources, paper_flops, paper_report)
from snn2hw.energy.render import render_html
from snn2hw.errors import UserError
from snn2hw.export import export_deployment
from snn2hw.hardware_sims.runner import run_fixed
from snn2hw.measure import analytic_report, deployment_report, record_activity
from snn2hw.models.zoo import build_model
from snn2hw.passes.partition import partition_host_chip

PJ = 1e-9  # mJ per pJ


def _graph(layers, input_shape, timesteps=1, input_kind="binary"):
    """Input (one `input_shape` per step) → layers, each reading the previous → Readout; inferred, partitioned."""
    nodes = {"input": ir.Input("input", [], timesteps=timesteps, source_kind=input_kind)}
    prev = "input"
    for node in layers:
        node.inputs = [prev]
        nodes[node.name] = node
        prev = node.name
    nodes["output"] = ir.Readout("output", [prev], mode="per_step_tn")
    return partition_host_chip(ir.Graph(nodes, timesteps, (timesteps, *input_shape)).infer())  # input [N, T, ...]


def _conv(name, weight, **kw):
    return ir.Conv2d(name, [], weight=weight, **kw)


def _counts(graph, x):
    return {c.name: c for c in faithful_counts(graph, record_activity(graph, "folded", x))}


def _energy(*args) -> str:
    """`snn2hw energy ARGS` in this process → what it printed; raises what the command raised (UserError)."""
    res = CliRunner().invoke(app, ["energy", *map(str, args)], standalone_mode=False)
    if res.exception is not None:
        raise res.exception
    return res.stdout


def _neurobench(x, weight, all_ones=False, **kw):
    """NeuroBench's SynapticOperations on one conv call (metrics/utils/layers/macs.py stateless_layer_macs): a copy
    of the layer with non-zero weights set to 1 (all weights if `all_ones`: "Dense"), bias 0, on the input with
    non-zero entries set to 1, summed over the output."""
    w = torch.ones_like(weight) if all_ones else (weight != 0).float()
    return float(F.conv2d(torch.ones_like(x) if all_ones else (x != 0).float(), w, **kw).sum())


# ------------------------------------------------------------------------------------------ counting conventions


def test_dense_ops_exclude_zero_padding_as_neurobench_and_flops_include_it():
    graph = _graph([_conv("c", torch.randn(1, 1, 3, 3), padding=(1, 1))], (1, 32, 32), input_kind="analog")
    conv = graph.nodes["c"]
    assert fanout_map(conv, (1, 32, 32), effective=False).sum() == 8836  # NeuroBench "Dense", not 9,216
    assert paper_flops(conv) == 9216
    # The ImageNet stem (7x7, stride 2, padding 3, 3 -> 64 on 224^2) of the reference's check 7.
    stem = _graph([_conv("c", torch.empty(64, 3, 7, 7, device="meta"), stride=(2, 2), padding=(3, 3))],
                  (3, 224, 224), input_kind="analog").nodes["c"]
    assert fanout_map(stem, (3, 224, 224), effective=False).sum() == 116_214_528
    assert paper_flops(stem) == 118_013_952


def test_effective_ops_equal_neurobench_with_stride_groups_and_zero_weights():
    torch.manual_seed(0)
    weight = torch.randn(6, 2, 3, 3)
    weight[weight.abs() < 0.5] = 0  # zero weights: NeuroBench and snn2hw skip them, SpikingJelly does not
    graph = _graph([_conv("c", weight, stride=(2, 2), padding=(1, 1), groups=2), ir.LIF("s", [])], (4, 9, 9), 3)
    x = (torch.rand(5, 3, 4, 9, 9) < 0.3).float()  # [N, T, ...] binary spikes
    count = _counts(graph, x.numpy())["c"]
    steps = x.transpose(0, 1).flatten(0, 1)
    kw = dict(stride=2, padding=1, groups=2)
    assert count.placement == "chip" and count.macs.sum() == 0
    assert count.acs.sum() == pytest.approx(_neurobench(steps, weight, **kw) / 5)  # per sample
    assert count.dense * 3 == pytest.approx(_neurobench(steps, weight, all_ones=True, **kw) / 5)
    # SpikingJelly's SynOpCounter (op_counter/ac.py, _spike_conv_weight_uses_from_tensors): spikes times the
    # kernel's footprint, zero weights included; it equals ours only without zero weights.
    synops_sj = float(F.conv2d(steps, torch.ones(2, 2, 3, 3), **kw).sum()) * 3 / 5
    assert synops_sj > count.acs.sum()
    assert synops_sj == pytest.approx(_neurobench(steps, torch.ones_like(weight), **kw) / 5)


def test_neurobench_anchor_linear_all_ones_spikes_gives_1000_acs_per_sample():
    # NeuroBench tests/test_metrics.py: Linear(20, 5) + Leaky on all-ones spikes [5, 10, 20] -> 1000 ACs per sample.
    graph = _graph([ir.Linear("fc", [], weight=torch.randn(5, 20)), ir.LIF("s", [])], (20,), 10)
    count = _counts(graph, np.ones((5, 10, 20), np.float32))["fc"]
    assert count.acs.sum() == 1000 and count.macs.sum() == 0


def test_graded_input_costs_macs_on_chip_and_dense_macs_on_host():
    # Event counts (graded) into a chip conv: one MAC per non-zero count per synapse; analog pixels: host, dense.
    weight = torch.randn(3, 2, 3, 3)
    x = np.zeros((2, 4, 2, 6, 6), np.float32)
    x[:, :, 0, 0, 0] = 3.0  # one corner event per step: it reaches 2 x 2 output positions of each of 3 channels
    events = _counts(_graph([_conv("c", weight, padding=(1, 1)), ir.LIF("s", [])], (2, 6, 6), 4, "graded"), x)["c"]
    assert events.placement == "chip" and list(events.macs) == [12.0] * 4 and events.acs.sum() == 0
    pixels = _counts(_graph([_conv("c", weight, padding=(1, 1)), ir.LIF("s", [])], (2, 6, 6), 4, "analog"), x)["c"]
    assert pixels.placement == "host" and list(pixels.macs) == [3 * 2 * (3 * 6 - 2) ** 2] * 4


def test_paper_convention_is_syops_rate_times_flops():
    # syops (syops/ops.py): a conv on spikes costs rate · K·Cin·Cout·Hout·Wout ACs, rate = the input's mean.
    # That is the paper mode's fr · FL; the faithful count is lower by the border pixels' missing synapses.
    torch.manual_seed(1)
    first, second = torch.rand(4, 1, 3, 3), torch.rand(4, 4, 3, 3) + 0.1
    graph = _graph([_conv("c1", first, padding=(1, 1)), ir.LIF("s1", [], threshold=0.3),
                    _conv("c2", second, padding=(1, 1)), ir.LIF("s2", [])], (1, 8, 8), 2, "analog")
    x = np.random.default_rng(0).random((3, 2, 1, 8, 8)).astype(np.float32)  # [N, T, ...]: not repeated
    _, values = graph.run(torch.as_tensor(x), record=True)
    rates = {"s1": values["s1"].mean(dim=(1, 2, 3, 4)).double().numpy(), "s2": np.zeros(2)}
    paper = {r["name"]: r for r in paper_report(graph, rates, load_preset("45nm"))["layers"]}
    syops_acs = sum(float(values["s1"][t].mean()) * 9 * 4 * 4 * 64 for t in range(2))
    assert paper["c2"]["acs"] == pytest.approx(syops_acs)
    assert paper["c1"]["macs"] == 9 * 4 * 64 * 2  # the first layer at every step: its input changes over T
    faithful = _counts(graph, x)["c2"].acs.sum()
    assert 0 < faithful < paper["c2"]["acs"]


# ------------------------------------------------------------------------------------------------ demo models


@pytest.fixture(scope="module")
def gac_demo(tmp_path_factory):
    """The GAC demo model exported to a deployment directory and loaded back, with 40 test digits."""
    arch = "gac-msresnet-tiny"
    x, _, calib = evaluation_data("digits", arch)
    path = tmp_path_factory.mktemp("energy") / arch
    export_deployment(load_checkpoint(demo_checkpoint(arch)), calib, path)
    return load_deployment(path), x[:40]


@pytest.fixture(scope="module")
def tcja_demo():
    arch = "tcja-tiny"
    x, _, calib = evaluation_data("digits", arch)
    compiled = compile_model(load_checkpoint(demo_checkpoint(arch)).model, arch, torch.as_tensor(calib))
    return compiled, x[:24]


def test_gac_demo_counts_equal_neurobench_on_every_chip_synapse(gac_demo):
    dep, x = gac_demo
    graph = dep.compiled.fixed
    report = deployment_report(dep, x, "fixed", load_preset("45nm"))
    rows = {r["name"]: r for r in report["modes"]["faithful"]["layers"]}
    _, act = run_fixed(graph, torch.as_tensor(x))
    chip_weights = dep.graphs[1]  # counted on the files: the integer weights the chip holds (0 where w rounds to 0)
    checked = 0
    for name, node in graph.nodes.items():
        if isinstance(node, ir.Conv2d) and node.placement == "chip" and graph.nodes[node.inputs[0]].kind == "binary":
            spikes = act.values[node.inputs[0]].flatten(0, 1)
            weight = chip_weights.nodes[name].weight.float()
            assert np.array_equal(weight.numpy(), node.quant["weight"])
            want = _neurobench(spikes, weight, stride=node.stride, padding=node.padding, groups=node.groups)
            assert rows[name]["acs"] == pytest.approx(want / len(x)), name
            checked += 1
    assert checked == 5  # conv1 and conv2 of both blocks and the head's average pool (the relayed stream's synapses
    # read graded values)
    # The deployment's first conv runs at every step (dense, padding excluded): 16 * 9 taps on 8x8 minus borders.
    assert rows["conv1_s.layer.module"]["macs"] == 4 * 16 * (3 * 8 - 2) ** 2
    # GAC encoder (T = 4, C = 16, 8x8, SCA k = 4 'same': 8*4 - 4 = 28 valid tap pairs per axis).
    sca = 16 * 16 * 28 ** 2
    assert rows["encoding"]["macs"] == 4 * 2 * sca + 2 * 2 * 4 * 2 + 3 * 4 * 16 * 64
    assert rows["encoding"]["acs"] == 2 * 4 * 16 * 64 + 2 * 2 + 4 + 4 * 16 * 64
    faithful = report["modes"]["faithful"]
    assert faithful["total_energy_mj"] == pytest.approx(
        sum(r["energy_mj"] for r in faithful["layers"]) + faithful["transfer_mj"])


def test_gac_demo_paper_mode_is_the_published_formula(gac_demo):
    dep, x = gac_demo
    report = deployment_report(dep, x, "fixed", load_preset("45nm"), mode="paper")
    fr = {k: np.array(v) for k, v in report["firing_rate"].items()}
    synapses = [("layer1.0.lif1", 9 * 16 * 16 * 64), ("layer1.0.lif2", 9 * 16 * 16 * 64),
                ("layer2.0.lif1", 9 * 16 * 32 * 16), ("layer2.0.lif2", 9 * 32 * 32 * 16), ("head_lif", 32 * 10)]
    want = 4.6 * 9 * 16 * 64 + 0.9 * sum(fr[lif].sum() * flops for lif, flops in synapses)  # conv1 once
    assert report["mode"] == "paper" and report["total_energy_mj"] == pytest.approx(want * PJ)
    rows = {r["name"]: r for r in report["layers"]}
    assert not rows["layer2.0.downsample.layer.module"]["counted"] and not rows["encoding"]["counted"]
    faithful = report["modes"]["faithful"]["total_energy_mj"]
    assert faithful > 10 * report["total_energy_mj"]  # the encoder's attention alone
    row = {r["row"]: r for r in report["comparison"]}
    assert row["attention and gates"]["paper_mj"] == 0 and row["attention and gates"]["faithful_mj"] > 0
    assert sum(r["faithful_mj"] for r in report["comparison"]) == pytest.approx(faithful)
    assert sum(r["paper_mj"] for r in report["comparison"]) == pytest.approx(report["total_energy_mj"])



def test_energy_command_on_a_deployment_directory(gac_demo, tmp_path):
    dep, x = gac_demo
    np.save(tmp_path / "x.npy", x[:8])
    _energy(dep.path, "--input", tmp_path / "x.npy", "--json", tmp_path / "e.json", "--html", tmp_path / "e.html")
    fresh = load_deployment(dep.path)
    report = deployment_report(fresh, x[:8], "fixed", load_preset("loihi2"))  # a deployment's default preset
    assert "compiled" not in vars(fresh)  # counted on the deployment's files: no model was rebuilt
    # One counting rule: the compiled graph in memory counts the same chip integers as the files.
    in_memory = build_report(dep.compiled.source, dep.compiled.fixed, record_activity(dep.compiled.fixed, "fixed",
                                                                                     x[:8]), load_preset("loihi2"))
    assert in_memory["modes"]["faithful"]["layers"] == report["modes"]["faithful"]["layers"]
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["samples"] == 8 and saved["backend"] == "fixed" and saved["preset"] == "loihi2"
    assert saved["total_energy_mj"] == pytest.approx(report["modes"]["faithful"]["total_energy_mj"])
    chip = saved["loihi2"]  # the static energy is in the total: the chips' static power over the latency
    assert chip["static_mj"] == pytest.approx(0.232 * chip["chips"] * chip["latency_ms"]) and chip["static_mj"] > 0
    assert saved["total_energy_mj"] == pytest.approx(sum(saved["modes"]["faithful"][k] for k in (
        "host_mj", "chip_mj", "transfer_mj", "static_mj")))
    assert {r["segment"] for r in saved["layers"]} == {"host0", "chip1"}
    assert (tmp_path / "e.html").read_text().count("data:image/png;base64,") == 3
    with pytest.raises(UserError, match="needs --input"):
        _energy(dep.path)
    with pytest.raises(UserError, match="are for the analytic mode"):
        _energy(dep.path, "--input", tmp_path / "x.npy", "--firing-rate", "0.1")


def test_energy_compares_both_forms_of_the_residual_stream_faithfully(gac_demo):
    """Export compared the relay and unroll forms by cores; the energy report adds each form's faithful energy on
    the same inputs, counted as the deployment is counted."""
    dep, x = gac_demo
    report = deployment_report(dep, x[:8], "folded", load_preset("loihi2"))
    forms = report["residual_forms"]
    assert set(forms) == {"relay", "unroll"}
    assert [f for f, v in forms.items() if v["kept"]] == [dep.manifest["residual"]] == ["relay"]
    for form, v in forms.items():
        assert v["cores"] == dep.manifest["residual_forms"][form]["cores"]  # the resource model export used
        assert v["total_energy_mj"] == pytest.approx(sum(v[k] for k in ("chip_mj", "host_mj", "transfer_mj",
                                                                        "static_mj")))
    # the kept form from the same folded activity: the deployment's own count, but for weights quantized to zero
    assert forms["relay"]["chip_mj"] == pytest.approx(report["modes"]["faithful"]["chip_mj"], rel=0.02)
    assert forms["relay"]["host_mj"] == pytest.approx(report["modes"]["faithful"]["host_mj"])
    # unrolled, the encoder's contribution to every block crosses to the chip: more transfers, and more chip work
    assert forms["unroll"]["transfer_mj"] > forms["relay"]["transfer_mj"]
    assert forms["unroll"]["total_energy_mj"] > forms["relay"]["total_energy_mj"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_html_report_renders_in_headless_chromium_with_one_unit_per_table(gac_demo, tmp_path):
    """The HTML report in a real browser: the page renders its plots (the screenshot holds a lot of non-white
    pixels), its tables name one unit each, and it says which snn2hw, when, and which source it describes."""
    from PIL import Image

    dep, x = gac_demo
    report = deployment_report(dep, x[:4], "fixed", load_preset("loihi2"))
    page = render_html(report)
    (tmp_path / "r.html").write_text(page)
    assert page.count("data:image/png;base64,") == 3  # the parts, the layers (host and chip panels), the rates
    assert re.findall(r"<th>energy \((mJ|µJ|nJ|pJ)\)</th>", page) and report["snn2hw_version"] in page
    assert dep.manifest["source"]["sha256"] in page and "chip static" in page
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1280,3000", f"--screenshot={tmp_path / 'r.png'}", (tmp_path / "r.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(tmp_path / "r.png").convert("L"))
    assert pixels.shape == (3000, 1280) and (pixels < 200).mean() > 0.05  # text, tables and plots, not a blank page


def test_tcja_demo_gates_on_host_and_graded_inputs_as_macs(tcja_demo):
    compiled, x = tcja_demo
    loihi2 = load_preset("loihi2")
    report = build_report(compiled.source, compiled.fixed, record_activity(compiled.fixed, "fixed", x), loihi2,
                          arch=compiled.arch)
    json.dumps(report)
    rows = {r["name"]: r for r in report["layers"]}
    # TCJA(4, 4) on [T=8, C=16, 16x16]: the two 'same' 1-D convs (k=4: 4*L - 4 valid pairs), a·b and sigmoid, x·gate
    volume = 8 * 16 * 16 * 16
    assert rows["conv.2"]["macs"] == 8 * 8 * (4 * 16 - 4) + 16 * 16 * (4 * 8 - 4) + 2 * 8 * 16 + volume
    assert rows["conv.2"]["acs"] == volume and rows["conv.2"]["placement"] == "host"
    # Gated spikes (after the host's max-pool) into the chip conv: MACs; spikes into fc.5.0: ACs.
    assert rows["conv.4.0"]["placement"] == "chip" and rows["conv.4.0"]["macs"] > 0 == rows["conv.4.0"]["acs"]
    assert rows["fc.5.0"]["acs"] > 0 == rows["fc.5.0"]["macs"]
    assert rows["conv.1"]["neuron_updates"] == 8 * 16 * 16 * 16
    assert rows["conv.1"]["energy_mj"] == pytest.approx(  # Loihi neuron update + spike
        (8 * 16 * 16 * 16 * loihi2.pj("chip", "neuron_update") + rows["conv.1"]["spikes"] * loihi2.pj("chip", "spike"))
        * PJ)
    cuts = report["modes"]["faithful"]["cuts"]
    assert len(cuts) == 6 and {c["bits_per_value"] for c in cuts} == {1, 16}  # spikes back, 16-bit graded payloads in
    paper = {r["name"]: r for r in report["modes"]["paper"]["layers"]}
    assert paper["conv.4.0"]["acs"] > 0 and paper["conv.2"]["energy_mj"] == 0  # the paper: spikes, no gate cost


# ------------------------------------------------------------------------------------- published GAC energies


@pytest.mark.parametrize("arch, timesteps, rate, published", [
    ("gac-msresnet18-imagenet", 4, 0.1570, 1.49), ("gac-msresnet18-imagenet", 6, 0.1985, 2.34),
    ("gac-msresnet34-imagenet", 4, 0.1306, 2.20), ("gac-msresnet34-imagenet", 6, 0.1490, 3.38)])
def test_published_gac_imagenet_energies_within_one_percent(arch, timesteps, rate, published):
    """bollossom/GAC README: 1.49 / 2.34 / 2.20 / 3.38 mJ; rates implied by them (shared/reference/energy.md §7.4)."""
    source = convert(build_model(arch, timesteps=timesteps, device="meta"), arch)
    rates = {n: np.full(timesteps, rate) for n, node in source.nodes.items() if isinstance(node, ir.LIF)}
    report = paper_report(source, rates, load_preset("45nm"))
    assert abs(report["total_energy_mj"] - published) / published < 0.01
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["conv1.0"]["macs"] == 118_013_952  # counted once
    spike_convs = sum(r["flops"] for r in report["layers"] if r["op"] == "Conv2d" and r["counted"]
                      and r["name"] != "conv1.0") / timesteps
    assert spike_convs == {"gac-msresnet18-imagenet": 1_676_279_808, "gac-msresnet34-imagenet": 3_525_967_872}[arch]
    # Counting conv1 at every step would leave a negative AC share for R18 at T = 4: the convention is "once".
    assert timesteps * 118_013_952 * 4.6 * PJ > published or arch != "gac-msresnet18-imagenet" or timesteps != 4


def test_analytic_imagenet_faithful_counts_the_encoder_and_names_the_head_no_core_holds():
    report = analytic_report("gac-msresnet18-imagenet", 4, "0.157", load_preset("45nm"))
    paper, faithful = report["modes"]["paper"], report["modes"]["faithful"]
    assert paper["total_energy_mj"] == pytest.approx(1.49, rel=0.01)
    encoding = next(r for r in faithful["layers"] if r["name"] == "encoding")
    assert encoding["macs"] >= 4 * 2 * 64 * 64 * 444 ** 2  # SCA: 2 convs 64->64, k=4 'same' on 112^2, T = 4
    assert encoding["energy_mj"] == pytest.approx(29.77, rel=0.01)  # reference check 5: 30.25 mJ with the padding
    assert faithful["total_energy_mj"] > 20 * paper["total_energy_mj"]
    # the head's average pool is a synapse of its own, so the Linear reads 512 averages per neuron (with the pool
    # folded in it read 25,088: more dense weights than a core holds)
    assert report["loihi2"]["violations"] == []
    layers = {r["layer"]: r for r in report["loihi2"]["layers"]}
    assert layers["fc1.relay"]["dense_fan_in"] == 512
    # the relayed stream: the head reads its relay through one identity synapse, not every earlier block's kernels
    assert layers["head_lif"]["max_fan_in"] == 1 and layers["head_lif"]["limited_by"] == "neurons"


# ----------------------------------------------------------------------------------------------- Loihi 2 resources


def test_loihi_resources_hand_checked_and_violations_named():
    limits = load_preset("loihi2").core
    conv = _graph([_conv("c", torch.randn(8, 4, 3, 3), padding=(1, 1)), ir.LIF("s", [])], (4, 16, 16))
    (row,) = loihi_resources(conv, limits)["layers"]
    assert row["synapses"] == 8 * 4 * (3 * 16 - 2) ** 2 and row["max_fan_in"] == 36
    assert row["weights"] == row["conv_kernel_weights"] == 8 * 4 * 9
    # 16 columns of 8 x 16 neurons fit under 4,095 neurons: one core
    assert (row["cores"], row["neurons_per_core"], row["columns_per_core"]) == (1, 2048, 16)
    dense = _graph([ir.Linear("fc", [], weight=torch.randn(10, 30_000)), ir.LIF("big", [])], (30_000,))
    result = loihi_resources(dense, limits)
    assert [(v["layer"], v["limit"]) for v in result["violations"]] == [("big", "dense_weights")]
    assert "big" in result["violations"][0]["message"] and "calibrated" in result["violations"][0]["message"]


# ------------------------------------------------------------------------------------------------ presets, command


def test_presets_carry_values_sources_and_estimates(tmp_path):
    p45, int8, loihi = load_preset("45nm"), load_preset("int8-45nm"), load_preset("loihi2")
    assert (p45.pj("host", "mac"), p45.pj("chip", "ac")) == (4.6, 0.9)
    assert (int8.pj("host", "mac"), int8.pj("host", "ac")) == (0.23, 0.03)
    assert loihi.pj("chip", "ac") == 23.13 and loihi.chip["ac"].basis == "calibrated" and loihi.chip["ac"].estimated
    assert p45.host["mac"].basis == "document" and not p45.host["mac"].estimated
    assert loihi.power["static_w_per_chip"].basis == "measured on silicon" and p45.power is None
    assert loihi.core["cores_per_chip"].value == 128 and all(c.source for c in loihi.core.values())
    user = tmp_path / "mine.toml"
    user.write_text(Path(p45.file).read_text().replace("pj = 4.6", "pj = 1.0"))
    assert load_preset(str(user)).pj("host", "mac") == 1.0 and load_preset(str(user)).core is None
    user.write_text('[host.mac]\npj = 1.0\n')
    with pytest.raises(UserError, match=r"host.mac\] needs"):
        load_preset(str(user))
    with pytest.raises(UserError, match="not a file and not a built-in preset"):
        load_preset("7nm")


def test_energy_command_analytic_writes_json_and_offline_html(tmp_path):
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"default": 0.1, "conv.1": [0.2] * 8, "input": 0.05}))
    _energy("--arch", "tcja-tiny", "--firing-rate", rates, "--preset", "int8-45nm", "--json", tmp_path / "e.json",
            "--html", tmp_path / "e.html")
    report = analytic_report("tcja-tiny", None, str(rates), load_preset("int8-45nm"))
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["mode"] == "faithful" and saved["preset"] == "int8-45nm" and saved["total_energy_mj"] > 0
    assert {"name", "segment", "macs", "acs", "neuron_updates", "spikes", "energy_mj"} <= set(saved["layers"][0])
    assert saved["firing_rate"]["conv.1"] == pytest.approx([0.2] * 8)
    assert saved["firing_rate"]["fc.3"] == pytest.approx([0.1] * 8)
    assert saved["total_energy_mj"] == pytest.approx(report["total_energy_mj"])
    page = (tmp_path / "e.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "src=\"http" not in page and "href=\"http" not in page and "<script" not in page
    rates.write_text(json.dumps({"conv.1": 0.2}))
    with pytest.raises(UserError, match="no rate for layer conv.5"):
        _energy("--arch", "tcja-tiny", "--firing-rate", rates)
    with pytest.raises(UserError, match="--firing-rate: the rate of"):
        _energy("--arch", "tcja-tiny", "--firing-rate", "1.5")
    with pytest.raises(UserError, match="--mode"):
        _energy("--arch", "tcja-tiny", "--firing-rate", "0.1", "--mode", "exact")
    with pytest.raises(UserError, match="needs DEPLOY_DIR"):
        _energy()


def test_rate_activity_derives_pooled_and_gated_densities():
    graph = partition_host_chip(convert(build_model("tcja-tiny", device="meta"), "tcja-tiny"))
    activity = RateActivity(graph, {n: np.full(8, 0.1) for n, node in graph.nodes.items()
                                    if isinstance(node, ir.LIF)})
    assert activity.density("conv.2").ravel()[0] == pytest.approx(0.1)  # gate · spikes
    assert activity.density("conv.3.0").ravel()[0] == pytest.approx(1 - 0.9 ** 4)  # 2x2 max-pool, independent
    assert math.isclose(activity.density("input").ravel()[0], 1.0)


def test_recorded_activity_is_fed_batches_and_derives_flattenings():
    """RecordedActivity runs nothing: it sums what it is given, batch by batch; a flattening nobody recorded gets its
    input's densities, any other missing value is an error naming the layer."""
    graph = _graph([ir.LIF("s", []), ir.Flatten("flat", []), ir.Linear("fc", [], weight=torch.randn(3, 8))],
                   (2, 2, 2), 2)
    spikes = torch.zeros(2, 4, 2, 2, 2)  # [T, N, C, H, W]
    spikes[:, 0, 0] = 1  # sample 0 spikes at the 4 positions of channel 0, at both steps
    activity = RecordedActivity(graph)
    activity.add({"input": spikes, "s": spikes})
    activity.add({"input": spikes[:, :2], "s": spikes[:, :2]})
    assert activity.samples == 6
    assert activity.density("s")[:, 0].tolist() == [[[2 / 6] * 2] * 2] * 2
    assert activity.density("flat").tolist() == [[2 / 6] * 4 + [0.0] * 4] * 2
    with pytest.raises(UserError, match="no recorded values for layer fc"):
        activity.density("fc")
