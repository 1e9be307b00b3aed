"""The counts of udatasets' `.stats.json`: per source file and in total, and length histograms of kept records.

Every input record is counted once: kept, rejected (by reason) or a duplicate (exact, near), so
input = kept + rejected + duplicates holds per file and in total (checked before the file is written).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Counts:
    """Where the records of one file (or of a whole dataset) went."""
    input: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=lambda: Counter({"exact": 0, "near": 0}))
    blank_lines: int = 0

    def add(self, other: Counts) -> None:
        self.input += other.input
        self.kept += other.kept
        self.rejected.update(other.rejected)
        self.duplicates.update(other.duplicates)
        self.blank_lines += other.blank_lines

    def as_dict(self) -> dict:
        result = {"input": self.input, "kept": self.kept, "rejected": dict(sorted(self.rejected.items())),
                  "duplicates": {"exact": self.duplicates["exact"], "near": self.duplicates["near"]},
                  "blank_lines": self.blank_lines}
        assert self.input == self.kept + sum(self.rejected.values()) + sum(self.duplicates.values()), result
        return result


class LengthHistogram:
    """Lengths in power-of-two bins ([1, 1], [2, 3], [4, 7], ...; 0 alone): streaming, no range needed ahead."""

    def __init__(self) -> None:
        self.bins: Counter[int] = Counter()
        self.records = self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    def add(self, length: int) -> None:
        self.bins[length.bit_length()] += 1
        self.records += 1
        self.total += length
        self.min = length if self.min is None else min(self.min, length)
        self.max = length if self.max is None else max(self.max, length)

    def as_dict(self) -> dict:
        """{"records", "min", "max", "mean", "histogram": [{"from", "to", "records"}, ...]}, the bins from the
        shortest record's to the longest's (empty ones between included, so the shape reads at a glance)."""
        bins = range(min(self.bins), max(self.bins) + 1) if self.bins else range(0)
        return {"records": self.records, "min": self.min, "max": self.max,
                "mean": round(self.total / self.records, 1) if self.records else None,
                "histogram": [{"from": 0 if b == 0 else 1 << (b - 1), "to": 0 if b == 0 else (1 << b) - 1,
                               "records": self.bins[b]} for b in bins]}


def duplicate_rate(counts: Counts) -> float:
    """Share of the input that were duplicates (exact or near) of a kept record."""
    return round(sum(counts.duplicates.values()) / counts.input, 6) if counts.input else 0.0
