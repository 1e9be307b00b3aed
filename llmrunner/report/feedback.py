"""Feedback samples: what changed between an experiment and its baseline, item by item and record by record.

Scores say whether a data change helped; these pages say where, so that the next round's data search and
adapter writing start from concrete cases (`<DATAPOOL_ROOT>/reports/feedback/`, Markdown for people, JSONL
for programs; docs/feedback.md):

- eval: per eval set and stage scored by both sides on the same set version, the items that flipped (one side
  right, the other wrong), and the largest per-item gains and losses, with both models' outputs for
  generation sets;
- data: for each training dataset that changed, random kept records, random rejects per reason and the
  largest duplicate clusters (a kept record and the duplicates that matched it).

Without a baseline the experiment's final stage is set against its base model and every dataset is sampled.
Every choice is seeded (one random.Random per list, seeded with the seed and the list's name, so adding a
set or a reason changes no other list), and big files are read in one pass with bounded memory (reservoir
sampling). Like the other reports, a missing stage output shows as a note, never as a failure.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrunner.errors import StageError
from llmrunner.jsonl import file_problem, is_data_file, iter_lines
from llmrunner.report.core import EVAL_STAGES, MISSING, fmt, items_file, md_table, read_eval, read_json
from llmrunner.report.paired import read_records

log = logging.getLogger(__name__)

KINDS = ("cpt", "sft")
RIGHT = 0.5  # an item scored 0 to 1 is right from here on (acc: exactly 1; graded: at least half the credit)
EXCERPT_CHARS = 160  # of a record or an output in a Markdown table cell; the JSONL files hold them whole


@dataclass(frozen=True)
class Sizes:
    """How many of each thing the pages list (the CLI's options hold the defaults)."""

    flips: int
    """flipped items per set, stage and direction (a seeded random choice when there are more)"""
    top: int
    """largest gains and largest losses per set and stage"""
    kept: int
    """random kept records per dataset"""
    rejects: int
    """random rejects per dataset and reject reason"""
    clusters: int
    """largest duplicate clusters per dataset"""
    members: int
    """duplicates listed per cluster (the first in file order)"""


@dataclass(frozen=True)
class Side:
    """One model of an eval comparison: an experiment's stage."""

    experiment: str
    root: Path
    stage: str


class Reservoir:
    """A uniform random sample of `size` items from a stream of unknown length, in one pass (Algorithm R):
    memory is the sample, whatever the stream's length."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size, self.rng, self.seen, self.items = size, rng, 0, []

    def add(self, item: Any) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        elif self.size:
            slot = self.rng.randrange(self.seen)
            if slot < self.size:
                self.items[slot] = item


def seeded(seed: int, *names: str) -> random.Random:
    """The generator of one list: seeded by the seed and the list's name (str seeds hash the same on every
    machine and Python run, unlike hash())."""
    return random.Random(":".join([str(seed), *names]))


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """One line of at most `limit` characters, escaped for a Markdown table cell."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return fmt(text if len(text) <= limit else text[: limit - 1] + "…")


def record_text(record: object) -> str:
    """What a person reads of a record: a CPT document's text, an SFT conversation's turns, or its JSON."""
    if isinstance(record, dict) and isinstance(record.get("text"), str):
        return record["text"]
    if isinstance(record, dict) and isinstance(record.get("messages"), list):
        return " · ".join(f"{m.get('role')}: {m.get('content')}" if isinstance(m, dict) else str(m)
                          for m in record["messages"])
    return record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)


def raw_text(raw: object) -> str:
    """What a person reads of a raw line (a reject's `raw`, a duplicate's line): its record's text when it is
    a JSON record, else the line itself; — when there is none."""
    return MISSING if raw is None else record_text(parsed(raw) if isinstance(raw, str) else raw)


def parsed(text: str) -> object:
    """A JSON line as its value, or the text itself when it is not JSON (a damaged line is still shown)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each JSON-object line of a file the stages wrote; other lines are skipped and
    counted in the log (feedback reads what is there, as the reports do)."""
    skipped = 0
    for line in iter_lines(path):
        if not line.text.strip():
            continue
        value = parsed(line.text)
        if isinstance(value, dict):
            yield line.number, value
        else:
            skipped += 1
    if skipped:
        log.warning("%s: skipped %d line(s) that are not JSON objects", path, skipped)


