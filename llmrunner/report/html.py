"""The dashboard: `<datapool>/reports/index.html` (every experiment of the run) and each experiment's
`reports/report.html` (the experiment beside its baseline), pages a person opens in a browser.

Each page is one self-contained file (inline CSS, SVG and a small script; nothing fetched): a sortable table of
the experiments (a row per experiment × stage: final losses, a column per eval set version, Δ against the
baseline with its 95% interval), the training loss of every experiment overlaid, then per experiment the eval of
each stage with the paired Δ between stages, the data funnel of each dataset and links to the report and the
feedback pages. Everything comes from the data functions of report/core.py and from the comparison's record
(`baselines.json`, written by `python -m llmrunner.report compare` just before), so the pages show the numbers
the Markdown reports show. All text is escaped.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import quote

from llmrunner.errors import StageError
from llmrunner.report.baseline import BASELINES_FILE
from llmrunner.report.core import (
    EVAL_STAGES,
    MISSING,
    OFF,
    TRAIN_STAGES,
    block_deltas,
    counter_total,
    direction,
    experiment_scores,
    fmt,
    interval_cell,
    last_value,
    metric_cell,
    metric_label,
    metrics_log,
    read_eval,
    read_stats,
    read_training_log,
    score_columns,
    signed,
    stage_score,
    version_blocks,
)
from llmrunner.report.paired import verdict
from llmrunner.report.svg import Bar, Series, color, line_chart, stacked_bars

# where each experiment's page goes, under its DATAPOOL_ROOT (beside report.md)
PAGE = Path("reports") / "report.html"
FEEDBACK = Path("reports") / "feedback"
FEEDBACK_PAGES = (("index.md", "feedback"), ("eval.md", "flipped eval items, gains and losses"),
                  ("data.md", "samples of the data that changed"))
KEPT, EXACT, NEAR = "#2ca02c", "#7f7f7f", "#b0b0b0"
REJECTED = ("#d62728", "#ff7f0e", "#e377c2", "#8c564b", "#bcbd22", "#9467bd")


@dataclass(frozen=True)
class Shown:
    """What the pages show of one experiment, read once through report/core.py."""

    name: str
    root: Path
    evals: dict[str, dict | None]
    sets: dict[str, tuple[dict, list]]
    curves: dict[str, dict | None]
    stats: dict[str, dict[str, dict]]
    record: dict  # its entry of baselines.json ({} when the comparison did not cover it)


def load(datapool: Path, name: str, record: dict) -> Shown:
    """One experiment's eval scores, training curves and udatasets stats, as the Markdown reports read them."""
    root = datapool / "experiments" / name
    evals = read_eval(root)
    return Shown(name, root, evals, experiment_scores(root, evals, datapool),
                 {s: read_training_log(metrics_log(root, s)) for s in TRAIN_STAGES},
                 {k: read_stats(root / "data" / "processed" / k) for k in ("cpt", "sft")}, record)


def read_records(datapool: Path) -> dict[str, dict]:
    """{experiment: entry} of the comparison's baselines.json; an error naming the command when it is missing."""
    path = datapool / "reports" / BASELINES_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"dashboard: no {path}; run `python -m llmrunner.report compare --datapool {datapool} "
                         f"...` first (the dashboard shows its comparison with the baselines)") from None
    except ValueError as err:
        raise StageError(f"dashboard: {path} is not JSON ({err}); rebuild it with "
                         f"`python -m llmrunner.report compare`") from None
    experiments = record.get("experiments") if isinstance(record, dict) else None
    if not isinstance(experiments, dict):
        raise StageError(f"dashboard: {path} holds no \"experiments\" object; rebuild it with "
                         f"`python -m llmrunner.report compare`")
    return experiments


# ---------------------------------------------------------------- html pieces

def _attrs(**values: object) -> str:
    """ key="value" pairs, escaped; None leaves the attribute out (class_ is class)."""
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v))}"' for k, v in values.items()
                   if v is not None)


def _link(target: Path, page: Path, text: str) -> str:
    """A link from `page` to `target`, relative (the datapool can move), its text escaped."""
    href = quote(Path(os.path.relpath(target, page.parent)).as_posix())
    return f"<a{_attrs(href=href)}>{escape(text)}</a>"


