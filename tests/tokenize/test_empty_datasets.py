"""A dataset that comes out of tokenize without a token (CPT) or a conversation (SFT) stops the job that writes
the whole dataset (the unsharded job, or the merge), naming the dataset and the counts: training would fail
much later on the empty files. A shard may be empty."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrunner.errors import StageError
from llmrunner.tokenize.__main__ import main


def write_lines(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def tokenize(kind: str, data: Path, tokenizer: Path, prefix: Path, *extra: str, settings: dict | None = None) -> None:
    main([kind, "--input", str(data), "--tokenizer", str(tokenizer), "--out-prefix", str(prefix),
          "--settings", json.dumps({"threads": 1, **(settings or {})}), *extra])


def tokenize_in_shards(kind: str, data: Path, tokenizer: Path, prefix: Path, shards: int, settings: dict | None = None
                       ) -> None:
    """The shard jobs (which pass, empty or not), then the merge job."""
    parts = [prefix.parent / ".shards" / f"{prefix.name}.{k}-of-{shards}" for k in range(shards)]
    for k, part in enumerate(parts):
        tokenize(kind, data, tokenizer, part, "--shard", str(k), "--shards", str(shards), settings=settings)
    tokenize(kind, data, tokenizer, prefix, "--merge", *map(str, parts), settings=settings)


@pytest.mark.parametrize("shards", [1, 3])
def test_cpt_with_no_document_stops(tiny_tokenizer_dir, tmp_path, shards):
    raw = tmp_path / "raw" / "web"
    raw.mkdir(parents=True)
    (raw / "a.jsonl").write_bytes(b"")  # a 0-byte source, udatasets off
    (raw / "b.jsonl").write_text("\n")
    prefix = tmp_path / "tokenized" / "web"
    with pytest.raises(StageError, match=r"dataset 'web' has no token to train on: no document \(the files are "
                                         r"empty or hold only blank lines\) in .*a.jsonl, .*b.jsonl; fix the data"):
        if shards == 1:
            tokenize("cpt", raw, tiny_tokenizer_dir, prefix)
        else:
            tokenize_in_shards("cpt", raw, tiny_tokenizer_dir, prefix, shards)
    # written first, for a look: the stats say what was read
    assert json.loads(Path(f"{prefix}.stats.json").read_text())["documents"] == 0


def test_cpt_with_only_empty_documents_stops(tiny_tokenizer_dir, tmp_path):
    data = write_lines(tmp_path / "web.jsonl", [{"text": ""}, {"text": ""}])
    with pytest.raises(StageError, match="dataset 'web' has no token to train on: 2 documents, all empty, in"):
        tokenize_in_shards("cpt", data, tiny_tokenizer_dir, tmp_path / "tokenized" / "web", 2)


def test_cpt_empty_shards_of_a_dataset_with_documents_pass(tiny_tokenizer_dir, tmp_path):
    data = write_lines(tmp_path / "web.jsonl", [{"text": "one document"}])
    tokenize_in_shards("cpt", data, tiny_tokenizer_dir, tmp_path / "tokenized" / "web", 4)  # 3 shards empty
    assert json.loads((tmp_path / "tokenized" / "web.stats.json").read_text())["documents"] == 1


def chat(user: str, assistant: str) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


@pytest.mark.parametrize("shards", [1, 2])
def test_sft_with_every_conversation_dropped_stops(tiny_tokenizer_dir, tmp_path, shards):
    long = " ".join(["word"] * 50)
    data = write_lines(tmp_path / "chats.jsonl", [chat("hi", long), chat(long, "ok"), chat(long, long)])
    prefix = tmp_path / "tokenized" / "chats"
    settings = {"max_tokens": 20, "overlong": "drop"}
    with pytest.raises(StageError, match=r"dataset 'chats' has no conversation left: 3 read from .*chats.jsonl, all "
                                         r"dropped \(3 longer than max_tokens \(20\) with overlong: drop\); raise "
                                         r"max_tokens or set overlong: truncate"):
        if shards == 1:
            tokenize("sft", data, tiny_tokenizer_dir, prefix, settings=settings)
        else:
            tokenize_in_shards("sft", data, tiny_tokenizer_dir, prefix, shards, settings=settings)
    truncated = write_lines(tmp_path / "long_questions.jsonl", [chat(long, "ok"), chat(long, long)])
    with pytest.raises(StageError, match=r"2 read from .* all dropped \(2 no assistant token within the first "
                                         r"max_tokens \(20\) tokens\)"):
        tokenize("sft", truncated, tiny_tokenizer_dir, prefix, settings={"max_tokens": 20, "overlong": "truncate"})


def test_sft_with_no_conversation_stops(tiny_tokenizer_dir, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("")
    with pytest.raises(StageError, match="dataset 'chats' has no conversation: none read from .*chats.jsonl"):
        tokenize("sft", data, tiny_tokenizer_dir, tmp_path / "tokenized" / "chats")
