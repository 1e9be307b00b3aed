"""The CPU redirections, checked in a fresh interpreter (they change process-wide state)."""
from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import torch
from llmrunner.megatron import cpu_compat
assert not cpu_compat.is_enabled()
cpu_compat.enable(); cpu_compat.enable()   # idempotent
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
