"""Markdown reports from whatever stage outputs exist: one experiment, or several side by side.

Every reader tolerates a missing or half-written file: a stage that is off (or has not run) shows
as "stage off", a missing value as "—". The report never fails because a stage left nothing.
"""
from __future__ import annotations

import json
import logging
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from llmrunner.errors import StageError
from llmrunner.evalsets import aggregate, recorded_versions
from llmrunner.layout import ExperimentLayout
from llmrunner.report.baseline import BASELINES_FILE, baseline_of, config_diff, read_config
from llmrunner.report.paired import holds, paired_delta, read_records, subset, verdict
from llmrunner.report.plots import plot_losses

log = logging.getLogger(__name__)

EVAL_STAGES = ("base", "cpt", "sft")
TRAIN_STAGES = ("cpt", "sft")
# the paired differences a report shows, (later, earlier): Δ = later − earlier
PAIRS = (("cpt", "base"), ("sft", "cpt"), ("sft", "base"))
MISSING = "—"
OFF = "stage off"
# direction marks for lm-eval's aggregate metrics (a set's main metric says its own direction)
ARROWS = {"acc": "↑", "acc_norm": "↑", "word_perplexity": "↓", "byte_perplexity": "↓", "bits_per_byte": "↓"}
LEGEND = f"\"{OFF}\": the stage left no output (switched off, or not run yet); \"{MISSING}\": value not recorded."


# ---------------------------------------------------------------- reading

def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, or None when the file is missing or unreadable (logged)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("skipping %s: %s", path, err)
        return None
    if not isinstance(value, dict):
        log.warning("skipping %s: not a JSON object", path)
        return None
    return value


def read_stats(folder: Path) -> dict[str, dict]:
    """{dataset: stats} from `folder/<dataset>.stats.json`, sorted by dataset name."""
    found = {}
    for path in sorted(folder.glob("*.stats.json")):
        stats = read_json(path)
        if stats is not None:
            found[path.name[: -len(".stats.json")]] = stats
    return found


