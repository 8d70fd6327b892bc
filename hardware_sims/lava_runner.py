"""Run one chip segment on Lava's CPU backend (`Loihi2SimCfg(select_tag="fixed_pt")`); runs INSIDE the Lava env.

    python hardware_sims/lava_runner.py WORKDIR

A standalone script: it imports numpy, scipy and lava only (plus `loihi_formats` next to it, by path, for the spec
format version and the conv layout conversion; that module needs numpy only), never torch or the snn2hw package,
which the Lava environment does not have. Everything goes through files; stdout is not used (slayer and Lava print
there). On an error it exits with status 1 and ends stderr with one line `lava_runner: <error>`.

WORKDIR holds, written by `lava_driver` (next to this file):

    spec.json, arrays.npz   the segment, as `snn2hw.exporters.lava_spec.chip_segment_spec` makes it
    inputs.npz              one integer array `[N, T, *shape]` per spec input name (batch first, torch layout)
    request.json            {"samples": N, "probe": [neuron layers], "memory_limit_bytes": bytes or null}

and gets back

    result.npz              `<layer>`: spikes `[N, T, *shape]` (uint8) of every probed LIF layer and "spikes" output;
                            the int64 graded spikes `[N, T, *shape]` of every probed relay and "graded" output
    result.json             samples, Lava steps, timings (seconds), the Lava processes built and the convs built
                            as a Sparse

Everything is aligned to logical steps: logical step t of node X is Lava step t + depth(X) of its sample.

How the segment becomes Lava processes
--------------------------------------
* Layouts: Lava tensors are (X, Y, Z) = (W, H, C), torch's (C, H, W) reversed. Every array goes in with its axes
  reversed and comes back reversed again; conv weights and (H, W) parameters are converted as lava-dl netx does
  (`loihi_formats.torch_to_lava_conv_weight`, `torch_to_lava_conv_params`).
* input: a source `RingBuffer` holding all samples back to back, the data shifted to the input's depth (the step
  before its synapse's neuron needs it). It feeds exactly one synapse, its `to`: 0/1 for "spikes" payloads, the
  integers round(value · 2^q) for "graded" ones, which that synapse reads with `num_message_bits` > 0.
* conv: a `Sparse` of its connections (`conv_to_sparse`, Lava's own conversion) where that computes what Lava's
  `Conv` computes: Sparse keeps every weight (its clip and 8-bit truncation change none), and no sum can leave
  Conv's 24 bits, which Conv wraps and Sparse does not (|w| summed over an output's inputs times the largest input:
  1 for spikes, the data's own for a spec input; unknown for a relay inside the run). Else, and above
  `SPARSE_MAX_CONNECTIONS`, a `Conv` (fixed: no weight_exp, 24-bit wrap), which costs one scipy convolution per
  channel pair and step. dense: `Dense` (weight_exp 0).
* identity: a one-to-one `Sparse` (n × n, `weight` on the diagonal, the spec's `weight_exp` and `num_message_bits`),
  its ports reshaped to and from the n = prod(shape) neurons it connects.
* flatten: a virtual port, `transpose` to (C, H, W) then `flatten`, so the order is torch's C, H, W flatten.
* lif: `LIFReset` with the spec's du, dv, vth, per-neuron bias_mant and bias_exp. Its synapses' `a_out`s are
  summed by its `a_in` port (in int32, as Lava does); they all arrive at the same step, so no synapse is delayed.
* relay: `GradedVec` with vth 0 and exp 0: each step it sends the sum of its synapses' `a_out`s (summed at its
  `a_in` like a LIF's) as a graded spike, int32, and keeps nothing (v is zeroed after every step).
* samples: one run of N·T + max depth steps. Each LIF resets u and v at its depth in every window of T steps
  (`reset_interval` T, `reset_offset` depth + 1: Lava counts steps from 1), so it starts each sample from zero state
  and integrates bias only from its first input on. This is exact with no gap between samples: the network is a
  feed-forward pipeline in which node X works on sample s during Lava steps [sT + depth(X), (s+1)T + depth(X)).
  Whatever a node emits outside its window (bias-driven spikes before its depth, the tail after its last step)
  reaches each consumer strictly before that consumer's own reset, because every path adds exactly the depth
  difference in steps; and the one-step buffers of Conv/Dense/Sparse in flight at a boundary carry the previous
  sample's last steps to the consumer's previous-sample window, where they belong. Relays need no reset: a relay
  keeps no state and emits at each step exactly what it received at that step, so it moves values along the pipeline
  with the same depth shift as any neuron and carries nothing across a window boundary; what it passes on from
  outside its window is what the LIF argument above already places before the next reset (or outside the steps read).
* probing: an `Extractor` per probed layer and per output, whose channel passes each step's values to this process
  (received after every run of `EXTRACT_BUFFER` steps). A `Var` read after the run (`Monitor`, sink `RingBuffer`)
  would cost ~15 µs to 70 µs per value, since Lava sends Vars element by element: minutes for a few hundred samples.
* errors: building and compiling raise here. A Lava process that raises or dies during a step makes Lava 0.10 wait
  forever (the others wait for its messages; the error is reported nowhere), so `LavaProcessWatch` ends the runner
  as soon as one of them is gone, with its error; the caller then kills what is left of the run. A run that hangs
  with every process alive (Lava 0.10 has no hang detection, lava-nc/lava#178) is stopped by the caller, which
  first sends SIGUSR1: the runner and every Lava process it forked write their threads' stacks to stderr
  (`faulthandler`, registered before Lava forks).
"""
import faulthandler
import importlib.util
import json
import os
import resource
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.conv.process import Conv
from lava.proc.dense.process import Dense
from lava.proc.graded.process import GradedVec
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
from lava.proc.io.source import RingBuffer as Source
from lava.proc.lif.process import LIFReset
from lava.proc.conv.utils import conv_to_sparse
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights
from scipy import sparse


