"""The map half of udatasets: raw items -> one shard line each, checked, cleaned, filtered, with de-dup keys.

Per item: adapter -> cleaning (clean.py) -> empty / character-length filters -> JSON encoding -> token-length
filters -> decontamination (decontaminate.py: a record that contains an eval item is rejected as
`contaminated:<set>`, its reject line naming the items in `eval_items`), then the kept candidate's exact-dedup
hash and (near de-dup on) its MinHash signature. Everything that depends on one record alone happens here, in
parallel worker processes; de-duplication, which depends on every earlier record, happens in dedup.py.

Shard file (`data/processed/<kind>/.shards/<dataset>.<i>-of-<n>.jsonl`, an intermediate): lines
`<meta JSON>\\t<payload>\\n`, which split at the first tab (JSON escapes tabs and newlines inside strings):
- first, the header `{"s": "header", "dataset", "shard": i, "shards": n, "files": [names]}`;
- one line per raw item that the shard owns (running index j over all items of the dataset's files, blank
  lines included, with j % n == i), in input order:
  `{"s": "b", "f"}` a blank line (not a record); `{"s": "r", "f", "c", "reason"}` + the rejects-file line;
  `{"s": "k", "f", "n", "c", "chars", "tokens", "h", "m"}` + the record's output line: a candidate for
  the data file (`f` file number, `n` line, `c` 1 when cleaning changed the text, `tokens` null when not
  counted, `h` exact-dedup hash as hex, `m` MinHash signature as base64, null when near de-dup is off or
  when the same process signed a record with the same hash before: exact repeats, common in web data,
  cost no signature);
- last, `{"s": "end", "items": count}`, so that a cut-short file is never mistaken for a whole one.
"""
from __future__ import annotations

import base64
import hashlib
import json
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llmrunner.jsonl import Line
from llmrunner.progress import Progress, ReadPosition
from llmrunner.udatasets.adapters import Adapter
from llmrunner.udatasets.clean import Cleaning
from llmrunner.udatasets.decontaminate import EvalIndex
from llmrunner.udatasets.near_dup import MinHashConfig, minhash_signature
from llmrunner.udatasets.readers import BLANK, RawItem, iter_items, jsonl_item, row_count
from llmrunner.udatasets.records import content_chars, contents, dedup_key, is_blank, near_dup_text
from llmrunner.udatasets.tokens import TokenCounter

CHUNK_ITEMS = 256  # items per task sent to a worker
CHUNK_BYTES = 4 << 20  # ... or fewer, when they hold this much raw text
CHUNKS_IN_FLIGHT = 3  # per worker: bounds the memory held by chunks read ahead or waiting to be written
EVAL_ITEMS_SHOWN = 5  # ids of the eval items a contaminated record's reject line names
SIGNED_MAX = 1 << 20  # hashes a process remembers to skip signing repeated records (about 100 MiB at most)


@dataclass(frozen=True)
class RecordRules:
    """What happens to each record on its own; see UdatasetsSettings for the meaning of each field."""
    adapter: Adapter
    cleaning: Cleaning = Cleaning()
    min_chars: int = 1
    max_chars: int | None = None
    min_tokens: int | None = None
    max_tokens: int | None = None
    tokenizer: Path | None = None
    """The HF model folder whose tokenizer counts tokens; needed when a token filter is set."""
    txt_mode: str = "document"
    minhash: MinHashConfig | None = None
    """Compute each record's MinHash signature (near de-duplication on) with this config; None: don't."""
    decontaminate: EvalIndex | None = None
    """Reject a record that shares a gram with an item of these eval sets ('contaminated:<set>'); None: don't."""

    def counts_tokens(self) -> bool:
        return self.min_tokens is not None or self.max_tokens is not None


def check_record(item: RawItem, rules: RecordRules) -> tuple[dict | None, str | None, bool]:
    """One raw item -> (cleaned unified record, None, cleaned?) or (None, reason, cleaned?); `cleaned`:
    whether cleaning changed the record's text (whatever became of the record afterwards)."""
    if item.record is None:
        return None, item.reason, False
    record, reason = rules.adapter(item.record)
    if record is None:
        return None, reason, False
    record, cleaned = rules.cleaning.record(record)
    if is_blank(record):
        return None, "empty", cleaned
    chars = content_chars(record)
    if chars < rules.min_chars:
        return None, "too_short", cleaned
    if rules.max_chars is not None and chars > rules.max_chars:
        return None, "too_long", cleaned
    return record, None, cleaned


# default=str: parquet values that JSON lacks (dates, decimals) become their strings;
# allow_nan=False: a NaN would make the line invalid JSON.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=str)
PIECE_CHARS = 1 << 20  # a longer text is encoded to UTF-8 a piece at a time, a record with more content in chunks


