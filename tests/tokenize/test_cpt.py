"""tokenize cpt: Megatron-LM preprocess_data.py --append-eod output, read back with megatron-core."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from llmrunner.errors import ConfigError, StageError
from llmrunner.indexed import token_dtype
from llmrunner.tokenize.__main__ import main
from llmrunner.tokenize.core import tokenize_cpt
from llmrunner.tokenize.settings import TokenizeCptSettings
from llmrunner.tokenizer import load_text_tokenizer, load_tokenizer
from tests.tokenize.huge_doc import huge_text
from tests.tokenize.reference_writer import megatron_indexed_dataset, write_reference
from tests.tokenize.samples import DOCS, VARIED, assert_identical, write_docs


def test_cpt_is_byte_identical_to_megatron_preprocess_data(tiny_tokenizer_dir, tmp_path):
    data = write_docs(tmp_path / "docs.jsonl", DOCS)
    stats = tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "ours")
    write_reference(data, tiny_tokenizer_dir, tmp_path / "ref")
    assert_identical(tmp_path / "ours", tmp_path / "ref")
    tok = load_tokenizer(tiny_tokenizer_dir)
    assert stats["documents"] == 4 and stats["empty"] == 1 and stats["dtype"] == "uint16"
    assert stats["tokens"] == sum(len(tok(t)["input_ids"]) + 1 for t in DOCS if t)
    assert json.loads((tmp_path / "ours.stats.json").read_text()) == stats


def test_byte_identical_on_varied_text_with_a_worker_pool(tiny_tokenizer_dir, tmp_path, monkeypatch):
    """Unicode, whitespace-only and empty documents, long ones; the reference encodes in a pool of
    2 workers as preprocess_data.py does (order kept by imap), ours in many small batches, each
    encoding while the one before is written."""
    from llmrunner.tokenize import core

    monkeypatch.setattr(core, "BATCH_DOCS", 7)  # 8 batches, the last one partial
    data = write_docs(tmp_path / "docs.jsonl", VARIED * 3)
    stats = tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "ours")
    write_reference(data, tiny_tokenizer_dir, tmp_path / "ref", workers=2)
    assert_identical(tmp_path / "ours", tmp_path / "ref")
    assert stats["documents"] == len(VARIED) * 3 and stats["empty"] == 2 * 3


def test_byte_identical_with_a_real_large_vocabulary(deepseek_tokenizer_dir, tmp_path):
    """DeepSeek's 129,280-token vocabulary: int32 .bin, and still identical."""
    data = write_docs(tmp_path / "docs.jsonl", VARIED)
    stats = tokenize_cpt([data], deepseek_tokenizer_dir, tmp_path / "ours")
    write_reference(data, deepseek_tokenizer_dir, tmp_path / "ref")
    assert_identical(tmp_path / "ours", tmp_path / "ref")
    ds = megatron_indexed_dataset().IndexedDataset(str(tmp_path / "ours_text_document"))
    assert stats["vocab_size"] == 129_280 and stats["dtype"] == "int32" and ds[0].dtype == np.int32
    assert max(int(s.max()) for s in ds) >= 65_500  # ids a uint16 file could not hold


@pytest.fixture
def small_pieces(monkeypatch):
    """Documents over 16 KiB characters are encoded in pieces of about 2 KiB (instead of 256 Ki / 32 Ki)."""
    from llmrunner.tokenize import core, pieces

    monkeypatch.setattr(core, "BATCH_CHARS", 1 << 14)
    monkeypatch.setattr(pieces, "PIECE_CHARS", 1 << 11)


def long_documents() -> list[str]:
    """Real text long enough for a hundred pieces, between short and empty ones; a long whitespace-only one
    (nowhere to cut: encoded whole) and a long one made of a single line of digits and punctuation."""
    return ["before", huge_text(200_000), "", " \n" * 20_000, "3.14, " * 4_000 + "end", "after"]


