"""The dashboard of the finished demo, built by the report jobs on a copy: in a real headless Chromium the pages
load without a console message, hold the numbers of the results files, sort, and link to the feedback pages;
and `snakemake --report` shows them beside the training-loss figure."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.demo import copy_finished_demo, planned_jobs, snakemake
from tests.report.htmlpage import check_experiments_table, experiments_rows, load, screenshot

pytestmark = pytest.mark.workflow
EXPERIMENT = ("--config", "experiments=[demo]")


@pytest.fixture(scope="module")
def rebuilt(demo_run: Path, demo_workdir: Path, tmp_path_factory) -> Path:
    """The finished demo copied elsewhere, its report jobs run again there (as after a change of the pages)."""
    copy = copy_finished_demo(demo_workdir, tmp_path_factory, "dashboard")
    for page in (copy / "datapool/reports/index.html", copy / "datapool/experiments/demo/reports/report.html"):
        page.unlink()
    proc = snakemake(copy, "--cores", "2", "--forcerun", "report_experiment", "report_compare", *EXPERIMENT)
    assert planned_jobs(proc) == {"report_experiment": 1, "report_compare": 1, "all": 1}
    return copy


def test_pages_load_clean_and_hold_the_results(rebuilt: Path, tmp_path: Path):
    datapool = rebuilt / "datapool"
    for page in (datapool / "reports/index.html", datapool / "experiments/demo/reports/report.html"):
        loaded = load(page, tmp_path / "profile")
        assert loaded.console == [], loaded.console
        check_experiments_table(loaded.dom, datapool, ["demo"])
        assert "CPT loss" in loaded.dom and "SFT loss" in loaded.dom and "Data funnel" in loaded.dom
        for href in re.findall(r'href="([^"#][^"]*)"', loaded.dom):  # every link leads to a page of the run
            assert "://" not in href and (page.parent / href).is_file(), href
        assert re.search(r'href="[^"]*feedback/index\.md"', loaded.dom)
    screenshot(datapool / "reports/index.html", tmp_path / "profile", "dashboard-demo.png", tmp_path)


def test_the_table_sorts_in_the_browser(rebuilt: Path, tmp_path: Path):
    index = rebuilt / "datapool/reports/index.html"
    keys, _ = experiments_rows(index.read_text())
    score = next(k for k in keys if k.startswith("score:heldout_text:"))
    loaded = load(index, tmp_path / "profile", sort=score, dir="asc")
    assert loaded.console == []
    _, rows = experiments_rows(loaded.dom)
    values = [float(str(r[score].attrs["data-sort"])) for r in rows]
    assert values == sorted(values) and len(set(values)) == 3  # base, cpt and sft scored apart


def test_snakemake_report_shows_the_pages(rebuilt: Path, tmp_path: Path):
    out = tmp_path / "snakemake-report.html"
    proc = snakemake(rebuilt, "--report", str(out), *EXPERIMENT)
    text = proc.stdout + proc.stderr
    for name in ("index.html", "report.html", "loss.png"):
        assert f"Adding {name}" in text, text[-3000:]
    assert out.stat().st_size > 100_000
