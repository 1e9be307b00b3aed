"""The paired bootstrap: Δ and its interval against a direct computation, perplexity as a ratio of sums."""
from __future__ import annotations

import math

import numpy as np
import pytest

from llmrunner.evalsets import aggregate
from llmrunner.report import paired
from llmrunner.report.paired import paired_delta, read_records, verdict


def scored(values: list[float], prefix: str = "i") -> list[dict]:
    return [{"id": f"{prefix}{n}", "score": v, "metrics": {"acc": v}} for n, v in enumerate(values)]


def documents(bpb: list[float], sizes: list[int]) -> list[dict]:
    return [{"id": f"d{n}", "score": b, "metrics": {"bits_per_byte": b, "loglikelihood": -b * size * math.log(2),
                                                    "bytes": size, "words": size // 5}}
            for n, (b, size) in enumerate(zip(bpb, sizes))]


def draws(n: int, samples: int, seed: int) -> list[list[int]]:
    """The index draws of the bootstrap, written out: floor(u·n) of one uniform per cell, row after row."""
    rng = np.random.default_rng(seed)
    return [[int(u * n) for u in row] for row in rng.random((samples, n))]


def percentile_interval(deltas: list[float]) -> tuple[float, float]:
    low, high = np.percentile(deltas, [2.5, 97.5])
    return float(low), float(high)


def test_mean_scores_match_a_direct_loop() -> None:
    a = scored([1, 0, 0, 1, 0, 1, 0, 0, 1, 0])
    b = scored([1, 1, 0, 1, 1, 1, 0, 1, 1, 0])
    result = paired_delta(a, b, samples=300, seed=7)
    deltas = [sum(b[i]["score"] - a[i]["score"] for i in row) / len(row) for row in draws(10, 300, 7)]
    assert result["delta"] == pytest.approx(0.3)
    assert (result["low"], result["high"]) == pytest.approx(percentile_interval(deltas))
    assert result["items"] == 10


def test_perplexity_resamples_documents_as_a_ratio_of_sums() -> None:
    sizes = [100, 5000, 300, 800, 1200, 60]
    a = documents([4.0, 3.0, 4.5, 3.5, 3.2, 5.0], sizes)
    b = documents([3.8, 2.0, 4.6, 3.0, 2.9, 5.5], sizes)
    result = paired_delta(a, b, samples=500, seed=3)
    assert result["delta"] == pytest.approx(aggregate(b) - aggregate(a))
    # a mean of per-document differences would weigh the 60-byte document like the 5000-byte one
    assert result["delta"] != pytest.approx(sum(y["score"] - x["score"] for x, y in zip(a, b)) / len(a))
    deltas = []
    for row in draws(len(a), 500, 3):
        deltas.append(aggregate([b[i] for i in row]) - aggregate([a[i] for i in row]))
    assert (result["low"], result["high"]) == pytest.approx(percentile_interval(deltas))


def test_chunks_do_not_change_the_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    a, b = scored(list(rng.random(50))), scored(list(rng.random(50)))
    whole = paired_delta(a, b, samples=400, seed=5)
    monkeypatch.setattr(paired, "CHUNK_CELLS", 7 * 50 + 3)  # 7 resamples a chunk, the last chunk shorter
    assert paired_delta(a, b, samples=400, seed=5) == whole
    assert paired_delta(a, b, samples=400, seed=6) != whole


def test_excludes_zero_both_ways() -> None:
    a = scored([0.2, 0.3, 0.25, 0.4, 0.35, 0.3, 0.2, 0.3] * 5)
    better = paired_delta(a, scored([s["score"] + 0.1 for s in a]))
    assert better["excludes_zero"] and better["low"] > 0
    assert verdict(better, higher_is_better=True) == "better"
    assert verdict(better, higher_is_better=False) == "worse"  # a bits-per-byte rise
    noisy = paired_delta(a, scored([s["score"] + (0.1 if n % 2 else -0.1) for n, s in enumerate(a)]))
    assert not noisy["excludes_zero"] and noisy["low"] < 0 < noisy["high"]
    assert verdict(noisy, higher_is_better=True) == "no clear difference"


def test_only_common_items_in_a_order() -> None:
    a = scored([1.0, 0.0, 1.0])
    b = list(reversed(scored([0.0, 0.0, 1.0, 1.0])))
    result = paired_delta(a, b, samples=50)
    assert result["items"] == 3 and result["delta"] == pytest.approx(1 / 3 - 2 / 3)
    assert paired_delta(a, scored([1.0], prefix="x")) == {
        "delta": None, "low": None, "high": None, "excludes_zero": False, "items": 0}


def test_read_records_skips_bad_lines(tmp_path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('{"id": "a", "score": 1, "metrics": {}}\n[1]\n{"id": "b", "sco\n')
    assert read_records(path) == [{"id": "a", "score": 1, "metrics": {}}]
    assert read_records(tmp_path / "missing.jsonl") is None
