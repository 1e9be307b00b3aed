"""tokenize with `shards: 3` through real Snakemake: three shard jobs and a merge job per dataset write
the same bytes (and stats) as one job, from a raw folder of several files (udatasets off)."""
from __future__ import annotations

import gzip
import itertools
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.demo import planned_jobs, snakemake
from tests.paths import REPO, demo_cpt_lines, write_yaml

pytestmark = pytest.mark.workflow

EXP = "shards"
ROOT = f"datapool/experiments/{EXP}"
OUTPUTS = ["data/tokenized/cpt/mixed_text_document.bin", "data/tokenized/cpt/mixed_text_document.idx",
           "data/tokenized/cpt/mixed.stats.json"] + [
    f"data/tokenized/sft/chats_{name}.{ext}" for name in ("text_document", "loss_mask_document")
    for ext in ("bin", "idx")] + ["data/tokenized/sft/chats.stats.json"]


def demo_records(name: str, count: int) -> list[str]:
    with gzip.open(REPO / "resources" / "demo" / name, "rt", encoding="utf-8") as lines:
        return [line for line, _ in zip(lines, range(count))]


def set_shards(workdir: Path, shards: int) -> None:
    for name in ("2.tokenize_cpt.yaml", "3.tokenize_sft.yaml"):
        path = workdir / "config" / "experiments" / EXP / "steps" / name
        write_yaml(path, {**yaml.safe_load(path.read_text()), "shards": shards})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """One experiment, udatasets off: CPT from a .jsonl.gz and a .jsonl (with a blank line and an
    empty document), SFT from two files, with a token cap that truncates and drops some."""
    work = tmp_path_factory.mktemp("tokenize_shards")
    shutil.copytree(REPO / "config", work / "config")
    (work / "resources").symlink_to(REPO / "resources")
    exp_dir = work / "config" / "experiments" / EXP
    shutil.copytree(REPO / "config" / "experiments" / "demo", exp_dir)
    data = work / "data"
    data.mkdir()
    cpt, sft = list(itertools.islice(demo_cpt_lines(), 250)), demo_records("sft.jsonl.gz", 90)
    with gzip.open(data / "a.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(cpt[:100])
    (data / "b.jsonl").write_text("".join(cpt[100:]) + "\n" + json.dumps({"text": ""}) + "\n", encoding="utf-8")
    (data / "c1.jsonl").write_text("".join(sft[:40]), encoding="utf-8")
    (data / "c2.jsonl").write_text("".join(sft[40:]), encoding="utf-8")
    pipeline = yaml.safe_load((exp_dir / "pipeline.yaml").read_text())
    pipeline["steps"]["udatasets"] = False
    pipeline["data"] = {"cpt": {"mixed": {"sources": ["data/a.jsonl.gz", "data/b.jsonl"], "adapter": "text"}},
                        "sft": {"chats": {"sources": ["data/c1.jsonl", "data/c2.jsonl"], "adapter": "messages"}}}
    write_yaml(exp_dir / "pipeline.yaml", pipeline)
    sft_steps = exp_dir / "steps" / "3.tokenize_sft.yaml"
    write_yaml(sft_steps, {**yaml.safe_load(sft_steps.read_text()), "max_tokens": 48})
    return work


def run_tokenize(workdir: Path, *args: str):
    return snakemake(workdir, *args, "tokenize_cpt", "tokenize_sft", "--config", f"experiments=[{EXP}]")


def test_three_shards_write_the_bytes_of_one_job(workdir):
    set_shards(workdir, 1)
    assert planned_jobs(run_tokenize(workdir, "-n")).get("tokenize_cpt_shard") is None
    run_tokenize(workdir, "--cores", "2")
    root = workdir / ROOT
    one = {name: (root / name).read_bytes() for name in OUTPUTS}

    set_shards(workdir, 3)
    plan = planned_jobs(run_tokenize(workdir, "-n"))
    assert (plan["tokenize_cpt_shard"], plan["tokenize_sft_shard"]) == (3, 3)
    assert (plan["tokenize_cpt_dataset"], plan["tokenize_sft_dataset"]) == (1, 1)
    run_tokenize(workdir, "--cores", "2")
    three = {name: (root / name).read_bytes() for name in OUTPUTS}

    assert three == one
    cpt_stats = json.loads(three["data/tokenized/cpt/mixed.stats.json"])
    sft_stats = json.loads(three["data/tokenized/sft/chats.stats.json"])
    assert cpt_stats["documents"] == 251 and cpt_stats["empty"] == 1
    assert sft_stats["input"] == 90 and sft_stats["truncated"] + sft_stats["dropped"] > 0
    for kind in ("cpt", "sft"):  # the shard logs exist; the shard outputs were intermediate (temp)
        assert len(list((root / "logs").glob(f"tokenize_{kind}.*.*-of-3.log"))) == 3
        assert not [p for p in (root / "data" / "tokenized" / kind / ".shards").rglob("*") if p.is_file()]
