"""tokenize cpt: Megatron-LM preprocess_data.py --append-eod output, read back with megatron-core."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmrunner.errors import ConfigError, StageError
from llmrunner.tokenize.__main__ import main
from llmrunner.tokenize.core import index_dtype, indexed_dataset, load_tokenizer, tokenize_cpt
from llmrunner.tokenize.settings import TokenizeCptSettings

DOCS = ["The quick brown fox.\nJumps over the lazy dog.", "", "def f(x):\n    return x * 2  # ünïcödé",
        "Another document, with numbers 12345."]


def write_docs(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t, "source": "t"}) + "\n" for t in texts), encoding="utf-8")
    return path


def megatron_reference(texts: list[str], tokenizer_dir: Path, prefix: Path) -> None:
    """Megatron-LM tools/preprocess_data.py's loop for json_keys=[text], --append-eod, one worker."""
    tok = load_tokenizer(tokenizer_dir)
    module = indexed_dataset()
    builder = module.IndexedDatasetBuilder(f"{prefix}_text_document.bin",
                                           dtype=module.DType.optimal_dtype(len(tok)))
    for text in texts:
        doc_ids, sentence_lens = [], []
        sentence_ids = tok(text)["input_ids"]
        if len(sentence_ids) > 0:
            doc_ids.extend(sentence_ids)
            sentence_lens.append(len(sentence_ids))
        if len(doc_ids) > 0:
            doc_ids.append(tok.eos_token_id)
            sentence_lens[-1] += 1
        builder.add_document(doc_ids, sentence_lens)
    builder.finalize(f"{prefix}_text_document.idx")


def test_cpt_is_byte_identical_to_megatron_preprocess_data(tiny_tokenizer_dir, tmp_path):
    data = write_docs(tmp_path / "docs.jsonl", DOCS)
    stats = tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "ours")
    megatron_reference(DOCS, tiny_tokenizer_dir, tmp_path / "ref")
    for ext in ("bin", "idx"):
        ours, ref = (tmp_path / f"{name}_text_document.{ext}" for name in ("ours", "ref"))
        assert ours.read_bytes() == ref.read_bytes()
    tok = load_tokenizer(tiny_tokenizer_dir)
    assert stats["documents"] == 4 and stats["empty"] == 1 and stats["dtype"] == "uint16"
    assert stats["tokens"] == sum(len(tok(t)["input_ids"]) + 1 for t in DOCS if t)
    assert json.loads((tmp_path / "ours.stats.json").read_text()) == stats


def test_cpt_reads_back_as_tokenizer_ids_plus_eos(tiny_tokenizer_dir, tmp_path):
    data = write_docs(tmp_path / "docs.jsonl", DOCS)
    tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "out")
    ds = indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))
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
    ds = indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))  # keep: items view its mmap
    ids = ds[0].tolist()
    tok = load_tokenizer(tiny_tokenizer_dir)
    assert ids[-1] == tok.eos_token_id and 0 not in ids[:-1] and 2 not in ids
    assert tok.decode(ids[:-1]) == "a <|im_end|> b <|endoftext|>"


def test_large_vocabulary_switches_to_int32(big_vocab_tokenizer_dir, tmp_path):
    data = write_docs(tmp_path / "docs.jsonl", ["w69999 w5 w65600", "w1"])
    stats = tokenize_cpt([data], big_vocab_tokenizer_dir, tmp_path / "out")
    ds = indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))
    assert stats["dtype"] == "int32" and ds[0].dtype == np.int32
    assert ds[0].tolist() == [70001, 7, 65602, 1] and ds[1].tolist() == [3, 1]
    assert index_dtype(load_tokenizer(big_vocab_tokenizer_dir)) is np.int32


def test_no_eod_and_a_raw_folder_of_files(tiny_tokenizer_dir, tmp_path):
    write_docs(tmp_path / "raw" / "b.jsonl", ["second"])
    write_docs(tmp_path / "raw" / "a.jsonl", ["first"])
    main(["cpt", "--input", str(tmp_path / "raw"), "--tokenizer", str(tiny_tokenizer_dir),
          "--out-prefix", str(tmp_path / "out"), "--settings", '{"append_eod": false, "threads": 1}'])
    tok = load_tokenizer(tiny_tokenizer_dir)
    ds = indexed_dataset().IndexedDataset(str(tmp_path / "out_text_document"))
    assert [s.tolist() for s in ds] == [tok("first")["input_ids"], tok("second")["input_ids"]]


def test_bad_input_names_file_and_line(tiny_tokenizer_dir, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(StageError, match=r"d.jsonl, line 2: expected 'text' to be a str, got no such key"):
        tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "out")
    with pytest.raises(StageError, match="does not exist"):
        tokenize_cpt([data], tmp_path / "no-model", tmp_path / "out")


def test_cpt_settings():
    assert TokenizeCptSettings.from_dict({"append_eod": True, "threads": 4}).threads == 4
    with pytest.raises(ConfigError, match="unknown key"):
        TokenizeCptSettings.from_dict({"append_eos": True})
    with pytest.raises(ConfigError, match="threads"):
        TokenizeCptSettings.from_dict({"threads": 0})
