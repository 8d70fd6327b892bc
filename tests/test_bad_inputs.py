"""A corpus of bad inputs, run through the installed CLI (issue 7): damaged and ill-fitting checkpoints, inputs the
model cannot take, tampered or incomplete deployments, bad option values. Every case must end with exit code 2 and
one line on stderr naming the offending file, tensor or option, no traceback, and nothing written. The bad files are
made from real artifacts: the bundled checkpoints and a real export.

Also here: an export interrupted by SIGINT or SIGTERM while it writes leaves the earlier export as it was."""
import json
import os
import shutil
import signal
import struct
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from snn2hw.data import DEMO_DATA
from helpers import FileCreatingPayload

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "models" / "checkpoints"
TCJA, GAC = CHECKPOINTS / "tcja-tiny.pt", CHECKPOINTS / "gac-msresnet-tiny.pt"


@pytest.fixture(scope="module")
def valid_inputs():
    return {"events": DEMO_DATA["digit-events"]("test")[0][:2], "images": DEMO_DATA["digit-images"]("test")[0][:2]}


@dataclass
class Kit:
    """What a case builds its bad files from, and where: `dir` is the case's own folder, `out` the output it asks for
    (which must not exist afterwards)."""
    dir: Path
    deployment: Path
    inputs: dict

    @property
    def out(self) -> Path:
        return self.dir / "out"

    def checkpoint(self, edit, source: Path = TCJA) -> Path:
        """The bundled checkpoint with `edit(state_dict, metadata)` applied."""
        ckpt = torch.load(source, weights_only=True)
        edit(ckpt["state_dict"], ckpt["snn2hw"])
        torch.save(ckpt, self.dir / "bad.pt")
        return self.dir / "bad.pt"

    def file(self, name: str, data: bytes) -> Path:
        (self.dir / name).write_bytes(data)
        return self.dir / name

    def array(self, x: np.ndarray, name: str = "x.npy") -> Path:
        np.save(self.dir / name, x, allow_pickle=x.dtype == object)
        return self.dir / name

    def events(self) -> Path:
        return self.array(self.inputs["events"], "events.npy")

    def nir_graph(self) -> Path:
        """A small valid NIR graph (linear → LIF) written with the nir package."""
        w = np.full((3, 4), 0.5, np.float32)
        graph = nir.NIRGraph.from_list(nir.Input(np.array([4])), nir.Linear(w),
                                       nir.LIF(tau=np.full(3, 2.0, np.float32), r=np.ones(3, np.float32),
                                               v_leak=np.zeros(3, np.float32),
                                               v_threshold=np.ones(3, np.float32)), nir.Output(np.array([3])))
        nir.write(self.dir / "graph.nir", graph)
        return self.dir / "graph.nir"

    def deployment_copy(self, edit) -> Path:
        """A copy of the real export with `edit(directory)` applied."""
        copy = self.dir / "deployment"
        shutil.copytree(self.deployment, copy)
        edit(copy)
        return copy

    def simulate_checkpoint(self, ckpt: Path, x: Path, *options) -> list:
        return ["simulate", ckpt, "--input", x, "--save", self.out / "o.npz", *options]

    def simulate_deployment(self, edit, *options, backend="fixed") -> list:
        return ["simulate", self.deployment_copy(edit), "--backend", backend, "--input", self.events(),
                "--save", self.out / "o.npz", *options]

    def inspect_deployment(self, edit) -> list:
        return ["inspect", self.deployment_copy(edit)]

    def export(self, ckpt: Path, *options) -> list:
        return ["export", ckpt, "-o", self.out / "deployment", *options]


def _first_key(sd: dict, suffix: str) -> str:
    return next(k for k in sd if k.endswith(suffix))


def _set_first(suffix: str, value: float):
    """An edit: the first element of the first tensor named `*suffix` becomes `value`."""
    def edit(sd, meta):
        sd[_first_key(sd, suffix)].view(-1)[0] = value
    return edit


def _manifest_edit(change):
    def edit(directory: Path):
        manifest = json.loads((directory / "manifest.json").read_text())
        change(manifest)
        (directory / "manifest.json").write_text(json.dumps(manifest))
    return edit


