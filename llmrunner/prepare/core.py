"""prepare: put the base model and the raw data into the experiment's datapool.

A base model is either copied from a local Hugging Face folder or built (`builtin:<name>`);
raw data files are copied as they are, keeping their names. A source outside the repository (raw
corpora on shared storage, or a link pointing there) is read where it is, and the log says so. A Hugging Face
dataset source (`hf:`) is written as one Arrow file of its split (udatasets/hf_sources.py), so that the run never
reads the cache or the saved folder again.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from llmrunner.errors import ConfigError, StageError
from llmrunner.jsonl import file_problem, is_data_file
from llmrunner.prepare.tiny_model import build_tiny_qwen3
from llmrunner.udatasets.hf_sources import HfSource, export, open_source
from llmrunner.udatasets.readers import RAW_SUFFIXES

log = logging.getLogger(__name__)

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS: dict[str, Callable[[Path], None]] = {"tiny-qwen3": build_tiny_qwen3}

# Other weight formats are redundant next to safetensors (and often as large again): not copied.
SKIPPED_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".gguf", ".onnx")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def prepare_base_model(src: str, out: Path) -> None:
    """Build `builtin:<name>` into `out`, or copy the HF model folder `src` there."""
    if src.startswith(BUILTIN_PREFIX):
        name = src[len(BUILTIN_PREFIX):]
        if name not in BUILTIN_MODELS:
            raise StageError(f"unknown built-in base model {src!r}; known: "
                             + ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_MODELS))
        BUILTIN_MODELS[name](out)
    else:
        copy_base_model(Path(src), out)


def copy_base_model(src: Path, out: Path) -> None:
    """Copy an HF model folder's top-level files (safetensors, config, tokenizer, side files) to `out`."""
    if not src.is_dir():
        raise StageError(f"base model source {src} is not a folder. Give a local Hugging Face model folder "
                         f"(on a machine with internet: `huggingface-cli download <repo> --local-dir {src}`) "
                         f"or builtin:tiny-qwen3 in pipeline.yaml base_model.src")
    names = {p.name for p in src.iterdir() if p.is_file()}
    problems = []
    if "config.json" not in names:
        problems.append("no config.json")
    if not any(n.endswith(".safetensors") for n in names):
        problems.append("no *.safetensors weights (convert with model.save_pretrained(dir, "
                        "safe_serialization=True))")
    if not names.intersection(TOKENIZER_FILES):
        problems.append("no tokenizer files (tokenizer.json or tokenizer_config.json; save them with "
                        "tokenizer.save_pretrained(dir))")
    if problems:
        raise StageError(f"base model source {src} is not a usable Hugging Face model folder: "
                         + "; ".join(problems) + f". It contains: {', '.join(sorted(names)) or 'no files'}")
    if src.resolve() == out.resolve():
        raise StageError(f"base model source {src} is the output folder itself; point base_model.src elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in sorted(names):
        if name.startswith(".") or name.endswith(SKIPPED_WEIGHT_SUFFIXES):
            continue
        shutil.copyfile(src / name, out / name)
        copied.append(name)
    log.info("copied base model %s -> %s: %s", src, out, ", ".join(copied))


def copy_raw_data(sources: list[Path], out: Path, hf_sources: Sequence[HfSource] = ()) -> None:
    """Copy each source file into `out` under its own name (the rule has expanded the globs), and write the split
    of each `hf:` source there as `<dataset>[.<config>][.<split>].arrow`."""
    problems = []
    by_name: dict[str, Path | HfSource] = {}
    for src in sources:
        if problem := file_problem(src):
            problems.append(problem)
        elif not is_data_file(src, RAW_SUFFIXES):
            problems.append(f"{src} is not a data file of a known format ({', '.join(RAW_SUFFIXES)}); "
                            f"convert it, or rename it if it is one of these")
        elif src.name in by_name:
            problems.append(f"{src} and {by_name[src.name]} have the same file name; rename one")
        else:
            by_name[src.name] = src
    opened = []
    for source in hf_sources:
        try:
            dataset, resolved, _ = open_source(source)
        except ConfigError as err:  # the folder or the cache changed since config load
            problems.append(str(err))
            continue
        if (name := resolved.file_name()) in by_name:
            problems.append(f"{resolved} and {by_name[name]} both become {name}; rename one")
        by_name[name] = resolved
        opened.append((dataset, resolved))
    if not sources and not hf_sources:
        problems.append("no source files given")
    if problems:
        raise StageError("cannot copy the raw data sources (fix the dataset's sources in pipeline.yaml): "
                         + "; ".join(problems))
    out.mkdir(parents=True, exist_ok=True)
    repository = Path.cwd()  # the workflow runs from the repository root; sources are relative to it
    for name, src in sorted((n, s) for n, s in by_name.items() if isinstance(s, Path)):
        if not (real := src.resolve()).is_relative_to(repository):
            log.info("source %s is outside the repository %s: reading %s (a moved checkout still reads it there)",
                     src, repository, real)
        shutil.copyfile(src, out / name)
        log.info("copied %s -> %s (%d bytes)", src, out / name, src.stat().st_size)
    for dataset, source in opened:
        rows = export(dataset, out / source.file_name())
        log.info("wrote %s%s -> %s (%d rows)", source, f" (cache revision {source.revision})" if source.revision
                 else "", out / source.file_name(), rows)
