"""One lm-eval task per eval set, named after the set.

A perplexity, multiple_choice or generation set becomes a task config over a private copy of its items
(`<out>/tasks/<set>.jsonl`, read by lm-eval's `json` dataset builder), written at run time so it can hold
absolute paths and the prompts rendered for this model. An lm_eval set is lm-eval's own task (or group, or
tag), found by name in lm-eval's tasks and the set's `include_path`.

Generation prompts are rendered here, not by lm-eval, so that one simple_evaluate call holds sets with and
without the chat template: the SFT model always gets the tokenizer's chat template; base and CPT models get
it only for sets with `base_chat_template: true`, else `evalsets.plain_prompt`.
"""
from __future__ import annotations

import difflib
import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from llmrunner.errors import StageError
from llmrunner.evalsets import EvalSet, plain_prompt, set_file

log = logging.getLogger(__name__)

END_OF_TURN = "<|im_end|>"  # ChatML's end of an assistant turn (Qwen and the demo model)
MC_PROMPT = "Question: {{question}}\nAnswer:"
PERPLEXITY_METRICS = (("word_perplexity", "weighted_perplexity"), ("byte_perplexity", "weighted_perplexity"),
                      ("bits_per_byte", "bits_per_byte"))


class FunctionRef(str):
    """A `!function module.name` reference in a task YAML (lm-eval imports it when it loads the task)."""


class _TaskDumper(yaml.SafeDumper):
    pass


_TaskDumper.add_representer(FunctionRef, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


# ---------------------------------------------------------------- generation prompts
def uses_chat_template(evalset: EvalSet, stage: str) -> bool:
    """Whether a set's prompts go through the model's chat template at `stage` (only generation sets have
    chat prompts: SFT always, base and CPT when the set says `base_chat_template: true`)."""
    return evalset.kind == "generation" and (stage == "sft" or evalset.base_chat_template)


def check_chat_template(evalset: EvalSet, stage: str, tokenizer: Any, model_dir: Path) -> None:
    """A set that needs the chat template on a tokenizer without one is a StageError naming both fixes."""
    if uses_chat_template(evalset, stage) and not getattr(tokenizer, "chat_template", None):
        why = "the SFT model is always prompted through it" if stage == "sft" else "it sets base_chat_template"
        fix = ("add one to the base model's tokenizer (chat_template.jinja or tokenizer_config.json "
               "chat_template)" + ("" if stage == "sft" else f", or set base_chat_template: false in "
                                  f"{set_file(evalset.name)}"))
        raise StageError(f"eval: set '{evalset.name}' needs a chat template ({why}), but the tokenizer in "
                         f"{model_dir} has none; {fix}")


def render_prompt(messages: list[dict], tokenizer: Any, chat: bool) -> str:
    """A generation item's prompt text: through the chat template with the assistant turn opened, or plain."""
    if chat:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return plain_prompt(messages)


def stop_sequences(tokenizer: Any) -> list[str]:
    """Where generation stops: the end-of-turn token when the tokenizer has one, and end of text."""
    stops = []
    if END_OF_TURN in tokenizer.get_vocab():
        stops.append(END_OF_TURN)
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    return stops


# ---------------------------------------------------------------- our own tasks
def task_docs(evalset: EvalSet, items: list[dict], prompts: list[str] | None = None) -> list[dict]:
    """The lines of a set's private task file: each item's id and what its task reads (a generation
    item's rendered prompt in place of its messages)."""
    if evalset.kind == "generation":
        assert prompts is not None and len(prompts) == len(items)
        return [{"id": i["id"], "prompt": p, "reference": i["reference"]} for i, p in zip(items, prompts)]
    return [dict(item) for item in items]


def task_config(evalset: EvalSet, data_file: Path, cache_dir: Path, stop: list[str]) -> dict:
    """The lm-eval task config of a perplexity, multiple_choice or generation set over `data_file`."""
    config: dict[str, Any] = {
        "task": evalset.name,
        "dataset_path": "json",
        "dataset_name": None,
        # cache_dir keeps the datasets cache of our own files private (removed after the run) while lm_eval
        # sets still read the user's HF datasets cache
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}, "cache_dir": str(cache_dir)},
        "test_split": "test",
        "metadata": {"version": 1.0},
    }
    if evalset.kind == "perplexity":
        config |= {
            "output_type": "loglikelihood_rolling",
            "doc_to_text": "",
            "doc_to_target": "text",
            "should_decontaminate": False,
            "metric_list": [{"metric": m, "aggregation": agg, "higher_is_better": False}
                            for m, agg in PERPLEXITY_METRICS],
        }
    elif evalset.kind == "multiple_choice":
        config |= {
            "output_type": "multiple_choice",
            "doc_to_text": MC_PROMPT,
            "doc_to_choice": "choices",
            "doc_to_target": "label",
            # few-shot examples come from the set itself; lm-eval never shows the item being asked
            "fewshot_split": "test",
            "num_fewshot": evalset.num_fewshot or 0,
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                            for m in ("acc", "acc_norm")],
        }
    elif evalset.kind == "generation":
        config |= {
            "output_type": "generate_until",
            "doc_to_text": "prompt",
            "doc_to_target": "reference",
            "num_fewshot": 0,
            "generation_kwargs": {"until": stop, "do_sample": False, "max_gen_toks": evalset.max_new_tokens},
            "process_results": FunctionRef(f"llmrunner.eval.metrics.process_{evalset.metric}"),
            "metric_list": [{"metric": evalset.metric, "aggregation": "mean", "higher_is_better": True}],
        }
    else:
        raise AssertionError(f"kind {evalset.kind} is lm-eval's own task")
    return config