def _load_formats():
    """`loihi_formats` from next to this file, without importing the snn2hw package (it needs torch)."""
    path = Path(__file__).with_name("loihi_formats.py")
    spec = importlib.util.spec_from_file_location("snn2hw_loihi_formats", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


formats = _load_formats()

# A conv of up to this many connections is built as a Sparse (about 45 bytes per connection while conv_to_sparse
# and scipy build it; 2 GB at this size), a larger one as a Conv.
SPARSE_MAX_CONNECTIONS = 40_000_000
EXTRACT_BUFFER = 64                # steps per blocking run: each Extractor buffers that many messages
WATCH_S = 0.2                      # how often the watch looks for a Lava process that died


def to_lava(a: np.ndarray) -> np.ndarray:
    """A torch-layout array (C, H, W) → Lava's (W, H, C): all axes reversed."""
    return np.ascontiguousarray(np.transpose(a))


def lava_shape(shape) -> tuple:
    return tuple(int(s) for s in reversed(shape))


def torch_order(port, ndim: int):
    """A virtual port presenting `port`'s (W, H, C) values flattened in torch's C, H, W order."""
    return port.transpose(list(reversed(range(ndim)))).flatten() if ndim > 1 else port


class LavaProcessWatch:
    """While in its `with` block, a thread watches a running Lava runtime's processes (none ends before `stop()`)
    and, at the first that has ended, writes its error or exit status to stderr and exits this process (status 1)."""

    def __init__(self, runtime):
        # Lava has no public list of its OS processes; this one, of lava-nc 0.10 (pinned), keeps every process
        # it started, dead or alive (multiprocessing.active_children() forgets a dead one as it reaps it).
        self._processes = list(runtime._messaging_infrastructure.actors)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _watch(self):
        while not self._done.wait(WATCH_S):
            dead = next((p for p in self._processes if p.exitcode is not None), None)
            if dead is not None:
                error = getattr(dead, "exception", None)  # Lava's SystemProcess sends (exception, traceback)
                sys.stderr.write((error[1] if error else "") + self._describe(dead, error) + "\n")
                sys.stderr.flush()
                os._exit(1)

    @staticmethod
    def _describe(process, error) -> str:
        if process.exitcode < 0:
            how = f"was killed by {signal.Signals(-process.exitcode).name}"
            if process.exitcode == -signal.SIGKILL:
                how += " (as the kernel's out-of-memory killer does)"
        else:
            how = f"ended (exit code {process.exitcode})"
        if error:
            how += f" with {type(error[0]).__name__}: {' '.join(str(error[0]).split())[:300]}"
        return f"lava_runner: a Lava process (pid {process.pid}) {how} in the middle of the run"


class Segment:
    """The Lava processes of one spec, wired; `run()` runs them and collects the probed values."""

    def __init__(self, spec: dict, arrays, inputs: dict[str, np.ndarray], samples: int, probe: list[str]):
        relays = {n["name"] for n in spec["nodes"] if n["op"] == "relay"}
        unknown = sorted(set(probe) - set(spec["spiking_layers"]) - relays)
        if unknown:
            raise ValueError(f"segment {spec['segment']} has no neuron layer {', '.join(unknown)}")
        self.arrays, self.samples = arrays, samples
        self.T = int(spec["timesteps"])
        self.depth = {n["name"]: int(n["depth"]) for n in spec["nodes"]}
        self.shape = {n["name"]: tuple(n["shape"]) for n in [*spec["inputs"], *spec["nodes"]]}
        self.steps = samples * self.T + max(self.depth.values(), default=0)
        self.ports = {}          # node or spec-input name → its Lava OutPort (Lava layout)
        self.procs = []          # every process, for the report
        self.extractors = {}     # probed node → (Extractor, dtype of its values)
        self.input_data = inputs
        self.sparse_convs = []   # the convs built as a Sparse
        for i in spec["inputs"]:
            self._source(i, inputs[i["name"]])
        for node in spec["nodes"]:
            if node["op"] not in ("conv", "dense", "identity", "flatten", "lif", "relay"):
                raise ValueError(f"node {node['name']}: op {node['op']!r} has no Lava form in this runner")
            getattr(self, "_" + node["op"])(node)
        for o in spec["outputs"]:
            if o["kind"] not in ("spikes", "graded"):
                raise ValueError(f"output {o['name']}: kind {o['kind']!r} has no Lava form in this runner")
        for name in dict.fromkeys([*probe, *(o["name"] for o in spec["outputs"])]):
            self._extract(name, np.int64 if name in relays else np.uint8)

    def _add(self, proc):
        self.procs.append(proc)
        return proc

    # -- building ------------------------------------------------------------------------------------------------
    def _source(self, entry: dict, x: np.ndarray):
        """All samples back to back, logical step t of sample s at Lava step sT + t + depth (zeros elsewhere)."""
        n, t = x.shape[:2]
        if n != self.samples or t != self.T or list(x.shape[2:]) != list(entry["shape"]):
            raise ValueError(f"input {entry['name']}: expected [{self.samples}, {self.T}, "
                             f"{', '.join(map(str, entry['shape']))}], got {list(x.shape)}")
        if np.abs(x).max(initial=0) >= 2 ** 31:
            raise ValueError(f"input {entry['name']}: values do not fit Lava's int32 messages")
        data = np.zeros(lava_shape(entry["shape"]) + (self.steps,), np.int32)
        d = int(entry["depth"])
        data[..., d:d + n * t] = to_lava(x.reshape(n * t, *x.shape[2:]))
        self.ports[entry["name"]] = self._add(Source(data=data)).s_out

    def _conv(self, node):
        """A `Sparse` of the conv's connections (`conv_to_sparse`) where it computes what `Conv` computes, else a
        `Conv`: Lava's Conv calls scipy once per channel pair and step (minutes per sample at official size), its
        Sparse one matrix product per step."""
        weight, groups = self.arrays[node["weight"]], int(node["groups"])
        matrix = self._conv_matrix(node, weight, groups)
        if matrix is None:
            self._add_conv(node, weight, node, groups)
        else:
            self._add_sparse(node, matrix, weight_exp=0)
            self.sparse_convs.append(node["name"])

    def _conv_matrix(self, node, weight, groups: int):
        """The conv as a CSR matrix (outputs × inputs, both Lava-layout flat), or None where a Sparse would differ
        from Lava's Conv: where Sparse's weight handling (clip, then truncate to 8 bits in the sign mode of the whole
        matrix) would change a weight, or where a sum could leave Conv's 24 bits, which Conv wraps and Sparse does
        not (the bound: |w| summed over an output's inputs, times the largest input; a relay's input is unknown
        before the run, so a conv reading one stays a Conv)."""
        peak = self._peak_input(node)
        if peak is None or formats.synapse_connections(node, weight.shape) > SPARSE_MAX_CONNECTIONS:
            return None
        kw = formats.torch_to_lava_conv_params(node["stride"], node["padding"], node["dilation"])
        dst, src, wgt = conv_to_sparse(lava_shape(node["shape_in"]), lava_shape(node["shape"]),
                                       formats.torch_to_lava_conv_weight(weight),
                                       **{k: tuple(int(a) for a in v) for k, v in kw.items()}, group=groups)
        shape = (int(np.prod(node["shape"])), int(np.prod(node["shape_in"])))
        matrix = sparse.csr_matrix((np.asarray(wgt, np.int32), (dst, src)), shape=shape)
        matrix.eliminate_zeros()
        if matrix.nnz == 0:
            return None
        sign = determine_sign_mode(matrix.data)
        as_sparse_uses = truncate_weights(clip_weights(matrix, sign, num_bits=8), sign, num_weight_bits=8)
        if (as_sparse_uses != matrix).nnz:
            return None
        reach = int(abs(matrix).sum(axis=1).max()) * peak
        return matrix if reach < 2 ** (formats.CONV_OUT_BITS - 1) else None

    def _peak_input(self, node):
        """The largest |value| `node` can receive: 1 for spikes, the data's own for a spec input, else None."""
        if int(node["num_message_bits"]) == 0:
            return 1
        data = self.input_data.get(node["input"])
        return None if data is None else int(np.abs(data).max(initial=0))

    def _add_conv(self, node, weight, geometry, groups: int):
        """A Lava `Conv` of torch-layout `weight` and `geometry`'s stride, padding and dilation (H, W)."""
        kw = formats.torch_to_lava_conv_params(geometry["stride"], geometry["padding"], geometry["dilation"])
        conv = self._add(Conv(weight=formats.torch_to_lava_conv_weight(weight).astype(np.int32),
                              input_shape=lava_shape(node["shape_in"]), groups=groups,
                              num_message_bits=int(node["num_message_bits"]), name=node["name"],
                              **{k: tuple(int(a) for a in v) for k, v in kw.items()}))
        if tuple(conv.a_out.shape) != lava_shape(node["shape"]):
            raise ValueError(f"conv {node['name']}: Lava computes output shape {conv.a_out.shape}, "
                             f"the spec says {node['shape']} (C, H, W)")
        self.ports[node["input"]].connect(conv.s_in)
        self.ports[node["name"]] = conv.a_out

    def _dense(self, node):
        if len(node["shape_in"]) != 1:
            raise ValueError(f"dense {node['name']}: input {node['input']} has shape {node['shape_in']}; "
                             "a flatten must come first")
        dense = self._add(Dense(weights=np.asarray(self.arrays[node["weight"]], np.int32),
                                num_message_bits=int(node["num_message_bits"]), name=node["name"]))
        self.ports[node["input"]].connect(dense.s_in)
        self.ports[node["name"]] = dense.a_out

    def _identity(self, node):
        """A one-to-one `Sparse`: every neuron's input times `weight`, shifted by `weight_exp`; or, where
        `loihi_formats.identity_as_conv` says so (no exponent, fewer weights), a 1x1 `Conv` of kernel weight·I."""
        if formats.identity_as_conv(node["shape"], int(node["weight_exp"])):
            self._add_conv(node, formats.identity_kernel(int(node["weight"]), int(node["shape"][0])),
                           dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1)), 1)
            return
        n = int(np.prod(node["shape"]))
        self._add_sparse(node, sparse.identity(n, dtype=np.int32, format="csr") * int(node["weight"]),
                         int(node["weight_exp"]))

    def _add_sparse(self, node, matrix, weight_exp: int):
        """A `Sparse` of `matrix` (outputs × inputs, Lava-layout flat) from `node`'s input to its output shape."""
        proc = self._add(Sparse(weights=matrix, weight_exp=weight_exp,
                                num_message_bits=int(node["num_message_bits"]), name=node["name"]))
        self.ports[node["input"]].reshape((matrix.shape[1],)).connect(proc.s_in)
        self.ports[node["name"]] = proc.a_out.reshape(lava_shape(node["shape"]))

    def _flatten(self, node):
        src = node["input"]
        self.ports[node["name"]] = torch_order(self.ports[src], len(self.shape[src]))

    def _lif(self, node):
        lif = self._add(LIFReset(shape=lava_shape(node["shape"]), du=int(node["du"]), dv=int(node["dv"]),
                                 vth=int(node["vth"]),
                                 bias_mant=to_lava(np.asarray(self.arrays[node["bias_mant"]], np.int64)),
                                 bias_exp=int(node["bias_exp"]), reset_interval=self.T,
                                 reset_offset=(int(node["depth"]) + 1) % self.T, name=node["name"]))
        self._sum_into(node, lif.a_in)
        self.ports[node["name"]] = lif.s_out

    def _relay(self, node):
        relay = self._add(GradedVec(shape=lava_shape(node["shape"]), vth=0, exp=0))
        relay.name = node["name"]
        self._sum_into(node, relay.a_in)
        self.ports[node["name"]] = relay.s_out

    def _sum_into(self, node, a_in):
        """Connect every synapse of neuron `node` to its `a_in`, which sums them (they arrive at the same step)."""
        for syn in node["synapses"]:
            port = self.ports[syn]
            if tuple(port.shape) != tuple(a_in.shape):
                raise ValueError(f"neuron {node['name']}: synapse {syn} sends shape {port.shape}, it receives "
                                 f"{a_in.shape} (Lava layout)")
            port.connect(a_in)

    # -- probing and running ---------------------------------------------------------------------------------------
    def _extract(self, name: str, dtype):
        """Stream node `name`'s values out of Lava, one message per step."""
        port = self.ports[name]
        extractor = self._add(Extractor(shape=tuple(port.shape), buffer_size=EXTRACT_BUFFER))
        port.connect(extractor.in_port)
        self.extractors[name] = (extractor, dtype)

    def run(self) -> tuple[dict[str, np.ndarray], dict]:
        """Run all steps, the first alone (it includes compiling and spawning the processes), receiving every probed
        value → (results `[N, T, *torch shape]`, timings)."""
        # The Extractor's only model has no tag: name it, or the fixed_pt selection finds none.
        cfg = Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map={Extractor: PyLoihiExtractorModel})
        anchor, n = self.procs[0], self.samples * self.T
        values = {k: np.zeros((n, *ex.in_port.shape), dtype) for k, (ex, dtype) in self.extractors.items()}

        def receive(step: int):
            for name, (extractor, _) in self.extractors.items():
                data = extractor.receive()  # float64 messages: exact for these integers (< 2^31)
                if 0 <= step - self.depth[name] < n:
                    values[name][step - self.depth[name]] = data
        t0 = time.perf_counter()
        anchor.create_runtime(run_cfg=cfg)  # compiles, and forks Lava's processes
        try:
            with LavaProcessWatch(anchor.runtime):
                anchor.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
                receive(0)
                t1 = time.perf_counter()
                # Runs of one Extractor buffer each: Lava never waits for this process, and memory stays bounded.
                for first in range(1, self.steps, EXTRACT_BUFFER):
                    last = min(first + EXTRACT_BUFFER, self.steps)
                    anchor.run(condition=RunSteps(num_steps=last - first), run_cfg=cfg)
                    for step in range(first, last):
                        receive(step)
                t2 = time.perf_counter()
        finally:
            anchor.stop()
        timings = {"compile_and_first_step_s": t1 - t0, "run_s": t2 - t1,
                   "per_step_ms": 1000 * (t2 - t1) / max(self.steps - 1, 1)}
        results = {}
        for name, v in values.items():
            v = np.transpose(v, [0, *range(v.ndim - 1, 0, -1)])  # Lava (X, Y, Z) back to torch (C, H, W)
            results[name] = v.reshape(self.samples, self.T, *v.shape[1:])
        return results, timings


