"""A user registers an eval set, runs eval, later appends items: the set gets a new version, the report shows both
versions, and the earlier version's scores, recomputed from the new run's per-item files, equal the old run's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.demo import copy_finished_demo, snakemake
from tests.paths import REPO, write_yaml

pytestmark = pytest.mark.workflow
STAGES = ("base", "cpt", "sft")


@pytest.fixture(scope="module")
def checkout(demo_run: Path, demo_workdir: Path, tmp_path_factory) -> Path:
    """A copy of the finished demo (only its eval and report have anything left to do after the edits below)."""
    return copy_finished_demo(demo_workdir, tmp_path_factory, "evalset")


def register(checkout: Path, lines: list[str]) -> None:
    (checkout / "my_mc.jsonl").write_text("".join(lines))
    write_yaml(checkout / "config/evalsets/my_mc.yaml", {"kind": "multiple_choice", "data": "my_mc.jsonl"})


def run_demo(checkout: Path) -> dict[str, dict]:
    snakemake(checkout, "--cores", "2", "--config", "experiments=[demo]", "--",
              "datapool/experiments/demo/reports/report.md")
    root = checkout / "datapool/experiments/demo"
    return {stage: json.loads((root / f"reports/eval/{stage}/results.json").read_text())["sets"]["my_mc"]
            for stage in STAGES}


def test_grown_set_is_a_new_version_scored_on_old_items_too(checkout: Path):
    from llmrunner.report.core import fmt

    mc = (REPO / "resources/demo/mc_eval.jsonl").read_text().splitlines(keepends=True)
    eval_file = checkout / "config/experiments/demo/steps/8.eval.yaml"
    write_yaml(eval_file, {**yaml.safe_load(eval_file.read_text()), "sets": ["my_mc"]})
    register(checkout, mc[100:120])
    first = run_demo(checkout)
    register(checkout, mc[100:130])  # ten items appended
    grown = run_demo(checkout)

    for stage in STAGES:
        assert (first[stage]["items"], grown[stage]["items"]) == (20, 30)
        assert first[stage]["version"] != grown[stage]["version"]
    old, new = first["base"]["version"], grown["base"]["version"]
    records = checkout / "datapool/evalsets/my_mc"
    assert sorted(p.stem for p in records.glob("*.json")) == sorted((old, new))

    rows = [line.strip("|").split(" | ") for line in
            (checkout / "datapool/experiments/demo/reports/report.md").read_text().split("### my_mc", 1)[1]
            .split("\n### ", 1)[0].splitlines() if line.startswith("| `")]
    by_row = {(r[0].strip(), r[1].strip()): [c.strip() for c in r] for r in rows}
    for stage in STAGES:
        assert by_row[(f"`{new}`", stage)][3] == fmt(grown[stage]["score"])
        # the earlier version, scored again from the new run's per-item scores, equals the first run's score
        assert by_row[(f"`{old}` (earlier)", f"{stage} (recomputed)")][3] == fmt(first[stage]["score"])
