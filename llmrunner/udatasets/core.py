"""udatasets: raw records of any format -> validated, cleaned, de-duplicated records in the unified schema.

Per record (shard.py, the map side, in parallel): adapter -> cleaning (clean.py: NFC, control characters,
whitespace) -> empty / character / token length filters, then its exact-dedup hash and MinHash signature.
Then (dedup.py, the gather side, in input order): exact de-dup, near de-dup, across every dataset of the
kind before this one; SFT augmentation (augment.py) of the kept records.

One streaming pass over the raw files (sorted by name, records in order). Every input record ends in
exactly one of three places, so the stats add up: the kept data, the rejects (with a reason), or
the duplicates (naming the kept record it matched). Memory is bounded by the de-dup index (per kept
record: 16 bytes of hash, its signature when near de-dup is on, and its location).

Three ways to run it, with the same output: everything in one process (`map_and_gather`: the map side, then
the gather side), or map jobs (`write_shard`, shard i of n) and one gather job per dataset (`gather_shards`).
A map job may find no record (more shards than records); a dataset that keeps none stops its gather
(`require_records`).
"""
from __future__ import annotations

import logging
import os
import resource
import shutil
from contextlib import ExitStack
from itertools import islice
from pathlib import Path

from llmrunner.errors import ConfigError, StageError, first_few
from llmrunner.progress import Progress
from llmrunner.udatasets.augment import AugmentSettings
from llmrunner.udatasets.dedup import ShardGroup, gather, open_shard_groups
from llmrunner.udatasets.near_dup import MinHashConfig
from llmrunner.udatasets.shard import RecordRules, dataset_entries, shard_items, shard_lines

log = logging.getLogger(__name__)


def output_paths(out: Path) -> dict[str, Path]:
    """The four outputs next to `<dataset>.jsonl`: data, rejects, duplicates, stats."""
    if not out.name.endswith(".jsonl") or out.name == ".jsonl":
        raise ConfigError(f"--out {out}: must be a file name ending in .jsonl (data/processed/<kind>/<dataset>.jsonl)")
    stem = out.name[: -len(".jsonl")]
    return {"data": out, "rejects": out.with_name(f"{stem}.rejects.jsonl"),
            "duplicates": out.with_name(f"{stem}.duplicates.jsonl"), "stats": out.with_name(f"{stem}.stats.json")}


def map_and_gather(inputs: list[Path], out: Path, rules: RecordRules, dedup: str = "exact",
                    augment: AugmentSettings | None = None, workers: int = 1) -> dict:
    """Clean the records of `inputs` (one dataset) into `out` (+ rejects, duplicates, stats files) in one
    process with `workers` worker processes; return the stats. The dataset is named after `out`."""
    paths = output_paths(out)
    dataset = out.name[: -len(".jsonl")]
    entries = dataset_entries(inputs, rules, dataset, workers)
    _clear_failed(paths)
    stats = gather([ShardGroup(dataset, [p.name for p in inputs], entries)], paths, exact=dedup == "exact",
                   near=rules.minhash, augment_settings=augment)
    _log_stats(stats, paths)
    require_records(stats, paths)
    return stats


