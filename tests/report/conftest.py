"""A fake datapool: plausible stage outputs for a full experiment and one with CPT switched off, with
results.json "sets", per-item files and the recorded eval set versions."""
from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import pytest

from llmrunner.evalsets import EvalSet, aggregate, write_version_record
from llmrunner.report.core import EVAL_STAGES


def write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def write_metrics(path: Path, iters: int, start_loss: float, val_every: int) -> None:
    lines = []
    for it in range(1, iters + 1):
        loss = start_loss * (0.6 + 0.4 / it)
        lines.append({"iteration": it, "loss": loss, "lr": 3e-4 * min(1, it / 5), "grad_norm": 1.5 / it,
                      "tokens_per_s": 5000.0 + it})
        if it % val_every == 0:
            lines.append({"iteration": it, "val_loss": loss + 0.1})
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + '{"iteration": 99, "lo', encoding="utf-8")  # a half-written last line


SETS = {"heldout_text": ("perplexity", "bits_per_byte", False, 12),
        "wordnet_mc": ("multiple_choice", "acc", True, 40),
        "wordnet_chat": ("generation", "chrf", True, 10)}
# per stage: the bits per byte the held-out documents score about, and the chance of a right answer
LEVELS = {"base": (4.0, 0.25), "cpt": (3.0, 0.3), "sft": (2.5, 0.35)}


