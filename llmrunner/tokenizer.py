"""The base model's tokenizer, loaded one way for every step that counts or writes tokens.

tokenize writes the ids of `load_text_tokenizer(folder).backend` and udatasets' token-length filters count
with the same backend, so a filter's count is what tokenize will write (less the eod). The backend is the
Rust `tokenizers.Tokenizer` transformers would use, set so that text spelling a special token ("<|im_end|>"
inside a document) is encoded as the literal text it is.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from llmrunner.errors import StageError

# Tokenizer classes whose transformers tokenizer is tokenizer.json as it is: these load with the
# `tokenizers` library alone, without transformers' (and torch's) 3-second import.
PLAIN_TOKENIZER_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")


def configure_threads(workers: int) -> None:
    """Size the Rust tokenizer's thread pool; must run before the first batch encode of the process."""
    os.environ["RAYON_NUM_THREADS"] = str(workers)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if workers > 1 else "false"


def load_tokenizer(path: str | Path):
    """An HF fast tokenizer from a local model folder (no hub)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise StageError(f"tokenizer folder {path} does not exist; it is the base model folder written by prepare")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise StageError(f"cannot load a tokenizer from {path} ({err}); it needs tokenizer.json or "
                         f"tokenizer_config.json as written by tokenizer.save_pretrained()") from err
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise StageError(f"the tokenizer in {path} is not a fast (Rust `tokenizers`) tokenizer; "
                         f"save one with a tokenizer.json")
    return tokenizer


@dataclass
class TextTokenizer:
    """What CPT needs of a tokenizer: `tokenizer(text)["input_ids"]` as a batch call, eos, vocabulary size."""

    backend: object
    """The Rust `tokenizers.Tokenizer`, set to encode text spelling a special token as plain text."""
    eos_id: int | None
    vocab_size: int
    """`len(tokenizer)`: base vocabulary plus added tokens."""


def load_text_tokenizer(path: str | Path) -> TextTokenizer:
    """The tokenizer of a model folder: with `tokenizers` alone when transformers would use its
    tokenizer.json unchanged (`uses_tokenizer_json_as_is`), else through transformers."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_dir():
        raise StageError(f"tokenizer folder {path} does not exist; it is the base model folder written by prepare")
    config_path, json_path = path / "tokenizer_config.json", path / "tokenizer.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    except json.JSONDecodeError:
        config = {}  # transformers reports it, below
    if config.get("tokenizer_class") in PLAIN_TOKENIZER_CLASSES and json_path.is_file():
        try:
            backend = Tokenizer.from_file(str(json_path))
        except Exception as err:  # the Rust library raises a bare Exception on a bad file
            raise StageError(f"cannot load {json_path} ({err}); re-create it with tokenizer.save_pretrained()") from err
        eos = token_text(config.get("eos_token"))
        if eos is not None and uses_tokenizer_json_as_is(config, backend):
            backend.encode_special_tokens = True
            return TextTokenizer(backend, backend.token_to_id(eos), backend.get_vocab_size(with_added_tokens=True))
    tokenizer = load_tokenizer(path)
    return TextTokenizer(literal_backend(tokenizer), tokenizer.eos_token_id, len(tokenizer))


def token_text(token: str | dict | None) -> str | None:
    """A token as tokenizer_config.json spells it: a string, or an AddedToken's dict."""
    return token.get("content") if isinstance(token, dict) else token


def uses_tokenizer_json_as_is(config: dict, backend) -> bool:
    """Whether transformers (5.x TokenizersBackend.__init__) leaves a plain-class tokenizer.json unchanged:
    no add_bos_token/add_eos_token (they rebuild the post-processor), every special and added token
    already in the vocabulary (else it adds them), and a vocabulary of at most 100,000 entries (above,
    it may patch the pre-tokenizer of Mistral-style tokenizers)."""
    if "add_bos_token" in config or "add_eos_token" in config or backend.get_vocab_size() > 100_000:
        return False
    named = [config.get(f"{name}_token") for name in ("bos", "eos", "unk", "pad", "sep", "cls", "mask")]
    for key in ("extra_special_tokens", "additional_special_tokens", "added_tokens_decoder"):
        listed = config.get(key) or []
        named.extend(listed.values() if isinstance(listed, dict) else listed)
    tokens = [token_text(t) for t in named if t is not None]
    return all(isinstance(t, str) and backend.token_to_id(t) is not None for t in tokens)


def literal_backend(tokenizer):
    """The Rust tokenizer, set so that text spelling a special token is encoded as plain text."""
    backend = tokenizer.backend_tokenizer
    backend.encode_special_tokens = True
    return backend
