"""Per-item scores: `reports/eval/<stage>/items/<task>.jsonl`, one line per eval item, so that two models scored
on the same items can be compared item by item (paired comparisons, the items that flipped).

A line is `{"id", "doc_id", "score", "metrics"}`: `id` is the item's own `id` field when it has one, else the
first 16 hex digits of lm-eval's sha256 of the item (`doc_hash`), so it follows the item's content, not its
position. `score` is the task's main per-item number: bits per byte for perplexity tasks, else the first metric
(acc for multiple choice). Perplexity tasks also keep the item's log-likelihood and its byte and word counts,
which aggregate exactly as lm-eval does (sums, not a mean of per-item values).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

ITEMS_DIR = "items"
# lm-eval's weighted perplexity metrics: per item (log-likelihood, units), and the unit each counts
PERPLEXITY_UNITS = {"bits_per_byte": "bytes", "byte_perplexity": "bytes", "word_perplexity": "words"}


def item_record(sample: dict) -> dict:
    """One item's line from one of lm-eval's logged samples."""
    doc = sample.get("doc")
    given = doc.get("id") if isinstance(doc, dict) else None
    metrics: dict[str, float] = {}
    for name in sample["metrics"]:
        value = sample.get(name)
        if name in PERPLEXITY_UNITS and isinstance(value, (list, tuple)) and len(value) == 2:
            loglikelihood, units = value
            metrics["loglikelihood"] = float(loglikelihood)
            metrics[PERPLEXITY_UNITS[name]] = int(units)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name] = float(value)
    if "bytes" in metrics:
        score = -metrics["loglikelihood"] / metrics["bytes"] / math.log(2) if metrics["bytes"] else math.nan
        metrics = {"bits_per_byte": score, **metrics}
    else:
        score = next(iter(metrics.values()), math.nan)
    return {"id": str(given) if isinstance(given, (str, int)) else sample["doc_hash"][:16],
            "doc_id": sample["doc_id"], "score": score, "metrics": metrics}


def write_items(out_dir: Path, samples: dict[str, list[dict]]) -> dict[str, Path]:
    """`out_dir/items/<task>.jsonl` for every task's logged samples, in item order; returns the files."""
    folder = out_dir / ITEMS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for task, task_samples in samples.items():
        path = folder / f"{task}.jsonl"
        records = sorted((item_record(s) for s in task_samples), key=lambda r: r["doc_id"])
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        written[task] = path
    return written
