"""Encoding a huge text in pieces (llmrunner/tokenize/pieces.py): the ids equal those of encoding it whole,
on real text (the demo corpus with unicode, digit runs, long whitespace runs and newlines) for real
tokenizers; cuts the tokenizer would not make are refused."""
from __future__ import annotations

import pytest
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors

from llmrunner.tokenize.pieces import Splitter, special_tokens_around
from llmrunner.tokenizer import load_text_tokenizer
from tests.tokenize.huge_doc import huge_text

TEXT_CHARS = 400_000


@pytest.fixture(scope="module")
def text() -> str:
    return huge_text(TEXT_CHARS)


@pytest.fixture(scope="module")
def deepseek_backend(deepseek_tokenizer_dir) -> Tokenizer:
    return load_text_tokenizer(deepseek_tokenizer_dir).backend


def demo_backend(tiny_tokenizer_dir) -> Tokenizer:
    """A fresh one for each test, which may change it."""
    return load_text_tokenizer(tiny_tokenizer_dir).backend


def piecewise_ids(backend: Tokenizer, text: str, piece_chars: int) -> tuple[list[int], list[tuple[int, int]]]:
    spans = list(Splitter(backend, piece_chars).spans(text))
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous: nothing left out or repeated
    encodings = backend.encode_batch([text[a:b] for a, b in spans], add_special_tokens=False)
    return [i for encoding in encodings for i in encoding.ids], spans


@pytest.mark.parametrize("tokenizer", ["demo", "deepseek"])
def test_pieces_give_the_ids_of_the_whole_text(request, text, tokenizer):
    """Hundreds of cuts, at spaces and at newlines, in real text; the ids match token for token."""
    backend = (demo_backend(request.getfixturevalue("tiny_tokenizer_dir")) if tokenizer == "demo"
               else request.getfixturevalue("deepseek_backend"))
    ids, spans = piecewise_ids(backend, text, 1024)
    assert len(spans) > 300
    assert {text[start] for start, _ in spans[1:]} == {" ", "\n"}
    assert ids == backend.encode(text, add_special_tokens=False).ids


def test_a_cut_inside_a_pre_token_is_refused(deepseek_backend):
    """DeepSeek's pre-tokenizer keeps punctuation with the newlines after it ('.\\n' is one pre-token)."""
    splitter = Splitter(deepseek_backend)
    assert not splitter.cut_is_safe("the end.\nNext part", 8, 0, 18)
    assert splitter.cut_is_safe("the end\nNext part", 7, 0, 17)
    assert splitter.cut_is_safe("the end of it", 7, 0, 13)


def test_a_prefix_space_tokenizer_is_cut_only_before_spaces(tiny_tokenizer_dir, text):
    """ByteLevel(add_prefix_space=True) adds a space to a text that starts with a newline: a piece may
    start with a space (which stops it), never with a newline."""
    backend = demo_backend(tiny_tokenizer_dir)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    ids, spans = piecewise_ids(backend, text, 1024)
    assert len(spans) > 300 and {text[start] for start, _ in spans[1:]} == {" "}
    assert ids == backend.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("change", ["strip normalizer", "no pre-tokenizer", "truncation"])
def test_tokenizers_that_treat_a_text_as_a_whole_are_never_cut(tiny_tokenizer_dir, text, change):
    backend = demo_backend(tiny_tokenizer_dir)
    if change == "strip normalizer":  # removes the whitespace each piece would start with
        backend.normalizer = normalizers.Strip()
    elif change == "no pre-tokenizer":  # the whole text is one word for the model
        backend.pre_tokenizer = None
    else:
        backend.enable_truncation(1_000_000)
    sample = text[:20_000]
    _, spans = piecewise_ids(backend, sample, 1024)
    assert spans == [(0, len(sample))]


def test_post_processor_tokens_surround_the_pieces(tiny_tokenizer_dir):
    backend = demo_backend(tiny_tokenizer_dir)
    assert special_tokens_around(backend) == ([], [])  # the demo's (ByteLevel) adds none
    backend.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A <|im_end|>", special_tokens=[("<|im_start|>", 1), ("<|im_end|>", 2)])
    assert special_tokens_around(backend) == ([1], [2])

