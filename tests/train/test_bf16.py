"""bf16 training, the GPU configuration (bf16 weights, fp32 main weights in the optimizer), run on the CPU:
it starts from the init checkpoint and follows the fp32 run, resumes after a crash bit for bit, and its
checkpoint converts to HF."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from tests.megatron.fixtures import run_stage
from tests.train.conftest import CPT_SETTINGS, train
from tests.train.runs import assert_same_run, final_state, metrics, start_training, wait_for

BF16 = {**CPT_SETTINGS, "precision": "bf16"}
MODEL_KEYS = ("embedding.", "decoder.", "output_layer.")  # the model's tensors in a checkpoint; the rest is state


@pytest.fixture(scope="module")
def runs(init_ckpt: Path, cpt_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An uninterrupted bf16 run and the same run in fp32."""
    root = tmp_path_factory.mktemp("precision")
    for precision in ("bf16", "fp32"):
        train("cpt", init_ckpt, [cpt_data], root / precision, {**CPT_SETTINGS, "precision": precision})
    return {"bf16": root / "bf16", "fp32": root / "fp32"}


def model_weights(save: Path) -> torch.Tensor:
    """Every weight of the final checkpoint's model, in one fp32 vector (a fixed order)."""
    state = final_state(save)
    return torch.cat([state[k].float().flatten() for k in sorted(state)
                      if k.startswith(MODEL_KEYS) and torch.is_tensor(state[k])])


def test_bf16_starts_from_the_init_checkpoint_and_follows_fp32(runs: dict[str, Path]) -> None:
    """Same init, data and settings: losses agree to bf16 precision and the final weights point the same way.
    (Had the fp32 main weights kept the model's random construction-time values instead of the loaded ones,
    the first optimizer step would have thrown the init checkpoint away: cosine ~0.)"""
    losses = {p: [m["loss"] for m in metrics(save) if "loss" in m] for p, save in runs.items()}
    assert len(losses["bf16"]) == len(losses["fp32"]) == BF16["train_iters"]
    assert max(abs(b - f) for b, f in zip(losses["bf16"], losses["fp32"])) < 0.02, losses
    assert losses["bf16"][-1] < losses["bf16"][0] - 1
    bf16, fp32 = model_weights(runs["bf16"]), model_weights(runs["fp32"])
    assert torch.nn.functional.cosine_similarity(bf16, fp32, dim=0) > 0.99


def test_bf16_checkpoint_holds_bf16_weights_and_fp32_main_weights(runs: dict[str, Path]) -> None:
    state = final_state(runs["bf16"])
    weights = {k: v for k, v in state.items() if k.startswith(MODEL_KEYS) and torch.is_tensor(v)}
    main = {k.removeprefix("optimizer.state.fp32_param."): v for k, v in state.items()
            if k.startswith("optimizer.state.fp32_param.")}
    assert weights and {v.dtype for v in weights.values()} == {torch.bfloat16}
    assert set(main) == set(weights) and {v.dtype for v in main.values()} == {torch.float32}
    # the model's weights are its main weights rounded to bf16
    assert all(torch.equal(main[k].to(torch.bfloat16), weights[k]) for k in weights)


def test_bf16_resume_after_a_crash_gives_identical_weights(runs: dict[str, Path], init_ckpt: Path, cpt_data: Path,
                                                           tmp_path: Path) -> None:
    save = tmp_path / "ckpt"
    proc = start_training(init_ckpt, cpt_data, save, BF16)
    wait_for(save / "latest_checkpointed_iteration.txt", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = int((save / "latest_checkpointed_iteration.txt").read_text())
    assert stopped_at < BF16["train_iters"] and not (save / "complete.json").exists()

    result = train("cpt", init_ckpt, [cpt_data], save, BF16)
    assert f"resuming {save} from iteration {stopped_at}" in result.stderr
    assert_same_run(runs["bf16"], save)


def test_bf16_checkpoint_converts_to_hf(runs: dict[str, Path], init_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    run_stage("convert", "mg2hf", "--mg", runs["bf16"], "--hf-side", init_ckpt.parent / "hf", "--out", out,
              settings={})
    assert json.loads((out / "parity.json").read_text())["ok"] is True
