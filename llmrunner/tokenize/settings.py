"""Settings of the tokenize_cpt and tokenize_sft steps (2.tokenize_cpt.yaml, 3.tokenize_sft.yaml)."""
from __future__ import annotations

from dataclasses import dataclass

from llmrunner.errors import ConfigError
from llmrunner.settings import is_int, settings_from_dict


@dataclass(frozen=True)
class TokenizeCptSettings:
    append_eod: bool = True
    """Append the end-of-document token (the tokenizer's eos) to every non-empty document, as
    Megatron-LM's preprocess_data.py --append-eod."""
    threads: int = 2
    """Tokenizer threads (the Rust tokenizer's thread pool); the output does not depend on it."""
    shards: int = 1
    """Split the step into this many Snakemake jobs per dataset (each tokenizes a contiguous block of
    the input lines; SLURM runs them on many nodes at once), then merge them into the same files as
    one job writes. 1: one job."""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.append_eod, bool):
            problems.append(f"append_eod: must be true or false, got {self.append_eod!r}")
        if not is_int(self.threads) or self.threads < 1:
            problems.append(f"threads: must be an integer >= 1, got {self.threads!r}")
        if not is_int(self.shards) or self.shards < 1:
            problems.append(f"shards: must be an integer >= 1, got {self.shards!r}")
        if problems:
            raise ConfigError("tokenize_cpt settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> TokenizeCptSettings:
        return settings_from_dict(cls, values, "tokenize_cpt")


OVERLONG = ("truncate", "drop")
TRAIN_ON = ("all_assistant", "last_assistant")


@dataclass(frozen=True)
class TokenizeSftSettings:
    max_tokens: int = 2048
    """Cap on one conversation's tokens; a longer one is truncated or dropped (see overlong).
    Training may pack to any sequence length up to this cap without re-tokenizing."""
    overlong: str = "truncate"
    """'truncate': keep the first max_tokens tokens (dropped if no training target is left);
    'drop': leave the conversation out."""
    train_on: str = "all_assistant"
    """Which assistant turns are training targets (loss mask 1): every one, or only the last."""
    threads: int = 2
    """Tokenizer threads (the Rust tokenizer's thread pool); the output does not depend on it."""
    shards: int = 1
    """Split the step into this many Snakemake jobs per dataset (each tokenizes a contiguous block of
    the input lines; SLURM runs them on many nodes at once), then merge them into the same files as
    one job writes. 1: one job."""

    def __post_init__(self) -> None:
        problems = []
        if not is_int(self.max_tokens) or self.max_tokens < 1:
            problems.append(f"max_tokens: must be an integer >= 1, got {self.max_tokens!r}")
        if self.overlong not in OVERLONG:
            problems.append(f"overlong: {self.overlong!r} is not one of {list(OVERLONG)}")
        if self.train_on not in TRAIN_ON:
            problems.append(f"train_on: {self.train_on!r} is not one of {list(TRAIN_ON)}")
        if not is_int(self.threads) or self.threads < 1:
            problems.append(f"threads: must be an integer >= 1, got {self.threads!r}")
        if not is_int(self.shards) or self.shards < 1:
            problems.append(f"shards: must be an integer >= 1, got {self.shards!r}")
        if problems:
            raise ConfigError("tokenize_sft settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> TokenizeSftSettings:
        return settings_from_dict(cls, values, "tokenize_sft")