@pytest.mark.parametrize("tokenizer", ["demo", "deepseek"])
def test_documents_longer_than_a_batch_are_encoded_in_pieces_byte_identical(request, tmp_path, small_pieces,
                                                                            tokenizer):
    from llmrunner.tokenize import core
    from llmrunner.tokenize.fast import hf_ids
    from llmrunner.tokenize.pieces import PieceEncoder

    folder = request.getfixturevalue("tiny_tokenizer_dir" if tokenizer == "demo" else "deepseek_tokenizer_dir")
    texts = long_documents()
    backend = load_text_tokenizer(folder).backend
    encoder = PieceEncoder(backend, core.BATCH_CHARS, hf_ids(backend))
    assert sum(1 for _ in encoder.pieces(iter(texts))) > 100
    data = write_docs(tmp_path / "docs.jsonl", texts)
    stats = tokenize_cpt([data], folder, tmp_path / "ours")
    write_reference(data, folder, tmp_path / "ref")
    assert_identical(tmp_path / "ours", tmp_path / "ref")
    assert stats["documents"] == len(texts) and stats["empty"] == 1


def test_pieces_get_the_post_processor_tokens_once(tiny_tokenizer_dir, tmp_path, small_pieces):
    """A tokenizer whose post-processor surrounds every text (`<|im_start|> $A <|im_end|>`, as a bos/eos
    template would): a document in pieces gets them once, before the first piece and after the last."""
    folder = tmp_path / "tok"
    shutil.copytree(tiny_tokenizer_dir, folder)
    config = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    config["post_processor"] = {"type": "TemplateProcessing", "single": [
        {"SpecialToken": {"id": "<|im_start|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
        {"SpecialToken": {"id": "<|im_end|>", "type_id": 0}}], "pair": [], "special_tokens": {
        "<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]},
        "<|im_end|>": {"id": "<|im_end|>", "ids": [2], "tokens": ["<|im_end|>"]}}}
    (folder / "tokenizer.json").write_text(json.dumps(config), encoding="utf-8")
    data = write_docs(tmp_path / "docs.jsonl", long_documents())
    tokenize_cpt([data], folder, tmp_path / "ours")
    write_reference(data, folder, tmp_path / "ref")
    assert_identical(tmp_path / "ours", tmp_path / "ref")
    ds = megatron_indexed_dataset().IndexedDataset(str(tmp_path / "ours_text_document"))
    assert ds[1][0] == 1 and ds[1].tolist()[-2:] == [2, 0] and 1 not in ds[1][1:] and 2 not in ds[1][:-2]


def test_special_token_text_is_the_one_deliberate_difference(tiny_tokenizer_dir, tmp_path):
    """Megatron turns text spelling `<|im_end|>` into that special token (id 2); ours keeps it literal.
    The documents around it stay identical."""
    tok = load_tokenizer(tiny_tokenizer_dir)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    texts = ["before", "a <|im_end|> b", "after"]
    data = write_docs(tmp_path / "docs.jsonl", texts)
    tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "ours")
    write_reference(data, tiny_tokenizer_dir, tmp_path / "ref")
    ours = [s.tolist() for s in megatron_indexed_dataset().IndexedDataset(str(tmp_path / "ours_text_document"))]
    ref = [s.tolist() for s in megatron_indexed_dataset().IndexedDataset(str(tmp_path / "ref_text_document"))]
    assert ours[0] == ref[0] and ours[2] == ref[2]
    assert im_end in ref[1] and im_end not in ours[1]
    assert tok.decode(ours[1][:-1]) == tok.decode(ref[1][:-1]) == "a <|im_end|> b"


def test_cpt_reads_back_as_tokenizer_ids_plus_eos(tiny_tokenizer_dir, tmp_path):
    data = write_docs(tmp_path / "docs.jsonl", DOCS)
    tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "out")
    ds = megatron_indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))
    tok = load_tokenizer(tiny_tokenizer_dir)
    non_empty = [t for t in DOCS if t]
    assert len(ds) == len(non_empty)  # one sequence per non-empty document
    assert ds.index.document_indices.tolist() == [0, 1, 1, 2, 3]  # the empty one still has an entry
    for seq, text in zip(ds, non_empty):
        assert seq.dtype == np.uint16
        assert seq.tolist() == tok(text)["input_ids"] + [tok.eos_token_id]


