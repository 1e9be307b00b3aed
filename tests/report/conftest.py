"""A fake datapool: plausible stage outputs for a full experiment and one with CPT switched off."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


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


def eval_results(bpb: float, acc: float) -> dict:
    return {"model": "/dp/model", "stage": "x", "config": {"limit": None},
            "tasks": {"heldout_ppl": {"word_perplexity": 6.5e7, "byte_perplexity": 2 ** bpb, "bits_per_byte": bpb},
                      "wordnet_mc": {"acc": acc, "acc_stderr": 0.019, "acc_norm": acc + 0.01,
                                     "acc_norm_stderr": 0.02}},
            "n_samples": {"heldout_ppl": {"original": 45, "effective": 45},
                          "wordnet_mc": {"original": 500, "effective": 500}}}


def make_experiment(root: Path, cpt: bool) -> None:
    write_json(root / "data/processed/sft/chat.stats.json",
               {"input": 120, "kept": 110, "rejected": {"no_assistant": 6, "empty": 2}, "duplicates": {"exact": 2}})
    write_json(root / "data/tokenized/sft/chat.stats.json",
               {"conversations": 110, "tokens": 40000, "target_tokens": 10000, "truncated": 3, "dropped": 0})
    write_json(root / "model/mg/base/parity.json",
               {"max_abs_logit_diff": 3.1e-6, "tolerance": 1e-5, "ok": True, "dtype": "float32"})
    write_json(root / "reports/eval/base/results.json", eval_results(4.0, 0.24))
    write_metrics(root / "model/sft_checkpoints/logs/metrics.jsonl", 20, 5.0, 10)
    write_json(root / "model/hf/sft/parity.json",
               {"max_abs_logit_diff": 4.0e-6, "tolerance": 1e-5, "ok": True, "dtype": "float32"})
    write_json(root / "reports/eval/sft/results.json", eval_results(2.5, 0.31))
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
                   {"max_abs_logit_diff": 2.0e-6, "tolerance": 1e-5, "ok": True, "dtype": "float32"})
        write_json(root / "reports/eval/cpt/results.json", eval_results(3.0, 0.27))


@pytest.fixture
def datapool(tmp_path: Path) -> Path:
    make_experiment(tmp_path / "experiments" / "demo", cpt=True)
    make_experiment(tmp_path / "experiments" / "cpt_off", cpt=False)
    return tmp_path
