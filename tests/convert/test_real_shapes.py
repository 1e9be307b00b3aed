"""Real model shapes on CPU: the published config.json of Qwen3 / Qwen2.5 / Llama-3.2 with random weights and a
stand-in tokenizer of the real size (llmrunner.prepare.real_shapes), through the real stage entry points.

The heavy tests (`slow`) share one Qwen3-0.6B-Base folder with all 28 layers: hf2mg, tokenize, two CPT steps
and mg2hf (about 4 minutes, 13 GB at most on two cores). The TP=2 run and the Llama-3.2-1B / Qwen2.5-0.5B round
trips use the real config with 2 layers (`num_layers`): every tensor shape of the real model is still
converted (embedding, output layer and one layer of each kind), the other layers only repeat those shapes, and
the full depth would double the suite's time and memory.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llmrunner.errors import StageError
from llmrunner.megatron.hf_mapping import shape_from_hf_config
from llmrunner.prepare.real_shapes import SHAPES, real_config, write_shape_folder
from tests.files import write_jsonl
from tests.megatron.fixtures import load_safetensors, run_stage
from tests.paths import demo_cpt_texts
from tests.train.runs import metrics

# Parameters the model cards publish (billions): Qwen's "Number of Parameters (Non-Embedding)", Llama-3.2-1B's
# total (1.23B). A wrong width, depth or head count in a shipped config.json shows here.
PUBLISHED_BILLIONS = {"qwen3-0.6b-base": 0.44, "qwen3-1.7b-base": 1.4, "qwen3-4b-base": 3.6, "qwen3-8b-base": 6.95,
                      "qwen2.5-0.5b": 0.36, "llama-3.2-1b": 1.23}
# What each family's real tokenizer holds: len(tokenizer) and special-token ids.
REAL_TOKENIZERS = {
    "qwen3-0.6b-base": (151_669, {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                                  "</think>": 151668}),
    "qwen2.5-0.5b": (151_665, {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}),
    "llama-3.2-1b": (128_256, {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|eot_id|>": 128009}),
}
EOD = 151643  # Qwen's <|endoftext|>: above uint16, so the token data must be int32
TRAIN = {"train_iters": 2, "seq_length": 32, "micro_batch_size": 1, "global_batch_size": 1, "lr": 1e-3,
         "warmup_iters": 0, "save_interval": 2, "log_interval": 1, "eval_interval": 0, "eval_iters": 0,
         "split": "100,0,0", "precision": "fp32", "threads": 2, "seed": 7}
CONVERT = {"threads": 2}


def _published_size(name: str) -> float:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = real_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config))
    total = sum(p.numel() for p in model.parameters())
    embedding = config["vocab_size"] * config["hidden_size"] * (1 if config["tie_word_embeddings"] else 2)
    return total if name.startswith("llama") else total - embedding


@pytest.mark.parametrize("name", SHAPES)
def test_shipped_configs_have_the_published_sizes_and_convert(name: str) -> None:
    config = real_config(name)
    shape = shape_from_hf_config(config, source=name)  # the built-in converter supports every shipped shape
    assert shape.vocab_size == config["vocab_size"] and shape.num_layers == config["num_hidden_layers"]
    assert _published_size(name) / 1e9 == pytest.approx(PUBLISHED_BILLIONS[name], rel=0.01)


def test_unknown_shape_names_the_known_ones() -> None:
    with pytest.raises(StageError, match="unknown model shape 'qwen3-0.5b'; known: llama-3.2-1b, qwen2.5-0.5b"):
        real_config("qwen3-0.5b")


@pytest.mark.parametrize("name", list(REAL_TOKENIZERS))
def test_stand_in_tokenizer_has_the_real_size_and_special_ids(name: str, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    folder = write_shape_folder(name, tmp_path / name, weights=False)
    assert json.loads((folder / "config.json").read_text()) == real_config(name)
    assert not list(folder.glob("*.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    size, specials = REAL_TOKENIZERS[name]
    assert len(tokenizer) == size
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in specials} == specials
    assert tokenizer.eos_token_id == real_config(name)["eos_token_id"]
    ids = tokenizer("Hello, world")["input_ids"]
    assert ids and max(ids) < 8192  # ordinary text maps to the demo BPE's ids, never to the fillers
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                                         tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    end_of_turn = specials.get("<|im_end|>", specials.get("<|eot_id|>"))
    targets = [i for i, m in zip(chat["input_ids"], chat["assistant_masks"]) if m]
    assert targets[-1] == end_of_turn and end_of_turn not in targets[:-1]


def test_cli_writes_a_shallow_folder_without_weights(tmp_path: Path) -> None:
    out = tmp_path / "llama"
    result = subprocess.run([sys.executable, "-m", "llmrunner.prepare.real_shapes", "llama-3.2-1b", str(out),
                             "--no-weights", "--layers", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text()) == {**real_config("llama-3.2-1b"), "num_hidden_layers": 2}
    assert (out / "tokenizer.json").is_file() and not list(out.glob("*.safetensors"))


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Qwen3-0.6B-Base, all 28 layers, random bf16 weights; its hf2mg checkpoint; the demo text tokenized by the
    tokenize stage with its stand-in tokenizer."""
    root = tmp_path_factory.mktemp("qwen3_06b")
    hf = write_shape_folder("qwen3-0.6b-base", root / "hf", weights=True)
    text = root / "cpt.jsonl"
    write_jsonl(text, [{"text": t} for t, _ in zip(demo_cpt_texts(), range(40))])
    run_stage("tokenize", "cpt", "--input", text, "--tokenizer", hf, "--out-prefix", root / "tok" / "cpt",
              settings={})
    run_stage("convert", "hf2mg", "--hf", hf, "--out", root / "mg", settings=CONVERT)
    return {"hf": hf, "mg": root / "mg", "data": root / "tok" / "cpt", "root": root}


