"""The comparison page: a row per experiment × stage, a column per eval set version, final losses, and each
experiment's paired differences."""
from __future__ import annotations

from pathlib import Path

from llmrunner.report.__main__ import main
from llmrunner.report.core import EVAL_STAGES
from tests.report.conftest import write_eval


def compare(datapool: Path, *experiments: str) -> str:
    out = datapool / "reports" / "compare.md"
    main(["compare", "--datapool", str(datapool), "--experiments", *experiments, "--out", str(out)])
    return out.read_text()


def test_compare(datapool: Path) -> None:
    text = compare(datapool, "demo", "cpt_off", "ghost")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == ("| experiment | stage | final train loss | final val loss | heldout_text bits_per_byte ↓ `v12` "
                       "(12 items) | wordnet_mc acc ↑ `v40` (40 items) | wordnet_chat chrf ↑ `v10` (10 items) | "
                       "eval limit |")
    body = rows[1:10]
    assert [r.split(" | ")[:2] for r in body] == [
        [f"| {e}", s] for e in ("demo", "cpt_off", "ghost") for s in ("base", "cpt", "sft")]
    assert body[0] == "| demo | base | — | — | 4.073 | 0.275 | 0.3474 | all |"
    assert body[1] == "| demo | cpt | 5.49 | 5.59 | 3.006 | 0.35 | 0.3684 | all |"
    assert body[4] == "| cpt_off | cpt | " + " | ".join(["stage off"] * 6) + " |"
    assert all("stage off" in r for r in body[6:])
    assert "## Paired differences between stages" in text
    assert "| demo | heldout_text | `v12` | cpt − base | 12 | -1.066 | [-1.275, -0.8671] | **better** |" in text
    assert "| cpt_off | heldout_text | `v12` | sft − base | 12 | -1.552 | [-1.677, -1.403] | **better** |" in text
    assert "| cpt_off | heldout_text | `v12` | cpt − base |" not in text
    assert f"- ghost: no folder `{datapool / 'experiments' / 'ghost'}`" in text


def test_grown_set_gets_a_column_per_version(datapool: Path) -> None:
    """An experiment scored on the grown set (15 items) gets the old run's value in the 12-item column, from the
    same per-item scores; the old run has no value in the new column."""
    for stage in EVAL_STAGES:
        write_eval(datapool, datapool / "experiments" / "grown", stage, sizes={"heldout_text": 15})
    text = compare(datapool, "demo", "grown")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| experiment | stage | final train loss | final val loss | heldout_text bits_per_byte "
                              "↓ `v12` (12 items) | heldout_text bits_per_byte ↓ `v15` (15 items) | wordnet_mc")
    demo_base = rows[1].split(" | ")
    grown_base = rows[4].split(" | ")
    assert demo_base[:2] == ["| demo", "base"] and grown_base[:2] == ["| grown", "base"]
    assert demo_base[5] == "—" and grown_base[4] == f"{demo_base[4]} *" and grown_base[5] != "—"
    assert "\\*: recomputed on this version's items" in text
    # the page's differences stay on the versions the stages were scored on
    assert "| grown | heldout_text | `v15` | sft − base | 15 |" in text
    assert "| grown | heldout_text | `v12` (earlier) | sft − base | 12 |" in text  # on the 12 items demo scored


def test_compare_with_nothing(tmp_path: Path) -> None:
    assert "| a | sft | stage off | stage off |" in compare(tmp_path, "a")