def _limit_address_space(limit: int) -> None:
    """RLIMIT_AS for this process and Lava's, which it forks later. Set once the interpreter and its libraries are
    loaded: a limit they already exceed is refused here in one sentence, where an allocation failing at random
    would show as anything from MemoryError to a SystemError in numpy's import."""
    mapped = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
    if mapped >= limit:
        raise MemoryError(f"the memory limit ({limit / 2 ** 20:g} MiB) is below the {mapped / 2 ** 20:.0f} MiB of "
                          "address space this process has mapped before building anything (Python, numpy, Lava)")
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main(workdir: Path) -> None:
    t0 = time.perf_counter()
    spec = json.loads((workdir / "spec.json").read_text())
    if spec.get("format") != formats.CHIP_SPEC_FORMAT:
        raise ValueError(f"spec format {spec.get('format')!r}; this runner reads format {formats.CHIP_SPEC_FORMAT}")
    request = json.loads((workdir / "request.json").read_text())
    if request.get("memory_limit_bytes"):
        _limit_address_space(int(request["memory_limit_bytes"]))
    with np.load(workdir / "arrays.npz", allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    with np.load(workdir / "inputs.npz", allow_pickle=False) as f:
        inputs = {k: f[k] for k in f.files}
    segment = Segment(spec, arrays, inputs, int(request["samples"]), list(request.get("probe", [])))
    build_s = time.perf_counter() - t0
    results, timings = segment.run()
    np.savez(workdir / "result.npz", **results)
    report = {"segment": spec["segment"], "samples": segment.samples, "lava_steps": segment.steps,
              "processes": len(segment.procs), "sparse_convs": segment.sparse_convs, "build_s": build_s, **timings}
    (workdir / "result.json").write_text(json.dumps(report, indent=1))


def run_script(run, script: str) -> None:
    """`script WORKDIR` → `run(WORKDIR)`; on an error, the traceback and then one short line saying what went wrong
    (the caller shows the end of stderr), and exit 1 at once: a Lava runtime that failed half-built keeps the
    interpreter waiting for its processes."""
    if len(sys.argv) != 2:
        sys.exit(f"usage: {script}.py WORKDIR")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # inherited by Lava's forked processes
    try:
        run(Path(sys.argv[1]))
    except Exception as e:
        traceback.print_exc()
        sys.stderr.write(f"{script}: {type(e).__name__}: {' '.join(str(e).split())[:300]}\n")
        sys.stderr.flush()
        os._exit(1)


if __name__ == "__main__":
    run_script(main, "lava_runner")
