"""udatasets: raw JSON Lines -> validated, cleaned, exact-de-duplicated records in the unified schema.

One streaming pass over the raw files (sorted by name, lines in order). Every input line ends in
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
from llmrunner.jsonl import iter_lines
from llmrunner.udatasets.adapters import ADAPTERS, content_chars, dedup_key, is_blank

log = logging.getLogger(__name__)


def output_paths(out: Path) -> dict[str, Path]:
    """The four outputs next to `<dataset>.jsonl`: data, rejects, duplicates, stats."""
    if not out.name.endswith(".jsonl") or out.name == ".jsonl":
        raise ConfigError(f"--out {out}: must be a file name ending in .jsonl (data/processed/<kind>/<dataset>.jsonl)")
    stem = out.name[: -len(".jsonl")]
    return {"data": out, "rejects": out.with_name(f"{stem}.rejects.jsonl"),
            "duplicates": out.with_name(f"{stem}.duplicates.jsonl"), "stats": out.with_name(f"{stem}.stats.json")}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_record(text: str, adapter: str, text_key: str, min_chars: int, max_chars: int | None
                 ) -> tuple[dict | None, str | None]:
    """One raw line -> (unified record, None) or (None, reason)."""
    try:
        # NaN / Infinity are Python extensions, not JSON: they would leak into the output.
        raw = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # ValueError covers JSONDecodeError and over-long integers
        return None, "invalid_json"
    if not isinstance(raw, dict):
        return None, "not_an_object"
    record, reason = ADAPTERS[adapter](raw, text_key)
    if record is None:
        return None, reason
    if is_blank(record):
        return None, "empty"
    chars = content_chars(record)
    if chars < min_chars:
        return None, "too_short"
    if max_chars is not None and chars > max_chars:
        return None, "too_long"
    return record, None


def clean_documents(inputs: list[Path], out: Path, adapter: str, text_key: str = "text", min_chars: int = 1,
                    max_chars: int | None = None, dedup: str = "exact") -> dict:
    """Clean the records of `inputs` into `out` (+ rejects, duplicates, stats files); return the stats."""
    paths = output_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rejected: Counter[str] = Counter()
    n_input = kept = duplicates = blank = 0
    seen: dict[bytes, tuple[str, int]] = {}
    with open(paths["data"], "wb") as data, open(paths["rejects"], "wb") as rejects, \
            open(paths["duplicates"], "wb") as dups:

        def write(stream, obj: dict) -> None:
            stream.write(json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n")

        for path in inputs:
            file_input = 0
            for line in iter_lines(path):
                if not line.text.strip():
                    blank += 1  # not a record: trailing newlines, spacing between records
                    continue
                file_input += 1
                if line.valid_utf8:
                    record, reason = parse_record(line.text, adapter, text_key, min_chars, max_chars)
                else:
                    record, reason = None, "invalid_utf8"
                if record is not None:
                    try:
                        encoded = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
                    except UnicodeEncodeError:  # a "\ud800"-style escape decodes to a lone surrogate
                        record, reason = None, "invalid_unicode"
                if record is None:
                    rejected[reason] += 1
                    write(rejects, {"file": path.name, "line": line.number, "reason": reason, "raw": line.text})
                    continue
                if dedup == "exact":
                    digest = hashlib.blake2b(dedup_key(record).encode("utf-8"), digest_size=16).digest()
                    first = seen.setdefault(digest, (path.name, line.number))
                    if first != (path.name, line.number):
                        duplicates += 1
                        write(dups, {"file": path.name, "line": line.number,
                                     "duplicate_of": {"file": first[0], "line": first[1]}})
                        continue
                data.write(encoded)
                kept += 1
            n_input += file_input
            log.info("read %s: %d records", path, file_input)

    stats = {"input": n_input, "kept": kept, "rejected": dict(sorted(rejected.items())),
             "duplicates": {"exact": duplicates}, "blank_lines": blank, "files": [p.name for p in inputs]}
    assert n_input == kept + sum(rejected.values()) + duplicates, stats
    paths["stats"].write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    log.info("input %d = kept %d + rejected %d + duplicates %d", n_input, kept, sum(rejected.values()), duplicates)
    for name, path in paths.items():
        log.info("%s -> %s", name, path)
    return stats
