"""Decontamination: word n-gram overlap between training records and the registered eval sets.

A text is normalised as udatasets normalises for near de-dup (records.normalise: NFC, whitespace collapsed,
case-folded) and cut into its runs of `ngram` consecutive words (13 by default, as lm-eval's decontamination
and GPT-3's). An eval text shorter than that is one gram of all its words (k of them), so a short question or
answer is found only whole; a training text is then also cut into runs of each such k. An eval text of fewer
than `min_words` words is left out: a phrase that short is common text, not evidence of contamination. A
training record (CPT: its text; SFT: each message content, never across two messages) hits a set when any of
its grams is a gram of one of the set's items (evalsets.decontamination_texts: the document, the question and
right answer, the prompt and reference).

Why an index of hashes: the eval sets are small and the training data large, so the eval grams are held in
memory (a sorted uint64 array, 8 bytes a gram plus which items own it) and the training data streams against
it. Grams are hashed with near_dup's word hashes (near_dup.word_runs: 64-bit, numpy, no Python loop per word);
a false hit needs a 64-bit collision (about 5e-14 per gram compared with an index of a million grams).

Two users: the udatasets map job rejects a kept record that hits a set of `decontaminate`
(`contaminated:<set>`, shard.py), and the `contamination` report (`report`) counts the hits of every
(training dataset, eval set) pair.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrunner.errors import ConfigError, StageError
from llmrunner.evalsets import EvalSet, decontamination_texts, evalsets_from_json, read_items, version_of
from llmrunner.jsonl import iter_records, resolve_inputs
from llmrunner.udatasets.near_dup import Segment, word_runs
from llmrunner.udatasets.records import normalise

EXAMPLES = 5  # record and item ids a report pair shows
BATCH_RECORDS, BATCH_CHARS = 256, 4 << 20  # records the report hashes at once (as the map job's chunks)


def word_count(normalised: str) -> int:
    """Words of a records.normalise'd text (single spaces between words, none at the ends)."""
    return normalised.count(" ") + 1 if normalised else 0


