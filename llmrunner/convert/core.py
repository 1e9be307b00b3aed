"""HF model folder (Qwen3, Qwen2 or Llama layout) ⇄ Megatron checkpoint folder.

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
from llmrunner.megatron.hf_mapping import hf_config_kwargs, hf_to_megatron, megatron_to_hf, shape_from_hf_config
from llmrunner.megatron.model import MODEL_JSON, ModelShape, build_gpt_model
from llmrunner.schemas import load_schema

log = logging.getLogger(__name__)

# The dtypes mg2hf exports: the `dtype` setting's values (training saves its weights in one of them).
EXPORT_DTYPES = tuple(getattr(torch, name) for name in load_schema("convert")["properties"]["dtype"]["enum"] if name)
# An export without one of these has no tokenizer, and eval cannot load it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def fresh_output(out: Path, marker: str) -> None:
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
    fresh_output(out, MODEL_JSON)
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
    compared = {"architecture": shape.architecture, "reference": f"HF model {hf_dir}",
                "converted": f"Megatron checkpoint {out} iteration 0, reloaded"}
    return record_parity(out, hf_logits(hf_dir, ids), megatron_logits(reloaded, ids), tolerance, compared)


def _save_hf_model(shape: ModelShape, hf_state: dict[str, torch.Tensor], out: Path, dtype: torch.dtype) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(shape.architecture, **hf_config_kwargs(shape), dtype=dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)  # built in the export dtype: no fp32 copy
    result = model.load_state_dict(hf_state, strict=False)
    # A tied model's lm_head is the embedding: HF lists it as a key, the mapping does not.
    expected_missing = ["lm_head.weight"] if shape.tie_embeddings else []
    if sorted(result.missing_keys) != expected_missing or result.unexpected_keys:
        raise StageError(f"HF {config.architectures[0]} rejected the mapped weights: missing {result.missing_keys}, "
                         f"unexpected {result.unexpected_keys}")
    model.save_pretrained(out)


def copy_side_files(hf_side: Path, out: Path, patterns: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Copy the files of hf_side matching `patterns` (tokenizer, chat template, generation config: the
    `copy_hf_files` setting) into out; return (copied, kept: already in out). StageError when out is left
    without a tokenizer."""
    if not hf_side.is_dir():
        raise StageError(f"--hf-side {hf_side} is not a folder; point it at the base model's HF folder")
    matched = sorted({p.relative_to(hf_side).as_posix() for pattern in patterns for p in hf_side.glob(pattern)
                      if p.is_file()})
    kept = [name for name in matched if (out / name).exists()]
    copied = [name for name in matched if name not in kept]
    for name in copied:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(hf_side / name, out / name)
    if not any((out / name).is_file() for name in TOKENIZER_FILES):
        raise StageError(f"{out} has no tokenizer ({' / '.join(TOKENIZER_FILES)}) after copying `copy_hf_files` "
                         f"{list(patterns)} from --hf-side {hf_side} (which holds "
                         f"{sorted(p.name for p in hf_side.iterdir())}); point --hf-side at the HF folder the "
                         "checkpoint was converted from (the base model), or add the tokenizer's files to "
                         "`copy_hf_files`")
    return copied, kept


def export_dtype(setting: str | None, mg_dir: Path, iteration: int) -> torch.dtype:
    """The HF export's dtype: the `dtype` setting, else the dtype training saved the weights in."""
    dtype = getattr(torch, setting) if setting else checkpoint.stored_weights_dtype(mg_dir, iteration)
    if dtype not in EXPORT_DTYPES:
        raise StageError(f"{checkpoint.iteration_dir(mg_dir, iteration)} holds {dtype_name(dtype)} weights; set "
                         f"the mg2hf `dtype` to one of {[dtype_name(d) for d in EXPORT_DTYPES]}")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    """`float32` for torch.float32: the name settings, config.json and parity.json use."""
    return str(dtype).removeprefix("torch.")


def _loaded_model(shape: ModelShape, mg_dir: Path, iteration: int, dtype: torch.dtype):
    """The checkpoint's model in `dtype`; bf16 as training runs it: every weight (norms too) in bf16."""
    model = build_gpt_model(shape, dtype)
    if dtype == torch.bfloat16:
        from megatron.core.transformer.module import Float16Module

        model = Float16Module(model.config, model)
    checkpoint.load_checkpoint(mg_dir, model, iteration=iteration)
    return model


def convert_megatron_to_hf(mg_dir: Path, hf_side: Path, out: Path, *, patterns: tuple[str, ...], tolerance: float,
                           tolerance_bf16: float, dtype: str | None, threads: int) -> dict:
    """Write `out` as an HF folder (the shape's architecture, weights in `dtype`, None: the checkpoint's)
    from the latest iteration in mg_dir; return the parity record.

    Parity in float32 always: the checkpoint's model in fp32 with its weights rounded to the export dtype
    (the export's exact values) vs the export loaded in float32. A bfloat16 export is also compared in
    bf16, as a GPU runs both: Megatron's model built in bf16 vs the export loaded in bfloat16.
    """
    shape = ModelShape.load(mg_dir)
    iteration = checkpoint.require_latest_iteration(mg_dir)
    export = export_dtype(dtype, mg_dir, iteration)
    name = dtype_name(export)
    _start(threads)
    model = _loaded_model(shape, mg_dir, iteration, torch.float32)
    with torch.no_grad():  # a no-op for weights trained in the export's dtype
        for param in model.parameters():
            param.copy_(param.to(export))
    mg_state = {k: v.detach().cpu() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    hf_state = megatron_to_hf(mg_state, shape)  # values already rounded to the export dtype; loading casts
    fresh_output(out, "config.json")
    _save_hf_model(shape, hf_state, out, export)
    del mg_state, hf_state
    copied, _ = copy_side_files(hf_side, out, patterns)
    log.info("wrote %s (%s) from %s iteration %d; side files from %s: %s", out, name, mg_dir, iteration, hf_side,
             copied)

    ids = parity_input(shape)
    rounded = "" if export == torch.float32 else f", weights rounded to {name}"
    compared = {"architecture": shape.architecture, "export_dtype": name,
                "reference": f"Megatron checkpoint {mg_dir} iteration {iteration}{rounded}",
                "converted": f"HF model {out}, reloaded by transformers"}
    fp32 = megatron_logits(model, ids)
    del model
    bf16 = None
    if export == torch.bfloat16:
        bf16 = (megatron_logits(_loaded_model(shape, mg_dir, iteration, torch.bfloat16), ids),
                hf_logits(out, ids, torch.bfloat16), tolerance_bf16)
    return record_parity(out, fp32, hf_logits(out, ids), tolerance, compared, bfloat16=bf16)