def write_set_task(evalset: EvalSet, docs: list[dict], folder: Path, cache_dir: Path, stop: list[str]) -> Path:
    """Write `<folder>/<set>.jsonl` (the docs) and `<folder>/<set>.yaml` (its task); returns the YAML."""
    folder.mkdir(parents=True, exist_ok=True)
    data_file = folder / f"{evalset.name}.jsonl"
    data_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    config = task_config(evalset, data_file, cache_dir, stop)
    path = folder / f"{evalset.name}.yaml"
    path.write_text(yaml.dump(config, Dumper=_TaskDumper, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


# ---------------------------------------------------------------- checks (also at config load)
def length_problems(evalsets: list[EvalSet], max_length: int, step_file: str) -> list[str]:
    """Generation sets whose answers cannot fit the context: lm-eval keeps max_new_tokens of max_length
    free for the answer, so max_new_tokens must be below it."""
    return [f"{set_file(s.name)}: max_new_tokens {s.max_new_tokens} leaves no room for the prompt in the eval "
            f"step's max_length {max_length} ({step_file}); lower max_new_tokens or raise max_length"
            for s in evalsets if s.kind == "generation" and s.max_new_tokens >= max_length]


# ---------------------------------------------------------------- lm-eval's tasks
def unknown_task_problem(evalset: EvalSet, source: str, known: list[str]) -> str | None:
    """An lm_eval set naming no task, group or tag of `known`: the message, with up to 3 close names."""
    if evalset.task in known:
        return None
    where = "lm-eval's tasks" + (f" or include_path {evalset.include_path}" if evalset.include_path else "")
    close = difflib.get_close_matches(evalset.task, known, n=3)
    listing = "lm-eval ls tasks" + (f" --include_path {evalset.include_path}" if evalset.include_path else "")
    hint = f"close names: {', '.join(close)}" if close else f"list them with `{listing}`"
    return f"{source}: task '{evalset.task}' is not a task, group or tag in {where}; {hint}"


def include_path_problem(evalset: EvalSet, source: str) -> str | None:
    if evalset.include_path and not Path(evalset.include_path).is_dir():
        return (f"{source}: include_path {evalset.include_path} is not a folder; point it at the folder of "
                f"your lm-eval task YAMLs (relative to the workflow folder) or remove it")
    return None


def lm_eval_task_problems(evalset: EvalSet, source: str) -> list[str]:
    """Check an lm_eval set's task name against its include_path, then lm-eval's own tasks (builtin_task_names)."""
    problem = include_path_problem(evalset, source)
    if problem:
        return [problem]
    from lm_eval.tasks import TaskManager

    own = TaskManager(include_path=evalset.include_path, include_defaults=False).all_tasks \
        if evalset.include_path else []
    if evalset.task in own:
        return []
    problem = unknown_task_problem(evalset, source, [*own, *builtin_task_names()])
    return [problem] if problem else []


@functools.lru_cache(maxsize=1)
def builtin_task_names() -> list[str]:
    """The task, group and tag names lm-eval ships. lm-eval finds them by parsing its whole task folder (~45 s on
    2 cores), and every Snakefile parse checks the config (SLURM jobs parse it again), so the names are kept in the
    user's cache folder, one file per lm-eval version."""
    from importlib.metadata import version

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmrunner" \
        / f"lm-eval-{version('lm_eval')}-tasks.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    from lm_eval.tasks import TaskManager

    log.info("indexing lm-eval's tasks (once per lm-eval version; kept in %s)", cache)
    names = sorted(TaskManager(include_defaults=True).all_tasks)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(names))
    tmp.replace(cache)  # atomic: jobs parsing at the same time never read half a file
    return names
