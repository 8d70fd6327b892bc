"""Which constructs of an exported chip spec have public Loihi 2 hardware use (`exporters.loihi2_evidence`): named
for every chip segment, recorded in the manifest and report.md, and a hand-edited current injection named."""
import copy
import json

from exporters.loihi2_evidence import EVIDENCE, WITHOUT_EVIDENCE, spec_constructs, without_evidence


def _specs(deployment) -> dict[str, dict]:
    manifest = json.loads((deployment / "manifest.json").read_text())
    return {s["name"]: json.loads((deployment / s["files"]["lava_spec"]).read_text())
            for s in manifest["segments"] if s["placement"] == "chip"}


def test_every_construct_of_an_export_is_named_and_recorded(tcja_deployment):
    manifest = json.loads((tcja_deployment / "manifest.json").read_text())
    report = (tcja_deployment / "report.md").read_text()
    for segment in (s for s in manifest["segments"] if s["placement"] == "chip"):
        spec = _specs(tcja_deployment)[segment["name"]]
        constructs = spec_constructs(spec)
        assert constructs and set(constructs) <= set(EVIDENCE) | set(WITHOUT_EVIDENCE)
        assert segment["constructs"] == constructs and segment["without_hardware_evidence"] == without_evidence(spec)
        assert "LIF neurons (LIFReset)" in constructs
        for construct in constructs:
            assert f"| {segment['name']} | {construct} | {EVIDENCE.get(construct, 'none found')} |" in report
    # TCJA's gated spikes reach the chip as 24-bit graded values: wider than any public host→chip example
    assert any("host graded values of more than 16 bits into a synapse" in s["without_hardware_evidence"]
               for s in manifest["segments"] if s["placement"] == "chip")


def test_a_current_injected_into_a_neuron_is_named():
    spec = {"inputs": [{"name": "x", "to": "fc", "payload": "spikes"}],
            "nodes": [{"name": "fc", "op": "dense", "input": "x", "num_message_bits": 0},
                      {"name": "s", "op": "lif", "synapses": [{"name": "fc", "delay": 0}], "injected": []}],
            "outputs": [{"name": "s", "kind": "spikes"}]}
    assert without_evidence(spec) == []
    edited = copy.deepcopy(spec)
    edited["inputs"].append({"name": "i", "to": "s", "payload": "current"})
    edited["nodes"][1]["injected"] = ["i"]
    assert without_evidence(edited) == ["a host current injected into a neuron's input port",
                                        "several synapses summed into one neuron's input port"]
