"""Experiment management: clone (with and without the datapool and its Snakemake records), ablations, and
finding an experiment. The clones' and ablations' reruns through real Snakemake: tests/workflow/test_clone.py."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest
import yaml

from llmrunner.config import load_experiment
from llmrunner.errors import ConfigError
from llmrunner.experiments import _record_file, ablate, clone_experiment, experiment_from_pipeline
from tests.paths import REPO, write_yaml


def test_clone_copies_config_only(project):
    made = clone_experiment("demo", "my_exp")
    assert made == [Path("config/experiments/my_exp")]
    assert Path("config/experiments/my_exp/steps/4.train_cpt.yaml").read_text() == \
        Path("config/experiments/demo/steps/4.train_cpt.yaml").read_text()
    assert not Path("datapool/experiments/my_exp").exists()


def _write_record(key: str, record: dict) -> Path:
    """A Snakemake metadata record of output `key`, as Snakemake names it (the path's urlsafe base64)."""
    path = Path(".snakemake/metadata") / urlsafe_b64encode(key.encode()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def test_clone_with_datapool_copies_data_models_reports_and_their_records(project):
    src = Path("datapool/experiments/demo")
    for rel in ("data/raw/cpt/x/a.jsonl", "model/base/tiny/config.json", "reports/eval/base/results.json",
                "reports/report.md", "logs/old.log"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(rel)
    os.utime(src / "data/raw/cpt/x/a.jsonl", (1_000_000, 1_000_000))
    _write_record("datapool/experiments/demo/reports/eval/base", {
        "rule": "eval_stage", "input": ["datapool/experiments/demo/model/base/tiny"],
        "params": ["'datapool/experiments/demo'", "'datapool/experiments/demo2/x'"],
        "shellcmd": "eval --out datapool/experiments/demo/reports/eval/base/results.json",
        "input_checksums": {"datapool/experiments/demo/model/base/tiny": "sha256:0"}})
    _write_record("datapool/experiments/demo/reports/report.md", {"rule": "report_experiment"})
    _write_record("datapool/experiments/other/reports/report.md", {"rule": "report_experiment"})

    clone_experiment("demo", "copy", copy_datapool=True)
    dst = Path("datapool/experiments/copy")
    assert (dst / "data/raw/cpt/x/a.jsonl").read_text() == "data/raw/cpt/x/a.jsonl"
    assert (dst / "data/raw/cpt/x/a.jsonl").stat().st_mtime == 1_000_000  # mtime triggers stay quiet
    assert (dst / "model/base/tiny/config.json").exists() and (dst / "reports/eval/base/results.json").exists()
    assert not (dst / "logs").exists()  # the source's job logs describe the source's runs
    assert not (dst / "reports/report.md").exists()  # a report rule's page names the source: the clone makes its own
    key = urlsafe_b64encode(b"datapool/experiments/copy/reports/eval/base").decode()
    record = json.loads((Path(".snakemake/metadata") / key).read_text())
    assert record == {
        "rule": "eval_stage", "input": ["datapool/experiments/copy/model/base/tiny"],
        "params": ["'datapool/experiments/copy'", "'datapool/experiments/demo2/x'"],  # another experiment's path
        "shellcmd": "eval --out datapool/experiments/copy/reports/eval/base/results.json",
        "input_checksums": {"datapool/experiments/copy/model/base/tiny": "sha256:0"}}
    assert len(list(Path(".snakemake/metadata").iterdir())) == 4  # the source's records, but the report's


def test_record_names_match_snakemake_for_long_paths(tmp_path):
    """Paths whose base64 exceeds a file name's limit are cut into folders; the same way as Snakemake's."""
    from snakemake.persistence.file import FilePersistence

    persistence = FilePersistence(path=tmp_path / ".snakemake")
    records = tmp_path / ".snakemake/metadata"
    key = "datapool/experiments/demo/" + "/".join(["a_rather_long_folder_name"] * 30) + "/out.json"
    assert _record_file(records, key) == Path(persistence._record_path(str(records), key))
    assert len(_record_file(records, key).relative_to(records).parts) > 1


def test_clone_errors_name_the_problem(project):
    with pytest.raises(ConfigError, match="no experiment 'nope'.*experiments: demo"):
        clone_experiment("nope", "x")
    clone_experiment("demo", "twice")
    with pytest.raises(ConfigError, match="already exists"):
        clone_experiment("demo", "twice")
    with pytest.raises(ConfigError, match="not allowed"):
        clone_experiment("demo", "../escape")
    with pytest.raises(ConfigError, match="run experiment 'demo' first"):
        clone_experiment("demo", "nodata", copy_datapool=True)
    Path("datapool/experiments/demo/data").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no record of the outputs in datapool/experiments/demo"):
        clone_experiment("demo", "norecord", copy_datapool=True)
    Path("datapool/experiments/stale").mkdir()
    with pytest.raises(ConfigError, match="datapool/experiments/stale already exists"):
        clone_experiment("demo", "stale")
    assert not Path("config/experiments/nodata").exists() and not Path("config/experiments/stale").exists()


DEMO_CPT = ["python_docs", "jargon", "wordnet_text"]  # the shipped demo's CPT datasets, one per source
SHIPPED_ABLATION = Path("config/experiments/demo-no-python_docs")


def test_the_shipped_ablation_is_what_ablate_makes(project):
    """config/experiments/demo-no-python_docs is `prepare_exp.py --ablate demo --datasets python_docs` plus the
    metric that judges it: made again here, it matches."""
    shipped = {p.relative_to(SHIPPED_ABLATION): yaml.safe_load(p.read_text()) for p in SHIPPED_ABLATION.rglob("*.yaml")}
    shutil.rmtree(SHIPPED_ABLATION)
    ablate("demo", ["python_docs"])
    made = {p.relative_to(SHIPPED_ABLATION): yaml.safe_load(p.read_text()) for p in SHIPPED_ABLATION.rglob("*.yaml")}
    assert shipped[Path("pipeline.yaml")].pop("primary") == ["heldout_python_docs:bits_per_byte"]
    assert shipped == made and list(made[Path("pipeline.yaml")]["data"]["cpt"]) == ["jargon", "wordnet_text"]


def test_ablate_writes_one_experiment_per_dataset_left_out(project):
    shutil.rmtree(SHIPPED_ABLATION)  # made again below, with the others
    weights = {"python_docs": 1, "jargon": 2, "wordnet_text": 3}
    step = Path("config/experiments/demo/steps/4.train_cpt.yaml")
    write_yaml(step, {**yaml.safe_load(step.read_text()), "blend": weights})
    made = ablate("demo")  # sft has one dataset: not ablated by default
    assert [(a.name, a.kind, a.removed) for a in made] == [(f"demo-no-{d}", "cpt", (d,)) for d in DEMO_CPT]
    for ablation in made:
        kept = [d for d in DEMO_CPT if d not in ablation.removed]
        folder = Path("config/experiments") / ablation.name
        pipeline = yaml.safe_load((folder / "pipeline.yaml").read_text())
        assert pipeline["baseline"] == "demo"
        assert list(pipeline["data"]["cpt"]) == kept and list(pipeline["data"]["sft"]) == ["wordnet_chat"]
        assert pipeline["description"] == ablation.description
        blend = yaml.safe_load((folder / "steps/4.train_cpt.yaml").read_text())["blend"]
        assert blend == {d: weights[d] for d in kept}  # training refuses a weight for data it lacks
        assert list(load_experiment(ablation.name, "datapool").datasets("cpt")) == kept  # a valid config
    assert not Path("datapool/experiments/demo-no-jargon").exists()  # the source has not run: nothing to copy


def test_ablate_only_and_chosen_datasets(project):
    assert [a.name for a in ablate("demo", ["cpt:jargon"], only=True)] == ["demo-only-jargon"]
    pipeline = yaml.safe_load(Path("config/experiments/demo-only-jargon/pipeline.yaml").read_text())
    assert list(pipeline["data"]["cpt"]) == ["jargon"]
    with pytest.raises(ConfigError, match=r"--datasets: nope not in data of .*datasets: cpt:python_docs, cpt:jargon, "
                                          r"cpt:wordnet_text, sft:wordnet_chat"):
        ablate("demo", ["nope"])
    with pytest.raises(ConfigError, match="demo-no-wordnet_chat would leave data.sft of .* with no dataset while "
                                          "steps.tokenize_sft is on"):
        ablate("demo", ["wordnet_chat"])
    with pytest.raises(ConfigError, match="config/experiments/demo-only-jargon already exists"):
        ablate("demo", ["wordnet_text", "jargon"], only=True)
    assert not Path("config/experiments/demo-only-wordnet_text").exists()  # refused before anything was written


def test_ablate_without_a_kind_of_two_says_so(project):
    pipeline_file = Path("config/experiments/demo/pipeline.yaml")
    pipeline = yaml.safe_load(pipeline_file.read_text())
    pipeline["data"]["cpt"] = {"python_docs": pipeline["data"]["cpt"]["python_docs"]}
    write_yaml(pipeline_file, pipeline)
    with pytest.raises(ConfigError, match="no kind with 2 or more datasets .1 cpt, 1 sft.*--datasets"):
        ablate("demo")


def test_prepare_exp_ablate_prints_what_it_made_and_the_command(project):
    shutil.rmtree(SHIPPED_ABLATION)
    proc = subprocess.run([sys.executable, str(REPO / "scripts/prepare_exp.py"), "--ablate", "demo"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "created config/experiments/demo-no-python_docs" in proc.stdout
    assert "--config experiments=[demo,demo-no-python_docs,demo-no-jargon,demo-no-wordnet_text]" in proc.stdout


def test_experiment_from_pipeline(project):
    assert experiment_from_pipeline("config/experiments/demo/pipeline.yaml") == "demo"
    assert experiment_from_pipeline("config/experiments/demo") == "demo"
    Path("elsewhere").mkdir()
    Path("elsewhere/pipeline.yaml").write_text("{}")
    with pytest.raises(ConfigError, match="experiments live in"):
        experiment_from_pipeline("elsewhere/pipeline.yaml")


def test_prepare_exp_script_reports_errors_in_one_line():
    proc = subprocess.run([sys.executable, str(REPO / "scripts/prepare_exp.py"), "--clone-experiment", "nope", "x"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: no experiment 'nope'") and "Traceback" not in proc.stderr
