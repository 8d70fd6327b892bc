"""The Loihi 2 chip model against the silicon: PilotNet LIF as lava-dl's benchmark notebook ran it on one Loihi 2
chip, and the fit of the preset's calibrated constants (`snn2hw/energy/presets/loihi2.toml`).

The activity is snn2hw's fixed-point run of lava-dl's `gts/pilotnet_lif/network.net` on its `image.npy` for one
16-step frame (the simulator reproduces that network's silicon ground truth bit for bit). Priced with Loihi 1's
per-operation energies and times (Davies et al. 2018, Table 2), the model gives a dynamic energy and a compute time
per step; one scale each makes them equal to the measured 1.094 mJ and 152.8 µs. The preset holds the scaled
figures; this reports the scales, the figures they give, what the preset holds, the preset's predictions against
every measured number, and two cross-checks against Hala Point's published figures."""
import dataclasses
import os
from pathlib import Path

import numpy as np

from snn2hw.energy import load_preset
from snn2hw.measure import netx_report
from snn2hw.netx_import import read_netx

ROOT = Path(__file__).resolve().parent.parent
STEPS_PER_FRAME = 16  # the notebook's frame length (and the network's reset interval)

# Measured on Loihi 2 silicon (lava-dl tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb, lava-nc/lava-dl
# d825ac5): one chip, PilotNet LIF, 16 steps per frame.
PILOTNET_CORES = 74  # the compiler's per-core table (its per-layer counts: PILOTNET_LAYER_CORES)
PILOTNET_LAYER_CORES = {"layer0": 13, "layer1": 25, "layer2": 13, "layer3": 3, "layer4": 3, "layer5": 2,
                        "layer7": 12, "layer8": 1, "layer9": 1, "layer10": 1}
PILOTNET_STEP_US = 152.8  # 408.91 frames/s at 16 steps per frame
PILOTNET_DYNAMIC_MJ = 1.094  # per inference (frame)
PILOTNET_TOTAL_MJ = 1.661
PILOTNET_STATIC_W = 0.232

# Loihi 1 per-operation figures (Davies et al., IEEE Micro 38(1) 2018, Table 2; document, quoted from memory in
# shared/reference/energy.md: verify against the paper): the ratios the calibration keeps.
LOIHI1_PJ = {"ac": 23.6, "mac": 23.6, "neuron_update": 52.0, "spike": 1.7}
LOIHI1_NS = {"synop_ns": 3.5, "neuron_update_ns": 8.4, "spike_ns": 2.1}

# Hala Point (Intel, April 2024; document): 1,152 chips, 140,544 cores, 380 trillion synaptic ops/s, 2,600 W maximum.
HALA_POINT_SYNOPS_PER_S = 380e12
HALA_POINT_CORES = 140_544
HALA_POINT_MAX_W = 2600


def find_pilotnet_gts() -> Path | None:
    """lava-dl's gts/pilotnet_lif: SNN2HW_PILOTNET_GTS, or where the pinned lava-dl wheel installs it in .venv-lava."""
    if os.environ.get("SNN2HW_PILOTNET_GTS"):
        return Path(os.environ["SNN2HW_PILOTNET_GTS"])
    found = sorted((ROOT / ".venv-lava" / "lib").glob("python*/site-packages/tests/lava/lib/dl/netx/gts/pilotnet_lif"))
    return found[0] if found else None


def pilotnet_report(gts: Path, preset) -> dict:
    """The energy report of PilotNet LIF on its ground-truth image, one frame, on one chip."""
    image = np.load(gts / "image.npy").transpose(2, 1, 0)[None].astype(np.int64)  # (W, H, C) → [1, C, H, W]
    return netx_report(read_netx(gts / "network.net"), image, STEPS_PER_FRAME, preset, system="oheogulch")


