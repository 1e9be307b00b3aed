"""The indexed-dataset writer (llmrunner.indexed) against megatron-core's IndexedDatasetBuilder, and
sharded tokenizing: shards written apart and merged give the bytes of one run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmrunner.errors import StageError
from llmrunner.indexed import IndexedDatasetWriter, merge_datasets, read_index
from llmrunner.tokenize.__main__ import main
from llmrunner.tokenize.core import (
    CPT_SUMMED,
    Shard,
    merge_shards,
    tokenize_cpt,
)
from llmrunner.tokenize.sft import SFT_SUMMED, tokenize_sft
from llmrunner.tokenizer import load_text_tokenizer, load_tokenizer
from tests.tokenize.reference_writer import megatron_indexed_dataset, write_reference
from tests.tokenize.samples import EDGY, MULTI_TURN, VARIED, assert_identical, chat, write_chats, write_docs


def random_documents(vocab: int, count: int, seed: int) -> list[list[int]]:
    """Documents of 0..300 ids below `vocab`, about one in eight empty."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, rng.integers(1, 300)).tolist() if rng.random() > 0.125 else []
            for _ in range(count)]


def megatron_write(prefix: Path, dtype, batches: list[list[list[int]]]) -> None:
    """What preprocess_data.py does per document: add_document(ids, [len(ids)] or [] when empty)."""
    builder = megatron_indexed_dataset().IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
    for docs in batches:
        for ids in docs:
            builder.add_document(ids, [len(ids)] if ids else [])
    builder.finalize(f"{prefix}.idx")


def same_files(a: Path, b: Path) -> bool:
    return all(Path(f"{a}.{e}").read_bytes() == Path(f"{b}.{e}").read_bytes() for e in ("bin", "idx"))


@pytest.mark.parametrize("dtype, vocab", [(np.uint16, 8_000), (np.int32, 129_280), (np.uint8, 2)],
                         ids=["uint16 (small vocabulary)", "int32 (large vocabulary)", "uint8 (loss mask)"])
def test_writer_is_byte_identical_to_megatron_builder_and_readable_by_it(tmp_path, dtype, vocab):
    batches = [random_documents(vocab, n, seed) for seed, n in enumerate([0, 37, 1, 200])]
    with IndexedDatasetWriter(tmp_path / "ours", dtype) as writer:
        for docs in batches:
            writer.add_documents(docs)
    megatron_write(tmp_path / "ref", dtype, batches)
    assert same_files(tmp_path / "ours", tmp_path / "ref")
    dataset = megatron_indexed_dataset().IndexedDataset(str(tmp_path / "ours"))
    docs = [d for batch in batches for d in batch]
    assert [s.tolist() for s in dataset] == [d for d in docs if d] and dataset[0].dtype == dtype
    assert len(dataset.index.document_indices) == len(docs) + 1


def test_a_document_written_in_pieces_is_one_sequence(tmp_path):
    """Pieces of one document (its ids as they are encoded), within a call and across calls, with empty
    pieces and an empty document among them: the bytes of megatron-core's builder given whole documents."""
    docs = random_documents(8_000, 30, seed=7)
    pieces, ends = [], []
    for doc in docs:  # each document cut in up to 4 pieces, some empty
        cuts = sorted({0, len(doc), *np.random.default_rng(len(doc)).integers(0, len(doc) + 1, 3).tolist()})
        pieces += [doc[a:b] for a, b in zip(cuts, cuts[1:])] or [[]]
        ends += [False] * (len(pieces) - len(ends) - 1) + [True]
    with IndexedDatasetWriter(tmp_path / "ours", np.uint16) as writer:
        for start in range(0, len(pieces), 7):  # batches that end inside documents
            writer.add_documents(pieces[start:start + 7], ends[start:start + 7])
    megatron_write(tmp_path / "ref", np.uint16, [docs])
    assert same_files(tmp_path / "ours", tmp_path / "ref")
    with pytest.raises(ValueError, match="final piece was never added"):
        with IndexedDatasetWriter(tmp_path / "open", np.uint16) as writer:
            writer.add_documents([[1, 2]], [False])


