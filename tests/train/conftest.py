"""A tiny Megatron init checkpoint (hf2mg of a random Qwen3) and tiny token data, once per session."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.megatron.fixtures import build_hf_model, run_stage, write_cpt_data, write_sft_data

# A small run that still shows learning: ~1 s of training per 30 steps on two CPU cores.
CPT_SETTINGS = {"train_iters": 30, "seq_length": 64, "micro_batch_size": 2, "global_batch_size": 4, "lr": 3e-3,
                "warmup_iters": 2, "save_interval": 5, "keep_last": 2, "log_interval": 10, "eval_interval": 10,
                "eval_iters": 1, "split": "90,10,0", "seed": 7}
ANSWER = [10, 11, 12, 13, 14, 15, 2]  # the one reply every SFT conversation ends with (2 = <|im_end|>)


@pytest.fixture(scope="session")
def init_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_init")
    hf = build_hf_model(root / "hf", tied=True)
    run_stage("convert", "hf2mg", "--hf", hf, "--out", root / "mg", settings={})
    return root / "mg"


@pytest.fixture(scope="session")
def cpt_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Repeated documents (one fixed token sequence): a model can learn them in a few steps."""
    return write_cpt_data(tmp_path_factory.mktemp("cpt") / "repeat", n_docs=60, repeat=list(range(3, 60)))


def sft_conversations(n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Random prompts (never targets) followed by the fixed ANSWER (the only targets)."""
    rng = np.random.default_rng(seed)
    conversations = []
    for _ in range(n):
        prompt = [1, *rng.integers(3, 256, size=rng.integers(5, 30)).tolist(), 2, 1]
        conversations.append((prompt + ANSWER, [0] * len(prompt) + [1] * len(ANSWER)))
    return conversations


@pytest.fixture(scope="session")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sft_data(tmp_path_factory.mktemp("sft") / "chat", sft_conversations(80))


def train(kind: str, init: Path, data: list[Path], save: Path, settings: dict, check: bool = True):
    return run_stage("train", kind, "--init", init, "--data", *data, "--save", save,
                     "--done", save / "complete.json", settings=settings, check=check)
