"""Each kind's lm-eval task config, loaded by lm-eval itself; generation prompts; lm_eval task names."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llmrunner.errors import StageError
from llmrunner.eval.tasks import (
    check_chat_template,
    lm_eval_task_problems,
    render_prompt,
    stop_sequences,
    task_docs,
    uses_chat_template,
    write_set_task,
)
from llmrunner.evalsets import EvalSet, plain_prompt, read_items

DEMO_SETS = {
    "heldout_text": {"kind": "perplexity", "data": [f"resources/demo/heldout/{source}.jsonl"
                                                    for source in ("python-docs", "jargon-text", "wordnet")]},
    "wordnet_mc": {"kind": "multiple_choice", "data": "resources/demo/mc_eval.jsonl", "num_fewshot": 2},
    "wordnet_chat": {"kind": "generation", "data": "resources/demo/chat_heldout.jsonl", "metric": "rouge_l",
                     "max_new_tokens": 16},
}


@pytest.fixture
def repo(demo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(demo.parents[1])  # set data paths are relative to the workflow folder
    return demo.parents[1]


@pytest.fixture(scope="module")
def tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def load_task(evalset: EvalSet, docs: list[dict], tmp_path: Path, stop: list[str]):
    """Write a set's task and load it with lm-eval's TaskManager, as a run does."""
    from lm_eval.tasks import TaskManager

    path = write_set_task(evalset, docs, tmp_path / "tasks", tmp_path / "cache", stop)
    task = TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False).load([evalset.name])
    return path, task["tasks"][evalset.name]


def test_perplexity_task(repo: Path, tmp_path: Path) -> None:
    evalset = EvalSet.from_dict("heldout_text", DEMO_SETS["heldout_text"])
    items = read_items(evalset)
    path, task = load_task(evalset, task_docs(evalset, items), tmp_path, [])
    config = yaml.safe_load(path.read_text())
    assert config["output_type"] == "loglikelihood_rolling"
    assert config["dataset_kwargs"]["data_files"]["test"] == str(tmp_path / "tasks" / "heldout_text.jsonl")
    assert [m["metric"] for m in config["metric_list"]] == ["word_perplexity", "byte_perplexity", "bits_per_byte"]
    doc = task.test_docs()[0]
    assert doc["id"] == items[0]["id"] and task.doc_to_target(doc) == items[0]["text"]


def test_multiple_choice_task_draws_fewshot_from_the_set_but_never_the_item(repo: Path, tmp_path: Path) -> None:
    evalset = EvalSet.from_dict("wordnet_mc", DEMO_SETS["wordnet_mc"])
    items = read_items(evalset)[:6]
    _, task = load_task(evalset, task_docs(evalset, items), tmp_path, [])
    assert task.config.num_fewshot == 2 and task.OUTPUT_TYPE == "multiple_choice"
    assert task.fewshot_docs() is not None
    task.set_fewshot_seed(1234)
    for doc in task.test_docs():
        assert task.doc_to_text(doc) == f"Question: {doc['question']}\nAnswer:"
        assert task.doc_to_choice(doc) == doc["choices"] and task.doc_to_target(doc) == doc["label"]
        context = task.fewshot_context(doc, num_fewshot=2)
        assert context.endswith(f"Question: {doc['question']}\nAnswer:")
        assert context.count("Question:") == 3 and context.count(doc["question"]) == 1


def test_generation_task(repo: Path, tmp_path: Path, tokenizer) -> None:
    evalset = EvalSet.from_dict("wordnet_chat", DEMO_SETS["wordnet_chat"])
    items = read_items(evalset)[:3]
    prompts = [render_prompt(i["messages"], tokenizer, chat=True) for i in items]
    stop = stop_sequences(tokenizer)
    assert stop == ["<|im_end|>", "<|endoftext|>"]
    path, task = load_task(evalset, task_docs(evalset, items, prompts), tmp_path, stop)
    assert "process_results: !function 'llmrunner.eval.metrics.process_rouge_l'" in path.read_text()
    assert task.config.generation_kwargs == {"until": stop, "do_sample": False, "max_gen_toks": 16}
    doc = task.test_docs()[0]
    assert task.doc_to_text(doc) == prompts[0] and task.doc_to_target(doc) == items[0]["reference"]
    assert task.process_results(doc, [items[0]["reference"]]) == {"rouge_l": 1.0}
    assert task.higher_is_better() == {"rouge_l": True}
    assert json.loads((tmp_path / "tasks" / "wordnet_chat.jsonl").read_text().splitlines()[0]) == {
        "id": items[0]["id"], "prompt": prompts[0], "reference": items[0]["reference"]}


def test_chat_template_rule(tokenizer, tiny_model: Path) -> None:
    plain = EvalSet.from_dict("c", {"kind": "generation", "data": "c.jsonl"})
    chatty = EvalSet.from_dict("c", {"kind": "generation", "data": "c.jsonl", "base_chat_template": True})
    mc = EvalSet.from_dict("m", {"kind": "multiple_choice", "data": "m.jsonl"})
    assert [uses_chat_template(plain, s) for s in ("base", "cpt", "sft")] == [False, False, True]
    assert [uses_chat_template(chatty, s) for s in ("base", "cpt", "sft")] == [True, True, True]
    assert not uses_chat_template(mc, "sft")

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Define leery."}]
    # sft: the prompt's token ids are exactly the chat template's, generation prompt opened
    prompt = render_prompt(messages, tokenizer, uses_chat_template(plain, "sft"))
    assert tokenizer(prompt)["input_ids"] == tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    assert render_prompt(messages, tokenizer, uses_chat_template(plain, "base")) == plain_prompt(messages)
    assert render_prompt(messages, tokenizer, uses_chat_template(chatty, "base")) == prompt

    tokenizer_without = type("Tok", (), {"chat_template": None})()
    check_chat_template(plain, "base", tokenizer_without, tiny_model)  # plain prompts need no template
    with pytest.raises(StageError, match="set 'c' needs a chat template.*base_chat_template: false"):
        check_chat_template(chatty, "cpt", tokenizer_without, tiny_model)
    with pytest.raises(StageError, match="SFT model is always prompted through it"):
        check_chat_template(plain, "sft", tokenizer_without, tiny_model)


def test_unknown_lm_eval_task_gives_close_names(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_words.yaml").write_text(
        "task: my_words_mc\ndataset_path: json\noutput_type: multiple_choice\n")
    ok = EvalSet.from_dict("w", {"kind": "lm_eval", "task": "my_words_mc", "include_path": str(tmp_path / "mine")})
    assert lm_eval_task_problems(ok, "config/evalsets/w.yaml") == []
    typo = EvalSet.from_dict("w", {"kind": "lm_eval", "task": "my_word_mc", "include_path": str(tmp_path / "mine")})
    [problem] = lm_eval_task_problems(typo, "config/evalsets/w.yaml")
    assert problem.startswith("config/evalsets/w.yaml: task 'my_word_mc' is not a task, group or tag")
    assert "close names: my_words_mc" in problem
    builtin = EvalSet.from_dict("h", {"kind": "lm_eval", "task": "hellaswg"})
    [problem] = lm_eval_task_problems(builtin, "config/evalsets/h.yaml")
    assert "config/evalsets/h.yaml" in problem and "hellaswag" in problem
    missing = EvalSet.from_dict("h", {"kind": "lm_eval", "task": "x", "include_path": str(tmp_path / "nope")})
    assert "is not a folder" in lm_eval_task_problems(missing, "config/evalsets/h.yaml")[0]


def test_lm_eval_task_names_are_read_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    """Indexing lm-eval's tasks takes tens of seconds and every Snakefile parse checks the config: the names are
    kept in the user's cache folder, per lm-eval version, and read from there."""
    from importlib.metadata import version

    from llmrunner.eval.tasks import builtin_task_names

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "llmrunner" / f"lm-eval-{version('lm_eval')}-tasks.json"
    cache.parent.mkdir(parents=True)
    cache.write_text('["arc_easy", "my_cached_task"]')
    builtin_task_names.cache_clear()
    try:
        cached = EvalSet.from_dict("c", {"kind": "lm_eval", "task": "my_cached_task"})
        assert lm_eval_task_problems(cached, "config/evalsets/c.yaml") == []
        [problem] = lm_eval_task_problems(EvalSet.from_dict("h", {"kind": "lm_eval", "task": "hellaswag"}),
                                          "config/evalsets/h.yaml")
        assert "task 'hellaswag' is not a task, group or tag in lm-eval's tasks" in problem
    finally:
        builtin_task_names.cache_clear()
