"""The comparison page against a baseline: Δ per stage and set version with its paired interval, what differs in
the two resolved configs, a baseline outside the run read from the datapool, one not run yet."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from llmrunner.report.__main__ import main
from llmrunner.report.baseline import config_diff
from llmrunner.report.core import EVAL_STAGES
from tests.report.conftest import write_eval, write_json, write_scored


def config(exp: str, **pipeline) -> dict:
    """A resolved config record as the report job writes it (reports/config.json)."""
    root = f"datapool/experiments/{exp}"
    return {"experiment": exp, "root": root,
            "pipeline": {"description": exp, "baseline": None, "primary": [],
                         "steps": {"train_cpt": True, "train_sft": True},
                         "base_model": {"src": "builtin:tiny-qwen3", "name": "tiny", "path": f"{root}/model/base/tiny"},
                         "data": {"cpt": {"web": {"sources": ["raw/web.jsonl"], "adapter": "text"}}, "sft": {}},
                         **pipeline},
            "steps": {"train_cpt": {"lr": 0.001, "save": f"{root}/model/cpt_checkpoints"}, "eval": {"limit": None}}}


def compare(datapool: Path, *experiments: str) -> tuple[str, dict]:
    out = datapool / "reports" / "compare.md"
    main(["compare", "--datapool", str(datapool), "--experiments", *experiments, "--out", str(out)])
    return out.read_text(), json.loads((datapool / "reports" / "baselines.json").read_text())["experiments"]


def test_against_a_baseline_outside_the_run(datapool: Path) -> None:
    """`better` has baseline `demo` (not in this run, read from the datapool): the same base model, CPT and SFT
    models with 10% fewer bits per byte on heldout_text; more data, another learning rate."""
    write_json(datapool / "experiments/demo/reports/config.json", config("demo"))
    mine = config("better", baseline="demo", primary=["heldout_text:bits_per_byte"])
    mine["pipeline"]["data"]["cpt"]["books"] = {"sources": ["raw/books.jsonl"], "adapter": "text"}
    mine["steps"]["train_cpt"]["lr"] = 0.0003
    write_json(datapool / "experiments/better/reports/config.json", mine)
    write_scored(datapool, "better", {"cpt": 0.9, "sft": 0.9})

    text, record = compare(datapool, "better")
    assert "## Against the baseline" in text
    rows = {tuple(c.strip() for c in line.split("|")[1:6]): line for line in text.splitlines()
            if line.startswith("| better | demo |")}
    assert len(rows) == 3 * 3  # 3 sets × 3 stages, each on the one version both scored
    base = rows[("better", "demo", "heldout_text bits_per_byte ↓", "`v12`", "base")]
    assert base.endswith("| 12 | 4.073 | 4.073 | +0 | [+0, +0] | no clear difference |")
    sft = rows[("better", "demo", "heldout_text bits_per_byte ↓", "`v12`", "sft")].split(" | ")
    assert sft[5:8] == ["12", "2.269", "2.521"] and sft[8].startswith("-0.25") and sft[-1] == "**better** |"
    assert rows[("better", "demo", "wordnet_mc acc ↑", "`v40`", "cpt")].endswith("| no clear difference |")
    assert "### better against demo: what differs" in text
    assert "- dataset added: cpt `books` (sources `[\"raw/books.jsonl\"]`)" in text
    assert "- `train_cpt.lr` `0.001` → `0.0003`" in text
    assert "- `primary` `[]` → `[\"heldout_text:bits_per_byte\"]`" in text
    assert "save" not in text  # paths under each experiment's own folder are not a difference
    entry = record["better"]
    assert entry["baseline"] == "demo" and entry["status"] == "compared" and entry["stages"] == list(EVAL_STAGES)
    sft_row = next(d for d in entry["deltas"] if d["set"] == "heldout_text" and d["stage"] == "sft")
    assert sft_row["excludes_zero"] and sft_row["result"] == "better" and sft_row["version"] == "v12"
    assert sft_row["low"] < sft_row["delta"] < sft_row["high"] < 0


def test_a_grown_set_is_compared_on_the_version_both_hold(datapool: Path) -> None:
    """The experiment was scored on heldout_text grown to 15 items, the baseline on its 12: Δ on the 12 items
    (recomputed), never between the two versions."""
    write_json(datapool / "experiments/grown/reports/config.json", config("grown", baseline="demo"))
    for stage in EVAL_STAGES:
        write_eval(datapool, datapool / "experiments" / "grown", stage, sizes={"heldout_text": 15})
    text, record = compare(datapool, "demo", "grown")
    assert "| grown | demo | heldout_text bits_per_byte ↓ | `v12` (earlier) | sft | 12 |" in text
    assert "| grown | demo | heldout_text bits_per_byte ↓ | `v15`" not in text
    assert {d["version"] for d in record["grown"]["deltas"] if d["set"] == "heldout_text"} == {"v12"}
    assert record["demo"] == {"baseline": None, "status": "no baseline"}
    # the baseline's config was not recorded: said, not guessed
    assert "The baseline's resolved config is not recorded" in text


def test_a_baseline_not_run_yet(datapool: Path) -> None:
    write_json(datapool / "experiments/demo/reports/config.json", config("demo", baseline="ghost"))
    text, record = compare(datapool, "demo")
    assert "### demo against ghost" in text and "Baseline not run yet" in text
    assert record["demo"] == {"baseline": "ghost", "status": "baseline not run yet"}


def test_config_diff_lines() -> None:
    theirs = config("a")
    mine = config("b")
    mine["pipeline"]["data"] = {"cpt": {}, "sft": {"chat": {"sources": ["c.jsonl"], "adapter": "messages"}}}
    mine["pipeline"]["base_model"]["src"] = "/models/Qwen3-0.6B-Base"
    mine["pipeline"]["steps"]["train_cpt"] = False
    assert config_diff(mine, theirs) == [
        "dataset removed: cpt `web`",
        "dataset added: sft `chat` (sources `[\"c.jsonl\"]`)",
        "base model: `src` `\"builtin:tiny-qwen3\"` → `\"/models/Qwen3-0.6B-Base\"`",
        "step train_cpt switched off",
    ]
    assert config_diff(theirs, copy.deepcopy(theirs)) == []
