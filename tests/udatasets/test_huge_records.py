"""Huge records: a 50 MB document goes through the real map and gather jobs in bounded memory with the output it
would have at any size; a `.json` array reads a record of many read chunks as json.load does; a long record is
encoded in pieces to the bytes json.dumps gives."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmrunner.udatasets import json_stream, shard
from llmrunner.udatasets.clean import Cleaning
from llmrunner.udatasets.json_stream import iter_json_array
from tests.files import read_jsonl
from tests.paths import REPO, demo_cpt_texts

pytestmark = pytest.mark.slow  # 50 MB records: `make test-fast` leaves them out

DOCUMENT_BYTES = 50 << 20
PEAK_RSS_BOUND = 1 << 30
SETTINGS = json.dumps({"near_dedup": True})
# Runs a job as its own child and prints that child's peak RSS: RUSAGE_CHILDREN of the test process itself would
# also count every process an earlier test started.
MEASURED = ("import resource, subprocess, sys\nsubprocess.run(sys.argv[1:], check=True)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)")


def demo_texts() -> list[str]:
    """The demo CPT documents, cleaned (so cleaning leaves a text joined from them unchanged), without the
    characters beyond U+FFFF (one emoji): Python would hold the whole joined text at 4 bytes a character, not 2."""
    return [Cleaning().text("".join(c for c in text if ord(c) <= 0xFFFF)) for text in demo_cpt_texts()]


def big_document(size: int) -> str:
    """About `size` bytes of UTF-8: demo documents, numbered, one after another (cleaning changes nothing)."""
    texts, parts, total = demo_texts(), [], 0
    while total < size:
        parts.append(f"{texts[len(parts) % len(texts)]} ({len(parts)})")
        total += len(parts[-1].encode("utf-8")) + 2
    return "\n\n".join(parts)


def run_measured(*args: str) -> int:
    """Run `python -m llmrunner.udatasets ARGS` to completion; its peak RSS in bytes."""
    done = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-m", "llmrunner.udatasets", *args],
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return int(done.stdout.split()[-1])


def test_a_50_mb_document_takes_under_1_gib_with_the_output_of_any_size(tmp_path):
    """Map job then gather job, near de-dup on: the 50 MB document is kept unchanged, its copy with one word in
    500 changed is its near duplicate, and the small records around them are handled as always."""
    big = big_document(DOCUMENT_BYTES)
    words = big.split(" ")
    near = " ".join(f"changed{i}" if i % 500 == 250 else word for i, word in enumerate(words))
    small = ["A small document about tokenizers and their vocabularies, long enough to shingle.",
             "Another small one, about evaluation harnesses and held-out bits per byte."]
    raw = tmp_path / "raw"
    raw.mkdir()
    records = [{"text": small[0]}, {"text": big, "id": "big"}, {"text": small[0]}, {"text": near, "id": "near"},
               {"text": small[1]}]
    with open(raw / "web.jsonl", "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    del words, near, records
    shard_file, data = tmp_path / "processed/.shards/web.0-of-1.jsonl", tmp_path / "processed/web.jsonl"

    peaks = {"shard": run_measured("shard", "--kind", "cpt", "--input", str(raw), "--dataset", "web", "--shard", "0",
                                   "--shards", "1", "--out", str(shard_file), "--settings", SETTINGS),
             "gather": run_measured("gather", "--kind", "cpt", "--shard-files", str(shard_file), "--out", str(data),
                                    "--settings", SETTINGS)}

    assert all(peak < PEAK_RSS_BOUND for peak in peaks.values()), {k: f"{v / 2**20:.0f} MiB" for k, v in peaks.items()}
    assert read_jsonl(data) == [{"text": small[0]}, {"text": big, "id": "big"}, {"text": small[1]}]
    assert read_jsonl(tmp_path / "processed/web.duplicates.jsonl") == [
        {"file": "web.jsonl", "line": 3, "kind": "exact", "duplicate_of": {"dataset": "web", "file": "web.jsonl",
                                                                           "line": 1}},
        {"file": "web.jsonl", "line": 4, "kind": "near", "duplicate_of": {"dataset": "web", "file": "web.jsonl",
                                                                          "line": 2}}]
    stats = json.loads((tmp_path / "processed/web.stats.json").read_text())
    assert (stats["input"], stats["kept"], stats["duplicates"], stats["cleaned"]) == (5, 3, {"exact": 1, "near": 1}, 0)
    assert stats["lengths"]["chars"]["max"] == len(big)


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_json_record_of_many_read_chunks_reads_as_json_load_reads_it(tmp_path, wrapped):
    """Records of 1 to 12 read chunks, with 2-, 3- and 4-byte characters and escapes cut by the chunk ends, and a
    number at the very end of the file."""
    piece = 'caf\u00e9 \u65e5\u672c \U0001F609 "quoted" back\\slash\n\ttab '
    records = [{"text": "small"}, {"text": piece * (json_stream.CHUNK_BYTES // 8), "id": 1}, [1, 2.5, None],
               {"text": piece * (json_stream.CHUNK_BYTES // 3), "nested": {"list": [piece] * 3}}, 12345]
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"rows": records} if wrapped else records, ensure_ascii=False), encoding="utf-8")
    read = list(iter_json_array(path))
    assert [index for index, _, _ in read] == [1, 2, 3, 4, 5]
    assert [value for _, _, value in read] == records
    assert [json.loads(raw) for _, raw, _ in read] == records
    assert os.path.getsize(path) > 10 * json_stream.CHUNK_BYTES


def test_a_long_record_is_encoded_to_the_bytes_json_dumps_gives(monkeypatch):
    """Records with more content than shard.PIECE_CHARS are encoded a chunk and a piece at a time: same bytes, same
    rejects."""
    monkeypatch.setattr(shard, "PIECE_CHARS", 7)
    records = [{"text": 'caf\u00e9 "\u65e5\u672c" \U0001F609\n\ttab\\ \x00 ' * 3, "score": 0.1, "n": 12, "ok": True,
                "tags": ["a", None], "meta": {"deep": [1.5e300, -0.0]}},
               {"messages": [{"role": "user", "content": "question " * 3}, {"role": "assistant", "content": "yes"}]}]
    for record in records:
        assert shard.encode_record(record) == (json.dumps(record, ensure_ascii=False).encode("utf-8"), None)
    assert shard.encode_record({"text": "a lone surrogate \ud800 here"}) == (None, "invalid_unicode")
    assert shard.encode_record({"text": "long enough text", "score": float("nan")}) == (None, "not_json_serialisable")
