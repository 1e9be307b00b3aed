"""Shared by the udatasets de-dup and shard tests: numbered words to build (near-)duplicate texts, the files of
one dataset's output, and a dataset run through the shard jobs of the map step."""
from __future__ import annotations

import json
from pathlib import Path

from llmrunner.udatasets.__main__ import main

OUTPUTS = ("{}.jsonl", "{}.rejects.jsonl", "{}.duplicates.jsonl", "{}.stats.json")
WORDS = [f"w{i}" for i in range(100)]


def words(start: int, count: int, extra: list[str] = ()) -> str:
    return " ".join(WORDS[start:start + count] + list(extra))


def run_shards(raw: Path, folder: Path, dataset: str, shards: int, settings: dict, kind: str = "cpt") -> list[Path]:
    files = [folder / ".shards" / f"{dataset}.{i}-of-{shards}.jsonl" for i in range(shards)]
    for i, path in enumerate(files):
        main(["shard", "--kind", kind, "--input", str(raw), "--dataset", dataset, "--shard", str(i),
              "--shards", str(shards), "--out", str(path), "--settings", json.dumps(settings)])
    return files
