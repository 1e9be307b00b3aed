"""Token counts for the token-length filters, with the experiment's base-model tokenizer.

A record's tokens are those of its content alone: the CPT text, or the sum over the SFT message contents,
each encoded without the special tokens a tokenizer adds around a sequence and without a chat template
(whose tokens depend on the template, not on the data). The tokenizer is loaded as the tokenize step loads
it (llmrunner/tokenizer.py), so text that spells a special token counts as the plain text it is, and a CPT
record's count is the ids tokenize writes for it, less the eod.
"""
from __future__ import annotations

import os
from pathlib import Path

from llmrunner.errors import StageError
from llmrunner.tokenizer import load_text_tokenizer


class TokenCounter:
    """Counts tokens in batches with the Rust `tokenizers` backend that tokenize encodes with."""

    def __init__(self, model_dir: str | Path) -> None:
        # One thread per process: udatasets' parallelism is its worker processes (the job's threads).
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        folder = Path(model_dir)
        try:
            self.backend = load_text_tokenizer(folder).backend
        except StageError as err:
            present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
            raise StageError(f"token-length filters need the base model's tokenizer, but none loads from {folder} "
                             f"(it holds: {', '.join(present) or 'nothing'}): {err}; save the tokenizer with "
                             f"tokenizer.save_pretrained() or set min_tokens and max_tokens to null") from err

    def count(self, texts: list[str]) -> list[int]:
        """The number of tokens of each text."""
        if not texts:
            return []
        return [len(encoding.ids) for encoding in self.backend.encode_batch_fast(texts, add_special_tokens=False)]
