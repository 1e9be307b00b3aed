"""The experiment report: tables from fake stage outputs, a PNG, and no crash on missing stages."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from llmrunner.errors import StageError
from llmrunner.report.__main__ import main
from llmrunner.report.core import EVAL_STAGES, fmt
from tests.report.conftest import item_records, write_eval, write_items, write_json


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def report(root: Path) -> str:
    out = root / "reports" / "report.md"
    main(["experiment", "--root", str(root), "--datapool", str(root.parent.parent), "--out", str(out)])
    return out.read_text()


def test_full_experiment(datapool: Path) -> None:
    root = datapool / "experiments" / "demo"
    text = report(root)
    assert text.startswith("# Experiment report: demo\n")
    assert "| cpt | web | 1,000 | 950 | 30 | 15 | 5 | 2.0% | 0 | too_short: 30 |" in text
    assert "| cpt | books | 10 | 7 | 0 | 2 | 1 | 30.0% | 0 | — |" in text
    assert "| cpt | total | 1,010 | 957 | 30 | 17 | 6 | 2.3% | 0 | too_short: 30 |" in text
    assert "- cpt `books`: 2 exact and 1 near duplicates of records kept in `web`" in text
    # stats written before near de-dup and augmentation existed: those cells stay empty
    assert "| sft | chat | 120 | 110 | 8 | 2 | — | 1.7% | — | empty: 2, no_assistant: 6 |" in text
    assert "| characters | books | web |" in text
    assert "| 128–255 | 0 | 600 ████████████████████ |" in text
    assert "| 256–511 | 7 ████████████████████ | 150 █████ |" in text
    assert "| mean | 300 | 180.5 |" in text
    assert "| web | 950 | 1,234,567 | 0 |" in text
    assert "| chat | 110 | 40,000 | 10,000 | 25.0% | 3 | 0 |" in text
    # 40 steps, loss 9 * (0.6 + 0.4 / it); the half-written last line is skipped
    assert "| cpt | 40 | 40 | 5.49 | 5.49 | 5.59 | 0.0003 | 5,020.5 |" in text
    assert "| hf2mg | model/mg/base | 3.1e-06 | 1e-05 | yes | float32 |" in text
    assert "| mg2hf | model/hf/sft |" in text
    assert "| mg2hf | model/hf/cpt | 0.03125 | 0.05 × max \\|logit\\| | yes | bfloat16 |" in text
    assert "| version | model / Δ | items | bits_per_byte ↓ | 95% interval | result | chat template |" in text
    assert "| `v12` | base | 12 | 4.073 |  |  | no |" in text
    assert "| `v12` | cpt − base | 12 | -1.066 | [-1.275, -0.8671] | **better** |  |" in text
    assert "| `v12` | sft − base | 12 | -1.552 | [-1.677, -1.403] | **better** |  |" in text
    assert "| `v40` | cpt − base | 40 | +0.075 | [-0.15, +0.3] | no clear difference |  |" in text
    assert "| `v10` | sft | 10 | 0.3498 |  |  | yes |" in text
    assert "| base | 0.275 ± 0.019 |" in text  # lm-eval's aggregate metrics
    assert "different versions" not in text and "(recomputed)" not in text.split("## Evaluation")[1].split("\n\n")[2]
    assert "`reports/eval/<stage>/items/<set>.jsonl`" in text
    assert "stage off: no `reports/contamination.json`." in text
    assert "![Training loss](loss.png)" in text
    width, height = png_size(root / "reports" / "loss.png")
    assert width > 500 and height > 200


def test_cpt_off(datapool: Path) -> None:
    text = report(datapool / "experiments" / "cpt_off")
    assert "CPT: stage off." in text
    assert "| cpt | stage off | — |" in text
    assert "| `v12` | sft − base | 12 | -1.552 |" in text
    assert "cpt − base" not in text and "| `v12` | cpt |" not in text
    assert "| mg2hf | model/hf/cpt |" not in text


def test_empty_experiment_still_reports(tmp_path: Path) -> None:
    root = tmp_path / "experiments" / "fresh"
    root.mkdir(parents=True)
    text = report(root)
    for section in ("Data cleaning", "Tokenization", "Training", "Conversion parity", "Evaluation"):
        assert f"## {section}" in text
    assert text.count("stage off") >= 6
    assert png_size(root / "reports" / "loss.png")[0] > 0


def test_missing_root_is_a_stage_error(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="does not exist"):
        main(["experiment", "--root", str(tmp_path / "nope"), "--datapool", str(tmp_path), "--out",
              str(tmp_path / "r.md")])


def test_contamination_hits_and_none(datapool: Path) -> None:
    root = datapool / "experiments" / "demo"
    pairs = [{"dataset": "web", "kind": "cpt", "set": "heldout_text", "records_scanned": 950, "records_hit": 3,
              "eval_items_hit": 2, "example_records": ["web.jsonl:4", "web.jsonl:9"],
              "example_item_ids": ["he001", "he004"]},
             {"dataset": "chat", "kind": "sft", "set": "wordnet_mc", "records_scanned": 110, "records_hit": 0,
              "eval_items_hit": 0, "example_records": [], "example_item_ids": []}]
    write_json(root / "reports" / "contamination.json", {"ngram": 13, "sets": {}, "pairs": pairs})
    text = report(root)
    assert "Training records that share runs of 13 words with an eval set's items" in text
    assert ("| dataset | kind | set | records_scanned | records_hit | eval_items_hit | example_records | "
            "example_item_ids |") in text
    assert "| web | cpt | heldout_text | 950 | 3 | 2 | web.jsonl:4, web.jsonl:9 | he001, he004 |" in text
    assert "| chat | sft | wordnet_mc |" not in text
    write_json(root / "reports" / "contamination.json", {"ngram": 13, "sets": {}, "pairs": pairs[1:]})
    assert ("No overlap found between the training data and the eval sets (runs of 13 words; 1 dataset × set "
            "pairs checked).") in report(root)


def test_grown_set_scores_the_earlier_version(datapool: Path) -> None:
    """A new run on a grown set (15 items) also scores the 12 items of the version the old run scored: with
    the same per-item scores it gets the old run's score, and its Δ on them."""
    old = datapool / "experiments" / "demo"
    new = datapool / "experiments" / "grown"
    for stage in EVAL_STAGES:
        write_eval(datapool, new, stage, sizes={"heldout_text": 15})
    text = report(new)
    old_base = json.loads((old / "reports/eval/base/results.json").read_text())["sets"]["heldout_text"]["score"]
    new_base = json.loads((new / "reports/eval/base/results.json").read_text())["sets"]["heldout_text"]
    assert new_base["version"] == "v15" and new_base["score"] != old_base
    assert f"| `v15` | base | 15 | {fmt(new_base['score'])} |" in text
    assert f"| `v12` (earlier) | base (recomputed) | 12 | {fmt(old_base)} |" in text
    assert "| `v12` (earlier) | sft − base | 12 | -1.552 | [-1.677, -1.403] | **better** |  |" in text
    assert "| `v40` | base | 40 |" in text and "`v40` (earlier)" not in text


