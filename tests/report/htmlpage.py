"""Reading the dashboard's pages in tests: their tables (from the file, or from the DOM a real headless Chromium
dumps after the page's script ran), the console messages the page logged, and a screenshot kept as an artifact."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest

from llmrunner.report.core import fmt, interval_cell, signed

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


@dataclass
class Cell:
    text: str
    attrs: dict[str, str | None]
    links: list[str] = field(default_factory=list)


class _Tables(HTMLParser):
    """Every <table> of a page: {id (or its position as "#n"): [row: [Cell]]}, header row included."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[Cell]]] = {}
        self.stack: list[list[list[Cell]]] = []
        self.cell: Cell | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            rows: list[list[Cell]] = []
            self.tables[dict(attrs).get("id") or f"#{len(self.tables)}"] = rows
            self.stack.append(rows)
        elif tag == "tr" and self.stack:
            self.stack[-1].append([])
        elif tag in ("td", "th") and self.stack:
            self.cell = Cell("", dict(attrs))
            self.stack[-1][-1].append(self.cell)
        elif tag == "a" and self.cell is not None:
            self.cell.links.append(dict(attrs).get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.stack:
            self.stack.pop()
        elif tag in ("td", "th") and self.cell is not None:
            self.cell.text = " ".join(self.cell.text.split())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.text += data


def tables(html: str) -> dict[str, list[list[Cell]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def experiments_rows(html: str) -> tuple[list[str], list[dict[str, Cell]]]:
    """The experiments table: its column keys (th data-key) and a {key: cell} per body row."""
    header, *body = tables(html)["experiments-table"]
    keys = [str(c.attrs["data-key"]) for c in header]
    return keys, [dict(zip(keys, row)) for row in body]


def results_of(datapool: Path, exp: str, stage: str) -> dict:
    """The "sets" of the stage's results.json ({} when the stage left none)."""
    path = datapool / f"experiments/{exp}/reports/eval/{stage}/results.json"
    return json.loads(path.read_text())["sets"] if path.is_file() else {}


def final_loss(datapool: Path, exp: str, stage: str, key: str) -> float | None:
    """The last `key` value of the stage's metrics.jsonl, read line by line here (not by the code under test)."""
    path = datapool / f"experiments/{exp}/model/{stage}_checkpoints/logs/metrics.jsonl"
    if not path.is_file():
        return None
    values = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a half-written last line
            continue
        values += [record[key]] if key in record else []
    return values[-1] if values else None


def check_experiments_table(html: str, datapool: Path, experiments: list[str]) -> list[dict]:
    """Every row of the experiments table holds fmt() of results.json's scores and of the final losses, and
    Δ vs baseline the delta and interval of baselines.json; a row per experiment × stage. Returns the deltas
    checked."""
    _, rows = experiments_rows(html)
    record = json.loads((datapool / "reports/baselines.json").read_text())["experiments"]
    seen, checked = set(), []
    for row in rows:
        exp, stage = row["experiment"].text, row["stage"].text
        seen.add((exp, stage))
        results = results_of(datapool, exp, stage)
        loss = final_loss(datapool, exp, stage, "loss")
        if not results and loss is None:
            assert {c.text for k, c in row.items() if k not in ("experiment", "stage", "baseline")} == {"stage off"}
            continue
        assert row["train_loss"].text == fmt(loss)
        assert row["val_loss"].text == fmt(final_loss(datapool, exp, stage, "val_loss"))
        for name, summary in results.items():
            cell = row[f"score:{name}:{summary['version']}"]
            assert cell.text == fmt(summary["score"]) and float(cell.attrs["data-sort"]) == summary["score"]
        deltas = [d for d in (record.get(exp) or {}).get("deltas") or [] if d["stage"] == stage]
        for d in deltas:
            text = row[f"delta:{d['set']}:{d['version']}"].text
            assert text.startswith(signed(d["delta"])) and text.endswith(interval_cell(d)), text
        checked += deltas
    assert seen == {(e, s) for e in experiments for s in ("base", "cpt", "sft")}
    return checked


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def chromium() -> str:
    """The headless browser; skips where it is missing, except under CI (CI=true), where that is a failure."""
    found = next((path for name in CHROMIUM if (path := shutil.which(name))), None)
    if found is None:
        message = "Chromium is not installed; Debian: apt-get install --no-install-recommends chromium"
        if in_ci():
            pytest.fail(f"{message} -- CI must run the browser tests", pytrace=False)
        pytest.skip(message)
    return found


@dataclass
class Loaded:
    dom: str
    console: list[str]


def load(page: Path, profile: Path, *extra: str, **query: str) -> Loaded:
    """Open `page` (with `?query`) in headless Chromium: the DOM after its script ran, and every console message
    the page logged (errors and uncaught exceptions included). `extra` are further Chromium flags."""
    url = page.resolve().as_uri() + (f"?{urlencode(query)}" if query else "")
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={profile}", *extra, "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Loaded(proc.stdout, [line for line in proc.stderr.splitlines() if "INFO:CONSOLE" in line])


def screenshot(page: Path, profile: Path, name: str, tmp_path: Path) -> Path:
    """A 1280×900 screenshot of `page`, kept under $PYTEST_ARTIFACTS when set (else `tmp_path`); prints where."""
    folder = Path(os.environ["PYTEST_ARTIFACTS"]) if os.environ.get("PYTEST_ARTIFACTS") else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / name
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
           f"--screenshot={out}", "--window-size=1280,900", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and out.is_file() and out.stat().st_size > 10_000, proc.stderr[-3000:]
    print(f"screenshot: {out}")
    return out
