"""Hugging Face datasets as sources: the `hf:` entries of a dataset's `sources`, read from this machine only.

An entry is the string `"hf:<folder or name>"` or the object `{hf: <folder or name>, split: <split>, config:
<config>}` (pipeline.schema.json, $defs/dataset). `<folder>`: a folder written by `Dataset.save_to_disk` or
`DatasetDict.save_to_disk`, opened with `load_from_disk` (memory-mapped). Otherwise `<name>` is a Hub dataset as the
local datasets cache holds it (HF_DATASETS_CACHE, else HF_HOME/datasets), opened with the datasets library's own
cache builder, which never reaches the network: the newest cached revision of the config. Without `split`, the only
split; without `config` (Hub names), the only cached config.

prepare writes the chosen split, batch by batch, as one Arrow file into data/raw/<kind>/<dataset>/, named after
the dataset, config and split (`export`); udatasets reads that file like any raw file (readers.read_arrow), so a
run never depends on the cache or the folder after prepare, and a record's `line` is its row number in the split.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from llmrunner.errors import ConfigError, StageError

if TYPE_CHECKING:
    import datasets

HF_PREFIX = "hf:"
ARROW_SUFFIX = ".arrow"
BATCH_ROWS = 1024  # rows per batch read from or written to Arrow and parquet files (readers.py too)
# A Hub dataset id: a name, or namespace/name (what the cache can hold; a longer path can only be a folder).
HUB_NAME = re.compile(r"[\w.-]+(/[\w.-]+)?")


@dataclass(frozen=True)
class HfSource:
    """One `hf:` entry; `revision` is set once resolved for a Hub name (`<version>/<hash>` in the cache)."""

    hf: str
    split: str | None = None
    config: str | None = None
    revision: str | None = None

    @classmethod
    def from_entry(cls, entry: str | dict) -> HfSource | None:
        """The source an entry of `sources` names, or None for a file or glob."""
        if isinstance(entry, dict):
            return cls(entry["hf"], entry.get("split"), entry.get("config"))
        return cls(entry[len(HF_PREFIX):]) if entry.startswith(HF_PREFIX) else None

    def __str__(self) -> str:
        given = [f"{key} {value}" for key, value in (("config", self.config), ("split", self.split)) if value]
        return HF_PREFIX + self.hf + (f" ({', '.join(given)})" if given else "")

    def is_folder(self) -> bool:
        return os.path.isdir(self.hf)

    def file_name(self) -> str:
        """The raw file prepare writes: dataset (a folder's name, or the Hub name with `/` as `--`), config,
        split. Resolved sources only."""
        stem = Path(self.hf).resolve().name if self.is_folder() else self.hf.replace("/", "--")
        return ".".join(part for part in (stem, self.config, self.split) if part) + ARROW_SUFFIX

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class Opened(NamedTuple):
    dataset: datasets.Dataset
    """The chosen split, memory-mapped."""
    source: HfSource
    """With the split (and for a Hub name the config and revision) that was found."""
    files: list[str]
    """A folder's files that hold the split (rule inputs: re-saving the folder reruns prepare); [] for a Hub name,
    whose revision (a parameter of the rule) changes instead."""


def parse_sources(entries: list[str | dict]) -> tuple[list[str], list[HfSource]]:
    """(files and globs, `hf:` sources) of a dataset's `sources`, each in the order given."""
    sources = [HfSource.from_entry(entry) for entry in entries]
    return ([e for e, s in zip(entries, sources, strict=True) if s is None], [s for s in sources if s is not None])


def open_source(source: HfSource) -> Opened:
    """Open the split `source` names, memory-mapped; a ConfigError says what is missing, what exists and the fix."""
    return _open_folder(source) if source.is_folder() else _open_hub(source)


def _pick_split(source: HfSource, splits: list[str], where: str) -> str:
    if source.split in splits or (source.split is None and len(splits) == 1):
        return source.split or splits[0]
    found = f"{where} has the splits {', '.join(splits)}"
    if source.split is None:
        raise ConfigError(f"{source}: {found}; choose one: {{hf: {source.hf}, split: {splits[0]}}}")
    raise ConfigError(f"{source}: no split '{source.split}': {found}; set split to one of them")


def _open_folder(source: HfSource) -> Opened:
    import datasets

    folder = source.hf
    try:
        loaded = datasets.load_from_disk(folder)
    except FileNotFoundError as err:
        raise ConfigError(f"{source}: the folder {folder} was not written by save_to_disk ({err}); save the data "
                          "with Dataset.save_to_disk or DatasetDict.save_to_disk, or give its files as sources "
                          "without hf:") from err
    if source.config is not None:
        raise ConfigError(f"{source}: a save_to_disk folder has no configs; remove config")
    if isinstance(loaded, datasets.DatasetDict):
        split = _pick_split(source, list(loaded), f"the DatasetDict folder {folder}")
        split_folder = os.path.join(folder, split)
        files = [os.path.join(folder, datasets.config.DATASETDICT_JSON_FILENAME)] + _files(split_folder)
        return Opened(loaded[split], replace(source, split=split), files)
    if source.split is not None:
        raise ConfigError(f"{source}: the folder {folder} holds one Dataset, which has no splits; remove split")
    return Opened(loaded, source, _files(folder))


def _files(folder: str) -> list[str]:
    return sorted(os.path.join(folder, entry.name) for entry in os.scandir(folder) if entry.is_file())


@functools.cache
def _cached_revision(cache_dir: str, name: str, config: str | None) -> tuple[str, str, str]:
    """(config, version, hash) of the newest cached revision of `name` (once per process: the same plan for
    every job, and the datasets library's log line once)."""
    from datasets.packaged_modules.cache.cache import Cache

    builder = Cache(cache_dir=cache_dir, dataset_name=name.split("/")[-1], repo_id=name, config_name=config,
                    version="auto", hash="auto")
    return builder.config.name, str(builder.config.version), builder.hash


def _open_hub(source: HfSource) -> Opened:
    import datasets
    from datasets.packaged_modules.cache.cache import Cache

    name, cache_dir = source.hf, str(datasets.config.HF_DATASETS_CACHE)
    if not HUB_NAME.fullmatch(name):
        raise ConfigError(f"{source}: no folder {name} (paths are relative to {os.getcwd()}); give the folder "
                          "that save_to_disk wrote, or a Hub dataset name (namespace/name)")
    if source.revision is None:
        try:
            config, version, hash_ = _cached_revision(cache_dir, name, source.config)
        except ValueError as err:  # not cached, config not cached, several configs cached
            found = str(err).replace("\n", " ")
            configs = "configs in the cache" in found or "configurations in the cache" in found
            fix = (f"set config to one of them (the object form {{hf: {name}, config: ...}})" if configs else
                   f"download it on a machine with internet (datasets.load_dataset('{name}') with the same "
                   "HF_HOME), or save it with save_to_disk and give the folder")
            raise ConfigError(f"{source}: not a folder, and not usable from the datasets cache {cache_dir}: "
                              f"{found}; {fix}") from err
    else:
        config, (version, hash_) = source.config, source.revision.split("/")
    builder = Cache(cache_dir=cache_dir, dataset_name=name.split("/")[-1], repo_id=name, config_name=config,
                    version=version, hash=hash_)
    if not os.path.isdir(builder.cache_dir):
        raise StageError(f"{source}: revision {source.revision} is gone from the datasets cache {cache_dir} since "
                         "the workflow planned this job; run the workflow again")
    split = _pick_split(source, list(builder.info.splits), f"{name} (config {config}) in the datasets cache")
    resolved = replace(source, split=split, config=config, revision=f"{version}/{hash_}")
    return Opened(builder.as_dataset(split=split), resolved, [])


def export(dataset: datasets.Dataset, path: Path) -> int:
    """Write `dataset` to `path` as one Arrow stream file with its features, a batch at a time (the source stays
    memory-mapped); return the rows written."""
    from datasets.arrow_writer import ArrowWriter

    writer = ArrowWriter(path=str(path), features=dataset.features)
    try:
        for table in dataset.with_format("arrow").iter(batch_size=BATCH_ROWS):
            writer.write_table(table)
        rows, _ = writer.finalize()
    finally:
        writer.close()
    return rows
