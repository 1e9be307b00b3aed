"""The logits parity check both conversions end with, and its record `parity.json`."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from llmrunner.errors import StageError
from llmrunner.megatron.model import ModelShape

PARITY_JSON = "parity.json"
# Fixed: the same input every run, so parity.json is comparable across runs and models.
_SEED, _BATCH, _SEQ = 0, 2, 32


def parity_input(shape: ModelShape) -> torch.Tensor:
    """Random token ids [2, 32] from a fixed seed, over the whole vocabulary."""
    generator = torch.Generator().manual_seed(_SEED)
    seq = min(_SEQ, shape.max_position_embeddings)
    return torch.randint(0, shape.vocab_size, (_BATCH, seq), generator=generator)


@torch.no_grad()
def megatron_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """Full-vocabulary logits [batch, seq, vocab] of a single-stage GPTModel, on the CPU."""
    device = next(model.parameters()).device
    ids = ids.to(device)
    positions = torch.arange(ids.shape[1], device=device).unsqueeze(0).expand_as(ids)
    # attention_mask None: megatron builds the causal mask itself.
    return model.eval()(ids, positions, None).float().cpu()


@torch.no_grad()
def hf_logits(hf_dir: Path, ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Logits (as float32) of the HF model saved in hf_dir, loaded in `dtype` as transformers would for
    evaluation."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=dtype).eval()
    return model(ids).logits.float()


def logit_difference(reference: torch.Tensor, converted: torch.Tensor, tolerance: float,
                     relative: bool = False) -> dict:
    """Largest and mean |reference - converted| over every logit, the tolerance and whether it holds.

    `relative`: the tolerance bounds the largest difference divided by the largest |reference logit|
    (recorded as `max_abs_logit`, `relative_diff`): bf16 rounds each logit to a fraction of its size.
    """
    if reference.shape != converted.shape:
        raise StageError(f"parity check: logits shapes differ, {tuple(reference.shape)} vs {tuple(converted.shape)}")
    difference = (reference - converted).abs()
    result = {"max_abs_logit_diff": difference.max().item(), "mean_abs_logit_diff": difference.mean().item()}
    measured = result["max_abs_logit_diff"]
    if relative:
        result["max_abs_logit"] = reference.abs().max().item()
        # (all-zero logits: any difference fails)
        measured = result["relative_diff"] = measured / max(result["max_abs_logit"], torch.finfo().tiny)
    return {**result, "tolerance": tolerance, "ok": bool(measured <= tolerance)}


def _failure(dtype: str, check: dict) -> str:
    found = f"max |logit difference| {check['max_abs_logit_diff']:.3g}"
    if "relative_diff" in check:
        found += f" = {check['relative_diff']:.3g} x max |logit| {check['max_abs_logit']:.3g}"
    return f"{dtype}: {found} exceeds tolerance {check['tolerance']:g}"


def record_parity(out_dir: Path, reference: torch.Tensor, converted: torch.Tensor, tolerance: float,
                  compared: dict | None = None,
                  bfloat16: tuple[torch.Tensor, torch.Tensor, float] | None = None) -> dict:
    """Write parity.json into out_dir; raise StageError (after writing it) when the logits differ.

    The top-level figures compare `reference` and `converted` run in float32. `bfloat16` (reference and
    converted logits of the models run in bf16, relative tolerance) adds that comparison under the key
    `bfloat16`; `ok` is then true when both hold. `compared` (what the reference and the converted model
    are) is recorded as given.
    """
    checks = {"float32": logit_difference(reference, converted, tolerance)}
    if bfloat16 is not None:
        checks["bfloat16"] = logit_difference(*bfloat16, relative=True)
    failed = [_failure(dtype, check) for dtype, check in checks.items() if not check["ok"]]
    fp32 = checks.pop("float32")
    result = {**fp32, "ok": not failed, "dtype": "float32", "input_shape": list(reference.shape[:2]),
              "input_seed": _SEED, **(compared or {}), **checks}
    (out_dir / PARITY_JSON).write_text(json.dumps(result, indent=2) + "\n")
    if failed:
        raise StageError(f"parity check failed in {'; '.join(failed)} (see {out_dir / PARITY_JSON}); the weight "
                         "mapping or model shape does not match this checkpoint. If the model is deep and the "
                         "difference small, raise `parity_tolerance` (float32) or `parity_tolerance_bf16` (bfloat16).")
    return result