def _cell(text: str, sort: object = None, class_: str | None = None) -> str:
    """A table cell; `sort` is what the column sorts by (a number, or text; None: sorts last)."""
    key = "" if sort is None else repr(sort) if isinstance(sort, float) else str(sort)
    return f"<td{_attrs(data_sort=key, class_=class_)}>{text}</td>"


def _number(value: object) -> str:
    """A numeric cell: fmt(value), sorting by the value itself."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return _cell(escape(fmt(value)), number, "num")


def _table(headers: list[str], rows: list[str], class_: str | None = None, id_: str | None = None,
           keys: list[str] | None = None) -> str:
    """A table of pre-rendered rows (`<tr>…</tr>`); `keys` name the columns a sortable table sorts by."""
    head = "".join(f"<th{_attrs(data_key=keys[i] if keys else None, scope='col')}>{escape(h)}</th>"
                   for i, h in enumerate(headers))
    return (f"<table{_attrs(class_=class_, id=id_)}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _verdict(result: dict, higher_is_better: bool | None) -> str:
    """The result column: better / worse in bold and colour where the interval excludes 0."""
    if result.get("low") is None:
        return escape(MISSING)
    word = verdict(result, higher_is_better)
    return (f'<strong class="{escape(word)}">{escape(word)}</strong>' if result["excludes_zero"]
            else escape(word))


def _version(version: str | None, earlier: bool) -> str:
    label = f"<code>{escape(version)}</code>" if version else escape(MISSING)
    return f"{label} (earlier)" if earlier else label


def _delta_cell(delta: dict | None) -> str:
    """Δ against the baseline with its interval and result, sorting by Δ."""
    if delta is None:
        return _cell(escape(MISSING))
    text = (f'{escape(signed(delta["delta"]))} {_verdict(delta, delta.get("higher_is_better"))}'
            f'<br><span class="interval">{escape(interval_cell(delta))}</span>')
    return _cell(text, delta["delta"], "num")


# ---------------------------------------------------------------- sections

def experiments_table(shown: list[Shown], page: Path) -> str:
    """A row per experiment × stage: baseline, final losses, each set version's score and Δ against the
    baseline (when some experiment has one); click a header to sort, or open the page with ?sort=KEY&dir=desc."""
    columns = score_columns({s.name: s.sets for s in shown})
    compared = any(s.record.get("status") == "compared" for s in shown)
    headers = ["experiment", "stage", "baseline", "final train loss", "final val loss"]
    keys = ["experiment", "stage", "baseline", "train_loss", "val_loss"]
    for (name, version), (size, metric) in columns.items():
        headers.append(f"{name} {metric} {version or MISSING} ({size} items)")
        keys.append(f"score:{name}:{version}")
        if compared:
            headers.append(f"{name}: Δ vs baseline [95% interval]")
            keys.append(f"delta:{name}:{version}")
    rows, recomputed = [], False
    for s in shown:
        deltas = {(d["set"], d["version"], d["stage"]): d for d in s.record.get("deltas") or []}
        baseline = s.record.get("baseline")
        status = s.record.get("status", MISSING)
        base_cell = (_cell(escape(MISSING)) if not baseline else
                     _cell(escape(baseline) + ("" if status == "compared" else f" ({escape(status)})"), baseline))
        for stage in EVAL_STAGES:
            curve = s.curves.get(stage)
            head = [_cell(_link(s.root / PAGE, page, s.name), s.name), _cell(escape(stage), stage), base_cell]
            if s.evals[stage] is None and curve is None:
                rows.append(f"<tr{_attrs(class_='off')}>{''.join(head)}"
                            f"{_cell(escape(OFF)) * (len(headers) - 3)}</tr>")
                continue
            cells = [_number(last_value(curve["loss"]) if curve else None),
                     _number(last_value(curve["val_loss"]) if curve else None)]
            for name, version in columns:
                mine = stage_score(s.sets, name, stage, version)
                mark = " *" if mine and mine.recomputed else ""
                recomputed |= bool(mark)
                cells.append(_cell(escape(fmt(mine.score) + mark), mine.score, "num") if mine
                             else _cell(escape(MISSING)))
                if compared:
                    cells.append(_delta_cell(deltas.get((name, version, stage))))
            rows.append(f"<tr>{''.join(head + cells)}</tr>")
    notes = ["Click a column header to sort (again to reverse); missing values sort last."]
    if compared:
        notes.append("Δ vs baseline = experiment − baseline on the same stage and the items both scored, with the "
                     "95% paired bootstrap interval; <strong>better</strong> or <strong>worse</strong> only where "
                     "the interval excludes 0.")
    if recomputed:
        notes.append("*: recomputed on this version's items from a run scored on a later (grown) version.")
    return (f"<h2 id=\"experiments\">Experiments</h2>"
            f"{_table(headers, rows, 'sortable', 'experiments-table', keys)}"
            f"<p class=\"note\">{' '.join(notes)} {escape(_legend())}</p>")


def _legend() -> str:
    return f"\"{OFF}\": the stage left no output (switched off, or not run yet); \"{MISSING}\": not recorded."


def loss_section(shown: list[Shown]) -> str:
    """One chart per training stage, every experiment's train loss (line) and validation loss (dots) overlaid."""
    charts = []
    for stage in TRAIN_STAGES:
        series = []
        for i, s in enumerate(shown):
            curve = s.curves.get(stage)
            if curve and curve["loss"]:
                series.append(Series(f"{s.name} train", color(i), curve["loss"]))
            if curve and curve["val_loss"]:
                series.append(Series(f"{s.name} validation", color(i), curve["val_loss"], dots=True))
        charts.append(line_chart(f"{stage.upper()} loss", series, "iteration", "loss",
                                 f"{OFF} (no training log)"))
    return ("<h2 id=\"loss\">Training loss</h2><div class=\"charts\">" + "".join(charts) + "</div>"
            "<p class=\"note\">From <code>model/&lt;stage&gt;_checkpoints/logs/metrics.jsonl</code>: train loss "
            "per logged iteration (lines), validation loss (dots).</p>")


