"""train cpt / sft through the entry point: learning, files, resume after a crash, fresh start."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from pathlib import Path

import psutil
import pytest

from llmrunner.indexed import INDEX_HEADER
from llmrunner.megatron.model import ModelShape
from llmrunner.train.metrics import flops_per_token
from tests.megatron.fixtures import run_stage
from tests.train.conftest import CPT_SETTINGS, train
from tests.train.runs import (
    assert_same_run,
    assert_same_scalars,
    jsonl_scalars,
    metrics,
    start_training,
    tensorboard_scalars,
    wait_for,
)

pytestmark = pytest.mark.slow  # real training runs: `make test-fast` leaves them out

_runs: dict[str, Path] = {}


@pytest.fixture(scope="module")
def cpt_run(init_ckpt: Path, cpt_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted CPT run, shared by the tests below (it is the resume test's reference)."""
    save = tmp_path_factory.mktemp("cpt_run") / "ckpt"
    train("cpt", init_ckpt, [cpt_data], save, CPT_SETTINGS)
    return save


def test_cpt_loss_falls(cpt_run: Path) -> None:
    steps = [m for m in metrics(cpt_run) if "loss" in m]
    assert [m["iteration"] for m in steps] == list(range(1, 31))
    assert steps[-1]["loss"] < 0.5 * steps[0]["loss"], (steps[0]["loss"], steps[-1]["loss"])
    assert all(m["grad_norm"] > 0 and m["tokens_per_s"] > 0 for m in steps)
    assert steps[0]["lr"] == 0.0 and steps[2]["lr"] == pytest.approx(3e-3)  # Megatron's warmup from 0
    validation = [m for m in metrics(cpt_run) if "val_loss" in m]
    assert [m["iteration"] for m in validation] == [10, 20, 30]
    assert validation[-1]["val_loss"] < validation[0]["val_loss"]


def test_steps_record_model_flops(cpt_run: Path, init_ckpt: Path) -> None:
    """On a CPU: FLOPs per token of the run's shape and length, achieved TFLOP/s; no MFU, no GPU memory."""
    expected = flops_per_token(ModelShape.load(init_ckpt), CPT_SETTINGS["seq_length"])
    for m in (m for m in metrics(cpt_run) if "loss" in m):
        assert m["flops_per_token"] == expected
        assert m["tflops_per_device"] == pytest.approx(expected * m["tokens_per_s"] / 1e12)
        assert "mfu" not in m and "peak_gpu_memory_gib" not in m


def test_tensorboard_events_hold_the_metrics(cpt_run: Path) -> None:
    assert_same_scalars(tensorboard_scalars(cpt_run), jsonl_scalars(cpt_run))


def test_cpt_writes_the_checkpoint_contract(cpt_run: Path, init_ckpt: Path) -> None:
    done = json.loads((cpt_run / "complete.json").read_text())
    assert done["iteration"] == 30 and done["kind"] == "cpt" and done["checkpoint"].endswith("iter_0000030")
    assert done["loss"] == metrics(cpt_run)[-2]["loss"]  # last step line; the last line is validation
    assert (cpt_run / "latest_checkpointed_iteration.txt").read_text().strip() == "30"
    assert sorted(p.name for p in cpt_run.glob("iter_*")) == ["iter_0000025", "iter_0000030"]  # keep_last 2
    assert (cpt_run / "model.json").read_text() == (init_ckpt / "model.json").read_text()
    assert "settings" in json.loads((cpt_run / "run_config.json").read_text())["fingerprint"]


def test_a_second_trainer_stops_at_once_and_a_crashed_one_resumes_with_identical_weights(
        cpt_run: Path, init_ckpt: Path, cpt_data: Path, tmp_path: Path) -> None:
    save = tmp_path / "ckpt"
    proc = start_training(init_ckpt, cpt_data, save)
    wait_for(save / "latest_checkpointed_iteration.txt", proc)
    # What `snakemake --unlock` and a rerun do while the killed Snakemake's trainer runs on. The first one is
    # frozen meanwhile: it holds the folder, and cannot finish before the second one asks for it.
    os.killpg(proc.pid, signal.SIGSTOP)
    try:
        second = train("cpt", init_ckpt, [cpt_data], save, CPT_SETTINGS, check=False)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no checkpoint at exit, no lock released by hand
        proc.wait()
    assert second.returncode == 1
    assert (f"training is already running in {save}: pid {proc.pid} on host {socket.gethostname()} since "
            in second.stderr) and "llmrunner.train cpt --init" in second.stderr
    assert "wait for it or kill it, then rerun" in second.stderr and "fresh start" not in second.stderr
    stopped_at = int((save / "latest_checkpointed_iteration.txt").read_text())
    assert stopped_at < 30 and not (save / "complete.json").exists(), "the run ended before it could be killed"

    result = train("cpt", init_ckpt, [cpt_data], save, CPT_SETTINGS)  # same threads: they change the last bits
    assert f"resuming {save} from iteration {stopped_at}" in result.stderr
    assert_same_run(cpt_run, save)


