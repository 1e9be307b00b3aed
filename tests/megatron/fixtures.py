"""Tiny offline fixtures for the Megatron-side tests: random HF folders (Qwen3, Qwen2, Llama) with a
WordLevel tokenizer, and token data written with megatron-core's IndexedDatasetBuilder."""
from __future__ import annotations

from pathlib import Path

import numpy as np

VOCAB = 256
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in the demo tokenizer


def write_tokenizer(out: Path) -> None:
    """A WordLevel tokenizer over VOCAB ids (specials first), saved the transformers way."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + [f"w{i}" for i in range(VOCAB - len(SPECIALS))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIALS[0], pad_token=SPECIALS[0],
                            additional_special_tokens=SPECIALS[1:]).save_pretrained(out)


# Llama 3.1's RoPE scaling (transformers 5 config form); the base max_position_embeddings must exceed 8192.
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def hf_config(architecture: str = "qwen3", *, tied: bool, hidden: int = 64, layers: int = 2, heads: int = 4,
              kv_heads: int = 2, head_dim: int = 16, ffn: int = 128, vocab: int = VOCAB,
              rope: dict | None = None):
    """A tiny transformers config of a supported family (qwen3, qwen2, llama), float32."""
    from transformers import AutoConfig

    rope = rope or {"rope_type": "default", "rope_theta": 1e6}
    return AutoConfig.for_model(architecture, vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn,
                                num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                                head_dim=head_dim, max_position_embeddings=16384 if rope.get("factor") else 512,
                                rope_parameters=rope, rms_norm_eps=1e-6, tie_word_embeddings=tied,
                                eos_token_id=0, pad_token_id=0, bos_token_id=None, dtype="float32")


def random_hf_model(config, seed: int = 0):
    """A random-init model for the config, with norms and biases perturbed away from HF's init (ones and
    zeros), so that a mix-up of norms or biases in a mapping shows."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name or name.endswith(".bias"):
                    p.add_(0.1 * torch.randn_like(p))
    return model


def build_hf_model(out: Path, architecture: str = "qwen3", *, tied: bool, seed: int = 0,
                   rope: dict | None = None) -> Path:
    """A random-init HF model of the family (float32 safetensors) plus tokenizer in `out`."""
    random_hf_model(hf_config(architecture, tied=tied, rope=rope), seed).save_pretrained(out)
    write_tokenizer(out)
    return out


def write_indexed(prefix: Path, docs: list[np.ndarray], dtype=np.uint16) -> None:
    """`<prefix>.bin/.idx` with one sequence per document (as tokenize writes them)."""
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for doc in docs:
        builder.add_document(np.asarray(doc), [len(doc)])  # megatron converts with numpy.array
    builder.finalize(f"{prefix}.idx")


def write_cpt_data(prefix: Path, n_docs: int = 64, seed: int = 0, repeat: list[int] | None = None) -> Path:
    """`<prefix>_text_document`: documents of ids 3..VOCAB-1, each ending in EOD (0).

    With `repeat`, every document is that token list (learnable data for loss-falls tests).
    """
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        body = np.array(repeat) if repeat is not None else rng.integers(3, VOCAB, size=rng.integers(20, 120))
        docs.append(np.append(body, 0))
    write_indexed(Path(f"{prefix}_text_document"), docs)
    return prefix


def write_sft_data(prefix: Path, conversations: list[tuple[list[int], list[int]]]) -> Path:
    """`<prefix>_text_document` + `<prefix>_loss_mask_document` from (ids, mask) pairs."""
    write_indexed(Path(f"{prefix}_text_document"), [np.array(ids) for ids, _ in conversations])
    write_indexed(Path(f"{prefix}_loss_mask_document"), [np.array(mask) for _, mask in conversations], np.uint8)
    return prefix


def run_stage(module: str, *args: str, settings: dict | None = None, timeout: int = 600, check: bool = True):
    """Run `python -m llmrunner.<module> ...` in a fresh interpreter, as a Snakemake rule does.

    Megatron's parallel state and the CPU redirections are process-wide, so stages run apart
    from the test process.
    """
    import json
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", f"llmrunner.{module}", *map(str, args)]
    if settings is not None:
        cmd += ["--settings", json.dumps(settings)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result


def load_safetensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    state = {}
    for path in sorted(folder.glob("*.safetensors")):
        state.update(load_file(path))
    return state