def _set_tables(s: Shown) -> list[str]:
    """Per eval set, as report.md has it: each stage's score per version, then the paired Δ between stages."""
    parts = []
    for name, (summaries, scored) in s.sets.items():
        first = next(iter(summaries.values()))
        hib = first.get("higher_is_better") if isinstance(first.get("higher_is_better"), bool) else None
        rows = []
        for version, block in version_blocks(scored).items():
            earlier = all(x.recomputed for x in block)
            for x in block:
                template = MISSING if x.chat_template is None else "yes" if x.chat_template else "no"
                label = f"{x.model} (recomputed)" if x.recomputed else x.model
                rows.append(f"<tr>{_cell(_version(version, earlier))}{_cell(escape(label))}{_number(x.items)}"
                            f"{_number(x.score)}{_cell('')}{_cell('')}{_cell(escape(template))}</tr>")
            for label, result in block_deltas(block):
                rows.append(f"<tr class=\"delta\">{_cell(_version(version, earlier))}{_cell(escape(label))}"
                            f"{_number(result['items'])}{_cell(escape(signed(result['delta'])), None, 'num')}"
                            f"{_cell(escape(interval_cell(result)))}{_cell(_verdict(result, hib))}{_cell('')}</tr>")
        headers = ["version", "model / Δ", "items", direction(first), "95% interval", "result", "chat template"]
        parts += [f"<h4>{escape(name)} ({escape(str(first.get('kind', MISSING)))})</h4>",
                  _table(headers, rows, "set")]
        metrics = list(dict.fromkeys(k for m in summaries.values() for k in (m.get("metrics") or {})
                                     if not k.endswith("_stderr")))
        if metrics:
            rows = [f"<tr>{_cell(escape(model))}"
                    + "".join(_cell(escape(metric_cell(m.get("metrics") or {}, k)), None, "num") for k in metrics)
                    + "</tr>" for model, m in summaries.items()]
            parts.append(_table(["model", *map(metric_label, metrics)], rows, "metrics"))
    return parts


