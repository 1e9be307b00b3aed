"""The built-in local lm-eval tasks. Their YAML is written at run time so it can hold absolute data paths."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from llmrunner.errors import StageError

# task name -> the EvalSettings field that names its data file
TASK_DATA_KEY = {"heldout_ppl": "heldout", "wordnet_mc": "mc"}

# fields every record of a task's data file must have
TASK_FIELDS = {"heldout_ppl": ("text",), "wordnet_mc": ("word", "pos", "choices", "label")}


def task_config(task: str, data_file: Path, cache_dir: Path) -> dict:
    """The lm-eval task config of a built-in task reading `data_file` (a local JSONL)."""
    config = {
        "task": task,
        "dataset_path": "json",
        "dataset_name": None,
        # cache_dir keeps the datasets cache private even when `datasets` was imported before HF_HOME was set
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}, "cache_dir": str(cache_dir)},
        "test_split": "test",
        "metadata": {"version": 1.0},
    }
    if task == "heldout_ppl":
        config |= {
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "{{text}}",
            "should_decontaminate": False,
            "metric_list": [{"metric": m, "aggregation": agg, "higher_is_better": False}
                            for m, agg in (("word_perplexity", "weighted_perplexity"),
                                           ("byte_perplexity", "weighted_perplexity"),
                                           ("bits_per_byte", "bits_per_byte"))],
        }
    elif task == "wordnet_mc":
        config |= {
            "output_type": "multiple_choice",
            "doc_to_text": 'Question: Which is the meaning of the {{pos}} "{{word}}"?\nAnswer:',
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "label",
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                            for m in ("acc", "acc_norm")],
        }
    else:
        raise AssertionError(f"no config for task {task!r}")
    return config


def write_task_configs(task_files: dict[str, Path], folder: Path, cache_dir: Path) -> None:
    """Write one `<task>.yaml` per task into `folder` (lm-eval's include_path)."""
    folder.mkdir(parents=True, exist_ok=True)
    for task, data_file in task_files.items():
        text = yaml.safe_dump(task_config(task, data_file, cache_dir), sort_keys=False, allow_unicode=True)
        (folder / f"{task}.yaml").write_text(text, encoding="utf-8")


def check_data_file(task: str, path: Path) -> None:
    """Fail early, naming the file, when a task's data is missing or its first record lacks a field."""
    if not path.is_file():
        raise StageError(f"eval task {task!r}: data file {path} does not exist; set the path in the eval "
                         f"step's config (key `{TASK_DATA_KEY[task]}`) to an existing JSONL file")
    with path.open(encoding="utf-8") as f:
        first = f.readline()
    if not first.strip():
        raise StageError(f"eval task {task!r}: {path} is empty (or starts with a blank line); expected one JSON "
                         f"object per line with fields {list(TASK_FIELDS[task])}")
    try:
        record = json.loads(first)
    except json.JSONDecodeError as err:
        raise StageError(f"eval task {task!r}: {path} line 1 is not JSON ({err}); expected one JSON object "
                         f"per line with fields {list(TASK_FIELDS[task])}") from None
    missing = [k for k in TASK_FIELDS[task] if not isinstance(record, dict) or k not in record]
    if missing:
        raise StageError(f"eval task {task!r}: {path} line 1 lacks field(s) {missing}; every line needs "
                         f"{list(TASK_FIELDS[task])}")
