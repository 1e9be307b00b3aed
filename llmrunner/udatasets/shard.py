"""The map half of udatasets: raw items -> one shard line each, checked, cleaned, filtered, with de-dup keys.

Per item: adapter -> cleaning (clean.py) -> empty / character-length filters -> the exact-dedup hash of the
normalised text -> JSON encoding -> token-length filters -> decontamination (decontaminate.py: a record that
contains an eval item is rejected as `contaminated:<set>`, its reject line naming the items in `eval_items`) ->
(near de-dup on) the kept candidate's MinHash signature, made for a chunk's records in one batch. Everything that
depends on one record alone happens here, in parallel worker processes; de-duplication, which depends on every
earlier record, happens in dedup.py. Repeats cost next to nothing: a record whose hash is that of a record the
same process kept (de-dup on: RecordRules.drop_repeats) stops at its hash, as a `d` line, since it is sure to be
a duplicate of what that record matched (see ChunkChecker._repeats for when it is sure). With worker processes,
each reads the input itself and checks every n-th chunk, and learns through the parent what the others kept
(KeptLog), so a repeat stops at its hash whichever worker kept its record.

The one-process form (core.map_and_gather) hands the entries (`Entry`: meta and payload) to the gather as they
are; a shard job writes them as lines (encode_entries), which the gather job reads back (decode_line).

Shard file (`data/processed/<kind>/.shards/<dataset>.<i>-of-<n>.jsonl`, an intermediate): lines
`<meta JSON>\\t<payload>\\n`, which split at the first tab (JSON escapes tabs and newlines inside strings):
- first, the header `{"s": "header", "dataset", "shard": i, "shards": n, "files": [names]}`;
- one line per raw item that the shard owns (running index j over all items of the dataset's files, blank
  lines included, with j % n == i), in input order:
  `{"s": "b", "f"}` a blank line (not a record); `{"s": "r", "f", "c", "reason"}` + the rejects-file line;
  `{"s": "k", "f", "n", "c", "chars", "tokens", "h", "m", "b"}` + the record's output line: a candidate for
  the data file (`f` file number, `n` line, `c` 1 when cleaning changed the text, `tokens` null when not
  counted, `h` exact-dedup hash as hex, `m` MinHash signature and `b` its LSH band keys (near_dup.band_hashes,
  made here for a chunk at once) as base64, both null when near de-dup is off);
  `{"s": "d", "f", "n", "c", "h"}` and no payload: a repeat of a record this process kept (above);
- last, `{"s": "end", "items": count}`, so that a cut-short file is never mistaken for a whole one.
"""
from __future__ import annotations

import base64
import gc
import hashlib
import itertools
import json
import os
import signal
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import xxhash

from llmrunner.errors import StageError
from llmrunner.jsonl import Line, bytes_read
from llmrunner.progress import Progress
from llmrunner.udatasets.adapters import Adapter
from llmrunner.udatasets.clean import Cleaning
from llmrunner.udatasets.near_dup import (
    MinHashConfig,
    band_hashes,
    minhash_signature,
    minhash_signatures,
    normalised_ascii,
)
from llmrunner.udatasets.readers import BLANK, RawItem, iter_items, jsonl_item, row_count
from llmrunner.udatasets.records import content_chars, contents, dedup_key, is_blank, near_dup_text
from llmrunner.udatasets.tokens import TokenCounter

if TYPE_CHECKING:  # decontaminate.py is imported where eval sets are listed (settings.py)
    from llmrunner.udatasets.decontaminate import EvalIndex

CHUNK_ITEMS = 128  # items per chunk, what a worker process checks at a time
CHUNK_BYTES = 2 << 20  # ... or fewer, when they hold this much raw text
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


def check_adapted(record: dict, rules: RecordRules,
                  cleaning: tuple[dict, bool] | None = None) -> tuple[dict | None, str | None, bool]:
    """check_record after the adapter: cleaning (`cleaning`: its result, where Cleaning.batch made it) and the
    character filters."""
    record, cleaned = cleaning if cleaning is not None else rules.cleaning.record(record)
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


# For a record whose strings are all ASCII, the same output as _ENCODER but for DEL (\x7f), which only it escapes;
# ~35% faster.
_ASCII_ENCODER = json.JSONEncoder()


