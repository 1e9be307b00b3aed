"""SFT data: tokenized conversations packed into fixed-length training sequences at train time.

Each conversation i has ids x and a mask m (m[t] = 1: token t is a training target). Its inputs
are x[:-1], its labels x[1:] and its loss mask m[1:]: the loss at position t predicts x[t+1] and
counts when x[t+1] is a target. Conversations are shuffled under the seed and packed greedily in
that order into rows of seq_length positions; within a row each conversation restarts its
positions at 0 and attends only to itself, so packing does not change what the model sees.
Tokenize caps conversation length; a conversation longer than seq_length + 1 is cut here and counted.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from llmrunner.errors import StageError
from llmrunner.train.data import MASK_SUFFIX, TEXT_SUFFIX, dataset_name

log = logging.getLogger(__name__)


def _split_ranges(n: int, fractions: list[float]) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges of n items per split (as Megatron-LM's --split)."""
    bounds = np.round(np.cumsum([0.0] + fractions) * n).astype(int)
    bounds[-1] = n
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(fractions))]


class PackedConversations(torch.utils.data.Dataset):
    """One dataset's conversations in [start, end), packed into rows; one epoch long.

    Sample j of epoch e is row perm_e[j], with a fresh permutation per epoch under the seed.
    """

    def __init__(self, prefix: str, start: int, end: int, seq_length: int, seed: int, pad: int) -> None:
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        self.text = IndexedDataset(f"{prefix}{TEXT_SUFFIX}")
        self.mask = IndexedDataset(f"{prefix}{MASK_SUFFIX}")
        if not np.array_equal(self.text.sequence_lengths, self.mask.sequence_lengths):
            raise StageError(f"{prefix}{MASK_SUFFIX} is not aligned with {prefix}{TEXT_SUFFIX} (different "
                             "sequence lengths); rerun tokenize_sft")
        self.seq_length, self.seed, self.pad = seq_length, seed, pad
        order = np.random.default_rng(seed).permutation(np.arange(start, end))
        lengths = self.text.sequence_lengths
        self.rows: list[list[int]] = []
        row: list[int] = []
        used = 0
        skipped = truncated = 0
        for i in order:
            span = min(int(lengths[i]), seq_length + 1) - 1  # input positions this conversation fills
            if span < 1 or not self.mask[int(i)][1:span + 1].any():
                skipped += 1  # nothing to learn from
                continue
            truncated += int(lengths[i]) > seq_length + 1
            if used + span > seq_length:
                self.rows.append(row)
                row, used = [], 0
            row.append(int(i))
            used += span
        if row:
            self.rows.append(row)
        log.info("%s [%d:%d]: %d conversations packed into %d rows of %d tokens (%d without targets skipped, "
                 "%d truncated to seq_length + 1)", dataset_name(prefix), start, end, end - start - skipped,
                 len(self.rows), seq_length, skipped, truncated)
        self._epoch, self._perm = -1, None

    def __len__(self) -> int:
        return len(self.rows)

    def _row(self, index: int) -> list[int]:
        epoch, j = divmod(index, len(self.rows))
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
        return self.rows[self._perm[j]]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        S = self.seq_length
        tokens = np.full(S, self.pad, dtype=np.int64)
        labels = np.full(S, self.pad, dtype=np.int64)
        loss_mask = np.zeros(S, dtype=np.float32)
        positions = np.arange(S, dtype=np.int64)
        segment = np.full(S, -1, dtype=np.int64)  # padding: its own segment
        at = 0
        for seg, i in enumerate(self._row(index)):
            ids = self.text[i][:S + 1].astype(np.int64)
            mask = self.mask[i][:S + 1]
            n = len(ids) - 1
            tokens[at:at + n], labels[at:at + n] = ids[:-1], ids[1:]
            loss_mask[at:at + n] = mask[1:]
            positions[at:at + n] = np.arange(n)
            segment[at:at + n] = seg
            at += n
        seg_t = torch.from_numpy(segment)
        causal = torch.ones(S, S, dtype=torch.bool).tril()
        # True = masked (megatron's convention): other conversations and the future.
        attention_mask = ~(causal & (seg_t[:, None] == seg_t[None, :]))
        return {"tokens": torch.from_numpy(tokens), "labels": torch.from_numpy(labels),
                "loss_mask": torch.from_numpy(loss_mask), "position_ids": torch.from_numpy(positions),
                "attention_mask": attention_mask.unsqueeze(0)}


class _Blend(torch.utils.data.Dataset):
    """Datasets interleaved by weight with megatron's own blending-index helper (as BlendedDataset)."""

    def __init__(self, datasets: list[PackedConversations], weights: list[float], size: int) -> None:
        from megatron.core.datasets import helpers

        self.datasets = datasets
        self.dataset_index = np.zeros(size, dtype=np.int16)
        self.sample_index = np.zeros(size, dtype=np.int64)
        normalized = np.array(weights, dtype=np.float64) / sum(weights)
        helpers.build_blending_indices(self.dataset_index, self.sample_index, normalized, len(datasets), size, False)

    def __len__(self) -> int:
        return len(self.dataset_index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.datasets[self.dataset_index[index]][int(self.sample_index[index])]


def build_sft_datasets(prefixes: list[str], weights: list[float], *, seq_length: int, seed: int,
                       split_fractions: list[float], train_samples: int, valid_samples: int, pad: int):
    """Packed, blended training and validation datasets; valid is None when not needed or empty."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    train_parts, valid_parts = [], []
    for prefix in prefixes:
        n = len(IndexedDataset(f"{prefix}{TEXT_SUFFIX}"))
        (t0, t1), (v0, v1), _ = _split_ranges(n, split_fractions)
        train_parts.append(PackedConversations(prefix, t0, t1, seq_length, seed, pad))
        valid_parts.append(PackedConversations(prefix, v0, v1, seq_length, seed, pad) if valid_samples else None)
    empty = [dataset_name(p) for p, d in zip(prefixes, train_parts) if len(d) == 0]
    if empty:
        raise StageError(f"SFT datasets {empty} have no training conversations with targets "
                         "(check tokenize_sft's stats and the `split` setting)")
    train = _Blend(train_parts, weights, train_samples)
    kept = [(d, w) for d, w in zip(valid_parts, weights) if d is not None and len(d)]
    if not kept:
        if valid_samples:
            log.warning("no validation conversations after split; validation loss is skipped")
        return train, None
    return train, _Blend([d for d, _ in kept], [w for _, w in kept], valid_samples)
