"""Checkpoint loading in every layout the official training scripts (and we) save."""
import torch
import pytest

from snn2hw.checkpoint import load_checkpoint, save_checkpoint
from snn2hw.errors import UserError
from snn2hw.models.zoo import build_model
from helpers import FileCreatingPayload


@pytest.fixture(scope="module")
def gac_sd():
    torch.manual_seed(1)
    model = build_model("gac-msresnet-tiny")
    for m in model.modules():  # non-default BN statistics, so a load that drops them would be caught
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    return model.state_dict()


def _same(model, sd):
    got = model.state_dict()
    return got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"net": sd, "optimizer": {"state": {}}, "epoch": 7, "max_test_acc": 0.91},  # TCJA
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": sd},
    lambda sd: {"module." + k: v for k, v in sd.items()},  # DataParallel
    lambda sd: {"net": {"module." + k: v for k, v in sd.items()}},
], ids=["bare", "tcja-net", "state_dict", "model", "module-prefix", "net-module-prefix"])
def test_official_layouts_load_exactly(tmp_path, gac_sd, wrap):
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(gac_sd), path)
    loaded = load_checkpoint(path, arch="gac-msresnet-tiny")
    assert _same(loaded.model, gac_sd) and not loaded.model.training


def test_own_checkpoint_needs_no_arch(tmp_path):
    model = build_model("tcja-tiny", num_classes=4)
    save_checkpoint(tmp_path / "c.pt", model, "tcja-tiny", {"num_classes": 4}, metrics={"test_accuracy": 0.5})
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.arch == "tcja-tiny" and loaded.options == {"num_classes": 4, "timesteps": 8, "channels": 16}
    assert _same(loaded.model, model.state_dict()) and loaded.meta["metrics"]["test_accuracy"] == 0.5


