"""Optional W&B tracking (llmrunner.tracking): off without WANDB_MODE; with WANDB_MODE=offline, a trainer's
metric lines and an eval job's scores land in real W&B offline run files, read back here. Nothing is sent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrunner.eval.__main__ import eval_summary
from llmrunner.tracking import log_summary, start_run
from llmrunner.train.metrics import METRICS, MetricsLog, Throughput

pytest.importorskip("wandb")

BLOCK, HEADER = 32768, 7  # W&B's run file: a LevelDB-style log of 32 KiB blocks after a 7-byte file header


def wandb_records(run_file: Path) -> list:
    """The protobuf records of an offline run file (wandb 0.31 ships no Python reader of its own)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", f"{run_file} is not a W&B run file"
    records, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # the rest of a block too short for a chunk header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk, pos = data[pos + HEADER:pos + HEADER + length], pos + HEADER + length
        if kind == 0:  # zero padding at the end of a block
            continue
        pending = chunk if kind in (1, 2) else pending + chunk  # full, first / middle, last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def run_content(folder: Path) -> tuple[dict, list[dict], dict]:
    """(run record fields, history rows, summary) of the one offline run under `folder`."""
    [run_file] = folder.glob("wandb/offline-run-*/run-*.wandb")
    run, history, summary = {}, [], {}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = {"name": record.run.display_name, "group": record.run.run_group, "job_type": record.run.job_type}
        elif kind == "history":
            history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.history.item})
        elif kind == "summary":
            summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                            for item in record.summary.update})
    return run, history, summary


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)


def test_off_without_wandb_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert start_run("x", tmp_path, "train", tmp_path / "wandb") is None
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert start_run("x", tmp_path, "train", tmp_path / "wandb") is None
    assert not (tmp_path / "wandb").exists()


def test_training_metrics_go_to_an_offline_run(tmp_path, offline):
    save = tmp_path / "datapool/experiments/demo/model/cpt_checkpoints"
    metrics = MetricsLog(save, 0, train_iters=3, log_interval=1,
                         throughput=Throughput(flops_per_token=1e6, devices=1, peak_flops=None))
    for iteration in (1, 2, 3):
        metrics.step(iteration, loss=4.0 / iteration, lr=1e-3, grad_norm=0.5, tokens_per_s=100.0)
    metrics.validation(3, val_loss=1.5)
    metrics.close()

    run, history, _ = run_content(save / METRICS.parent)
    assert run == {"name": "demo/cpt_checkpoints", "group": "demo", "job_type": "train"}
    # W&B keeps one history row per step: the validation line joins its step's row
    expected: dict[int, dict] = {}
    for line in map(json.loads, (save / METRICS).read_text().splitlines()):
        expected.setdefault(line.pop("iteration"), {}).update(line)
    assert {row["_step"]: {k: v for k, v in row.items() if not k.startswith("_")} for row in history} == expected


def test_eval_scores_go_to_an_offline_run(tmp_path, offline):
    """The eval entry point's logging (the same two calls), on the `sets` of a results.json."""
    root = tmp_path / "datapool/experiments/demo"
    out = root / "reports/eval/sft"
    results = {"sets": {"wordnet_chat": {"score": 0.14, "version": "c5540a0eb8c4", "items": 100, "kind": "x"}}}
    log_summary("eval-sft", root, "eval", out, eval_summary(results))
    meta, _, summary = run_content(out)
    assert meta == {"name": "demo/eval-sft", "group": "demo", "job_type": "eval"}
    assert {k: v for k, v in summary.items() if not k.startswith("_")} == {
        "wordnet_chat/score": 0.14, "wordnet_chat/version": "c5540a0eb8c4", "wordnet_chat/items": 100}
