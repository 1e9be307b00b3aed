"""The fast encoder (llmrunner.tokenize.fast): tokie's ids where they are HF tokenizers' own, HF's elsewhere, and
tokenize cpt's output byte-identical to Megatron's with it on or off."""
from __future__ import annotations

import json
import logging
import random
import shutil
import sys
import unicodedata
from pathlib import Path

import pytest

from llmrunner.tokenize.core import tokenize_cpt
from llmrunner.tokenize.fast import ODD_CHARACTERS_END, ExactEncoder, hf_ids, long_runs, refusal
from llmrunner.tokenizer import load_text_tokenizer
from tests.tokenize.reference_writer import megatron_indexed_dataset, write_reference
from tests.tokenize.samples import VARIED, assert_identical, write_docs

# Unicode and whitespace edge cases, besides VARIED's.
EDGES = ["e\u0301\u0302\u0303 a\u0308 \u1e9b\u0323 A\u030a", "🏳️‍🌈 👨🏿‍🦱 🇯🇵 #️⃣", "漢字かなカナ한글 中文，标点。",
         "\u200fעברית\u200e mixed العربية 123", "a\r\nb\r\n\r\n\rc\n\r", "\u2028\u2029\x0b\x0c\x85 \u00a0\u3000\t x",
         " \t \n \t\t\n\n   \r\n  y  ", "don't I'LL we'Ve", "1234567890 ３４５ ½ Ⅻ", "a" * 3_999, " " * 3_999 + "z"]
SPELLED = ["a <|im_end|> b <|endoftext|>", "<|im_start|>user\nhi<|im_end|>", "<think>x</think> y"]


def long_documents() -> list[str]:
    """Over 1 MB without whitespace (letters from a seeded generator), a long whitespace run, and a long line."""
    rng = random.Random(0)
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyzäöü") for _ in range(1_100_000)), " \n" * 20_000,
            "x" * 50_000, "3.14, " * 4_000]


TEXTS = VARIED + EDGES + SPELLED + long_documents() + [""]


@pytest.mark.parametrize("tokenizer", ["tiny", "large_bpe"])
def test_fast_encoder_gives_hf_ids(request, tokenizer):
    """The demo BPE (GPT-2's regex) and a 50k Qwen-style BPE: same ids as HF, with and without the
    post-processor's tokens, tokie kept after the first batch's check."""
    backend = load_text_tokenizer(request.getfixturevalue(f"{tokenizer}_tokenizer_dir")).backend
    encoder, hf = ExactEncoder(backend), hf_ids(backend)
    assert encoder.fast is not None
    for add_special_tokens in (True, False):
        assert encoder(TEXTS, add_special_tokens) == hf(TEXTS, add_special_tokens)
        assert encoder.fast is not None
    assert sum(long_runs(TEXTS)) == 4  # to HF: the 1 MB word, the " \n" run, "x" * 5,000 and 50,000; not "a" * 3,999


def test_no_letter_number_or_space_lies_past_the_scanned_planes():
    assert not [c for c in range(ODD_CHARACTERS_END, sys.maxunicode + 1)
                if unicodedata.category(chr(c)) in ("Nl", "Zs")]


def test_long_runs():
    assert long_runs(["a" * 3_999, "a" * 4_000, " " * 4_000, "é" * 2_000, "\u3000 " * 1_000, "", "ab " * 5_000]) == [
        False, True, True, True, True, False, False]
    assert long_runs(["a" * 3_000, "a" * 3_000]) == [False, False]  # no run across two texts


def tokenize_as_megatron_does(data: Path, folder: Path, tmp_path: Path, caplog) -> str:
    """Tokenize `data` with `folder`'s tokenizer, check the files equal Megatron's; the fast encoder's log lines."""
    with caplog.at_level(logging.INFO, "llmrunner.tokenize.fast"):
        tokenize_cpt([data], folder, tmp_path / "ours")
    write_reference(data, folder, tmp_path / "ref")
    assert_identical(tmp_path / "ours", tmp_path / "ref")
    return caplog.text


@pytest.mark.parametrize("tokenizer", ["tiny", "large_bpe"])
def test_cpt_with_the_fast_encoder_is_byte_identical_to_megatron(request, tmp_path, caplog, tokenizer):
    folder = request.getfixturevalue(f"{tokenizer}_tokenizer_dir")
    data = write_docs(tmp_path / "docs.jsonl", VARIED + EDGES + long_documents() + [""])
    assert "encoding with tokie" in tokenize_as_megatron_does(data, folder, tmp_path, caplog)