def encode_record(record: dict) -> tuple[bytes | None, str | None]:
    """(the record's output line without newline, None) or (None, reject reason)."""
    if _plain_cpt(record) and len(record["text"]) <= PIECE_CHARS and record["text"].isascii():
        line = _ASCII_ENCODER.encode(record)
        if "\\u007f" not in line:  # else a DEL, or text that spells its escape: encoded as below
            return line.encode("ascii"), None
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


Entry = tuple[dict, bytes]
"""(meta, payload) of one item, as the map side makes it and the gather reads it: the meta's hash, signature and
band keys as bytes. A shard file holds them as lines (encode_entries, decode_line)."""
_META_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode_entries(entries: list[Entry]) -> bytes:
    """The shard lines of `entries`, joined (a huge payload is copied once, not twice)."""
    parts = []
    for meta, payload in entries:
        if "h" in meta:
            meta = {**meta, "h": meta["h"].hex()}
            for name in ("m", "b"):
                if meta.get(name) is not None:
                    meta[name] = base64.b64encode(meta[name]).decode("ascii")
        parts += (_META_ENCODER.encode(meta).encode("utf-8"), b"\t", payload, b"\n")
    return b"".join(parts)


def decode_line(line: bytes, source: str) -> Entry:
    """One shard line (with or without its newline) -> its entry."""
    meta, tab, payload = line.rstrip(b"\n").partition(b"\t")
    if not tab:
        raise StageError(f"{source}: not a udatasets shard line ({line[:80]!r}); delete the file and rerun")
    meta = json.loads(meta)
    if "h" in meta:
        meta["h"] = bytes.fromhex(meta["h"])
        for name in ("m", "b"):
            if meta.get(name) is not None:
                meta[name] = base64.b64decode(meta[name])
    return meta, payload


