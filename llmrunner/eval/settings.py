"""EvalSettings: the eval step's config (config/experiments/<exp>/steps/8.eval.yaml after validation)."""
from __future__ import annotations

from dataclasses import dataclass

from llmrunner.schemas import load_schema
from llmrunner.settings import settings_from_dict


@dataclass(frozen=True)
class EvalSettings:
    """Every key's type, default and range: config/schemas/eval.schema.json."""

    stages: list[str] | None
    """Models to evaluate (base, cpt, sft); None: base plus every trained stage that is on. Chooses the
    jobs (the workflow reads it), never what one job writes."""

    sets: list[str] | None
    """Registered eval sets to score (config/evalsets/<name>.yaml); None: every registered set. The
    workflow resolves the names and hands the job the sets themselves (`--evalsets`)."""

    batch_size: int
    """Sequences per forward pass."""

    max_length: int
    """Context window in tokens; longer perplexity documents are scored in rolling windows of this size
    (at most the model's max_position_embeddings, checked when the config loads)."""

    dtype: str
    """auto, float32, bfloat16 or float16: the dtype the model is loaded in (`resolve_dtype`)."""

    limit: int | None
    """Score only the first N items of each set (None: all). For quick runs; the version recorded is that
    of the items scored, so results on a limit are never mixed with full runs."""

    threads: int
    """CPU threads for torch (`torch.set_num_threads`); the entry point's `--threads` overrides it."""

    @classmethod
    def from_dict(cls, values: dict) -> EvalSettings:
        return settings_from_dict(cls, values, load_schema("eval"), "eval")
