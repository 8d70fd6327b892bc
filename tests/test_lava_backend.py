"""The Lava backend (semantics contract level 4): every chip segment of both demo models, and a small hand-written
segment with identity synapses and a relay, run on Lava's CPU backend with several samples back to back, equals the
fixed-point simulator spike for spike at every layer, and its relays' graded outputs integer for integer. A failing or
hanging Lava run is reported naming the segment, and leaves no process behind."""
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from snn2hw.checkpoint import load_checkpoint
from snn2hw.compile import compile_model
from snn2hw.data import evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.exporters.lava_spec import chip_segment_spec, spec_problem
from snn2hw.hardware_sims import fixed_point
from snn2hw.hardware_sims.runner import from_chip, neuron_layers, run_fixed
from snn2hw.hardware_sims.lava_driver import (RUN_MAX_CONNECTIONS, LavaError, run_chip_segment,
                                              run_chip_segment_timed, split_segment)

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


@pytest.mark.lava
@pytest.mark.parametrize("runs", ["one run", "a run per layer"])
@pytest.mark.parametrize("arch", list(CHIP_SEGMENTS))
def test_every_chip_segment_equals_the_fixed_point_simulator(arch, runs, fixed_runs, lava_python):
    """In one Lava run, and split into a Lava run per neuron layer (`split_segment`), each fed what the runs
    before it produced: the form official-size segments run in."""
    graph, act = fixed_runs[arch]
    segments = [s["name"] for s in graph.segments if s["placement"] == "chip"]
    assert len(segments) == CHIP_SEGMENTS[arch]
    for name in segments:
        spec, arrays = _segment(graph, name)
        inputs = _chip_inputs(spec, act)
        split = runs != "one run"
        out, stats = run_chip_segment_timed(spec, arrays, inputs, spec["spiking_layers"], 300,
                                            max_connections=1 if split else RUN_MAX_CONNECTIONS)
        assert stats["lava_runs"] == (len(neuron_layers(spec)) if split else 1)
        assert stats["samples"] == DIGITS and stats["lava_steps"] >= DIGITS * spec["timesteps"]
        for layer in spec["spiking_layers"]:
            want = act.values[layer].numpy().astype(bool)
            got = out[layer]
            assert got.dtype == bool and got.shape == want.shape, (name, layer, got.shape, want.shape)
            diff = np.argwhere(got != want)
            assert len(diff) == 0, f"{arch} {name} {layer}: {len(diff)} spikes differ, first at [t, n, ...] {diff[0]}"
            assert want.any(), f"{arch} {layer} is silent: the comparison would prove nothing"
        graded = [o for o in spec["outputs"] if o["kind"] == "graded"]
        if graded:
            want_ints = fixed_point.run_chip_segment(spec, arrays, inputs)[0]
        for o in graded:
            want, got = want_ints[o["name"]], out[o["name"]]
            # the integers the whole-model fixed-point run read back from this relay
            relay = next(n for n in spec["nodes"] if n["name"] == o["name"])
            assert torch.equal(from_chip(relay, arrays, want), act.values[o["name"]]), (name, o["name"])
            assert got.dtype == np.int64 and got.shape == want.shape, (name, o["name"], got.dtype, got.shape)
            diff = np.argwhere(got != want)
            assert len(diff) == 0, f"{arch} {name}: {len(diff)} graded values of {o['name']} differ, first at {diff[0]}"
            assert (want > 0).any() and (want < 0).any(), f"{arch} {o['name']}: too little to compare"


RELAY_T, RELAY_SAMPLES = 6, 4
RELAY_CIN, RELAY_C, RELAY_H, RELAY_W = 2, 4, 5, 5