def test_stages_on_different_versions_are_not_paired(datapool: Path) -> None:
    root = datapool / "experiments" / "mixed"
    write_eval(datapool, root, "base")
    write_eval(datapool, root, "sft", sizes={"heldout_text": 15, "wordnet_mc": 30})
    text = report(root)
    assert "| `v12` | base | 12 |" in text and "| `v15` | sft | 15 |" in text
    # sft's 15 items hold base's 12: paired on those
    assert "| `v12` | sft (recomputed) | 12 |" in text and "| `v12` | sft − base | 12 | -1.552 |" in text
    assert ("- sft and base were scored on different versions (`v15`, `v12`): compared only on the items of "
            "`v12` (rows above).") in text
    # the 30 multiple-choice items sft was scored on are all among base's 40: paired on those
    assert "| `v30` | base (recomputed) | 30 |" in text and "| `v30` | sft − base | 30 |" in text
    assert "(`v30`, `v40`): compared only on the items of `v30` (rows above)." in text


def test_sets_that_share_no_version_are_not_paired(datapool: Path) -> None:
    root = datapool / "experiments" / "edited"
    write_eval(datapool, root, "base")
    write_eval(datapool, root, "sft")
    # the chat set edited in place: other ids, same count; sft scored the new version
    records = [{**r, "id": f"new{r['id']}"} for r in item_records("wordnet_chat", "sft", 10)]
    write_items(root, "sft", "wordnet_chat", records)
    results = json.loads((root / "reports/eval/sft/results.json").read_text())
    results["sets"]["wordnet_chat"]["version"] = "w10"
    write_json(root / "reports/eval/sft/results.json", results)
    text = report(root)
    assert "- sft and base were scored on different versions (`w10`, `v10`): not compared." in text
    assert "| `v10` | base | 10 |" in text and "| `w10` | sft | 10 |" in text
    assert "| `v10` | sft − base |" not in text and "| `w10` | sft − base |" not in text
