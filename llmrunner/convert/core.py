"""HF Qwen3 folder ⇄ Megatron checkpoint folder.

hf2mg writes iteration 0 of a Megatron checkpoint (+ model.json); mg2hf writes an HF folder that
transformers / lm-eval load (config.json, model.safetensors, the tokenizer and generation files
copied from a side folder). Both reload what they wrote and compare logits with the source model.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch

from llmrunner.convert.parity import hf_logits, megatron_logits, parity_input, record_parity
from llmrunner.errors import StageError
from llmrunner.megatron import checkpoint, parallel
from llmrunner.megatron.model import MODEL_JSON, ModelShape, build_gpt_model
from llmrunner.megatron.qwen3_mapping import hf_config_kwargs, hf_to_megatron, megatron_to_hf, shape_from_hf_config

log = logging.getLogger(__name__)

# Files of an HF folder that are not weights or the model config: tokenizer, chat template, generation defaults.
SIDE_FILE_PATTERNS = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                      "chat_template*", "generation_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def _fresh_output(out: Path, marker: str) -> None:
    """Empty `out` for a new conversion, refusing to wipe a folder this stage did not write."""
    if out.exists() and any(out.iterdir()):
        if not (out / marker).exists():
            raise StageError(f"{out} is not empty and holds no {marker}, so it was not written by this stage; "
                             "choose an empty output folder or delete it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def read_hf_folder(hf_dir: Path) -> tuple[ModelShape, dict[str, torch.Tensor]]:
    """The ModelShape from config.json and every tensor of the folder's safetensors files, in float32."""
    from safetensors.torch import load_file

    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        held = sorted(p.name for p in hf_dir.iterdir()) if hf_dir.is_dir() else "nothing (no such folder)"
        raise StageError(f"{config_path} is missing; {hf_dir} holds {held}. Point --hf at an HF model folder.")
    shape = shape_from_hf_config(json.loads(config_path.read_text()), source=str(config_path))
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise StageError(f"{hf_dir} has no *.safetensors weights; re-save the model with "
                         "save_pretrained(..., safe_serialization=True)")
    state: dict[str, torch.Tensor] = {}
    for path in files:
        state.update({k: v.float() for k, v in load_file(path).items()})
    return shape, state


def _start(threads: int) -> None:
    torch.set_num_threads(threads)
    parallel.init_distributed()
    parallel.seed_everything(0)


def convert_hf_to_megatron(hf_dir: Path, out: Path, *, tolerance: float, threads: int) -> dict:
    """Write `out` as a Megatron checkpoint (iteration 0) of the HF model; return the parity record."""
    shape, hf_state = read_hf_folder(hf_dir)
    mapped = hf_to_megatron(hf_state, shape)
    del hf_state
    _fresh_output(out, MODEL_JSON)
    _start(threads)
    model = build_gpt_model(shape)
    model.load_state_dict(mapped, strict=True)
    checkpoint.save_checkpoint(out, 0, shape, model)
    log.info("wrote %s (iteration 0): %d layers, hidden %d, vocab %d, tied embeddings %s",
             out, shape.num_layers, shape.hidden_size, shape.vocab_size, shape.tie_embeddings)
    del model, mapped

    # Parity on what was written: a fresh model (other random init) loaded from the new folder.
    parallel.seed_everything(1)
    reloaded = build_gpt_model(shape)
    checkpoint.load_checkpoint(out, reloaded)
    ids = parity_input(shape)
    return record_parity(out, hf_logits(hf_dir, ids), megatron_logits(reloaded, ids), tolerance)


def _save_hf_model(shape: ModelShape, hf_state: dict[str, torch.Tensor], out: Path) -> None:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    model = Qwen3ForCausalLM(Qwen3Config(**hf_config_kwargs(shape), dtype="float32")).float()
    result = model.load_state_dict(hf_state, strict=False)
    # A tied model's lm_head is the embedding: HF lists it as a key, the mapping does not.
    expected_missing = ["lm_head.weight"] if shape.tie_embeddings else []
    if sorted(result.missing_keys) != expected_missing or result.unexpected_keys:
        raise StageError(f"HF Qwen3 model rejected the mapped weights: missing {result.missing_keys}, "
                         f"unexpected {result.unexpected_keys}")
    model.save_pretrained(out)


def copy_side_files(hf_side: Path, out: Path) -> list[str]:
    """Copy tokenizer, chat template and generation config files from hf_side into out."""
    copied = sorted({p.name for pattern in SIDE_FILE_PATTERNS for p in hf_side.glob(pattern) if p.is_file()})
    if not any(name in copied for name in _TOKENIZER_FILES):
        held = sorted(p.name for p in hf_side.iterdir()) if hf_side.is_dir() else "nothing (no such folder)"
        raise StageError(f"--hf-side {hf_side} has no tokenizer ({' / '.join(_TOKENIZER_FILES)}); it holds {held}. "
                         "Point it at the HF folder the checkpoint was converted from (the base model).")
    for name in copied:
        shutil.copy2(hf_side / name, out / name)
    return copied


def convert_megatron_to_hf(mg_dir: Path, hf_side: Path, out: Path, *, tolerance: float, threads: int) -> dict:
    """Write `out` as an HF Qwen3 folder from the latest iteration in mg_dir; return the parity record."""
    shape = ModelShape.load(mg_dir)
    iteration = checkpoint.require_latest_iteration(mg_dir)
    _start(threads)
    model = build_gpt_model(shape)
    checkpoint.load_checkpoint(mg_dir, model, iteration=iteration)
    mg_state = {k: v.detach().cpu() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    hf_state = megatron_to_hf(mg_state, shape)
    _fresh_output(out, "config.json")
    _save_hf_model(shape, hf_state, out)
    copied = copy_side_files(hf_side, out)
    log.info("wrote %s from %s iteration %d; side files from %s: %s", out, mg_dir, iteration, hf_side, copied)

    ids = parity_input(shape)
    return record_parity(out, megatron_logits(model, ids), hf_logits(out, ids), tolerance)