def test_class_count_is_inferred_from_the_classifier(tmp_path, gac_sd):
    sd = build_model("gac-msresnet-tiny", num_classes=7).state_dict()
    torch.save(sd, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt", arch="gac-msresnet-tiny")
    assert loaded.options["num_classes"] == 7 and any("num-classes 7" in n for n in loaded.notes)


def test_missing_unexpected_and_misshaped_keys_are_named(tmp_path, gac_sd):
    sd = dict(gac_sd)
    first, second = list(sd)[:2]
    del sd[first]
    sd["extra.weight"] = torch.zeros(3)
    sd[second] = torch.zeros(1, 2, 3)
    torch.save(sd, tmp_path / "c.pt")
    with pytest.raises(UserError) as e:
        load_checkpoint(tmp_path / "c.pt", arch="gac-msresnet-tiny")
    msg = str(e.value)
    assert "1 missing keys" in msg and first in msg and "extra.weight" in msg and second in msg
    assert f"does not fit arch gac-msresnet-tiny (the first, in the model's order: {first}):" in msg
    assert "\n" not in msg


def test_wrong_arch_names_the_best_fit_and_no_arch_takes_the_one_that_fits(tmp_path, gac_sd):
    torch.save(gac_sd, tmp_path / "c.pt")
    with pytest.raises(UserError, match="best fit: gac-msresnet-tiny"):
        load_checkpoint(tmp_path / "c.pt", arch="tcja-tiny")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.arch == "gac-msresnet-tiny" and _same(loaded.model, gac_sd)
    assert "arch gac-msresnet-tiny: the only one whose keys and shapes all fit the checkpoint" in loaded.notes
    torch.save({"a.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match=r"fits no known architecture: pass --arch; known: ") as e:
        load_checkpoint(tmp_path / "other.pt")
    assert "closest" not in str(e.value)  # nothing fits half its keys: no name to mislead


# Official settings users train besides the defaults (GAC README rows, TCJA scripts' -T 16 and -channels, the
# ResNet-34 SCA kernel its file's comment prescribes), saved as each repo saves: TCJA under 'net', GAC bare.
TRAINED = [("tcja-dvs128", {"timesteps": 16, "channels": 64}), ("tcja-cifar10dvs", {"timesteps": 16}),
           ("tcja-ncaltech101", {"timesteps": 16}), ("gac-msresnet18-cifar", {"timesteps": 4}),
           ("gac-msresnet18-cifar", {"timesteps": 2}), ("gac-msresnet18-imagenet", {"timesteps": 6}),
           ("gac-msresnet34-imagenet", {"timesteps": 6, "sca_kernel": 8})]


@pytest.mark.parametrize("arch, options", TRAINED, ids=[f"{a}-{o}" for a, o in TRAINED])
def test_t_widths_and_kernels_are_read_from_the_weights(tmp_path, arch, options):
    torch.manual_seed(0)
    sd = build_model(arch, **options).state_dict()
    torch.save({"net": sd, "epoch": 3} if arch.startswith("tcja") else sd, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")  # no --arch: the weights fit one architecture
    assert loaded.arch == arch and _same(loaded.model, sd)
    assert {k: loaded.options[k] for k in options} == options and loaded.model.timesteps == options.get(
        "timesteps", loaded.options["timesteps"])
    assert any(n.startswith(f"T = {loaded.model.timesteps}, read from the weights") for n in loaded.notes)
    with pytest.raises(UserError, match=rf"was trained with T = {loaded.model.timesteps} \(its weights say so\); "
                                        rf"--timesteps 5 contradicts it\.$"):
        load_checkpoint(tmp_path / "c.pt", timesteps=5)


def test_t_the_weights_do_not_determine_is_stated_or_taken_from_timesteps(tmp_path):
    """MS-ResNet-18 without GAC has no weight over T: trained at T = 4 it loads as T = 6 only with a note saying
    so, and as T = 4 with --timesteps 4; the output has the T it runs at."""
    sd = build_model("msresnet18-cifar", timesteps=4).state_dict()
    torch.save(sd, tmp_path / "c.pt")
    default = load_checkpoint(tmp_path / "c.pt")
    assert default.model.timesteps == 6
    assert "T = 6, msresnet18-cifar's official default: the checkpoint does not record T (pass --timesteps if it " \
           "was trained with another)" in default.notes
    told = load_checkpoint(tmp_path / "c.pt", timesteps=4)
    assert told.options["timesteps"] == 4 and not any(n.startswith("T = ") for n in told.notes)
    with torch.no_grad():
        assert told.model(torch.rand(1, 3, 32, 32)).shape == (1, 4, 10)


def test_a_recorded_option_the_arch_does_not_take_is_one_sentence(tmp_path, run_cli):
    model = build_model("tcja-tiny", num_classes=4)
    save_checkpoint(tmp_path / "c.pt", model, "tcja-tiny", {"num_classes": 4, "timestep": 8})
    with pytest.raises(UserError, match=r"records option timestep, which tcja-tiny does not take \(it takes "
                                        r"num_classes, timesteps, channels\)\.$"):
        load_checkpoint(tmp_path / "c.pt")
    save_checkpoint(tmp_path / "d.pt", model, "tcja-tiny", {"num_classes": 4, "timesteps": 6})
    result = run_cli("inspect", tmp_path / "d.pt")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "was trained with T = 8 (its weights say so); its recorded timesteps 6 contradicts it." in result.stderr


def test_pickled_code_is_refused_unless_trusted(tmp_path, gac_sd):
    target = tmp_path / "pwned"
    torch.save({"net": gac_sd, "extra": FileCreatingPayload(str(target))}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="--trust-pickle"):
        load_checkpoint(tmp_path / "evil.pt", arch="gac-msresnet-tiny")
    assert not target.exists()


def test_a_whole_module_loads_only_with_trust(tmp_path, gac_sd):
    model = build_model("gac-msresnet-tiny")
    model.load_state_dict(gac_sd)
    torch.save(model, tmp_path / "module.pt")
    with pytest.raises(UserError, match="pickled Python objects"):
        load_checkpoint(tmp_path / "module.pt", arch="gac-msresnet-tiny")
    loaded = load_checkpoint(tmp_path / "module.pt", arch="gac-msresnet-tiny", trust_pickle=True)
    assert _same(loaded.model, gac_sd) and any("--trust-pickle" in n for n in loaded.notes)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None], ids=["empty", "garbage", "truncated"])
def test_unreadable_files_give_one_sentence(tmp_path, gac_sd, content):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save(gac_sd, path)
        content = path.read_bytes()[:2000]
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a readable PyTorch file"):
        load_checkpoint(path, arch="gac-msresnet-tiny")


def test_no_state_dict_inside(tmp_path):
    torch.save({"epoch": 3, "acc": 0.5}, tmp_path / "c.pt")
    with pytest.raises(UserError, match="holds no state_dict"):
        load_checkpoint(tmp_path / "c.pt", arch="gac-msresnet-tiny")


def test_the_cli_runs_pickled_code_only_with_trust_pickle_and_says_so(tmp_path, gac_sd, run_cli):
    target = tmp_path / "pwned"
    torch.save({"net": gac_sd, "extra": FileCreatingPayload(str(target))}, tmp_path / "evil.pt")
    refused = run_cli("inspect", tmp_path / "evil.pt", "--arch", "gac-msresnet-tiny")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.count("\n") == 1 and "--trust-pickle" in refused.stderr and "evil.pt" in refused.stderr
    assert not target.exists()
    trusted = run_cli("inspect", tmp_path / "evil.pt", "--arch", "gac-msresnet-tiny", "--trust-pickle")
    assert trusted.returncode == 0, trusted.stderr
    assert target.exists()  # the payload ran: what the flag allows, and only it
    warnings = [line for line in trusted.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "--trust-pickle" in warnings[0] and "evil.pt" in warnings[0]


def test_trust_pickle_warns_only_when_the_file_needed_it(tmp_path, gac_sd):
    torch.save(gac_sd, tmp_path / "plain.pt")
    assert load_checkpoint(tmp_path / "plain.pt", arch="gac-msresnet-tiny", trust_pickle=True).warnings == []
