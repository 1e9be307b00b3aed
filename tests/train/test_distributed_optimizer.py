"""use_distributed_optimizer: two data-parallel processes (torchrun, gloo on CPU) with the optimizer state
sharded between them train the same curve as the plain optimizer, and a stopped run resumes to the same
weights and per-step metrics as an uninterrupted one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llmrunner.errors import ConfigError
from llmrunner.train.metrics import MEASURED
from llmrunner.train.settings import TrainSettings
from tests.train.conftest import CPT_SETTINGS, train
from tests.train.runs import (
    assert_same_scalars,
    final_state,
    jsonl_scalars,
    metrics,
    tensorboard_scalars,
    unmeasured,
)
from tests.train.runs import wait_for as wait_for_file

pytestmark = pytest.mark.slow  # real multi-process training runs: `make test-fast` leaves them out

# Two data-parallel processes, a dozen steps, one checkpoint at the end (and one at a stop).
DP2_SETTINGS = {**CPT_SETTINGS, "train_iters": 12, "nproc_per_node": 2, "threads": 1, "save_interval": 12,
                "eval_interval": 6}
SHARDED = {**DP2_SETTINGS, "use_distributed_optimizer": True}
# megatron-core's key prefix for the distributed optimizer's flat-buffer state (dp_reshardable layout)
SHARDED_STATE_PREFIX = "optimizer.distributed."


@pytest.fixture(scope="module")
def sharded_run(init_ckpt: Path, cpt_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    save = tmp_path_factory.mktemp("sharded") / "ckpt"
    result = train("cpt", init_ckpt, [cpt_data], save, SHARDED)
    assert "optimizer state sharded over 2 data-parallel rank(s)" in result.stderr
    return save


def test_sharded_optimizer_trains_the_plain_optimizers_curve(sharded_run: Path, init_ckpt: Path, cpt_data: Path,
                                                             tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    train("cpt", init_ckpt, [cpt_data], plain, DP2_SETTINGS)
    for tag in ("loss", "val_loss"):
        expected = [m[tag] for m in metrics(plain) if tag in m]
        assert [m[tag] for m in metrics(sharded_run) if tag in m] == pytest.approx(expected, abs=1e-4), tag
    # The setting took effect: the checkpoint holds the flat per-rank buffers, not per-parameter state.
    assert any(key.startswith(SHARDED_STATE_PREFIX) for key in final_state(sharded_run))
    assert not any(key.startswith(SHARDED_STATE_PREFIX) for key in final_state(plain))


def test_stopped_sharded_run_resumes_to_identical_weights(sharded_run: Path, init_ckpt: Path, cpt_data: Path,
                                                          tmp_path: Path) -> None:
    save = tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "llmrunner.train", "cpt", "--init", str(init_ckpt), "--data", str(cpt_data),
           "--save", str(save), "--done", str(save / "complete.json"), "--settings", json.dumps(SHARDED)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    wait_for_file(save / "logs" / "metrics.jsonl", proc, nonempty=True)  # the first step is logged
    proc.send_signal(signal.SIGUSR2)  # to torchrun (the command exec'd it), which forwards it to both ranks
    assert proc.wait(timeout=300) != 0, "a stopped run must exit non-zero to stay incomplete"
    stopped_at = int((save / "latest_checkpointed_iteration.txt").read_text())
    assert 1 <= stopped_at < 12 and not (save / "complete.json").exists()

    result = train("cpt", init_ckpt, [cpt_data], save, SHARDED)
    assert f"resuming {save} from iteration {stopped_at}" in result.stderr
    expected, got = final_state(sharded_run), final_state(save)
    assert set(expected) == set(got)
    weights = [key for key, value in expected.items() if torch.is_tensor(value) and "optimizer" not in key]
    assert weights and all(torch.equal(expected[key], got[key]) for key in weights)
    # The flat optimizer buffers also hold the alignment gaps between parameters, which megatron-core
    # saves uninitialised (torch.empty), so the restored state is checked through what it decides: every
    # step after the resume has the uninterrupted run's loss, gradient norm and validation loss (a wrong
    # moment or Adam step count changes them from the first resumed step on).
    assert unmeasured(metrics(save)) == unmeasured(metrics(sharded_run))
    assert_same_scalars(tensorboard_scalars(save), jsonl_scalars(sharded_run), skip=MEASURED)


def test_setting_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="key 'use_distributed_optimizer': 'yes' is not of type 'boolean'"):
        TrainSettings.from_dict({"use_distributed_optimizer": "yes"})
    assert "use_distributed_optimizer" in TrainSettings.from_dict({}).fingerprint()  # a change starts fresh
