"""Run a backend on inputs and feed the activity it records to the energy counts (`snn2hw.energy`, which runs
nothing), or build the graphs the analytic mode counts on; and the energy report of either."""
import hashlib
from functools import partial

import numpy as np
import torch

from . import ir
from .convert import convert
from .deployment import Deployment
from .energy import Preset, RateActivity, RecordedActivity, build_report, parse_rates
from .errors import UserError
from .hardware_sims.runner import lava_chip, run_fixed
from .hardware_sims.lava_driver import LavaLimits
from .hardware_sims.netx_sim import run_netx
from .models.zoo import NIR_ARCH, build_model
from .netx_import import NetxNetwork, netx_graph
from .passes.pipeline import float_and_integer, pipeline, run_passes

# Where the activity comes from: the fixed-point simulator, the folded float graph, or Lava on the deployment.
ACTIVITY_BACKENDS = ("fixed", "folded", "lava")


def record_activity(graph: ir.Graph, backend: str, x: np.ndarray, batch_size: int = 64,
                    deployment: Deployment | None = None, lava_limits: LavaLimits = LavaLimits()) -> RecordedActivity:
    """Run `x` on a backend and keep, per node of `graph`, how often each value is non-zero at each step.

    fixed: the fixed-point simulator (the deployment's files if given, else `graph` in memory), whose spike tensors
    keep positions (counts per layer would lose the border effects); folded: the folded float graph; lava: the
    deployment's files with Lava's CPU backend for the chip, all samples in one run, within `lava_limits`. Every run
    reports what the counts read: each neuron layer's spikes and each value crossing host↔chip."""
    activity = RecordedActivity(graph)
    if backend == "lava":
        record = deployment.run(x, partial(lava_chip, limits=lava_limits))[1]
        activity.add(record.values, record.cut_inputs)
        return activity
    for start in range(0, len(x), batch_size):
        batch = torch.as_tensor(x[start:start + batch_size])
        if backend == "folded":
            activity.add(graph.run(batch, record=True)[1])
        else:
            record = (deployment.run(batch) if deployment is not None else run_fixed(graph, batch))[1]
            activity.add(record.values, record.cut_inputs)
    return activity


def analytic_graphs(arch: str, timesteps: int | None = None) -> tuple[ir.Graph, ir.Graph]:
    """(source, deployed structure) of an architecture without a checkpoint: weights random but non-zero (uniform
    in [0.5, 1.5], so that every zero in the compiled graph is structural, e.g. the one-to-one identity paths of the
    unrolled stream), compiled by the passes up to the partition (no quantization: it needs data)."""
    if arch == NIR_ARCH:
        raise UserError("--arch nir has no analytic mode: a NIR graph's network is in its file; export it and run "
                        "`snn2hw energy DEPLOY_DIR --input X.npy`.")
    try:
        model = build_model(arch, **({"timesteps": timesteps} if timesteps else {}))
    except KeyError as e:
        raise UserError(str(e.args[0])) from None
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) + 0.5)
    source = convert(model, arch)
    return source, run_passes(source, pipeline(None, "host"))


def deployment_report(dep: Deployment, x: np.ndarray, backend: str, preset: Preset, mode: str = "faithful",
                      system: str | None = None, batch_size: int = 64,
                      lava_limits: LavaLimits = LavaLimits()) -> dict:
    """The energy report of a loaded deployment (`load_deployment`) on inputs `x`, from `backend`'s activity,
    counted on the deployment's files (`Deployment.graphs`); only the folded backend rebuilds the float graph."""
    if backend not in ACTIVITY_BACKENDS:
        raise UserError(f"--backend {backend!r}: use one of {', '.join(ACTIVITY_BACKENDS)}.")
    source, deployed = dep.graphs
    recorded_on = dep.compiled.fixed if backend == "folded" else deployed
    activity = record_activity(recorded_on, backend, x, batch_size, dep, lava_limits)
    return build_report(source, deployed, activity, preset, mode, system, arch=dep.arch,
                        origin=str(dep.path), source_sha256=dep.manifest["source"]["sha256"], backend=backend,
                        samples=len(x), tcja=dep.manifest["tcja"],
                        residual_forms=residual_form_energy(dep, x, preset, batch_size))


def residual_form_energy(dep: Deployment, x: np.ndarray, preset: Preset, batch_size: int = 64) -> dict:
    """Where `--residual auto` compared both forms of MS-ResNet's residual stream at export (their cores; the
    manifest's `residual_forms`), each form's faithful energy per sample on `x`: its own folded float graph run on
    `x`, counted and priced as the energy report counts a deployment (chip, host, host↔chip transfers, static) —
    both alike, before quantization rounds small weights to zero. {} where only one form was compiled."""
    forms = dep.manifest["residual_forms"]
    if len(forms) < 2:
        return {}
    loaded, calibration = dep.source_model
    source = convert(loaded.model, loaded.arch)
    energies = {}
    for form in forms:
        graph = run_passes(source, float_and_integer(pipeline(calibration, dep.manifest["tcja"], form))[0])
        report = build_report(source, graph, record_activity(graph, "folded", x, batch_size), preset)
        faithful = report["modes"]["faithful"]
        energies[form] = {key: faithful[key] for key in ("total_energy_mj", "chip_mj", "host_mj", "transfer_mj",
                                                         "static_mj")}
        energies[form].update(cores=report["loihi2"]["cores"], latency_ms=report["loihi2"]["latency_ms"],
                              kept=form == dep.manifest["residual"])
    return energies


def analytic_report(arch: str, timesteps: int | None, firing_rate: str, preset: Preset, mode: str = "faithful",
                    system: str | None = None) -> dict:
    """The energy report of an architecture at assumed firing rates (`--firing-rate`: `energy.parse_rates`)."""
    source, deployed = analytic_graphs(arch, timesteps)
    rates, input_rate = parse_rates(firing_rate, deployed)
    return build_report(source, deployed, RateActivity(deployed, rates, input_rate), preset, mode, system,
                        arch=arch, origin="analytic", firing_rate_spec=firing_rate, input_density=input_rate)


def netx_report(net: NetxNetwork, x: np.ndarray, timesteps: int, preset: Preset, mode: str = "faithful",
                system: str | None = None, batch_size: int = 64) -> dict:
    """The energy report of a lava-dl `.net` on inputs `x` (the input neurons' bias per sample, or spikes
    `[N, T, ...]`), from the fixed-point simulator's spikes, counted on the network as netx deploys it
    (`netx_graph`): all on the chip but the input."""
    graph = netx_graph(net, timesteps)
    activity = RecordedActivity(graph)
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        traces = run_netx(net, batch, timesteps)
        inputs = np.repeat(batch[None], timesteps, 0) if net.input_kind == "bias" else np.moveaxis(batch, 1, 0)
        activity.add({"input": inputs, **{k: np.moveaxis(t.s, 1, 0) for k, t in traces.items()}})
    return build_report(graph, graph, activity, preset, mode, system, arch=graph.arch, origin=str(net.path),
                        source_sha256=hashlib.sha256(net.path.read_bytes()).hexdigest(), backend="fixed",
                        samples=len(x))