@dataclass(frozen=True)
class EvalIndex:
    """The grams of the eval sets' items: `hashes` sorted and unique; gram `hashes[g]` belongs to the items
    `owner_item[starts[g]:starts[g + 1]]` (indices into `item_ids[set]`) of the sets `owner_set[...]` (indices
    into `sets`)."""

    ngram: int
    sets: tuple[str, ...]
    item_ids: tuple[tuple[str, ...], ...]
    widths: tuple[int, ...]
    """The gram lengths training texts are cut into: `ngram` and each shorter length of an eval text."""
    hashes: np.ndarray
    starts: np.ndarray
    owner_set: np.ndarray
    owner_item: np.ndarray
    present: np.ndarray
    """A prefilter: present[h >> shift] is False for most hashes not in `hashes` (a table of 16 or more
    entries per gram, so about 1 in 16 misses gets through), whose lookup is one memory read instead of a
    binary search."""
    shift: int

    @classmethod
    def build(cls, items_by_set: dict[str, list[dict]], ngram: int, min_words: int) -> EvalIndex:
        """The index of the sets' items (evalsets.read_items), sets in the given order; eval texts of fewer
        than min(min_words, ngram) words are left out."""
        if ngram < 1:
            raise ConfigError(f"decontaminate_ngram: must be at least 1, got {ngram}")
        grams, owners_set, owners_item, widths = [], [], [], {ngram}
        for set_number, items in enumerate(items_by_set.values()):
            for item_number, item in enumerate(items):
                for text in decontamination_texts(item):
                    normalised = normalise(text, casefold=True)
                    words = word_count(normalised)
                    if not words or words < min(min_words, ngram):
                        continue
                    width = min(words, ngram)
                    widths.add(width)
                    for block, _ in word_runs(normalised, (width,)):
                        grams.append(block)
                        owners_set.append(np.full(len(block), set_number, dtype=np.int32))
                        owners_item.append(np.full(len(block), item_number, dtype=np.int32))
        hashes = np.concatenate(grams) if grams else np.empty(0, dtype=np.uint64)
        sets = np.concatenate(owners_set) if grams else np.empty(0, dtype=np.int32)
        items = np.concatenate(owners_item) if grams else np.empty(0, dtype=np.int32)
        order = np.lexsort((items, sets, hashes))
        hashes, sets, items = hashes[order], sets[order], items[order]
        distinct = np.ones(len(hashes), dtype=bool)  # an item's gram repeated (in one text or two) counts once
        distinct[1:] = (hashes[1:] != hashes[:-1]) | (sets[1:] != sets[:-1]) | (items[1:] != items[:-1])
        hashes, sets, items = hashes[distinct], sets[distinct], items[distinct]
        unique, starts = np.unique(hashes, return_index=True)
        bits = min(max((16 * len(unique)).bit_length(), 16), 30)
        present = np.zeros(1 << bits, dtype=bool)
        present[unique >> np.uint64(64 - bits)] = True
        return cls(ngram=ngram, sets=tuple(items_by_set),
                   item_ids=tuple(tuple(item["id"] for item in v) for v in items_by_set.values()),
                   widths=tuple(sorted(widths, reverse=True)), hashes=unique,
                   starts=np.append(starts, len(hashes)).astype(np.int64), owner_set=sets, owner_item=items,
                   present=present, shift=64 - bits)

    def __len__(self) -> int:
        return len(self.hashes)

    def matches(self, records: list[list[str]]) -> list[np.ndarray]:
        """For each record (its texts), the indices (into `hashes`, sorted, unique) of the eval grams it holds.
        The texts of all the records are hashed as one (numpy calls per batch of records, not per text), and the
        runs that cross from one text into the next are left out."""
        normalised, owner = [], []
        for number, texts in enumerate(records):
            for text in texts:
                if folded := normalise(text, casefold=True):
                    normalised.append(folded)
                    owner.append(number)
        found: list[list[int]] = [[] for _ in records]
        counts = np.array([word_count(text) for text in normalised], dtype=np.int64)
        widths = tuple(w for w in self.widths if w <= counts.max(initial=0))
        if widths and len(self.hashes):
            ends = np.cumsum(counts)  # the index, in the joined texts, of the word after each text
            owners = np.array(owner)
            for grams, segments in word_runs(" ".join(normalised), widths):
                hit, positions = self._lookup(grams, segments, ends)
                if len(hit):
                    for number, gram in zip(owners[_text_of(ends, _run_start(hit, segments))].tolist(),
                                            positions.tolist()):
                        found[number].append(gram)
        return [np.unique(np.array(f, dtype=np.int64)) for f in found]

    def _lookup(self, grams: np.ndarray, segments: list[Segment], ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices into `grams` of the runs that lie inside one text and are eval grams, their indices into
        `hashes`)."""
        lo = min(first for _, first, _ in segments)
        hi = max(first + runs for _, first, runs in segments)
        # how many words of its own text are left from each word lo..hi-1 on
        first_text, last_text = _text_of(ends, np.array([lo, hi - 1])).tolist()
        text_ends = ends[first_text:last_text + 1]
        spans = np.minimum(text_ends, hi) - np.maximum(np.concatenate(([lo], text_ends[:-1])), lo)
        left = np.repeat(text_ends, spans) - np.arange(lo, hi)
        inside = np.concatenate([left[first - lo:first - lo + runs] >= width for width, first, runs in segments])
        candidates = np.flatnonzero(inside & self.present[grams >> np.uint64(self.shift)])
        positions = np.searchsorted(self.hashes, grams[candidates])
        positions[positions == len(self.hashes)] = 0
        equal = self.hashes[positions] == grams[candidates]
        return candidates[equal], positions[equal]

    def owners(self, matched: np.ndarray) -> dict[int, list[int]]:
        """{set index: the indices of its items, sorted} that own the grams `matched`, sets in index order."""
        if not len(matched):
            return {}
        rows = np.concatenate([np.arange(self.starts[g], self.starts[g + 1]) for g in matched.tolist()])
        hit: dict[int, set[int]] = {}
        for set_number, item_number in zip(self.owner_set[rows].tolist(), self.owner_item[rows].tolist()):
            hit.setdefault(set_number, set()).add(item_number)
        return {s: sorted(items) for s, items in sorted(hit.items())}

    def first_hits(self, records: list[list[str]]) -> list[tuple[str, list[str]] | None]:
        """For each record (its texts): (the first set, in index order, that it hits; the ids of that set's items
        it holds), or None."""
        result: list[tuple[str, list[str]] | None] = []
        for matched in self.matches(records):
            owners = self.owners(matched)
            if owners:
                set_number, items = next(iter(owners.items()))
                result.append((self.sets[set_number], [self.item_ids[set_number][i] for i in items]))
            else:
                result.append(None)
        return result


def _run_start(indices: np.ndarray, segments: list[Segment]) -> np.ndarray:
    """The index of the first word of each run at `indices` of a word_runs block described by `segments`."""
    sizes = np.array([runs for _, _, runs in segments])
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    segment = np.searchsorted(offsets, indices, side="right") - 1
    return np.array([first for _, first, _ in segments])[segment] + indices - offsets[segment]


def _text_of(ends: np.ndarray, words: np.ndarray) -> np.ndarray:
    """The text each word (an index into the joined texts) belongs to; `ends`: the index after each text."""
    return np.searchsorted(ends, words, side="right")


def read_evalsets(evalsets_json: str, names: list[str] | None = None) -> dict[str, EvalSet]:
    """The sets of a rule's `--evalsets` JSON ([EvalSet.to_dict(), ...]), by name; with `names`, those sets,
    in that order, each of which must be there and not an lm_eval set."""
    given = evalsets_from_json(evalsets_json)
    if names is None:
        return given
    problems = []
    for name in names:
        if name not in given:
            problems.append(f"decontaminate lists '{name}', which --evalsets does not define (it defines: "
                            f"{', '.join(sorted(given)) or 'none'}); the workflow passes every listed set")
        elif given[name].kind == "lm_eval":
            problems.append(f"decontaminate lists '{name}', an lm_eval set: its items are read by lm-eval "
                            f"only; remove it from decontaminate in the udatasets step")
    if problems:
        raise ConfigError("udatasets: " + "; ".join(problems))
    return {name: given[name] for name in names}


def read_sets(evalsets: dict[str, EvalSet]) -> dict[str, list[dict]]:
    """Every item of each set (ConfigError naming the set's file and line for bad data)."""
    return {name: read_items(evalset) for name, evalset in evalsets.items()}


# ---------------------------------------------------------------- the report
def record_texts(record: dict, kind: str, where: str) -> list[str]:
    """The texts of a unified record (CPT: its text; SFT: each message content); StageError when it has none."""
    if kind == "cpt":
        text = record.get("text")
        if not isinstance(text, str):
            raise StageError(f"{where}: a cpt record needs 'text' (a string); clean the data with the udatasets "
                             f"step")
        return [text]
    messages = record.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                 for m in messages):
        raise StageError(f"{where}: an sft record needs 'messages' ([{{role, content}}, ...]); clean the data "
                         f"with the udatasets step")
    return [m["content"] for m in messages]


