"""A Hugging Face datasets cache built offline, as `datasets.load_dataset(<namespace>/<name>)` leaves it after a
download from the Hub (tests of `hf:` sources)."""
from __future__ import annotations

import os
from pathlib import Path

import datasets
from datasets.packaged_modules.parquet.parquet import Parquet


def write_hub_cache(cache: Path, name: str, splits: dict[str, list[dict]], configs: tuple[str, ...] = ("default",),
                    revision: str = "abc123") -> None:
    """Put `name` (namespace/name) with `splits` (split -> rows) under each of `configs` into the cache folder
    `cache`, at `revision`: the parquet builder (the one the Hub's parquet datasets use) prepares each config from
    parquet files, then its folder moves to where the Hub name's revision lives."""
    namespace, short = name.split("/")
    files = cache / "parquet_sources"
    for split, rows in splits.items():
        datasets.Dataset.from_list(rows).to_parquet(str(files / f"{split}.parquet"))
    for config in configs:
        builder = Parquet(cache_dir=str(cache), dataset_name=short, config_name=config, hash=revision,
                          data_files={split: str(files / f"{split}.parquet") for split in splits})
        builder.download_and_prepare()
        os.renames(builder.cache_dir, cache / f"{namespace}___{short}" / config / "0.0.0" / revision)