def _utf8(text: str) -> Iterator[bytes]:
    """`text` as UTF-8 in pieces: str.encode reserves 4 bytes a character for a text with 4-byte characters."""
    for start in range(0, len(text), PIECE_CHARS):
        yield text[start:start + PIECE_CHARS].encode("utf-8")


def encode_record(record: dict) -> tuple[bytes | None, str | None]:
    """(the record's output line without newline, None) or (None, reject reason)."""
    try:
        if content_chars(record) <= PIECE_CHARS:
            return _ENCODER.encode(record).encode("utf-8"), None
        # The same JSON (iterencode yields what encode joins), turned into UTF-8 a piece at a time: encode would
        # hold the line as text twice.
        return b"".join(piece for chunk in _ENCODER.iterencode(record) for piece in _utf8(chunk)), None
    except UnicodeEncodeError:  # a "\ud800"-style escape decodes to a lone surrogate
        return None, "invalid_unicode"
    except ValueError:
        return None, "not_json_serialisable"


def _line_parts(meta: dict, payload: bytes = b"") -> list[bytes]:
    """One shard line, in parts to be joined with the other lines (a huge payload is copied once, not twice)."""
    return [json.dumps(meta, separators=(",", ":")).encode("utf-8"), b"\t", payload, b"\n"]


def _line(meta: dict) -> bytes:
    return b"".join(_line_parts(meta))


class ChunkChecker:
    """Turns chunks of raw items into shard lines; one per process (it holds the tokenizer)."""

    def __init__(self, rules: RecordRules, files: list[str]) -> None:
        self.rules, self.files = rules, files
        self.counter = TokenCounter(rules.tokenizer) if rules.counts_tokens() else None
        self.signed: set[bytes] = set()  # exact-dedup hashes of the records signed so far

    def __call__(self, chunk: list[tuple[int, Line | RawItem]]) -> bytes:
        """The shard lines of `chunk`'s items. Takes the items out of `chunk` as it goes, and drops each copy of a
        record's text once it is not needed: a huge record is held in memory a few times, not once per step."""
        rules = self.rules
        checked = []  # (file number, item, record or None, reason, cleaned, encoded)
        chunk.reverse()
        while chunk:
            number, item = chunk.pop()
            if isinstance(item, Line):
                item = jsonl_item(item)
            if item.reason == BLANK:
                checked.append((number, item, None, BLANK, False, None))
                continue
            record, reason, cleaned = check_record(item, rules)
            item = item._replace(record=None)  # the parsed raw record; only its raw text may be needed (a reject)
            encoded = None
            if record is not None:
                encoded, reason = encode_record(record)
            checked.append((number, item, record if encoded else None, reason, cleaned, encoded))
        tokens = self._count_tokens([c[2] for c in checked if c[2] is not None])
        hits = iter(rules.decontaminate.first_hits([contents(c[2]) for c in checked if c[2] is not None])
                    if rules.decontaminate is not None else ())
        parts = []  # of the lines, joined once
        checked.reverse()
        while checked:
            number, item, record, reason, cleaned, encoded = checked.pop()
            if reason == BLANK:
                parts += _line_parts({"s": "b", "f": number})
                continue
            n_tokens = next(tokens) if record is not None and self.counter else None
            contaminated = next(hits) if record is not None and rules.decontaminate is not None else None
            if record is not None and n_tokens is not None:
                if rules.min_tokens is not None and n_tokens < rules.min_tokens:
                    record, reason = None, "too_few_tokens"
                elif rules.max_tokens is not None and n_tokens > rules.max_tokens:
                    record, reason = None, "too_many_tokens"
            if record is not None and contaminated is not None:
                record, reason = None, f"contaminated:{contaminated[0]}"
            if record is None:
                reject = {"file": self.files[number], "line": item.number, "reason": reason, "raw": item.raw}
                if contaminated is not None:  # which items it contains (the first few)
                    reject["eval_items"] = contaminated[1][:EVAL_ITEMS_SHOWN]
                parts += _line_parts({"s": "r", "f": number, "c": int(cleaned), "reason": reason},
                                     json.dumps(reject, ensure_ascii=False).encode("utf-8"))
                continue
            line_number, item = item.number, None  # kept: its raw text is freed before hashing copies the text
            hasher = hashlib.blake2b(digest_size=16)
            for piece in _utf8(dedup_key(record)):
                hasher.update(piece)
            digest = hasher.digest()
            meta = {"s": "k", "f": number, "n": line_number, "c": int(cleaned), "chars": content_chars(record),
                    "tokens": n_tokens, "h": digest.hex(), "m": self._signature(record, digest)}
            parts += _line_parts(meta, encoded)
        return b"".join(parts)

    def _signature(self, record: dict, digest: bytes) -> str | None:
        """The record's MinHash signature (base64), or None when near de-dup is off or this process has signed
        a record with the same text before: the gather side knows what became of that one (dedup.py)."""
        if self.rules.minhash is None or digest in self.signed:
            return None
        if len(self.signed) >= SIGNED_MAX:
            self.signed.clear()  # bounded memory; only repeats further apart than this get signed again
        self.signed.add(digest)
        return base64.b64encode(minhash_signature(near_dup_text(record), self.rules.minhash)).decode("ascii")

    def _count_tokens(self, records: list[dict]) -> Iterator[int]:
        """Each record's token count, counted in one batch over all their texts."""
        if self.counter is None:
            return iter(())
        texts = [text for record in records for text in contents(record)]
        counts = iter(self.counter.count(texts))
        return iter([sum(next(counts) for _ in contents(record)) for record in records])


