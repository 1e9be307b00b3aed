"""The map half of udatasets: raw items -> one shard line each, checked, cleaned, filtered, with de-dup keys.

Per item: adapter -> cleaning (clean.py) -> empty / character-length filters -> the exact-dedup hash of the
normalised text -> JSON encoding -> token-length filters -> decontamination (decontaminate.py: a record that
contains an eval item is rejected as `contaminated:<set>`, its reject line naming the items in `eval_items`) ->
(near de-dup on) the kept candidate's MinHash signature, made for a chunk's records in one batch. Everything that
depends on one record alone happens here, in parallel worker processes; de-duplication, which depends on every
earlier record, happens in dedup.py. Repeats cost next to nothing: a record whose hash is that of a record the
same process kept (de-dup on: RecordRules.drop_repeats) stops at its hash, as a `d` line, since it is sure to be
a duplicate of what that record matched (see ChunkChecker._repeats for when it is sure).

Shard file (`data/processed/<kind>/.shards/<dataset>.<i>-of-<n>.jsonl`, an intermediate): lines
`<meta JSON>\\t<payload>\\n`, which split at the first tab (JSON escapes tabs and newlines inside strings):
- first, the header `{"s": "header", "dataset", "shard": i, "shards": n, "files": [names]}`;
- one line per raw item that the shard owns (running index j over all items of the dataset's files, blank
  lines included, with j % n == i), in input order:
  `{"s": "b", "f"}` a blank line (not a record); `{"s": "r", "f", "c", "reason"}` + the rejects-file line;
  `{"s": "k", "f", "n", "c", "chars", "tokens", "h", "m"}` + the record's output line: a candidate for
  the data file (`f` file number, `n` line, `c` 1 when cleaning changed the text, `tokens` null when not
  counted, `h` exact-dedup hash as hex, `m` MinHash signature as base64, null when near de-dup is off, and
  then `b`, its LSH band keys (near_dup.band_hashes) as base64, made here for a chunk at once);
  `{"s": "d", "f", "n", "c", "h"}` and no payload: a repeat of a record this process kept (above);
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
from typing import TYPE_CHECKING

from llmrunner.jsonl import Line
from llmrunner.progress import Progress, ReadPosition
from llmrunner.udatasets.adapters import Adapter
from llmrunner.udatasets.clean import Cleaning
from llmrunner.udatasets.near_dup import MinHashConfig, band_hashes, minhash_signature, minhash_signatures
from llmrunner.udatasets.readers import BLANK, RawItem, iter_items, jsonl_item, row_count
from llmrunner.udatasets.records import content_chars, contents, dedup_key, is_blank, near_dup_text
from llmrunner.udatasets.tokens import TokenCounter

if TYPE_CHECKING:  # decontaminate.py is imported where eval sets are listed (settings.py)
    from llmrunner.udatasets.decontaminate import EvalIndex

CHUNK_ITEMS = 256  # items per task sent to a worker
CHUNK_BYTES = 4 << 20  # ... or fewer, when they hold this much raw text
CHUNKS_IN_FLIGHT = 3  # per worker: bounds the memory held by chunks read ahead or waiting to be written
EVAL_ITEMS_SHOWN = 5  # ids of the eval items a contaminated record's reject line names
KEPT_MAX = 1 << 19  # kept records a process remembers, to drop their repeats (~260 bytes each: 130 MiB at most)
REPEAT = "repeat"  # a record whose normalised text repeats one the same process kept: a `d` line


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
    drop_repeats: bool = False
    """De-duplication is on (exact or near): a record whose normalised text repeats one that this process kept is
    written as a `d` line as soon as it is hashed, without the work after that (the gather names the kept record)."""

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
    return check_adapted(record, rules)


def check_adapted(record: dict, rules: RecordRules) -> tuple[dict | None, str | None, bool]:
    """check_record after the adapter: cleaning and the character filters."""
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


_META_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _line_parts(meta: dict, payload: bytes = b"") -> list[bytes]:
    """One shard line, in parts to be joined with the other lines (a huge payload is copied once, not twice)."""
    return [_META_ENCODER.encode(meta).encode("utf-8"), b"\t", payload, b"\n"]


def _line(meta: dict) -> bytes:
    return b"".join(_line_parts(meta))


class _Entry:
    """One item of a chunk on its way to its shard line."""
    __slots__ = ("number", "line", "raw", "cleaned", "reason", "record", "encoded", "as_read", "digest", "key",
                 "tokens", "contaminated", "signature", "bands")

    def __init__(self, number: int, line: int, raw: str | None, reason: str | None, cleaned: bool = False) -> None:
        self.number, self.line, self.raw, self.reason, self.cleaned = number, line, raw, reason, cleaned
        self.record: dict | None = None  # a kept candidate (reason None), with its output line `encoded`
        self.encoded = self.as_read = self.digest = self.key = self.tokens = self.contaminated = None
        self.signature = self.bands = None


class ChunkChecker:
    """Turns chunks of raw items into shard lines; one per process (it holds the tokenizer, and the hashes of the
    records it kept, whose repeats it writes as `d` lines)."""

    def __init__(self, rules: RecordRules, files: list[str]) -> None:
        self.rules, self.files = rules, files
        self.counter = TokenCounter(rules.tokenizer) if rules.counts_tokens() else None
        # No token or contamination filter: a record that encodes is kept, and its repeats share its fate.
        self.decided = self.counter is None and rules.decontaminate is None
        # exact-dedup hash of each record kept so far -> (with a filter on) the hash of its contents as they are
        self.kept: dict[bytes, bytes | None] = {}
        # hash of the contents of each record kept so far as the adapter gave them -> (its exact-dedup hash,
        # whether cleaning changed it): a repeat byte for byte is known before it is cleaned
        self.kept_as_read: dict[bytes, tuple[bytes, bool]] = {}

    def __call__(self, chunk: list[tuple[int, Line | RawItem]]) -> bytes:
        """The shard lines of `chunk`'s items. Takes the items out of `chunk` as it goes, and drops each copy of a
        record's text once it is not needed: a huge record is held in memory a few times, not once per step."""
        entries = []
        chunk.reverse()
        while chunk:
            entries.append(self._check(*chunk.pop()))
        candidates = [e for e in entries if e.record is not None]
        if not self.decided:
            self._filter(candidates)
        if self.rules.minhash is not None:
            self._sign([e for e in candidates if e.record is not None and e.key is not None])
        parts = []  # of the lines, joined once
        entries.reverse()
        while entries:
            parts += self._line_parts(entries.pop())
        return b"".join(parts)

    def _check(self, number: int, item: Line | RawItem) -> _Entry:
        """Everything but the filters that look at a whole chunk: parsing, the adapter, cleaning, the character
        filters, the hash, and, for a record that does not repeat a kept one, its output line."""
        if isinstance(item, Line):
            item = jsonl_item(item)
        if item.reason == BLANK:
            return _Entry(number, item.number, None, BLANK)
        # the parsed raw record is dropped: only its raw text may be needed (a reject)
        entry = _Entry(number, item.number, item.raw, item.reason)
        record, item = item.record, None
        if record is None:
            return entry
        record, entry.reason = self.rules.adapter(record)
        if record is None:
            return entry
        if self.rules.drop_repeats:
            entry.as_read = _contents_digest(record)
            known = self.kept_as_read.get(entry.as_read)
            if known is not None and _encodes_besides_contents(record):
                entry.digest, entry.cleaned = known
                entry.reason, entry.raw = REPEAT, None
                return entry
        record, entry.reason, entry.cleaned = check_adapted(record, self.rules)
        if record is None:
            return entry
        entry.digest, key = _digest(record)
        if entry.digest is not None and self._repeats(entry.digest, record):
            entry.reason, entry.raw = REPEAT, None
            return entry
        entry.encoded, entry.reason = encode_record(record)
        if entry.encoded is not None:
            entry.record, entry.key = record, key
            if self.decided:
                entry.raw = None  # kept: no reject line will need it
                self._remember(entry)
        return entry

    def _repeats(self, digest: bytes, record: dict) -> bool:
        """Whether `record` is sure to share the fate of a record this process kept: the same normalised text, the
        same contents where a token or contamination filter looks at them as they are, and the rest of the record
        encodable (else it is rejected as ever)."""
        if not self.rules.drop_repeats or digest not in self.kept:
            return False
        known = self.kept[digest]
        if known is not None and known != _contents_digest(record):
            return False
        return _encodes_besides_contents(record)

    def _remember(self, entry: _Entry) -> None:
        if not self.rules.drop_repeats:
            return
        if len(self.kept) >= KEPT_MAX:
            self.kept.clear()  # bounded memory; only repeats further apart than this are checked in full
            self.kept_as_read.clear()
        self.kept[entry.digest] = None if self.decided else _contents_digest(entry.record)
        if entry.as_read is not None:
            self.kept_as_read[entry.as_read] = entry.digest, entry.cleaned

    def _filter(self, candidates: list[_Entry]) -> None:
        """The token-length and contamination filters, over the chunk's candidates at once."""
        rules = self.rules
        tokens = self._count_tokens([e.record for e in candidates])
        hits = (rules.decontaminate.first_hits([contents(e.record) for e in candidates])
                if rules.decontaminate is not None else [None] * len(candidates))
        for entry, n_tokens, contaminated in zip(candidates, tokens, hits):
            entry.tokens, entry.contaminated = n_tokens, contaminated
            if n_tokens is not None and rules.min_tokens is not None and n_tokens < rules.min_tokens:
                entry.reason = "too_few_tokens"
            elif n_tokens is not None and rules.max_tokens is not None and n_tokens > rules.max_tokens:
                entry.reason = "too_many_tokens"
            elif contaminated is not None:
                entry.reason = f"contaminated:{contaminated[0]}"
            if entry.reason is not None:
                entry.record = entry.encoded = None
            else:
                entry.raw = None
                self._remember(entry)

    def _sign(self, entries: list[_Entry]) -> None:
        """The MinHash signatures of the chunk's kept records, in one batch (a huge record's is made when its line
        is written: its text is case-folded a piece at a time there)."""
        texts = [near_dup_text(e.record, e.key) for e in entries]
        signatures = minhash_signatures(texts, self.rules.minhash)
        for entry, signature, bands in zip(entries, signatures, band_hashes(signatures, self.rules.minhash)):
            entry.signature, entry.bands = signature, bands

    def _line_parts(self, entry: _Entry) -> list[bytes]:
        if entry.reason == BLANK:
            return _line_parts({"s": "b", "f": entry.number})
        if entry.reason == REPEAT:
            return _line_parts({"s": "d", "f": entry.number, "n": entry.line, "c": int(entry.cleaned),
                                "h": entry.digest.hex()})
        if entry.record is None:
            reject = {"file": self.files[entry.number], "line": entry.line, "reason": entry.reason, "raw": entry.raw}
            if entry.contaminated is not None:  # which items it contains (the first few)
                reject["eval_items"] = entry.contaminated[1][:EVAL_ITEMS_SHOWN]
            return _line_parts({"s": "r", "f": entry.number, "c": int(entry.cleaned), "reason": entry.reason},
                               json.dumps(reject, ensure_ascii=False).encode("utf-8"))
        record, entry.record = entry.record, None
        signature, bands = entry.signature, entry.bands
        if self.rules.minhash is not None and signature is None:
            signature = minhash_signature(near_dup_text(record), self.rules.minhash)
            bands = band_hashes([signature], self.rules.minhash)[0]
        meta = {"s": "k", "f": entry.number, "n": entry.line, "c": int(entry.cleaned), "chars": content_chars(record),
                "tokens": entry.tokens, "h": entry.digest.hex(),
                "m": base64.b64encode(signature).decode("ascii") if signature is not None else None}
        if bands is not None:
            meta["b"] = base64.b64encode(bands).decode("ascii")
        return _line_parts(meta, entry.encoded)

    def _count_tokens(self, records: list[dict]) -> list[int | None]:
        """Each record's token count (None when not counted), counted in one batch over all their texts."""
        if self.counter is None:
            return [None] * len(records)
        texts = [text for record in records for text in contents(record)]
        counts = iter(self.counter.count(texts))
        return [sum(next(counts) for _ in contents(record)) for record in records]


