"""bf16 training, the GPU configuration (bf16 weights, fp32 main weights in the optimizer), run on the CPU:
it starts from the init checkpoint and follows the fp32 run, resumes after a crash bit for bit, and mg2hf
exports its checkpoint in bf16 (the training precision) by default, parity-checked in bf16 and fp32."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from llmrunner.convert.settings import ConvertSettings
from tests.megatron.fixtures import load_safetensors, run_stage
from tests.train.conftest import CPT_SETTINGS, train
from tests.train.runs import assert_same_run, final_state, metrics, start_training, wait_for

pytestmark = pytest.mark.slow  # real bf16 training runs and exports: `make test-fast` leaves them out

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


def export(runs: dict[str, Path], precision: str, init_ckpt: Path, out: Path, check: bool = True, **settings):
    """mg2hf of the `precision` run's checkpoint into out (the completed process)."""
    return run_stage("convert", "mg2hf", "--mg", runs[precision], "--hf-side", init_ckpt.parent / "hf", "--out", out,
                     settings=settings, check=check)


def exported(out: Path) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """The export's weights, config.json and parity.json."""
    return (load_safetensors(out), json.loads((out / "config.json").read_text()),
            json.loads((out / "parity.json").read_text()))


@pytest.fixture(scope="module")
def bf16_exports(runs: dict[str, Path], init_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The bf16 run's checkpoint exported by default and with `dtype: float32`."""
    root = tmp_path_factory.mktemp("exports")
    export(runs, "bf16", init_ckpt, root / "default")
    export(runs, "bf16", init_ckpt, root / "float32", dtype="float32")
    return {"default": exported(root / "default"), "float32": exported(root / "float32")}


def test_bf16_checkpoint_exports_the_trained_bf16_weights_bit_for_bit(runs: dict[str, Path],
                                                                     bf16_exports: dict) -> None:
    weights, config, _ = bf16_exports["default"]
    assert config["dtype"] == "bfloat16" and {v.dtype for v in weights.values()} == {torch.bfloat16}
    trained = final_state(runs["bf16"])
    # tensors the mapping only renames (layers are stacked in the checkpoint): the trained ones, untouched
    assert torch.equal(weights["model.embed_tokens.weight"], trained["embedding.word_embeddings.weight"])
    assert torch.equal(weights["model.norm.weight"], trained["decoder.final_layernorm.weight"])
    for i, (o_proj, down_proj) in enumerate(zip(trained["decoder.layers.self_attention.linear_proj.weight"],
                                                trained["decoder.layers.mlp.linear_fc2.weight"])):
        assert torch.equal(weights[f"model.layers.{i}.self_attn.o_proj.weight"], o_proj)
        assert torch.equal(weights[f"model.layers.{i}.mlp.down_proj.weight"], down_proj)


def test_bf16_checkpoint_parity_is_measured_in_bf16_and_fp32(bf16_exports: dict) -> None:
    _, _, parity = bf16_exports["default"]
    assert parity["ok"] is True and parity["export_dtype"] == "bfloat16"
    # fp32: the same bf16-valued weights in both models, so only summation order differs
    defaults = ConvertSettings.from_dict({})
    assert parity["dtype"] == "float32" and parity["max_abs_logit_diff"] <= parity["tolerance"]
    assert parity["tolerance"] == defaults.parity_tolerance
    bf16 = parity["bfloat16"]
    assert bf16["ok"] is True and bf16["tolerance"] == defaults.parity_tolerance_bf16
    assert 0 < bf16["max_abs_logit_diff"] == pytest.approx(bf16["relative_diff"] * bf16["max_abs_logit"])
    assert bf16["relative_diff"] <= bf16["tolerance"]


def test_bf16_checkpoint_exports_float32_when_asked(bf16_exports: dict) -> None:
    (bf16, _, _), (fp32, config, parity) = bf16_exports["default"], bf16_exports["float32"]
    assert config["dtype"] == "float32" and {v.dtype for v in fp32.values()} == {torch.float32}
    assert set(fp32) == set(bf16) and all(torch.equal(fp32[k], bf16[k].float()) for k in bf16)
    assert parity["ok"] is True and parity["export_dtype"] == "float32" and "bfloat16" not in parity


def test_fp32_checkpoint_exports_float32_by_default(runs: dict[str, Path], init_ckpt: Path, tmp_path: Path) -> None:
    export(runs, "fp32", init_ckpt, tmp_path / "hf")
    weights, config, parity = exported(tmp_path / "hf")
    assert config["dtype"] == "float32" and {v.dtype for v in weights.values()} == {torch.float32}
    assert parity["ok"] is True and parity["export_dtype"] == "float32" and "bfloat16" not in parity
    trained = final_state(runs["fp32"])["embedding.word_embeddings.weight"]
    assert torch.equal(weights["model.embed_tokens.weight"], trained)


def test_fp32_checkpoint_exported_in_bf16_is_checked_against_its_rounded_weights(runs: dict[str, Path],
                                                                                  init_ckpt: Path,
                                                                                  tmp_path: Path) -> None:
    export(runs, "fp32", init_ckpt, tmp_path / "hf", dtype="bfloat16")
    weights, config, parity = exported(tmp_path / "hf")
    trained = final_state(runs["fp32"])["embedding.word_embeddings.weight"]
    assert config["dtype"] == "bfloat16" and torch.equal(weights["model.embed_tokens.weight"],
                                                        trained.to(torch.bfloat16))
    assert parity["ok"] is True and parity["max_abs_logit_diff"] <= 1e-5 and parity["bfloat16"]["ok"] is True
    assert "weights rounded to bfloat16" in parity["reference"]


def test_bf16_parity_beyond_its_tolerance_fails_naming_the_dtype(runs: dict[str, Path], init_ckpt: Path,
                                                                 tmp_path: Path) -> None:
    result = export(runs, "bf16", init_ckpt, tmp_path / "hf", check=False, parity_tolerance_bf16=1e-6)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: parity check failed in bfloat16: max |logit difference|" in result.stderr
    assert "float32:" not in result.stderr and "`parity_tolerance_bf16`" in result.stderr
    parity = json.loads((tmp_path / "hf" / "parity.json").read_text())
    assert parity["ok"] is False and parity["bfloat16"]["ok"] is False
    assert parity["max_abs_logit_diff"] <= parity["tolerance"]
