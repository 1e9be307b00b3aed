"""Settings of the tokenize_cpt and tokenize_sft steps (2.tokenize_cpt.yaml, 3.tokenize_sft.yaml)."""
from __future__ import annotations

from dataclasses import dataclass

from llmrunner.schemas import load_schema
from llmrunner.settings import settings_from_dict


@dataclass(frozen=True)
class TokenizeCptSettings:
    """Every key's type, default and range: config/schemas/tokenize_cpt.schema.json."""

    append_eod: bool
    """Append the end-of-document token (the tokenizer's eos) to every non-empty document, as
    Megatron-LM's preprocess_data.py --append-eod."""
    threads: int
    """Tokenizer threads (the Rust tokenizer's thread pool); the output does not depend on it."""
    shards: int
    """Split the step into this many Snakemake jobs per dataset (each tokenizes a contiguous block of
    the input lines; SLURM runs them on many nodes at once), then merge them into the same files as
    one job writes. 1: one job."""

    @classmethod
    def from_dict(cls, values: dict) -> TokenizeCptSettings:
        return settings_from_dict(cls, values, load_schema("tokenize_cpt"), "tokenize_cpt")


@dataclass(frozen=True)
class TokenizeSftSettings:
    """Every key's type, default and range: config/schemas/tokenize_sft.schema.json."""

    max_tokens: int
    """Cap on one conversation's tokens; a longer one is truncated or dropped (see overlong).
    Training may pack to any sequence length up to this cap without re-tokenizing."""
    overlong: str
    """'truncate': keep the first max_tokens tokens (dropped if no training target is left);
    'drop': leave the conversation out."""
    train_on: str
    """Which assistant turns are training targets (loss mask 1): every one ('all_assistant'), or only the
    last ('last_assistant')."""
    threads: int
    """Tokenizer threads (the Rust tokenizer's thread pool); the output does not depend on it."""
    shards: int
    """Split the step into this many Snakemake jobs per dataset (each tokenizes a contiguous block of
    the input lines; SLURM runs them on many nodes at once), then merge them into the same files as
    one job writes. 1: one job."""

    @classmethod
    def from_dict(cls, values: dict) -> TokenizeSftSettings:
        return settings_from_dict(cls, values, load_schema("tokenize_sft"), "tokenize_sft")
