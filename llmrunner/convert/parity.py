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
def hf_logits(hf_dir: Path, ids: torch.Tensor) -> torch.Tensor:
    """Logits of the HF model saved in hf_dir, loaded as transformers would for evaluation, in float32."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir).float().eval()
    return model(ids).logits.float()


def record_parity(out_dir: Path, reference: torch.Tensor, converted: torch.Tensor, tolerance: float,
                  compared: dict | None = None) -> dict:
    """Write parity.json into out_dir; raise StageError (after writing it) when the logits differ.

    `compared` (what the reference and the converted model are) is recorded as given.
    """
    if reference.shape != converted.shape:
        raise StageError(f"parity check: logits shapes differ, {tuple(reference.shape)} vs {tuple(converted.shape)}")
    difference = (reference - converted).abs()
    diff = difference.max().item()
    result = {"max_abs_logit_diff": diff, "mean_abs_logit_diff": difference.mean().item(), "tolerance": tolerance,
              "ok": bool(diff <= tolerance), "dtype": "float32", "input_shape": list(reference.shape[:2]),
              "input_seed": _SEED, **(compared or {})}
    (out_dir / PARITY_JSON).write_text(json.dumps(result, indent=2) + "\n")
    if not result["ok"]:
        raise StageError(f"parity check failed: max |logit difference| {diff:.3g} exceeds tolerance {tolerance:g} "
                         f"(see {out_dir / PARITY_JSON}); the weight mapping or model shape does not match this "
                         "checkpoint. If the model is deep and the difference small, raise `tolerance`.")
    return result
