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

    tasks: list[str]
    """Built-in local tasks to run: `heldout_ppl` (rolling log-likelihood on held-out text: word and
    byte perplexity, bits per byte) and `wordnet_mc` (4-way multiple choice: acc, acc_norm)."""

    heldout: str
    """JSONL file with one `{"text": ...}` per line; needed by `heldout_ppl`."""

    mc: str
    """JSONL file of `{"word", "pos", "choices": [4 strings], "label": 0-3}` items; needed by `wordnet_mc`."""

    batch_size: int
    """Sequences per forward pass."""

    max_length: int
    """Context window in tokens; longer held-out documents are scored in rolling windows of this size
    (at most the model's max_position_embeddings, checked when the config loads)."""

    limit: int | None
    """Score only the first N items of each task (None: all). For quick runs; results are then not
    comparable with full runs."""

    threads: int
    """CPU threads for torch (`torch.set_num_threads`); the entry point's `--threads` overrides it."""

    @classmethod
    def from_dict(cls, values: dict) -> EvalSettings:
        return settings_from_dict(cls, values, load_schema("eval"), "eval")
