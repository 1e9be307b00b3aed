"""The CPU redirections, checked in a fresh interpreter (they change process-wide state)."""
from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import torch
from llmrunner.megatron import cpu_compat
from megatron.core.tensor_parallel.cross_entropy import VocabParallelCrossEntropy
megatrons_max = VocabParallelCrossEntropy.calculate_logits_max
assert not cpu_compat.is_enabled()
cpu_compat.enable(); cpu_compat.enable()   # idempotent
logits = torch.randn(5, 3, 64)
logits[0, 0, :] = 2.0                        # ties
logits[1, 1, 7] = float("-inf")
for got, want in zip(VocabParallelCrossEntropy.calculate_logits_max(logits), megatrons_max(logits)):
    assert torch.equal(got, want)            # the cross-entropy's maximum: the same numbers
assert cpu_compat.is_enabled()
t = torch.zeros(2, device="cuda")            # megatron's literal device="cuda" sites
assert t.device.type == "cpu" and t.cuda() is t and t.to("cuda").device.type == "cpu"
assert t.type() == "torch.cuda.FloatTensor"  # megatron's optimizer type-name checks
assert t.type(torch.float64).dtype == torch.float64
assert torch.cuda.current_device() == "cpu"
from megatron.core.transformer.utils import get_default_causal_mask
assert get_default_causal_mask(3).tolist() == [[False, True, True], [False, False, True], [False, False, False]]
print("ok")
"""


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the redirections are for CPU-only machines")
def test_enable_redirects_cuda_to_cpu() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_mkl_branch_is_pinned_unless_the_user_chose_one():
    from llmrunner.megatron.cpu_compat import pin_mkl_branch

    env: dict[str, str] = {}
    pin_mkl_branch(env)
    assert env == {"MKL_CBWR": "AVX2"}
    mine = {"MKL_CBWR": "AUTO"}  # the documented way to get MKL's faster, less reproducible default back
    pin_mkl_branch(mine)
    assert mine == {"MKL_CBWR": "AUTO"}


KEEP_FREED = """
import torch
from llmrunner.megatron import cpu_compat

def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

if {keep}:
    assert cpu_compat.keep_freed_memory()
before = resident_mib()
block = torch.empty(32 * 2**20 // 4 * 3).fill_(1.0)  # 96 MiB, above glibc's largest mmap threshold
del block
print(resident_mib() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and /proc/self/statm")
def test_freed_memory_stays_with_the_process_for_the_next_step() -> None:
    def kept_mib(keep: bool) -> float:
        result = subprocess.run([sys.executable, "-c", KEEP_FREED.format(keep=keep)], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return float(result.stdout)

    assert kept_mib(False) < 16  # glibc's default: unmapped when freed, faulted in again by the next step
    assert kept_mib(True) > 80