def item_records(name: str, stage: str, count: int) -> list[dict]:
    """Plausible per-item lines of the eval step for `stage` on set `name` (the same items for every stage)."""
    kind = SETS[name][0]
    bpb, p_right = LEVELS[stage]
    rng = random.Random(f"{name}-{stage}")
    records = []
    for i in range(count):
        item_id = f"{name[:2]}{i:03d}"
        if kind == "perplexity":
            n_bytes = 200 + 37 * i
            ll = -bpb * rng.uniform(0.9, 1.1) * n_bytes * math.log(2)
            value = -ll / n_bytes / math.log(2)
            records.append({"id": item_id, "score": value, "metrics": {
                "bits_per_byte": value, "loglikelihood": ll, "bytes": n_bytes, "words": n_bytes // 5}})
        elif kind == "multiple_choice":
            acc = float(rng.random() < p_right)
            records.append({"id": item_id, "score": acc, "metrics": {"acc": acc, "acc_norm": acc}})
        else:
            chrf = min(1.0, rng.uniform(0.1, 0.3) + p_right / 2)
            records.append({"id": item_id, "score": chrf, "metrics": {"chrf": chrf}, "output": "a word"})
    return records


def write_items(root: Path, stage: str, name: str, records: list[dict]) -> None:
    path = root / "reports" / "eval" / stage / "items" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def set_summary(name: str, records: list[dict], version: str, chat_template: bool = False) -> dict:
    kind, metric, higher, _ = SETS[name]
    score = aggregate(records)
    metrics = {"bits_per_byte": score, "word_perplexity": 6.5e7} if kind == "perplexity" else \
        {metric: score, f"{metric}_stderr": 0.019}
    return {"kind": kind, "version": version, "items": len(records), "metric": metric, "higher_is_better": higher,
            "score": score, "metrics": metrics, "chat_template": chat_template}


def write_eval(datapool: Path, root: Path, stage: str, sizes: dict[str, int] | None = None) -> dict:
    """results.json and items files of `stage` on every set of SETS (`sizes` overrides a set's item count),
    and the version records under the datapool. Returns {set: records}."""
    sets, found = {}, {}
    for name, (kind, _, _, count) in SETS.items():
        records = item_records(name, stage, (sizes or {}).get(name, count))
        version = f"v{len(records)}"
        write_items(root, stage, name, records)
        evalset = EvalSet(name, kind, "", "x.jsonl", {}, None, "acc", 32, False, None, None)
        write_version_record(str(datapool), evalset, version, [r["id"] for r in records])
        sets[name] = set_summary(name, records, version, chat_template=stage == "sft" and kind == "generation")
        found[name] = records
    write_json(root / f"reports/eval/{stage}/results.json",
               {"model": "/dp/model", "stage": stage, "config": {"limit": None}, "sets": sets})
    return found


def make_experiment(root: Path, cpt: bool) -> None:
    datapool = root.parent.parent
    write_json(root / "data/processed/sft/chat.stats.json",
               {"input": 120, "kept": 110, "rejected": {"no_assistant": 6, "empty": 2}, "duplicates": {"exact": 2}})
    write_json(root / "data/tokenized/sft/chat.stats.json",
               {"conversations": 110, "tokens": 40000, "target_tokens": 10000, "truncated": 3, "dropped": 0})
    write_json(root / "model/mg/base/parity.json",
               {"max_abs_logit_diff": 3.1e-6, "tolerance": 1e-5, "ok": True, "dtype": "float32"})
    write_eval(datapool, root, "base")
    write_metrics(root / "model/sft_checkpoints/logs/metrics.jsonl", 20, 5.0, 10)
    write_json(root / "model/hf/sft/parity.json",
               {"max_abs_logit_diff": 4.0e-6, "tolerance": 1e-5, "ok": True, "dtype": "float32"})
    write_eval(datapool, root, "sft")
    if cpt:
        write_json(root / "data/processed/cpt/web.stats.json",
                   {"input": 1000, "kept": 950, "rejected": {"too_short": 30}, "duplicates": {"exact": 15, "near": 5},
                    "augmented": 0, "duplicates_by_dataset": {"web": {"exact": 15, "near": 5}},
                    "lengths": {"chars": {"records": 950, "mean": 180.5, "histogram": [
                        {"from": 64, "to": 127, "records": 200}, {"from": 128, "to": 255, "records": 600},
                        {"from": 256, "to": 511, "records": 150}]}}})
        write_json(root / "data/processed/cpt/books.stats.json",
                   {"input": 10, "kept": 7, "rejected": {}, "duplicates": {"exact": 2, "near": 1}, "augmented": 0,
                    "duplicates_by_dataset": {"web": {"exact": 2, "near": 1}},
                    "lengths": {"chars": {"records": 7, "mean": 300.0, "histogram": [
                        {"from": 256, "to": 511, "records": 7}]}}})
        write_json(root / "data/tokenized/cpt/web.stats.json", {"documents": 950, "tokens": 1234567, "empty": 0})
        write_metrics(root / "model/cpt_checkpoints/logs/metrics.jsonl", 40, 9.0, 20)
        write_json(root / "model/hf/cpt/parity.json",
                   {"max_abs_logit_diff": 2.0e-6, "tolerance": 1e-5, "ok": True, "dtype": "float32",
                    "bfloat16": {"max_abs_logit_diff": 0.03125, "tolerance": 0.05, "ok": True}})
        write_eval(datapool, root, "cpt")


@pytest.fixture
def datapool(tmp_path: Path) -> Path:
    make_experiment(tmp_path / "experiments" / "demo", cpt=True)
    make_experiment(tmp_path / "experiments" / "cpt_off", cpt=False)
    return tmp_path


def improved(records: list[dict], factor: float) -> list[dict]:
    """The records with every perplexity item's log-likelihood times `factor` (< 1: fewer bits per byte)."""
    out = copy.deepcopy(records)
    for r in out:
        if "loglikelihood" in r["metrics"]:
            m = r["metrics"]
            m["loglikelihood"] *= factor
            r["score"] = m["bits_per_byte"] = -m["loglikelihood"] / m["bytes"] / math.log(2)
    return out


def write_scored(datapool: Path, exp: str, factors: dict[str, float]) -> None:
    """Eval results of `exp` for every stage: the conftest items, perplexity improved by factors[stage]."""
    root = datapool / "experiments" / exp
    for stage in EVAL_STAGES:
        sets = {}
        for name, (_, _, _, count) in SETS.items():
            records = improved(item_records(name, stage, count), factors.get(stage, 1.0))
            write_items(root, stage, name, records)
            sets[name] = set_summary(name, records, f"v{count}")
        write_json(root / f"reports/eval/{stage}/results.json", {"model": "m", "stage": stage, "sets": sets})
