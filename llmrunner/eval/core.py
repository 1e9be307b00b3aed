"""Evaluate an HF model folder with lm-evaluation-harness on local task files, offline."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from llmrunner.errors import StageError
from llmrunner.eval.items import ITEMS_DIR, write_items
from llmrunner.eval.tasks import check_data_file, write_task_configs

log = logging.getLogger(__name__)

# Folders this stage owns inside the output folder; cleared before each run so no stale file survives.
LM_EVAL_DIR = "lm_eval"
TASKS_DIR = "tasks"
CACHE_DIR = ".cache"

_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


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


def _offline_env(cache: Path) -> None:
    # Must run before transformers/datasets/huggingface_hub are imported: they read these at import time.
    os.environ.update({
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(cache / "hf_home"), "HF_DATASETS_CACHE": str(cache / "datasets"),
        "TOKENIZERS_PARALLELISM": "false",
    })


def evaluate_model(model_dir: Path, out_dir: Path, task_files: dict[str, Path], *, batch_size: int,
                   max_length: int, limit: int | None, threads: int) -> dict:
    """Run lm-eval's `hf` model on the built-in tasks (`task_files`: task name -> JSONL path).

    lm-eval's own results and per-sample files go to `out_dir/lm_eval/`, one line per item with its score to
    `out_dir/items/<task>.jsonl` (items.py). Returns lm-eval's result dict without the samples.
    """
    check_model_dir(model_dir)
    for task, path in task_files.items():
        check_data_file(task, path)
    for name in (LM_EVAL_DIR, TASKS_DIR, CACHE_DIR, ITEMS_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    cache = out_dir / CACHE_DIR
    _offline_env(cache)
    write_task_configs(task_files, out_dir / TASKS_DIR, cache / "datasets")

    import torch
    from lm_eval import simple_evaluate
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # a .json output path makes lm-eval write results_<time>.json and samples_<task>_<time>.jsonl
    # straight into lm_eval/ instead of a folder named after the sanitised model path
    tracker = EvaluationTracker(output_path=str(out_dir / LM_EVAL_DIR / "results.json"))
    try:
        results = simple_evaluate(
            model="hf",
            model_args={"pretrained": str(model_dir), "dtype": "float32", "max_length": max_length},
            tasks=list(task_files),
            batch_size=batch_size,
            device=device,
            limit=limit,
            log_samples=True,
            evaluation_tracker=tracker,
            task_manager=TaskManager(include_path=str(out_dir / TASKS_DIR), include_defaults=False),
        )
        samples = results.pop("samples")
        tracker.save_results_aggregated(results=results, samples=samples)
        for task in results["configs"]:
            tracker.save_results_samples(task_name=task, samples=samples[task])
        write_items(out_dir, {task: samples[task] for task in results["configs"]})
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return results


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


def write_results(out_file: Path, model_dir: Path, lm_eval_output: dict, config: dict) -> dict:
    """Write results.json: per-task metrics, lm-eval's results, versions, sample counts and the settings."""
    summary = {
        "model": str(model_dir.resolve()),
        "stage": out_file.parent.name,
        "tasks": task_metrics(lm_eval_output["results"]),
        "lm_eval": lm_eval_output["results"],
        "versions": _versions() | {"tasks": lm_eval_output.get("versions", {})},
        "n_samples": lm_eval_output.get("n-samples", {}),
        "config": config,
        "lm_eval_files": sorted(str(p.relative_to(out_file.parent))
                                for p in (out_file.parent / LM_EVAL_DIR).glob("*") if p.is_file()),
    }
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    for task, metrics in summary["tasks"].items():
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if "stderr" not in k and math.isfinite(v))
        log.info("%s: %s", task, shown)
    return summary
