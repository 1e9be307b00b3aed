"""The dashboard pages (llmrunner/report/html.py) from the crafted datapool of conftest.py: the numbers of the
results files, escaping, nothing fetched from the network; and, in a real headless Chromium, no console error
and the experiments table sorted by the page's own script."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmrunner.errors import StageError
from llmrunner.report.__main__ import main
from llmrunner.report.core import compare_report, experiment_report, fmt, signed
from llmrunner.report.html import dashboard
from tests.report.conftest import SETS, item_records, set_summary, write_items, write_json
from tests.report.htmlpage import check_experiments_table, experiments_rows, load, screenshot, tables

HOSTILE_SET = "<img src=x onerror=console.error(1)>"
HOSTILE_REASON = '</script><script>console.error("r&d")</script>'


def _config(root: Path, baseline: str | None) -> None:
    write_json(root / "reports/config.json", {"experiment": root.name, "root": str(root),
                                              "pipeline": {"baseline": baseline}, "steps": {}})


@pytest.fixture
def pages(datapool: Path) -> Path:
    """cpt_off against its baseline demo, its SFT scoring like a base model (so Δ ≠ 0); then the reports and the
    dashboard, as the report jobs run them."""
    _config(datapool / "experiments/demo", None)
    _config(datapool / "experiments/cpt_off", "demo")
    root, sets = datapool / "experiments/cpt_off", {}
    for name, (_, _, _, count) in SETS.items():
        records = item_records(name, "base", count)
        write_items(root, "sft", name, records)
        sets[name] = set_summary(name, records, f"v{count}")
    write_json(root / "reports/eval/sft/results.json", {"model": "/dp/sft", "stage": "sft", "sets": sets})
    for exp in ("demo", "cpt_off"):
        experiment_report(datapool / "experiments" / exp, datapool / "experiments" / exp / "reports/report.md",
                          datapool)
    compare_report(datapool, ["demo", "cpt_off"], datapool / "reports/compare.md")
    main(["dashboard", "--datapool", str(datapool), "--experiments", "demo", "cpt_off",
          "--out", str(datapool / "reports/index.html")])
    return datapool


def test_tables_hold_the_numbers_of_the_results_files(pages: Path):
    record = json.loads((pages / "reports/baselines.json").read_text())["experiments"]["cpt_off"]
    checked = check_experiments_table((pages / "reports/index.html").read_text(), pages, ["demo", "cpt_off"])
    assert len(checked) == len(record["deltas"]) == 6  # 3 sets × base, sft
    # the experiment's own page: the experiment beside its baseline
    page = (pages / "experiments/cpt_off/reports/report.html").read_text()
    assert len(check_experiments_table(page, pages, ["cpt_off", "demo"])) == 6
    assert any(d["result"] == "worse" and d["excludes_zero"] for d in record["deltas"])
    against = next(t for t in tables(page).values() if t[0][-1].text == "Δ [95% interval] result")
    assert [r[-1].text.split()[0] for r in against[1:]] == [signed(d["delta"]) for d in record["deltas"]]


def test_eval_per_stage_and_funnel_as_the_markdown_report(pages: Path):
    page = (pages / "experiments/demo/reports/report.html").read_text()
    found = tables(page)
    heldout = next(t for t in found.values() if t[0][3].text == "bits_per_byte ↓")
    labels = [r[1].text for r in heldout[1:]]
    assert labels == ["base", "cpt", "sft", "cpt − base", "sft − cpt", "sft − base"]
    report_md = (pages / "reports/compare.md").read_text()
    for row in heldout[4:]:  # the Δ rows: the values compare.md lists for demo
        assert f"| demo | heldout_text | `v12` | {row[1].text} | 12 | {row[3].text} | {row[4].text} |" in report_md
    # the funnel: web's 1,000 input records → 950 kept, 30 rejected (too_short), 15 + 5 duplicates
    assert "input 1,000 → kept 950, rejected 30, duplicates 20" in page
    assert "<title>rejected: too_short: 30 (3.0%)</title>" in page
    assert "CPT loss" in page and "SFT loss" in page


def test_links_are_relative_and_lead_to_the_pages(pages: Path):
    index = pages / "reports/index.html"
    hrefs = re.findall(r'href="([^"]*)"', index.read_text())
    assert "../experiments/cpt_off/reports/report.html" in hrefs
    assert "../experiments/demo/reports/feedback/index.md" in hrefs
    for href in hrefs:
        assert not href.startswith("/") and "://" not in href, href
        if not href.startswith("#") and "feedback" not in href:  # no feedback pages in this datapool
            assert (index.parent / href).is_file(), href


def test_self_contained_no_external_url(pages: Path):
    for page in (pages / "reports/index.html", pages / "experiments/demo/reports/report.html"):
        text = page.read_text()
        assert "http://" not in text and "https://" not in text
        assert not re.search(r"<(link|img|iframe)\b", text) and not re.search(r"<script[^>]*\bsrc=", text)
        assert text.count("<script>") == 1 and "<style>" in text and "<svg" in text


@pytest.fixture
def hostile(datapool: Path) -> Path:
    """A set name and a reject reason made of markup."""
    root = datapool / "experiments/demo"
    results = json.loads((root / "reports/eval/base/results.json").read_text())
    records = item_records("wordnet_mc", "base", 5)
    write_items(root, "base", HOSTILE_SET, records)
    results["sets"][HOSTILE_SET] = {**set_summary("wordnet_mc", records, "v&5"), "kind": "<b>kind</b>"}
    write_json(root / "reports/eval/base/results.json", results)
    stats = json.loads((root / "data/processed/cpt/web.stats.json").read_text())
    stats["rejected"][HOSTILE_REASON] = 4
    stats["input"] += 4
    write_json(root / "data/processed/cpt/web.stats.json", stats)
    compare_report(datapool, ["demo"], datapool / "reports/compare.md")
    dashboard(datapool, ["demo"], datapool / "reports/index.html")
    return datapool


def test_all_text_is_escaped(hostile: Path):
    text = (hostile / "reports/index.html").read_text()
    for raw in (HOSTILE_SET, HOSTILE_REASON, "<b>kind</b>", "v&5"):
        assert raw not in text
    assert "&lt;img src=x onerror=console.error(1)&gt;" in text
    assert "&lt;/script&gt;&lt;script&gt;console.error(&quot;r&amp;d&quot;)&lt;/script&gt;" in text
    keys, rows = experiments_rows(text)
    assert f"score:{HOSTILE_SET}:v&5" in keys  # an attribute, escaped, reads back as it was
    assert rows[0][f"score:{HOSTILE_SET}:v&5"].text == fmt(json.loads(
        (hostile / "experiments/demo/reports/eval/base/results.json").read_text())["sets"][HOSTILE_SET]["score"])


def test_no_comparison_yet_is_a_clear_error(datapool: Path):
    with pytest.raises(StageError, match=r"baselines.json; run `python -m llmrunner.report compare"):
        dashboard(datapool, ["demo"], datapool / "reports/index.html")


# ---------------------------------------------------------------- in a real browser

def test_in_chromium_no_console_error_and_the_numbers(hostile: Path, tmp_path: Path):
    """The page with markup in its data loads without a console message (an unescaped name would log one), and
    the DOM after the script ran holds the numbers."""
    for page in (hostile / "reports/index.html", hostile / "experiments/demo/reports/report.html"):
        loaded = load(page, tmp_path / "profile")
        assert loaded.console == []
        assert "<img" not in loaded.dom
        assert experiments_rows(loaded.dom) == experiments_rows(page.read_text())
    screenshot(hostile / "reports/index.html", tmp_path / "profile", "dashboard-fixture.png", tmp_path)


def _column(rows: list, key: str) -> list[str]:
    return [str(r[key].attrs.get("data-sort") or "") for r in rows]


def test_in_chromium_the_table_sorts(pages: Path, tmp_path: Path):
    index = pages / "reports/index.html"
    _, unsorted = experiments_rows(load(index, tmp_path / "profile").dom)
    assert [(r["experiment"].text, r["stage"].text) for r in unsorted][:3] == [
        ("demo", "base"), ("demo", "cpt"), ("demo", "sft")]
    for key, direction in (("score:heldout_text:v12", "desc"), ("train_loss", "asc"),
                           ("delta:wordnet_mc:v40", "desc"), ("experiment", "asc")):
        loaded = load(index, tmp_path / "profile", sort=key, dir=direction)
        assert loaded.console == []
        keys, rows = experiments_rows(loaded.dom)
        values = _column(rows, key)
        present = [v for v in values if v]
        assert values == present + [""] * (len(values) - len(present))  # missing values last
        order = [float(v) for v in present] if key != "experiment" else present
        assert order == sorted(order, reverse=direction == "desc"), (key, order)
        assert len(set(present)) > 1
        header = tables(loaded.dom)["experiments-table"][0]
        assert header[keys.index(key)].attrs["aria-sort"] == ("descending" if direction == "desc" else "ascending")
        assert sorted(map(str, rows)) == sorted(map(str, unsorted))  # the same rows, reordered
