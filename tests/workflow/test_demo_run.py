"""The demo experiment run end to end through real Snakemake: every output a user looks at."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.demo import planned_jobs, snakemake
from tests.files import read_jsonl
from tests.paths import REPO

pytestmark = pytest.mark.workflow
CPT = ("python_docs", "jargon", "wordnet_text")  # the demo's CPT datasets, one per source
DATASETS = [("cpt", name) for name in CPT] + [("sft", "wordnet_chat")]
SETS = {"heldout_text": 40, "heldout_python_docs": 39, "wordnet_mc": 40, "wordnet_chat": 40}  # items scored:
# the short demo's eval limit (40), or fewer where the set is smaller


def test_udatasets_accounts_for_every_record(demo_run):
    for kind, dataset in DATASETS:
        stats = json.loads((demo_run / f"data/processed/{kind}/{dataset}.stats.json").read_text())
        records = read_jsonl(demo_run / f"data/processed/{kind}/{dataset}.jsonl")
        # the demo augments SFT: new records, marked, follow the kept ones and are not input records
        augmented = [r for r in records if "augmentation" in r]
        kept = len(records) - len(augmented)
        rejected = len(read_jsonl(demo_run / f"data/processed/{kind}/{dataset}.rejects.jsonl"))
        duplicates = len(read_jsonl(demo_run / f"data/processed/{kind}/{dataset}.duplicates.jsonl"))
        assert stats["kept"] == kept > 0 and stats["augmented"] == len(augmented)
        assert stats["input"] == kept + rejected + duplicates
        assert sum(stats["rejected"].values()) == rejected
        assert sum(stats["duplicates"].values()) == duplicates
    assert stats["augmented"] > 0  # SFT: both augmentations are on in the demo


def test_tokenized_files_are_megatron_indexed_datasets(demo_run):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    for name in CPT:
        cpt = IndexedDataset(str(demo_run / f"data/tokenized/cpt/{name}_text_document"))
        stats = json.loads((demo_run / f"data/tokenized/cpt/{name}.stats.json").read_text())
        assert len(cpt) == stats["documents"] > 0 and int(cpt.sequence_lengths.sum()) == stats["tokens"]
        assert cpt[0].dtype == np.uint16 and cpt[0][-1] == 0  # vocab 8k; <|endoftext|> appended
    ids = IndexedDataset(str(demo_run / "data/tokenized/sft/wordnet_chat_text_document"))
    mask = IndexedDataset(str(demo_run / "data/tokenized/sft/wordnet_chat_loss_mask_document"))
    assert len(ids) == len(mask) > 0 and mask[0].dtype == np.uint8
    assert np.array_equal(ids.sequence_lengths, mask.sequence_lengths)
    assert 0 < mask[0].sum() < len(mask[0])  # only assistant tokens are targets


def test_conversions_pass_parity(demo_run):
    for folder in ("model/mg/base", "model/hf/cpt", "model/hf/sft"):
        parity = json.loads((demo_run / folder / "parity.json").read_text())
        assert parity["ok"] and parity["max_abs_logit_diff"] <= 1e-5, folder
    assert (demo_run / "model/hf/sft/tokenizer.json").exists()  # HF side files copied


def test_training_loss_falls_and_checkpoints_follow_megatron_layout(demo_run):
    for kind, iters in (("cpt", 30), ("sft", 12)):
        ckpt = demo_run / f"model/{kind}_checkpoints"
        done = json.loads((ckpt / "complete.json").read_text())
        assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == str(iters)
        assert (ckpt / f"iter_{iters:07d}").is_dir() and (ckpt / "model.json").exists()
        losses = [m["loss"] for m in read_jsonl(ckpt / "logs/metrics.jsonl") if "loss" in m]
        assert len(losses) == iters and done["iteration"] == iters
        assert np.mean(losses[-3:]) < np.mean(losses[:3]), f"{kind} loss did not fall: {losses}"


def test_eval_results_for_every_stage(demo_run):
    from llmrunner.evalsets import aggregate

    scores, ids, versions = {}, {}, {}
    for stage in ("base", "cpt", "sft"):
        results = json.loads((demo_run / f"reports/eval/{stage}/results.json").read_text())
        assert set(results["sets"]) == set(SETS)
        for name, scored in results["sets"].items():  # per-item scores of the same items, one version, every stage
            items = read_jsonl(demo_run / f"reports/eval/{stage}/items/{name}.jsonl")
            assert len(items) == scored["items"] == SETS[name]
            assert scored["score"] == pytest.approx(aggregate(items))
            assert ids.setdefault(name, [i["id"] for i in items]) == [i["id"] for i in items]
            assert versions.setdefault(name, scored["version"]) == scored["version"]
            scores[stage, name] = scored["score"]
        # SFT answers held-out chat through its chat template; base and CPT get the plain prompt
        assert results["sets"]["wordnet_chat"]["chat_template"] == (stage == "sft")
        chat = read_jsonl(demo_run / f"reports/eval/{stage}/items/wordnet_chat.jsonl")
        assert all(isinstance(i["output"], str) and 0.0 <= i["score"] <= 1.0 for i in chat)
        assert math.isfinite(scores[stage, "heldout_text"]) and 0.0 <= scores[stage, "wordnet_mc"] <= 1.0
    for name in ("heldout_text", "heldout_python_docs"):
        assert scores["cpt", name] < scores["base", name], scores  # CPT lowers held-out bits/byte
    # heldout_python_docs is the Python docs part of heldout_text (its files, listed in `data`, read in order)
    assert set(ids["heldout_python_docs"]) <= set(ids["heldout_text"])
    # SFT moves held-out chat up from the CPT model it starts from (the random base model's output scores a
    # little chrF by chance; the short demo's 12 SFT steps do not beat that)
    assert scores["sft", "wordnet_chat"] > scores["cpt", "wordnet_chat"], scores


def table_rows(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first table after `heading` (header and separator rows left out)."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_reports_show_the_numbers_of_every_stage(demo_run):
    """The numbers a user reads in report.md and compare.md are those in the stages' stats and results."""
    from llmrunner.report.core import fmt

    report = (demo_run / "reports/report.md").read_text()
    data = {(r[0], r[1]): r for r in table_rows(report, "## Data cleaning")}
    for kind, dataset in DATASETS:
        stats = json.loads((demo_run / f"data/processed/{kind}/{dataset}.stats.json").read_text())
        row = data[(kind, dataset)]
        assert row[2:5] == [fmt(stats["input"]), fmt(stats["kept"]), fmt(sum(stats["rejected"].values()))], row
        assert row[8] == fmt(stats["augmented"])
    tokenized = table_rows(report, "## Tokenization")  # the CPT table, datasets by name
    assert [row[0] for row in tokenized] == sorted(CPT)
    for row in tokenized:
        tokens = json.loads((demo_run / f"data/tokenized/cpt/{row[0]}.stats.json").read_text())
        assert row[1:] == [fmt(tokens["documents"]), fmt(tokens["tokens"]), fmt(tokens["empty"])]
    training = {r[0]: r for r in table_rows(report, "## Training")}
    for stage in ("cpt", "sft"):
        losses = [m["loss"] for m in read_jsonl(demo_run / f"model/{stage}_checkpoints/logs/metrics.jsonl")
                  if "loss" in m]
        assert training[stage][3] == fmt(losses[-1])
    evals = {r[1]: r for r in table_rows(report, "### heldout_text")}  # version, model / Δ, items, score, ...
    compare = {(r[0], r[1]): r for r in table_rows((demo_run.parents[1] / "reports/compare.md").read_text(), "# ")}
    for stage in ("base", "cpt", "sft"):
        scored = json.loads((demo_run / f"reports/eval/{stage}/results.json").read_text())["sets"]["heldout_text"]
        assert evals[stage][0] == f"`{scored['version']}`" and evals[stage][3] == fmt(scored["score"]), evals[stage]
        assert fmt(scored["score"]) in compare[("demo", stage)]
    # the paired differences between stages, each with its interval
    assert evals["cpt − base"][4].startswith("[") and evals["sft − cpt"][4].startswith("["), evals
    assert (demo_run / "reports/loss.png").stat().st_size > 1000


