"""End to end: the eval entry point on a tiny random Qwen3, offline, in a subprocess (as the rule runs it)."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest


def run_eval(model: Path, out: Path, settings: dict, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "llmrunner.eval", "--model", str(model), "--out", str(out),
           "--settings", json.dumps(settings), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_eval_writes_results(tiny_model: Path, demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "eval" / "base" / "results.json"
    settings = {"tasks": ["heldout_ppl", "wordnet_mc"], "heldout": str(demo / "cpt_heldout.jsonl"),
                "mc": str(demo / "mc_eval.jsonl"), "batch_size": 8, "max_length": 256, "limit": 8, "threads": 1}
    proc = run_eval(tiny_model, out, settings, "--threads", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads(out.read_text())
    assert results["model"] == str(tiny_model.resolve())
    assert results["stage"] == "base"
    assert results["config"] == settings | {"threads": 2, "stages": None}  # defaults filled, --threads wins
    ppl, mc = results["tasks"]["heldout_ppl"], results["tasks"]["wordnet_mc"]
    assert math.isfinite(ppl["bits_per_byte"]) and ppl["bits_per_byte"] > 0
    assert ppl["word_perplexity"] > 1 and ppl["byte_perplexity"] > 1
    assert 0 <= mc["acc"] <= 1 and 0 <= mc["acc_norm"] <= 1
    assert results["n_samples"]["wordnet_mc"]["effective"] == 8
    assert results["n_samples"]["heldout_ppl"]["effective"] == 8
    assert "acc,none" in results["lm_eval"]["wordnet_mc"]
    assert results["versions"]["lm_eval"]

    # lm-eval's own files stay beside results.json; the private HF cache does not
    names = {Path(p).name for p in results["lm_eval_files"]}
    assert any(n.startswith("results_") for n in names)
    assert any(n.startswith("samples_wordnet_mc_") for n in names)
    assert all((out.parent / p).is_file() for p in results["lm_eval_files"])
    assert (out.parent / "tasks" / "heldout_ppl.yaml").is_file()
    assert not (out.parent / ".cache").exists()

    # one line per item, whose scores add up to the task's metrics
    items = {task: [json.loads(line) for line in (out.parent / "items" / f"{task}.jsonl").read_text().splitlines()]
             for task in ("heldout_ppl", "wordnet_mc")}
    assert [len(v) for v in items.values()] == [8, 8]
    assert all(len({i["id"] for i in v}) == 8 for v in items.values())
    mc_items = items["wordnet_mc"]
    assert sum(i["score"] for i in mc_items) / 8 == pytest.approx(mc["acc"])
    assert sum(i["metrics"]["acc_norm"] for i in mc_items) / 8 == pytest.approx(mc["acc_norm"])
    ppl_items = items["heldout_ppl"]
    weighted = -sum(i["metrics"]["loglikelihood"] for i in ppl_items) / sum(i["metrics"]["bytes"] for i in ppl_items)
    assert weighted / math.log(2) == pytest.approx(ppl["bits_per_byte"], rel=1e-9)
    first = ppl_items[0]
    assert first["score"] == first["metrics"]["bits_per_byte"] == pytest.approx(
        -first["metrics"]["loglikelihood"] / first["metrics"]["bytes"] / math.log(2))


def test_missing_model_is_one_paragraph(demo: Path, tmp_path: Path) -> None:
    settings = {"tasks": ["wordnet_mc"], "mc": str(demo / "mc_eval.jsonl")}
    proc = run_eval(tmp_path / "model" / "hf" / "cpt", tmp_path / "results.json", settings)
    assert proc.returncode == 1
    assert "error: eval: model folder" in proc.stderr
    assert str(tmp_path / "model" / "hf" / "cpt") in proc.stderr
    assert "Traceback" not in proc.stderr