@pytest.fixture(scope="module")
def trained(qwen3: dict[str, Path]) -> dict:
    """Two CPT steps on the full-depth model, then mg2hf of the checkpoint."""
    save, out = qwen3["root"] / "ckpt", qwen3["root"] / "trained_hf"
    run_stage("train", "cpt", "--init", qwen3["mg"], "--data", qwen3["data"], "--save", save,
              "--done", save / "complete.json", settings=TRAIN)
    run_stage("convert", "mg2hf", "--mg", save, "--hf-side", qwen3["hf"], "--out", out, settings=CONVERT)
    return {"save": save, "hf": out}


@pytest.mark.slow
def test_qwen3_tokens_are_int32_and_megatron_reads_the_eod(qwen3: dict[str, Path]) -> None:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    stats = json.loads((qwen3["root"] / "tok" / "cpt.stats.json").read_text())
    assert stats["dtype"] == "int32" and stats["vocab_size"] == 151_669 and stats["eod_id"] == EOD
    dataset = IndexedDataset(str(qwen3["data"]) + "_text_document")
    assert dataset.index.dtype == np.int32 and len(dataset) == stats["documents"] == 40
    assert all(dataset[i][-1] == EOD for i in range(len(dataset)))
    assert (qwen3["mg"] / "parity.json").is_file() and json.loads((qwen3["mg"] / "parity.json").read_text())["ok"]


@pytest.mark.slow
def test_qwen3_full_depth_trains_two_steps_and_exports_with_parity(qwen3: dict[str, Path], trained: dict) -> None:
    steps = metrics(trained["save"])
    assert [s["iteration"] for s in steps] == [1, 2] and all(np.isfinite(s["loss"]) for s in steps)
    parity = json.loads((trained["hf"] / "parity.json").read_text())
    assert parity["ok"] is True and parity["architecture"] == "qwen3"
    assert json.loads((trained["hf"] / "config.json").read_text())["num_hidden_layers"] == 28
    source, exported = load_safetensors(qwen3["hf"]), load_safetensors(trained["hf"])
    assert set(exported) == set(source)  # tied: no lm_head.weight on either side
    unchanged = [k for k, v in source.items() if torch.equal(exported[k], v.to(exported[k].dtype))]
    assert not unchanged, f"training left {unchanged[:5]} as they were"


@pytest.mark.slow
def test_qwen3_tp2_checkpoint_exports_the_source_bit_for_bit(qwen3: dict[str, Path], tmp_path: Path) -> None:
    """The real config with 2 layers (the full depth in two more processes does not fit CI's time), one step at
    learning rate 0 with tensor parallelism 2: what mg2hf exports from the sharded checkpoint is the source."""
    hf = write_shape_folder("qwen3-0.6b-base", tmp_path / "hf", weights=True, num_layers=2)
    run_stage("convert", "hf2mg", "--hf", hf, "--out", tmp_path / "mg", settings=CONVERT)
    save = tmp_path / "ckpt"
    layout = {"tensor_parallel": 2, "nproc_per_node": 2, "threads": 1, "lr": 0.0, "min_lr": 0.0, "train_iters": 1,
              "save_interval": 1}
    result = run_stage("train", "cpt", "--init", tmp_path / "mg", "--data", qwen3["data"], "--save", save,
                       "--done", save / "complete.json", settings={**TRAIN, **layout})
    assert "2 process(es): tensor 2 x pipeline 1 x data 1 parallel" in result.stderr
    run_stage("convert", "mg2hf", "--mg", save, "--hf-side", hf, "--out", tmp_path / "back", settings=CONVERT)
    assert json.loads((tmp_path / "back" / "parity.json").read_text())["ok"] is True
    source, exported = load_safetensors(hf), load_safetensors(tmp_path / "back")
    assert set(exported) == set(source)
    for name, tensor in source.items():
        assert torch.equal(exported[name], tensor.to(exported[name].dtype)), name


@pytest.mark.slow
@pytest.mark.parametrize("name, layers", [("llama-3.2-1b", 2), ("qwen2.5-0.5b", 2)])
def test_llama_and_qwen2_real_shapes_round_trip_bit_for_bit(name: str, layers: int, tmp_path: Path) -> None:
    hf = write_shape_folder(name, tmp_path / "hf", weights=True, num_layers=layers)
    run_stage("convert", "hf2mg", "--hf", hf, "--out", tmp_path / "mg", settings=CONVERT)
    run_stage("convert", "mg2hf", "--mg", tmp_path / "mg", "--hf-side", hf, "--out", tmp_path / "back",
              settings=CONVERT)
    for folder in (tmp_path / "mg", tmp_path / "back"):
        assert json.loads((folder / "parity.json").read_text())["ok"] is True
    source, exported = load_safetensors(hf), load_safetensors(tmp_path / "back")
    assert set(exported) == set(source)
    for key, tensor in source.items():
        assert torch.equal(exported[key], tensor.to(exported[key].dtype)), key
    back_config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert back_config["vocab_size"] == real_config(name)["vocab_size"]
