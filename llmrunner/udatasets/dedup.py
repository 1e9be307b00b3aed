"""The gather half of udatasets: shard lines (shard.py) -> the dataset's outputs, de-duplicated across datasets.

The shard files of one dataset are read round-robin (shard 0's first item, shard 1's first, ..., shard 0's
second, ...), which restores the input order, since shard i owns the items whose running index j has
j % n == i. So the outputs do not depend on the number of shards.

De-duplication runs in a fixed order over the datasets of one kind (pipeline.yaml order): the kept records
of every earlier dataset are replayed into the index first (from their shard files, by the same rules, so
that each dataset's job needs no other job's outputs), then this dataset's records are checked in order.
A record is an exact duplicate when its hash matches a kept record's, else a near duplicate when its MinHash
signature matches one (NearDupIndex: the earliest match), else it is kept and added to the index. The
duplicates file names the kept record each duplicate matched: dataset, file and line (a repeat of a near
duplicate is a near duplicate of the same kept record, see Deduplicator).
"""
from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, NamedTuple

from llmrunner.errors import StageError
from llmrunner.udatasets.augment import AugmentSettings, augment
from llmrunner.udatasets.near_dup import MinHashConfig, NearDupIndex
from llmrunner.udatasets.shard import Entry, decode_line
from llmrunner.udatasets.stats import Counts, LengthHistogram, duplicate_rate


class ShardGroup(NamedTuple):
    """The shard lines of one dataset, merged back into input order."""
    dataset: str
    files: list[str]
    entries: Iterable[Entry]


def parse_shard(lines: Iterable[bytes], source: str) -> tuple[dict, Iterator[Entry]]:
    """(header, the item entries) of one shard's lines; the entries end with a check of the end marker."""
    lines = iter(lines)
    first = next(lines, b"")
    header = decode_line(first, source)[0] if b"\t" in first else None
    if not isinstance(header, dict) or header.get("s") != "header":
        raise StageError(f"{source}: not a udatasets shard file (no shard header on its first line); give the "
                         f"files that `python -m llmrunner.udatasets shard` wrote")

    def entries() -> Iterator[Entry]:
        count = 0
        for line in lines:
            meta, payload = decode_line(line, source)
            if meta["s"] == "end":
                if meta["items"] != count:
                    raise StageError(f"{source}: {count} items, but its end marker says {meta['items']}")
                return
            count += 1
            yield meta, payload
        raise StageError(f"{source}: ends without its end marker (cut short: a job killed while writing it?); "
                         f"delete it and rerun")

    return header, entries()


def _file_lines(path: Path, stack: ExitStack) -> Iterator[bytes]:
    return iter(stack.enter_context(open(path, "rb")))


def _round_robin(shards: list[Iterator[Entry]], source: str) -> Iterator[Entry]:
    """Shard 0's first entry, shard 1's first, ..., shard 0's second, ...: the input order again. Shard i holds
    one entry more than shard k > i or the same number, so the first exhausted shard ends the stream."""
    while True:
        for i, shard in enumerate(shards):
            entry = next(shard, None)
            if entry is None:
                later = [k for k in range(i + 1, len(shards)) if next(shards[k], None) is not None]
                earlier = [k for k in range(i) if next(shards[k], None) is not None]
                if later or earlier:
                    raise StageError(f"{source}: shard {i} ended before shards {later + earlier}; the shard "
                                     f"files are not from one run: delete them and rerun")
                return
            yield entry