def _chunks(items: Iterable[tuple[int, Line | RawItem]], read: ReadPosition) -> Iterator[list]:
    chunk, size = [], 0
    for entry in items:
        chunk.append(entry)
        size += len(entry[1].text if isinstance(entry[1], Line) else entry[1].raw)
        del entry  # the chunk holds it, and the checker takes it out: a huge record is not held here meanwhile
        if len(chunk) >= CHUNK_ITEMS or size >= CHUNK_BYTES:
            read.at(chunk[-1][0], chunk[-1][1].number)  # progress reads it once per chunk, not per record
            yield chunk
            chunk, size = [], 0
    if chunk:
        read.at(chunk[-1][0], chunk[-1][1].number)
        yield chunk


_worker_checker: ChunkChecker | None = None


def _start_worker(rules: RecordRules, files: list[str]) -> None:
    global _worker_checker
    # A forked worker inherits the parent's Python signal handlers; one that turns SIGTERM into anything but
    # an exit makes Pool.terminate (every `with Pool` ends with it) wait for the worker forever.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker_checker = ChunkChecker(rules, files)


def _check_in_worker(chunk: list) -> tuple[bytes, int]:
    count = len(chunk)  # before the checker empties it
    return _worker_checker(chunk), count


def _checked_chunks(chunks: Iterator[list], rules: RecordRules, files: list[str],
                    workers: int) -> Iterator[tuple[bytes, int]]:
    """(shard lines, items) per chunk, in input order, whatever the number of workers."""
    if workers == 1:
        checker = ChunkChecker(rules, files)
        for chunk in chunks:
            count = len(chunk)  # before the checker empties it
            yield checker(chunk), count
        return
    # fork: the workers inherit the rules (a custom adapter is a closure, which pickling cannot carry)
    with multiprocessing.get_context("fork").Pool(workers, _start_worker, (rules, files)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_check_in_worker, (chunk,)))
            if len(pending) >= CHUNKS_IN_FLIGHT * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


END_TAIL = 4096  # bytes at a shard file's end that hold its end marker line


def shard_items(path: Path) -> int:
    """The items a shard file holds, from its end marker, without reading the file; 0 when it has none (the
    gather stops on such a file, with the reason)."""
    with open(path, "rb") as stream:
        stream.seek(max(stream.seek(0, os.SEEK_END) - END_TAIL, 0))
        last = stream.read().rstrip(b"\n").rpartition(b"\n")[2]
    try:
        meta = json.loads(last.partition(b"\t")[0])
    except ValueError:
        return 0
    return meta["items"] if isinstance(meta, dict) and meta.get("s") == "end" else 0


def shard_lines(inputs: list[Path], rules: RecordRules, dataset: str, shard: int = 0, shards: int = 1,
                workers: int = 1) -> Iterator[bytes]:
    """The shard file's content, in blocks: header, one line per owned item of `inputs`, end marker."""
    assert 0 <= shard < shards and workers >= 1, (shard, shards, workers)
    files = [p.name for p in inputs]
    yield _line({"s": "header", "dataset": dataset, "shard": shard, "shards": shards, "files": files})
    desc = f"udatasets {dataset}" + (f" shard {shard} of {shards}" if shards > 1 else "")
    with Progress(desc, "records", inputs, rows=[row_count(p) for p in inputs]) as progress:
        chunks = _chunks(iter_items(inputs, rules.txt_mode, shard, shards), progress.read)
        for block, count in _checked_chunks(chunks, rules, files, workers):
            progress.advance(count)
            yield block
    yield _line({"s": "end", "items": progress.items})
