"""Which constructs of a chip spec (`lava_spec`) have public Loihi 2 hardware use, and which only Lava's CPU backend
is known to run.

A construct is a Lava process type or a connection pattern of the written chip segment. EVIDENCE lists those that
public Loihi 2 hardware tests run (lava-dl's netx hardware tests, `Loihi2HwCfg`; lava-nc/lava-dl d825ac5, the file
the pinned lava-dl 0.6.0 wheel installs as `tests/lava/lib/dl/netx/test_hdf5_nx.py`), each with its source.
WITHOUT_EVIDENCE names the constructs snn2hw's specs can hold that no public hardware test or tutorial runs (read
there and in lava-nc/lava b6822fbc): a deployment using them runs on Lava's CPU backend, and on Loihi 2 only if
Intel's compiler takes them, which nothing public shows.
"""
HW_TESTS = "lava-dl tests/lava/lib/dl/netx/test_hdf5_nx.py"

EVIDENCE = {
    "LIF neurons (LIFReset)": f"{HW_TESTS}:91-134 test_pilotnet_lif",
    "Conv synapse into LIF neurons": f"{HW_TESTS}:91-134 test_pilotnet_lif",
    "Dense synapse into LIF neurons": f"{HW_TESTS}:91-134 test_pilotnet_lif",
    "neuron spikes into a synapse": f"{HW_TESTS}:91-134 test_pilotnet_lif",
    "a neuron map flattened into a Dense synapse": f"{HW_TESTS}:91-134 test_pilotnet_lif",
    "host spikes into a synapse (through PyToN3ConvAdapter)": f"{HW_TESTS}:137-172 test_pilotnet_lif_spike_input",
    "host graded values of up to 16 bits into a synapse (through PyToN3ConvAdapter)":
        f"{HW_TESTS}:215-275 test_pilotnet_sdnn",
    "neuron spikes to the host (through NxToPyAdapter)": f"{HW_TESTS}:39-88 test_tinynet",
}
# The widest graded payload a public hardware test sends from the host (PilotNet SDNN's input adapter).
PUBLIC_HOST_MESSAGE_BITS = 16
WITHOUT_EVIDENCE = (
    "host graded values of more than 16 bits into a synapse",
    "a host current injected into a neuron's input port",
    "a synapse's accumulation delayed by another synapse (DelaySparse)",
    "several synapses summed into one neuron's input port",
    "a synapse's accumulation read by the host",
)


def spec_constructs(spec: dict) -> list[str]:
    """Every construct a chip spec uses, each once, in the order first met (inputs, nodes, outputs)."""
    nodes = {n["name"]: n for n in spec["nodes"]}
    found = []

    def add(construct: str) -> None:
        if construct not in found:
            found.append(construct)
    for entry in spec["inputs"]:
        if entry["payload"] == "spikes":
            add("host spikes into a synapse (through PyToN3ConvAdapter)")
        elif entry["payload"] == "current":
            add("a host current injected into a neuron's input port")
        elif nodes[entry["to"]]["num_message_bits"] <= PUBLIC_HOST_MESSAGE_BITS:
            add("host graded values of up to 16 bits into a synapse (through PyToN3ConvAdapter)")
        else:
            add("host graded values of more than 16 bits into a synapse")
    for node in spec["nodes"]:
        if node["op"] == "lif":
            add("LIF neurons (LIFReset)")
            for synapse in node["synapses"]:
                add(f"{nodes[synapse['name']]['op'].capitalize()} synapse into LIF neurons")
                if synapse["delay"] > 0:
                    add("a synapse's accumulation delayed by another synapse (DelaySparse)")
            if len(node["synapses"]) + len(node["injected"]) > 1:
                add("several synapses summed into one neuron's input port")
        elif node["op"] in ("conv", "dense") and node["input"] in nodes:
            source = nodes[node["input"]]
            add("a neuron map flattened into a Dense synapse" if source["op"] == "flatten"
                else "neuron spikes into a synapse")
    for output in spec["outputs"]:
        add("neuron spikes to the host (through NxToPyAdapter)" if output["kind"] == "spikes"
            else "a synapse's accumulation read by the host")
    return found


def without_evidence(spec: dict) -> list[str]:
    """The constructs of `spec` with no public Loihi 2 hardware use."""
    return [c for c in spec_constructs(spec) if c not in EVIDENCE]