def test_merge_is_megatron_add_index_and_equals_writing_at_once(tmp_path):
    parts = [random_documents(70_000, n, seed) for seed, n in enumerate([50, 0, 13])]
    for i, docs in enumerate(parts):
        with IndexedDatasetWriter(tmp_path / f"part{i}", np.int32) as writer:
            writer.add_documents(docs)
    merge_datasets([tmp_path / f"part{i}" for i in range(3)], tmp_path / "merged", np.int32)
    with IndexedDatasetWriter(tmp_path / "whole", np.int32) as writer:
        writer.add_documents([d for docs in parts for d in docs])
    builder = megatron_indexed_dataset().IndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=np.int32)
    for i in range(3):
        builder.add_index(str(tmp_path / f"part{i}"))
    builder.finalize(str(tmp_path / "ref.idx"))
    assert same_files(tmp_path / "merged", tmp_path / "whole") and same_files(tmp_path / "merged", tmp_path / "ref")


def test_a_damaged_index_or_another_dtype_is_a_clear_error(tmp_path):
    with IndexedDatasetWriter(tmp_path / "a", np.uint16) as writer:
        writer.add_documents([[1, 2, 3]])
    with pytest.raises(StageError, match="holds uint16 ids, not int32"):
        merge_datasets([tmp_path / "a"], tmp_path / "out", np.int32)
    (tmp_path / "bad.idx").write_bytes(b"not an index")
    with pytest.raises(StageError, match=r"bad.idx is not a Megatron indexed-dataset index"):
        read_index(tmp_path / "bad")
    (tmp_path / "cut.idx").write_bytes((tmp_path / "a.idx").read_bytes()[:-4])
    with pytest.raises(StageError, match="truncated or damaged"):
        read_index(tmp_path / "cut")


def cpt_inputs(folder: Path) -> list[Path]:
    """Two files, with a blank line and an empty document: 3 * len(VARIED) + 1 documents on one line more."""
    first = write_docs(folder / "a.jsonl", VARIED)
    second = write_docs(folder / "b.jsonl", VARIED * 2)
    second.write_text(second.read_text() + "\n" + json.dumps({"text": ""}) + "\n")
    return [first, second]


@pytest.mark.parametrize("shards", [2, 3, 100], ids=["2 shards", "3 shards", "100 shards, most empty"])
def test_sharded_cpt_equals_unsharded(tiny_tokenizer_dir, tmp_path, shards):
    inputs = cpt_inputs(tmp_path / "raw")
    whole = tokenize_cpt(inputs, tiny_tokenizer_dir, tmp_path / "whole")
    prefixes = [tmp_path / ".shards" / f"d.{k}-of-{shards}" for k in range(shards)]
    parts = [tokenize_cpt(inputs, tiny_tokenizer_dir, prefix, shard=Shard(k, shards))
             for k, prefix in enumerate(prefixes)]
    assert sum(p["documents"] == 0 for p in parts) == max(0, shards - whole["documents"])  # empty shards
    merged = merge_shards(prefixes, tmp_path / "merged", ("text_document",), CPT_SUMMED)
    assert_identical(tmp_path / "merged", tmp_path / "whole")
    assert merged == whole
    assert (tmp_path / "merged.stats.json").read_bytes() == (tmp_path / "whole.stats.json").read_bytes()
    assert whole["documents"] == 3 * len(VARIED) + 1


