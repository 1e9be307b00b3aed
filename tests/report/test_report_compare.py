"""The comparison table: a row per experiment × stage, eval metrics side by side, final losses."""
from __future__ import annotations

from pathlib import Path

from llmrunner.report.__main__ import main


def test_compare(datapool: Path) -> None:
    out = datapool / "reports" / "compare.md"
    main(["compare", "--datapool", str(datapool), "--experiments", "demo", "cpt_off", "ghost", "--out", str(out)])
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    header = "| experiment | stage | final train loss | final val loss | heldout_ppl word_perplexity ↓"
    assert rows[0].startswith(header)
    assert "wordnet_mc acc ↑" in rows[0]
    body = rows[1:]
    assert [r.split(" | ")[:2] for r in body] == [
        [f"| {e}", s] for e in ("demo", "cpt_off", "ghost") for s in ("base", "cpt", "sft")]
    assert body[0].startswith("| demo | base | — | — | 6.500e+07 | 16 | 4 |")
    assert body[1].startswith("| demo | cpt | 5.49 | 5.59 | 6.500e+07 | 8 | 3 | 0.27 ± 0.019 |")
    assert body[4] == "| cpt_off | cpt | " + " | ".join(["stage off"] * 8) + " |"
    assert body[2].endswith("| all |")
    assert all("stage off" in r for r in body[6:])
    assert f"- ghost: no folder `{datapool / 'experiments' / 'ghost'}`" in text


def test_compare_with_nothing(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "compare.md"
    main(["compare", "--datapool", str(tmp_path), "--experiments", "a", "--out", str(out)])
    assert "| a | sft | stage off | stage off |" in out.read_text()