def _relay_segment(second: str, seed: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """A hand-written format-2 segment: binary input spikes → conv → lif1; lif1 → identity (3, >> 1) and a second
    synapse on lif1 (`second`: a conv, or a dense behind a flatten), both summed by a relay; relay → identity
    (255, >> 7, 24-bit graded messages) → lif2. Outputs: the relay's graded values and lif2's spikes. Mixed-sign
    weights, so the relay sends both signs; both LIFs have a bias, so they would integrate before their depth."""
    rng = np.random.default_rng(seed)
    C, H, W, n = RELAY_C, RELAY_H, RELAY_W, RELAY_C * RELAY_H * RELAY_W
    flat = second == "dense"
    shape = [n] if flat else [C, H, W]
    arrays = {"c1/weight": rng.integers(-50, 60, (C, RELAY_CIN, 3, 3)).astype(np.int16),
              "lif1/bias_mant": rng.integers(-300, 300, (C, H, W)).astype(np.int16),
              "lif2/bias_mant": rng.integers(-100, 200, shape).astype(np.int16),
              # a mixed-sign Dense keeps even weights only: the quantizer's grid
              "s2/weight": (2 * rng.integers(-10, 10, (n, n)) if flat
                            else rng.integers(-60, 50, (C, C, 3, 3))).astype(np.int16)}
    conv = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1}
    src = "flat" if flat else "lif1"
    second_node = {"name": "s2", "op": "dense", "input": "flat", "num_message_bits": 0, "shape_in": [n],
                   "shape": [n], "weight": "s2/weight", "depth": 2} if flat else \
        {"name": "s2", "op": "conv", "input": "lif1", "num_message_bits": 0, "shape_in": [C, H, W],
         "shape": [C, H, W], "weight": "s2/weight", "depth": 2, **conv}
    nodes = [
        {"name": "c1", "op": "conv", "input": "x->c1", "num_message_bits": 0, "shape_in": [RELAY_CIN, H, W],
         "shape": [C, H, W], "weight": "c1/weight", "depth": 1, **conv},
        {"name": "lif1", "op": "lif", "shape": [C, H, W], "synapses": ["c1"], "du": 1024, "dv": 512, "vth": 300,
         "bias_mant": "lif1/bias_mant", "bias_exp": 2, "depth": 1},
        *([{"name": "flat", "op": "flatten", "input": "lif1", "shape": [n], "depth": 1}] if flat else []),
        {"name": "id1", "op": "identity", "input": src, "num_message_bits": 0, "shape_in": shape, "shape": shape,
         "weight": 3, "weight_exp": -1, "depth": 2},
        second_node,
        {"name": "relay", "op": "relay", "shape": shape, "synapses": ["id1", "s2"], "depth": 2, "scale": 1.0,
         "bias": None},
        {"name": "id2", "op": "identity", "input": "relay", "num_message_bits": 24, "shape_in": shape,
         "shape": shape, "weight": 255, "weight_exp": -7, "depth": 3},
        {"name": "lif2", "op": "lif", "shape": shape, "synapses": ["id2"], "du": 2048, "dv": 256, "vth": 30,
         "bias_mant": "lif2/bias_mant", "bias_exp": 1, "depth": 3}]
    spec = {"format": 2, "segment": f"relay-{second}", "timesteps": RELAY_T,
            "inputs": [{"name": "x->c1", "tensor": "x", "to": "c1", "payload": "spikes", "frac_bits": 0,
                        "shape": [RELAY_CIN, H, W], "depth": 0}],
            "nodes": nodes,
            "outputs": [{"name": "relay", "depth": 2, "shape": shape, "kind": "graded"},
                        {"name": "lif2", "depth": 3, "shape": shape, "kind": "spikes"}],
            "spiking_layers": ["lif1", "lif2"], "steps": RELAY_T + 3}
    return spec, arrays