def test_second_run_has_nothing_to_do(demo_run, demo_workdir):
    assert planned_jobs(snakemake(demo_workdir, "-n", "--config", "experiments=[demo]")) == {}


def test_config_change_reruns_only_that_step_and_dependents(demo_run, demo_workdir):
    path = demo_workdir / "config/experiments/demo/steps/7.train_sft.yaml"
    original = path.read_text()
    path.write_text(yaml.safe_dump({**yaml.safe_load(original), "lr": 5.0e-4}))
    try:
        proc = snakemake(demo_workdir, "-n", "--config", "experiments=[demo]")
    finally:
        path.write_text(original)
    assert planned_jobs(proc) == {"train_stage": 1, "mg2hf_stage": 1, "eval_stage": 1, "report_experiment": 1,
                                  "report_feedback": 1, "report_compare": 1, "all": 1}
    assert "Params have changed since last execution" in proc.stdout + proc.stderr


def test_prepare_exp_prepares_one_experiment(demo_workdir):
    """scripts/prepare_exp.py -c <pipeline.yaml>: base model and raw data in that experiment's datapool only."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts/prepare_exp.py"),
                           "-c", "config/experiments/cpt_off/pipeline.yaml"],
                          cwd=demo_workdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = demo_workdir / "datapool/experiments/cpt_off"
    assert (root / "model/base/tiny-qwen3/model.safetensors").exists()
    assert (root / "data/raw/sft/wordnet_chat/sft.jsonl.gz").exists()
    assert not (root / "data/processed").exists()  # prepare only


def test_run_script_drives_one_experiment(demo_run, demo_workdir):
    """scripts/run.py -c <pipeline.yaml> [snakemake args]: the seed's entry point, here a dry run."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts/run.py"), "-c", "config/experiments/demo/pipeline.yaml",
                           "-n"], cwd=demo_workdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "experiments=[demo]" in proc.stdout and "Nothing to be done" in proc.stdout + proc.stderr
