"""Token counts for the token-length filters, with the experiment's base-model tokenizer.

A record's tokens are those of its content alone: the CPT text, or the sum over the SFT message contents,
each encoded without the special tokens a tokenizer adds around a sequence and without a chat template
(whose tokens depend on the template, not on the data). Text that spells a special token counts as the
plain text it is, as the tokenize step encodes it.
"""
from __future__ import annotations

import os
from pathlib import Path

from llmrunner.errors import StageError


class TokenCounter:
    """Counts tokens in batches with the Rust `tokenizers` backend of an HF model folder (its tokenizer.json)."""

    def __init__(self, model_dir: str | Path) -> None:
        # One thread per process: udatasets' parallelism is its worker processes (the job's threads).
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        from tokenizers import Tokenizer

        path = Path(model_dir) / "tokenizer.json"
        if not path.is_file():
            present = sorted(p.name for p in Path(model_dir).iterdir()) if Path(model_dir).is_dir() else []
            raise StageError(f"token-length filters need the base model's tokenizer, but {path} does not exist "
                             f"({model_dir} holds: {', '.join(present) or 'nothing'}); save the tokenizer with "
                             f"tokenizer.save_pretrained() or set min_tokens and max_tokens to null")
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.encode_special_tokens = True

    def count(self, texts: list[str]) -> list[int]:
        """The number of tokens of each text."""
        if not texts:
            return []
        return [len(encoding.ids) for encoding in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
