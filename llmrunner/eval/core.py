"""Score an HF model folder on registered eval sets with lm-evaluation-harness, offline, in one lm-eval run.

Every set is one lm-eval task named after it (tasks.py). lm-eval's own results and per-sample files go to
`<out>/lm_eval/`, the task configs (and private copies of the items) to `<out>/tasks/`, one line per item to
`<out>/items/<set>.jsonl` (items.py), and a summary per set to results.json.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from llmrunner.errors import StageError
from llmrunner.eval.items import ITEMS_DIR, item_record, lm_eval_version, main_metric, write_items
from llmrunner.eval.tasks import (
    check_chat_template,
    include_path_problem,
    length_problems,
    render_prompt,
    stop_sequences,
    task_docs,
    unknown_task_problem,
    uses_chat_template,
    write_set_task,
)
from llmrunner.evalsets import KIND_METRIC, EvalSet, aggregate, read_items, set_file, version_of

log = logging.getLogger(__name__)

# Folders this stage owns inside the output folder; cleared before each run so no stale file survives.
LM_EVAL_DIR = "lm_eval"
TASKS_DIR = "tasks"
CACHE_DIR = ".cache"

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


@dataclass
class ScoredSet:
    """One set's outcome: its summary for results.json, its item lines, the ids recorded for its version."""

    summary: dict
    records: list[dict]
    ids: list[str]


def check_model_dir(model_dir: Path) -> None:
    """An HF model folder needs config.json and weights; say what is there when it is not usable."""
    if not model_dir.is_dir():
        raise StageError(f"eval: model folder {model_dir} does not exist; build it first (the prepare step for "
                         f"the base model, mg2hf for cpt/sft) or fix the model path in pipeline.yaml")
    has_weights = any(next(model_dir.glob(p), None) for p in _WEIGHT_PATTERNS)
    if not (model_dir / "config.json").is_file() or not has_weights:
        found = sorted(p.name for p in model_dir.iterdir()) or "nothing"
        raise StageError(f"eval: {model_dir} is not an HF model folder (needs config.json and *.safetensors); "
                         f"it holds {found}. Rerun the step that writes it (prepare or mg2hf)")


def resolve_dtype(dtype: str) -> str:
    """`auto`: bfloat16 on a CUDA GPU that supports it, else float32 (CPUs are slow or inexact in half
    precision); any other value as given."""
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"


def _offline_env() -> None:
    # Must run before transformers/datasets/huggingface_hub are imported: they read these at import time.
    # HF_HOME stays the user's: lm_eval sets read their data from the user's HF datasets cache.
    os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "TOKENIZERS_PARALLELISM": "false"})


def _write_own_tasks(sets: list[EvalSet], model_dir: Path, stage: str, folder: Path,
                     cache: Path) -> dict[str, list[dict]]:
    """Task configs and private item files of the perplexity, multiple_choice and generation sets;
    returns each set's items (all of them: multiple choice draws few-shot examples from the whole set)."""
    items = {s.name: read_items(s) for s in sets}
    tokenizer, stop = None, []
    if any(s.kind == "generation" for s in sets):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        stop = stop_sequences(tokenizer)
    for evalset in sets:
        prompts = None
        if evalset.kind == "generation":
            check_chat_template(evalset, stage, tokenizer, model_dir)
            chat = uses_chat_template(evalset, stage)
            prompts = [render_prompt(item["messages"], tokenizer, chat) for item in items[evalset.name]]
        write_set_task(evalset, task_docs(evalset, items[evalset.name], prompts), folder, cache, stop)
    return items


def _load_tasks(sets: list[EvalSet], tasks_dir: Path) -> tuple[Any, list, dict[str, list[str]]]:
    """lm-eval's TaskManager over our task folder (and lm-eval's tasks and include paths when an lm_eval
    set is scored), the Task and Group objects to run, and each set's leaf task names in order."""
    from lm_eval.tasks import TaskManager

    lm_sets = [s for s in sets if s.kind == "lm_eval"]
    includes = [str(tasks_dir)] + sorted({s.include_path for s in lm_sets if s.include_path})
    manager = TaskManager(include_path=includes, include_defaults=bool(lm_sets))
    problems = [unknown_task_problem(s, set_file(s.name), manager.all_tasks) for s in lm_sets]
    if any(problems):
        raise StageError("eval: " + "\n".join(p for p in problems if p))
    objects, leaves = [], {}
    for evalset in sets:
        name = evalset.task if evalset.kind == "lm_eval" else evalset.name
        try:
            loaded = manager.load([name])
        except Exception as err:  # lm-eval raises many kinds (missing dataset in the cache, bad YAML, ...)
            raise StageError(f"eval: set '{evalset.name}' ({set_file(evalset.name)}): lm-eval could not load task "
                             f"'{name}': {type(err).__name__}: {err}") from err
        if evalset.kind == "lm_eval" and evalset.num_fewshot is not None:
            for task in loaded["tasks"].values():
                task.set_config(key="num_fewshot", value=evalset.num_fewshot)
        group = loaded["groups"].get(name)
        objects.extend([group] if group is not None else loaded["tasks"].values())
        leaves[evalset.name] = list(loaded["tasks"])
    return manager, objects, leaves