def write_jsonl(path: Path, entries: list[dict]) -> None:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")


# ---------------------------------------------------------------- eval items

@dataclass
class SetFeedback:
    """One eval set compared item by item between two models."""

    name: str
    kind: str | None
    version: str | None
    note: str | None = None
    """why the set is not compared, or what to know about its lists"""
    paired: int = 0
    flips: dict[str, int] = field(default_factory=dict)
    """{"right": items the later model got right and the earlier wrong, "wrong": the other way}"""
    entries: list[dict] = field(default_factory=list)


def eval_pairs(root: Path, baseline_root: Path | None) -> tuple[list[tuple[Side, Side]], str]:
    """The (before, after) models compared, and the sentence that says so on the pages: each stage both
    experiments scored, or without a baseline the experiment's final stage against its base model."""
    evals = read_eval(root)
    if baseline_root is not None:
        theirs = read_eval(baseline_root)
        stages = [s for s in EVAL_STAGES if evals[s] and theirs[s]]
        pairs = [(Side(baseline_root.name, baseline_root, s), Side(root.name, root, s)) for s in stages]
        return pairs, (f"Experiment `{root.name}` against its baseline `{baseline_root.name}`, stage by stage "
                       f"(the stages both scored: {', '.join(stages) or 'none'}).")
    final = next((s for s in ("sft", "cpt") if evals[s]), None)
    if final is None or not evals["base"]:
        return [], (f"Experiment `{root.name}` has no baseline, and no trained stage and base model that were "
                    f"both scored: no eval items compared.")
    return [(Side(root.name, root, "base"), Side(root.name, root, final))], (
        f"Experiment `{root.name}` has no baseline (`baseline:` in pipeline.yaml): its own final stage "
        f"({final}) is set against its base model instead.")


def item_value(record: dict) -> float:
    """An item's score as its set scores it: bits per byte of a perplexity item (from its log-likelihood and
    bytes), else its score; NaN when the record holds no usable number."""
    metrics = record["metrics"]
    try:
        if "loglikelihood" in metrics and "bytes" in metrics:
            return -float(metrics["loglikelihood"]) / float(metrics["bytes"]) / math.log(2)
        return float(record["score"])
    except (TypeError, ValueError, ZeroDivisionError):
        return math.nan


def _side(side: Side, record: dict, value: float) -> dict:
    found = {"experiment": side.experiment, "stage": side.stage, "score": value}
    if "output" in record:
        found["output"] = record["output"]
    return found


