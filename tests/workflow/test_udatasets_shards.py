"""udatasets through real Snakemake: scatter/gather over several map jobs per dataset gives the same files,
byte for byte, as one map job (an empty shard among them); de-dup reaches across the datasets of a kind;
a token-length filter makes the base model an input of the step, and only then."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.demo import planned_jobs, snakemake
from tests.paths import REPO, write_yaml

pytestmark = pytest.mark.workflow

EXP = "shards"
SETTINGS = {"min_chars": 10, "near_dedup": True, "near_threshold": 0.7, "near_shingle_words": 2, "threads": 2}


def sentence(start: int, count: int = 12) -> str:
    return " ".join(f"word{i}" for i in range(start, start + count))


def write_lines(path: Path, records: list[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in records), encoding="utf-8")


def make_workdir(workdir: Path, shards: int, **settings) -> Path:
    """A project with one experiment: two CPT datasets (the second holds fewer records than shards, and
    duplicates of the first) and one SFT dataset; only the settings of udatasets differ between calls."""
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "resources").symlink_to(REPO / "resources")
    shutil.copytree(workdir / "config/experiments/demo", workdir / f"config/experiments/{EXP}")
    shutil.rmtree(workdir / "config/experiments/demo")
    web = [{"text": sentence(i * 5)} for i in range(9)]
    web += ["\n", '{"text": "broken\n', {"text": "short"}, {"text": sentence(10).upper()}, {"text": sentence(0)}]
    write_lines(workdir / "sources/web/a.jsonl", web[:8])
    write_lines(workdir / "sources/web/b.jsonl", web[8:])
    write_lines(workdir / "sources/books.jsonl", [{"text": sentence(20)}, {"text": sentence(100)}])
    write_lines(workdir / "sources/chat.jsonl", [
        {"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": sentence(i)}]}
        for i in (0, 40, 0, 80)])
    pipeline_file = workdir / f"config/experiments/{EXP}/pipeline.yaml"
    pipeline = yaml.safe_load(pipeline_file.read_text())
    pipeline["data"] = {
        "cpt": {"web": {"sources": ["sources/web/*.jsonl"], "adapter": "text"},
                "books": {"sources": ["sources/books.jsonl"], "adapter": "text"}},
        "sft": {"chat": {"sources": ["sources/chat.jsonl"], "adapter": "messages"}}}
    write_yaml(pipeline_file, pipeline)
    write_yaml(workdir / f"config/experiments/{EXP}/steps/1.udatasets.yaml",
               {**SETTINGS, "shards": shards, **settings})
    return workdir


def processed(workdir: Path) -> dict[str, bytes]:
    folder = workdir / f"datapool/experiments/{EXP}/data/processed"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[int, Path]:
    """The udatasets target run with 3 shards per dataset and with 1."""
    result = {}
    for shards in (3, 1):
        workdir = make_workdir(tmp_path_factory.mktemp(f"shards{shards}"), shards)
        snakemake(workdir, "--cores", "2", "udatasets", "--config", f"experiments=[{EXP}]")
        result[shards] = workdir
    return result


def test_sharded_run_equals_one_shard_byte_for_byte(runs):
    three, one = processed(runs[3]), processed(runs[1])
    names = {f"{kind}/{d}{suffix}" for kind, d in (("cpt", "web"), ("cpt", "books"), ("sft", "chat"))
             for suffix in (".jsonl", ".rejects.jsonl", ".duplicates.jsonl", ".stats.json")}
    assert set(three) == set(one) == names  # the shard files are intermediates, removed after the gather
    assert three == one
    log = runs[3] / f"datapool/experiments/{EXP}/logs/udatasets_shard.cpt.books.2-of-3.log"
    assert log.is_file()  # books has 2 records: its third shard was empty, and still ran


def test_dedup_reaches_across_datasets_and_the_stats_add_up(runs):
    folder = runs[3] / f"datapool/experiments/{EXP}/data/processed"
    books = [json.loads(line) for line in (folder / "cpt/books.duplicates.jsonl").read_text().splitlines()]
    assert books == [{"file": "books.jsonl", "line": 1, "kind": "exact",
                      "duplicate_of": {"dataset": "web", "file": "a.jsonl", "line": 5}}]
    web = json.loads((folder / "cpt/web.stats.json").read_text())
    assert web["files"]["b.jsonl"] == {"input": 5, "kept": 1, "rejected": {"invalid_json": 1, "too_short": 1},
                                       "duplicates": {"exact": 1, "near": 1}, "blank_lines": 1}
    for stats in (web, json.loads((folder / "cpt/books.stats.json").read_text()),
                  json.loads((folder / "sft/chat.stats.json").read_text())):
        assert stats["input"] == stats["kept"] + sum(stats["rejected"].values()) + sum(stats["duplicates"].values())
    chat = json.loads((folder / "sft/chat.stats.json").read_text())
    assert chat["duplicates"] == {"exact": 1, "near": 0} and chat["kept"] == 3


def test_token_filter_makes_the_base_model_an_input(tmp_path):
    workdir = make_workdir(tmp_path, 2)
    plain = planned_jobs(snakemake(workdir, "-n", "udatasets", "--config", f"experiments=[{EXP}]"))
    assert plain == {"prepare_raw_data": 3, "udatasets_shard": 6, "udatasets_gather": 3, "udatasets": 1}
    settings_file = workdir / f"config/experiments/{EXP}/steps/1.udatasets.yaml"
    write_yaml(settings_file, {**yaml.safe_load(settings_file.read_text()), "max_tokens": 4096})
    proc = snakemake(workdir, "-n", "udatasets", "--config", f"experiments=[{EXP}]")
    assert planned_jobs(proc)["prepare_base_model"] == 1
    assert f"--tokenizer=datapool/experiments/{EXP}/model/base/tiny-qwen3" in proc.stdout
