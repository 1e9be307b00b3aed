"""The Megatron-LM folder contract (tracker file, iter_NNNNNNN, complete vs unfinished saves)."""
from __future__ import annotations

from pathlib import Path

import pytest

from llmrunner.errors import StageError
from llmrunner.megatron import checkpoint


def fake_iteration(root: Path, iteration: int, complete: bool = True) -> None:
    folder = checkpoint.iteration_dir(root, iteration)
    folder.mkdir(parents=True)
    if complete:
        (folder / "metadata.json").write_text("{}")


def test_names_follow_megatron_lm(tmp_path: Path) -> None:
    assert checkpoint.iteration_dir(tmp_path, 100).name == "iter_0000100"
    assert checkpoint.TRACKER == "latest_checkpointed_iteration.txt"


def test_unfinished_saves_are_not_listed(tmp_path: Path) -> None:
    fake_iteration(tmp_path, 5)
    fake_iteration(tmp_path, 10, complete=False)
    (tmp_path / checkpoint.TRACKER).write_text("5\n")
    assert checkpoint.list_iterations(tmp_path) == [5]
    assert checkpoint.require_latest_iteration(tmp_path) == 5


def test_missing_checkpoint_lists_what_exists(tmp_path: Path) -> None:
    fake_iteration(tmp_path, 5)
    (tmp_path / checkpoint.TRACKER).write_text("10\n")
    with pytest.raises(StageError) as err:
        checkpoint.require_latest_iteration(tmp_path)
    message = str(err.value)
    assert "names 10" in message and "complete iterations [5]" in message and "iter_0000005" in message


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="no such folder"):
        checkpoint.require_latest_iteration(tmp_path / "nope")


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for it in (5, 10, 15, 20):
        fake_iteration(tmp_path, it)
    fake_iteration(tmp_path, 25, complete=False)  # a save that never finished
    checkpoint._prune(tmp_path, latest=20, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000015", "iter_0000020"]
