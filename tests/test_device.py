"""`--device`: the graphs and simulators on another device compute what they do on the CPU; the fixed-point
simulator's integers are the same arrays. The CUDA comparisons run where torch sees a GPU and are skipped, saying
so, where it does not; the device plumbing itself runs on the CPU everywhere."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import compiled_demo
from snn2hw import ir
from snn2hw.device import resolve_device
from snn2hw.errors import UserError
from snn2hw.hardware_sims import loihi_numerics as num
from snn2hw.hardware_sims.runner import run_fixed

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine: the GPU comparison "
                          "needs one (the same code path runs on the CPU in the other tests)")


def test_graph_to_copies_host_modules_and_leaves_the_original_where_it_was():
    """TCJA's attention gates are host modules: a graph moved to another device gets its own copies (moving the
    shared module would move every graph holding it) and the original stays where it was; on the device they are
    already on, tensors and modules are shared, and both graphs compute the same."""
    compiled, x, _, _ = compiled_demo("tcja-tiny")
    graph = compiled.fixed
    gates = [n for n in graph.nodes.values() if isinstance(n, ir.HostModule)]
    assert gates, "tcja-tiny --tcja host keeps its gates on the host"
    elsewhere = graph.to(torch.device("meta"))  # a device every machine has, where nothing is computed
    for node in gates:
        copy = elsewhere.nodes[node.name].module
        assert copy is not node.module
        assert {p.device.type for p in copy.parameters()} == {"meta"}
        assert {p.device.type for p in node.module.parameters()} == {"cpu"}
    here = graph.to(torch.device("cpu"))
    conv = next(n for n in graph.nodes.values() if isinstance(n, ir.Conv2d))
    assert here.nodes[conv.name].weight is conv.weight and all(here.nodes[n.name].module is n.module for n in gates)
    x = torch.as_tensor(x[:4])
    assert torch.equal(here.run(x)[0], graph.run(x)[0])


def test_unknown_or_missing_devices_are_refused_in_one_sentence():
    with pytest.raises(UserError, match=r"--device 'tpu' is not a device snn2hw runs on; use cpu or cuda\."):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match=r"--device cuda: torch .* sees no CUDA device on this machine"):
            resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


@CUDA
def test_conv_accumulate_on_cuda_equals_the_cpu_at_both_float_widths():
    """Binary spikes (float32 path, sums < 2^24) and graded 24-bit payloads (float64 path): the same integers."""
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (16, 8, 3, 3))
    spikes = rng.random((4, 8, 12, 12)) < 0.3
    graded = rng.integers(-2 ** 23, 2 ** 23, (4, 8, 12, 12))
    for s, bits in ((spikes, 0), (graded, 24)):
        cpu = num.conv_accumulate(w, s, 1, 1, num_message_bits=bits)
        gpu = num.conv_accumulate(w, s, 1, 1, num_message_bits=bits, device=resolve_device("cuda"))
        assert np.array_equal(cpu, gpu), bits


@CUDA
@pytest.mark.parametrize("arch", ["tcja-tiny", "gac-msresnet-tiny"])
def test_fixed_point_on_cuda_equals_the_cpu_array_for_array(arch):
    compiled, x, _, _ = compiled_demo(arch)
    x = torch.as_tensor(x[:16])
    out_cpu, cpu = run_fixed(compiled.fixed, x)
    out_gpu, gpu = run_fixed(compiled.fixed, x, device=resolve_device("cuda"))
    assert torch.equal(out_gpu.cpu(), out_cpu)
    for name, value in cpu.values.items():
        assert torch.equal(gpu.values[name].cpu(), value), name
    assert {k: vars(s) for k, s in gpu.neurons.items()} == {k: vars(s) for k, s in cpu.neurons.items()}


_FAULTS = """
import resource, sys, torch
from snn2hw.device import reuse_freed_memory
applied = reuse_freed_memory() if sys.argv[1] == "reuse" else None
for _ in range(6):  # as a simulator's batches: tensors above glibc's 32 MiB mmap limit, alive together, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    kept = [torch.ones(n, 2 ** 18) for n in (40, 48, 40)]  # MiB of float32
    kept[0].add_(kept[2])
    del kept
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the policy is glibc's mallopt")
def test_reuse_freed_memory_serves_the_next_batch_without_faulting_its_pages_in_again():
    """128 MiB of tensors are 32,768 pages: without the policy glibc unmaps each freed tensor and every batch faults
    all its pages in again; with it, a batch reuses the pages of the batches before."""
    faults = {}
    for mode in ("default", "reuse"):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True)
        applied, faults[mode] = out.stdout.split()
    assert applied == "True"
    assert int(faults["default"]) > 30_000 and int(faults["reuse"]) < 1_000, faults
