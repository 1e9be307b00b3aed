"""End to end: the eval entry point on a tiny random Qwen3 with real lm-eval, offline, in a subprocess (as the
rule runs it): the demo's three sets at stage sft, and an lm_eval set from a user's task folder at stage base."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmrunner.eval.items import lm_eval_version
from llmrunner.evalsets import (
    EvalSet,
    aggregate,
    load_registry,
    plain_prompt,
    read_items,
    recorded_versions,
    version_of,
)

pytestmark = pytest.mark.slow  # real lm-eval runs: `make test-fast` leaves them out

REPO = Path(__file__).resolve().parents[2]
DEMO_SETS = ("heldout_text", "wordnet_mc", "wordnet_chat")


def run_eval(model: Path, out: Path, stage: str, settings: dict, evalsets: list[EvalSet], datapool: Path,
             *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "llmrunner.eval", "--model", str(model), "--stage", stage, "--out", str(out),
           "--settings", json.dumps(settings), "--evalsets", json.dumps([s.to_dict() for s in evalsets]),
           "--datapool", str(datapool), *extra]
    # the user's HF cache (where lm_eval sets read their data) is a temporary one here
    env = os.environ | {"HF_HOME": str(datapool.parent / "hf_home")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def logged_samples(out_dir: Path, task: str) -> list[dict]:
    [path] = (out_dir / "lm_eval").glob(f"samples_{task}_*.jsonl")
    return sorted(lines(path), key=lambda s: s["doc_id"])


def context_of(sample: dict) -> str:
    """The prompt lm-eval gave the model for a generate_until sample."""
    return sample["arguments"]["gen_args_0"]["arg_0"]


def test_demo_sets_at_sft(tiny_model: Path, tmp_path: Path) -> None:
    registry = load_registry(REPO / "config" / "evalsets")
    evalsets = [registry[n] for n in DEMO_SETS]
    out = tmp_path / "reports" / "eval" / "sft" / "results.json"
    settings = {"sets": list(DEMO_SETS), "batch_size": 4, "max_length": 256, "limit": 3, "threads": 1}
    proc = run_eval(tiny_model, out, "sft", settings, evalsets, tmp_path / "pool", "--threads", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["model"] == str(tiny_model.resolve()) and results["stage"] == "sft"
    assert results["config"] == settings | {"threads": 2, "stages": None, "dtype": "auto"}
    assert list(results["sets"]) == list(DEMO_SETS) and "tasks" not in results
    assert results["versions"]["lm_eval"] and results["n_samples"]["wordnet_mc"] == {"original": 500, "effective": 3}
    names = {Path(p).name for p in results["lm_eval_files"]}
    assert any(n.startswith("results_") for n in names) and any(n.startswith("samples_wordnet_chat_") for n in names)
    assert not (out.parent / ".cache").exists()

    expected = {"heldout_text": ("perplexity", "bits_per_byte", False), "wordnet_mc": ("multiple_choice", "acc", True),
                "wordnet_chat": ("generation", "chrf", True)}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        items = {s.name: read_items(s)[:3] for s in evalsets}
    for evalset in evalsets:
        summary = results["sets"][evalset.name]
        kind, metric, higher = expected[evalset.name]
        assert (summary["kind"], summary["metric"], summary["higher_is_better"]) == (kind, metric, higher)
        assert summary["chat_template"] == (evalset.name == "wordnet_chat")
        assert summary["version"] == version_of(items[evalset.name]) and summary["items"] == 3
        records = lines(out.parent / "items" / f"{evalset.name}.jsonl")
        assert [r["id"] for r in records] == [i["id"] for i in items[evalset.name]]
        assert summary["score"] == aggregate(records)
        assert summary["score"] == pytest.approx(summary["metrics"][metric], rel=1e-9)
        [record] = recorded_versions(str(tmp_path / "pool"), evalset.name)
        assert record == {"name": evalset.name, "kind": kind, "version": summary["version"], "items": 3,
                          "ids": [i["id"] for i in items[evalset.name]]}

    ppl = lines(out.parent / "items" / "heldout_text.jsonl")[0]
    assert ppl["score"] == ppl["metrics"]["bits_per_byte"] == pytest.approx(
        -ppl["metrics"]["loglikelihood"] / ppl["metrics"]["bytes"] / math.log(2))
    assert set(ppl["metrics"]) == {"bits_per_byte", "loglikelihood", "bytes", "words"}
    mc = lines(out.parent / "items" / "wordnet_mc.jsonl")[0]
    assert set(mc) == {"id", "score", "metrics"} and set(mc["metrics"]) == {"acc", "acc_norm"}

    # generation: the output kept, scored by chrF; the prompt is the chat template's, token for token
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    chat = lines(out.parent / "items" / "wordnet_chat.jsonl")
    for record, sample, item in zip(chat, logged_samples(out.parent, "wordnet_chat"), items["wordnet_chat"]):
        assert record["output"] == sample["filtered_resps"][0] and 0 <= record["score"] <= 1
        assert record["metrics"] == {"chrf": record["score"]}
        assert tokenizer(context_of(sample))["input_ids"] == tokenizer.apply_chat_template(
            item["messages"], add_generation_prompt=True, tokenize=True, return_dict=False)


USER_TASK = """\
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Word: {{{{word}}}}\\nMeaning:"
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
USER_GROUP = """\
group: my_words
task: [my_words_a, my_words_b]
aggregate_metric_list:
  - metric: acc
    weight_by_size: true
"""