def evaluate_model(model_dir: Path, out_dir: Path, evalsets: list[EvalSet], stage: str, *, batch_size: int,
                   max_length: int, dtype: str, limit: int | None,
                   threads: int) -> tuple[dict, dict[str, ScoredSet]]:
    """Run lm-eval's `hf` model on every set in one simple_evaluate call; write lm-eval's files and the item
    files. Returns lm-eval's result dict (without the samples) and each set's outcome."""
    check_model_dir(model_dir)
    problems = length_problems(evalsets, max_length, "the eval step's config")
    problems += [p for p in (include_path_problem(s, set_file(s.name)) for s in evalsets if s.kind == "lm_eval") if p]
    if problems:
        raise StageError("eval: " + "\n".join(problems))
    for name in (LM_EVAL_DIR, TASKS_DIR, CACHE_DIR, ITEMS_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    cache = out_dir / CACHE_DIR
    _offline_env()

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tasks_dir = out_dir / TASKS_DIR
    own = [s for s in evalsets if s.kind != "lm_eval"]
    try:
        items = _write_own_tasks(own, model_dir, stage, tasks_dir, cache / "datasets")
        manager, objects, leaves = _load_tasks(evalsets, tasks_dir)
        # a .json output path makes lm-eval write results_<time>.json and samples_<task>_<time>.jsonl
        # straight into lm_eval/ instead of a folder named after the sanitised model path
        tracker = EvaluationTracker(output_path=str(out_dir / LM_EVAL_DIR / "results.json"))
        results = simple_evaluate(
            model="hf",
            model_args={"pretrained": str(model_dir), "dtype": resolve_dtype(dtype), "max_length": max_length},
            tasks=objects,
            batch_size=batch_size,
            device=device,
            limit=limit,
            log_samples=True,
            evaluation_tracker=tracker,
            task_manager=manager,
        )
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples)
        for task in results["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    scored = {}
    for evalset in evalsets:
        scored[evalset.name] = _score_set(evalset, stage, leaves[evalset.name], samples, results,
                                          items.get(evalset.name), limit)
        write_items(out_dir / ITEMS_DIR, evalset.name, scored[evalset.name].records)
    return results, scored


def _score_set(evalset: EvalSet, stage: str, leaves: list[str], samples: dict[str, list[dict]], results: dict,
               items: list[dict] | None, limit: int | None) -> ScoredSet:
    """A set's item lines and summary from lm-eval's logged samples of its leaf tasks."""
    ordered = [s for leaf in leaves for s in sorted(samples[leaf], key=lambda s: s["doc_id"])]
    if evalset.kind == "lm_eval":
        metric = main_metric(ordered[0]["metrics"]) if ordered else "none"
        higher = metric != "bits_per_byte" and results["higher_is_better"].get(leaves[0], {}).get(metric, True)
        ids = [s["doc_hash"][:16] for s in ordered]
        set_version = lm_eval_version([s["doc_hash"] for s in ordered])
        table = task_metrics(results["results"])
        metrics = table.get(evalset.task) or {f"{leaf}/{k}": v for leaf in leaves for k, v in table[leaf].items()}
    else:
        metric, higher = KIND_METRIC.get(evalset.kind, (evalset.metric, True))
        scored_items = items[:limit] if limit else items
        ids = [s["doc"]["id"] for s in ordered]
        if ids != [i["id"] for i in scored_items]:
            raise AssertionError(f"lm-eval scored other items of {evalset.name} than the first {len(ids)}")
        set_version = version_of(scored_items)
        metrics = task_metrics(results["results"])[evalset.name]
    records = [item_record(s, i, metric, evalset.kind == "generation") for s, i in zip(ordered, ids)]
    summary = {"kind": evalset.kind, "version": set_version, "items": len(records), "metric": metric,
               "higher_is_better": bool(higher), "score": aggregate(records), "metrics": metrics,
               "chat_template": uses_chat_template(evalset, stage)}
    return ScoredSet(summary, records, ids)


def task_metrics(lm_results: dict) -> dict[str, dict[str, float]]:
    """lm-eval's `results` as {task: {metric: value}}: the ",none" filter suffix dropped, numbers only."""
    table = {}
    for task, values in lm_results.items():
        table[task] = {key.split(",")[0]: value for key, value in values.items()
                       if "," in key and isinstance(value, (int, float)) and not isinstance(value, bool)}
    return table


def _versions() -> dict[str, str]:
    found = {}
    for package in ("llmrunner", "lm_eval", "transformers", "torch", "datasets"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def write_results(out_file: Path, model_dir: Path, stage: str, lm_eval_output: dict, scored: dict[str, ScoredSet],
                  config: dict) -> dict:
    """Write results.json: per-set summaries, lm-eval's results, versions, sample counts and the settings."""
    summary = {
        "model": str(model_dir.resolve()),
        "stage": stage,
        "sets": {name: s.summary for name, s in scored.items()},
        "lm_eval": lm_eval_output["results"],
        "versions": _versions() | {"tasks": lm_eval_output.get("versions", {})},
        "n_samples": lm_eval_output.get("n-samples", {}),
        "config": config,
        "lm_eval_files": sorted(str(p.relative_to(out_file.parent))
                                for p in (out_file.parent / LM_EVAL_DIR).glob("*") if p.is_file()),
    }
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    for name, s in summary["sets"].items():
        score = f"{s['score']:.4g}" if math.isfinite(s["score"]) else "n/a"
        log.info("%s (%s, version %s, %d items): %s %s %s", name, s["kind"], s["version"], s["items"], s["metric"],
                 score, "(higher is better)" if s["higher_is_better"] else "(lower is better)")
    return summary