@pytest.mark.lava
@pytest.mark.parametrize("second", ["conv", "dense"])
def test_identity_synapses_and_a_relay_equal_the_fixed_point_simulator(second, lava_python):
    spec, arrays = _relay_segment(second)
    assert spec_problem(spec, arrays) is None
    x = np.random.default_rng(1).random((RELAY_T, RELAY_SAMPLES, RELAY_CIN, RELAY_H, RELAY_W)) < 0.3
    inputs = {"x->c1": x.astype(np.int64)}
    want, _ = fixed_point.run_chip_segment(spec, arrays, inputs, spec["spiking_layers"])
    got = run_chip_segment(spec, arrays, inputs, spec["spiking_layers"], 300)
    assert set(got) == {"relay", "lif1", "lif2"}
    relay = want["relay"]
    assert (relay > 0).mean() > 0.1 and (relay < 0).mean() > 0.1, "the relay should send both signs"
    assert 0.05 < want["lif1"].mean() < 0.5 and 0.05 < want["lif2"].mean() < 0.5, "the LIFs should spike, not always"
    assert got["relay"].dtype == np.int64 and np.array_equal(got["relay"], relay), \
        f"{np.count_nonzero(got['relay'] != relay)} graded values of the relay differ"
    for layer in ("lif1", "lif2"):
        assert got[layer].dtype == bool and np.array_equal(got[layer], want[layer]), \
            f"{layer}: {np.count_nonzero(got[layer] != want[layer])} spikes differ"


@pytest.mark.lava
def test_a_conv_whose_sums_wrap_stays_a_lava_conv(lava_python):
    """Graded inputs large enough that c1's sums leave 24 bits: Lava's Conv wraps them, as the simulator does, and a
    Sparse would not, so the runner must keep the Conv; the convs on spikes, bounded, become Sparse."""
    spec, arrays = _relay_segment("conv")
    for key in ("c1/weight", "s2/weight"):  # even: a Sparse keeps every weight, so only the bound can stop it
        arrays[key] = 2 * arrays[key]
    spec["inputs"][0].update(payload="graded", frac_bits=0)
    c1 = spec["nodes"][0]
    c1["num_message_bits"] = 16
    rng = np.random.default_rng(2)
    x = rng.integers(-2 ** 15 + 1, 2 ** 15, (RELAY_T, RELAY_SAMPLES, RELAY_CIN, RELAY_H, RELAY_W))
    inputs = {"x->c1": x}
    sums = torch.nn.functional.conv2d(torch.as_tensor(x.reshape(-1, *x.shape[2:]), dtype=torch.float64),
                                      torch.as_tensor(arrays["c1/weight"], dtype=torch.float64), padding=1)
    assert (sums.abs() >= 2 ** 23).float().mean() > 0.05, "too few sums wrap for the test to see a Sparse"
    want, _ = fixed_point.run_chip_segment(spec, arrays, inputs, spec["spiking_layers"])
    got, stats = run_chip_segment_timed(spec, arrays, inputs, spec["spiking_layers"], 300)
    for layer in ("lif1", "relay", "lif2"):
        assert np.array_equal(got[layer], want[layer]), f"{layer}: {np.count_nonzero(got[layer] != want[layer])} differ"
    assert "c1" not in stats["sparse_convs"] and "s2" in stats["sparse_convs"]
    assert 0.05 < want["lif1"].mean() < 0.95


