"""Loihi 2 time per step, latency and static energy of a deployment's chip part, from the per-core work of each
step (counted activity laid out on cores by `resources`).

Loihi 2's cores run a step in parallel and meet at a barrier, so a step lasts as long as its busiest core, plus the
host↔chip I/O of that step:

    work_l[t] = (synops_l[t] · t_synop + spikes_l[t] · t_spike) / cores_l + neurons/core_l · t_neuron
    step[t]   = max_l work_l[t] + io_bits[t] / link_rate
    latency   = Σ_t step[t] per sample;   static energy = P_static · chips · latency

synops_l[t]: the synaptic ops (ACs and MACs) of the synapse groups feeding layer l; spikes_l[t]: its spikes; both
spread evenly over the layer's cores (the compiler splits a map into equal blocks). io_bits: the bits of every cut,
per step (a bias written once per sample spread over its steps). The times are the preset's `[time]` table, the
static power its `[power]` table (per chip, as lava-dl's benchmark notebook measures it); the host's own compute time
is not modelled."""
import numpy as np

from .counts import Count


def chip_time(counts: list[Count], resources: dict, cuts: list[dict], times: dict, timesteps: int) -> dict:
    """Time per step (mean over the steps of a sample; also without the I/O), latency per sample, the busiest layer,
    and the I/O share."""
    by_name = {c.name: c for c in counts}
    t_syn, t_neuron, t_spike, link = (times[k].value for k in ("synop_ns", "neuron_update_ns", "spike_ns",
                                                                "host_link_bits_per_us"))
    work = {}
    for row in resources["layers"]:
        if not row["cores"]:
            continue
        synops = sum((by_name[g].acs + by_name[g].macs for g in row["synapse_groups"] if g in by_name),
                     np.zeros(timesteps))
        spikes = by_name[row["layer"]].spikes if row["layer"] in by_name else np.zeros(timesteps)
        work[row["layer"]] = (synops * t_syn + spikes * t_spike) / row["cores"] + row["neurons_per_core"] * t_neuron
    compute_ns = np.max(np.stack(list(work.values())), axis=0) if work else np.zeros(timesteps)
    io_ns = np.full(timesteps, sum(c["bits"] for c in cuts) / timesteps / link * 1e3)
    step_ns = compute_ns + io_ns
    busiest = max(work, key=lambda k: work[k].sum()) if work else None
    return {"time_per_step_us": float(step_ns.mean()) * 1e-3, "latency_ms": float(step_ns.sum()) * 1e-6,
            "compute_time_per_step_us": float(compute_ns.mean()) * 1e-3,
            "io_share": float(io_ns.sum() / step_ns.sum()) if step_ns.sum() else 0.0, "busiest_layer": busiest,
            "step_us": [float(v) * 1e-3 for v in step_ns]}


def static_energy_mj(power: dict | None, chips: int, latency_ms: float) -> float:
    """P_static per chip · chips · latency; 0 for a preset without a `[power]` table."""
    return power["static_w_per_chip"].value * chips * latency_ms if power else 0.0