def open_shard_groups(paths: list[Path], stack: ExitStack) -> list[ShardGroup]:
    """The shard files of one or more datasets (each dataset's shards consecutive, in shard order), merged
    per dataset into input order. Their headers are checked to belong together."""
    groups: list[tuple[dict, list[Iterator[Entry]], list[Path]]] = []
    for path in paths:
        header, entries = parse_shard(_file_lines(path, stack), str(path))
        if not groups or groups[-1][0]["dataset"] != header["dataset"]:
            groups.append((header, [], []))
        first, shards, files = groups[-1]
        files.append(path)
        if header["shard"] != len(shards) or header["shards"] != first["shards"] or header["files"] != first["files"]:
            raise StageError(f"{path}: shard {header['shard']} of {header['shards']} over {header['files']} does "
                             f"not follow {files[0]} (shard 0 of {first['shards']} over {first['files']}); give each "
                             f"dataset's shard files together, in shard order, from one run")
        shards.append(entries)
    for header, shards, files in groups:
        if len(shards) != header["shards"]:
            raise StageError(f"dataset {header['dataset']}: {len(shards)} shard files given ({files[0]}, ...), "
                             f"but they were written as {header['shards']} shards")
    return [ShardGroup(h["dataset"], h["files"], _round_robin(s, str(f[0]))) for h, s, f in groups]


class Deduplicator:
    """The de-dup index over the records so far: exact hashes, and MinHash signatures (near de-dup on).

    `seen` maps the hash of every record checked (but exact duplicates, whose hash it holds already) to what
    a later record with that hash is: an exact duplicate of the kept record (near de-dup alone: a near
    duplicate, similarity 1), or, when the record was a near duplicate, a near duplicate of the same kept
    record (an identical signature finds the same earliest match). So a duplicate always names a kept
    record, and a repeated record needs no signature: the map side writes a repeat of a record it kept as a `d`
    line, its hash alone (see shard.py)."""

    def __init__(self, exact: bool, near: MinHashConfig | None) -> None:
        self.exact = exact
        self.near = NearDupIndex(near) if near else None
        self.seen: dict[bytes, tuple[str, Hashable]] | None = {} if exact or near else None

    def check(self, key: Hashable, meta: dict) -> tuple[str, Hashable] | None:
        """("exact" | "near", the matched kept record's key) for a duplicate; None for a new record, now indexed."""
        if self.seen is None and meta["s"] == "k":
            return None
        digest = meta["h"]
        if self.seen is not None and digest in self.seen:
            return self.seen[digest]
        if meta["s"] == "d":
            raise StageError("a shard line repeats a record that no record before it has, or de-dup is off in the "
                             "gather but was on in the map jobs: the shard files are not from one run with these "
                             "settings; delete them and rerun")
        if self.near is not None:
            if meta["m"] is None:
                raise StageError("a shard line has no MinHash signature, though near de-dup is on: the shard files "
                                 "were written with near_dedup off or are not from one run; delete them and rerun")
            match = self.near.find_or_add(key, meta["m"], meta["b"])
            if match is not None:
                self.seen[digest] = ("near", match)
                return "near", match
        self.seen[digest] = ("exact" if self.exact else "near", key)
        return None


_ENCODER = json.JSONEncoder(ensure_ascii=False)  # json.dumps(obj, ensure_ascii=False), without a new encoder a call


WRITE_BUFFER = 1 << 20  # bytes: the data and duplicates files get a write a record, most of them small


class DuplicateLines:
    """The duplicates file's lines, `{"file", "line", "kind", "duplicate_of": {"dataset", "file", "line"}}` as
    json.dumps writes them, put together from the parts that name files, each encoded once (a fifth of the time
    of encoding each line's dict)."""

    def __init__(self, own_files: list[str], datasets: list[str], files: dict[int, list[str]]) -> None:
        self.own_files, self.datasets, self.files = own_files, datasets, files
        self._heads: dict[int, bytes] = {}
        self._middles: dict[tuple[str, int, int], bytes] = {}

    def __call__(self, own_file: int, line: int, kind: str, dataset: int, file: int, matched_line: int) -> bytes:
        head = self._heads.get(own_file)
        if head is None:
            head = self._heads[own_file] = self._part('{"file": %s, "line": ', self.own_files[own_file])
        middle = self._middles.get((kind, dataset, file))
        if middle is None:
            middle = self._middles[kind, dataset, file] = self._part(
                ', "kind": %s, "duplicate_of": {"dataset": %s, "file": %s, "line": ', kind, self.datasets[dataset],
                self.files[dataset][file])
        return b"%s%d%s%d}}\n" % (head, line, middle, matched_line)

    @staticmethod
    def _part(template: str, *names: str) -> bytes:
        return (template % tuple(map(_ENCODER.encode, names))).encode("utf-8")