def read_training_log(path: Path) -> dict[str, list] | None:
    """Training lines of metrics.jsonl: {"loss": [(it, v)], "val_loss": [(it, v)], "lr", "tokens_per_s"}.

    None when there is no log. A partial last line (training still running, or killed) is skipped.
    """
    if not path.is_file():
        return None
    curve: dict[str, list] = {"loss": [], "val_loss": [], "lr": [], "tokens_per_s": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
            continue
        for key, values in curve.items():
            if _is_number(record.get(key)):
                values.append((record["iteration"], float(record[key])))
    return curve


def metrics_log(root: Path, stage: str) -> Path:
    return root / "model" / f"{stage}_checkpoints" / "logs" / "metrics.jsonl"


def read_eval(root: Path) -> dict[str, dict | None]:
    """{stage: results.json or None} for base, cpt, sft."""
    return {stage: read_json(root / "reports" / "eval" / stage / "results.json") for stage in EVAL_STAGES}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def last_value(points: list[tuple[int, float]]) -> float | None:
    """The value of a curve's last point (None: no point)."""
    return points[-1][1] if points else None


# ---------------------------------------------------------------- formatting

def fmt(value: object) -> str:
    """A table cell: counts with thousands separators, floats to 4 significant digits, None as —."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= 1e5:
            return f"{value:.3e}"
        return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table; cells go through fmt() unless they are already strings."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def counter_total(value: object) -> int | None:
    """The total of a stats counter that may be a number or a {reason: n} dict."""
    if isinstance(value, dict):
        return sum(v for v in value.values() if _is_number(v))
    return value if _is_number(value) else None


def _by_reason(value: object) -> str:
    if not isinstance(value, dict) or not value:
        return MISSING
    return ", ".join(f"{k}: {fmt(v)}" for k, v in sorted(value.items()))


def metric_cell(metrics: dict, name: str) -> str:
    """`value ± stderr` when lm-eval gave a numeric standard error."""
    value, stderr = metrics.get(name), metrics.get(f"{name}_stderr")
    if not _is_number(value):
        return MISSING
    # two significant digits are all a standard error supports
    return f"{fmt(value)} ± {stderr:.2g}" if _is_number(stderr) else fmt(value)


def metric_label(name: str) -> str:
    return f"{name} {ARROWS[name]}" if name in ARROWS else name


# ---------------------------------------------------------------- experiment report

def _data_row(kind: str, name: str, s: dict) -> list[object]:
    duplicates = s.get("duplicates") if isinstance(s.get("duplicates"), dict) else {}
    total_dups, n_input = counter_total(duplicates), s.get("input")
    rate = (f"{total_dups / n_input:.1%}" if _is_number(total_dups) and _is_number(n_input) and n_input
            else MISSING)
    return [kind, name, n_input, s.get("kept"), counter_total(s.get("rejected")), duplicates.get("exact"),
            duplicates.get("near"), rate, s.get("augmented"), _by_reason(s.get("rejected"))]


def _summed(stats: list[dict]) -> dict:
    """The stats of several datasets added up (the kind's total row)."""
    total: dict = {"input": 0, "kept": 0, "augmented": 0, "rejected": {}, "duplicates": {}}
    for s in stats:
        for key in ("input", "kept", "augmented"):
            total[key] = total[key] + s[key] if _is_number(total[key]) and _is_number(s.get(key)) else None
        for key in ("rejected", "duplicates"):
            for reason, n in (s.get(key) or {}).items():
                if _is_number(n):
                    total[key][reason] = total[key].get(reason, 0) + n
    return total


def _length_table(unit: str, by_dataset: dict[str, dict]) -> list[str]:
    """Kept records per power-of-two length bin, one column per dataset, with a bar scaled to its largest bin."""
    counts = {d: {b["from"]: (b["to"], b["records"]) for b in h.get("histogram", [])} for d, h in by_dataset.items()}
    bins = sorted({lo: hi for c in counts.values() for lo, (hi, _) in c.items()}.items())
    rows = []
    for lo, hi in bins:
        cells = []
        for c in counts.values():
            n = c.get(lo, (hi, 0))[1]
            peak = max((m for _, m in c.values()), default=0)
            cells.append(f"{fmt(n)} {'█' * round(20 * n / peak) if peak else ''}".rstrip())
        rows.append([f"{fmt(lo)}–{fmt(hi)}", *cells])
    means = [fmt(h.get("mean")) for h in by_dataset.values()]
    return [md_table([unit, *by_dataset], rows + [["mean", *means]]), ""]


def _data_section(root: Path) -> list[str]:
    lines = ["## Data cleaning (udatasets)", ""]
    rows, across, lengths = [], [], []
    for kind in ("cpt", "sft"):
        found = read_stats(root / "data" / "processed" / kind)
        rows += [_data_row(kind, dataset, s) for dataset, s in found.items()]
        if len(found) > 1:
            rows.append(_data_row(kind, "total", _summed(list(found.values()))))
        for dataset, s in found.items():
            for other, n in (s.get("duplicates_by_dataset") or {}).items():
                if other != dataset and isinstance(n, dict):
                    across.append(f"- {kind} `{dataset}`: {fmt(n.get('exact'))} exact and {fmt(n.get('near'))} near "
                                  f"duplicates of records kept in `{other}`")
        for unit in ("chars", "tokens"):
            histograms = {d: (s.get("lengths") or {}).get(unit) for d, s in found.items()}
            histograms = {d: h for d, h in histograms.items() if isinstance(h, dict) and h.get("histogram")}
            if histograms:
                label = "characters" if unit == "chars" else "tokens"
                lengths += [f"{kind.upper()}: kept records by length in {label}", ""]
                lengths += _length_table(label, histograms)
    if not rows:
        return lines + [f"{OFF}: no `data/processed/*/*.stats.json`.", ""]
    headers = ["kind", "dataset", "input", "kept", "rejected", "exact dups", "near dups", "dup rate", "augmented",
               "rejected by reason"]
    lines += [md_table(headers, rows), ""]
    if across:
        lines += ["De-duplication runs across the datasets of a kind (in pipeline.yaml order):", "", *across, ""]
    return lines + lengths


def _tokenize_section(root: Path) -> list[str]:
    lines = ["## Tokenization", ""]
    cpt = read_stats(root / "data" / "tokenized" / "cpt")
    sft = read_stats(root / "data" / "tokenized" / "sft")
    if cpt:
        rows = [[d, s.get("documents"), s.get("tokens"), s.get("empty")] for d, s in cpt.items()]
        lines += ["CPT", "", md_table(["dataset", "documents", "tokens", "empty"], rows), ""]
    else:
        lines += [f"CPT: {OFF}.", ""]
    if sft:
        rows = []
        for d, s in sft.items():
            share = (s["target_tokens"] / s["tokens"] if _is_number(s.get("target_tokens"))
                     and _is_number(s.get("tokens")) and s["tokens"] else None)
            rows.append([d, s.get("conversations"), s.get("tokens"), s.get("target_tokens"),
                         MISSING if share is None else f"{share:.1%}", s.get("truncated"), s.get("dropped")])
        headers = ["dataset", "conversations", "tokens", "target tokens", "target share", "truncated", "dropped"]
        lines += ["SFT", "", md_table(headers, rows), ""]
    else:
        lines += [f"SFT: {OFF}.", ""]
    return lines


def _training_section(curves: dict[str, dict | None], png_link: str) -> list[str]:
    rows = []
    for stage, c in curves.items():
        if not c:
            rows.append([stage, OFF, MISSING, MISSING, MISSING, MISSING, MISSING, MISSING])
            continue
        last_it = max((p[0] for k in ("loss", "val_loss") for p in c[k]), default=None)
        speed = statistics.median(v for _, v in c["tokens_per_s"]) if c["tokens_per_s"] else None
        lowest = min((v for _, v in c["loss"]), default=None)
        rows.append([stage, len(c["loss"]), last_it, last_value(c["loss"]), lowest, last_value(c["val_loss"]),
                     last_value(c["lr"]), speed])
    headers = ["stage", "steps logged", "last iteration", "final loss", "min loss", "final val loss",
               "final lr", "median tokens/s"]
    return ["## Training", "", md_table(headers, rows), "", f"![Training loss]({png_link})", ""]


def _parity_section(root: Path) -> list[str]:
    rows = []
    for direction, folder in (("hf2mg", root / "model" / "mg"), ("mg2hf", root / "model" / "hf")):
        for path in sorted(folder.glob("*/parity.json")):
            p = read_json(path) or {}
            rows.append([direction, str(path.parent.relative_to(root)), p.get("max_abs_logit_diff"),
                         p.get("tolerance"), p.get("ok"), p.get("dtype")])
            bf16 = p.get("bfloat16")  # mg2hf of a bfloat16 export: also run in bf16, relative tolerance
            if isinstance(bf16, dict):
                rows.append([direction, str(path.parent.relative_to(root)), bf16.get("max_abs_logit_diff"),
                             f"{fmt(bf16.get('tolerance'))} × max \\|logit\\|", bf16.get("ok"), "bfloat16"])
    if not rows:
        return ["## Conversion parity", "", f"{OFF}: no `model/*/*/parity.json`.", ""]
    headers = ["conversion", "output", "max abs logit diff", "tolerance", "ok", "dtype"]
    return ["## Conversion parity", "", md_table(headers, rows), ""]


# ---------------------------------------------------------------- eval sets: scores, versions, Δ

@dataclass(frozen=True)
class Scored:
    """One model's score on one version of a set: as its eval scored it, or recomputed from its items on
    the items of an earlier version of the set (a grown set), so that it can be set against older runs."""

    model: str
    version: str | None
    items: int | None
    score: float | None
    records: list[dict] | None
    recomputed: bool
    chat_template: bool | None


def set_summaries(results: dict[str, dict | None]) -> dict[str, dict[str, dict]]:
    """{set: {model: results.json's "sets" entry}} over the models' results, sets in first-seen order."""
    found: dict[str, dict[str, dict]] = {}
    for model, result in results.items():
        for name, summary in ((result or {}).get("sets") or {}).items():
            if isinstance(summary, dict):
                found.setdefault(name, {})[model] = summary
    return found


def items_file(root: Path, stage: str, name: str) -> Path:
    """The eval step's per-item scores of set `name` for `stage`."""
    return root / "reports" / "eval" / stage / "items" / f"{name}.jsonl"


def version_ids(datapool: Path | None, name: str, scored: list[tuple[dict, list[dict] | None]]) -> dict[str, list]:
    """{version: item ids} of set `name`: the versions the eval step recorded under the datapool, and those of
    the given (summary, records) whose items files tell their ids."""
    versions: dict[str, list] = {}
    if datapool is not None:
        try:
            versions = {r["version"]: r["ids"] for r in recorded_versions(str(datapool), name)}
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("skipping the recorded versions of %s: %s", name, err)
    for summary, records in scored:
        if records and summary.get("version") and summary["version"] not in versions:
            versions[summary["version"]] = [r["id"] for r in records]
    return versions


def scores_of(model: str, summary: dict, records: list[dict] | None, versions: dict[str, list]) -> list[Scored]:
    """The model's score on the version it was scored on, then on each smaller version of `versions` whose
    items it holds all of (recomputed from its items)."""
    version, template = summary.get("version"), summary.get("chat_template")
    score = summary.get("score") if _is_number(summary.get("score")) else None
    found = [Scored(model, version, summary.get("items"), score, records, False, template)]
    for earlier, ids in versions.items():
        if records and earlier != version and len(ids) < len(records) and holds(records, ids):
            part = subset(records, ids)
            found.append(Scored(model, earlier, len(part), aggregate(part), part, True, template))
    return found


def version_blocks(scored: list[Scored]) -> dict[str | None, list[Scored]]:
    """Scores grouped by version: the versions the models were scored on first, then the earlier versions
    recomputed from their items (most items first). Only scores of one version are ever set side by side."""
    own = list(dict.fromkeys(s.version for s in scored if not s.recomputed))
    earlier = sorted({s.version for s in scored if s.recomputed} - set(own),
                     key=lambda v: -max(s.items or 0 for s in scored if s.version == v))
    return {v: [s for s in scored if s.version == v] for v in own + earlier}


def delta_of(a: Scored, b: Scored) -> dict:
    """b − a on one version: the paired bootstrap when both left per-item scores, else the bare difference."""
    if a.records and b.records:
        return paired_delta(a.records, b.records)
    delta = b.score - a.score if a.score is not None and b.score is not None else None
    return {"delta": delta, "low": None, "high": None, "excludes_zero": False, "items": None}


def block_deltas(block: list[Scored]) -> list[tuple[str, dict]]:
    """("cpt − base", Δ) for each pair of PAIRS that the block scores."""
    by_model = {s.model: s for s in block}
    return [(f"{b} − {a}", delta_of(by_model[a], by_model[b])) for b, a in PAIRS
            if a in by_model and b in by_model]


def signed(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.4g}"


def interval_cell(result: dict) -> str:
    if result["low"] is None:
        return "no per-item scores" if result["delta"] is not None else MISSING
    return f"[{signed(result['low'])}, {signed(result['high'])}]"


def result_cell(result: dict, higher_is_better: bool | None) -> str:
    """The mark of a Δ whose interval excludes zero: **better** or **worse** (the first model of the pair)."""
    if result["low"] is None:
        return MISSING
    word = verdict(result, higher_is_better)
    return f"**{word}**" if result["excludes_zero"] else word


def direction(summary: dict) -> str:
    """The set's main metric with its arrow (↑ higher is better, ↓ lower is better)."""
    hib = summary.get("higher_is_better")
    arrow = "" if not isinstance(hib, bool) else " ↑" if hib else " ↓"
    return f"{summary.get('metric') or 'score'}{arrow}"


def version_cell(version: str | None, recomputed: bool) -> str:
    label = f"`{version}`" if version else MISSING
    return f"{label} (earlier)" if recomputed else label


def _set_table(name: str, summaries: dict[str, dict], scored: list[Scored]) -> list[str]:
    first = next(iter(summaries.values()))
    hib = first.get("higher_is_better") if isinstance(first.get("higher_is_better"), bool) else None
    rows, paired = [], {}
    for version, block in version_blocks(scored).items():
        earlier = all(s.recomputed for s in block)
        for s in block:
            label = f"{s.model} (recomputed)" if s.recomputed else s.model
            template = MISSING if s.chat_template is None else "yes" if s.chat_template else "no"
            rows.append([version_cell(version, earlier), label, s.items, s.score, "", "", template])
        for label, result in block_deltas(block):
            paired.setdefault(label, version)
            rows.append([version_cell(version, earlier), label, result["items"], signed(result["delta"]),
                         interval_cell(result), result_cell(result, hib), ""])
    headers = ["version", "model / Δ", "items", direction(first), "95% interval", "result", "chat template"]
    lines, notes = [f"### {name} ({first.get('kind', MISSING)})", "", md_table(headers, rows), ""], []
    for b, a in PAIRS:
        va, vb = (summaries[m].get("version") if m in summaries else None for m in (a, b))
        if a in summaries and b in summaries and va != vb:
            shared = paired.get(f"{b} − {a}")
            where = f"compared only on the items of `{shared}` (rows above)" if shared else "not compared"
            notes.append(f"- {b} and {a} were scored on different versions (`{vb}`, `{va}`): {where}.")
    lines += notes + [""] if notes else []
    metrics = list(dict.fromkeys(k for s in summaries.values() for k in (s.get("metrics") or {})
                                 if not k.endswith("_stderr")))
    if metrics:
        rows = [[model, *[metric_cell(s.get("metrics") or {}, k) for k in metrics]] for model, s in summaries.items()]
        lines += ["lm-eval's aggregate metrics:", "", md_table(["model", *map(metric_label, metrics)], rows), ""]
    return lines


def experiment_scores(root: Path, results: dict[str, dict | None],
                      datapool: Path | None) -> dict[str, tuple[dict[str, dict], list[Scored]]]:
    """{set: ({stage: summary}, scores)} for an experiment's stages, earlier versions recomputed."""
    found = {}
    for name, summaries in set_summaries(results).items():
        records = {stage: read_records(items_file(root, stage, name)) for stage in summaries}
        versions = version_ids(datapool, name, [(summaries[s], records[s]) for s in summaries])
        scored = [x for stage, s in summaries.items() for x in scores_of(stage, s, records[stage], versions)]
        found[name] = (summaries, scored)
    return found


def _contamination_section(root: Path) -> list[str]:
    """The training data × eval set pairs with hits in reports/contamination.json, or that there are none."""
    path = root / "reports" / "contamination.json"
    lines = ["## Contamination (training data vs eval sets)", ""]
    report = read_json(path) if path.is_file() else None
    if report is None:
        return lines + [f"{OFF}: no `reports/contamination.json`.", ""]
    pairs = report.get("pairs") if isinstance(report.get("pairs"), list) else []
    hits = [p for p in pairs if isinstance(p, dict) and _is_number(p.get("records_hit")) and p["records_hit"] > 0]
    ngram = f"runs of {report['ngram']} words" if _is_number(report.get("ngram")) else "word n-grams"
    if not hits:
        return lines + [f"No overlap found between the training data and the eval sets ({ngram}; {len(pairs)} "
                        f"dataset × set pairs checked).", ""]
    keys = list(dict.fromkeys(k for p in hits for k in p))
    rows = [[", ".join(map(str, p[k][:5])) if isinstance(p.get(k), list) else p.get(k) for k in keys] for p in hits]
    return lines + [f"Training records that share {ngram} with an eval set's items (pairs with no hit left out):",
                    "", md_table(keys, rows), ""]


def _eval_section(root: Path, evals: dict[str, dict | None], datapool: Path | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if not any(evals.values()):
        return lines + [f"{OFF}: no `reports/eval/*/results.json`.", ""]
    lines += ["One table per eval set: each model's score on the set version it was scored on, then the paired "
              "differences Δ = later − earlier with their 95% bootstrap interval (docs/reports.md); **better** or "
              "**worse** only where the interval excludes 0. Rows marked (recomputed) score an earlier version "
              "of a grown set on that version's items.", ""]
    scores = experiment_scores(root, evals, datapool)
    for name, (summaries, scored) in scores.items():
        lines += _set_table(name, summaries, scored)
    if not scores:
        lines += ["No eval set scores in results.json (`sets`).", ""]
    lines += ["Models evaluated (per-item scores: `reports/eval/<stage>/items/<set>.jsonl`):", ""]
    for stage, r in evals.items():
        if r:
            limit = (r.get("config") or {}).get("limit")
            lines.append(f"- {stage}: `{r.get('model', MISSING)}`" + (f" (limit {limit})" if limit else ""))
    return lines + [""]


def experiment_report(root: Path, out: Path, datapool: Path | None) -> str:
    """Write `out` (Markdown) and the loss plot (under root/reports/) for the experiment at `root` (DATAPOOL_ROOT);
    `datapool` holds the recorded eval set versions (None: only the versions the stages were scored on)."""
    if not root.is_dir():
        raise StageError(f"report: experiment folder {root} does not exist; pass the experiment's DATAPOOL_ROOT "
                         f"(<datapool>/experiments/<exp>) as --root")
    curves = {s: read_training_log(metrics_log(root, s)) for s in TRAIN_STAGES}
    png = plot_losses(curves, Path(ExperimentLayout(str(root)).loss_plot()))
    lines = [f"# Experiment report: {root.name}", "", f"DATAPOOL_ROOT: `{root}`. {LEGEND}", ""]
    lines += _data_section(root) + _tokenize_section(root)
    lines += _training_section(curves, os.path.relpath(png, out.parent))
    lines += _parity_section(root) + _contamination_section(root) + _eval_section(root, read_eval(root), datapool)
    text = "\n".join(lines).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text


# ---------------------------------------------------------------- comparison

def score_columns(sets: dict[str, dict[str, tuple[dict, list[Scored]]]]) -> dict[tuple[str, str | None],
                                                                              tuple[int, str]]:
    """{(set, version): (items, metric with its arrow)} for every set version some experiment was scored on (not
    recomputed), in page order: sets as first seen, each set's versions fewest items (earliest) first. `sets` is
    {experiment: experiment_scores(...)}; a comparison puts one column per entry, never two versions in one."""
    columns: dict[tuple[str, str | None], tuple[int, str]] = {}
    for found in sets.values():
        for name, (summaries, scored) in found.items():
            for s in scored:
                if not s.recomputed:
                    size = max(s.items or 0, columns.get((name, s.version), (0, ""))[0])
                    columns[(name, s.version)] = (size, direction(summaries[s.model]))
    order = list(dict.fromkeys(name for name, _ in columns))
    return {k: columns[k] for k in sorted(columns, key=lambda k: (order.index(k[0]), columns[k][0]))}


def stage_score(found: dict[str, tuple[dict, list[Scored]]], name: str, stage: str,
                version: str | None) -> Scored | None:
    """The stage's score on one version of set `name`, from an experiment_scores() result (None: not scored)."""
    return next((s for s in found.get(name, ({}, []))[1] if s.model == stage and s.version == version), None)


def compare_report(datapool: Path, experiments: list[str], out: Path) -> str:
    """Write `out`: one row per experiment × stage with its final losses and a column per eval set version
    (never two versions in one column), then each experiment's paired differences."""
    roots = {exp: datapool / "experiments" / exp for exp in experiments}
    evals = {exp: read_eval(root) for exp, root in roots.items()}
    sets = {exp: experiment_scores(roots[exp], evals[exp], datapool) for exp in experiments}
    columns = score_columns(sets)
    keys = list(columns)
    rows, recomputed = [], False
    for exp, root in roots.items():
        for stage in EVAL_STAGES:
            result = evals[exp][stage]
            curve = read_training_log(metrics_log(root, stage)) if stage in TRAIN_STAGES else None
            if result is None and curve is None:
                rows.append([exp, stage, *[OFF] * (3 + len(keys))])
                continue
            losses = [last_value(curve["loss"]), last_value(curve["val_loss"])] if curve else [MISSING, MISSING]
            cells = []
            for name, version in keys:
                mine = stage_score(sets[exp], name, stage, version)
                recomputed |= bool(mine) and mine.recomputed
                cells.append(MISSING if not mine else f"{fmt(mine.score)}{' *' if mine.recomputed else ''}")
            # results from runs with different limits are not comparable: show the limit beside them
            limit = ((result.get("config") or {}).get("limit") or "all") if result else MISSING
            rows.append([exp, stage, *losses, *cells, limit])
    headers = ["experiment", "stage", "final train loss", "final val loss",
               *[f"{name} {columns[(name, v)][1]} {version_cell(v, False)} ({columns[(name, v)][0]} items)"
                 for name, v in keys], "eval limit"]
    lines = [f"# Experiment comparison: {', '.join(experiments)}", "", f"Datapool: `{datapool}`. {LEGEND}",
             "", md_table(headers, rows), ""]
    if recomputed:
        lines += ["\\*: recomputed on this version's items from a run scored on a later (grown) version of the set.",
                  ""]
    lines += _compare_deltas(sets, set(keys))
    against, record = _baseline_section(datapool, sets, evals)
    lines += against
    lines += [f"- {exp}: no folder `{root}`" for exp, root in roots.items() if not root.is_dir()]
    text = "\n".join(lines).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    (out.parent / BASELINES_FILE).write_text(json.dumps({"experiments": record}, indent=1) + "\n", encoding="utf-8")
    return text


def against_baseline(mine: dict[str, tuple[dict, list[Scored]]],
                     theirs: dict[str, tuple[dict, list[Scored]]]) -> list[dict]:
    """The experiment's stages against the same stages of its baseline, on each set version both were scored
    on (their own or an earlier one, recomputed; never across two versions): one row per set × version ×
    stage, {set, kind, metric, higher_is_better, stage, version, earlier, score, baseline_score, delta, low,
    high, excludes_zero, items, result}, Δ = experiment − baseline."""
    rows = []
    for name, (summaries, scored) in mine.items():
        if name not in theirs:
            continue
        first = next(iter(summaries.values()))
        hib = first.get("higher_is_better") if isinstance(first.get("higher_is_better"), bool) else None
        their_blocks = version_blocks(theirs[name][1])
        for version, block in version_blocks(scored).items():
            baseline = {s.model: s for s in their_blocks.get(version, [])} if version is not None else {}
            for s in (s for s in block if s.model in baseline):
                result = delta_of(baseline[s.model], s)
                rows.append({"set": name, "kind": first.get("kind"), "metric": summaries[s.model].get("metric"),
                             "higher_is_better": hib, "stage": s.model, "version": version,
                             "earlier": s.recomputed or baseline[s.model].recomputed, "score": s.score,
                             "baseline_score": baseline[s.model].score, **result,
                             "result": verdict(result, hib) if result["low"] is not None else "no per-item scores"})
    return rows


def _baseline_section(datapool: Path, sets: dict[str, dict[str, tuple[dict, list[Scored]]]],
                      evals: dict[str, dict[str, dict | None]]) -> tuple[list[str], dict[str, dict]]:
    """Each experiment with a baseline against it: a table of the paired differences, what differs in their
    configs; and the record of it all that baselines.json keeps ({exp: {baseline, status, ...}})."""
    rows, notes, record = [], [], {}
    for exp in sets:
        config = read_config(datapool / "experiments" / exp)
        baseline = baseline_of(config)
        if baseline is None:
            record[exp] = {"baseline": None, "status": "no baseline"}
            continue
        root = datapool / "experiments" / baseline
        results = evals.get(baseline) or read_eval(root)
        if not any(results.values()):
            record[exp] = {"baseline": baseline, "status": "baseline not run yet"}
            notes += [f"### {exp} against {baseline}", "",
                      f"Baseline not run yet: no `{root}/reports/eval/*/results.json`.", ""]
            continue
        theirs = sets[baseline] if baseline in sets else experiment_scores(root, results, datapool)
        deltas = against_baseline(sets[exp], theirs)
        their_config = read_config(root)
        diff = config_diff(config, their_config) if their_config else None
        record[exp] = {"baseline": baseline, "status": "compared",
                       "stages": [s for s in EVAL_STAGES if evals[exp].get(s)], "deltas": deltas, "config_diff": diff}
        for d in deltas:
            rows.append([exp, baseline, f"{d['set']} {direction(d)}", version_cell(d["version"], d["earlier"]),
                         d["stage"], d["items"], d["score"], d["baseline_score"], signed(d["delta"]), interval_cell(d),
                         result_cell(d, d["higher_is_better"])])
        notes += [f"### {exp} against {baseline}: what differs", ""]
        if diff is None:
            notes.append(f"The baseline's resolved config is not recorded (`{root / 'reports' / 'config.json'}`, "
                         "written by its report job): run its report again to see the differences.")
        else:
            notes += [f"- {line}" for line in diff] or ["No difference in the resolved configs."]
        notes.append("")
    if not record or all(r["baseline"] is None for r in record.values()):
        return [], record
    headers = ["experiment", "baseline", "set", "version", "stage", "items", "score", "baseline's", "Δ",
               "95% interval", "result"]
    lines = ["## Against the baseline", "",
             "Each stage against the same stage of the experiment's baseline (pipeline.yaml `baseline`): Δ = "
             "experiment − baseline on the items both scored, on one set version, 95% paired bootstrap interval; "
             "**better** or **worse** only where the interval excludes 0 (docs/reports.md).", ""]
    lines += [md_table(headers, rows), ""] if rows else ["No set version scored by both.", ""]
    return lines + notes, record


def _compare_deltas(sets: dict[str, dict[str, tuple[dict, list[Scored]]]],
                    columns: set[tuple[str, str | None]]) -> list[str]:
    """Each experiment's paired differences between its stages, on the versions the page has columns for."""
    rows = []
    for exp, found in sets.items():
        for name, (summaries, scored) in found.items():
            first = next(iter(summaries.values()))
            hib = first.get("higher_is_better") if isinstance(first.get("higher_is_better"), bool) else None
            for version, block in version_blocks(scored).items():
                if (name, version) not in columns:
                    continue
                for label, result in block_deltas(block):
                    earlier = all(s.recomputed for s in block)
                    rows.append([exp, name, version_cell(version, earlier), label, result["items"],
                                 signed(result["delta"]), interval_cell(result), result_cell(result, hib)])
    if not rows:
        return []
    headers = ["experiment", "set", "version", "Δ", "items", "value", "95% interval", "result"]
    return ["## Paired differences between stages", "",
            "Δ = later − earlier on the same items, 95% paired bootstrap interval; **better** or **worse** only "
            "where the interval excludes 0 (docs/reports.md).", "", md_table(headers, rows), ""]