def test_sharded_sft_equals_unsharded_with_truncations_and_drops(tiny_tokenizer_dir, tmp_path):
    long_question = chat(("user", "word " * 60), ("assistant", "Hello"))
    conversations = [MULTI_TURN, EDGY, long_question, chat(("user", "Hi"), ("assistant", "word " * 60))] * 3
    data = write_chats(tmp_path / "c.jsonl", conversations)
    whole = tokenize_sft([data], tiny_tokenizer_dir, tmp_path / "whole", max_tokens=40)
    assert whole["truncated"] and whole["dropped_by_reason"] == {"no_target": 3}
    prefixes = [tmp_path / f"s{k}" for k in range(5)]
    for k, prefix in enumerate(prefixes):
        tokenize_sft([data], tiny_tokenizer_dir, prefix, max_tokens=40, shard=Shard(k, 5))
    merged = merge_shards(prefixes, tmp_path / "merged", ("text_document", "loss_mask_document"), SFT_SUMMED)
    assert merged == whole
    for name in ("text_document", "loss_mask_document"):
        assert same_files(tmp_path / f"merged_{name}", tmp_path / f"whole_{name}")


def test_cli_shard_and_merge(tiny_tokenizer_dir, tmp_path):
    """What the Snakemake shard and merge jobs run."""
    inputs = cpt_inputs(tmp_path / "raw")
    common = ["cpt", "--input", str(tmp_path / "raw"), "--tokenizer", str(tiny_tokenizer_dir), "--threads", "1"]
    for k in range(3):
        main([*common, "--out-prefix", str(tmp_path / f"p{k}"), "--shard", str(k), "--shards", "3"])
    main([*common, "--out-prefix", str(tmp_path / "merged"), "--merge", *(str(tmp_path / f"p{k}") for k in range(3))])
    tokenize_cpt(inputs, tiny_tokenizer_dir, tmp_path / "whole")
    assert_identical(tmp_path / "merged", tmp_path / "whole")
    with pytest.raises(StageError, match="shard 3 of 3 does not exist"):
        main([*common, "--out-prefix", str(tmp_path / "x"), "--shard", "3", "--shards", "3"])
    with pytest.raises(StageError, match="stats file .*p9.stats.json does not exist"):
        main([*common, "--out-prefix", str(tmp_path / "y"), "--merge", str(tmp_path / "p0"), str(tmp_path / "p9")])


def test_shards_of_different_settings_do_not_merge(tiny_tokenizer_dir, tmp_path):
    data = write_docs(tmp_path / "d.jsonl", VARIED)
    tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "s0", shard=Shard(0, 2))
    tokenize_cpt([data], tiny_tokenizer_dir, tmp_path / "s1", append_eod=False, shard=Shard(1, 2))
    with pytest.raises(StageError, match="disagree on 'append_eod'"):
        merge_shards([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m", ("text_document",), CPT_SUMMED)


def test_tokenizer_without_a_plain_class_loads_through_transformers(tiny_tokenizer_dir, tmp_path, monkeypatch):
    """The `tokenizers`-only fast path and the transformers path give the same tokenizer; the
    transformers path (here: no tokenizer_class) is still byte-identical to Megatron's."""
    folder = tmp_path / "tok"
    shutil.copytree(tiny_tokenizer_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["tokenizer_class"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    from llmrunner import tokenizer

    loaded_by_transformers = []

    def recorded(path):
        loaded_by_transformers.append(path)
        return load_tokenizer(path)

    monkeypatch.setattr(tokenizer, "load_tokenizer", recorded)
    fast, slow = load_text_tokenizer(tiny_tokenizer_dir), load_text_tokenizer(folder)
    assert loaded_by_transformers == [folder]  # only the folder without a plain tokenizer_class
    assert (fast.eos_id, fast.vocab_size) == (slow.eos_id, slow.vocab_size)
    assert [e.ids for e in fast.backend.encode_batch(VARIED)] == [e.ids for e in slow.backend.encode_batch(VARIED)]
    data = write_docs(tmp_path / "d.jsonl", VARIED)
    tokenize_cpt([data], folder, tmp_path / "ours")
    write_reference(data, folder, tmp_path / "ref")
    assert_identical(tmp_path / "ours", tmp_path / "ref")
