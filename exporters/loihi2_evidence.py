"""Which constructs of a chip spec (`lava_spec`) public Loihi 2 runs show, and the check that an export uses no other.

A construct is a Lava process type or a connection pattern of a written chip segment. EVIDENCE lists those that
public runs on Loihi 2 silicon use, each with its source:
* lava-dl's netx hardware tests (`Loihi2HwCfg`; lava-nc/lava-dl d825ac5, the file the pinned lava-dl 0.6.0 wheel
  installs as `tests/lava/lib/dl/netx/test_hdf5_nx.py`; every test there is skipped unless Loihi 2 is reachable, and
  no run log is public);
* lava's lava_va tutorials (lava-nc/lava 6a98a524, `tutorials/lava_va/`), whose saved outputs say they ran on
  Loihi 2.
WITHOUT_EVIDENCE names what a spec could hold that no public hardware test or tutorial runs (read there, in lava-nc/lava
b6822fbc and in lava's issues): synaptic delays (lava#636 is closed without a public run; lava-dl's delay tests run
on the CPU), host values injected into a neuron without a synapse, synapse sums sent on or read without a neuron.
`export --target loihi` refuses a chip segment that uses one (`hardware_problem`).
"""
HW_TESTS = "lava-dl tests/lava/lib/dl/netx/test_hdf5_nx.py"
LAVA_VA = "lava tutorials/lava_va (6a98a524)"
GRADED_VEC_NETWORK = "lava src/lava/networks/gradedvecnetwork.py (6a98a524)"

EVIDENCE = {
    # process types
    "LIF neurons (LIFReset)": f"{HW_TESTS}:90-134 test_pilotnet_lif",
    "GradedVec neurons (graded spikes; relays run with vth 0, the tutorial with vth 1)":
        f"{LAVA_VA} tutorial01 cells 12-18",
    "Conv synapses": f"{HW_TESTS}:90-134 test_pilotnet_lif",
    "Dense synapses": f"{HW_TESTS}:90-134 test_pilotnet_lif",
    "Sparse synapses (one-to-one, weight_exp down to -7)":
        f"{LAVA_VA} tutorial01 cell 34; {GRADED_VEC_NETWORK}:275-278 GradedSparse",
    # connection patterns
    "a synapse into a neuron's input port": f"{HW_TESTS}:90-134 test_pilotnet_lif",
    "several synapses summed into one neuron's input port": f"{LAVA_VA} tutorial01 cells 25 and 34",
    "neuron spikes into a synapse": f"{HW_TESTS}:90-134 test_pilotnet_lif",
    "a neuron map flattened into a Dense synapse": f"{HW_TESTS}:90-134 test_pilotnet_lif",
    "graded spikes (24 bits) of a neuron into a synapse": f"{LAVA_VA} tutorial01 cell 34; "
                                                          f"{GRADED_VEC_NETWORK}:242-245, 275-278",
    "host spikes into a synapse (PyToN3ConvAdapter)": f"{HW_TESTS}:136-172 test_pilotnet_lif_spike_input",
    "host graded values of up to 16 bits into a synapse (PyToN3ConvAdapter)": f"{HW_TESTS}:214-271 test_pilotnet_sdnn",
    "neuron spikes to the host (NxToPyAdapter)": f"{HW_TESTS}:38-88 test_tinynet",
    "graded spikes (24 bits) of a neuron to the host (NxToPyAdapter)": f"{HW_TESTS}:232-233, 250 test_pilotnet_sdnn",
}
# The widest graded payload a public hardware test sends from the host (PilotNet SDNN's input adapter).
PUBLIC_HOST_MESSAGE_BITS = 16
WITHOUT_EVIDENCE = (
    "host graded values of more than 16 bits into a synapse",
    "a host value injected into a neuron's input port (no synapse)",
    "a synaptic delay",
    "a synapse's accumulation sent into another synapse",
    "a synapse's accumulation read by the host",
)
SYNAPSE_PROCESS = {"conv": "Conv synapses", "dense": "Dense synapses",
                   "identity": "Sparse synapses (one-to-one, weight_exp down to -7)"}
NEURON_PROCESS = {"lif": "LIF neurons (LIFReset)",
                  "relay": "GradedVec neurons (graded spikes; relays run with vth 0, the tutorial with vth 1)"}


def spec_constructs(spec: dict) -> list[str]:
    """Every construct a chip spec uses, each once, in the order first met (inputs, nodes, outputs). Reads the
    spec's structure, not its format version, so that a hand-edited spec is described as it is."""
    nodes = {n["name"]: n for n in spec["nodes"]}
    inputs = {i["name"]: i for i in spec["inputs"]}
    found: list[str] = []

    def add(construct: str) -> None:
        if construct not in found:
            found.append(construct)

    def sent_by(name: str) -> str:
        """The construct of a value going into a synapse."""
        if name in inputs:
            entry = inputs[name]
            if entry["payload"] == "spikes":
                return "host spikes into a synapse (PyToN3ConvAdapter)"
            wide = nodes.get(entry.get("to"), {}).get("num_message_bits", 0) > PUBLIC_HOST_MESSAGE_BITS
            return "host graded values of more than 16 bits into a synapse" if wide else \
                "host graded values of up to 16 bits into a synapse (PyToN3ConvAdapter)"
        op = nodes[name]["op"]
        return {"lif": "neuron spikes into a synapse", "relay": "graded spikes (24 bits) of a neuron into a synapse",
                "flatten": "a neuron map flattened into a Dense synapse"}.get(
            op, "a synapse's accumulation sent into another synapse")

    for entry in spec["inputs"]:
        if nodes.get(entry.get("to"), {}).get("op") not in SYNAPSE_PROCESS:
            add("a host value injected into a neuron's input port (no synapse)")
    for node in spec["nodes"]:
        op = node["op"]
        if op in SYNAPSE_PROCESS:
            add(SYNAPSE_PROCESS[op])
            add(sent_by(node["input"]))
            if node.get("delay"):
                add("a synaptic delay")
        elif op in NEURON_PROCESS:
            add(NEURON_PROCESS[op])
            feeds = node["synapses"]
            if any(f in inputs for f in feeds):
                add("a host value injected into a neuron's input port (no synapse)")
            if any(f in nodes for f in feeds):
                add("a synapse into a neuron's input port")
            if len(feeds) > 1:
                add("several synapses summed into one neuron's input port")
    for output in spec["outputs"]:
        add({"lif": "neuron spikes to the host (NxToPyAdapter)",
             "relay": "graded spikes (24 bits) of a neuron to the host (NxToPyAdapter)"}.get(
            nodes.get(output["name"], {}).get("op"), "a synapse's accumulation read by the host"))
    return found


def without_evidence(spec: dict) -> list[str]:
    """The constructs of `spec` with no public Loihi 2 hardware use."""
    return [c for c in spec_constructs(spec) if c not in EVIDENCE]


def hardware_problem(spec: dict) -> str | None:
    """One sentence naming the first construct of `spec` that no public Loihi 2 run shows, or None."""
    missing = without_evidence(spec)
    if not missing:
        return None
    more = f" (and {len(missing) - 1} more: {', '.join(missing[1:])})" if len(missing) > 1 else ""
    return (f"chip segment {spec['segment']} uses {missing[0]}{more}, which no public Loihi 2 run shows "
            "(exporters/loihi2_evidence.py lists what does)")