def test_torchrun_workers_hold_the_folder_even_after_their_launcher_is_killed(init_ckpt: Path, cpt_data: Path,
                                                                              tmp_path: Path) -> None:
    # nproc_per_node 2: the command execs torchrun (same process id), which starts each rank in a session of its
    # own; a run far longer than the test, which ends it
    save = tmp_path / "ckpt"
    settings = {**CPT_SETTINGS, "nproc_per_node": 2, "threads": 1, "train_iters": 100_000, "save_interval": 100_000,
                "eval_interval": 0}
    proc = start_training(init_ckpt, cpt_data, save, settings)
    workers: list[psutil.Process] = []
    try:
        wait_for(save / "logs" / "metrics.jsonl", proc, nonempty=True)  # the ranks train
        workers = psutil.Process(proc.pid).children(recursive=True)
        second = train("cpt", init_ckpt, [cpt_data], save, CPT_SETTINGS, check=False)
        assert second.returncode == 1 and f"training is already running in {save}: pid {proc.pid} " in second.stderr
        os.kill(proc.pid, signal.SIGKILL)  # torchrun alone: its workers train on
        proc.wait()
        assert any(w.is_running() for w in workers)
        third = train("cpt", init_ckpt, [cpt_data], save, CPT_SETTINGS, check=False)
        assert third.returncode == 1
        assert f"pid {proc.pid} has ended, but training processes it started hold the lock still" in third.stderr
    finally:
        proc.kill()
        for worker in workers:
            if worker.is_running():
                worker.kill()


