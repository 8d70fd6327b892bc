"""The Loihi 2 chip model against the silicon (lava-dl's PilotNet LIF on one chip: the compiler's per-core table and
the board's measurements) and its mechanisms one by one."""
import json

import numpy as np
import pytest
import torch

from benchmarks.loihi2_calibration import (LOIHI1_NS, LOIHI1_PJ, PILOTNET_CORES, PILOTNET_LAYER_CORES,
                                           PILOTNET_STEP_US, PILOTNET_TOTAL_MJ, calibrate)
from snn2hw import ir
from snn2hw.energy import SYSTEMS, check_system, load_preset, loihi_resources
from snn2hw.energy.resources import layer_layout
from snn2hw.errors import UserError

LIMITS = load_preset("loihi2").core


def test_resource_model_predicts_the_pilotnet_compiler_table_layer_by_layer(pilotnet_gts, tmp_path, run_cli):
    """The acceptance check, through the CLI: total cores within 15 % of the compiler's 74, every layer within one
    core or 30 %; time per step within 30 % of 152.8 µs and the energy per inference within 30 % of 1.661 mJ, with
    the static and dynamic parts beside it."""
    np.save(tmp_path / "image.npy", np.load(pilotnet_gts / "image.npy").transpose(2, 1, 0)[None])
    res = run_cli("energy", pilotnet_gts / "network.net", "--input", tmp_path / "image.npy", "--timesteps", "16",
                  "--preset", "loihi2", "--json", tmp_path / "e.json")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "e.json").read_text())
    chip = report["loihi2"]
    assert abs(chip["cores"] - PILOTNET_CORES) <= 0.15 * PILOTNET_CORES
    for row in chip["layers"]:
        expected = PILOTNET_LAYER_CORES[row["layer"]]
        assert abs(row["cores"] - expected) <= max(1, 0.3 * expected), row
    assert abs(chip["time_per_step_us"] - PILOTNET_STEP_US) <= 0.3 * PILOTNET_STEP_US
    assert abs(report["total_energy_mj"] - PILOTNET_TOTAL_MJ) <= 0.3 * PILOTNET_TOTAL_MJ
    assert chip["static_mj"] > 0 and chip["dynamic_mj"] > 0
    assert report["total_energy_mj"] == pytest.approx(chip["static_mj"] + chip["dynamic_mj"]
                                                      + report["modes"]["faithful"]["transfer_mj"])
    assert chip["system"] == {**chip["system"], "name": "kapohopoint", "fits": True}


def test_preset_holds_what_the_calibration_on_pilotnet_gives(pilotnet_gts):
    """The preset's calibrated chip energies and times are Loihi 1's scaled by the fit to PilotNet's measurements
    (rounded to 4 significant digits in the TOML): a change of the counts or the model shows here."""
    fit = calibrate(pilotnet_gts)
    preset = load_preset("loihi2")
    assert 0.5 < fit["energy_scale"] < 2 and 0.1 < fit["time_scale"] < 10
    for op in LOIHI1_PJ:
        assert preset.chip[op].value == pytest.approx(fit["chip_pj"][op], rel=1e-3), op
    for key in LOIHI1_NS:
        assert preset.time[key].value == pytest.approx(fit["time_ns"][key], rel=1e-3), key


def test_layer_layout_splits_maps_into_power_of_two_column_blocks():
    # PilotNet's first conv: 24 x 32 per column, 4 columns (3,072 neurons) per core, 99 columns → 25 cores
    assert layer_layout((24, 32, 99), 648, 0, LIMITS) == {
        "cores": 25, "neurons_per_core": 3072, "columns_per_core": 4, "channel_splits": 1, "limited_by": "neurons"}
    # PilotNet's last conv: all 20 columns (2,560 neurons) would fit one core, but blocks are powers of two: 16 + 4
    assert layer_layout((64, 2, 20), 36864, 0, LIMITS)["cores"] == 2


def test_layer_layout_splits_channels_when_kernels_exceed_a_core():
    kernel = int(LIMITS["conv_kernel_weights"].value)
    layout = layer_layout((64, 8, 8), 3 * kernel + 1, 0, LIMITS)  # four cores' worth of kernels
    assert layout["channel_splits"] == 4 and layout["limited_by"] == "conv kernels"
    assert layout["neurons_per_core"] == 8 * 16 * 8 and layout["cores"] == 4  # 16 channels x 8 rows x 8 columns


def test_layer_layout_spreads_a_wide_dense_layer_over_cores_and_names_one_too_wide():
    per_core = int(LIMITS["dense_weights"].value // 2560)
    layout = layer_layout((100,), 0, 2560, LIMITS)
    assert layout["neurons_per_core"] == per_core and layout["cores"] == -(-100 // per_core)
    assert layer_layout((10,), 0, int(LIMITS["dense_weights"].value) + 1, LIMITS)["cores"] is None


def _chain(channels: int, size: int, convs: int) -> ir.Graph:
    """Input → convs 3x3 same (`channels` each) with LIF after each, all on the chip."""
    nodes = {"input": ir.Input("input", [], (channels, size, size), "binary", "host", timesteps=1)}
    prev = "input"
    for i in range(convs):
        nodes[f"c{i}"] = ir.Conv2d(f"c{i}", [prev], (channels, size, size), "analog", "chip",
                                   weight=torch.ones(channels, channels, 3, 3), padding=(1, 1))
        nodes[f"s{i}"] = ir.LIF(f"s{i}", [f"c{i}"], (channels, size, size), "binary", "chip")
        prev = f"s{i}"
    return ir.Graph(nodes, 1, (channels, size, size))


def test_system_check_refuses_what_does_not_fit_and_names_the_system():
    resources = loihi_resources(_chain(256, 32, 40), LIMITS, "oheogulch")
    assert resources["cores"] > SYSTEMS["oheogulch"].cores_per_chip and not resources["system"]["fits"]
    with pytest.raises(UserError, match=r"--system oheogulch: the deployment needs .* cores .*more than the 1 chip"):
        check_system(resources, "oheogulch")
    check_system(loihi_resources(_chain(256, 32, 40), LIMITS, "halapoint"), "halapoint")
    assert SYSTEMS["halapoint"].chips * SYSTEMS["halapoint"].cores_per_chip == 140_544


def test_export_refuses_a_model_that_does_not_fit_the_system_before_writing(tmp_path, run_cli):
    """Official-size gac-msresnet18-cifar (random weights) needs hundreds of cores: refused on one chip, nothing
    written; --system none exports it and says how many cores and chips it needs."""
    from snn2hw.checkpoint import save_checkpoint
    from snn2hw.models.zoo import build_model

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", build_model("gac-msresnet18-cifar"), "gac-msresnet18-cifar", {})
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32))
    args = ["export", tmp_path / "m.pt", "--calibration", tmp_path / "x.npy", "-o", tmp_path / "d"]
    res = run_cli(*args, "--system", "oheogulch")
    assert res.returncode == 2 and "--system oheogulch: the deployment needs" in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "d").exists()
    res = run_cli(*args, "--system", "none")
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["loihi2"]["cores"] > 128 and manifest["loihi2"]["system"] is None
    assert f"{manifest['loihi2']['cores']:,} cores" in res.stdout