def calibrate(gts: Path) -> dict:
    """The energy and time scales that make Loihi 1's figures reproduce PilotNet LIF's measurements, and the
    constants they give."""
    preset = load_preset("loihi2")
    loihi1 = dataclasses.replace(
        preset, chip={k: dataclasses.replace(c, value=LOIHI1_PJ[k]) for k, c in preset.chip.items()},
        time={k: dataclasses.replace(c, value=LOIHI1_NS.get(k, c.value)) for k, c in preset.time.items()})
    chip = pilotnet_report(gts, loihi1)["loihi2"]
    energy_scale = PILOTNET_DYNAMIC_MJ / chip["dynamic_mj"]
    time_scale = PILOTNET_STEP_US / chip["compute_time_per_step_us"]
    return {"energy_scale": energy_scale, "time_scale": time_scale,
            "chip_pj": {k: v * energy_scale for k, v in LOIHI1_PJ.items()},
            "time_ns": {k: v * time_scale for k, v in LOIHI1_NS.items()}}


def run() -> list[dict]:
    gts = find_pilotnet_gts()
    if gts is None:
        raise SystemExit("lava-dl's gts/pilotnet_lif is missing: `make setup` installs it with the Lava environment")
    fit = calibrate(gts)
    preset = load_preset("loihi2")
    held = {**{f"chip.{k}": preset.chip[k].value for k in LOIHI1_PJ},
            **{f"time.{k}": preset.time[k].value for k in LOIHI1_NS}}
    fitted = {**{f"chip.{k}": v for k, v in fit["chip_pj"].items()},
              **{f"time.{k}": v for k, v in fit["time_ns"].items()}}
    # the fit against the preset's value; then the preset's predictions against silicon, then the cross-checks
    rows = [{"quantity": f"fit of {k}: Loihi 1 x {fit['energy_scale' if k.startswith('chip') else 'time_scale']:.4f}"
                         " (reference: the preset)",
             "snn2hw": round(fitted[k], 3), "reference": held[k], "ratio": round(fitted[k] / held[k], 3)}
            for k in fitted]
    report = pilotnet_report(gts, preset)
    chip = report["loihi2"]
    layers = {r["layer"]: r["cores"] for r in chip["layers"]}
    rows += [{"quantity": f"cores {k}", "snn2hw": layers[k], "reference": v, "ratio": round(layers[k] / v, 3)}
             for k, v in PILOTNET_LAYER_CORES.items()]
    for name, model, measured in (("cores", chip["cores"], PILOTNET_CORES),
                                  ("compute µs per step", chip["compute_time_per_step_us"], PILOTNET_STEP_US),
                                  ("µs per step, with the frame's bias write", chip["time_per_step_us"],
                                   PILOTNET_STEP_US),
                                  ("dynamic mJ per inference", chip["dynamic_mj"], PILOTNET_DYNAMIC_MJ),
                                  ("static mJ per inference", chip["static_mj"],
                                   PILOTNET_STATIC_W * PILOTNET_STEP_US * STEPS_PER_FRAME * 1e-6 * 1e3),
                                  ("total mJ per inference", report["total_energy_mj"], PILOTNET_TOTAL_MJ)):
        rows.append({"quantity": name, "snn2hw": round(model, 3), "reference": measured,
                     "ratio": round(model / measured, 3)})
    synop_pj, synop_ns = preset.chip["ac"].value, preset.time["synop_ns"].value
    hala_pj = HALA_POINT_MAX_W / HALA_POINT_SYNOPS_PER_S * 1e12
    hala_ns = HALA_POINT_CORES / HALA_POINT_SYNOPS_PER_S * 1e9
    rows += [{"quantity": "cross-check: pJ per synaptic op (Hala Point: 2,600 W max / 380 T synops/s, an upper "
                          "bound)", "snn2hw": synop_pj, "reference": round(hala_pj, 2),
              "ratio": round(synop_pj / hala_pj, 2)},
             {"quantity": "cross-check: ns per synaptic op and core (Hala Point: 140,544 cores / 380 T synops/s)",
              "snn2hw": synop_ns, "reference": round(hala_ns, 3), "ratio": round(synop_ns / hala_ns, 2)}]
    return rows
