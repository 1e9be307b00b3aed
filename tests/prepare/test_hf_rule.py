"""The prepare rule with `hf:` sources, run by the real Snakemake: it writes each split as an Arrow file into the raw
folder, and reruns when the saved folder is saved again or the cache holds a newer revision of a Hub dataset."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import datasets
import pytest
import yaml

from tests.demo import planned_jobs, snakemake
from tests.hf_cache import write_hub_cache
from tests.paths import write_yaml

TRAIN = [{"text": f"Training document number {i}."} for i in range(5)]
TEST = [{"text": "The one test document."}]
RAW = "datapool/experiments/demo/data/raw/cpt/python_docs"


@pytest.mark.slow
def test_the_prepare_rule_writes_hf_splits_and_reruns_when_they_change(project, monkeypatch):
    cache = project / "hf_cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))  # the Snakemake process's cache
    write_hub_cache(cache, "llmrunner-test/web", {"train": TRAIN, "test": TEST})
    datasets.DatasetDict({"train": datasets.Dataset.from_list(TRAIN),
                          "test": datasets.Dataset.from_list(TEST)}).save_to_disk("hf/web")
    pipeline_file = project / "config/experiments/demo/pipeline.yaml"
    pipeline = yaml.safe_load(pipeline_file.read_text())
    pipeline["data"]["cpt"]["python_docs"]["sources"] = [{"hf": "hf/web", "split": "train"},
                                                         {"hf": "llmrunner-test/web", "split": "test"}]
    write_yaml(pipeline_file, pipeline)

    snakemake(project, "--cores", "1", RAW)
    written = {p.name: datasets.Dataset.from_file(str(p))["text"] for p in Path(RAW).glob("*.arrow")}
    assert written == {"web.train.arrow": [r["text"] for r in TRAIN],
                       "llmrunner-test--web.default.test.arrow": [r["text"] for r in TEST]}
    assert planned_jobs(snakemake(project, "-n", RAW)) == {}

    revision = cache / "llmrunner-test___web/default/0.0.0"
    shutil.copytree(revision / "abc123", revision / "def456")  # a newer download of the dataset
    os.utime(revision / "def456", (os.path.getmtime(revision / "abc123") + 10,) * 2)
    assert planned_jobs(snakemake(project, "-n", RAW)) == {"prepare_raw_data": 1}
    shutil.rmtree(revision / "def456")
    assert planned_jobs(snakemake(project, "-n", RAW)) == {}

    datasets.DatasetDict({"train": datasets.Dataset.from_list(TRAIN[:2])}).save_to_disk("hf/web2")
    shutil.rmtree("hf/web")
    shutil.move("hf/web2", "hf/web")  # saved again: the split's files are newer
    assert planned_jobs(snakemake(project, "-n", RAW)) == {"prepare_raw_data": 1}
