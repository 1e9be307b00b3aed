"""CPT data: megatron's GPTDataset blend, data files and blend weights by dataset name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrunner.errors import ConfigError, StageError
from llmrunner.train import data
from tests.megatron.fixtures import write_indexed


@pytest.fixture
def two_datasets(tmp_path: Path) -> list[str]:
    """`a` holds only token 3, `b` only token 4 (each document ends in EOD 0)."""
    for name, token in (("a", 3), ("b", 4)):
        write_indexed(tmp_path / f"{name}_text_document", [np.array([token] * 30 + [0]) for _ in range(40)])
    return [str(tmp_path / "a"), str(tmp_path / "b")]


@pytest.fixture
def world_of_one():
    """megatron's BlendedDataset asks torch.distributed for the rank."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_blend_follows_the_weights(two_datasets: list[str], tmp_path: Path, world_of_one) -> None:
    weights = data.blend_weights(two_datasets, {"a": 3})  # b defaults to 1
    assert weights == [3.0, 1.0]
    train, valid = data.build_cpt_datasets(two_datasets, weights, seq_length=16, seed=1, split="90,10,0",
                                           train_samples=200, valid_samples=8, cache_dir=tmp_path / "cache",
                                           eod=0, pad=0, vocab_size=256)
    tokens = np.concatenate([train[i]["tokens"].numpy() for i in range(200)])
    share_a = (tokens == 3).sum() / ((tokens == 3).sum() + (tokens == 4).sum())
    assert 0.7 < share_a < 0.8 and len(valid) >= 8
    sample = train[0]
    assert sample["tokens"].shape == (16,) and sample["labels"].shape == (16,)
    assert "attention_mask" not in sample  # megatron's causal mask applies
    assert sample["loss_mask"].min() == 1  # EOD (= pad in Qwen3-Base) is still a training target


def test_micro_batches_slice_the_global_batch_by_rank() -> None:
    samples = [{"x": np.array([i])} for i in range(16)]
    rank1 = [b["x"].flatten().tolist() for b in data.micro_batches(samples, 8, 2, 2, dp_rank=1, dp_size=2)]
    assert rank1 == [[10, 11], [14, 15]]


def test_blend_names_must_match_the_data(two_datasets: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"`blend` names \['c'\]"):
        data.blend_weights(two_datasets, {"c": 1})
    with pytest.raises(ConfigError, match="weight 0"):
        data.blend_weights(two_datasets, {"a": 0, "b": 0})


def test_missing_files_are_listed(tmp_path: Path) -> None:
    with pytest.raises(StageError) as err:
        data.data_files([str(tmp_path / "chat")], "sft")
    assert "chat_loss_mask_document.idx" in str(err.value) and "run tokenize_sft first" in str(err.value)
