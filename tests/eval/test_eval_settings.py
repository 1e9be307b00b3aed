"""EvalSettings and the task files: every user mistake becomes one ConfigError/StageError naming the fix."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmrunner.errors import ConfigError, StageError
from llmrunner.eval.core import check_model_dir
from llmrunner.eval.settings import EvalSettings
from llmrunner.eval.tasks import check_data_file, write_task_configs


def test_defaults_and_full_dict() -> None:
    s = EvalSettings.from_dict({"tasks": ["heldout_ppl"], "heldout": "h.jsonl", "batch_size": 4, "limit": 10})
    assert (s.batch_size, s.max_length, s.limit, s.threads, s.mc) == (4, 512, 10, 2, "resources/demo/mc_eval.jsonl")


def test_problems_are_collected_into_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        EvalSettings.from_dict({"tasks": ["wordnet_mc", "mmlu"], "batch_size": 0, "limit": True})
    text = str(err.value)
    for part in ("key 'tasks.1': 'mmlu' is not one of ['heldout_ppl', 'wordnet_mc']", "key 'batch_size'",
                 "key 'limit'"):
        assert part in text


def test_unknown_key() -> None:
    with pytest.raises(ConfigError, match="unknown key.*'batchsize'"):
        EvalSettings.from_dict({"batchsize": 4})


def test_task_yaml_has_absolute_paths(tmp_path: Path, demo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(demo)
    write_task_configs({"wordnet_mc": Path("mc_eval.jsonl")}, tmp_path / "tasks", tmp_path / "cache")
    config = yaml.safe_load((tmp_path / "tasks" / "wordnet_mc.yaml").read_text())
    assert config["task"] == "wordnet_mc" and config["output_type"] == "multiple_choice"
    assert config["dataset_kwargs"]["data_files"]["test"] == str(demo / "mc_eval.jsonl")


def test_data_file_checks(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="does not exist.*`heldout`"):
        check_data_file("heldout_ppl", tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"content": "no text key"}\n')
    with pytest.raises(StageError, match=r"lacks field\(s\) \['text'\]"):
        check_data_file("heldout_ppl", bad)
    bad.write_text("")
    with pytest.raises(StageError, match="is empty"):
        check_data_file("heldout_ppl", bad)


def test_model_dir_without_weights_lists_contents(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(StageError, match=r"not an HF model folder.*\['config.json'\]"):
        check_model_dir(tmp_path)
