"""hf2mg and mg2hf by an external `command` through real Snakemake: the user's importer and exporter
scripts run in the conversion jobs, their output lands in the command logs, and editing a script listed
in `command_files` reruns that step and what depends on it."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.convert.external_scripts import EXPORT_SCRIPT, IMPORT_SCRIPT
from tests.demo import planned_jobs, snakemake
from tests.paths import REPO, demo_cpt_lines, write_yaml

pytestmark = pytest.mark.workflow

EXP = "external"
ROOT = f"datapool/experiments/{EXP}"
IMPORT_COMMAND = "echo importing {input} && python converters/import.py {input} {output}"
EXPORT_COMMAND = "python converters/export.py {input} {iteration} {output}"


def edit_step(exp_dir: Path, name: str, **values) -> None:
    path = exp_dir / "steps" / name
    write_yaml(path, {**(yaml.safe_load(path.read_text()) or {}), **values})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The demo cloned, cut to what hf2mg and mg2hf need: CPT on 300 demo records for 2 steps, SFT and eval off;
    both conversions by the scripts in converters/, listed in command_files."""
    work = tmp_path_factory.mktemp("external_converter")
    shutil.copytree(REPO / "config", work / "config")
    (work / "resources").symlink_to(REPO / "resources")
    exp_dir = work / "config" / "experiments" / EXP
    shutil.copytree(REPO / "config" / "experiments" / "demo", exp_dir)
    (work / "converters").mkdir()
    (work / "converters" / "import.py").write_text(IMPORT_SCRIPT)
    (work / "converters" / "export.py").write_text(EXPORT_SCRIPT)
    (work / "data").mkdir()
    (work / "data" / "cpt.jsonl").write_text("".join(itertools.islice(demo_cpt_lines(), 300)))

    pipeline = yaml.safe_load((exp_dir / "pipeline.yaml").read_text())
    pipeline["steps"].update(tokenize_sft=False, train_sft=False, eval=False)
    pipeline["data"] = {"cpt": {"demo_text": {"sources": ["data/cpt.jsonl"], "adapter": "text"}}}
    write_yaml(exp_dir / "pipeline.yaml", pipeline)
    edit_step(exp_dir, "4.train_cpt.yaml", train_iters=2, seq_length=64, micro_batch_size=2, global_batch_size=2,
              warmup_iters=1, save_interval=2, eval_interval=2, eval_iters=1, log_interval=1)
    edit_step(exp_dir, "6.hf2mg.yaml", command=IMPORT_COMMAND, command_files=["converters/import.py"])
    edit_step(exp_dir, "5.mg2hf.yaml", command=EXPORT_COMMAND, command_files=["converters/export.py"])
    return work


def convert(workdir: Path, *args: str):
    return snakemake(workdir, *args, "hf2mg", "mg2hf", "--config", f"experiments=[{EXP}]")


def record(folder: Path) -> dict:
    return json.loads((folder / "convert_command.json").read_text())


def test_external_converters_run_in_the_workflow_and_their_scripts_are_inputs(workdir):
    convert(workdir, "--cores", "2")
    root = workdir / ROOT
    mg, hf = root / "model" / "mg" / "base", root / "model" / "hf" / "cpt"

    imported = record(mg)
    assert imported["command"] == IMPORT_COMMAND and imported["exit_code"] == 0 and imported["iteration"] == 0
    assert (root / "logs" / "hf2mg.base.command.log").read_text().startswith("importing datapool/experiments/")
    assert json.loads((mg / "parity.json").read_text())["ok"] is True

    exported = record(hf)
    assert exported["command"] == EXPORT_COMMAND and exported["iteration"] == 2
    assert f"exported iteration 2 of {ROOT}/model/cpt_checkpoints" in \
        (root / "logs" / "mg2hf.cpt.command.log").read_text()
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(exported["copied_hf_files"])
    assert (hf / "tokenizer.json").is_file() and (hf / "model.safetensors").is_file()
    assert json.loads((hf / "parity.json").read_text())["ok"] is True  # the checkpoint has model.json

    assert planned_jobs(convert(workdir, "-n")) == {}
    with open(workdir / "converters" / "export.py", "a") as script:
        script.write("# a user's edit\n")
    plan = planned_jobs(convert(workdir, "-n"))
    assert plan.get("mg2hf_stage") == 1
    assert "hf2mg_base" not in plan and "train_stage" not in plan

    with open(workdir / "converters" / "import.py", "a") as script:
        script.write("# a user's edit\n")
    plan = planned_jobs(convert(workdir, "-n"))
    assert (plan.get("hf2mg_base"), plan.get("train_stage"), plan.get("mg2hf_stage")) == (1, 1, 1)