def eval_section(s: Shown) -> str:
    """The experiment's eval per stage and set, and its comparison with its baseline (all rows of the record)."""
    parts = ["<h3>Evaluation per stage</h3>"]
    if not any(s.evals.values()):
        parts.append(f"<p>{escape(OFF)}: no <code>reports/eval/*/results.json</code>.</p>")
    else:
        parts.append("<p class=\"note\">Each stage's score on the set version it was scored on, then Δ = later − "
                     "earlier on the same items with the 95% paired bootstrap interval; <strong>better</strong> or "
                     "<strong>worse</strong> only where the interval excludes 0 (docs/reports.md).</p>")
        parts += _set_tables(s) or ["<p>No eval set scores in results.json (<code>sets</code>).</p>"]
    baseline, status = s.record.get("baseline"), s.record.get("status")
    if baseline:
        parts.append(f"<h3>Against the baseline {escape(baseline)}</h3>")
        if status != "compared":
            parts.append(f"<p>{escape(str(status))}.</p>")
        else:
            rows = [f"<tr>{_cell(escape(d['set']))}{_cell(_version(d['version'], d['earlier']))}"
                    f"{_cell(escape(d['stage']))}{_number(d['items'])}{_number(d['score'])}"
                    f"{_number(d['baseline_score'])}{_delta_cell(d)}</tr>" for d in s.record.get("deltas") or []]
            parts.append(_table(["set", "version", "stage", "items", "score", "baseline's",
                                 "Δ [95% interval] result"], rows, "against") if rows
                         else "<p>No set version scored by both.</p>")
            diff = s.record.get("config_diff")
            parts.append("<p>What differs in the resolved configs:</p>" + (
                "<p>The baseline's resolved config is not recorded.</p>" if diff is None else
                "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in diff) + "</ul>" if diff else
                "<p>No difference in the resolved configs.</p>"))
    return "".join(parts)


def funnel(dataset: str, stats: dict, reasons: list[str]) -> Bar | None:
    """A dataset's udatasets accounting as bar segments: kept, rejected by reason, duplicates (exact, near);
    `reasons` (every reject reason of the chart) give each reason the same colour in every bar."""
    kept, rejected, duplicates = stats.get("kept"), stats.get("rejected"), stats.get("duplicates")
    segments = [("kept", kept, KEPT)] if isinstance(kept, int) else []
    if isinstance(rejected, dict):
        segments += [(f"rejected: {reason}", n, REJECTED[reasons.index(reason) % len(REJECTED)])
                     for reason, n in sorted(rejected.items()) if isinstance(n, int)]
    elif isinstance(rejected, int):
        segments.append(("rejected", rejected, REJECTED[0]))
    if isinstance(duplicates, dict):
        segments += [(f"{kind} duplicates", duplicates[kind], shade) for kind, shade in (("exact", EXACT),
                     ("near", NEAR)) if isinstance(duplicates.get(kind), int)]
    if not any(n for _, n, _ in segments):
        return None
    note = (f"input {fmt(stats.get('input'))} → kept {fmt(kept)}, rejected {fmt(counter_total(rejected))}, "
            f"duplicates {fmt(counter_total(duplicates))}")
    return Bar(dataset, segments, note)


def funnel_section(s: Shown) -> str:
    """Per kind, a bar per dataset: what udatasets kept of its input and why it dropped the rest."""
    parts = ["<h3>Data funnel (udatasets)</h3>"]
    for kind, found in s.stats.items():
        reasons = sorted({r for stats in found.values() if isinstance(stats.get("rejected"), dict)
                          for r in stats["rejected"]})
        bars = [bar for dataset, stats in found.items() if (bar := funnel(dataset, stats, reasons))]
        if bars:
            parts.append(stacked_bars(f"{kind.upper()} datasets: input → kept / rejected / duplicates", bars))
    if len(parts) == 1:
        parts.append(f"<p>{escape(OFF)}: no <code>data/processed/*/*.stats.json</code>.</p>")
    return "".join(parts)


