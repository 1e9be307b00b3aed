"""TrainSettings: defaults, cross-checks, the resume fingerprint."""
from __future__ import annotations

import pytest

from llmrunner.errors import ConfigError
from llmrunner.train.settings import TrainSettings


def test_defaults_are_valid() -> None:
    s = TrainSettings.from_dict({})
    assert s.global_batch_size % s.micro_batch_size == 0 and s.split_fractions() == [0.98, 0.02, 0.0]


def test_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'train_iter' \(did you mean 'train_iters'\?\)"):
        TrainSettings.from_dict({"train_iter": 5})


def test_all_problems_in_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        TrainSettings.from_dict({"train_iters": 10, "warmup_iters": 10, "global_batch_size": 6,
                                 "micro_batch_size": 4, "lr_decay_style": "step", "split": "a,b",
                                 "blend": {"wiki": -1}})
    message = str(err.value)
    for part in ("key 'lr_decay_style'", "key 'split'", "key 'blend.wiki'"):
        assert part in message
    # the rules across keys are checked once every key has a valid type and range
    with pytest.raises(ConfigError) as err:
        TrainSettings.from_dict({"train_iters": 10, "warmup_iters": 10, "global_batch_size": 6, "micro_batch_size": 4})
    assert "`warmup_iters` 10 must be below `train_iters` 10" in str(err.value)
    assert "`global_batch_size` 6 is not a multiple of micro_batch_size x data-parallel size = 4 x 1" in str(err.value)


def test_warmup_must_end_before_training() -> None:
    with pytest.raises(ConfigError, match="warmup_iters"):
        TrainSettings.from_dict({"train_iters": 10, "warmup_iters": 10})


def test_threads_do_not_change_the_fingerprint() -> None:
    a, b = TrainSettings.from_dict({"threads": 1}), TrainSettings.from_dict({"threads": 8})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != TrainSettings.from_dict({"lr": 5e-4}).fingerprint()


def test_process_counts_must_be_positive() -> None:
    with pytest.raises(ConfigError) as err:
        TrainSettings.from_dict({"nproc_per_node": 0, "tensor_parallel": 0})
    assert "key 'nproc_per_node': 0 is less than the minimum of 1" in str(err.value)
    assert "key 'tensor_parallel'" in str(err.value)


def test_process_layout_and_batch_must_fit() -> None:
    with pytest.raises(ConfigError, match=r"`nproc_per_node` 3 is not a multiple of tensor_parallel x "
                                          r"pipeline_parallel = 2"):
        TrainSettings.from_dict({"nproc_per_node": 3, "tensor_parallel": 2})
    # 4 processes, TP 2: data-parallel size 2, so a step needs a multiple of 2 x 2 sequences
    with pytest.raises(ConfigError, match=r"`global_batch_size` 6 is not a multiple of micro_batch_size x "
                                          r"data-parallel size = 2 x 2"):
        TrainSettings.from_dict({"nproc_per_node": 4, "tensor_parallel": 2, "micro_batch_size": 2,
                                 "global_batch_size": 6})
    TrainSettings.from_dict({"nproc_per_node": 4, "tensor_parallel": 2, "micro_batch_size": 2, "global_batch_size": 8})