def _line(meta: dict) -> bytes:
    return encode_entries([(meta, b"")])


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
        # No token or contamination filter: a record that encodes is kept, and its repeats share its fate.
        self.decided = not rules.counts_tokens() and rules.decontaminate is None
        # exact-dedup hash of each record kept so far -> (with a filter on) the hash of its contents as they are
        self.kept: dict[bytes, bytes | None] = {}
        # hash of the contents of each record kept so far as the adapter gave them -> (its exact-dedup hash,
        # whether cleaning changed it): a repeat byte for byte is known before it is cleaned
        self.kept_as_read: dict[bytes, tuple[bytes, bool]] = {}
        # (a worker) what it kept since its last chunk, as KeptLog holds it
        self.keeps: list[tuple[bytes, bytes, bool]] | None = None

    def __call__(self, chunk: list[tuple[int, Line | RawItem]]) -> list[Entry]:
        """The entries of `chunk`'s items (what their shard lines hold, see encode_entries). Takes the items out of
        `chunk` as it goes, and drops each copy of a record's text once it is not needed: a huge record is held in
        memory a few times, not once per step."""
        entries, open_ = [], []
        chunk.reverse()
        while chunk:
            entry, record = self.front(*chunk.pop())
            entries.append(entry)
            if record is not None:
                open_.append((entry, record))
        self.back(open_)
        return self.finish(entries)

    def finish(self, entries: list[_Entry]) -> list[Entry]:
        """The entries of a chunk's checked items: the filters that look at the whole chunk, the signatures."""
        candidates = [e for e in entries if e.record is not None]
        if not self.decided:
            self._filter(candidates)
        if self.rules.minhash is not None:
            self._sign([e for e in candidates if e.record is not None and e.key is not None])
        done = []
        entries.reverse()
        while entries:
            done.append(self._entry(entries.pop()))
        return done

    def front(self, number: int, item: Line | RawItem) -> tuple[_Entry, dict | None]:
        """Parsing, the adapter, and (de-dup on) whether the record repeats, as it is, one this process kept:
        (the entry, None) when that settles its fate, else (the entry, the adapted record) for `back`."""
        if isinstance(item, Line):
            item = jsonl_item(item)
        if item.reason == BLANK:
            return _Entry(number, item.number, None, BLANK), None
        # the parsed raw record is dropped: only its raw text may be needed (a reject)
        entry = _Entry(number, item.number, item.raw, item.reason)
        record, item = item.record, None
        if record is None:
            return entry, None
        record, entry.reason = self.rules.adapter(record)
        if record is None:
            return entry, None
        if self.rules.drop_repeats:
            entry.as_read = _contents_digest(record)
            known = self.kept_as_read.get(entry.as_read)
            if known is not None and _encodes_besides_contents(record):
                entry.digest, entry.cleaned = known
                entry.reason, entry.raw = REPEAT, None
                return entry, None
        return entry, record

    def back(self, items: list[tuple[_Entry, dict]]) -> None:
        """The rest of the records `front` left open, in order, but the filters that look at a whole chunk:
        cleaning, the character filters, the hash (the chunk's at once), and, for a record that does not repeat a
        kept one, its output line. Takes the items out of `items`."""
        cleaned = []
        batch = self.rules.cleaning.batch([record for _, record in items])
        items.reverse()
        batch.reverse()
        while items:
            entry, record = items.pop()
            record, entry.reason, entry.cleaned = check_adapted(record, self.rules, batch.pop())
            if record is not None:
                cleaned.append((entry, record))
        for (entry, record), (entry.digest, key) in zip(cleaned, _digests([record for _, record in cleaned])):
            if entry.digest is not None and self._repeats(entry.digest, record):
                entry.reason, entry.raw = REPEAT, None
                continue
            entry.encoded, entry.reason = encode_record(record)
            if entry.encoded is not None:
                entry.record, entry.key = record, key
                if self.decided:
                    entry.raw = None  # kept: no reject line will need it
                    self._remember(entry)

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
        self._bound()
        self.kept[entry.digest] = None if self.decided else _contents_digest(entry.record)
        if entry.as_read is not None:
            self.kept_as_read[entry.as_read] = entry.digest, entry.cleaned
            if self.keeps is not None:
                self.keeps.append((entry.as_read, entry.digest, entry.cleaned))

    def learn(self, as_read: bytes, digest: bytes, cleaned: bool) -> None:
        """Another worker kept a record with these contents as read (KeptLog)."""
        self._bound()
        self.kept_as_read[as_read] = digest, cleaned

    def _bound(self) -> None:
        if len(self.kept) >= KEPT_MAX or len(self.kept_as_read) >= KEPT_MAX:
            self.kept.clear()  # bounded memory; only repeats further apart than this are checked in full
            self.kept_as_read.clear()

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
        signatures = minhash_signatures(texts, self.rules.minhash, spaced=True)  # normalised texts
        for entry, signature, bands in zip(entries, signatures, band_hashes(signatures, self.rules.minhash)):
            entry.signature, entry.bands = signature, bands

    def _entry(self, entry: _Entry) -> Entry:
        if entry.reason == BLANK:
            return {"s": "b", "f": entry.number}, b""
        if entry.reason == REPEAT:
            return {"s": "d", "f": entry.number, "n": entry.line, "c": int(entry.cleaned), "h": entry.digest}, b""
        if entry.record is None:
            reject = {"file": self.files[entry.number], "line": entry.line, "reason": entry.reason, "raw": entry.raw}
            if entry.contaminated is not None:  # which items it contains (the first few)
                reject["eval_items"] = entry.contaminated[1][:EVAL_ITEMS_SHOWN]
            return ({"s": "r", "f": entry.number, "c": int(entry.cleaned), "reason": entry.reason},
                    json.dumps(reject, ensure_ascii=False).encode("utf-8"))
        record, entry.record = entry.record, None
        signature, bands = entry.signature, entry.bands
        if self.rules.minhash is not None and signature is None:
            signature = minhash_signature(near_dup_text(record), self.rules.minhash)
            bands = band_hashes([signature], self.rules.minhash)[0]
        return ({"s": "k", "f": entry.number, "n": entry.line, "c": int(entry.cleaned), "chars": content_chars(record),
                 "tokens": entry.tokens, "h": entry.digest, "m": signature, "b": bands}, entry.encoded)

    @cached_property
    def counter(self) -> TokenCounter:
        """Loaded with the first chunk whose records are counted (a token filter is set)."""
        return TokenCounter(self.rules.tokenizer)

    def _count_tokens(self, records: list[dict]) -> list[int | None]:
        """Each record's token count (None when not counted), counted in one batch over all their texts."""
        if not self.rules.counts_tokens():
            return [None] * len(records)
        texts = [text for record in records for text in contents(record)]
        counts = iter(self.counter.count(texts))
        return [sum(next(counts) for _ in contents(record)) for record in records]