def test_split_segment_gives_each_run_what_it_reads(fixed_runs):
    """Every node in exactly one run, in the segment's order; a run reads only the segment's inputs and layers of
    earlier runs, each at its own depth shifted by the run's one shift; a segment that fits is one run, itself."""
    graph, _ = fixed_runs["gac-msresnet-tiny"]
    spec, arrays = _segment(graph, "chip1")
    assert split_segment(spec, arrays) == [spec]
    runs = split_segment(spec, arrays, max_connections=20_000)
    assert 1 < len(runs) < len(neuron_layers(spec))
    depth = {n["name"]: n["depth"] for n in [*spec["inputs"], *spec["nodes"]]}
    seen, order = set(spec_input["name"] for spec_input in spec["inputs"]), [n["name"] for n in spec["nodes"]]
    for run in runs:
        shift = {depth[n["name"]] - n["depth"] for n in [*run["inputs"], *run["nodes"]]}
        assert len(shift) == 1 and min(i["depth"] for i in run["inputs"]) == 0
        assert {i["name"] for i in run["inputs"]} <= seen
        names = [n["name"] for n in run["nodes"]]
        assert names == sorted(names, key=order.index)
        assert seen.isdisjoint(names)
        seen |= set(names)
        assert run["steps"] == spec["timesteps"] + max(n["depth"] for n in run["nodes"])
    assert seen == set(order) | {i["name"] for i in spec["inputs"]}


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
# killer would do it (=die), asks for 32 GiB (=allocate), or blocks if it is the first LIF to step and is killed
# (=hang-first-die-next) or steps as Lava's own (=hang-first) otherwise.
PATCHED_RUNNER = """import os, runpy, signal, sys, time
import numpy as np
from lava.proc.lif import models

lava_step = models.PyLifResetModelBitAcc.run_spk

def first_step(self):
    if getattr(self, "patched_steps", False):
        return lava_step(self)
    self.patched_steps = True
    shm = {line.split()[-1] for line in open("/proc/self/maps") if "/dev/shm/" in line}
    with open(os.environ["SNN2HW_TEST_LIF_LOG"], "a") as f:
        f.write(f"{os.getpid()} {os.getsid(0)} {' '.join(sorted(shm))}\\n")
    mode = os.environ["SNN2HW_TEST_LIF"]
    if mode.startswith("hang-first"):
        try:
            os.close(os.open(os.environ["SNN2HW_TEST_LIF_LOG"] + ".first", os.O_CREAT | os.O_EXCL))
            mode = "hang"
        except FileExistsError:
            mode = "die" if mode == "hang-first-die-next" else "step"
    if mode == "step":
        return lava_step(self)
    if mode == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "allocate":
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
    """No process of the runs' sessions and none of their LIFs' shared memory is left (SIGKILL arrives
    asynchronously)."""
    lifs = [line.split() for line in log.read_text().splitlines()]
    assert lifs, "no Lava LIF process ever started"
    pids, sids, shm = [int(h[0]) for h in lifs], {int(h[1]) for h in lifs}, [f for h in lifs for f in h[2:]]
    deadline = time.monotonic() + 5
    while (any(map(_session_members, sids)) or any(map(_alive, pids))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, pids))
    assert not any(map(_session_members, sids)), "processes of the Lava run survived"
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
    """It runs out of time twice (run once more after the first), and the log it names holds the stack of the
    blocked Lava process."""
    log = _patched_lava(tmp_path, monkeypatch, lava_python, "hang")
    graph, act = fixed_runs["tcja-tiny"]
    spec, arrays = _segment(graph, "chip1")
    start = time.monotonic()
    # Long enough for Lava to import, compile and fork its processes on a slow machine.
    with pytest.warns(UserWarning, match=r"chip segment chip1: the Lava run did not finish within 15 s.* running "
                                         r"it once more"), \
            pytest.raises(LavaError, match=r"chip segment chip1: the Lava run did not finish within 15 s") as e:
        run_chip_segment(spec, arrays, _chip_inputs(spec, act), None, timeout=15)
    assert time.monotonic() - start < 60
    stacks = Path(re.search(r"the stacks of its processes at that moment are in (\S+)\.$", str(e.value))[1])
    assert re.search(r'line \d+ in first_step', stacks.read_text()), "the blocked LIF process wrote no stack"
    assert len({line.split()[1] for line in log.read_text().splitlines()}) == 2, "it should have run twice"
    _assert_nothing_of_the_run_survives(log)


@pytest.mark.lava
def test_a_run_that_hangs_once_is_run_again_and_gives_lavas_result(fixed_runs, lava_python, tmp_path, monkeypatch):
    log = _patched_lava(tmp_path, monkeypatch, lava_python, "hang-first")
    graph, act = fixed_runs["tcja-tiny"]
    spec, arrays = _segment(graph, "chip1")
    with pytest.warns(UserWarning, match=r"chip segment chip1: the Lava run did not finish within 15 s"):
        out, stats = run_chip_segment_timed(spec, arrays, _chip_inputs(spec, act), spec["spiking_layers"], 15)
    assert stats["lava_retries"] == 1
    for layer in spec["spiking_layers"]:
        assert np.array_equal(out[layer], act.values[layer].numpy().astype(bool)), layer
    _assert_nothing_of_the_run_survives(log)


def _two_layers() -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A hand-written segment of two LIF layers that read the input, not each other → (spec, arrays, inputs)."""
    rng = np.random.default_rng(3)
    conv = {"op": "conv", "num_message_bits": 0, "shape_in": [2, 5, 5], "shape": [4, 5, 5], "stride": [1, 1],
            "padding": [1, 1], "dilation": [1, 1], "groups": 1, "depth": 1}
    lif = {"op": "lif", "shape": [4, 5, 5], "du": 1024, "dv": 512, "vth": 100, "bias_exp": 0, "depth": 1}
    spec = {"format": 2, "segment": "two", "timesteps": 4, "spiking_layers": ["lif1", "lif2"], "steps": 5,
            "inputs": [{"name": f"x->c{k}", "tensor": "x", "to": f"c{k}", "payload": "spikes", "frac_bits": 0,
                        "shape": [2, 5, 5], "depth": 0} for k in (1, 2)],
            "nodes": [n for k in (1, 2) for n in (
                {**conv, "name": f"c{k}", "input": f"x->c{k}", "weight": f"c{k}/weight"},
                {**lif, "name": f"lif{k}", "synapses": [f"c{k}"], "bias_mant": f"lif{k}/bias_mant"})],
            "outputs": [{"name": f"lif{k}", "depth": 1, "shape": [4, 5, 5], "kind": "spikes"} for k in (1, 2)]}
    arrays = {**{f"c{k}/weight": rng.integers(-60, 60, (4, 2, 3, 3)).astype(np.int16) for k in (1, 2)},
              **{f"lif{k}/bias_mant": np.zeros((4, 5, 5), np.int16) for k in (1, 2)}}
    x = (rng.random((4, 2, 2, 5, 5)) < 0.3).astype(np.int64)
    return spec, arrays, {"x->c1": x, "x->c2": x}


