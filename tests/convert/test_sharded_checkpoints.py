"""TP/PP-sharded checkpoints: hf2mg's (unsharded) output loads into a tensor- or pipeline-parallel training
run (torchrun, two processes, gloo), and mg2hf turns the sharded checkpoint that run saves into the same
HF weights as the single-process run's. megatron-core's dist_checkpointing reshards on load both ways.

The runs take one step at learning rate 0 (Megatron's warmup starts there), so the weights they save are
the weights they loaded: any resharding error shows as a changed tensor, and the step's loss shows that
the sharded model computes what the single-process one does.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.megatron.fixtures import build_hf_model, load_safetensors, run_stage, write_cpt_data

pytestmark = pytest.mark.slow  # real TP/PP training and conversions: `make test-fast` leaves them out

SETTINGS = {"train_iters": 1, "seq_length": 32, "micro_batch_size": 2, "global_batch_size": 2, "lr": 0.0,
            "min_lr": 0.0, "warmup_iters": 0, "save_interval": 1, "log_interval": 1, "eval_interval": 0,
            "eval_iters": 0, "split": "100,0,0", "seed": 7, "threads": 1}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A Qwen2 model (q/k/v biases to shard along with their weights; embeddings tied, so with pipeline
    parallelism both stages hold the matrix), its hf2mg checkpoint and CPT data."""
    root = tmp_path_factory.mktemp("sharded")
    hf = build_hf_model(root / "hf", "qwen2", tied=True)
    run_stage("convert", "hf2mg", "--hf", hf, "--out", root / "mg", settings={})
    return {"hf": hf, "mg": root / "mg", "data": write_cpt_data(root / "cpt", n_docs=16)}


def train_and_convert(source: dict[str, Path], layout: dict, root: Path) -> dict:
    """One step of CPT in `layout`, then mg2hf of its checkpoint; what a test needs from both."""
    save = root / "ckpt"
    nproc = layout.get("tensor_parallel", 1) * layout.get("pipeline_parallel", 1)
    result = run_stage("train", "cpt", "--init", source["mg"], "--data", source["data"], "--save", save,
                       "--done", save / "complete.json", settings={**SETTINGS, **layout, "nproc_per_node": nproc})
    run_stage("convert", "mg2hf", "--mg", save, "--hf-side", source["hf"], "--out", root / "hf", settings={})
    step = json.loads((save / "logs" / "metrics.jsonl").read_text().splitlines()[0])
    # torch_dist files are __<rank>_<file>.distcp: which ranks wrote a part of the checkpoint
    writers = sorted({int(p.name.split("_")[2]) for p in (save / "iter_0000001").glob("*.distcp")})
    return {"log": result.stderr, "step": step, "writers": writers,
            "weights": load_safetensors(root / "hf"), "parity": json.loads((root / "hf" / "parity.json").read_text())}


@pytest.fixture(scope="module")
def unsharded(source: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    return train_and_convert(source, {}, tmp_path_factory.mktemp("unsharded"))


def test_unsharded_run_saves_what_it_loaded(source: dict[str, Path], unsharded: dict) -> None:
    assert unsharded["step"]["lr"] == 0.0 and unsharded["writers"] == [0]
    original = load_safetensors(source["hf"])
    assert set(unsharded["weights"]) == set(original)
    assert all(torch.equal(unsharded["weights"][k], v) for k, v in original.items())


@pytest.mark.parametrize("layout", [{"tensor_parallel": 2}, {"pipeline_parallel": 2}], ids=["tp2", "pp2"])
def test_sharded_checkpoint_converts_to_the_same_hf_weights(layout: dict, source: dict[str, Path], unsharded: dict,
                                                            tmp_path: Path) -> None:
    sharded = train_and_convert(source, layout, tmp_path)
    tp, pp = layout.get("tensor_parallel", 1), layout.get("pipeline_parallel", 1)
    assert f"2 process(es): tensor {tp} x pipeline {pp} x data 1 parallel" in sharded["log"]
    assert sharded["writers"] == [0, 1]  # each rank wrote its part
    # Loaded right: the sharded model's loss on the same batch is the single process's.
    assert sharded["step"]["lr"] == 0.0
    assert sharded["step"]["loss"] == pytest.approx(unsharded["step"]["loss"], abs=1e-5)
    # Saved and resharded right: mg2hf (one process) gives back every tensor bit for bit.
    assert set(sharded["weights"]) == set(unsharded["weights"])
    for name, tensor in unsharded["weights"].items():
        assert torch.equal(sharded["weights"][name], tensor), name
    assert sharded["parity"]["ok"] is True