def test_text_spelling_added_tokens_is_encoded_as_hf_does(large_bpe_tokenizer_dir, tmp_path):
    """Special tokens spelled in a document stay literal text; a non-special added token (Qwen3's "<think>") is
    still that token, as HF encodes it."""
    data = write_docs(tmp_path / "docs.jsonl", SPELLED)
    tokenize_cpt([data], large_bpe_tokenizer_dir, tmp_path / "ours")
    tokenizer = load_text_tokenizer(large_bpe_tokenizer_dir)
    ours = [s.tolist() for s in megatron_indexed_dataset().IndexedDataset(str(tmp_path / "ours_text_document"))]
    assert ours == [ids + [tokenizer.eos_id] for ids in hf_ids(tokenizer.backend)(SPELLED, True)]
    assert tokenizer.backend.token_to_id("<think>") in ours[2] and not {0, 1, 2} & set(ours[0][:-1] + ours[1][:-1])


def test_deepseeks_pre_tokenizer_is_refused(deepseek_tokenizer_dir):
    """Three regexes in a row: where none matches a character (" \u0380"), tokie's ids differ from HF's."""
    backend = load_text_tokenizer(deepseek_tokenizer_dir).backend
    assert refusal(json.loads(backend.to_str())) == "its pre-tokenizer splits with 3 regexes, not one"
    assert ExactEncoder(backend).fast is None


def test_a_tokenizer_the_fast_encoder_cannot_express_is_encoded_by_hf(tiny_tokenizer_dir, tmp_path, caplog):
    folder = tmp_path / "tok"
    shutil.copytree(tiny_tokenizer_dir, folder)
    config = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    config["normalizer"] = {"type": "Lowercase"}
    (folder / "tokenizer.json").write_text(json.dumps(config), encoding="utf-8")
    assert "normalizer" in refusal(config) and refusal({**config, "normalizer": None}) is None
    data = write_docs(tmp_path / "docs.jsonl", VARIED)
    assert "cannot express this tokenizer: its normalizer" in tokenize_as_megatron_does(data, folder, tmp_path, caplog)


def test_different_ids_on_the_first_batch_send_the_job_to_hf(tmp_path, caplog):
    """A BPE whose vocabulary holds a word its merges do not build ("abc": merges a+b and b+c only), with
    ignore_merges off: HF encodes "abc" as "ab" + "c", tokie as "abc". The job's first batch shows it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate(pre_tokenizers.ByteLevel.alphabet())}}
    vocab.update({word: len(vocab) + i for i, word in enumerate(("ab", "bc", "abc"))})
    tok = Tokenizer(models.BPE(vocab, [("a", "b"), ("b", "c")], ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    folder = tmp_path / "tok"
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(folder)
    data = write_docs(tmp_path / "docs.jsonl", ["abc xabc", "bc", ""] * 3)
    log = tokenize_as_megatron_does(data, folder, tmp_path, caplog)
    assert "gave other ids than HF for 3 of the first 9 texts" in log


# Planes 4-13 hold no assigned code point (all category Cn, as the regexes class them): a sample of them is enough.
UNASSIGNED_PLANES = range(0x40000, 0xE0000)


@pytest.mark.slow
@pytest.mark.parametrize("tokenizer", ["tiny", "large_bpe"])
def test_every_character_in_context_gets_hf_ids(request, tokenizer):
    """Every code point (planes 4-13 sampled) beside a space, a letter, a digit, punctuation and a newline (a
    minute or two a tokenizer): what tokie's pre-tokenizer classes otherwise than the regex (odd_characters) goes
    to HF, the rest matches."""
    backend = load_text_tokenizer(request.getfixturevalue(f"{tokenizer}_tokenizer_dir")).backend
    encoder, hf = ExactEncoder(backend), hf_ids(backend)
    characters = [chr(c) for c in range(sys.maxunicode + 1)
                  if not 0xD800 <= c < 0xE000 and (c not in UNASSIGNED_PLANES or c % 4096 == 0)]
    for context in (" {}", "a{}", "{}a", "1{}", "!{}", "\n{}"):
        texts = [context.format(c) for c in characters]
        for start in range(0, len(texts), 50_000):
            batch = texts[start:start + 50_000]
            assert encoder(batch, False) == hf(batch, False), context
            assert encoder.fast is not None


def test_without_tokie_hf_encodes(tiny_tokenizer_dir, tmp_path, caplog, monkeypatch):
    """Where tokie has no wheel (Linux aarch64) pyproject.toml leaves it out: tokenize says so and encodes with HF."""
    monkeypatch.setitem(sys.modules, "tokie", None)  # `import tokie` raises ImportError, as where it is not installed
    data = write_docs(tmp_path / "docs.jsonl", VARIED)
    assert "encoding with HF tokenizers: tokie is not installed" in tokenize_as_megatron_does(
        data, tiny_tokenizer_dir, tmp_path, caplog)
