"""Inspect raw data before writing its dataset entry: samples, key structure, lengths and a checked suggestion.

`scripts/inspect_data.py SOURCE` (docs/inspect.md) reads a raw file or folder with udatasets' own readers,
at most `max_records` records, and says which built-in adapter (and keys) turns it into the unified schema.
The suggestion is not a guess from key names alone: each candidate entry is built into the step's real
settings (so its keys are checked against the schema) and run, adapter + cleaning + default filters
(shard.check_record), on every record read; only one that accepts most of them is suggested. Two passes over
the bounded records keep memory to one record at a time, whatever the size of the records.
"""
from __future__ import annotations

import itertools
import json
import math
import re
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from llmrunner.errors import StageError, first_few
from llmrunner.jsonl import resolve_inputs
from llmrunner.schemas import REPO_ROOT, load_schema
from llmrunner.udatasets.readers import BLANK, RAW_SUFFIXES, RawItem, iter_raw
from llmrunner.udatasets.records import content_chars
from llmrunner.udatasets.settings import ADAPTERS, UdatasetsSettings
from llmrunner.udatasets.shard import RecordRules, check_record

FIT_SHARE = 0.5  # a suggested adapter accepts more than this share of the records read
PREFERENCE = ("messages", "sharegpt", "alpaca", "prompt_response", "text")  # the most specific shape first
PROMPT_NAMES = {"prompt", "question", "query", "instruction", "input", "problem", "request", "human", "user", "q"}
RESPONSE_NAMES = {"response", "answer", "output", "completion", "chosen", "reply", "solution", "target",
                  "assistant", "gpt", "a"}
PROMPT_RESPONSE_PAIRS = 6  # prompt/response key pairs tried at most (the most filled first)
CHAT_LISTS = {("role", "content"): "list of messages (role/content)", ("from", "value"): "list of turns (from/value)"}
MAX_PATHS = 500  # distinct keys tracked (a record keyed by ids would otherwise grow without bound)
SHOWN_PATHS = 40
SAMPLE_CHARS = 160  # a longer string in a sample is shortened
SAMPLE_ITEMS = 6  # a longer list in a sample is shortened
EXAMPLE_ADAPTER = "docs/examples/udatasets_adapter.py"
DATASET_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class KeyStats:
    """One key path over the records read: in how many records it occurs, as which types, its string chars."""
    addressable: bool
    """Reachable by an adapter's (dotted) key: not inside a list."""
    records: int = 0
    types: Counter = field(default_factory=Counter)
    chars: int = 0
    """Total characters where the value is a string (addressable keys only)."""


@dataclass
class Candidate:
    """A dataset entry that might fit, and what udatasets made of the records read with it."""
    adapter: str
    keys: dict[str, str]
    """The adapter's options (text_key / prompt_key / response_key) -> the raw key."""
    accepted: int = 0
    reasons: Counter = field(default_factory=Counter)
    lengths: array = field(default_factory=lambda: array("q"))
    """Content characters (after cleaning) of each accepted record."""

    def label(self) -> str:
        keys = ", ".join(f"{option}: {key}" for option, key in self.keys.items())
        return f"{self.adapter} ({keys})" if keys else self.adapter

    def rules(self, txt_mode: str) -> RecordRules:
        """The step's real per-record rules for this entry, with the schema's defaults for everything else."""
        settings = UdatasetsSettings.from_dict({"adapter": self.adapter, **self.keys, "txt_mode": txt_mode})
        return settings.record_rules(ADAPTERS[self.adapter], "inspect")


@dataclass
class Inspection:
    source: Path
    files: list[Path]
    txt_mode: str
    max_records: int
    items: int = 0
    """Items read (records and unusable items; blank lines are not items)."""
    truncated: bool = False
    """The source holds more than `max_records` items."""
    unusable: Counter = field(default_factory=Counter)
    """Items that are no record at all (invalid JSON, not an object, ...), by the reader's reason."""
    samples: list[tuple[str, dict]] = field(default_factory=list)
    keys: dict[str, KeyStats] = field(default_factory=dict)
    keys_capped: bool = False
    candidates: list[Candidate] = field(default_factory=list)
    suggestion: Candidate | None = None
    why_none: str | None = None

    @property
    def records(self) -> int:
        return self.items - sum(self.unusable.values())


