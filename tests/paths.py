"""Where the repository is, the demo's CPT text, and writing YAML config in tests."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import yaml

from llmrunner.prepare.tiny_model import DEMO_CORPUS, corpus_lines

REPO = Path(__file__).resolve().parents[1]
# the demo experiment's config folder, relative to a working directory holding a copy of config/
DEMO = Path("config/experiments/demo")


def demo_cpt_lines() -> Iterator[str]:
    """The demo's CPT documents (resources/demo/cpt/<source>.jsonl.gz) as their JSON lines, one from each source
    in turn as the demo tokenizer reads them, so that the first few hundred mix Python docs, Jargon File and
    WordNet text."""
    return corpus_lines([REPO / path for path in DEMO_CORPUS])


def demo_cpt_texts() -> Iterator[str]:
    """The texts of `demo_cpt_lines()`."""
    return (json.loads(line)["text"] for line in demo_cpt_lines())


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def edit(path: Path, **changes) -> None:
    data = yaml.safe_load(path.read_text()) or {}
    data.update(changes)
    write_yaml(path, data)
