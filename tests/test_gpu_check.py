"""bench/gpu_check.sh: its smoke mode runs the GPU check's stages on the CPU (the demo model, gloo instead of
NCCL) and leaves the summary a GPU run leaves; a failing stage shows the end of its log."""
from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.files import read_jsonl
from tests.paths import REPO

STAGES = ["all_reduce", "model", "tokenize", "hf2mg", "train", "mg2hf", "eval"]


@pytest.mark.slow
def test_smoke_mode_runs_every_stage_and_summarises(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), "--smoke", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| tokens/s |" in proc.stdout and "MFU >= 40%" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "smoke" and summary["failed"] is None and list(summary["stages"]) == STAGES
    assert summary["device"]["backend"] == "gloo" and summary["goal_met"] is None
    assert summary["train_settings"]["precision"] == "bf16"
    train = summary["train"]
    assert train["steps_measured"] == [3, 4, 5, 6]
    assert train["mfu"] is None and train["peak_gpu_memory_gib"] is None  # a CPU: no bf16 peak, no GPU memory
    for key in ("tokens_per_s", "tflops_per_device", "flops_per_token", "loss_first", "loss_last"):
        assert math.isfinite(train[key]) and train[key] > 0, key
    # one device: TFLOP/s is FLOPs per token x tokens/s, step by step, so their medians agree too
    assert train["tflops_per_device"] * 1e12 == pytest.approx(train["flops_per_token"] * train["tokens_per_s"])
    assert summary["parity_hf2mg"]["float32_max_abs_diff"] <= 1e-2
    assert summary["parity_mg2hf"]["float32_max_abs_diff"] <= 1e-2
    assert summary["parity_mg2hf"]["bfloat16_relative_diff"] <= 0.1  # the export is bf16, as training was
    assert summary["eval"]["metric"] == "bits_per_byte" and math.isfinite(summary["eval"]["score"])
    assert summary["eval"]["dtype"] == "float32"  # dtype auto on a CPU
    assert sorted(p.stem for p in (out / "logs").glob("*.log")) == sorted(STAGES)
    steps = read_jsonl(out / "metrics.jsonl")
    assert len(steps) == 6 and all(s["flops_per_token"] == train["flops_per_token"] for s in steps)


def test_a_failing_stage_shows_its_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    gpu_check = importlib.import_module("gpu_check")
    failing = [sys.executable, "-c", "import sys; print('loaded the model'); sys.exit('CUDA out of memory')"]
    with pytest.raises(gpu_check.StageFailed):
        gpu_check.run_stage("train", failing, tmp_path, timeout=60)
    shown = capsys.readouterr().out
    assert "[train] FAILED (1)" in shown and "loaded the model" in shown and "CUDA out of memory" in shown
    assert "CUDA out of memory" in (tmp_path / "train.log").read_text()