def write_shard(inputs: list[Path], out: Path, rules: RecordRules, dataset: str, shard: int, shards: int,
                workers: int = 1) -> None:
    """The map job: write shard `shard` of `shards` of the dataset's records to `out` (a shard file)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as stream:
        for block in shard_lines(inputs, rules, dataset, shard, shards, workers):
            stream.write(block)
    log.info("shard %d of %d of %s -> %s", shard, shards, dataset, out)


def gather_shards(shard_files: list[Path], out: Path, dedup: str = "exact", near: MinHashConfig | None = None,
                  augment: AugmentSettings | None = None) -> dict:
    """The gather job: `shard_files` are the shard files of the datasets before this one (in the fixed
    order, for the de-dup index) and then this dataset's (named after `out`), each dataset's in shard
    order. Writes the four outputs and returns the stats."""
    paths = output_paths(out)
    dataset = out.name[: -len(".jsonl")]
    _allow_open_files(len(shard_files))  # every shard file is open at once
    with ExitStack() as stack:
        groups = open_shard_groups(shard_files, stack)
        names = [g.dataset for g in groups]
        if not groups or names[-1] != dataset or dataset in names[:-1]:
            raise ConfigError(f"gather: the last shard files must be those of {dataset!r} (the --out dataset), "
                              f"each dataset's once; got datasets {names}")
        _clear_failed(paths)
        with Progress(f"udatasets {dataset} gather", "records", shard_files,
                      sum(map(shard_items, shard_files))) as progress:
            groups = [group._replace(entries=progress.over(group.entries)) for group in groups]
            stats = gather(groups, paths, exact=dedup == "exact", near=near, augment_settings=augment)
    _log_stats(stats, paths)
    require_records(stats, paths)
    return stats


# Files the gather opens besides its shards (outputs, stats) and what libraries may open meanwhile.
OPEN_FILES_MARGIN = 64


def _allow_open_files(shard_files: int) -> None:
    """Raise this process's open-file limit to what the gather needs (shards x datasets can pass the usual soft
    limit of 1,024) up to the hard limit; past that, say which settings to change. Counts the files already
    open: a process that called the gather (a test, a notebook) may hold many."""
    fds = Path("/proc/self/fd")
    needed = (len(os.listdir(fds)) if fds.is_dir() else 0) + shard_files + OPEN_FILES_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed <= soft:
        return
    if hard != resource.RLIM_INFINITY and needed > hard:
        raise StageError(f"the gather reads {shard_files} shard files at once, more than this machine's open-file "
                         f"limit ({hard}) allows; lower `shards` in the udatasets step or raise the limit "
                         "(ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _log_stats(stats: dict, paths: dict[str, Path]) -> None:
    log.info("input %d = kept %d + rejected %d + duplicates %d exact, %d near (cleaned %d; augmented %d)",
             stats["input"], stats["kept"], sum(stats["rejected"].values()), stats["duplicates"]["exact"],
             stats["duplicates"]["near"], stats["cleaned"], stats["augmented"])
    for name, path in paths.items():
        log.info("%s -> %s", name, path)


SHOWN_IN_LOG = 5  # rejects and duplicates of an empty dataset copied into the log


def failed_paths(paths: dict[str, Path]) -> dict[str, Path]:
    """Where the rejects, duplicates and stats of a dataset left empty are kept: `.failed/` beside them, which
    Snakemake leaves alone (it deletes the outputs of a failed job)."""
    return {name: paths[name].parent / ".failed" / paths[name].name for name in ("rejects", "duplicates", "stats")}


def _clear_failed(paths: dict[str, Path]) -> None:
    """Remove what an earlier, failed run of this dataset kept: it no longer describes the outputs."""
    for path in failed_paths(paths).values():
        path.unlink(missing_ok=True)


def require_records(stats: dict, paths: dict[str, Path]) -> None:
    """Stop when no record of the dataset is left, naming where they went: tokenize would write an empty
    dataset and training fail on it much later ("cannot mmap an empty file"). The outputs are written first;
    the rejects, duplicates and stats files are also linked into `.failed/` and the first rejects and
    duplicates copied into the log, since Snakemake deletes the outputs of a failed job."""
    if stats["kept"]:
        return
    kept = failed_paths(paths)
    kept["stats"].parent.mkdir(exist_ok=True)
    for name, path in kept.items():
        try:
            os.link(paths[name], path)  # a second name for the same data: no copy of a big rejects file
        except OSError:  # a filesystem without hard links
            shutil.copyfile(paths[name], path)
    for name, shown in (("rejects", "reject"), ("duplicates", "duplicate")):
        with open(kept[name], encoding="utf-8") as lines:
            for line in islice(lines, SHOWN_IN_LOG):
                log.error("%s: %s", shown, line.rstrip("\n")[:300])
    read = f"{stats['input']} read from {first_few(list(stats['files']))}"
    if not stats["input"]:
        blank = f" (only {stats['blank_lines']} blank lines)" if stats["blank_lines"] else ""
        raise StageError(f"dataset {stats['dataset']!r} has no record left: {read}{blank}; the files are empty: "
                         f"fix the sources")
    parts = [read]
    rejected = stats["rejected"]
    if rejected:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(rejected.items(), key=lambda r: -r[1]))
        parts.append(f"{sum(rejected.values())} rejected (reasons: {reasons}; see {kept['rejects']})")
    duplicates = stats["duplicates"]
    if sum(duplicates.values()):
        of = ", ".join(f"{name} {sum(counts.values())}" for name, counts in stats["duplicates_by_dataset"].items())
        parts.append(f"{sum(duplicates.values())} duplicates (exact {duplicates['exact']}, near {duplicates['near']})"
                     f" of records kept in earlier datasets ({of}; see {kept['duplicates']})")
    raise StageError(f"dataset {stats['dataset']!r} has no record left: {', '.join(parts)}; counts per file in "
                     f"{kept['stats']}; fix the sources or the filters (steps/1.udatasets.yaml)")
