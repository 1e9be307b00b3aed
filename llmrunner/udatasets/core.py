"""udatasets: raw records of any format -> validated, cleaned, exact-de-duplicated records in the unified schema.

Per record: adapter -> cleaning (clean.py: NFC, control characters, whitespace) -> empty / length filters ->
exact de-duplication, the last two on the cleaned text.

One streaming pass over the raw files (sorted by name, records in order). Every input record ends in
exactly one of three places, so the stats add up: the kept data, the rejects (with a reason), or
the duplicates (naming the first occurrence, which is the one kept). Memory is bounded by the
de-duplication table (16 bytes of hash + a location per kept record).
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

from llmrunner.errors import ConfigError
from llmrunner.udatasets.adapters import Adapter
from llmrunner.udatasets.clean import Cleaning
from llmrunner.udatasets.readers import BLANK, RawItem, iter_raw
from llmrunner.udatasets.records import content_chars, dedup_key, is_blank

log = logging.getLogger(__name__)


def output_paths(out: Path) -> dict[str, Path]:
    """The four outputs next to `<dataset>.jsonl`: data, rejects, duplicates, stats."""
    if not out.name.endswith(".jsonl") or out.name == ".jsonl":
        raise ConfigError(f"--out {out}: must be a file name ending in .jsonl (data/processed/<kind>/<dataset>.jsonl)")
    stem = out.name[: -len(".jsonl")]
    return {"data": out, "rejects": out.with_name(f"{stem}.rejects.jsonl"),
            "duplicates": out.with_name(f"{stem}.duplicates.jsonl"), "stats": out.with_name(f"{stem}.stats.json")}


def check_record(item: RawItem, adapter: Adapter, min_chars: int, max_chars: int | None,
                 cleaning: Cleaning = Cleaning()) -> tuple[dict | None, str | None, bool]:
    """One raw item -> (cleaned unified record, None, cleaned?) or (None, reason, cleaned?); `cleaned`:
    whether cleaning changed the record's text (whatever became of the record afterwards)."""
    if item.record is None:
        return None, item.reason, False
    record, reason = adapter(item.record)
    if record is None:
        return None, reason, False
    record, cleaned = cleaning.record(record)
    if is_blank(record):
        return None, "empty", cleaned
    chars = content_chars(record)
    if chars < min_chars:
        return None, "too_short", cleaned
    if max_chars is not None and chars > max_chars:
        return None, "too_long", cleaned
    return record, None, cleaned


def clean_documents(inputs: list[Path], out: Path, adapter: Adapter, min_chars: int = 1,
                    max_chars: int | None = None, dedup: str = "exact", txt_mode: str = "document",
                    cleaning: Cleaning = Cleaning()) -> dict:
    """Clean the records of `inputs` into `out` (+ rejects, duplicates, stats files); return the stats.
    `adapter` turns one raw object into a unified record (see adapters.builtin_adapter); `cleaning` is
    applied to its text before the length filters and de-duplication."""
    paths = output_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejected: Counter[str] = Counter()
    n_input = kept = duplicates = blank = cleaned = 0
    seen: dict[bytes, tuple[str, int]] = {}
    with open(paths["data"], "wb") as data, open(paths["rejects"], "wb") as rejects, \
            open(paths["duplicates"], "wb") as dups:

        def write(stream, obj: dict) -> None:
            stream.write(json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n")

        for path in inputs:
            file_input = 0
            for item in iter_raw(path, txt_mode):
                if item.reason == BLANK:
                    blank += 1  # not a record: trailing newlines, spacing between records
                    continue
                file_input += 1
                record, reason, changed = check_record(item, adapter, min_chars, max_chars, cleaning)
                cleaned += changed
                if record is not None:
                    try:
                        # default=str: parquet values that JSON lacks (dates, decimals) become their strings;
                        # allow_nan=False: a NaN would make the line invalid JSON.
                        encoded = json.dumps(record, ensure_ascii=False, allow_nan=False,
                                             default=str).encode("utf-8") + b"\n"
                    except UnicodeEncodeError:  # a "\ud800"-style escape decodes to a lone surrogate
                        record, reason = None, "invalid_unicode"
                    except ValueError:
                        record, reason = None, "not_json_serialisable"
                if record is None:
                    rejected[reason] += 1
                    write(rejects, {"file": path.name, "line": item.number, "reason": reason, "raw": item.raw})
                    continue
                if dedup == "exact":
                    digest = hashlib.blake2b(dedup_key(record).encode("utf-8"), digest_size=16).digest()
                    first = seen.setdefault(digest, (path.name, item.number))
                    if first != (path.name, item.number):
                        duplicates += 1
                        write(dups, {"file": path.name, "line": item.number,
                                     "duplicate_of": {"file": first[0], "line": first[1]}})
                        continue
                data.write(encoded)
                kept += 1
            n_input += file_input
            log.info("read %s: %d records", path, file_input)

    # cleaned: records whose text cleaning changed, wherever they ended (informational, not in the identity)
    stats = {"input": n_input, "kept": kept, "rejected": dict(sorted(rejected.items())),
             "duplicates": {"exact": duplicates}, "cleaned": cleaned, "blank_lines": blank,
             "files": [p.name for p in inputs]}
    assert n_input == kept + sum(rejected.values()) + duplicates, stats
    paths["stats"].write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    log.info("input %d = kept %d + rejected %d + duplicates %d (cleaned %d)", n_input, kept,
             sum(rejected.values()), duplicates, cleaned)
    for name, path in paths.items():
        log.info("%s -> %s", name, path)
    return stats
