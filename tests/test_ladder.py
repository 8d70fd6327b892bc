"""The accuracy ladder (torch → folded float → fixed point) on the demo models, and `snn2hw simulate --ladder` and
`--backend fixed` from the command line."""
import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import compiled_demo
from snn2hw.data import ArraySamples, evaluation_data
from snn2hw.demo import demo_checkpoint
from snn2hw.errors import UserError
from snn2hw.ladder import ladder, shard


@pytest.mark.parametrize("arch, tcja", [("tcja-tiny", "host"), ("tcja-tiny", "fold"), ("gac-msresnet-tiny", "host")])
def test_ladder_on_digits_loses_at_most_one_point_from_float_to_fixed(arch, tcja):
    compiled, x, y, _ = compiled_demo(arch, tcja)
    report = ladder(compiled, ArraySamples(x, y))
    acc = report["accuracy"]
    assert acc["torch"] >= 0.9 and acc["fixed"] >= acc["torch"] - 0.01, acc
    if tcja == "host":  # folding BN and normalising neurons only changes float rounding
        assert acc["folded"] == acc["torch"]
        assert sum(report["float_vs_folded"]["mismatches"].values()) == 0
    # Quantization moves each layer's firing rate by little (fold changes the function itself: compare to folded).
    assert all(abs(row["rate_fixed"] - row["rate_folded"]) < 0.02 for row in report["layers"])


def test_cli_ladder_and_fixed_backend(run_cli, tmp_path):
    ckpt = demo_checkpoint("gac-msresnet-tiny")
    res = run_cli("simulate", ckpt, "--ladder", "--data", "digits", "--limit", "120", "--json", tmp_path / "l.json")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "l.json").read_text())
    assert set(report["accuracy"]) == {"torch", "folded", "fixed"} and report["samples"] == 120
    neurons = [r for r in report["quantization"] if "vth" in r]
    assert len(neurons) == 5 and all(r["membrane_sqnr_db"] > 10 and r["u_wraps"] == 0 for r in neurons)
    assert all(s["weight_sqnr_db"] > 30 for r in report["quantization"] for s in r["synapses"] if "weight_sqnr_db" in s)
    assert any("identity_weight" in s for r in report["quantization"] for s in r["synapses"])
    x = evaluation_data("digits", "gac-msresnet-tiny")[0][:10]
    np.save(tmp_path / "x.npy", x)
    res = run_cli("simulate", ckpt, "--backend", "fixed", "--input", tmp_path / "x.npy", "--save", tmp_path / "o.npz")
    assert res.returncode == 0, res.stderr
    out = np.load(tmp_path / "o.npz")
    assert out["output"].shape == (10, 4, 10) and out["spike_counts/head_lif"].shape == (10, 4)


def test_ladder_under_torchrun_with_two_processes_equals_one_process(run_cli, tmp_path):
    """torch.distributed's own launcher, 2 CPU processes (gloo): each runs half the samples, the integer totals are
    summed, and rank 0's JSON report equals the single-process one byte for byte."""
    args = ["simulate", demo_checkpoint("tcja-tiny"), "--ladder", "--data", "digits", "--limit", "45",
            "--batch-size", "8"]
    single = run_cli(*args, "--json", tmp_path / "one.json")
    assert single.returncode == 0, single.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "snn2hw", *map(str, args), "--json", str(tmp_path / "two.json")]
    res = subprocess.run(launcher, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("accuracy float") == 1  # rank 0 alone reports
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert json.loads((tmp_path / "one.json").read_text())["samples"] == 45  # shards 23 and 22, probe 4 and 4


def test_shards_cover_the_samples_once_in_order():
    """Every sample once, in order, the shares differing by one at most; with fewer samples than ranks, the last
    ranks get none (the probe of a small first batch)."""
    for n, world in [(45, 2), (7, 3), (4, 4), (8, 2), (1, 1), (2, 3), (5, 8)]:
        parts = [list(range(n))[shard(n, r, world)] for r in range(world)]
        assert sum(parts, []) == list(range(n))
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True), (n, world, sizes)