def inspect_source(source: str | Path, samples: int = 5, max_records: int = 100_000,
                   txt_mode: str | None = None) -> Inspection:
    """Read `source` (a raw file or a folder of them) and work out its structure and the adapter that fits.
    `txt_mode`: how .txt files are read (None: the schema's default). A StageError names a source that cannot
    be read or holds no record."""
    txt_mode = txt_mode or _txt_mode_default()
    source = Path(source)
    files = resolve_inputs(source, RAW_SUFFIXES)
    result = Inspection(source, files, txt_mode, max_records)
    for path, item in _items(files, txt_mode):
        if result.items == max_records:
            result.truncated = True
            break
        result.items += 1
        if item.record is None:
            result.unusable[item.reason] += 1
            continue
        if len(result.samples) < samples:
            result.samples.append((f"{path.name}:{item.number}", item.record))
        _add_keys(result, item.record)
    if not result.records:
        if not result.items:
            held = f" (its files: {first_few([p.name for p in files])})" if source.is_dir() else ""
            raise StageError(f"{source} holds no records{held}; give a source with data")
        raise StageError(f"{source}: none of the {result.items} items read is a usable record "
                         f"({_reasons(result.unusable)}); fix the file or convert it to JSON Lines")
    result.candidates = _candidates(result.keys)
    rules = [c.rules(txt_mode) for c in result.candidates]
    for _, item in itertools.islice(_items(files, txt_mode), max_records):
        if item.record is None:
            continue
        for candidate, rule in zip(result.candidates, rules):
            record, reason, _ = check_record(item, rule)
            if record is None:
                candidate.reasons[reason] += 1
            else:
                candidate.accepted += 1
                candidate.lengths.append(content_chars(record))
    _choose(result)
    return result


def _items(files: list[Path], txt_mode: str) -> Iterator[tuple[Path, RawItem]]:
    """The items of `files` in order, blank lines left out (they are no records)."""
    for path in files:
        for item in iter_raw(path, txt_mode):
            if item.reason != BLANK:
                yield path, item


def _shape(value: object) -> str:
    """The JSON type of `value`; a list says what it holds, and a list of chat turns is named as such."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return next((name for keys, name in CHAT_LISTS.items() if all(set(keys) <= v.keys() for v in value)),
                        "list of objects")
        return "list of strings" if value and all(isinstance(v, str) for v in value) else "list"
    names = {str: "string", int: "integer", float: "number", dict: "object"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


def _walk(value: dict, prefix: str, addressable: bool, found: dict[str, tuple[bool, set, int]]) -> None:
    """Every key path of one record -> (addressable, its types, its string chars), into `found`. Keys of objects
    inside a list are `list[].key`; chat turns are summed up by their list's type, not walked."""
    for key, item in value.items():
        path = f"{prefix}{key}"
        reach, types, chars = found.get(path, (addressable, set(), 0))
        shape = _shape(item)
        types.add(shape)
        if shape == "string" and addressable:
            chars += len(item)
        found[path] = (reach, types, chars)
        if isinstance(item, dict):
            _walk(item, f"{path}.", addressable, found)
        elif shape == "list of objects":
            for element in item:
                _walk(element, f"{path}[].", False, found)


def _add_keys(result: Inspection, record: dict) -> None:
    found: dict[str, tuple[bool, set, int]] = {}
    _walk(record, "", True, found)
    for path, (addressable, types, chars) in found.items():
        stats = result.keys.get(path)
        if stats is None:
            if len(result.keys) == MAX_PATHS:
                result.keys_capped = True
                continue
            stats = result.keys[path] = KeyStats(addressable)
        stats.records += 1
        stats.types.update(types)
        stats.chars += chars


def _candidates(keys: dict[str, KeyStats]) -> list[Candidate]:
    """The entries worth running: each built-in adapter whose keys occur, and for `text` the string key with the
    most characters (the main text; an id or a title has fewer)."""
    candidates = [Candidate(name, {}) for name, needed in (("messages", ["messages"]),
                                                           ("sharegpt", ["conversations"]),
                                                           ("alpaca", ["instruction", "output"]))
                  if all(k in keys for k in needed)]
    strings = sorted((p for p, s in keys.items() if s.addressable and "string" in s.types),
                     key=lambda p: -keys[p].records)
    named = {side: [p for p in strings if p.rpartition(".")[2].lower() in names]
             for side, names in (("prompt", PROMPT_NAMES), ("response", RESPONSE_NAMES))}
    pairs = [(p, r) for p, r in itertools.product(named["prompt"], named["response"]) if p != r]
    candidates += [Candidate("prompt_response", {"prompt_key": p, "response_key": r})
                   for p, r in pairs[:PROMPT_RESPONSE_PAIRS]]
    if strings:
        candidates.append(Candidate("text", {"text_key": max(strings, key=lambda p: keys[p].chars)}))
    return candidates


