"""Reading what a training run wrote (metrics, TensorBoard events, the final checkpoint) and driving a run in the
background: shared by the training tests."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from llmrunner.train.metrics import MEASURED
from tests.train.conftest import CPT_SETTINGS


def metrics(save: Path) -> list[dict]:
    return [json.loads(line) for line in (save / "logs" / "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(save: Path) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} as TensorBoard shows them (events hidden by a restart's purge left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(save / "logs" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def jsonl_scalars(save: Path) -> dict[str, list[tuple[int, float]]]:
    scalars: dict[str, list[tuple[int, float]]] = {}
    for record in metrics(save):
        for tag, value in record.items():
            if tag != "iteration":
                scalars.setdefault(tag, []).append((record["iteration"], value))
    return scalars


def assert_same_scalars(tensorboard: dict, jsonl: dict, skip: tuple[str, ...] = ()) -> None:
    assert set(tensorboard) == set(jsonl) == {"loss", "lr", "grad_norm", "tokens_per_s", "flops_per_token",
                                              "tflops_per_device", "val_loss"}  # CPU: no MFU, no GPU memory
    for tag in set(jsonl) - set(skip):
        assert [step for step, _ in tensorboard[tag]] == [step for step, _ in jsonl[tag]], tag
        # event files hold float32
        assert [v for _, v in tensorboard[tag]] == pytest.approx([v for _, v in jsonl[tag]], rel=1e-6), tag


def start_training(init: Path, data: Path, save: Path, settings: dict = CPT_SETTINGS) -> subprocess.Popen:
    """A CPT run (CPT_SETTINGS unless given) in the background, in its own session (a kill of the group takes
    the checkpoint writer's helpers too, as a scheduler's does; not torchrun's workers, each in a session of
    its own)."""
    cmd = [sys.executable, "-m", "llmrunner.train", "cpt", "--init", str(init), "--data", str(data),
           "--save", str(save), "--done", str(save / "complete.json"), "--settings", json.dumps(settings)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})


def wait_for(path: Path, proc: subprocess.Popen, nonempty: bool = False) -> None:
    deadline = time.time() + 300
    while not (path.exists() and (not nonempty or path.stat().st_size)) and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.01)


def assert_same_run(reference: Path, save: Path) -> None:
    """Bit-identical final checkpoint, metrics and TensorBoard curves (speed and memory aside)."""
    expected, got = final_state(reference), final_state(save)
    assert set(expected) == set(got)
    for key, value in expected.items():
        if torch.is_tensor(value):
            assert torch.equal(value, got[key]), key
    assert unmeasured(metrics(save)) == unmeasured(metrics(reference))
    # the stopped run's events past its checkpoint are hidden: each step once, with the resumed values
    assert_same_scalars(tensorboard_scalars(save), jsonl_scalars(reference), skip=MEASURED)


def unmeasured(lines: list[dict]) -> list[dict]:
    """metrics.jsonl lines without the figures that depend on the machine's speed (metrics.MEASURED)."""
    return [{k: v for k, v in line.items() if k not in MEASURED} for line in lines]


def final_state(save: Path) -> dict:
    """Model, optimizer and RNG tensors of the latest checkpoint, read without megatron."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    folder = save / f"iter_{int((save / 'latest_checkpointed_iteration.txt').read_text()):07d}"
    out = save.parent / f"{save.name}.pt"
    dcp_to_torch_save(folder, out)
    return torch.load(out, weights_only=False)
