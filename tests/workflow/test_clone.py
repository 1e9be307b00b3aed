"""Clones and ablations through real Snakemake, on a copy of the finished demo: a clone made with its datapool
reruns exactly what a change in its config touches (data, a step's value, the base model), and nothing that
computes when nothing changed; an ablation reruns the jobs that read the changed data, not prepare."""
from __future__ import annotations

import contextlib
import gzip
import shutil
from pathlib import Path

import pytest
import yaml

from llmrunner.errors import ConfigError
from llmrunner.experiments import ablate, clone_experiment
from tests.demo import copy_finished_demo, planned_jobs, snakemake
from tests.paths import REPO, write_yaml

pytestmark = pytest.mark.workflow
# The report pages name the experiment: the clone's first run makes its own (and the compare page follows).
REPORT = {"report_experiment": 1, "report_feedback": 1, "report_compare": 1, "all": 1}


@pytest.fixture(scope="module")
def workdir(demo_run: Path, demo_workdir: Path, tmp_path_factory) -> Path:
    """The finished demo's working directory copied (config, datapool, .snakemake, file times kept), with a copy
    of resources/ in place of the link, so that a test can edit a source file."""
    copy = copy_finished_demo(demo_workdir, tmp_path_factory, "clones")
    (copy / "resources").unlink()
    shutil.copytree(REPO / "resources", copy / "resources")
    return copy


def clone(workdir: Path, name: str) -> Path:
    """`scripts/prepare_exp.py --clone-experiment demo <name> --copy-datapool`; returns the clone's config folder."""
    with contextlib.chdir(workdir):
        clone_experiment("demo", name, copy_datapool=True)
    return workdir / "config/experiments" / name


def plan(workdir: Path, *experiments: str) -> dict[str, int]:
    return planned_jobs(snakemake(workdir, "-n", "--config", f"experiments=[{','.join(experiments)}]"))


def edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text()) or {}
    change(data)
    write_yaml(path, data)


def test_a_clone_without_change_reruns_nothing_that_computes(workdir: Path):
    clone(workdir, "same")
    assert plan(workdir, "same") == REPORT
    assert plan(workdir, "demo") == {}  # the source is untouched
    root = workdir / "datapool/experiments"
    for rel in ("model/sft_checkpoints/complete.json", "data/processed/cpt/python_docs.jsonl"):
        assert (root / "same" / rel).stat().st_mtime == (root / "demo" / rel).stat().st_mtime


def test_cloning_onto_an_existing_experiment_is_refused(workdir: Path):
    clone(workdir, "taken")
    with pytest.raises(ConfigError, match="config/experiments/taken already exists"):
        clone(workdir, "taken")
    (workdir / "datapool/experiments/old_outputs").mkdir()
    with pytest.raises(ConfigError, match="datapool/experiments/old_outputs already exists"):
        clone(workdir, "old_outputs")
    assert not (workdir / "config/experiments/old_outputs").exists()  # refused before anything was written


def test_a_dataset_setting_change_reruns_its_data_and_what_follows(workdir: Path):
    config = clone(workdir, "reading")
    edit(config / "pipeline.yaml", lambda p: p["data"]["cpt"]["wordnet_text"].update(txt_mode="paragraphs"))
    # de-dup runs across a kind's datasets in order: the last one's gather reads the earlier ones' shards, which
    # are temporary, so they are made again, and with them every CPT dataset's data
    assert plan(workdir, "reading") == {"udatasets_shard": 3, "udatasets_gather": 3, "tokenize_cpt_dataset": 3,
                                        "train_stage": 2, "mg2hf_stage": 2, "eval_stage": 2, "contamination": 1,
                                        **REPORT}


def test_an_edited_source_file_reruns_from_prepare(workdir: Path):
    clone(workdir, "edited")
    source = workdir / "resources/demo/sft.jsonl.gz"
    lines = gzip.decompress(source.read_bytes()).splitlines(keepends=True)
    try:
        source.write_bytes(gzip.compress(b"".join(lines[:4000])))
        assert plan(workdir, "edited") == {"prepare_raw_data": 1, "udatasets_shard": 1, "udatasets_gather": 1,
                                           "tokenize_sft_dataset": 1, "train_stage": 1, "mg2hf_stage": 1,
                                           "eval_stage": 1, "contamination": 1, **REPORT}
    finally:
        shutil.copy2(REPO / "resources/demo/sft.jsonl.gz", source)


def test_a_step_value_change_reruns_that_step_and_what_follows(workdir: Path):
    config = clone(workdir, "lr")
    edit(config / "steps/7.train_sft.yaml", lambda s: s.update(lr=5.0e-4))
    assert plan(workdir, "lr") == {"train_stage": 1, "mg2hf_stage": 1, "eval_stage": 1, **REPORT}


def test_a_base_model_change_reruns_everything_that_reads_it(workdir: Path):
    config = clone(workdir, "model")
    edit(config / "pipeline.yaml", lambda p: p["base_model"].update(name="tiny-qwen3-b"))
    assert plan(workdir, "model") == {"prepare_base_model": 1, "hf2mg_base": 1, "tokenize_cpt_dataset": 3,
                                      "tokenize_sft_dataset": 1, "train_stage": 2, "mg2hf_stage": 2, "eval_stage": 3,
                                      **REPORT}


def test_ablations_rerun_what_reads_the_changed_data(workdir: Path):
    """An experiment with two SFT datasets, run; its ablations each leave one out and rerun the SFT chain from
    the first job whose input changed: the other dataset's de-dup only where the one left out came first."""
    config = clone(workdir, "two")
    lines = gzip.decompress((workdir / "resources/demo/sft.jsonl.gz").read_bytes()).splitlines(keepends=True)
    (workdir / "data").mkdir()
    (workdir / "data/sft_a.jsonl").write_bytes(b"".join(lines[:800]))
    (workdir / "data/sft_b.jsonl").write_bytes(b"".join(lines[800:1600]))
    edit(config / "pipeline.yaml", lambda p: p["data"].update(sft={
        "sft_a": {"sources": ["data/sft_a.jsonl"], "adapter": "messages"},
        "sft_b": {"sources": ["data/sft_b.jsonl"], "adapter": "messages"}}))
    snakemake(workdir, "--cores", "2", "--config", "experiments=[two]")

    with contextlib.chdir(workdir):
        made = ablate("two", ["sft_a", "sft_b"])  # the SFT datasets (the CPT ones have their own ablation)
    assert [a.name for a in made] == ["two-no-sft_a", "two-no-sft_b"]
    for name, kept in (("two-no-sft_a", "sft_b"), ("two-no-sft_b", "sft_a")):
        pipeline = yaml.safe_load((workdir / "config/experiments" / name / "pipeline.yaml").read_text())
        assert pipeline["baseline"] == "two" and list(pipeline["data"]["sft"]) == [kept]
        left_out = "sft_a" if kept == "sft_b" else "sft_b"
        pool = workdir / "datapool/experiments" / name
        assert not list(pool.glob(f"data/*/sft/{left_out}*")), "the left-out dataset's files are not carried over"
        assert (pool / f"data/tokenized/sft/{kept}.stats.json").exists()
    sft_chain = {"train_stage": 1, "mg2hf_stage": 1, "eval_stage": 1, "contamination": 1, **REPORT}
    # sft_b's de-dup ran after sft_a's records: without them its processed data changes
    assert plan(workdir, "two-no-sft_a") == {"udatasets_shard": 1, "udatasets_gather": 1, "tokenize_sft_dataset": 1,
                                             **sft_chain}
    assert plan(workdir, "two-no-sft_b") == sft_chain  # sft_a came first: its data stays as it was
