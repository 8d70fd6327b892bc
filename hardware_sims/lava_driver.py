"""Chip segments on Lava's CPU backend, run from the main environment (DESIGN.md, "Two Python environments").

Lava needs its own interpreter (`.venv-lava`, Python 3.10, numpy<2), so a segment runs in a subprocess:
`lava_runner.py WORKDIR` (next to this file), with the segment spec, its arrays, the inputs and the request written to a
temporary WORKDIR and the results read back from it (files only: Lava and slayer print to stdout).

Lava forks one OS process per process model, so the runner gets a session of its own and the whole process group
is killed when it ends, fails or runs out of time: nothing of a Lava run outlives the call. Lava 0.10 can hang at
random with every process alive (it has no hang detection, lava-nc/lava#178; seen once in 2026-12 CI on a demo segment
that takes 10 s, never in 40 runs here under load): a run that runs out of time first has its processes write their
stacks to the log, and is then run once more, with a warning. A memory limit, if given,
caps each of its processes' address space (RLIMIT_AS): an official-size segment can otherwise take the machine's
memory (DESIGN.md: Lava's sparse convolutions grow with channels² × positions).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from . import loihi_formats as formats
from .netx_sim import STATES, BlockTrace

REPO = Path(__file__).resolve().parent.parent
DEFAULT_LAVA_PYTHON = REPO / ".venv-lava" / "bin" / "python"
LAVA_PYTHON_ENV = "SNN2HW_LAVA_PYTHON"
# Variables that would make the Lava interpreter pick up the main environment's packages.
LEAKY_ENV = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
LOG_DIR = Path(tempfile.gettempdir()) / "snn2hw-logs"  # a failed Lava run's stderr, named in its error
RUNNER_ERROR_PREFIXES = ("lava_runner: ", "lava_netx_runner: ")  # the runners' one-line errors (run_script)
STDERR_WIDTH = 300
POLL_S = 0.05
STACK_S = 0.05  # between one process's SIGUSR1 and the next: each writes its stacks alone, not interleaved
STACKS_S = 0.5  # after the last SIGUSR1, before the kill: time for the last process to finish writing
HANG_RETRIES = 1  # a run that hangs is run this many more times (lava-nc/lava#178)
TERM_GRACE_S = 1.0  # after SIGTERM, before SIGKILL: time for multiprocessing's resource tracker to clean up
# How a failed allocation shows on stderr: Python, the dynamic loader (mmap of a library), C++ (numpy, scipy), and
# a thread whose stack cannot be mapped (Lava starts threads for its channels).
OUT_OF_MEMORY = re.compile(r"MemoryError|Cannot allocate memory|failed to map segment|std::bad_alloc|"
                           r"out of memory|can't start new thread", re.IGNORECASE)


class LavaError(UserError):
    """A Lava run failed, timed out, or the Lava environment is missing."""


class LavaHang(LavaError):
    """A Lava run did not finish in time (stopped, its processes' stacks logged)."""


# A segment with more connections than this runs as several Lava runs of consecutive neuron layers, each fed the
# values the earlier runs produced (`split_segment`); the runner builds a conv of up to as many connections as a
# Sparse (`lava_runner.SPARSE_MAX_CONNECTIONS`), about 45 bytes each while it builds, so one run stays near 2 GB.
RUN_MAX_CONNECTIONS = 40_000_000
# The default time a segment's Lava runs may take: Lava's start-up per run plus a multiple of a cost estimate from
# the segment's size. Measured on the 2-core sandbox with lava-nc 0.10: Lava's Conv takes 7 µs + 40 ns per output
# position per channel pair and step (one scipy convolve2d each: 8 µs on 4x4 maps, 47 µs on 32x32), its Sparse
# about 2 ns per connection and step plus about 110 ns per connection to build (conv_to_sparse), and Lava starts in
# 2-5 s. The official gac-msresnet18-cifar (32 runs) took 392 s for two samples (benchmarks fixed_vs_lava --full),
# where this estimates 527 s.
START_S = 30.0
CONV_PAIR_S = 7e-6
CONV_PAIR_POSITION_S = 40e-9
SPARSE_CONNECTION_S = 2e-9
SPARSE_BUILD_S = 110e-9
NEURON_STEP_S = 50e-9
TIMEOUT_MARGIN = 10
NETX_TIMEOUT_S = 600.0  # a .net's default: lava-dl's files are small (PilotNet runs in seconds)


@dataclass(frozen=True)
class LavaLimits:
    """What one chip segment's Lava runs may take before they are stopped: `timeout_s` seconds in all (Lava's
    start-up included; None: derived from the segment's size, `default_timeout`) and, if set, `memory_bytes` of
    address space per process (RLIMIT_AS)."""
    timeout_s: float | None = None
    memory_bytes: int | None = None


def lava_python() -> Path:
    """The Lava environment's interpreter: `$SNN2HW_LAVA_PYTHON`, else `<repo>/.venv-lava/bin/python`."""
    path = Path(os.environ.get(LAVA_PYTHON_ENV) or DEFAULT_LAVA_PYTHON)
    if not os.access(path, os.X_OK):
        raise LavaError(f"the Lava environment is missing ({path} is not an interpreter): build it with "
                        f"`make setup-lava`, or point {LAVA_PYTHON_ENV} at its python.")
    return path


def runner_path() -> Path:
    return Path(__file__).with_name("lava_runner.py")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _batch_first_inputs(spec: dict, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """`[T, N, ...]` integer arrays → `[N, T, ...]` int64, checked against the spec."""
    name, T = spec["segment"], spec["timesteps"]
    out, samples = {}, set()
    for entry in spec["inputs"]:
        key = entry["name"]
        if key not in inputs:
            raise LavaError(f"chip segment {name}: no values for its input {key}.")
        x = np.asarray(inputs[key])
        if x.dtype != bool and not np.issubdtype(x.dtype, np.integer):
            raise LavaError(f"chip segment {name}: input {key} must hold integers (the values the chip receives), "
                            f"got {x.dtype}.")
        if x.ndim < 2 or x.shape[0] != T or list(x.shape[2:]) != list(entry["shape"]):
            dims = ", ".join(map(str, entry["shape"]))
            raise LavaError(f"chip segment {name}: input {key} must be [T={T}, N, {dims}], got {list(x.shape)}.")
        out[key] = np.ascontiguousarray(np.swapaxes(x, 0, 1)).astype(np.int64)
        samples.add(x.shape[1])
    if len(samples) != 1:
        raise LavaError(f"chip segment {name}: its inputs disagree on the number of samples ({sorted(samples)}).")
    if samples == {0}:
        raise LavaError(f"chip segment {name}: no samples to run.")
    return out, samples.pop()


def _log(workdir: Path, what: str) -> Path:
    """A copy of a failed run's stderr that outlives the run's temporary folder."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{re.sub(r'[^A-Za-z0-9.-]+', '-', what)}-{os.getpid()}-{time.time_ns()}.log"
    stderr = workdir / "stderr.txt"
    log.write_bytes(stderr.read_bytes() if stderr.exists() else b"")
    return log


def _failure(workdir: Path, what: str) -> str:
    """The cause of a failed Lava run in one clause (the runner's own one-line error, else stderr's last line) and
    where its whole stderr now is (`_log`)."""
    text = (workdir / "stderr.txt").read_text(errors="replace") if (workdir / "stderr.txt").exists() else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    own = [line.split(": ", 1)[1] for line in lines if line.startswith(RUNNER_ERROR_PREFIXES) and ": " in line]
    cause = (own or lines or ["no output on stderr"])[-1][:STDERR_WIDTH]
    return f"{cause}; its output is in {_log(workdir, what)}"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _wait(proc: subprocess.Popen, timeout: float, abort: threading.Event | None = None):
    """Wait for the runner to exit WITHOUT reaping it → its `os.waitid` status, or None if it is still running after
    `timeout` s or once `abort` is set.

    Unreaped, its pid stays taken, so the group id used to kill its children cannot name an unrelated group."""
    deadline = time.monotonic() + timeout
    while (status := os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)) is None:
        if time.monotonic() >= deadline or (abort is not None and abort.is_set()):
            return None
        time.sleep(POLL_S)
    return status


def _stop_group(proc: subprocess.Popen, clean_exit: bool) -> None:
    """Kill the runner's process group (the runner leads it; Lava's processes and multiprocessing's helpers are in
    it), then reap the runner.

    Unless the runner ended cleanly (Lava stopped, its shared memory released), the group gets SIGTERM first:
    Lava's processes die at once, and the resource tracker, which ignores SIGTERM, then unlinks the shared memory of
    Lava's channels; SIGKILL alone would leave it in /dev/shm."""
    if not clean_exit:
        _signal_group(proc.pid, signal.SIGTERM)
        _wait(proc, TERM_GRACE_S)
        time.sleep(TERM_GRACE_S / 2)  # the tracker starts once every process holding its pipe is gone
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _dump_stacks(pgid: int, script: Path) -> None:
    """Have the runner and the Lava processes it forked (the members of its group running `script`) write their
    threads' stacks to stderr (the runner's `faulthandler` on SIGUSR1), one after the other, and wait `STACKS_S`
    for the last. Not the resource tracker, which SIGUSR1 would kill before it unlinks the run's shared memory."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pgrp = int(stat.read_text().rsplit(")", 1)[1].split()[2])  # after the name: state, ppid, pgrp
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if pgrp == pgid and os.fsencode(script) in cmdline.split(b"\0"):
            try:
                os.kill(int(stat.parent.name), signal.SIGUSR1)
            except ProcessLookupError:
                continue
            time.sleep(STACK_S)
    time.sleep(STACKS_S)


def _run_script(script: Path, workdir: Path, what: str, timeout: float, memory_limit_bytes: int | None,
                abort: threading.Event | None = None, deadline: float | None = None) -> int:
    """Run a Lava-side script on WORKDIR in the Lava environment (`_run_script_once`); one that hangs is run again,
    up to `HANG_RETRIES` times, each with `timeout` s, and a warning says so → how many times it was run again.

    Not run again: a run under a memory limit (a process that ran out makes the others wait, and would again), and
    a run that began more than `START_S` s into its segment's time (`deadline`: its time ran out because the runs
    before it took it, not because it hung). A run that would begin after the deadline fails at once."""
    if deadline is not None and deadline <= time.monotonic():
        raise LavaError(f"{what}: the {timeout:g} s its segment's Lava runs may take together ran out before this "
                        "run began.")
    own_time = deadline is None or deadline - time.monotonic() >= timeout - START_S
    for retries in range(HANG_RETRIES + 1):
        try:
            _run_script_once(script, workdir, what, timeout, memory_limit_bytes, abort,
                             deadline if retries == 0 else None)
            return retries
        except LavaHang as hang:
            if retries == HANG_RETRIES or memory_limit_bytes or not own_time:
                raise
            warnings.warn(f"{hang} Lava 0.10 can hang at random (lava-nc/lava#178): running it once more, for "
                          f"{timeout:g} s at most.", stacklevel=2)
    raise AssertionError("unreachable")


def _run_script_once(script: Path, workdir: Path, what: str, timeout: float, memory_limit_bytes: int | None,
                     abort: threading.Event | None, deadline: float | None) -> None:
    """Run a Lava-side script on WORKDIR in the Lava environment, in a session of its own that is killed whole when
    it ends, fails, runs out of `timeout` s (or reaches the `time.monotonic()` `deadline` of the runs `timeout`
    limits together) or `abort` is set. Raises LavaError naming `what` (its cause, and the log file keeping its
    stderr) if it fails, is killed or runs out of memory, LavaHang if it runs out of time."""
    python = lava_python()
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV}
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        # -I: isolated mode, so neither the user's site-packages nor the script's folder shadow Lava's modules.
        proc = subprocess.Popen([str(python), "-I", str(script), str(workdir)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, env=env, cwd=workdir, start_new_session=True)
    status = None
    aborted = False
    try:
        status = _wait(proc, timeout if deadline is None else deadline - time.monotonic(), abort)
        aborted = status is None and abort is not None and abort.is_set()
        if status is None and not aborted:
            _dump_stacks(proc.pid, script)
    finally:
        _stop_group(proc, clean_exit=status is not None and status.si_code == os.CLD_EXITED
                    and status.si_status == 0)
    limit = f"{memory_limit_bytes / 2 ** 20:g} MiB per process" if memory_limit_bytes else None
    if aborted:
        raise LavaError(f"{what}: stopped, since another Lava run of its segment failed.")
    if status is None:
        # Seen with lava-nc 0.10: a Lava process that cannot allocate mid-run dies silently and the others wait.
        maybe = f" (this may be the memory limit, {limit}: Lava waits forever for a process that ran out)" \
            if limit else ""
        raise LavaHang(f"{what}: the Lava run did not finish within {timeout:g} s and was stopped (all its "
                       f"processes killed){maybe}; the stacks of its processes at that moment are in "
                       f"{_log(workdir, what)}.")
    if proc.returncode != 0:
        how = (f"was killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"failed (exit code {proc.returncode})")
        if limit and OUT_OF_MEMORY.search((workdir / "stderr.txt").read_text(errors="replace")):
            how = f"ran out of memory (limit {limit})"
        raise LavaError(f"{what}: the Lava run {how}: {_failure(workdir, what)}.")


def _result(workdir: Path, what: str) -> tuple[dict[str, np.ndarray], dict | None]:
    """(the arrays a Lava-side script left in WORKDIR/result.npz, its result.json or None where it writes none)."""
    try:
        with np.load(workdir / "result.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        stats = workdir / "result.json"
        return arrays, json.loads(stats.read_text()) if stats.exists() else None
    except (OSError, ValueError) as e:
        raise LavaError(f"{what}: the Lava run left no readable result ({e}).") from None


def split_segment(spec: dict, arrays: dict[str, np.ndarray],
                  max_connections: int = RUN_MAX_CONNECTIONS) -> list[dict]:
    """A segment's spec as the specs of consecutive Lava runs, each some neuron layers (a LIF or relay with the
    synapses and flattens before it), together holding at most `max_connections` connections (a larger layer runs
    alone); one spec, the segment's, if it all fits.

    A run's inputs are the segment's inputs and the neuron layers of earlier runs it reads, each at its own depth;
    the depths are shifted so its earliest input is at 0 (the same shift for all: the run is that part of the
    segment as it is, only started later). Every run probes all its neuron layers.

    Preserves: every layer's values. In the segment's own run a layer's values in its window of T steps per sample
    depend only on what its synapses deliver in that window (its state is reset at the window's start, and what
    a source emits outside its window reaches it before that reset, lava_runner's "samples"), and a run here
    delivers exactly the sources' window values, the recorded ones. So, layer by layer in order, each run computes
    what the whole segment's run computes."""
    by_name = {n["name"]: n for n in spec["nodes"]}
    units = []  # per neuron layer: its synapses, the flatten a synapse reads, and the neuron
    for neuron in (n for n in spec["nodes"] if n["op"] in ("lif", "relay")):
        synapses = [by_name[s] for s in neuron["synapses"]]
        units.append([by_name[s["input"]] for s in synapses if by_name.get(s["input"], {}).get("op") == "flatten"]
                     + synapses + [neuron])
    size = [sum(formats.synapse_connections(n, np.shape(arrays.get(n.get("weight")))) for n in unit)
            for unit in units]
    if sum(size) <= max_connections:
        return [spec]
    runs, held = [[]], 0
    for unit, n in zip(units, size):
        if runs[-1] and held + n > max_connections:
            runs.append([])
            held = 0
        runs[-1] += unit
        held += n
    order = {n["name"]: i for i, n in enumerate(spec["nodes"])}
    return [_run_spec(spec, sorted(members, key=lambda n: order[n["name"]]), f"{spec['segment']} run {k + 1}/"
                      f"{len(runs)}") for k, members in enumerate(runs)]


def _run_spec(spec: dict, members: list[dict], name: str) -> dict:
    """The spec of one run of `split_segment`: `members` (nodes of `spec`, in its order), fed what they read from
    outside."""
    inside = {n["name"] for n in members}
    by_name = {n["name"]: n for n in spec["nodes"]}
    given = {i["name"]: i for i in spec["inputs"]}
    inputs = {}
    for node in members:
        src = node.get("input")
        if src is None or src in inside or src in inputs:
            continue
        if src in given:
            inputs[src] = dict(given[src])
        else:
            source = by_name[src]
            inputs[src] = {"name": src, "payload": "spikes" if source["op"] == "lif" else "graded",
                           "shape": source["shape"], "depth": source["depth"]}
    shift = min(i["depth"] for i in inputs.values())
    return {**spec, "segment": name,
            "spiking_layers": [n["name"] for n in members if n["op"] == "lif"],
            "inputs": [{**i, "depth": i["depth"] - shift} for i in inputs.values()],
            "nodes": [{**n, "depth": n["depth"] - shift} for n in members],
            "outputs": [{**o, "depth": o["depth"] - shift} for o in spec["outputs"] if o["name"] in inside],
            "steps": spec["timesteps"] + max(n["depth"] for n in members) - shift}


def default_timeout(runs: list[dict], arrays: dict[str, np.ndarray], samples: int) -> float:
    """Seconds a segment's Lava runs (`split_segment`) may take by default: each run's start-up, plus
    `TIMEOUT_MARGIN` times the estimated cost of its steps (every conv as a Conv, the slower form) and of building
    its Sparse convs."""
    cost = 0.0
    for run in runs:
        per_step = build = 0.0
        for node in run["nodes"]:
            connections = formats.synapse_connections(node, np.shape(arrays.get(node.get("weight"))))
            if node["op"] == "conv":
                w = np.shape(arrays[node["weight"]])
                per_step += w[0] * w[1] * (CONV_PAIR_S + CONV_PAIR_POSITION_S * int(np.prod(node["shape"][1:])))
                build += connections * SPARSE_BUILD_S
            else:
                per_step += connections * SPARSE_CONNECTION_S
            if node["op"] in ("lif", "relay"):
                per_step += int(np.prod(node["shape"])) * NEURON_STEP_S
        cost += (samples * run["timesteps"] + run["steps"] - run["timesteps"]) * per_step + build
    return START_S * len(runs) + TIMEOUT_MARGIN * cost


def _run_one(spec: dict, arrays: dict[str, np.ndarray], batch_first: dict[str, np.ndarray], samples: int,
             probe: list[str], timeout: float, deadline: float, memory_limit_bytes: int | None,
             abort: threading.Event) -> tuple[dict[str, np.ndarray], dict]:
    """One Lava run of `spec` on `[N, T, ...]` inputs, stopped at `deadline` (`timeout` s after its segment's runs
    began) → (its raw `[N, T, ...]` results, its statistics)."""
    name = spec["segment"]
    used = {n[key] for n in spec["nodes"] for key in ("weight", "bias_mant", "bias") if isinstance(n.get(key), str)}
    workdir = Path(tempfile.mkdtemp(prefix=f"snn2hw-lava-{name.replace(' ', '-').replace('/', 'of')}-"))
    try:
        (workdir / "spec.json").write_text(json.dumps(spec, default=_json_default))
        np.savez(workdir / "arrays.npz", **{k: v for k, v in arrays.items() if k in used})
        np.savez(workdir / "inputs.npz", **{i["name"]: batch_first[i["name"]] for i in spec["inputs"]})
        (workdir / "request.json").write_text(json.dumps({"samples": samples, "probe": probe,
                                                          "memory_limit_bytes": memory_limit_bytes}))
        retries = _run_script(runner_path(), workdir, f"chip segment {name}", timeout, memory_limit_bytes, abort,
                              deadline)
        raw, stats = _result(workdir, f"chip segment {name}")
        return raw, {**stats, "lava_retries": retries}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run_chip_segment_timed(spec: dict, arrays: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
                           probe: list[str] | None = None, timeout: float | None = None,
                           memory_limit_bytes: int | None = None, max_connections: int = RUN_MAX_CONNECTIONS,
                           workers: int | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """`run_chip_segment`, also returning the runs' statistics: samples, Lava runs, runs repeated after a hang,
    processes and steps (summed over the runs), the convs built as a Lava Sparse (the others are Lava Convs), and timings in seconds (`build_s`,
    `compile_and_first_step_s` and `run_s` summed over the runs,
    `wall_s` for the whole call).

    A segment larger than `max_connections` runs as several Lava runs (`split_segment`), up to `workers` (default:
    the CPU count) at once, each as soon as the runs it reads from are done."""
    name = spec["segment"]
    layers = [n["name"] for n in spec["nodes"] if n["op"] in ("lif", "relay")]
    probe = list(probe or [])
    unknown = sorted(set(probe) - set(layers))
    if unknown:
        raise LavaError(f"chip segment {name} has no neuron layer {', '.join(unknown)} "
                        f"(it has {', '.join(layers)}).")
    values, samples = _batch_first_inputs(spec, inputs)
    runs = split_segment(spec, arrays, max_connections)
    if timeout is None:
        timeout = default_timeout(runs, arrays, samples)
    start = time.perf_counter()
    deadline = time.monotonic() + timeout
    abort = threading.Event()
    stats = {"samples": samples, "lava_runs": len(runs), "lava_retries": 0, "processes": 0, "lava_steps": 0,
             "sparse_convs": [],
             "build_s": 0.0, "compile_and_first_step_s": 0.0, "run_s": 0.0}
    todo = list(runs)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        running = {}
        try:
            while todo or running:
                for run in [r for r in todo if all(i["name"] in values for i in r["inputs"])]:
                    todo.remove(run)
                    own = [n["name"] for n in run["nodes"] if n["op"] in ("lif", "relay")]
                    running[pool.submit(_run_one, run, arrays, values, samples, own, timeout, deadline,
                                        memory_limit_bytes, abort)] = run
                if not running:
                    raise LavaError(f"chip segment {name}: a Lava run reads a layer no run makes.")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    del running[future]
                    raw, run_stats = future.result()
                    values.update(raw)
                    for key in ("lava_retries", "processes", "lava_steps", "sparse_convs", "build_s",
                                "compile_and_first_step_s", "run_s"):
                        stats[key] += run_stats[key]
        except BaseException:
            abort.set()
            raise
    stats["wall_s"] = time.perf_counter() - start
    spike_keys = set(spec["spiking_layers"])
    results = {}
    for key in dict.fromkeys([*probe, *(o["name"] for o in spec["outputs"])]):
        value = np.swapaxes(values[key], 0, 1)
        results[key] = value.astype(bool) if key in spike_keys else value
    return results, stats


def run_chip_segment(spec: dict, arrays: dict[str, np.ndarray], inputs: dict[str, np.ndarray],
                     probe: list[str] | None = None, timeout: float | None = None,
                     memory_limit_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Run one chip segment (`exporters.lava_spec.chip_segment_spec`) on Lava's CPU backend, fixed point.

    `inputs`: per spec input name, the integers the chip receives, `[T, N, ...]` (torch layout; as the fixed-point
    runner's `RunRecord.cut_inputs`). The N samples run back to back in one Lava run. → `[T, N, ...]` arrays,
    aligned to logical steps (each layer's latency removed):

    * every segment output: a LIF's spikes (bool), or a relay's graded spikes (int64: the sum of its synapses'
      integer accumulations at each step, as the chip sends it);
    * every layer in `probe` (neuron layers of the segment): a LIF's spikes (bool), a relay's graded spikes.

    Raises LavaError naming the segment if the Lava environment is missing, the run fails (with the last lines of
    its stderr), runs out of `memory_limit_bytes` (address space per process, if given) or takes longer than
    `timeout` seconds (default: `default_timeout`), Lava's start-up (~1-3 s) included; its whole process tree is
    then killed. A run that ran out of time is run once more first (`HANG_RETRIES`), with a warning. A large segment runs as several Lava runs (`split_segment`), which compute what one run would.
    """
    return run_chip_segment_timed(spec, arrays, inputs, probe, timeout, memory_limit_bytes)[0]


def run_netx_on_lava(network, x: np.ndarray, timesteps: int, record_states: bool = False,
                     limits: LavaLimits = LavaLimits()) -> dict[str, BlockTrace]:
    """A `.net` (`netx_import.NetxNetwork`) as netx itself loads it, on Lava's CPU backend: the same inputs and
    results as `netx_sim.run_netx` (`x` `[N, C, H, W]` bias of the LIF input neurons, or `[N, T, ...]` what
    `net.inp` receives; each sample a fresh network of `timesteps` steps), run by `lava_netx_runner.py` in the Lava
    environment."""
    attrs = network.attributes
    # Lava's layout: the spatial axes reversed, and the steps last: [N, C, H, W] → [N, W, H, C], or
    # [N, T, C, H, W] → [N, W, H, C, T]
    lava_x = x.transpose(0, *reversed(range(1, x.ndim))) if network.input_kind == "bias" else \
        x.transpose(0, *range(x.ndim - 1, 1, -1), 1)
    workdir = Path(tempfile.mkdtemp(prefix="snn2hw-lava-netx-"))
    try:
        (workdir / "request.json").write_text(json.dumps({
            "net": str(Path(network.path).resolve()), "steps": timesteps, "samples": len(x),
            "input": network.input_kind,
            "states": [list(STATES[b.neuron]) if record_states else [] for b in network.blocks],
            "input_message_bits": int(attrs.get("input_message_bits", 0)),
            "reset_offset": int(attrs.get("reset_offset", 0)), "skip_layers": int(attrs.get("skip_layers", 0)),
            "memory_limit_bytes": limits.memory_bytes}))
        np.savez(workdir / "inputs.npz", x=lava_x.astype(np.int64))
        _run_script(Path(__file__).with_name("lava_netx_runner.py"), workdir, str(network.path),
                    limits.timeout_s or NETX_TIMEOUT_S, limits.memory_bytes)
        raw, _ = _result(workdir, str(network.path))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def ours(value, block):  # [N, T, X, Y, Z] or [N, T, F] → [N, T, C, H, W] or [N, T, F]
        value = value.reshape(len(x), timesteps, *reversed(block.shape))
        return value.transpose(0, 1, *range(value.ndim - 1, 1, -1)).astype(np.int64)
    traces = {}
    for j, block in enumerate(network.blocks):
        states = {var: ours(raw[f"{j}/{var}"], block) for var in STATES[block.neuron] if f"{j}/{var}" in raw}
        s = ours(raw[f"{j}/s_out"], block)
        traces[block.name] = BlockTrace(s.astype(bool) if block.neuron == "cuba" else s, **states)
    return traces
