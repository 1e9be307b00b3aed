"""GPU memory and speed options of the training stage, checked where they run on a CPU: activation recomputation
(none / selective / full) trains the same numbers while keeping fewer activations, sequence parallelism with
TP=2 (gloo) follows the single-process curve, and the layer implementation falls back to the local spec without
Transformer Engine. The Transformer Engine path itself runs only with a GPU and TE (`gpu` marker)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmrunner.errors import ConfigError, StageError
from llmrunner.megatron.model import (
    LOCAL,
    TRANSFORMER_ENGINE,
    ModelShape,
    resolve_transformer_impl,
    transformer_engine_problem,
)
from llmrunner.train.settings import TrainSettings
from llmrunner.train.steps import memory_options
from tests.megatron.fixtures import run_stage
from tests.train.conftest import CPT_SETTINGS, train
from tests.train.runs import final_state, metrics

SHORT = {**CPT_SETTINGS, "train_iters": 12, "save_interval": 12, "eval_interval": 6}
RECOMPUTE = {"none": {}, "selective": {"recompute": "selective"},
             "full": {"recompute": "full", "recompute_method": "uniform", "recompute_num_layers": 1}}
NUMBERS = ("iteration", "loss", "lr", "grad_norm", "val_loss")  # metrics.jsonl's values that are not timings

# Forward + backward of one batch through a 4-layer model per recompute setting: how often the core attention
# (SDPAttention) runs, the activations autograd keeps for the backward pass (bytes of the distinct non-parameter
# tensors saved, as torch's saved-tensor hooks see them) and the gradients.
SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from llmrunner.megatron import parallel
from llmrunner.megatron.attention import SDPAttention
from llmrunner.megatron.model import ModelShape, build_gpt_model

parallel.init_distributed()
shape = ModelShape(vocab_size=256, hidden_size=64, num_layers=4, num_attention_heads=4, num_key_value_heads=2,
                   head_dim=16, ffn_hidden_size=128, rope_theta=1e6, norm_eps=1e-6, tie_embeddings=True,
                   max_position_embeddings=512, eos_token_id=0, pad_token_id=0)
results = {}
for name, options in json.loads(sys.argv[1]).items():
    parallel.seed_everything(0)
    model = build_gpt_model(shape, **options)
    calls = []
    for module in model.modules():
        if isinstance(module, SDPAttention):
            module.register_forward_hook(lambda *args: calls.append(1))
    params = {p.data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        if tensor.data_ptr() not in params:
            saved[tensor.data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    tokens = torch.randint(0, 256, (2, 256), generator=torch.Generator().manual_seed(1))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(tokens, torch.arange(256).expand(2, -1), None, labels=tokens).sum()
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    results[name] = {"attention_calls": len(calls), "saved_bytes": sum(saved.values()), "loss": loss.item(),
                     "grads": grads.tolist()}
print(json.dumps(results))
"""


def transformer_options(settings: dict, num_layers: int = 4) -> dict:
    """The TransformerConfig fields the training stage derives from these settings for a num_layers model."""
    shape = ModelShape(vocab_size=256, hidden_size=64, num_layers=num_layers, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16, ffn_hidden_size=128, rope_theta=1e6, norm_eps=1e-6,
                       tie_embeddings=True, max_position_embeddings=512, eos_token_id=0, pad_token_id=0)
    return memory_options(shape, TrainSettings.from_dict(settings))


