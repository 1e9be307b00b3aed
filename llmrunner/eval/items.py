"""Per-item scores: `reports/eval/<stage>/items/<set>.jsonl`, one line per item scored, in set order, so that
two models scored on the same items can be compared item by item (paired comparisons, the items that flipped)
and a grown set's earlier versions can be scored again from these lines.

A line is `{"id", "score", "metrics"}`, plus `"output"` (the generated text) for generation sets. `id` is the
item's id (evalsets.read_items) for our own sets, the first 16 hex digits of lm-eval's `doc_hash` for lm_eval
sets. `score` is the set's main per-item number (`main_metric`). Perplexity items keep their log-likelihood and
byte and word counts, which aggregate exactly as lm-eval does (sums, not a mean of per-item values), so
`evalsets.aggregate` of a set's lines is its score.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

ITEMS_DIR = "items"
# lm-eval's weighted perplexity metrics: per item (log-likelihood, units), and the unit each counts
PERPLEXITY_UNITS = {"bits_per_byte": "bytes", "byte_perplexity": "bytes", "word_perplexity": "words"}


def main_metric(metric_names: list[str]) -> str:
    """A task's main per-item metric: its first, except that a perplexity task is scored in bits per byte
    (the one perplexity measure that compares across tokenizers and sums over items)."""
    if metric_names[0] in PERPLEXITY_UNITS and {"bits_per_byte", "byte_perplexity"} & set(metric_names):
        return "bits_per_byte"
    return metric_names[0]


def item_metrics(sample: dict) -> dict[str, float]:
    """The numeric per-item metrics of one of lm-eval's logged samples; a perplexity pair (log-likelihood,
    units) becomes `loglikelihood` and its unit count, plus the item's own `bits_per_byte`."""
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
        bpb = -metrics["loglikelihood"] / metrics["bytes"] / math.log(2) if metrics["bytes"] else math.nan
        metrics = {"bits_per_byte": bpb, **metrics}
    return metrics


def item_record(sample: dict, item_id: str, main: str, with_output: bool) -> dict:
    """One item's line from one of lm-eval's logged samples."""
    metrics = item_metrics(sample)
    record = {"id": item_id, "score": metrics.get(main, math.nan), "metrics": metrics}
    if with_output:
        record["output"] = sample["filtered_resps"][0]
    return record


def lm_eval_version(doc_hashes: list[str]) -> str:
    """An lm_eval set's version: the first 12 hex digits of the sha256 of its scored items' lm-eval doc
    hashes, in order (lm-eval reads the items, so their hashes are what we know of them)."""
    return hashlib.sha256("\n".join(doc_hashes).encode("ascii")).hexdigest()[:12]


def write_items(folder: Path, name: str, records: list[dict]) -> Path:
    """`folder/<name>.jsonl`, one line per record."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path
