"""Cell formatting and the tolerant readers."""
from __future__ import annotations

from pathlib import Path

from llmrunner.report.core import fmt, md_table, read_json, read_training_log


def test_fmt() -> None:
    assert [fmt(None), fmt(True), fmt(1234567), fmt(0.123456), fmt(1234.56), fmt(6.5e7), fmt(float("nan"))] == \
        ["—", "yes", "1,234,567", "0.1235", "1,234.6", "6.500e+07", "nan"]
    assert fmt("a|b") == "a\\|b"


def test_md_table() -> None:
    assert md_table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |"


def test_readers_tolerate_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert read_json(bad) is None and read_json(tmp_path / "missing.json") is None
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"iteration": 1, "loss": 2.0, "lr": 0.1}\n[1]\n{"iteration": 2, "val_loss": 1.5}\n')
    curve = read_training_log(log)
    assert curve["loss"] == [(1, 2.0)] and curve["val_loss"] == [(2, 1.5)] and curve["tokens_per_s"] == []
    assert read_training_log(tmp_path / "none.jsonl") is None
