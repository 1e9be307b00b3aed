"""EvalSettings: the eval step's config (config/experiments/<exp>/steps/8.eval.yaml after validation)."""
from __future__ import annotations

from dataclasses import dataclass, field

from llmrunner.errors import ConfigError
from llmrunner.eval.tasks import TASK_DATA_KEY
from llmrunner.settings import is_int, settings_from_dict


@dataclass(frozen=True)
class EvalSettings:
    tasks: list[str] = field(default_factory=lambda: ["heldout_ppl", "wordnet_mc"])
    """Built-in local tasks to run: `heldout_ppl` (rolling log-likelihood on held-out text: word and
    byte perplexity, bits per byte) and `wordnet_mc` (4-way multiple choice: acc, acc_norm)."""

    heldout: str | None = None
    """JSONL file with one `{"text": ...}` per line; needed by `heldout_ppl`."""

    mc: str | None = None
    """JSONL file of `{"word", "pos", "choices": [4 strings], "label": 0-3}` items; needed by `wordnet_mc`."""

    batch_size: int = 16
    """Sequences per forward pass."""

    max_length: int = 512
    """Context window in tokens; longer held-out documents are scored in rolling windows of this size."""

    limit: int | None = None
    """Score only the first N items of each task (null: all). For quick runs; results are then not
    comparable with full runs."""

    threads: int = 2
    """CPU threads for torch (`torch.set_num_threads`); the entry point's `--threads` overrides it."""

    @classmethod
    def from_dict(cls, values: dict) -> EvalSettings:
        return settings_from_dict(cls, values, "eval")

    def __post_init__(self) -> None:
        problems = []
        if not self.tasks:
            problems.append("`tasks` is empty: name at least one of " + ", ".join(TASK_DATA_KEY))
        for task in self.tasks:
            if task not in TASK_DATA_KEY:
                problems.append(f"unknown task {task!r} in `tasks` (built-in tasks: {', '.join(TASK_DATA_KEY)})")
            elif not getattr(self, TASK_DATA_KEY[task]):
                problems.append(f"task {task!r} needs `{TASK_DATA_KEY[task]}` (a JSONL file path)")
        for name in ("batch_size", "max_length", "threads"):
            if not (is_int(getattr(self, name)) and getattr(self, name) >= 1):
                problems.append(f"`{name}` must be a positive integer, got {getattr(self, name)!r}")
        if self.limit is not None and not (is_int(self.limit) and self.limit >= 1):
            problems.append(f"`limit` must be null or a positive integer, got {self.limit!r}")
        if problems:
            raise ConfigError("eval settings: " + "; ".join(problems) + ".")
