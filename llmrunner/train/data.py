"""Training data: which files a run reads, blend weights, the CPT datasets, and batching.

CPT uses megatron-core's GPTDataset through BlendedMegatronDatasetBuilder, exactly as Megatron-LM
pretraining does (documents concatenated and cut into seq_length+1 windows, shuffled under the
seed, index files cached). SFT packing lives in sft_data.py. Both give map-style datasets indexed
by a global sample number, so the data position of a run is simply the samples consumed so far.
"""
from __future__ import annotations

from pathlib import Path

import torch

from llmrunner.errors import ConfigError, StageError

TEXT_SUFFIX = "_text_document"
MASK_SUFFIX = "_loss_mask_document"


def dataset_name(prefix: str | Path) -> str:
    """The dataset name of a data prefix (`data/tokenized/cpt/wiki` -> `wiki`), the key of `blend`."""
    return Path(prefix).name


def data_files(prefixes: list[str], kind: str) -> list[Path]:
    """The .bin/.idx files a run reads; every missing file is named in one error."""
    suffixes = (TEXT_SUFFIX,) if kind == "cpt" else (TEXT_SUFFIX, MASK_SUFFIX)
    files = [Path(f"{prefix}{suffix}.{ext}") for prefix in prefixes for suffix in suffixes for ext in ("bin", "idx")]
    missing = [f for f in files if not f.is_file()]
    if missing:
        folder = missing[0].parent
        held = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "nothing (no such folder)"
        raise StageError(f"training data missing: {[str(f) for f in missing]}; {folder} holds {held}. "
                         f"--data takes prefixes without the {TEXT_SUFFIX} suffix; run tokenize_{kind} first.")
    return files


def blend_weights(prefixes: list[str], blend: dict[str, float]) -> list[float]:
    """Weight per prefix from the `blend` setting (dataset name -> weight, default 1)."""
    names = [dataset_name(p) for p in prefixes]
    if len(set(names)) != len(names):
        raise ConfigError(f"--data names two datasets the same ({names}); blend weights are keyed by name")
    unknown = sorted(set(blend) - set(names))
    if unknown:
        raise ConfigError(f"train settings: `blend` names {unknown}, but --data gives the datasets {names}")
    weights = [float(blend.get(name, 1.0)) for name in names]
    if not any(weights):
        raise ConfigError(f"train settings: `blend` gives every dataset weight 0 ({dict(zip(names, weights))})")
    return weights


class _TokenIds:
    """What GPTDataset reads from a tokenizer: end-of-document and padding ids, vocabulary size."""

    def __init__(self, eod: int, pad: int, vocab_size: int) -> None:
        self.eod, self.vocab_size = eod, vocab_size
        # With pad == eod (Qwen3-Base) megatron would refuse to mask pad labels and warn; its own
        # sentinel -1 then marks only the padding it adds itself, which is what we want.
        self.pad = pad if pad != eod else -1
        self.unique_identifiers = {"class": "llmrunner", "eod": eod, "pad": self.pad}


def build_cpt_datasets(prefixes: list[str], weights: list[float], *, seq_length: int, seed: int,
                       split: str, train_samples: int, valid_samples: int, cache_dir: Path,
                       eod: int, pad: int, vocab_size: int):
    """GPTDataset (or a blend of them) for training and validation; valid is None if not needed."""
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    config = GPTDatasetConfig(
        random_seed=seed, sequence_length=seq_length, split=split, path_to_cache=str(cache_dir),
        blend=([f"{p}{TEXT_SUFFIX}" for p in prefixes], weights if len(prefixes) > 1 else None),
        tokenizer=_TokenIds(eod, pad, vocab_size), reset_position_ids=False, reset_attention_mask=False,
        eod_mask_loss=False, create_attention_mask=False, mmap_bin_files=True)
    # Megatron builds every split that has documents (size 0 = one epoch); valid is used only
    # when evaluating.
    sizes = [train_samples, valid_samples, 0]
    train, valid, _ = BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()
    if train is None:
        raise StageError(f"no training data: the split {split!r} leaves no documents for training")
    return train, (valid if valid_samples else None)


def micro_batches(dataset, first_sample: int, micro_batch_size: int, num_micro_batches: int,
                  dp_rank: int, dp_size: int):
    """This rank's micro-batches of one step, starting at global sample `first_sample`.

    Like Megatron's pretraining sampler: micro-batch k of the step takes, on data-parallel rank
    r, samples first + (k * dp_size + r) * micro_batch_size ... + micro_batch_size.
    """
    for k in range(num_micro_batches):
        start = first_sample + (k * dp_size + dp_rank) * micro_batch_size
        samples = [dataset[(start + i) % len(dataset)] for i in range(micro_batch_size)]
        yield {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in samples[0]}