def _dataset_records(kind: str, path: str) -> Iterator[tuple[str, list[str]]]:
    """(`<file name>:<line>`, texts) of every record of a processed file or a raw folder."""
    for file in resolve_inputs(path):
        for line, record in iter_records(file):
            yield f"{file.name}:{line}", record_texts(record, kind, f"{file}, line {line}")


def _batches(records: Iterator[tuple[str, list[str]]]) -> Iterator[list[tuple[str, list[str]]]]:
    """Records in batches of BATCH_RECORDS, or fewer when they hold BATCH_CHARS characters of text."""
    batch, chars = [], 0
    for record in records:
        batch.append(record)
        chars += sum(len(text) for text in record[1])
        if len(batch) >= BATCH_RECORDS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def scan_dataset(index: EvalIndex, kind: str, path: str) -> tuple[int, list[dict]]:
    """(records scanned, per set of the index: {records_hit, items: the item indices hit, in the order first
    hit, example_records})."""
    per_set: list[dict] = [{"records_hit": 0, "items": {}, "example_records": []} for _ in index.sets]
    scanned = 0
    for batch in _batches(_dataset_records(kind, path)):
        scanned += len(batch)
        for (where, _), matched in zip(batch, index.matches([texts for _, texts in batch])):
            for set_number, items in index.owners(matched).items():
                hits = per_set[set_number]
                hits["records_hit"] += 1
                for item in items:
                    hits["items"].setdefault(item, None)  # a dict keeps the order in which items were first hit
                if len(hits["example_records"]) < EXAMPLES:
                    hits["example_records"].append(where)
    return scanned, per_set


def contamination_report(datasets: list[tuple[str, str, str]], evalsets: dict[str, EvalSet], ngram: int,
                         min_words: int) -> dict:
    """The report of every (training dataset, eval set) pair: `datasets` are (kind, name, path: a processed
    file or a raw folder)."""
    items_by_set = read_sets(evalsets)
    index = EvalIndex.build(items_by_set, ngram, min_words)
    pairs = []
    for kind, name, path in datasets:
        scanned, per_set = scan_dataset(index, kind, path)
        for set_number, set_name in enumerate(index.sets):
            hits = per_set[set_number]
            ids = index.item_ids[set_number]
            pairs.append({"dataset": name, "kind": kind, "set": set_name, "records_scanned": scanned,
                          "records_hit": hits["records_hit"], "eval_items_hit": len(hits["items"]),
                          "example_records": hits["example_records"],
                          "example_item_ids": [ids[i] for i in list(hits["items"])[:EXAMPLES]]})
    return {"ngram": ngram, "min_words": min_words,
            "sets": {name: {"kind": evalsets[name].kind, "version": version_of(items), "items": len(items)}
                     for name, items in items_by_set.items()},
            "pairs": pairs}


def parse_dataset_arg(value: str) -> tuple[str, str, str]:
    """`<kind>:<name>=<path>` -> (kind, name, path)."""
    head, eq, path = value.partition("=")
    kind, colon, name = head.partition(":")
    if not eq or not colon or kind not in ("cpt", "sft") or not name or not path:
        raise ConfigError(f"--datasets {value!r}: expected <kind>:<name>=<path>, kind cpt or sft "
                          f"(e.g. cpt:web=data/processed/cpt/web.jsonl)")
    return kind, name, path


def write_report(report: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(out)
