"""The bundled demo models, the training recipes, and official-format checkpoints for every arch."""
import numpy as np
import pytest
import torch

from snn2hw.ladder import run_model
from snn2hw.checkpoint import load_checkpoint
from snn2hw.data import DEMO_DATA
from snn2hw.demo import demo_checkpoint
from snn2hw.models.train import accuracy, train
from snn2hw.models.zoo import ARCHS, NIR_ARCH, build_model, class_scores


@pytest.mark.parametrize("arch", ["tcja-tiny", "gac-msresnet-tiny"])
def test_bundled_demo_models_reach_90_percent_on_test_digits(arch):
    loaded = load_checkpoint(demo_checkpoint(arch))  # our own format: no --arch needed
    assert loaded.arch == arch
    x, y = DEMO_DATA[ARCHS[arch].demo_data]("test")
    output, counts = run_model(loaded.model, x, batch_size=90)
    acc = float((class_scores(arch, torch.as_tensor(output)).argmax(1).numpy() == y).mean())
    assert acc >= 0.90
    assert acc == pytest.approx(loaded.meta["metrics"]["test_accuracy"])  # what training recorded, reproduced
    assert all(c.shape == (len(x), loaded.model.timesteps) and c.sum() > 0 for c in counts.values())


def test_training_recipe_learns():
    model, options, metrics = train("gac-msresnet-tiny", epochs=3, log=lambda _: None)
    x, y = DEMO_DATA["digit-images"]("test")
    assert metrics["test_accuracy"] == accuracy(model, "gac-msresnet-tiny", x, y) > 0.5  # chance is 0.1


def _official_layout(arch: str, sd: dict):
    """How each official training script saves (see models/tcja.py and models/msresnet.py)."""
    if arch.startswith("tcja"):
        return {"net": sd, "optimizer": {}, "lr_scheduler": {}, "epoch": 0, "max_test_acc": 0.0}
    if arch.endswith("imagenet"):  # DDP: keys carry module.
        return {"module." + k: v for k, v in sd.items()}
    return sd


@pytest.mark.parametrize("arch", [a for a in ARCHS if not ARCHS[a].demo_data and a != NIR_ARCH])  # nir: no checkpoint
def test_official_format_checkpoint_loads_under_its_arch(tmp_path, arch):
    torch.manual_seed(0)
    sd = build_model(arch).state_dict()
    torch.save(_official_layout(arch, sd), tmp_path / "official.pt")
    loaded = load_checkpoint(tmp_path / "official.pt", arch=arch)
    got = loaded.model.state_dict()
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