@pytest.mark.lava
def test_a_failed_run_stops_the_other_runs_of_its_segment(lava_python, tmp_path, monkeypatch):
    """Two runs of one segment at once: one hangs, the other dies; the error names the run that died and comes at
    once, and the hanging run is killed with all its processes."""
    log = _patched_lava(tmp_path, monkeypatch, lava_python, "hang-first-die-next")
    spec, arrays, inputs = _two_layers()
    assert len(split_segment(spec, arrays, 1)) == 2
    start = time.monotonic()
    with pytest.raises(LavaError, match=r"(?s)chip segment two run [12]/2: the Lava run failed .*killed by SIGKILL"):
        run_chip_segment_timed(spec, arrays, inputs, None, 120, max_connections=1, workers=2)
    assert time.monotonic() - start < 60
    assert len({line.split()[1] for line in log.read_text().splitlines()}) == 2, "both runs should have started"
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
    with pytest.raises(LavaError, match="has no neuron layer nope"):
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


def test_a_run_whose_segment_time_ran_out_before_it_began_fails_at_once(tmp_path, lava_python):
    """A later run of a split segment, once the runs before it used up the segment's time: no Lava start, no wait,
    no retry (it did not hang)."""
    from snn2hw.hardware_sims.lava_driver import _run_script, runner_path

    start = time.monotonic()
    with pytest.raises(LavaError, match=r"chip segment x run 2/2: the 60 s its segment's Lava runs may take together "
                                        r"ran out before this run began\."):
        _run_script(runner_path(), tmp_path, "chip segment x run 2/2", 60, None, deadline=time.monotonic() - 1)
    assert time.monotonic() - start < 1 and list(tmp_path.iterdir()) == []