def compare_set(name: str, before: Side, after: Side, summaries: tuple[dict, dict], sizes: Sizes,
                seed: int) -> SetFeedback:
    """Pair one set's per-item scores by id (same version only) and pick its flips, gains and losses."""
    first, second = summaries
    kind, version = second.get("kind"), second.get("version")
    if version is None or first.get("version") != version:
        return SetFeedback(name, kind, version, note=f"different versions (`{first.get('version')}` and "
                                                     f"`{version}`), not compared")
    records = [read_records(items_file(s.root, s.stage, name)) for s in (before, after)]
    if records[0] is None or records[1] is None:
        return SetFeedback(name, kind, version, note="no per-item scores (`items/<set>.jsonl`), not compared")
    by_id = {r["id"]: r for r in records[1]}
    pairs = [(r, by_id[r["id"]], item_value(r), item_value(by_id[r["id"]])) for r in records[0] if r["id"] in by_id]
    pairs = [p for p in pairs if math.isfinite(p[2]) and math.isfinite(p[3])]
    perplexity = bool(pairs) and all("loglikelihood" in r["metrics"] and "bytes" in r["metrics"]
                                     for p in pairs for r in p[:2])
    higher = False if perplexity else second.get("higher_is_better")
    found = SetFeedback(name, kind, version, paired=len(pairs))
    if not pairs or all(p[2] == p[3] for p in pairs):
        found.note = "no item's score changed" if pairs else "no item scored by both, not compared"
        return found
    if not isinstance(higher, bool):
        found.note = "results.json does not say whether higher is better: no gains or losses"
        return found

    def entry(what: str, index: int, **extra: str) -> dict:
        a, b, x, y = pairs[index]
        return {"set": name, "version": version, "set_kind": kind, "stage": after.stage, "id": a["id"],
                "entry": what, **extra, "before": _side(before, a, x), "after": _side(after, b, y),
                "change": (y - x) if higher else (x - y)}

    values = [v for p in pairs for v in p[2:]]
    if higher and not perplexity and all(0 <= v <= 1 for v in values):
        for became, flipped in (("right", lambda x, y: x < RIGHT <= y), ("wrong", lambda x, y: y < RIGHT <= x)):
            flips = [i for i, p in enumerate(pairs) if flipped(p[2], p[3])]
            found.flips[became] = len(flips)
            chosen = seeded(seed, name, before.stage, after.stage, became).sample(flips, min(sizes.flips, len(flips)))
            found.entries += [entry("flipped", i, became=became) for i in sorted(chosen)]
        if all(v in (0, 1) for v in values):
            found.note = "scores are 0 or 1: the flipped items are the gains and losses"
            return found
    change = [(p[3] - p[2]) if higher else (p[2] - p[3]) for p in pairs]
    gains = sorted((i for i, c in enumerate(change) if c > 0), key=lambda i: (-change[i], i))[: sizes.top]
    losses = sorted((i for i, c in enumerate(change) if c < 0), key=lambda i: (change[i], i))[: sizes.top]
    found.entries += [entry("gain", i) for i in gains] + [entry("loss", i) for i in losses]
    return found


def attach_items(found: SetFeedback, sides: tuple[Side, Side]) -> None:
    """Give each listed item what its task read (question and choices, prompt and reference, text) from the
    eval step's private task file (`tasks/<set>.jsonl`, absent for lm-eval's own tasks), when there is one."""
    wanted = {e["id"] for e in found.entries}
    docs: dict[str, dict] = {}
    for side in sides:  # the earlier model's first: a base model's prompts are plain, without the chat template
        path = side.root / "reports" / "eval" / side.stage / "tasks" / f"{found.name}.jsonl"
        if not wanted - set(docs) or file_problem(path):
            continue
        for _, doc in json_lines(path):
            if doc.get("id") in wanted and doc["id"] not in docs:
                docs[doc["id"]] = {k: v for k, v in doc.items() if k != "id"}
    for e in found.entries:
        if e["id"] in docs:
            e["item"] = docs[e["id"]]


Compared = list[tuple[Side, Side, list[SetFeedback]]]  # (before, after, each set compared)


def eval_feedback(pairs: list[tuple[Side, Side]], sizes: Sizes, seed: int) -> Compared:
    """Every set both models of each pair scored, compared; sets only one of them scored get a note."""
    compared = []
    for before, after in pairs:
        sets = [(read_eval(s.root)[s.stage] or {}).get("sets") or {} for s in (before, after)]
        found = []
        for name in dict.fromkeys([*sets[0], *sets[1]]):
            if name not in sets[0] or name not in sets[1]:
                who = after if name in sets[1] else before
                summary = sets[1].get(name) or sets[0][name]
                found.append(SetFeedback(name, summary.get("kind"), summary.get("version"),
                                         note=f"scored only by {who.experiment} {who.stage}, not compared"))
                continue
            one = compare_set(name, before, after, (sets[0][name], sets[1][name]), sizes, seed)
            attach_items(one, (before, after))
            found.append(one)
        compared.append((before, after, found))
    return compared


def _item_cells(entry: dict, reference: bool) -> list[str]:
    """What the item asked (its question, text or prompt) and, for a generation set, the reference answer."""
    item = entry.get("item") if isinstance(entry.get("item"), dict) else {}
    asked = next((item[k] for k in ("question", "text", "prompt") if k in item), None)
    cells = [MISSING if asked is None else excerpt(asked)]
    return cells + ([MISSING if item.get("reference") is None else excerpt(item["reference"])] if reference else [])