def _write(stream: IO[bytes], obj: dict) -> None:
    stream.write(_ENCODER.encode(obj).encode("utf-8") + b"\n")


def gather(groups: list[ShardGroup], paths: dict[str, Path], exact: bool = True, near: MinHashConfig | None = None,
           augment_settings: AugmentSettings | None = None) -> dict:
    """Write the outputs (`paths`: data, rejects, duplicates, stats) of the last group's dataset, after
    indexing the kept records of the groups before it; return the stats."""
    dedup = Deduplicator(exact, near)
    *before, own = groups
    for number, group in enumerate(before):
        for meta, _ in group.entries:
            if meta["s"] == "k":
                dedup.check((number, meta["f"], meta["n"]), meta)
    names = [g.dataset for g in groups]
    files = {n: g.files for n, g in enumerate(groups)}
    per_file = [Counts() for _ in own.files]
    by_dataset: dict[str, Counter] = defaultdict(Counter)
    lengths = {"chars": LengthHistogram(), "tokens": LengthHistogram()}
    cleaned = augmented = 0
    paths["data"].parent.mkdir(parents=True, exist_ok=True)
    duplicate_line = DuplicateLines(own.files, names, files)
    with open(paths["data"], "wb", buffering=WRITE_BUFFER) as data, open(paths["rejects"], "wb") as rejects, \
            open(paths["duplicates"], "wb", buffering=WRITE_BUFFER) as duplicates:

        def kept_records() -> Iterator[tuple[bytes, dict]]:
            nonlocal cleaned
            for meta, payload in own.entries:
                counts = per_file[meta["f"]]
                if meta["s"] == "b":
                    counts.blank_lines += 1
                    continue
                counts.input += 1
                cleaned += meta["c"]
                if meta["s"] == "r":
                    counts.rejected[meta["reason"]] += 1
                    rejects.write(payload + b"\n")
                    continue
                match = dedup.check((len(before), meta["f"], meta["n"]), meta)  # never None for a "d" line
                if match is not None:
                    kind, (dataset, file, line) = match
                    counts.duplicates[kind] += 1
                    by_dataset[names[dataset]][kind] += 1
                    duplicates.write(duplicate_line(meta["f"], meta["n"], kind, dataset, file, line))
                    continue
                counts.kept += 1
                lengths["chars"].add(meta["chars"])
                if meta["tokens"] is not None:
                    lengths["tokens"].add(meta["tokens"])
                data.write(payload + b"\n")
                yield payload, {"dataset": own.dataset, "file": own.files[meta["f"]], "line": meta["n"]}

        if augment_settings is None or not augment_settings.enabled():
            for _ in kept_records():
                pass
        else:
            augmented = _augment(kept_records(), augment_settings, data, paths["data"])

    total = Counts()
    for counts in per_file:
        total.add(counts)
    stats = {"dataset": own.dataset, **total.as_dict(), "duplicate_rate": duplicate_rate(total),
             "duplicates_by_dataset": {d: {"exact": c["exact"], "near": c["near"]} for d, c in by_dataset.items()},
             "augmented": augmented, "cleaned": cleaned,
             "files": {name: counts.as_dict() for name, counts in zip(own.files, per_file)},
             "lengths": {k: h.as_dict() for k, h in lengths.items() if h.records or k == "chars"}}
    paths["stats"].write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return stats


def _augment(kept: Iterator[tuple[bytes, dict]], settings: AugmentSettings, data: IO[bytes], data_path: Path) -> int:
    """Write the augmented records after the kept ones (through a side file, so memory stays flat); their count."""
    side_path = data_path.with_name(data_path.name + ".augmented.tmp")
    count = 0
    try:
        with open(side_path, "wb") as side:
            for record in augment(((json.loads(payload), source) for payload, source in kept), settings):
                _write(side, record)
                count += 1
        with open(side_path, "rb") as side:
            shutil.copyfileobj(side, data)
    finally:
        side_path.unlink(missing_ok=True)
    return count