def test_probe_parts_combine_to_the_whole_probe():
    """The divergences and quantization counts of the probe, computed on parts of its samples as the ranks do and
    combined, equal those computed on all of them at once, to the bit."""
    from snn2hw.ladder import _divergence, layer_divergences, measured_quantization, probe_counts, spiking_nodes

    compiled, x, _, _ = compiled_demo("gac-msresnet-tiny")
    x = x[:9]
    whole = probe_counts(compiled, x)
    parts = [probe_counts(compiled, x[s]) for s in (slice(0, 4), slice(4, 5), slice(5, 9))]
    layers = spiking_nodes(compiled.folded)
    for key in ("float_vs_folded", "folded_vs_fixed"):
        assert _divergence([p[key] for p in parts], layers) == _divergence([whole[key]], layers)
    assert measured_quantization(compiled, [p["quantization"] for p in parts]) == \
        measured_quantization(compiled, [whole["quantization"]])
    # the probe sees quantization at work: the fixed-point spikes differ from the folded ones somewhere
    assert sum(_divergence([whole["folded_vs_fixed"]], layers)["mismatches"].values()) > 0


def test_a_killed_ladder_resumes_from_its_last_batch_with_the_same_report(tmp_path, monkeypatch):
    """A run that dies in its third batch's fixed-point run continues, with --resume's file, at that batch: the
    batches done are not run again, and the report equals an uninterrupted run's."""
    import snn2hw.ladder as ladder_module

    compiled, x, y, _ = compiled_demo("tcja-tiny")
    x, y = x[:40], y[:40]
    whole = ladder(compiled, ArraySamples(x, y), 8)
    real, calls = ladder_module.rung_simulator, []

    def counted(die_at=None):
        def make(compiled, backend, batch_size=64, device=None):
            run = real(compiled, backend, batch_size, device)

            def batch(xb):
                calls.append(backend)
                if backend == "fixed" and calls.count("fixed") == die_at:
                    raise RuntimeError("killed")
                return run(xb)
            return batch
        return make

    monkeypatch.setattr(ladder_module, "rung_simulator", counted(die_at=3))
    with pytest.raises(RuntimeError, match="killed"):
        ladder(compiled, ArraySamples(x, y), 8, resume=tmp_path / "progress.json")
    calls.clear()
    monkeypatch.setattr(ladder_module, "rung_simulator", counted())
    assert ladder(compiled, ArraySamples(x, y), 8, resume=tmp_path / "progress.json") == whole
    assert calls == ["torch", "folded", "fixed"] * 3  # 40 samples in 5 batches: 2 were done
    with pytest.raises(UserError, match="holds the progress of another run"):
        ladder(compiled, ArraySamples(x[:32], y[:32]), 8, resume=tmp_path / "progress.json")
    folded_gates = compiled_demo("tcja-tiny", "fold")[0]  # other scales and options, the same data
    with pytest.raises(UserError, match="holds the progress of another run"):
        ladder(folded_gates, ArraySamples(x, y), 8, resume=tmp_path / "progress.json")


def test_a_failed_rank_is_named_and_the_other_rank_says_why_it_stopped(tmp_path):
    """Under torchrun, rank 1 cannot read its progress file: its error names it; rank 0 ends in one sentence too."""
    (tmp_path / "progress.json.rank1").write_text("not a progress file")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "snn2hw",
                "simulate", str(demo_checkpoint("tcja-tiny")), "--ladder", "--data", "digits", "--limit", "16",
                "--resume", str(tmp_path / "progress.json")]
    res = subprocess.run(launcher, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode != 0
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert f"error: rank 1 of 2: --resume {tmp_path / 'progress.json.rank1'} is not a progress file snn2hw wrote." \
        in errors, res.stderr[-3000:]
    # rank 0 either meets the dead peer in its next all_reduce or is stopped by torchrun first: one sentence each way
    assert any(e.startswith("error: rank 0 of 2: stopped, since another rank failed (")
               or e.startswith("error: interrupted by SIGTERM") for e in errors), errors


def test_the_ladder_reads_its_data_a_batch_at_a_time():
    """The samples are asked for one batch at a time, each batch once, then the probe's first batch: a data set
    streamed from disk (`data.DatasetSamples`) is never held whole. The report is the one of the same arrays."""
    compiled, x, y, _ = compiled_demo("tcja-tiny")
    x, y = x[:20], y[:20]
    reads = []

    class Recorded(ArraySamples):
        def batch(self, start, stop):
            reads.append((start, stop))
            return super().batch(start, stop)

    report = ladder(compiled, Recorded(x, y), 8)
    assert reads == [(0, 8), (8, 16), (16, 20), (0, 8)]
    assert report == ladder(compiled, ArraySamples(x, y), 8)
