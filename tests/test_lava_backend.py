"""The Lava backend (semantics contract level 4): every chip segment of both demo models, run on Lava's CPU backend
with several samples back to back, equals the fixed-point simulator spike for spike at every layer, and its readout
accumulations integer for integer. A failing or hanging Lava run is reported naming the segment, and leaves no
process behind."""
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from snn2hw import ir
from snn2hw.checkpoint import load_checkpoint
from snn2hw.compile import compile_model
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.exporters.lava_spec import chip_segment_spec
from snn2hw.hardware_sims.fixed_point import accumulate
from snn2hw.hardware_sims.runner import run_fixed
from snn2hw.hardware_sims.lava_driver import LavaError, run_chip_segment, run_chip_segment_timed

DIGITS = 3  # test digits run back to back in one Lava run per segment
CHIP_SEGMENTS = {"tcja-tiny": 3, "gac-msresnet-tiny": 1}


@pytest.fixture(scope="module")
def fixed_runs():
    """arch → (quantized graph, fixed-point RunRecord on the first test digits)."""
    runs = {}
    for arch in CHIP_SEGMENTS:
        model = load_checkpoint(demo_checkpoint(arch)).model
        x, _, calib = evaluation_data("digits", arch)
        graph = compile_model(model, arch, torch.as_tensor(calib), "host").fixed
        runs[arch] = graph, run_fixed(graph, torch.as_tensor(x[:DIGITS]))[1]
    return runs


def _segment(graph, name):
    return chip_segment_spec(graph, next(s for s in graph.segments if s["name"] == name))


def _chip_inputs(spec, act) -> dict[str, np.ndarray]:
    """The integers the fixed simulator sent into this segment, by spec input name, `[T, N, ...]`."""
    return {i["name"]: act.cut_inputs[(i["tensor"], i["to"])] for i in spec["inputs"]}


def _fixed_ints(graph, act, consumer: str, name: str) -> np.ndarray:
    """What the fixed simulator fed `consumer` from `name` as integers: cut inputs, spikes, flattened spikes."""
    if (name, consumer) in act.cut_inputs:
        return act.cut_inputs[(name, consumer)]
    node = graph.nodes[name]
    if isinstance(node, ir.Flatten):
        v = _fixed_ints(graph, act, name, node.inputs[0])
        return v.reshape(*v.shape[:2], -1)
    return act.values[name].numpy().astype(np.int64)


@pytest.mark.lava
@pytest.mark.parametrize("arch", list(CHIP_SEGMENTS))
def test_every_chip_segment_equals_the_fixed_point_simulator(arch, fixed_runs, lava_python):
    graph, act = fixed_runs[arch]
    segments = [s["name"] for s in graph.segments if s["placement"] == "chip"]
    assert len(segments) == CHIP_SEGMENTS[arch]
    for name in segments:
        spec, arrays = _segment(graph, name)
        out, stats = run_chip_segment_timed(spec, arrays, _chip_inputs(spec, act), spec["spiking_layers"], 300)
        assert stats["samples"] == DIGITS and stats["lava_steps"] >= DIGITS * spec["timesteps"]
        for layer in spec["spiking_layers"]:
            want = act.values[layer].numpy().astype(bool)
            got = out[layer]
            assert got.dtype == bool and got.shape == want.shape, (name, layer, got.shape, want.shape)
            diff = np.argwhere(got != want)
            assert len(diff) == 0, f"{arch} {name} {layer}: {len(diff)} spikes differ, first at [t, n, ...] {diff[0]}"
            assert want.any(), f"{arch} {layer} is silent: the comparison would prove nothing"
        for o in spec["outputs"]:
            if o["kind"] == "accumulation":
                node = graph.nodes[o["name"]]
                synapse = next(n for n in spec["nodes"] if n["name"] == node.name)
                want = accumulate(synapse, arrays[synapse["weight"]],
                                  _fixed_ints(graph, act, node.name, node.inputs[0]))
                assert np.array_equal(out[o["name"]], want), f"{arch} {name}: accumulations of {o['name']} differ"
                assert np.abs(want).max() > 0


@pytest.mark.lava
def test_probe_none_returns_the_outputs_only(fixed_runs, lava_python):
    graph, act = fixed_runs["tcja-tiny"]
    spec, arrays = _segment(graph, "chip5")
    inputs = {k: v[:, :1] for k, v in _chip_inputs(spec, act).items()}  # one sample
    out = run_chip_segment(spec, arrays, inputs, None, 300)
    assert set(out) == {"fc.6"}
    assert np.array_equal(out["fc.6"], act.values["fc.6"].numpy()[:, :1].astype(bool))


