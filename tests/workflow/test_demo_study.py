"""The demo study as `make demo` runs it: demo and its ablation demo-no-python_docs in one Snakemake run. The
compare page, baselines.json and the dashboard show the ablation against demo, per set version and stage, with
the paired Δ and interval that the two experiments' per-item files give."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.demo import ABLATION, copy_finished_demo, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def study(demo_run: Path, demo_workdir: Path, tmp_path_factory) -> Path:
    """A copy of the finished short demo (so the other tests' runs of demo alone stay as they were), with the
    ablation run beside it: its datapool folder."""
    copy = copy_finished_demo(demo_workdir, tmp_path_factory, "study")
    snakemake(copy, "--cores", "2", "--config", f"experiments=[demo,{ABLATION}]")
    return copy / "datapool"


def test_the_ablation_is_compared_with_its_baseline(study: Path):
    from llmrunner.report.core import fmt
    from llmrunner.report.paired import paired_delta, read_records

    record = json.loads((study / "reports/baselines.json").read_text())["experiments"][ABLATION]
    assert record["baseline"] == "demo" and record["status"] == "compared"
    deltas = {(d["set"], d["stage"]): d for d in record["deltas"] if not d["earlier"]}
    assert {("heldout_python_docs", s) for s in ("base", "cpt", "sft")} <= set(deltas)
    compare = (study / "reports/compare.md").read_text().split("## Against the baseline", 1)[1]
    for stage in ("cpt", "sft"):
        d = deltas["heldout_python_docs", stage]
        items = [read_records(study / f"experiments/{exp}/reports/eval/{stage}/items/heldout_python_docs.jsonl")
                 for exp in ("demo", ABLATION)]
        expected = paired_delta(*items)
        assert (d["delta"], d["low"], d["high"]) == pytest.approx(
            (expected["delta"], expected["low"], expected["high"]))
        assert d["items"] == len(items[0]) and d["low"] <= d["delta"] <= d["high"]
        row = next(line for line in compare.splitlines()
                   if line.startswith(f"| {ABLATION} | demo | heldout_python_docs") and f"| {stage} |" in line)
        assert f"| {fmt(d['score'])} | {fmt(d['baseline_score'])} |" in row, row
    # both models are the same built-in base model: no difference at base
    assert deltas["heldout_python_docs", "base"]["delta"] == 0
    # the config diff names the dataset left out
    assert "python_docs" in json.dumps(record["config_diff"])
    assert ABLATION in (study / "reports/index.html").read_text()