def _digest(record: dict) -> tuple[bytes | None, str | None]:
    """(the exact-dedup hash of the record's normalised text, that text when it is short enough to keep for the
    near-dup text) or (None, None) for a text that holds a lone surrogate, which encoding then rejects."""
    key = dedup_key(record)
    digest = _hash(_exact_hasher(), [key])
    return (digest, key if len(key) <= PIECE_CHARS else None) if digest is not None else (None, None)


def _digests(records: list[dict]) -> list[tuple[bytes | None, str | None]]:
    """[_digest(record) for record in records]: the normalised texts of the CPT records whose text is ASCII (most)
    made at once (near_dup.normalised_ascii); the others one by one."""
    results = [None] * len(records)
    batch = [i for i, record in enumerate(records)
             if "messages" not in record and len(record["text"]) <= PIECE_CHARS and record["text"].isascii()]
    keys = normalised_ascii([records[i]["text"].encode("ascii") for i in batch]) if batch else []
    for i, key in zip(batch, keys):
        results[i] = _exact_hasher(key).digest(), key.decode("ascii")
    return [result if result is not None else _digest(record) for result, record in zip(results, records)]


def _exact_hasher(data: bytes = b""):
    """The exact-dedup hash (`h` of shard lines, which the gather compares across jobs and datasets): BLAKE2b."""
    return hashlib.blake2b(data, digest_size=16)


def _contents_digest(record: dict) -> bytes | None:
    """A hash of what cleaning, the filters and the de-dup keys read, as it is: the text, or (SFT) each turn's
    role and content, each with its length first; None for a text that holds a lone surrogate. XXH3-128: ~4x
    faster than BLAKE2b, and it never leaves the map job (it is computed for every record, repeats included)."""
    if "messages" not in record:
        return _hash(xxhash.xxh3_128(), [record["text"]])  # one text: no lengths needed to tell where it ends
    return _hash(xxhash.xxh3_128(), [text for m in record["messages"] for text in (m["role"], m["content"])],
                 lengths=True)


def _hash(hasher, texts: list[str], lengths: bool = False) -> bytes | None:
    """The 16-byte `hasher` digest of the texts' UTF-8, each after its length and a colon with `lengths`; None for
    a text that holds a lone surrogate."""
    try:
        for text in texts:
            if lengths:
                hasher.update(b"%d:" % len(text))
            if len(text) <= PIECE_CHARS:  # most texts: one piece
                hasher.update(text.encode("utf-8"))
                continue
            for piece in _utf8(text):
                hasher.update(piece)
    except UnicodeEncodeError:
        return None
    return hasher.digest()


_INT64 = range(-1 << 63, 1 << 63)


def _plain(value: object) -> bool:
    """A value that JSON encodes for sure: an ASCII str, None, a bool or a 64-bit int."""
    return (type(value) is str and value.isascii()) or value is None or type(value) is bool \
        or (type(value) is int and value in _INT64)


def _plain_cpt(record: dict) -> bool:
    """A CPT record whose keys are ASCII and whose values besides the text are _plain (most records)."""
    if "text" not in record:
        return False
    for name, value in record.items():  # a loop, not all(...): ~2x faster on a record of a few keys
        if type(name) is not str or not name.isascii() or not (name == "text" or _plain(value)):
            return False
    return True


def _encodes_besides_contents(record: dict) -> bool:
    """Whether the record with its contents emptied encodes: a repeat of a kept record's contents is rejected
    for the rest of it (a NaN, say) as it would be in full. A _plain_cpt record needs no encoding."""
    if _plain_cpt(record):
        return True
    emptied = {**record, "messages": [{**m, "content": ""} for m in record["messages"]]} if "messages" in record \
        else {**record, "text": ""}
    return encode_record(emptied)[1] is None


