"""Tokenizers for the tokenize tests, built locally (no hub): the demo tokenizer trained on a small
slice of the demo text, and a word-level one with a vocabulary too large for uint16."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.paths import REPO

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from llmrunner.prepare.tiny_model import DEMO_CORPUS, train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    train_tokenizer([REPO / path for path in DEMO_CORPUS], max_bytes=300_000).save_pretrained(out)  # ~0.3 s; vocab ~8k
    return out


@pytest.fixture(scope="session")
def big_vocab_tokenizer_dir(tmp_path_factory) -> Path:
    """70,000 words: Megatron switches the .bin dtype to int32 at 65,500."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1, **{f"w{i}": i + 2 for i in range(70_000)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    out = tmp_path_factory.mktemp("bigtok")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>").save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def deepseek_tokenizer_dir(tmp_path_factory) -> Path:
    """A real large vocabulary (DeepSeek's, 129,280) from the tokenizer.json litellm ships; litellm is
    only located, never imported (install it with `pip install --no-deps litellm` for this test)."""
    import importlib.util

    from transformers import PreTrainedTokenizerFast

    spec = importlib.util.find_spec("litellm")
    if spec is None:
        pytest.skip("litellm (which ships DeepSeek's tokenizer.json) is not installed")
    path = Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers" / "deepseek_tokenizer.json"
    out = tmp_path_factory.mktemp("deepseek")
    PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token="<｜begin▁of▁sentence｜>",
                            eos_token="<｜end▁of▁sentence｜>").save_pretrained(out)
    return out


# Qwen2/Qwen3's pre-tokenizer regex (their tokenizer.json's Split pattern).
QWEN_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              r"|\s+(?!\S)|\s+")


@pytest.fixture(scope="session")
def large_bpe_tokenizer_dir(tmp_path_factory) -> Path:
    """A real 50,000-token byte-level BPE laid out as Qwen3's (NFC, Qwen's regex split, merges ignored for a word
    in the vocabulary, special tokens and non-special added ones), trained on the demo text (~6 s): the stand-in
    tokenizers of llmrunner.prepare.real_shapes only pad the demo's 8k BPE, and no Qwen tokenizer is offline."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from llmrunner.prepare.tiny_model import DEMO_CORPUS, SPECIAL_TOKENS, corpus_texts

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN_REGEX), "isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=50_000, min_frequency=2, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus_texts([REPO / path for path in DEMO_CORPUS], 5_000_000), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")])
    out = tmp_path_factory.mktemp("large_bpe")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SPECIAL_TOKENS[0],
                            additional_special_tokens=SPECIAL_TOKENS[1:]).save_pretrained(out)
    return out