def _entry_table(entries: list[dict]) -> str:
    """One row per listed item: both scores (columns named by model), the change, the item and the outputs;
    columns that no entry has a value for are left out."""
    names = [f"{entries[0][s]['experiment']} {entries[0][s]['stage']}" for s in ("before", "after")]
    items = any("item" in e for e in entries)
    reference = any("reference" in e.get("item", {}) for e in entries)
    outputs = any("output" in e[s] for e in entries for s in ("before", "after"))
    headers = ["id", *names, "change"] + (["item"] + (["reference"] if reference else []) if items else []) + (
        [f"{n} output" for n in names] if outputs else [])
    rows = []
    for e in entries:
        row: list[object] = [f"`{e['id']}`", e["before"]["score"], e["after"]["score"], f"{e['change']:+.4g}"]
        row += _item_cells(e, reference) if items else []
        row += [(excerpt(e[s].get("output", MISSING)) or "(blank)") for s in ("before", "after")] if outputs else []
        rows.append(row)
    return md_table(headers, rows)


def eval_page(intro: str, compared: Compared, sizes: Sizes, seed: int) -> str:
    lines = ["# Feedback: eval items", "", intro, "",
             f"Per set and stage: the items that **flipped** (scored 0 to 1, right from {RIGHT} on: one model "
             f"right, the other wrong; up to {sizes.flips} each way, a random choice with seed {seed}), then the "
             f"{sizes.top} largest per-item **gains** and **losses** of the later model (in the set's better "
             "direction; bits per byte for perplexity sets). Sets are compared only on the same version. "
             "Everything listed is in `eval.jsonl`, with outputs and items whole.", ""]
    if not compared:
        return "\n".join(lines + ["Nothing to compare.", ""])
    for before, after, found in compared:
        lines += [f"## {after.experiment} {after.stage} against {before.experiment} {before.stage}", ""]
        for one in found:
            lines += [f"### {one.name} ({one.kind or MISSING}), version `{one.version or MISSING}`", ""]
            if one.paired:
                flips = (f" Flipped: {one.flips['right']} became right, {one.flips['wrong']} became wrong."
                         if one.flips else "")
                lines += [f"{one.paired} items paired by id.{flips}", ""]
            if one.note:
                lines += [f"{one.note[0].upper()}{one.note[1:]}.", ""]
            lists = [(f"Flipped, became {b}", [e for e in one.entries if e.get("became") == b], one.flips.get(b))
                     for b in ("right", "wrong")]
            lists += [(title, [e for e in one.entries if e["entry"] == what], None)
                      for what, title in (("gain", "Largest gains"), ("loss", "Largest losses"))]
            for title, part, total in lists:
                if part:
                    shown = f" ({len(part)} of {total})" if total is not None else ""
                    lines += [f"{title}{shown}:", "", _entry_table(part), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- training data

@dataclass(frozen=True)
class Changed:
    """A training dataset to sample, from the experiment that has it, and why it is listed."""

    kind: str
    dataset: str
    root: Path
    why: str


def processed_files(root: Path) -> dict[tuple[str, str], Path]:
    """{(kind, dataset): data/processed/<kind>/<dataset>.jsonl} of an experiment (dataset names hold no dot, so
    `<dataset>.rejects.jsonl` and `<dataset>.duplicates.jsonl` are not datasets)."""
    found = {}
    for kind in KINDS:
        for path in sorted((root / "data" / "processed" / kind).glob("*.jsonl")):
            if "." not in path.name[: -len(".jsonl")]:
                found[(kind, path.name[: -len(".jsonl")])] = path
    return found


def same_content(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes: sizes first, then sha256 (streamed)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    digests = []
    for path in (a, b):
        with open(path, "rb") as stream:
            digests.append(hashlib.file_digest(stream, "sha256").hexdigest())
    return digests[0] == digests[1]


def changed_datasets(root: Path, baseline_root: Path | None) -> tuple[list[Changed], list[tuple[str, str]]]:
    """The datasets to sample (in one experiment only, or with other processed data; without a baseline,
    every dataset) and the (kind, dataset) pairs left out as unchanged."""
    mine = processed_files(root)
    if baseline_root is None:
        return [Changed(k, d, root, "no baseline") for k, d in mine], []
    theirs = processed_files(baseline_root)
    changed, unchanged = [], []
    for key in sorted(mine.keys() | theirs.keys()):
        if key not in theirs:
            changed.append(Changed(*key, root, f"only in {root.name}"))
        elif key not in mine:
            changed.append(Changed(*key, baseline_root, f"only in {baseline_root.name}"))
        elif not same_content(mine[key], theirs[key]):
            changed.append(Changed(*key, root, "processed data differs"))
        else:
            unchanged.append(key)
    return changed, unchanged


def _sample(one: Changed, what: str, reason: str | None, record: object, **extra: object) -> dict:
    return {"kind": one.kind, "dataset": one.dataset, "experiment": one.root.name, "sample": what,
            "reason": reason, **extra, "record": record}


def kept_samples(one: Changed, size: int, seed: int) -> tuple[list[dict], int]:
    """`size` random kept records of the dataset (in file order) and how many it has."""
    path = one.root / "data" / "processed" / one.kind / f"{one.dataset}.jsonl"
    sample = Reservoir(size, seeded(seed, one.kind, one.dataset, "kept"))
    for line in iter_lines(path):
        if line.text.strip():
            sample.add((line.number, line.text))
    return [_sample(one, "kept", None, parsed(text), line=number) for number, text in sorted(sample.items)], sample.seen


def reject_samples(one: Changed, size: int, seed: int) -> tuple[list[dict], dict[str, int]]:
    """`size` random rejects of each reason (in file order; reasons by name) and the count of each reason."""
    path = one.root / "data" / "processed" / one.kind / f"{one.dataset}.rejects.jsonl"
    if file_problem(path):
        return [], {}
    by_reason: dict[str, Reservoir] = {}
    for number, reject in json_lines(path):
        reason = str(reject.get("reason"))
        if reason not in by_reason:
            by_reason[reason] = Reservoir(size, seeded(seed, one.kind, one.dataset, "reject", reason))
        by_reason[reason].add((number, reject))
    samples = [_sample(one, "reject", reason, reject) for reason in sorted(by_reason)
               for _, reject in sorted(by_reason[reason].items, key=lambda x: x[0])]
    return samples, {reason: by_reason[reason].seen for reason in sorted(by_reason)}


def _target(duplicate: dict) -> tuple[str, str, int] | None:
    """The kept record a duplicates line matched: (dataset, raw file, line), or None for a malformed line."""
    of = duplicate.get("duplicate_of")
    if (isinstance(of, dict) and isinstance(of.get("dataset"), str) and isinstance(of.get("file"), str)
            and isinstance(of.get("line"), int)):
        return of["dataset"], of["file"], of["line"]
    return None


def raw_lines(path: Path, numbers: set[int]) -> dict[int, str]:
    """Lines `numbers` of a raw JSON Lines file, read up to the last wanted one; {} for another format (csv,
    parquet, json, txt: the duplicates file's `line` is then a record number, found by the reader that
    udatasets used) or a file that is gone."""
    if not numbers or not is_data_file(path) or file_problem(path):
        return {}
    found, last = {}, max(numbers)
    try:
        for line in iter_lines(path):
            if line.number in numbers:
                found[line.number] = line.text
            if line.number >= last:
                break
    except StageError as err:
        log.warning("%s", err)
    return found


def duplicate_clusters(one: Changed, size: int, members: int) -> tuple[list[dict], int]:
    """The `size` largest clusters of the dataset's duplicates (a kept record, possibly of an earlier dataset
    of the kind, and every duplicate of this dataset that matched it), largest first, and how many clusters
    there are. Two passes over the duplicates file: count per kept record, then collect the members of the
    largest; memory holds a count per kept record that was matched."""
    path = one.root / "data" / "processed" / one.kind / f"{one.dataset}.duplicates.jsonl"
    if file_problem(path):
        return [], 0
    counts: Counter = Counter(t for _, d in json_lines(path) if (t := _target(d)) is not None)
    largest = sorted(counts, key=lambda t: (-counts[t], t))[:size]
    kinds: dict[tuple, Counter] = {t: Counter() for t in largest}
    listed: dict[tuple, list[dict]] = {t: [] for t in largest}
    for _, duplicate in json_lines(path):
        if (target := _target(duplicate)) in kinds:
            kinds[target][str(duplicate.get("kind"))] += 1
            if len(listed[target]) < members:
                listed[target].append({k: duplicate.get(k) for k in ("file", "line", "kind")})
    wanted: dict[tuple[str, str], set[int]] = defaultdict(set)
    for dataset, file, line in largest:
        wanted[(dataset, file)].add(line)
    for target in largest:
        for d in listed[target]:
            if isinstance(d["file"], str) and isinstance(d["line"], int):
                wanted[(one.dataset, d["file"])].add(d["line"])
    raw_dir = one.root / "data" / "raw" / one.kind
    raw = {key: raw_lines(raw_dir / key[0] / key[1], lines) for key, lines in wanted.items()}
    clusters = []
    for target in largest:
        dataset, file, line = target
        for d in listed[target]:
            d["raw"] = raw.get((one.dataset, d["file"]), {}).get(d["line"])
        record = {"size": 1 + counts[target], "duplicates_by_kind": dict(sorted(kinds[target].items())),
                  "kept": {"dataset": dataset, "file": file, "line": line, "raw": raw[(dataset, file)].get(line)},
                  "duplicates": listed[target]}
        clusters.append(_sample(one, "duplicate_cluster", None, record))
    return clusters, len(counts)


def _counts_cell(root: Path, one: Changed, key: str) -> str:
    stats = read_json(root / "data" / "processed" / one.kind / f"{one.dataset}.stats.json")
    value = (stats or {}).get(key)
    if isinstance(value, dict):
        value = sum(v for v in value.values() if isinstance(v, int))
    return fmt(value)


def data_feedback(changed: list[Changed], sizes: Sizes, seed: int) -> list[tuple[Changed, list[dict], dict]]:
    """Each changed dataset's samples, and the counts they were drawn from."""
    found = []
    for one in changed:
        kept, n_kept = kept_samples(one, sizes.kept, seed)
        rejects, reasons = reject_samples(one, sizes.rejects, seed)
        clusters, n_clusters = duplicate_clusters(one, sizes.clusters, sizes.members)
        found.append((one, kept + rejects + clusters, {"kept": n_kept, "reasons": reasons, "clusters": n_clusters}))
    return found


def data_page(intro: str, roots: list[Path], found: list[tuple[Changed, list[dict], dict]],
              unchanged: list[tuple[str, str]], sizes: Sizes, seed: int) -> str:
    lines = ["# Feedback: training data", "", intro, "",
             f"For each training dataset that changed: {sizes.kept} random kept records, {sizes.rejects} random "
             f"rejects of each reason (seed {seed}) and the {sizes.clusters} largest duplicate clusters (a kept "
             "record and the duplicates of this dataset that matched it). Everything listed is in `data.jsonl`, "
             "whole.", ""]
    if unchanged:
        lines += ["Unchanged (the same processed data), not sampled: "
                  + ", ".join(f"{k} `{d}`" for k, d in unchanged) + ".", ""]
    if not found:
        why = "every dataset is unchanged" if unchanged else "no `data/processed/<kind>/<dataset>.jsonl`"
        return "\n".join(lines + [f"No dataset to sample ({why}).", ""])
    headers = ["kind", "dataset", "listed because", *[f"{what} ({r.name})" for what in ("kept", "rejected",
                                                                                      "duplicates") for r in roots]]
    rows = [[one.kind, one.dataset, one.why, *[_counts_cell(r, one, key) for key in ("kept", "rejected", "duplicates")
                                              for r in roots]] for one, _, _ in found]
    lines += [md_table(headers, rows), ""]
    for one, samples, counts in found:
        lines += [f"## {one.kind} `{one.dataset}` ({one.why}; from {one.root.name})", ""]
        kept = [s for s in samples if s["sample"] == "kept"]
        lines += [f"Kept: {len(kept)} of {fmt(counts['kept'])}, at random (augmented records included).", ""]
        if kept:
            lines += [md_table(["line", "record"], [[s["line"], excerpt(record_text(s["record"]))] for s in kept]), ""]
        for reason, total in counts["reasons"].items():
            part = [s["record"] for s in samples if s["sample"] == "reject" and s["reason"] == reason]
            lines += [f"Rejected as `{reason}`: {len(part)} of {fmt(total)}, at random.", "",
                      md_table(["file", "line", "raw"], [[excerpt(r.get("file")), r.get("line"),
                                                          excerpt(raw_text(r.get("raw")))] for r in part]), ""]
        if not counts["reasons"]:
            lines += ["No rejects.", ""]
        clusters = [s["record"] for s in samples if s["sample"] == "duplicate_cluster"]
        lines += [f"Duplicate clusters: the {len(clusters)} largest of {counts['clusters']}." if counts["clusters"]
                  else "No duplicates.", ""]
        if clusters:
            rows = [[c["size"], ", ".join(f"{k} {n}" for k, n in c["duplicates_by_kind"].items()),
                     excerpt(f"{c['kept']['dataset']}/{c['kept']['file']}:{c['kept']['line']}"),
                     excerpt(raw_text(c["kept"]["raw"])),
                     excerpt(", ".join(f"{d['file']}:{d['line']}" for d in c["duplicates"]))] for c in clusters]
            lines += [md_table(["size", "duplicates", "kept record", "kept raw", "duplicates (first)"], rows), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- the folder

def feedback(root: Path, baseline_root: Path | None, out: Path, sizes: Sizes, seed: int) -> None:
    """Write `out/` (index.md, eval.md + eval.jsonl, data.md + data.jsonl) for the experiment at `root` (its
    DATAPOOL_ROOT) against the baseline experiment at `baseline_root` (None: its own stages)."""
    if not root.is_dir():
        raise StageError(f"feedback: experiment folder {root} does not exist; pass the experiment's DATAPOOL_ROOT "
                         f"(<datapool>/experiments/<exp>) as --root")
    pairs, intro = eval_pairs(root, baseline_root)
    if baseline_root is not None and not baseline_root.is_dir():  # as any missing stage output: said, not fatal
        log.warning("baseline folder %s does not exist", baseline_root)
        intro += (f" The baseline has no folder `{baseline_root}` (not run yet): it has no scores and no data, so "
                  f"every dataset of `{root.name}` is sampled.")
    compared = eval_feedback(pairs, sizes, seed)
    changed, unchanged = changed_datasets(root, baseline_root)
    data_intro = (f"Datasets of `{root.name}` against its baseline `{baseline_root.name}`." if baseline_root else
                  f"Experiment `{root.name}` has no baseline: every dataset is sampled.")
    sampled = data_feedback(changed, sizes, seed)
    roots = [r for r in (baseline_root, root) if r is not None]
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.md").write_text(eval_page(intro, compared, sizes, seed).rstrip() + "\n", encoding="utf-8")
    write_jsonl(out / "eval.jsonl", [e for _, _, found in compared for one in found for e in one.entries])
    (out / "data.md").write_text(data_page(data_intro, roots, sampled, unchanged, sizes, seed).rstrip() + "\n",
                                 encoding="utf-8")
    write_jsonl(out / "data.jsonl", [s for _, samples, _ in sampled for s in samples])
    flipped = sum(n for _, _, found in compared for one in found for n in one.flips.values())
    comparisons = sum(len(found) for _, _, found in compared)
    index = [f"# Feedback: {root.name}", "", intro, "",
             f"- [eval.md](eval.md) ([eval.jsonl](eval.jsonl)): flipped eval items, largest gains and losses; "
             f"flipped items: {flipped}, in {comparisons} set comparisons.",
             f"- [data.md](data.md) ([data.jsonl](data.jsonl)): samples of the training datasets that changed; "
             f"datasets sampled: {len(changed)}, unchanged: {len(unchanged)}.", "",
             f"Seed {seed}: rebuilding from the same files gives the same pages. How to read them: docs/feedback.md."]
    (out / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