def _chunks(items: Iterable[tuple[int, Line | RawItem]]) -> Iterator[tuple[list, tuple[int, int, int]]]:
    """Chunks of CHUNK_ITEMS items, or fewer when they hold CHUNK_BYTES of raw text, each with where the reading
    is at its end (ReadPosition.at's arguments: progress reads them once per chunk, not per record)."""
    chunk, size = [], 0
    for entry in items:
        chunk.append(entry)
        size += len(entry[1].text if isinstance(entry[1], Line) else entry[1].raw)
        del entry  # the chunk holds it, and the checker takes it out: a huge record is not held here meanwhile
        if len(chunk) >= CHUNK_ITEMS or size >= CHUNK_BYTES:
            yield chunk, (chunk[-1][0], chunk[-1][1].number, bytes_read())
            chunk, size = [], 0
    if chunk:
        yield chunk, (chunk[-1][0], chunk[-1][1].number, bytes_read())


class KeptLog:
    """The records kept so far, in input order, as the parent learns of them from its workers' results: (hash of the
    contents as read, exact-dedup hash, whether cleaning changed it), in memory the workers share. A worker reads
    what is new before each chunk (ChunkChecker.learn), so a repeat of a record that another worker kept stops at
    its hash there too. Every entry comes from a chunk before any that a worker is checking (the parent takes
    results in input order), so a `d` line never names a later record. Full at KEPT_MAX: repeats further on of
    records kept since are checked in full by the workers that did not keep them, and the gather finds them."""
    ENTRY = 33  # bytes: 16 + 16 + 1

    def __init__(self, context) -> None:
        import mmap  # here: a one-process job does without it

        self.memory = mmap.mmap(-1, KEPT_MAX * self.ENTRY)  # shared with workers forked later; pages cost once used
        self.count = context.Value("q", 0)  # its lock puts the entries' writes before a reader sees the new count

    def append(self, keeps: list[tuple[bytes, bytes, bool]]) -> None:
        count = self.count.value
        for as_read, digest, cleaned in keeps[:KEPT_MAX - count]:
            self.memory[count * self.ENTRY:(count + 1) * self.ENTRY] = as_read + digest + bytes([cleaned])
            count += 1
        self.count.value = count

    def read(self, start: int) -> tuple[list[tuple[bytes, bytes, bool]], int]:
        """(the entries from `start` on, where they end)."""
        end = self.count.value
        block = self.memory[start * self.ENTRY:end * self.ENTRY]
        return [(block[i:i + 16], block[i + 16:i + 32], block[i + 32] == 1)
                for i in range(0, len(block), self.ENTRY)], end


def _check(checker: ChunkChecker, chunk: list, encode: bool) -> tuple[list[Entry] | bytes, int]:
    """(the chunk's entries, or their shard lines with `encode`, its item count), in this process or a worker."""
    count = len(chunk)  # before the checker empties it
    entries = checker(chunk)
    return (encode_entries(entries) if encode else entries), count