def _digest(record: dict) -> tuple[bytes | None, str | None]:
    """(the exact-dedup hash of the record's normalised text, that text when it is short enough to keep for the
    near-dup text) or (None, None) for a text that holds a lone surrogate, which encoding then rejects."""
    key = dedup_key(record)
    hasher = hashlib.blake2b(digest_size=16)
    try:
        for piece in _utf8(key):
            hasher.update(piece)
    except UnicodeEncodeError:
        return None, None
    return hasher.digest(), key if len(key) <= PIECE_CHARS else None


def _contents_digest(record: dict) -> bytes | None:
    """A hash of what cleaning, the filters and the de-dup keys read, as it is: the contents (SFT: with each
    turn's role), each with its length first; None for a text that holds a lone surrogate."""
    hasher = hashlib.blake2b(digest_size=16)
    texts = [text for m in record["messages"] for text in (m["role"], m["content"])] if "messages" in record \
        else [record["text"]]
    try:
        for text in texts:
            hasher.update(b"%d:" % len(text))
            for piece in _utf8(text):
                hasher.update(piece)
    except UnicodeEncodeError:
        return None
    return hasher.digest()


def _encodes_besides_contents(record: dict) -> bool:
    """Whether the record with its contents emptied encodes: a repeat of a kept record's contents is rejected
    for the rest of it (a NaN, say) as it would be in full."""
    emptied = {**record, "messages": [{**m, "content": ""} for m in record["messages"]]} if "messages" in record \
        else {**record, "text": ""}
    return encode_record(emptied)[1] is None


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
