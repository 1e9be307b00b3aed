"""Paired comparison of two models scored on the same items: Δ and a 95% paired bootstrap interval.

Both models answered the same items, so their difference is measured item by item: the bootstrap resamples
item ids (with replacement) and recomputes both models' scores on the same resample, which removes the
variation that comes from which items a set happens to hold. Perplexity sets are resampled per document and
scored as evalsets.aggregate scores them (bits per byte over all bytes, a ratio of sums), not as a mean of
per-document values. The draws are seeded, so a report is the same every time it is built.

Per-item records are the eval step's `reports/eval/<stage>/items/<set>.jsonl` lines: {"id", "score",
"metrics", ...}. The same functions serve two stages of one experiment and an experiment against its baseline.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from llmrunner.evalsets import aggregate

log = logging.getLogger(__name__)

SAMPLES = 2000
CONFIDENCE = 0.95
# bootstrap draws are made this many index cells at a time, so a big set never holds samples × items at once
CHUNK_CELLS = 1 << 22


def read_records(path: Path) -> list[dict] | None:
    """The per-item records of an items file, or None when there is none. Lines that are not a record
    ({"id", "score", "metrics"}) are skipped and logged: a report never fails on a half-written file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        log.warning("skipping %s: %s", path, err)
        return None
    records, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if (isinstance(record, dict) and isinstance(record.get("id"), str) and _is_number(record.get("score"))
                and isinstance(record.get("metrics"), dict)):
            records.append(record)
        else:
            bad += 1
    if bad:
        log.warning("%s: skipped %d line(s) that are not item records", path, bad)
    return records


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def subset(records: list[dict], ids: list[str] | set[str]) -> list[dict]:
    """The records of the items `ids`, in the records' order."""
    wanted = set(ids)
    return [r for r in records if r["id"] in wanted]


def holds(records: list[dict], ids: list[str]) -> bool:
    """Whether the records cover every item of `ids` (a model scored on a grown set holds the earlier one)."""
    have = {r["id"] for r in records}
    return bool(ids) and all(i in have for i in ids)


def _is_perplexity(records: list[dict]) -> bool:
    """Items scored as evalsets.aggregate scores perplexity: log-likelihoods and byte counts."""
    return all("bytes" in r["metrics"] and "loglikelihood" in r["metrics"] for r in records)


def _resamples(n: int, samples: int, seed: int):
    """Bootstrap index draws, `samples` rows of `n` item positions, a chunk of rows at a time. Each index
    is floor(u·n) of one uniform draw, so the stream (and the result) does not depend on the chunk size."""
    rng = np.random.default_rng(seed)
    rows = max(1, CHUNK_CELLS // n)
    for start in range(0, samples, rows):
        count = min(rows, samples - start)
        yield np.minimum((rng.random((count, n)) * n).astype(np.int64), n - 1)


def paired_delta(a_records: list[dict], b_records: list[dict], *, samples: int = SAMPLES, seed: int = 0) -> dict:
    """Δ = score(b) − score(a) over the items both have (in a's order), with its 95% percentile bootstrap
    interval: {"delta", "low", "high", "excludes_zero", "items"}. Scores follow evalsets.aggregate: bits per
    byte as a ratio of sums for perplexity items (both models' sums on the same resampled documents), else
    the mean item score. With no common items every value is None (items 0)."""
    by_id = {r["id"]: r for r in b_records}
    pairs = [(r, by_id[r["id"]]) for r in a_records if r["id"] in by_id]
    if not pairs:
        return {"delta": None, "low": None, "high": None, "excludes_zero": False, "items": 0}
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    delta = aggregate(b) - aggregate(a)
    deltas = []
    if _is_perplexity(a) and _is_perplexity(b):
        columns = np.array([[r["metrics"][k] for r in side] for side in (a, b) for k in ("loglikelihood", "bytes")],
                           dtype=np.float64)
        for idx in _resamples(len(pairs), samples, seed):
            ll_a, bytes_a, ll_b, bytes_b = (column[idx].sum(axis=1) for column in columns)
            deltas.append((ll_a / bytes_a - ll_b / bytes_b) / math.log(2))
    else:
        diff = np.array([y["score"] - x["score"] for x, y in pairs], dtype=np.float64)
        for idx in _resamples(len(pairs), samples, seed):
            deltas.append(diff[idx].mean(axis=1))
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = (float(v) for v in np.percentile(np.concatenate(deltas), [tail, 100 - tail]))
    return {"delta": float(delta), "low": low, "high": high, "excludes_zero": low > 0 or high < 0,
            "items": len(pairs)}


def verdict(result: dict, higher_is_better: bool | None) -> str:
    """"better" or "worse" (b against a) when the interval excludes zero, else "no clear difference"."""
    if not result["excludes_zero"]:
        return "no clear difference"
    if higher_is_better is None:
        return "differs"
    return "better" if (result["delta"] > 0) == higher_is_better else "worse"