@pytest.mark.slow
def test_recompute_reruns_attention_and_keeps_fewer_activations() -> None:
    """Selective recompute runs every layer's core attention (our SDPAttention) a second time in the backward
    pass, full recompute every layer (block: only the first recompute_num_layers), with bit-identical loss and
    gradients. Full recompute keeps a fraction of the activations; selective saves little, because SDPA keeps no
    s x s attention scores to begin with."""
    settings = {"none": {}, "selective": {"recompute": "selective"},
                "full-uniform": {"recompute": "full", "recompute_method": "uniform", "recompute_num_layers": 1},
                "full-block-2": {"recompute": "full", "recompute_method": "block", "recompute_num_layers": 2}}
    options = {name: transformer_options(s) for name, s in settings.items()}
    result = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(options)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert {name: run["attention_calls"] for name, run in runs.items()} == {
        "none": 4, "selective": 8, "full-uniform": 8, "full-block-2": 6}
    for name, run in runs.items():
        assert run["loss"] == runs["none"]["loss"] and run["grads"] == runs["none"]["grads"], name
    saved = {name: run["saved_bytes"] for name, run in runs.items()}
    assert saved["full-uniform"] < saved["full-block-2"] < saved["none"] / 1.5
    assert saved["full-uniform"] < saved["none"] / 5
    assert saved["selective"] < saved["none"]