def _as_worker() -> None:
    """A forked worker inherits the parent's Python signal handlers; one that turns SIGTERM into anything but an
    exit makes the parent, which ends its workers with SIGTERM when it stops early, wait for the worker forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _worker(items: Callable[[], Iterator], rules: RecordRules, files: list[str], worker: int, workers: int,
            encode: bool, log: KeptLog | None, results) -> None:
    """A worker process: it reads the input through (cheap: a JSON Lines line is parsed only where checked) and
    checks every `workers`-th chunk from its `worker`-th, sending each chunk's entries (or their shard lines, with
    `encode`), what of it was kept (for the parent's KeptLog), its item count and where the reading was; then None.
    An error goes to the parent as the exception, with this process's traceback as a note."""
    _as_worker()
    checker, learnt = ChunkChecker(rules, files), 0
    checker.keeps = []
    try:
        for number, (chunk, at) in enumerate(_chunks(items())):
            if number % workers != worker:
                continue
            if log is not None:
                known, learnt = log.read(learnt)
                for as_read, digest, cleaned in known:
                    checker.learn(as_read, digest, cleaned)
            block, count = _check(checker, chunk, encode)
            keeps, checker.keeps = checker.keeps, []
            results.send((block, keeps, count, at))
        results.send(None)
    except BaseException as err:  # noqa: BLE001 - whatever stops the worker stops the job, in the parent
        if not isinstance(err, StageError):
            err.add_note("in a udatasets worker process:\n" + traceback.format_exc())
        try:
            results.send(err)
        except Exception:  # an exception that does not pickle
            results.send(StageError(f"a udatasets worker process failed: {err!r}"))


PIPE_BYTES = 1 << 20  # a worker's results pipe: room for a few chunks' results, so it runs ahead of the gather


def _widen(pipe) -> None:
    """Make `pipe` hold PIPE_BYTES (Linux; elsewhere, or past the system's limit, it keeps its size): a worker
    whose result does not fit waits for this process to read it, and the results are read in turn."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


def _checked_chunks(items: Callable[[], Iterator], rules: RecordRules, files: list[str], workers: int,
                    encode: bool) -> Iterator[tuple[list[Entry] | bytes, int, tuple[int, int, int]]]:
    """(entries, or their shard lines with `encode`, the items, where the reading is) per chunk, in input order,
    whatever the number of workers. Worker processes each read the input themselves and check every n-th chunk;
    this process takes their results in turn and tells each what the others kept (KeptLog), so a repeat stops
    at its hash whichever worker kept its record. No chunk travels to a worker, and this process runs no
    threads, which would take the GIL from the gather."""
    if workers == 1:
        checker = ChunkChecker(rules, files)
        for chunk, at in _chunks(items()):
            yield *_check(checker, chunk, encode), at
        return
    import multiprocessing  # here: a one-process job does without its start-up

    # fork: the workers inherit the rules (a custom adapter is a closure, which pickling cannot carry)
    context = multiprocessing.get_context("fork")
    log = KeptLog(context) if rules.drop_repeats else None
    pipes = [context.Pipe(duplex=False) for _ in range(workers)]
    for receiver, _ in pipes:
        _widen(receiver)
    processes = [context.Process(target=_worker, args=(items, rules, files, worker, workers, encode, log, sender),
                                 daemon=True) for worker, (_, sender) in enumerate(pipes)]
    # The workers fork with what exists now out of their collector's passes, whose marks would copy its pages
    # into each of them; this process collects it again once they have forked.
    gc.freeze()
    try:
        for process in processes:
            process.start()
    finally:
        gc.unfreeze()
    for _, sender in pipes:
        sender.close()  # a worker's own end only: its death reads as the end of its pipe here
    finished = False
    try:
        for number in itertools.count():
            try:
                result = pipes[number % workers][0].recv()
            except EOFError:
                raise StageError("a udatasets worker process ended without finishing (killed? out of memory? "
                                 "see the messages above); rerun the step") from None
            if result is None:
                break
            if isinstance(result, BaseException):
                raise result
            block, keeps, count, at = result
            if log is not None:
                log.append(keeps)
            yield block, count, at
        finished = True
    finally:
        for process in processes:
            if not finished:
                process.terminate()
            process.join()
        for receiver, _ in pipes:
            receiver.close()


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
    files = [p.name for p in inputs]
    yield _line({"s": "header", "dataset": dataset, "shard": shard, "shards": shards, "files": files})
    items = yield from _checked(inputs, rules, dataset, shard, shards, workers, encode=True)
    yield _line({"s": "end", "items": items})


def dataset_entries(inputs: list[Path], rules: RecordRules, dataset: str, workers: int = 1) -> Iterator[Entry]:
    """The entries of every item of `inputs`, in input order: what one shard's lines hold, never encoded."""
    for entries in _checked(inputs, rules, dataset, 0, 1, workers, encode=False):
        yield from entries


def _checked(inputs: list[Path], rules: RecordRules, dataset: str, shard: int, shards: int, workers: int,
             encode: bool) -> Generator[list[Entry] | bytes, None, int]:
    """Per chunk of the items that shard `shard` of `shards` owns: their entries (or lines, with `encode`), with a
    progress line; returns the number of items."""
    assert 0 <= shard < shards and workers >= 1, (shard, shards, workers)
    files = [p.name for p in inputs]
    desc = f"udatasets {dataset}" + (f" shard {shard} of {shards}" if shards > 1 else "")
    with Progress(desc, "records", inputs, rows=[row_count(p) for p in inputs]) as progress:
        def items() -> Iterator[tuple[int, Line | RawItem]]:
            return iter_items(inputs, rules.txt_mode, shard, shards)

        for block, count, at in _checked_chunks(items, rules, files, workers, encode):
            progress.read.at(*at)
            progress.advance(count)
            yield block
    return progress.items
