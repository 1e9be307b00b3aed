"""TrainSettings: defaults, cross-checks, the resume fingerprint."""
from __future__ import annotations

import pytest

from llmrunner.errors import ConfigError
from llmrunner.train.settings import TrainSettings


def test_defaults_are_valid() -> None:
    s = TrainSettings.from_dict({})
    assert s.global_batch_size % s.micro_batch_size == 0 and s.split_fractions() == [0.98, 0.02, 0.0]


def test_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['train_iter'\]"):
        TrainSettings.from_dict({"train_iter": 5})


def test_all_problems_in_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        TrainSettings.from_dict({"train_iters": 10, "warmup_iters": 10, "global_batch_size": 6,
                                 "micro_batch_size": 4, "lr_decay_style": "step", "split": "a,b",
                                 "blend": {"wiki": -1}})
    message = str(err.value)
    for part in ("not a multiple", "lr_decay_style", "`split`", "`blend`"):
        assert part in message


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
    assert "`nproc_per_node` must be a positive integer" in str(err.value) and "`tensor_parallel`" in str(err.value)