@pytest.fixture(scope="module")
def recompute_runs(init_ckpt: Path, cpt_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("recompute")
    runs = {}
    for name, setting in RECOMPUTE.items():
        result = train("cpt", init_ckpt, [cpt_data], root / name, {**SHORT, **setting})
        granularity = setting.get("recompute", "none")
        assert f"layers: {resolve_transformer_impl('auto')} (transformer_impl auto); activation recompute: " \
               f"{granularity}; sequence parallel: False" in result.stderr
        runs[name] = root / name
    return runs


@pytest.mark.slow
def test_recompute_trains_bit_identical_runs(recompute_runs: dict[str, Path]) -> None:
    """A short CPT run: every step's loss and gradient norm, the validation losses and the final weights and
    optimizer state are the same with none, selective and full recompute (the recomputed forward repeats the
    same operations on the same inputs)."""
    def strip(save: Path) -> list[dict]:  # the numbers, not the speed
        return [{k: v for k, v in m.items() if k in NUMBERS} for m in metrics(save)]

    reference = recompute_runs["none"]
    expected = final_state(reference)
    for name, save in recompute_runs.items():
        assert strip(save) == strip(reference), name
        got = final_state(save)
        assert set(got) == set(expected)
        assert all(torch.equal(value, got[key]) for key, value in expected.items() if torch.is_tensor(value)), name


def test_recompute_is_not_part_of_the_runs_identity() -> None:
    """Switching recompute on for a run that ran out of memory resumes it (the numbers are the same)."""
    plain = TrainSettings.from_dict({})
    full = TrainSettings.from_dict({"recompute": "full", "recompute_method": "block", "recompute_num_layers": 2})
    assert full.fingerprint() == plain.fingerprint()
    assert TrainSettings.from_dict({"transformer_impl": "local"}).fingerprint() != plain.fingerprint()


def test_recompute_settings_map_to_megatron_core() -> None:
    assert transformer_options({}) == {"sequence_parallel": False}
    assert transformer_options({"recompute": "selective", "recompute_num_layers": 3}) == {
        "sequence_parallel": False, "recompute_granularity": "selective"}
    assert transformer_options({"recompute": "full", "recompute_method": "uniform", "recompute_num_layers": 2}) == {
        "sequence_parallel": False, "recompute_granularity": "full", "recompute_method": "uniform",
        "recompute_num_layers": 2}


def test_recompute_num_layers_must_fit_the_model() -> None:
    with pytest.raises(StageError, match=r"`recompute_num_layers` 3 does not fit the model: with recompute_method "
                                         r"uniform it must be a divisor of the layers per pipeline stage, 4 layers "
                                         r"/ pipeline_parallel 1 = 4"):
        transformer_options({"recompute": "full", "recompute_num_layers": 3})
    with pytest.raises(StageError, match="with recompute_method block it must be at most the layers per pipeline"):
        transformer_options({"recompute": "full", "recompute_method": "block", "recompute_num_layers": 5})
    assert transformer_options({"recompute": "full", "recompute_method": "block", "recompute_num_layers": 3})
    with pytest.raises(ConfigError, match="key 'recompute': 'partial' is not one of"):
        TrainSettings.from_dict({"recompute": "partial"})


def test_sequence_parallel_needs_tensor_parallelism() -> None:
    with pytest.raises(ConfigError, match=r"`sequence_parallel` needs `tensor_parallel` > 1"):
        TrainSettings.from_dict({"sequence_parallel": True})
    with pytest.raises(ConfigError, match=r"`seq_length` 250 must be a multiple of `tensor_parallel` 4"):
        TrainSettings.from_dict({"sequence_parallel": True, "tensor_parallel": 4, "seq_length": 250,
                                 "nproc_per_node": 4})


@pytest.mark.slow
def test_sequence_parallel_tp2_follows_the_single_process_curve(recompute_runs: dict[str, Path], init_ckpt: Path,
                                                                cpt_data: Path, tmp_path: Path) -> None:
    """TP=2 with sequence parallelism over two gloo processes (reduce-scatter / all-gather along the sequence)
    trains the single-process curve, with full recompute on top."""
    save = tmp_path / "ckpt"
    settings = {**SHORT, **RECOMPUTE["full"], "tensor_parallel": 2, "nproc_per_node": 2, "threads": 1,
                "sequence_parallel": True}
    result = train("cpt", init_ckpt, [cpt_data], save, settings)
    assert "2 process(es): tensor 2 x pipeline 1 x data 1 parallel" in result.stderr
    assert "activation recompute: full; sequence parallel: True" in result.stderr
    for tag in ("loss", "val_loss"):
        single = [m[tag] for m in metrics(recompute_runs["none"]) if tag in m]
        assert [m[tag] for m in metrics(save) if tag in m] == pytest.approx(single, abs=1e-4), tag


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback of a machine without a GPU")
@pytest.mark.slow
def test_without_a_gpu_auto_uses_the_local_layers_and_transformer_engine_is_an_error(
        init_ckpt: Path, cpt_data: Path, tmp_path: Path) -> None:
    assert resolve_transformer_impl("auto") == LOCAL
    save = tmp_path / "ckpt"
    result = run_stage("train", "cpt", "--init", init_ckpt, "--data", cpt_data, "--save", save, "--done",
                       save / "complete.json", settings={**SHORT, "transformer_impl": "transformer_engine"},
                       check=False)
    assert result.returncode != 0
    assert "`transformer_impl: transformer_engine` cannot be used: no CUDA GPU is available. Install Transformer " \
           "Engine" in result.stderr
    assert "set `transformer_impl` to auto (uses it when available) or local" in result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(transformer_engine_problem() is not None, reason="needs a CUDA GPU and Transformer Engine")
def test_transformer_engine_layers_train_and_share_checkpoints_with_the_local_spec(
        init_ckpt: Path, cpt_data: Path, tmp_path: Path) -> None:
    """The TE run starts from the local-spec init checkpoint (hf2mg), follows the local run's curve, writes the
    same checkpoint entries (no TE `_extra_state`), and its checkpoint converts to HF with the local spec."""
    runs = {}
    for impl in (LOCAL, TRANSFORMER_ENGINE):
        result = train("cpt", init_ckpt, [cpt_data], tmp_path / impl, {**SHORT, "transformer_impl": impl})
        assert f"layers: {impl} (transformer_impl {impl})" in result.stderr
        runs[impl] = tmp_path / impl
    losses = {impl: [m["loss"] for m in metrics(save) if "loss" in m] for impl, save in runs.items()}
    assert losses[TRANSFORMER_ENGINE] == pytest.approx(losses[LOCAL], abs=2e-3)
    assert set(final_state(runs[TRANSFORMER_ENGINE])) == set(final_state(runs[LOCAL]))
    out = tmp_path / "hf"
    run_stage("convert", "mg2hf", "--mg", runs[TRANSFORMER_ENGINE], "--hf-side", init_ckpt.parent / "hf",
              "--out", out, settings={})
    assert json.loads((out / "parity.json").read_text())["ok"] is True