def test_lm_eval_group_and_plain_prompts_at_base(tiny_model: Path, demo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "my_tasks"
    folder.mkdir()
    with (demo / "mc_eval.jsonl").open(encoding="utf-8") as f:
        words = [json.loads(next(f)) for _ in range(8)]
    for name, part in (("my_words_a", words[:4]), ("my_words_b", words[4:])):
        data = folder / f"{name}.jsonl"
        data.write_text("".join(json.dumps({k: w[k] for k in ("word", "choices", "label")}) + "\n" for w in part))
        (folder / f"{name}.yaml").write_text(USER_TASK.format(name=name, data=data))
    (folder / "my_words.yaml").write_text(USER_GROUP)
    mine = EvalSet.from_dict("mine", {"kind": "lm_eval", "task": "my_words", "include_path": str(folder),
                                      "num_fewshot": 1})
    chat = load_registry(REPO / "config" / "evalsets")["wordnet_chat"]
    out = tmp_path / "reports" / "eval" / "base" / "results.json"
    proc = run_eval(tiny_model, out, "base", {"limit": 2, "max_length": 256}, [mine, chat], tmp_path / "pool")
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads(out.read_text())
    summary = results["sets"]["mine"]
    # the limit applies per task of the group; items in task order, then item order
    samples = logged_samples(out.parent, "my_words_a") + logged_samples(out.parent, "my_words_b")
    assert [s["doc"]["word"] for s in samples] == [w["word"] for w in words[:2] + words[4:6]]
    assert all(s["arguments"]["gen_args_0"]["arg_0"].count("Word:") == 2 for s in samples)  # one shot
    records = lines(out.parent / "items" / "mine.jsonl")
    assert [r["id"] for r in records] == [s["doc_hash"][:16] for s in samples]
    assert summary["version"] == lm_eval_version([s["doc_hash"] for s in samples])
    assert (summary["kind"], summary["metric"], summary["higher_is_better"], summary["items"]) == (
        "lm_eval", "acc", True, 4)
    assert summary["score"] == aggregate(records) == pytest.approx(summary["metrics"]["acc"])
    assert not summary["chat_template"]
    assert recorded_versions(str(tmp_path / "pool"), "mine")[0]["ids"] == [r["id"] for r in records]

    # a base model gets the plain prompt of a set without base_chat_template
    assert results["sets"]["wordnet_chat"]["chat_template"] is False
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        items = read_items(chat)[:2]
    assert [context_of(s) for s in logged_samples(out.parent, "wordnet_chat")] == [
        plain_prompt(i["messages"]) for i in items]


def test_unknown_lm_eval_task_stops_the_run(tiny_model: Path, tmp_path: Path) -> None:
    typo = EvalSet.from_dict("hs", {"kind": "lm_eval", "task": "hellaswg"})
    proc = run_eval(tiny_model, tmp_path / "results.json", "base", {}, [typo], tmp_path / "pool")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "error: eval: config/evalsets/hs.yaml: task 'hellaswg'" in proc.stderr and "hellaswag" in proc.stderr


def test_missing_model_is_one_paragraph(tmp_path: Path) -> None:
    evalset = load_registry(REPO / "config" / "evalsets")["wordnet_mc"]
    proc = run_eval(tmp_path / "model" / "hf" / "cpt", tmp_path / "results.json", "cpt", {}, [evalset],
                    tmp_path / "pool")
    assert proc.returncode == 1
    assert "error: eval: model folder" in proc.stderr
    assert str(tmp_path / "model" / "hf" / "cpt") in proc.stderr
    assert "Traceback" not in proc.stderr