def _damage(rel: str, how: str):
    """An edit of a deployment: `rel` truncated to half, its middle bytes inverted, or removed."""
    def edit(directory: Path):
        path = directory / rel
        data = bytearray(path.read_bytes())
        if how == "remove":
            path.unlink()
        elif how == "truncate":
            path.write_bytes(data[:len(data) // 2])
        else:
            mid = len(data) // 2
            data[mid:mid + 16] = bytes(b ^ 0xFF for b in data[mid:mid + 16])
            path.write_bytes(data)
    return edit


def _malicious(kit: Kit) -> Path:
    sd = torch.load(TCJA, weights_only=True)["state_dict"]
    torch.save({"net": sd, "extra": FileCreatingPayload(str(kit.dir / "pwned"))}, kit.dir / "evil.pt")
    return kit.dir / "evil.pt"


def _crc_damaged(kit: Kit) -> Path:
    """The bundled checkpoint with one bit flipped inside its largest stored tensor: the zip still opens and torch
    would load it, but that member fails its CRC."""
    data = bytearray(TCJA.read_bytes())
    with zipfile.ZipFile(TCJA) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
    name_len, extra_len = struct.unpack("<HH", data[member.header_offset + 26:member.header_offset + 30])
    data[member.header_offset + 30 + name_len + extra_len + member.file_size // 2] ^= 0x40
    return kit.file("crc.pt", bytes(data))


def _retyped(convert):
    """An edit: conv.0.0.weight converted by `convert` (to sparse, complex, integers)."""
    def edit(sd, meta):
        sd["conv.0.0.weight"] = convert(sd["conv.0.0.weight"])
    return edit


def _wrong_shape(sd, meta):
    key = _first_key(sd, "conv.0.0.weight")
    sd[key] = sd[key][..., :-1].clone()


def _drop_source_copy(manifest):
    del manifest["source"]["copy"]


def _changed_hash(rel: str):
    return lambda manifest: manifest["file_sha256"].__setitem__(rel, "0" * 64)


# (id, kit → (argv, what stderr must name))
CASES = [
    # checkpoints
    ("checkpoint-truncated", lambda k: (k.export(k.file("cut.pt", TCJA.read_bytes()[:TCJA.stat().st_size // 2])),
                                        "cut.pt")),
    ("checkpoint-random-bytes", lambda k: (k.export(k.file("noise.pt", np.random.default_rng(0).bytes(4096))),
                                           "noise.pt")),
    ("checkpoint-empty", lambda k: (k.export(k.file("empty.pt", b"")), "empty.pt")),
    ("checkpoint-wrong-arch", lambda k: (k.export(GAC, "--arch", "tcja-tiny"), GAC.name)),
    ("checkpoint-missing-key", lambda k: (k.export(k.checkpoint(lambda sd, m: sd.pop("conv.4.0.weight"))),
                                          "conv.4.0.weight")),
    ("checkpoint-extra-key", lambda k: (k.export(k.checkpoint(
        lambda sd, m: sd.__setitem__("conv.9.attention.weight", torch.zeros(4)))), "conv.9.attention.weight")),
    ("checkpoint-wrong-shape", lambda k: (k.export(k.checkpoint(_wrong_shape)), "conv.0.0.weight")),
    ("checkpoint-nan-weight", lambda k: (k.export(k.checkpoint(_set_first("conv.4.0.weight", float("nan")))),
                                         "conv.4.0.weight")),
    ("checkpoint-inf-weight", lambda k: (k.export(k.checkpoint(_set_first("fc.2.0.weight", float("inf")))),
                                         "fc.2.0.weight")),
    ("checkpoint-bn-var-zero", lambda k: (k.export(k.checkpoint(_set_first("running_var", 0.0))),
                                          "conv.0.1.running_var")),
    ("checkpoint-bn-var-negative", lambda k: (k.export(k.checkpoint(_set_first("running_var", -0.5), GAC)),
                                              "bn1.bn.running_var")),
    ("checkpoint-unknown-arch-option", lambda k: (k.export(TCJA, "--arch", "spikformer"), "spikformer")),
    ("checkpoint-records-unsupported-arch", lambda k: (k.export(k.checkpoint(
        lambda sd, m: m.__setitem__("arch", "spikformer"))), "spikformer")),
    ("checkpoint-no-state-dict", lambda k: (k.export(k.checkpoint(lambda sd, m: sd.clear())), "bad.pt")),
    ("checkpoint-pickled-code", lambda k: (k.export(_malicious(k)), "--trust-pickle")),
    ("checkpoint-crc-damaged", lambda k: (k.export(_crc_damaged(k)), "fails its CRC check")),
    ("checkpoint-sparse-tensor", lambda k: (k.export(k.checkpoint(_retyped(lambda t: t.to_sparse()))),
                                            "conv.0.0.weight")),
    ("checkpoint-complex-weight", lambda k: (k.export(k.checkpoint(_retyped(lambda t: t.to(torch.complex64)))),
                                             "conv.0.0.weight")),
    ("checkpoint-integer-weight", lambda k: (k.export(k.checkpoint(_retyped(lambda t: t.to(torch.int32)))),
                                             "conv.0.0.weight")),
    ("checkpoint-records-unknown-option", lambda k: (k.export(k.checkpoint(
        lambda sd, m: m["options"].__setitem__("timestep", 8))), "timestep")),
    ("checkpoint-timesteps-contradicts-weights", lambda k: (k.export(TCJA, "--timesteps", "5"), "--timesteps 5")),
    ("num-classes-zero", lambda k: (k.export(GAC, "--num-classes", "0"), "--num-classes")),
    ("num-classes-huge", lambda k: (k.export(GAC, "--num-classes", str(10 ** 12)), "--num-classes")),
    # inputs
    ("input-wrong-shape", lambda k: (k.simulate_checkpoint(TCJA, k.array(k.inputs["events"][..., :-1])), "x.npy")),
    ("input-complex", lambda k: (k.simulate_checkpoint(GAC, k.array(k.inputs["images"] * (1 + 1j))), "x.npy")),
    ("input-strings", lambda k: (k.simulate_checkpoint(GAC, k.array(k.inputs["images"].astype(str))), "x.npy")),
    ("input-objects", lambda k: (k.simulate_checkpoint(GAC, k.array(k.inputs["images"].astype(object))), "x.npy")),
    ("input-nan", lambda k: (k.simulate_checkpoint(GAC, k.array(np.where(k.inputs["images"] > 0.5, np.nan,
                                                                         k.inputs["images"]))), "x.npy")),
    ("input-inf", lambda k: (k.simulate_checkpoint(TCJA, k.array(np.where(k.inputs["events"] > 0, np.inf, 0))),
                             "x.npy")),
    ("input-fractional-events", lambda k: (k.simulate_checkpoint(TCJA, k.array(k.inputs["events"] * 0.5)), "x.npy")),
    ("input-negative-events", lambda k: (k.simulate_checkpoint(TCJA, k.array(-k.inputs["events"])), "x.npy")),
    ("input-empty", lambda k: (k.simulate_checkpoint(TCJA, k.array(k.inputs["events"][:0])), "x.npy")),
    ("input-not-npy", lambda k: (k.simulate_checkpoint(TCJA, k.file("x.npy", TCJA.read_bytes()[:512])), "x.npy")),
    ("labels-not-npy", lambda k: (k.simulate_checkpoint(GAC, k.array(k.inputs["images"]), "--labels",
                                                        k.file("labels.npy", b"\x93NUMPY garbage")), "labels.npy")),
    ("calibration-wrong-shape", lambda k: (k.export(GAC, "--calibration", k.array(k.inputs["events"])),
                                           "--calibration")),
    # deployments
    ("manifest-missing", lambda k: (k.simulate_deployment(_damage("manifest.json", "remove")), "manifest.json")),
    ("manifest-invalid-json", lambda k: (k.simulate_deployment(_damage("manifest.json", "truncate")),
                                         "manifest.json")),
    ("manifest-missing-key", lambda k: (k.simulate_deployment(_manifest_edit(_drop_source_copy)),
                                        "source.copy")),
    ("manifest-wrong-type", lambda k: (k.simulate_deployment(_manifest_edit(
        lambda m: m.__setitem__("segments", "chip1"))), "segments")),
    ("manifest-wrong-version", lambda k: (k.simulate_deployment(_manifest_edit(
        lambda m: m.__setitem__("format_version", 99))), "manifest.json")),
    ("manifest-path-outside", lambda k: (k.simulate_deployment(_manifest_edit(
        lambda m: m["calibration"].__setitem__("file", "../../x.npy"))), "../../x.npy")),
    ("manifest-changed-hash", lambda k: (k.simulate_deployment(_manifest_edit(_changed_hash("chip/chip3.npz"))),
                                         "chip3.npz")),
    # a run reads the files it runs; inspect checks them all
    ("manifest-changed-hash-unread", lambda k: (k.inspect_deployment(_manifest_edit(_changed_hash("chip/chip3.nir"))),
                                                "chip3.nir")),
    ("deployment-missing-chip-npz", lambda k: (k.simulate_deployment(_damage("chip/chip1.npz", "remove")),
                                               "chip/chip1.npz")),
    ("deployment-missing-host-onnx", lambda k: (k.simulate_deployment(_damage("host/host2.onnx", "remove")),
                                                "host/host2.onnx")),
    ("deployment-missing-checkpoint", lambda k: (k.simulate_deployment(_damage("source/checkpoint.pt", "remove"),
                                                                       backend="torch"), "source/checkpoint.pt")),
    ("deployment-corrupt-nir", lambda k: (k.inspect_deployment(_damage("chip/chip1.nir", "flip")), "chip1.nir")),
    ("deployment-corrupt-onnx", lambda k: (k.simulate_deployment(_damage("host/host0.onnx", "truncate")),
                                           "host0.onnx")),
    ("deployment-corrupt-net", lambda k: (k.inspect_deployment(_damage("chip/chip5.net", "flip")), "chip5.net")),
    ("deployment-corrupt-npz", lambda k: (k.simulate_deployment(_damage("chip/chip3.npz", "flip")), "chip3.npz")),
    ("deployment-nonexistent", lambda k: (["energy", k.dir / "nowhere", "--input", k.events(), "--json",
                                           k.out / "e.json"], "nowhere")),
    # options
    ("samples-negative", lambda k: (k.simulate_deployment(lambda d: None, "--samples", "-1"), "--samples")),
    ("timeout-zero", lambda k: (k.simulate_deployment(lambda d: None, "--timeout", "0"), "--timeout")),
    ("memory-limit-zero", lambda k: (k.simulate_deployment(lambda d: None, "--memory-limit", "0"), "--memory-limit")),
    ("backend-unknown", lambda k: (k.simulate_checkpoint(TCJA, k.events(), "--backend", "gpu"), "--backend")),
    ("preset-unknown", lambda k: (["energy", "--arch", "tcja-tiny", "--firing-rate", "0.1", "--preset", "7nm",
                                   "--json", k.out / "e.json"], "--preset")),
    ("firing-rate-above-one", lambda k: (["energy", "--arch", "tcja-tiny", "--firing-rate", "1.5",
                                          "--html", k.out / "e.html"], "--firing-rate")),
    ("tcja-strategy-unknown", lambda k: (k.export(TCJA, "--tcja", "chip"), "--tcja")),
    ("target-unknown", lambda k: (k.export(TCJA, "--target", "spinnaker"), "--target")),
    ("checkpoint-nonexistent", lambda k: (k.export(k.dir / "nowhere.pt"), "nowhere.pt")),
    ("input-nonexistent", lambda k: (k.simulate_checkpoint(TCJA, k.dir / "nowhere.npy"), "nowhere.npy")),
    ("unknown-option", lambda k: (k.export(TCJA, "--quantise"), "--quantise")),
    # options that have no effect in the mode the command runs in
    ("tcja-on-gac", lambda k: (k.export(GAC, "--tcja", "fold"), "--tcja")),
    ("residual-on-tcja", lambda k: (k.export(TCJA, "--residual", "unroll"), "--residual")),
    ("labels-on-deployment", lambda k: (k.simulate_deployment(lambda d: None, "--labels", k.events()), "--labels")),
    ("input-with-ladder", lambda k: (["simulate", GAC, "--ladder", "--data", "digits", "--input", k.events()],
                                     "--input")),
    ("input-with-analytic-energy", lambda k: (["energy", "--arch", "tcja-tiny", "--firing-rate", "0.1", "--input",
                                              k.events(), "--json", k.out / "e.json"], "--input")),
    ("timesteps-on-deployment", lambda k: (k.simulate_deployment(lambda d: None, "--timesteps", "4"),
                                           "--timesteps")),
    ("dt-on-checkpoint", lambda k: (k.export(TCJA, "--dt", "0.001"), "--dt")),
    ("dt-not-positive", lambda k: (k.export(k.nir_graph(), "--dt", "-1", "--timesteps", "4"), "dt")),
    ("arch-on-nir-graph", lambda k: (k.export(k.nir_graph(), "--arch", "tcja-tiny", "--timesteps", "4"), "--arch")),
    ("analytic-energy-of-nir", lambda k: (["energy", "--arch", "nir", "--firing-rate", "0.1", "--timesteps", "4"],
                                          "--arch nir")),
    ("energy-of-a-model-without-input", lambda k: (["energy", TCJA, "--json", k.out / "e.json"], "--input")),
    ("device-unknown", lambda k: (k.simulate_checkpoint(TCJA, k.events(), "--device", "tpu"), "--device")),
    ("device-on-deployment", lambda k: (k.simulate_deployment(lambda d: None, "--device", "cpu"), "--device")),
    *([("device-cuda-without-gpu", lambda k: (["simulate", GAC, "--ladder", "--data", "digits", "--device", "cuda",
                                               "--json", k.out / "l.json"], "--device cuda"))]
      if not torch.cuda.is_available() else []),
    ("timesteps-huge", lambda k: (["energy", "--arch", "tcja-tiny", "--firing-rate", "0.1", "--timesteps",
                                   "1000000"], "--timesteps")),
    # a subprocess that fails: one sentence naming the segment and the cause, its output in a log file
    ("lava-memory-limit-too-small", lambda k: (k.simulate_deployment(lambda d: None, "--memory-limit", "100",
                                                                     backend="lava"), "chip segment chip1")),
    # values read from files: finite numbers in range, names that exist
    ("preset-nan-cost", lambda k: (_analytic(k, "--preset", _preset(k, "pj = 4.6", "pj = nan")), "[host.mac]")),
    ("preset-bool-cost", lambda k: (_analytic(k, "--preset", _preset(k, "pj = 4.6", "pj = true")), "[host.mac]")),
    ("preset-zero-limit", lambda k: (_analytic(k, "--preset", _preset(k, "value = 128", "value = 0")),
                                     "[core.cores_per_chip]")),
    ("firing-rate-unknown-layer", lambda k: (_analytic(k, "--firing-rate", k.file("r.json", json.dumps(
        {"conv.1x": 0.2, "default": 0.1}).encode())), "conv.1x")),
    # output paths: checked before any work; nothing given to the command may be overwritten
    ("save-is-a-folder", lambda k: (["simulate", TCJA, "--input", k.events(), "--save", k.dir], "--save")),
    ("save-without-npz", lambda k: (["simulate", TCJA, "--input", k.events(), "--save", k.dir / "o.out"], "--save")),
    ("save-parent-is-a-file", lambda k: (["simulate", TCJA, "--input", k.events(), "--save",
                                          k.file("f", b"x") / "o.npz"], "--save")),
    ("ladder-json-onto-input", lambda k: (["simulate", k.file("m.json", TCJA.read_bytes()), "--arch", "tcja-tiny",
                                           "--ladder", "--data", "digits", "--json", k.dir / "m.json"], "--json")),
    ("energy-json-onto-manifest", lambda k: (_energy_into(k, "manifest.json", "--json"), "--json")),
    ("energy-html-inside-deployment", lambda k: (_energy_into(k, "chip/e.html", "--html"), "--html")),
    ("export-o-is-a-symlink", lambda k: (["export", TCJA, "-o", _link_to_deployment(k)], "-o")),
    ("export-o-is-a-file", lambda k: (["export", TCJA, "-o", k.file("f.txt", b"x")], "-o")),
    ("export-o-holds-its-checkpoint", lambda k: (["export", _inside(k, "d/m.pt", TCJA), "-o", k.dir / "d"], "-o")),
    ("train-output-without-pt", lambda k: (["train", "tcja-tiny", "-o", k.dir / "m.ckpt"], "-o")),
]


def _analytic(kit: Kit, option: str, value) -> list:
    """`energy` in the analytic mode on tcja-tiny, with `option value` (and a rate of 0.1 unless it is the rate)."""
    rate = [] if option == "--firing-rate" else ["--firing-rate", "0.1"]
    return ["energy", "--arch", "tcja-tiny", *rate, option, value, "--json", kit.out / "e.json"]


def _preset(kit: Kit, old: str, new: str) -> Path:
    """The built-in loihi2 preset with its first `old` line made `new`."""
    text = (ROOT / "snn2hw" / "energy" / "presets" / "loihi2.toml").read_text()
    assert old in text
    return kit.file("p.toml", text.replace(old, new, 1).encode())


def _energy_into(kit: Kit, rel: str, option: str) -> list:
    copy = kit.deployment_copy(lambda d: None)
    return ["energy", copy, "--input", kit.events(), option, copy / rel]


def _link_to_deployment(kit: Kit) -> Path:
    (kit.dir / "link").symlink_to(kit.deployment_copy(lambda d: None), target_is_directory=True)
    return kit.dir / "link"


def _inside(kit: Kit, rel: str, source: Path) -> Path:
    (kit.dir / rel).parent.mkdir(parents=True)
    return kit.file(rel, source.read_bytes())


def assert_refused(res: subprocess.CompletedProcess, names: str) -> None:
    """Exit code 2 and one line on stderr, an error naming `names`, no traceback."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr[-2000:]
    assert lines[0].startswith("error: ") and names in lines[0], lines[0]


@pytest.mark.parametrize("build", [pytest.param(build, id=name) for name, build in CASES])
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(build, tmp_path, tcja_deployment, valid_inputs,
                                                                  run_cli):
    kit = Kit(tmp_path, tcja_deployment, valid_inputs)
    args, names = build(kit)
    before = _contents(tmp_path)
    res = run_cli(*args)
    assert_refused(res, names)
    assert _contents(tmp_path) == before  # no output, no temporary file, no payload's file, no input changed


def _contents(folder: Path) -> dict:
    """Every path under `folder` → its bytes (files), its target (links) or None (folders)."""
    return {p: os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
            for p in sorted(folder.rglob("*"))}


def test_the_corpus_is_large_and_distinct():
    assert len(CASES) >= 25 and len({name for name, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_export_interrupted_while_writing_leaves_the_earlier_one(sig, tmp_path, tcja_deployment):
    """The new export replaces an earlier one at the same path only once complete: a signal while it writes its
    temporary directory (polled for, as no hook exists) leaves the earlier one byte for byte and no temporary files."""
    target = tmp_path / "deployment"
    shutil.copytree(tcja_deployment, target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    for attempt in range(3):
        proc = subprocess.Popen([ROOT / ".venv" / "bin" / "snn2hw", "export", GAC, "-o", target],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None and not any(tmp_path.glob(".deployment.partial-*")):
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(sig)
            break
        proc.communicate()  # finished before its temporary directory was seen: this machine was too fast
        shutil.rmtree(target)
        shutil.copytree(tcja_deployment, target)
    else:
        pytest.fail("the export never wrote a temporary directory that could be interrupted")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [f"error: interrupted by {sig.name}; the command did not finish."], stderr
    assert {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deployment"]