def links(s: Shown, page: Path) -> str:
    """The experiment's pages: this dashboard page, its Markdown report, the feedback pages."""
    items = [_link(s.root / PAGE, page, "dashboard page"), _link(s.root / "reports" / "report.md", page,
                                                                 "report.md")]
    items += [f"{_link(s.root / FEEDBACK / name, page, f'feedback/{name}')} ({escape(what)})"
              for name, what in FEEDBACK_PAGES]
    return "<ul class=\"links\">" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def experiment_section(s: Shown, page: Path) -> str:
    return (f"<section{_attrs(id='exp-' + s.name)}><h2>{escape(s.name)}</h2>{links(s, page)}"
            f"{eval_section(s)}{funnel_section(s)}</section>")


# ---------------------------------------------------------------- page

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1600px; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort="ascending"]::after { content: " ▲"; }
table.sortable th[aria-sort="descending"]::after { content: " ▼"; }
tr.off td { color: #888; } tr.delta td { background: #fafafa; }
.interval { color: #555; } .better { color: #1a7f37; } .worse { color: #b3261e; }
.note { color: #555; font-size: 13px; max-width: 70em; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
svg.chart { background: #fff; border: 1px solid #eee; }
"""

# Sorting, in the page (no library): a header click sorts by its cells' data-sort (numbers as numbers, text as
# text, empty last); ?sort=<data-key>&dir=asc|desc sorts the experiments table when the page opens.
SCRIPT = """
(function () {
  "use strict";
  function sortBy(table, index, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = r1.cells[index].getAttribute("data-sort") || "";
      var b = r2.cells[index].getAttribute("data-sort") || "";
      if (a === "" || b === "") { return (a === "") - (b === ""); }
      var x = Number(a), y = Number(b);
      var order = isFinite(x) && isFinite(y) ? x - y : a.localeCompare(b);
      return dir === "descending" ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.setAttribute("aria-sort", i === index ? dir : "none");
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () {
        sortBy(table, i, th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending");
      });
    });
  });
  var params = new URLSearchParams(window.location.search);
  var table = document.getElementById("experiments-table");
  if (table && params.get("sort")) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      if (th.getAttribute("data-key") === params.get("sort")) {
        sortBy(table, i, params.get("dir") === "desc" ? "descending" : "ascending");
      }
    });
  }
})();
"""


def page_html(title: str, nav: list[str], body: list[str]) -> str:
    """A whole page: the head with the inline style, the body, the sorting script."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body>"
            f"<h1>{escape(title)}</h1><nav>{''.join(nav)}</nav>\n" + "\n".join(body)
            + f"\n<script>{SCRIPT}</script>\n</body></html>\n")


def dashboard(datapool: Path, experiments: list[str], out: Path) -> list[Path]:
    """Write `out` (the run's index.html) and each experiment's reports/report.html; returns the pages written.

    Reads the comparison's record, `<datapool>/reports/baselines.json`: run `compare` first."""
    records = read_records(datapool)
    shown = {name: load(datapool, name, records.get(name) or {}) for name in experiments}
    written = []
    everyone = list(shown.values())
    nav = ["<a href=\"#experiments\">Experiments</a>", "<a href=\"#loss\">Training loss</a>",
           *(f"<a{_attrs(href='#exp-' + s.name)}>{escape(s.name)}</a>" for s in everyone),
           _link(datapool / "reports" / "compare.md", out, "compare.md")]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page_html(f"LLMRunner experiments: {', '.join(experiments)}", nav,
                             [experiments_table(everyone, out), loss_section(everyone),
                              *(experiment_section(s, out) for s in everyone)]), encoding="utf-8")
    written.append(out)
    for s in everyone:
        page = s.root / PAGE
        baseline = s.record.get("baseline")
        beside = [s]
        if baseline and baseline != s.name and (datapool / "experiments" / baseline).is_dir():
            beside.append(shown.get(baseline) or load(datapool, baseline, records.get(baseline) or {}))
        nav = ["<a href=\"#experiments\">Experiments</a>", "<a href=\"#loss\">Training loss</a>",
               f"<a{_attrs(href='#exp-' + s.name)}>Evaluation and data</a>",
               _link(out, page, "all experiments"), _link(datapool / "reports" / "compare.md", page, "compare.md")]
        title = f"Experiment {s.name}" + (f" against its baseline {baseline}" if baseline else "")
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(page_html(title, nav, [experiments_table(beside, page), loss_section(beside),
                                               experiment_section(s, page)]), encoding="utf-8")
        written.append(page)
    return written