def _choose(result: Inspection) -> None:
    """The suggestion: the most specific adapter that accepts most records; else why none fits."""
    fits = [c for c in result.candidates if c.accepted > FIT_SHARE * result.records]
    chats = [p for p, s in result.keys.items() if any(t in CHAT_LISTS.values() for t in s.types)]
    chat_fits = [c for c in fits if ADAPTERS[c.adapter] == "sft"]
    custom = (f"write a custom adapter (adapter: custom, adapter_function: path/to/file.py:function), "
              f"like {EXAMPLE_ADAPTER}")
    if chats and not chat_fits:
        # A conversation where the built-in chat adapters do not look: any string beside it (an id) is no text.
        result.why_none = (f"a list of chat turns at {', '.join(chats)}, but the built-in chat adapters read only "
                           f"a top-level 'messages' (role/content) or 'conversations' (from/value) key, with roles "
                           f"and turn order as in docs/records.md" + _closest(result) + f"; {custom}")
    elif fits:
        result.suggestion = min(fits, key=lambda c: (PREFERENCE.index(c.adapter), -c.accepted))
    elif not result.candidates:
        result.why_none = f"no string field (outside lists) and no messages list; {custom}"
    else:
        result.why_none = "no built-in adapter accepts most records" + _closest(result) + f"; {custom}"


def _closest(result: Inspection) -> str:
    if not result.candidates:
        return ""
    best = max(result.candidates, key=lambda c: c.accepted)
    rejects = f"; rejects: {_reasons(best.reasons)}" if best.reasons else ""
    return f" (the closest, {best.label()}, accepts {best.accepted} of {result.records}{rejects})"


def _reasons(counts: Counter) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.most_common(5)) or "none"


def suggested_entry(result: Inspection) -> dict:
    """The pipeline.yaml `data` mapping to paste: {kind: {name: entry}}; a custom skeleton when none fits."""
    sources = [_source_pattern(result.source, suffix) for suffix in _suffixes(result)] if result.source.is_dir() \
        else [_source_pattern(result.source)]
    name = DATASET_NAME.sub("_", result.source.name.split(".")[0]).strip("_-") or "dataset"
    if result.suggestion is None:
        entry = {"sources": sources, "adapter": "custom", "adapter_function": "path/to/your_adapter.py:function"}
        return {"cpt or sft": {name: entry}}
    entry = {"sources": sources, "adapter": result.suggestion.adapter, **result.suggestion.keys}
    if any(p.name.endswith(".txt") for p in result.files) and result.txt_mode != _txt_mode_default():
        entry["txt_mode"] = result.txt_mode
    return {ADAPTERS[result.suggestion.adapter]: {name: entry}}


def _txt_mode_default() -> str:
    return load_schema("pipeline")["$defs"]["dataset"]["properties"]["txt_mode"]["default"]


def _suffixes(result: Inspection) -> list[str]:
    return sorted({next(s for s in sorted(RAW_SUFFIXES, key=len, reverse=True) if p.name.endswith(s))
                   for p in result.files})


def _source_pattern(source: Path, suffix: str = "") -> str:
    """How pipeline.yaml names the source: relative to the repository root when inside it; a folder as a glob
    per format (sources are files or globs)."""
    path = source.resolve()
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    return f"{shown}/*{suffix}" if suffix else str(shown)


def _shorten(value: object) -> object:
    """A copy of a sample record for printing: long strings and lists cut, saying how much is left out."""
    if isinstance(value, str) and len(value) > SAMPLE_CHARS:
        return f"{value[:SAMPLE_CHARS]}... [+{len(value) - SAMPLE_CHARS} chars]"
    if isinstance(value, dict):
        return {k: _shorten(v) for k, v in value.items()}
    if isinstance(value, list):
        shown = [_shorten(v) for v in value[:SAMPLE_ITEMS]]
        return shown + [f"... [+{len(value) - SAMPLE_ITEMS} items]"] if len(value) > SAMPLE_ITEMS else shown
    return value


