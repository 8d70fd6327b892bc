"""The hardware check (`exporters.loihi2_evidence`): every construct of an exported chip spec has a public Loihi 2
run, is recorded in the manifest and report.md with its source; a spec hand-edited to use a construct without one
fails the check in one sentence naming it, and an export that would write one writes nothing."""
import copy
import json

import pytest

from exporters.loihi2_evidence import EVIDENCE, WITHOUT_EVIDENCE, hardware_problem, spec_constructs


def _specs(deployment) -> dict[str, dict]:
    manifest = json.loads((deployment / "manifest.json").read_text())
    return {s["name"]: json.loads((deployment / s["files"]["lava_spec"]).read_text())
            for s in manifest["segments"] if s["placement"] == "chip"}


@pytest.mark.parametrize("residual", ["relay", "unroll"])
def test_every_construct_of_a_gac_export_has_public_hardware_use(residual, tmp_path, run_cli):
    out = tmp_path / "dep"
    run_cli("export", "models/checkpoints/gac-msresnet-tiny.pt", "-o", str(out), "--residual", residual)
    manifest = json.loads((out / "manifest.json").read_text())
    report = (out / "report.md").read_text()
    for segment in (s for s in manifest["segments"] if s["placement"] == "chip"):
        spec = _specs(out)[segment["name"]]
        constructs = spec_constructs(spec)
        assert hardware_problem(spec) is None and set(constructs) <= set(EVIDENCE)
        assert segment["constructs"] == constructs
        # the residual stream's sums, relays and identity synapses: the constructs the relay pass introduces
        assert {"GradedVec neurons (graded spikes; relays run with vth 0, the tutorial with vth 1)",
                "Sparse synapses (one-to-one, weight_exp down to -7)",
                "several synapses summed into one neuron's input port",
                "graded spikes (24 bits) of a neuron to the host (NxToPyAdapter)"} <= set(constructs)
        for construct in constructs:
            assert f"| {segment['name']} | {construct} | {EVIDENCE[construct]} |" in report


def test_tcja_exports_have_public_hardware_use(tcja_deployment):
    for spec in _specs(tcja_deployment).values():
        assert hardware_problem(spec) is None
        assert "host graded values of up to 16 bits into a synapse (PyToN3ConvAdapter)" in spec_constructs(spec)


def test_a_current_injected_into_a_neuron_fails_the_check_in_one_sentence(tcja_deployment):
    spec = next(iter(_specs(tcja_deployment).values()))
    edited = copy.deepcopy(spec)
    lif = next(n for n in edited["nodes"] if n["op"] == "lif")
    edited["inputs"].append({"name": "current", "tensor": "input", "to": lif["name"], "payload": "graded",
                             "frac_bits": 0, "shape": lif["shape"], "depth": lif["depth"]})
    lif["synapses"].append("current")
    problem = hardware_problem(edited)
    assert problem.startswith(f"chip segment {spec['segment']} uses a host value injected into a neuron's input port "
                              "(no synapse)")
    assert problem.count(". ") == 0 and "several synapses summed" not in problem.split(" (and")[0]


@pytest.mark.parametrize("edit, construct", [
    (lambda spec, syn, lif: syn.update(delay=3), "a synaptic delay"),
    (lambda spec, syn, lif: spec["outputs"].append({"name": syn["name"], "kind": "accumulation"}),
     "a synapse's accumulation read by the host"),
])
def test_every_construct_without_evidence_is_named(edit, construct, tcja_deployment):
    spec = copy.deepcopy(next(iter(_specs(tcja_deployment).values())))
    syn = next(n for n in spec["nodes"] if n["op"] in ("conv", "dense"))
    edit(spec, syn, next(n for n in spec["nodes"] if n["op"] == "lif"))
    assert construct in WITHOUT_EVIDENCE and construct in spec_constructs(spec)
    assert construct in hardware_problem(spec)


def test_an_export_with_a_construct_without_evidence_writes_nothing(tmp_path, monkeypatch):
    from snn2hw import export
    from snn2hw.checkpoint import load_checkpoint
    from snn2hw.data import DEMO_DATA
    from snn2hw.errors import UserError

    monkeypatch.setattr(export, "hardware_problem", lambda spec: f"chip segment {spec['segment']} uses a synaptic "
                                                                 "delay, which no public Loihi 2 run shows")
    loaded = load_checkpoint("models/checkpoints/tcja-tiny.pt")
    with pytest.raises(UserError, match="uses a synaptic delay.*nothing was written"):
        export.export_deployment(loaded, DEMO_DATA["digit-events"]("train")[0][:32], tmp_path / "dep")
    assert list(tmp_path.iterdir()) == []
