"""SFT packing: labels are the next tokens, the loss mask follows the target tokens, and packed
conversations neither see each other nor share positions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmrunner.train.sft_data import PackedConversations, build_sft_datasets
from tests.megatron.fixtures import write_sft_data

CONVERSATIONS = [([1, 5, 6, 2, 1, 7, 8, 2], [0, 0, 0, 0, 0, 1, 1, 1]),   # 7 input positions
                 ([1, 9, 2, 1, 3, 2], [0, 0, 0, 0, 1, 1]),               # 5
                 ([1, 4, 2], [0, 0, 0])]                                  # no targets: skipped


@pytest.fixture
def prefix(tmp_path: Path) -> str:
    return str(write_sft_data(tmp_path / "chat", CONVERSATIONS))


def test_one_row_holds_both_conversations(prefix: str) -> None:
    ds = PackedConversations(prefix, 0, 3, seq_length=16, seed=0, pad=0)
    assert len(ds) == 1 and sorted(ds.rows[0]) == [0, 1]
    sample = ds[0]
    tokens, labels, mask = sample["tokens"], sample["labels"], sample["loss_mask"]
    for conversation in ds.rows[0]:
        ids, target = CONVERSATIONS[conversation]
        start = 0 if conversation == ds.rows[0][0] else len(CONVERSATIONS[ds.rows[0][0]][0]) - 1
        n = len(ids) - 1
        assert tokens[start:start + n].tolist() == ids[:-1]
        assert labels[start:start + n].tolist() == ids[1:]
        assert mask[start:start + n].tolist() == target[1:]  # loss on predicting a target token
        assert sample["position_ids"][start:start + n].tolist() == list(range(n))
    assert mask[12:].sum() == 0  # padding is never a target
    assert mask.sum() == 3 + 2


def test_attention_stays_inside_each_conversation(prefix: str) -> None:
    ds = PackedConversations(prefix, 0, 3, seq_length=16, seed=0, pad=0)
    masked = ds[0]["attention_mask"][0]  # True = cannot attend
    first = len(CONVERSATIONS[ds.rows[0][0]][0]) - 1
    assert not masked[first - 1, 0] and masked[first, first - 1] and not masked[first + 1, first]
    assert torch.equal(masked[:first, :first], torch.ones(first, first, dtype=torch.bool).triu(1))


def test_long_conversations_are_cut_and_rows_split(prefix: str) -> None:
    ds = PackedConversations(prefix, 0, 3, seq_length=6, seed=0, pad=0)
    assert len(ds) == 2  # 7 > 6 positions: cut to 6; the 5-position one gets its own row
    assert all(len(ds[i]["tokens"]) == 6 for i in range(2))


def test_order_depends_only_on_the_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    conversations = [([1, *rng.integers(3, 50, 6).tolist()], [0, 0, 0, 1, 1, 1, 1]) for _ in range(40)]
    prefix = str(write_sft_data(tmp_path / "many", conversations))

    def tokens(seed: int) -> list[list[int]]:
        train, _ = build_sft_datasets([prefix], [1.0], seq_length=16, seed=seed, split_fractions=[0.9, 0.1, 0.0],
                                      train_samples=30, valid_samples=0, pad=0)
        return [train[i]["tokens"].tolist() for i in range(30)]

    assert tokens(3) == tokens(3) and tokens(3) != tokens(4)