def _quantile(values: list[int], share: float) -> int:
    """Nearest-rank quantile of sorted `values`."""
    return values[max(math.ceil(share * len(values)) - 1, 0)]


def render(result: Inspection) -> str:
    """The report, as printed by scripts/inspect_data.py."""
    files = result.files
    what = (f"folder, {len(files)} files: {first_few([p.name for p in files])}" if result.source.is_dir()
            else "1 file")
    lines = [f"source: {result.source} ({what})"]
    if result.truncated:
        lines.append(f"items: the first {result.items} only (--max-records {result.max_records}); "
                     f"the source holds more")
    else:
        lines.append(f"items: {result.items} (all of them)")
    if result.unusable:
        lines.append(f"unusable items (no record; udatasets rejects them): {_reasons(result.unusable)}")
    if any(p.name.endswith(".txt") for p in files):
        lines.append(f".txt read with txt_mode {result.txt_mode} (--txt-mode document: a record per file, "
                     f"paragraphs: one per blank-line separated block)")
    if result.samples:
        lines += ["", f"samples (records 1 to {len(result.samples)}, one key a line; strings over {SAMPLE_CHARS} "
                      f"chars and lists over {SAMPLE_ITEMS} items shortened):"]
    for where, record in result.samples:
        lines.append(f"[{where}]")
        lines += [f"  {key}: {json.dumps(_shorten(value), ensure_ascii=False, default=str)}"
                  for key, value in record.items()]
    lines += ["", f"keys (fill: share of the {result.records} records that have the key; a.b: nested, "
                  f"a[].b: in the objects of list a):"]
    rows = [("key", "fill", "types", "avg chars")]
    for path, stats in list(result.keys.items())[:SHOWN_PATHS]:
        types = ", ".join(f"{t} {100 * n / stats.records:.0f}%" if len(stats.types) > 1 else t
                          for t, n in stats.types.most_common())
        chars = f"{stats.chars / stats.types['string']:.0f}" if stats.addressable and stats.types["string"] else ""
        rows.append((path, f"{100 * stats.records / result.records:.1f}%", types, chars))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths + [0])).rstrip() for row in rows]
    if len(result.keys) > SHOWN_PATHS or result.keys_capped:
        more = f"more than {MAX_PATHS}" if result.keys_capped else str(len(result.keys))
        lines.append(f"  ... {more} keys in all; the first {SHOWN_PATHS} shown")
    lines += ["", f"adapters tried (udatasets' adapter, cleaning and default filters on the {result.records} "
                  f"records):"]
    for candidate in result.candidates:
        mark = "  <- suggested" if candidate is result.suggestion else ""
        rejected = f" (rejects: {_reasons(candidate.reasons)})" if candidate.reasons else ""
        lines.append(f"  {candidate.label()}: accepts {candidate.accepted} of {result.records}{rejected}{mark}")
    if not result.candidates:
        lines.append("  none: no key that a built-in adapter reads")
    if result.suggestion is not None:
        lengths = sorted(result.suggestion.lengths)
        content = "the text" if ADAPTERS[result.suggestion.adapter] == "cpt" else "the content of all turns"
        lines += ["", f"length (chars per record: {content}, after cleaning; {len(lengths)} records accepted):",
                  f"  min {lengths[0]}, median {_quantile(lengths, 0.5)}, p90 {_quantile(lengths, 0.9)}, "
                  f"max {lengths[-1]}"]
        lines += ["", "suggested dataset entry (paste under the experiment's pipeline.yaml; rename the dataset):"]
    else:
        lines += ["", f"no built-in adapter fits: {result.why_none}", "",
                  "a skeleton to start from (pipeline.yaml; the dataset goes under cpt or sft):"]
    data = yaml.safe_dump({"data": suggested_entry(result)}, sort_keys=False, default_flow_style=None,
                          allow_unicode=True)
    lines.append(data.rstrip("\n"))
    # A lone surrogate ("\ud800" in the JSON) cannot be printed as UTF-8: shown escaped instead.
    return "\n".join(lines).encode("utf-8", "backslashreplace").decode("utf-8")