@pytest.mark.lava
def test_a_crash_names_the_segment_and_shows_the_runners_error(fixed_runs, lava_python):
    graph, act = fixed_runs["tcja-tiny"]
    spec, arrays = _segment(graph, "chip3")
    spec["nodes"][0]["op"] = "pool"
    with pytest.raises(LavaError, match=r"chip segment chip3: the Lava run failed \(exit code 1\)") as err:
        run_chip_segment(spec, arrays, _chip_inputs(spec, act), None, 300)
    assert "op 'pool' has no Lava form" in str(err.value).splitlines()[-1]


PATCHED_INTERPRETER = """#!/bin/sh
exec {python} -I {script} "$@"
"""
# Runs the real runner, but every Lava LIF process, in its first step, logs its pid, its session and the shared
# memory files of its Lava channels, then blocks ($SNN2HW_TEST_LIF=hang), is killed as the kernel's out-of-memory
# killer would do it (=die) or asks for 32 GiB (=allocate).
PATCHED_RUNNER = """import os, runpy, signal, sys, time
import numpy as np
from lava.proc.lif import models

def first_step(self):
    shm = {line.split()[-1] for line in open("/proc/self/maps") if "/dev/shm/" in line}
    with open(os.environ["SNN2HW_TEST_LIF_LOG"], "a") as f:
        f.write(f"{os.getpid()} {os.getsid(0)} {' '.join(sorted(shm))}\\n")
    if os.environ["SNN2HW_TEST_LIF"] == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ["SNN2HW_TEST_LIF"] == "allocate":
        np.ones(2 ** 35, np.uint8)
    time.sleep(3600)

models.PyLifResetModelBitAcc.run_spk = first_step
sys.argv = [a for a in sys.argv[1:] if a != "-I"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _patched_lava(tmp_path, monkeypatch, lava_python, lif: str) -> Path:
    """Make the Lava runs of this test use PATCHED_RUNNER with LIF behaviour `lif` → the log its LIFs write."""
    (tmp_path / "patched.py").write_text(PATCHED_RUNNER)
    interpreter = tmp_path / "python"
    interpreter.write_text(PATCHED_INTERPRETER.format(python=lava_python, script=tmp_path / "patched.py"))
    interpreter.chmod(0o755)
    monkeypatch.setenv("SNN2HW_LAVA_PYTHON", str(interpreter))
    monkeypatch.setenv("SNN2HW_TEST_LIF", lif)
    monkeypatch.setenv("SNN2HW_TEST_LIF_LOG", str(tmp_path / "lif.log"))
    return tmp_path / "lif.log"


def _assert_nothing_of_the_run_survives(log: Path) -> None:
    """No process of the run's session and none of its LIFs' shared memory is left (SIGKILL arrives asynchronously)."""
    lifs = [line.split() for line in log.read_text().splitlines()]
    assert lifs, "no Lava LIF process ever started"
    pids, sid, shm = [int(h[0]) for h in lifs], int(lifs[0][1]), [f for h in lifs for f in h[2:]]
    deadline = time.monotonic() + 5
    while (_session_members(sid) or any(map(_alive, pids))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, pids))
    assert _session_members(sid) == [], "processes of the Lava run survived"
    assert shm, "the LIF process should have had its channels in shared memory"
    assert [f for f in shm if Path(f).exists()] == [], "the Lava run's shared memory was left in /dev/shm"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _session_members(sid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp, session
                members.append(int(entry.name))
    return members


@pytest.mark.lava
def test_a_hanging_run_is_killed_with_all_its_lava_processes(fixed_runs, lava_python, tmp_path, monkeypatch):
    log = _patched_lava(tmp_path, monkeypatch, lava_python, "hang")
    graph, act = fixed_runs["tcja-tiny"]
    spec, arrays = _segment(graph, "chip1")
    start = time.monotonic()
    # Long enough for Lava to import, compile and fork its processes on a slow machine.
    with pytest.raises(LavaError, match=r"chip segment chip1: the Lava run did not finish within 15 s"):
        run_chip_segment(spec, arrays, _chip_inputs(spec, act), None, timeout=15)
    assert time.monotonic() - start < 30
    _assert_nothing_of_the_run_survives(log)


def test_a_missing_lava_environment_says_how_to_build_it(fixed_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("SNN2HW_LAVA_PYTHON", str(tmp_path / "nowhere" / "python"))
    graph, act = fixed_runs["gac-msresnet-tiny"]
    spec, arrays = _segment(graph, "chip1")
    with pytest.raises(LavaError, match="make setup-lava"):
        run_chip_segment(spec, arrays, _chip_inputs(spec, act), None, 10)


def test_inputs_are_checked_before_lava_starts(fixed_runs, monkeypatch):
    monkeypatch.setenv("SNN2HW_LAVA_PYTHON", "/nonexistent")  # never reached
    graph, act = fixed_runs["gac-msresnet-tiny"]
    spec, arrays = _segment(graph, "chip1")
    inputs = _chip_inputs(spec, act)
    key = spec["inputs"][0]["name"]
    with pytest.raises(LavaError, match=f"input {key} must be"):
        run_chip_segment(spec, arrays, {**inputs, key: inputs[key][:, :, :3]}, None, 10)
    with pytest.raises(LavaError, match="must hold integers"):
        run_chip_segment(spec, arrays, {**inputs, key: inputs[key].astype(np.float32)}, None, 10)
    with pytest.raises(LavaError, match=f"no values for its input {spec['inputs'][1]['name']}"):
        run_chip_segment(spec, arrays, {key: inputs[key]}, None, 10)
    with pytest.raises(LavaError, match="has no spiking layer nope"):
        run_chip_segment(spec, arrays, inputs, ["nope"], 10)


# Records the runner's pid, which leads the session of the Lava run (start_new_session), then becomes the runner.
PID_LOGGING_INTERPRETER = """#!/bin/sh
echo $$ > {log}
exec {python} "$@"
"""
TOO_LITTLE_MEMORY = 100 * 2 ** 20  # address space below what the runner maps to import Lava


@pytest.mark.lava
def test_a_memory_limit_lava_cannot_start_in_is_refused_naming_the_segment(fixed_runs, lava_python, tmp_path,
                                                                          monkeypatch):
    log = tmp_path / "runner.pid"
    interpreter = tmp_path / "python"
    interpreter.write_text(PID_LOGGING_INTERPRETER.format(python=lava_python, log=log))
    interpreter.chmod(0o755)
    monkeypatch.setenv("SNN2HW_LAVA_PYTHON", str(interpreter))
    graph, act = fixed_runs["gac-msresnet-tiny"]
    spec, arrays = _segment(graph, "chip1")
    with pytest.raises(LavaError, match=r"chip segment chip1: the Lava run ran out of memory \(limit 100 MiB") as err:
        run_chip_segment(spec, arrays, _chip_inputs(spec, act), None, timeout=120,
                         memory_limit_bytes=TOO_LITTLE_MEMORY)
    assert "the memory limit (100 MiB) is below the" in str(err.value).splitlines()[-1]
    sid = int(log.read_text())
    assert not _alive(sid) and _session_members(sid) == [], "processes of the Lava run survived"


@pytest.mark.lava
@pytest.mark.parametrize("lif, limit, error, detail", [
    ("die", None, r"failed \(exit code 1\)",
     r"was killed by SIGKILL \(as the kernel's out-of-memory killer does\) in the middle of the run"),
    ("allocate", 8 * 2 ** 30, r"ran out of memory \(limit 8192 MiB per process\)",
     r"ended \(exit code 0\) with MemoryError")])
def test_a_lava_process_that_dies_mid_run_is_reported_at_once(lif, limit, error, detail, fixed_runs, lava_python,
                                                               tmp_path, monkeypatch):
    # Lava 0.10 alone would wait for the dead process's messages until the timeout.
    log = _patched_lava(tmp_path, monkeypatch, lava_python, lif)
    graph, act = fixed_runs["tcja-tiny"]
    spec, arrays = _segment(graph, "chip1")
    start = time.monotonic()
    with pytest.raises(LavaError, match="chip segment chip1: the Lava run " + error) as err:
        run_chip_segment(spec, arrays, _chip_inputs(spec, act), None, timeout=120, memory_limit_bytes=limit)
    assert time.monotonic() - start < 60
    assert re.search(rf"a Lava process \(pid \d+\) {detail}", str(err.value))
    _assert_nothing_of_the_run_survives(log)


@pytest.mark.lava
def test_a_memory_limit_that_fits_changes_nothing(fixed_runs, lava_python):
    graph, act = fixed_runs["gac-msresnet-tiny"]
    spec, arrays = _segment(graph, "chip1")
    inputs = {k: v[:, :1] for k, v in _chip_inputs(spec, act).items()}
    limited = run_chip_segment(spec, arrays, inputs, spec["spiking_layers"], 300, memory_limit_bytes=8 * 2 ** 30)
    for layer in spec["spiking_layers"]:
        assert np.array_equal(limited[layer], act.values[layer].numpy()[:, :1].astype(bool)), layer