def rewrite_same_bytes(src: Path, dst: Path) -> None:
    """What a forced rerun of tokenize does: the same bytes in new files (new modification times)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copyfile(f, dst / f.name)


def test_inputs_rewritten_with_the_same_bytes_resume_and_a_changed_index_starts_fresh(
        cpt_run: Path, init_ckpt: Path, cpt_data: Path, tmp_path: Path) -> None:
    save = tmp_path / "ckpt"
    shutil.copytree(cpt_run, save)
    # A forced hf2mg of the same model (its checkpoint index gets a new save id and path) and the data
    # re-tokenized to the same bytes, both in another folder, as in a moved datapool.
    init = tmp_path / "mg"
    run_stage("convert", "hf2mg", "--hf", init_ckpt.parent / "hf", "--out", init, settings={})
    data_dir = tmp_path / cpt_data.parent.name
    rewrite_same_bytes(cpt_data.parent, data_dir)
    data = data_dir / cpt_data.name
    result = train("cpt", init, [data], save, CPT_SETTINGS)
    assert f"resuming {save} from iteration 30" in result.stderr and "hashed" in result.stderr
    again = train("cpt", init, [data], save, CPT_SETTINGS)
    assert f"resuming {save} from iteration 30" in again.stderr
    assert "hashed" not in again.stderr, "a resume on unchanged files must not read them again"

    # The first document one token shorter: the low byte of the first document length, after the header.
    index = data_dir / f"{cpt_data.name}_text_document.idx"
    raw = bytearray(index.read_bytes())
    raw[len(INDEX_HEADER) + 25] -= 1
    index.write_bytes(bytes(raw))
    changed = train("cpt", init, [data], save, CPT_SETTINGS)
    fresh = next(line for line in changed.stderr.splitlines() if "fresh start" in line)
    assert fresh.endswith(f"fresh start in {save}: data.{data_dir.name}/{index.name}: content changed"), fresh
    assert json.loads((save / "complete.json").read_text())["iteration"] == 30


def test_wall_time_signal_saves_and_exits_for_a_rerun(cpt_run: Path, init_ckpt: Path, cpt_data: Path,
                                                      tmp_path: Path) -> None:
    save = tmp_path / "ckpt"
    proc = start_training(init_ckpt, cpt_data, save)
    wait_for(save / "logs" / "metrics.jsonl", proc, nonempty=True)  # the first step is logged
    proc.send_signal(signal.SIGUSR2)  # what SLURM's --signal=B:SIGUSR2@<s> sends ahead of the limit
    assert proc.wait(timeout=300) == 128 + signal.SIGUSR2, "the run must exit non-zero to stay incomplete"
    stopped_at = int((save / "latest_checkpointed_iteration.txt").read_text())
    assert 1 <= stopped_at < 30 and not (save / "complete.json").exists()
    assert (save / f"iter_{stopped_at:07d}").is_dir() and metrics(save)[-1]["iteration"] == stopped_at

    result = train("cpt", init_ckpt, [cpt_data], save, CPT_SETTINGS)
    assert f"resuming {save} from iteration {stopped_at}" in result.stderr
    assert_same_run(cpt_run, save)


def test_changed_settings_start_fresh_and_same_settings_resume(cpt_run: Path, init_ckpt: Path, cpt_data: Path,
                                                               tmp_path: Path) -> None:
    save = tmp_path / "ckpt"
    shutil.copytree(cpt_run, save)
    again = train("cpt", init_ckpt, [cpt_data], save, {**CPT_SETTINGS, "threads": 1})  # threads: not identity
    assert "from iteration 30" in again.stderr and len(metrics(save)) == len(metrics(cpt_run))

    changed = {**CPT_SETTINGS, "lr": 1e-3, "train_iters": 4, "eval_interval": 0}
    result = train("cpt", init_ckpt, [cpt_data], save, changed)
    assert "fresh start" in result.stderr and "settings.lr: 0.003 -> 0.001" in result.stderr
    assert [m["iteration"] for m in metrics(save)] == [1, 2, 3, 4]
    assert sorted(p.name for p in save.glob("iter_*")) == ["iter_0000004"]
    assert json.loads((save / "complete.json").read_text())["iteration"] == 4


def test_foreign_folder_and_missing_data_are_refused(init_ckpt: Path, cpt_data: Path, tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "notes.txt").write_text("mine")
    result = train("cpt", init_ckpt, [cpt_data], tmp_path / "ckpt", CPT_SETTINGS, check=False)
    assert result.returncode == 1 and "has no run_config.json" in result.stderr
    result = train("cpt", init_ckpt, [cpt_data.parent / "nope"], tmp_path / "other", CPT_SETTINGS, check=False)
    assert result.returncode == 1 and "nope_text_document.bin" in result.stderr
    assert (tmp_path / "ckpt" / "notes.txt").exists()


def test_sft_learns_only_the_targets(init_ckpt: Path, sft_data: Path, tmp_path: Path) -> None:
    # Prompts are random tokens (~5.5 nats each) and are never targets; the reply is fixed. A
    # loss that counted prompt tokens could not fall below ~3.5.
    settings = {**CPT_SETTINGS, "train_iters": 40, "lr_decay_style": "constant", "save_interval": 40,
                "eval_interval": 20}
    save = tmp_path / "sft"
    train("sft", init_ckpt, [sft_data], save, settings)
    steps = [m for m in metrics(save) if "loss" in m]
    assert steps[0]["loss"] > 4 and steps[-1]["loss"] < 0.5, (steps[0]["loss"], steps[-1]["loss"])
    assert [m["iteration"] for m in metrics(save) if "val_loss" in m] == [20, 40]
    assert json.loads((save / "complete.json").read_text())["kind"] == "sft"


@pytest.mark.parametrize("layout", [{"tensor_parallel": 2}, {}], ids=["tp2", "dp2"])
def test_two_process_run_matches_the_single_process_curve(layout: dict, cpt_run: Path, init_ckpt: Path,
                                                          cpt_data: Path, tmp_path: Path) -> None:
    # nproc_per_node 2: the plain entry point runs itself under torchrun (gloo); without tensor
    # parallelism both processes are data-parallel ranks, each taking half of the same global batch.
    # Saving and validation do not change the curve; fewer of them keep the test short.
    settings = {**CPT_SETTINGS, **layout, "nproc_per_node": 2, "threads": 1, "save_interval": 30,
                "eval_interval": 0}
    save = tmp_path / "ckpt"
    result = train("cpt", init_ckpt, [cpt_data], save, settings)
    data_parallel = 1 if layout else 2
    assert f"2 process(es): tensor {3 - data_parallel} x pipeline 1 x data {data_parallel} parallel" in result.stderr
    # the launching command readied the folder; rank 0 starts in it without clearing it a second time
    assert result.stderr.count("fresh start in") == 1 and "readied for these inputs and settings" in result.stderr
    single = [m["loss"] for m in metrics(cpt_run) if "loss" in m]
    split = [m["loss"] for m in metrics(save) if "loss" in m]
    assert split == pytest.approx(single, abs=1e-4)
