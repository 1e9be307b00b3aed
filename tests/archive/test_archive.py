"""`snakemake archive`'s decisions on crafted per-item scores, through the real compare report and the real
config: a clear gain is archived (manifest, hard links, sha256), no clear difference is not, no baseline says
why, and a rerun only adds."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from llmrunner.archive.__main__ import main as archive
from llmrunner.config import load_run_config
from llmrunner.report.__main__ import main as report
from tests.paths import DEMO, edit
from tests.report.conftest import write_scored

EXPERIMENTS = ["gain", "same", "solo"]


@pytest.fixture
def run(project: Path) -> dict:
    """Experiments `gain` (10% fewer bits per byte than its baseline `demo` after CPT and SFT; its data read by a
    custom adapter), `same` (scores equal to demo's) and `solo` (no baseline), with their stage outputs."""
    Path("adapters").mkdir()
    Path("adapters/keep.py").write_text("def convert(record):\n    return record\n")
    for name in EXPERIMENTS:
        shutil.copytree(DEMO, DEMO.parent / name)
    gain = DEMO.parent / "gain" / "pipeline.yaml"
    edit(gain, baseline="demo", primary=["heldout_text:bits_per_byte"])
    data = yaml.safe_load(gain.read_text())["data"]
    data["cpt"]["python_docs"].update(adapter="custom", adapter_function="adapters/keep.py:convert")
    edit(gain, data=data)
    edit(DEMO.parent / "same" / "pipeline.yaml", baseline="demo", primary=["heldout_text:bits_per_byte"])
    config = load_run_config({"experiments": ["demo", *EXPERIMENTS]})
    for name, factor in (("demo", 1.0), ("gain", 0.9), ("same", 1.0), ("solo", 1.0)):
        e = config.exp(name)
        for kind in ("cpt", "sft"):
            for dataset in e.datasets(kind):
                for path in e.udatasets_outputs(kind, dataset):
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                    Path(path).write_text(f'{{"{name}": "{kind} {dataset}"}}\n')
        write_scored(Path(config.datapool), name, {"cpt": factor, "sft": factor})
        Path(e.path("reports", "config.json")).write_text(config.resolved_config_json(name))
    return {"plan": json.loads(config.archive_plan_json()), "datapool": Path(config.datapool)}


def run_archive(run: dict, experiments: list[str] = EXPERIMENTS) -> str:
    datapool = run["datapool"]
    report(["compare", "--datapool", str(datapool), "--experiments", *experiments,
            "--out", str(datapool / "reports/compare.md")])
    plan = {e: run["plan"][e] for e in experiments}
    archive(["--comparison", str(datapool / "reports/baselines.json"), "--plan", json.dumps(plan),
             "--out", str(datapool / "archive/index.md")])
    return (datapool / "archive/index.md").read_text()


def entries(datapool: Path, exp: str) -> list[Path]:
    folder = datapool / "archive" / exp
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


def test_a_clear_gain_is_archived_and_the_others_say_why_not(run: dict) -> None:
    datapool = run["datapool"]
    index = run_archive(run)
    [entry] = entries(datapool, "gain")
    assert entries(datapool, "same") == [] and entries(datapool, "solo") == []
    manifest = json.loads((entry / "manifest.json").read_text())
    [why] = manifest["why"]
    assert why["primary"] == "heldout_text:bits_per_byte" and why["stage"] == "sft" and why["version"] == "v12"
    assert why["low"] < why["delta"] < why["high"] < 0 and why["result"] == "better"
    assert manifest["baseline"] == "demo" and manifest["versions"] == {"heldout_text": "v12"}
    stored = {f["path"]: f for f in manifest["files"]}
    processed = datapool / "experiments/gain/data/processed/cpt/python_docs.jsonl"
    assert stored["data/cpt/python_docs.jsonl"]["stored"] == "hard link"
    assert os.stat(entry / "data/cpt/python_docs.jsonl").st_ino == os.stat(processed).st_ino
    assert {"data/sft/wordnet_chat.jsonl", "data/cpt/python_docs.stats.json", "data/sft/wordnet_chat.stats.json",
            "adapters/keep.py", "config/pipeline.yaml", "config/steps/8.eval.yaml", "config.json",
            "deltas.json"} <= set(stored)
    for path, f in stored.items():
        assert hashlib.sha256((entry / path).read_bytes()).hexdigest() == f["sha256"], path
    assert json.loads((entry / "deltas.json").read_text())["baseline"] == "demo"
    rows = {line.split(" | ")[0]: line for line in index.splitlines() if line.startswith("| ")}
    assert f"[`gain/{entry.name}`](gain/{entry.name}/manifest.json)" in index
    assert "| gain | demo | yes: `gain/" in rows["| gain"] and "| clear gain |" in rows["| gain"]
    assert "| same | demo | no | not significant | heldout_text:bits_per_byte on sft, version v12 (12 items): Δ +0" \
        in rows["| same"]
    assert rows["| solo"].startswith("| solo | — | no | no baseline | pipeline.yaml sets no `baseline`")


def test_rerunning_adds_and_never_removes(run: dict) -> None:
    datapool = run["datapool"]
    run_archive(run)
    [first] = entries(datapool, "gain")
    run_archive(run)
    assert entries(datapool, "gain") == [first]  # the same content: kept, not archived twice
    # the pipeline rebuilds the processed data (a new file in its place), and the experiment still wins
    processed = datapool / "experiments/gain/data/processed/cpt/python_docs.jsonl"
    processed.unlink()
    processed.write_text('{"text": "rebuilt"}\n')
    index = run_archive(run, ["gain"])
    assert len(entries(datapool, "gain")) == 2 and first in entries(datapool, "gain")
    assert (first / "data/cpt/python_docs.jsonl").read_text() == '{"gain": "cpt python_docs"}\n'  # old content kept
    assert index.count("| gain | [`gain/") == 2  # both entries listed
    assert "## Considered in the latest run" in index and "| same |" not in index.split("## Considered")[1]