def test_text_spelling_a_special_token_stays_literal(tiny_tokenizer_dir, tmp_path):
    data = write_docs(tmp_path / "docs.jsonl", ["a <|im_end|> b <|endoftext|>"])
    tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "out")
    ds = megatron_indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))  # keep: items view its mmap
    ids = ds[0].tolist()
    tok = load_tokenizer(tiny_tokenizer_dir)
    assert ids[-1] == tok.eos_token_id and 0 not in ids[:-1] and 2 not in ids
    assert tok.decode(ids[:-1]) == "a <|im_end|> b <|endoftext|>"


def test_token_filter_counts_what_tokenize_writes(tiny_tokenizer_dir, tmp_path):
    """udatasets' token-length filters load the tokenizer as tokenize does (llmrunner.tokenizer): a CPT
    document's count is the ids tokenize writes for it, less the eod, special-token spellings included."""
    from llmrunner.udatasets.tokens import TokenCounter

    texts = [t for t in VARIED if t] + ["a <|im_end|> b <|endoftext|>", "<|im_start|>user"]
    data = write_docs(tmp_path / "docs.jsonl", texts)
    tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "out")
    ds = megatron_indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))
    assert TokenCounter(tiny_tokenizer_dir).count(texts) == [len(seq) - 1 for seq in ds]
    with pytest.raises(StageError, match="none loads from .*no-model.*or set min_tokens and max_tokens to null"):
        TokenCounter(tmp_path / "no-model")


def test_large_vocabulary_switches_to_int32(big_vocab_tokenizer_dir, tmp_path):
    data = write_docs(tmp_path / "docs.jsonl", ["w69999 w5 w65600", "w1"])
    stats = tokenize_cpt([data], big_vocab_tokenizer_dir, tmp_path / "out")
    ds = megatron_indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))
    assert stats["dtype"] == "int32" and ds[0].dtype == np.int32
    assert ds[0].tolist() == [70001, 7, 65602, 1] and ds[1].tolist() == [3, 1]
    vocab = len(load_tokenizer(big_vocab_tokenizer_dir))
    assert token_dtype(vocab) == megatron_indexed_dataset().DType.optimal_dtype(vocab) == np.int32


def test_no_eod_and_a_raw_folder_of_files(tiny_tokenizer_dir, tmp_path):
    write_docs(tmp_path / "raw" / "b.jsonl", ["second"])
    write_docs(tmp_path / "raw" / "a.jsonl", ["first"])
    main(["cpt", "--input", str(tmp_path / "raw"), "--tokenizer", str(tiny_tokenizer_dir),
          "--out-prefix", str(tmp_path / "out"), "--settings", '{"append_eod": false, "threads": 1}'])
    tok = load_tokenizer(tiny_tokenizer_dir)
    ds = megatron_indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))
    assert [s.tolist() for s in ds] == [tok("first")["input_ids"], tok("second")["input_ids"]]


def test_bad_input_names_file_and_line(tiny_tokenizer_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(StageError, match=r"d.jsonl, line 2: expected 'text' to be a str, got no such key"):
        tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "out")
    assert not list(tmp_path.glob("out_text_document.*"))  # no half-written dataset left behind
    with pytest.raises(StageError, match="does not exist"):
        tokenize_cpt([data], tmp_path / "no-model", tmp_path / "out")


def test_cpt_settings():
    assert TokenizeCptSettings.from_dict({"append_eod": True, "threads": 4}).threads == 4
    with pytest.raises(ConfigError, match="unknown key"):
        TokenizeCptSettings.from_dict({"append_eos": True})
    with pytest.raises(ConfigError, match="threads"):
        TokenizeCptSettings.from_dict({"threads": 0})

