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
from pathlib import Path

from llmrunner.errors import StageError
from llmrunner.report.plots import plot_losses

log = logging.getLogger(__name__)

EVAL_STAGES = ("base", "cpt", "sft")
TRAIN_STAGES = ("cpt", "sft")
MISSING = "—"
OFF = "stage off"
# direction marks for the metrics the built-in eval tasks produce
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


def _last(points: list[tuple[int, float]]) -> float | None:
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


def _total(value: object) -> int | None:
    """A counter that may be a number or a {reason: n} dict."""
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


def metric_names(results: list[dict | None]) -> list[tuple[str, str]]:
    """(task, metric) pairs across several results.json, in first-seen order, standard errors left out."""
    seen: dict[tuple[str, str], None] = {}
    for result in results:
        for task, metrics in ((result or {}).get("tasks") or {}).items():
            for name in metrics:
                if not name.endswith("_stderr"):
                    seen[(task, name)] = None
    return list(seen)


# ---------------------------------------------------------------- experiment report

def _data_row(kind: str, name: str, s: dict) -> list[object]:
    duplicates = s.get("duplicates") if isinstance(s.get("duplicates"), dict) else {}
    total_dups, n_input = _total(duplicates), s.get("input")
    rate = (f"{total_dups / n_input:.1%}" if _is_number(total_dups) and _is_number(n_input) and n_input
            else MISSING)
    return [kind, name, n_input, s.get("kept"), _total(s.get("rejected")), duplicates.get("exact"),
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
        rows.append([stage, len(c["loss"]), last_it, _last(c["loss"]),
                     min((v for _, v in c["loss"]), default=None), _last(c["val_loss"]), _last(c["lr"]), speed])
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
    if not rows:
        return ["## Conversion parity", "", f"{OFF}: no `model/*/*/parity.json`.", ""]
    headers = ["conversion", "output", "max abs logit diff", "tolerance", "ok", "dtype"]
    return ["## Conversion parity", "", md_table(headers, rows), ""]


def _eval_section(evals: dict[str, dict | None]) -> list[str]:
    lines = ["## Evaluation", ""]
    if not any(evals.values()):
        return lines + [f"{OFF}: no `reports/eval/*/results.json`.", ""]
    names = metric_names(list(evals.values()))
    rows = []
    for task in dict.fromkeys(task for task, _ in names):
        for name in (n for t, n in names if t == task):
            cells = [metric_cell((r.get("tasks") or {}).get(task, {}), name) if r else OFF for r in evals.values()]
            rows.append([task, metric_label(name), *cells])
        counts = [((r or {}).get("n_samples") or {}).get(task) or {} for r in evals.values()]
        rows.append([task, "samples", *[f"{fmt(n.get('effective'))} of {fmt(n.get('original'))}" if r else OFF
                                        for n, r in zip(counts, evals.values())]])
    lines += [md_table(["task", "metric", *evals], rows), "", "Models evaluated:", ""]
    lines += [f"- {stage}: `{r.get('model', MISSING)}`" for stage, r in evals.items() if r]
    return lines + [""]


def experiment_report(root: Path, out: Path) -> str:
    """Write `out` (Markdown) and `loss.png` beside it for the experiment at `root` (its DATAPOOL_ROOT)."""
    if not root.is_dir():
        raise StageError(f"report: experiment folder {root} does not exist; pass the experiment's DATAPOOL_ROOT "
                         f"(<datapool>/experiments/<exp>) as --root")
    curves = {s: read_training_log(metrics_log(root, s)) for s in TRAIN_STAGES}
    png = plot_losses(curves, out.parent / "loss.png")
    lines = [f"# Experiment report: {root.name}", "", f"DATAPOOL_ROOT: `{root}`. {LEGEND}", ""]
    lines += _data_section(root) + _tokenize_section(root)
    lines += _training_section(curves, os.path.relpath(png, out.parent))
    lines += _parity_section(root) + _eval_section(read_eval(root))
    text = "\n".join(lines).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text


# ---------------------------------------------------------------- comparison

def compare_report(datapool: Path, experiments: list[str], out: Path) -> str:
    """Write `out`: one row per experiment × stage, eval metrics side by side plus final losses."""
    roots = {exp: datapool / "experiments" / exp for exp in experiments}
    evals = {exp: read_eval(root) for exp, root in roots.items()}
    names = metric_names([r for stages in evals.values() for r in stages.values()])
    rows = []
    for exp, root in roots.items():
        for stage in EVAL_STAGES:
            result = evals[exp][stage]
            curve = read_training_log(metrics_log(root, stage)) if stage in TRAIN_STAGES else None
            if result is None and curve is None:
                rows.append([exp, stage, *[OFF] * (3 + len(names))])
                continue
            losses = [_last(curve["loss"]), _last(curve["val_loss"])] if curve else [MISSING, MISSING]
            metrics = [metric_cell((result.get("tasks") or {}).get(t, {}), n) if result else MISSING
                       for t, n in names]
            # results from runs with different limits are not comparable: show the limit beside them
            limit = ((result.get("config") or {}).get("limit") or "all") if result else MISSING
            rows.append([exp, stage, *losses, *metrics, limit])
    headers = ["experiment", "stage", "final train loss", "final val loss",
               *[f"{t} {metric_label(n)}" for t, n in names], "eval limit"]
    lines = [f"# Experiment comparison: {', '.join(experiments)}", "", f"Datapool: `{datapool}`. {LEGEND}",
             "", md_table(headers, rows), ""]
    lines += [f"- {exp}: no folder `{root}`" for exp, root in roots.items() if not root.is_dir()]
    text = "\n".join(lines).rstrip() + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text
