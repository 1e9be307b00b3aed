"""CPT training over the local SLURM's two nodes, through `snakemake --profile profiles/slurm` with the train step's
`slurm: {nodes: 2}` (one fake GPU per node, so one process per node): the rule's command finds the job's
nodes although its job step (the executor's `srun -n1`) has one, srun starts a torchrun per node, they meet at the
first node's NodeAddr (the second node's name does not resolve), and the two data-parallel ranks follow a local
two-process torchrun run of the same settings.

The demo experiment trimmed to what training needs (a 200-document CPT source, tokenize_cpt, hf2mg), built locally
first; only train_stage goes through SLURM."""
from __future__ import annotations

import itertools
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from llmrunner.config import load_experiment
from llmrunner.train.launch import expand_hostlist
from tests.demo import snakemake
from tests.megatron.fixtures import run_stage
from tests.paths import REPO, demo_cpt_lines, write_yaml
from tests.slurm.runs import SlurmRun, rule_of, run_id
from tests.train.runs import metrics

pytestmark = pytest.mark.slurm

# Small enough for seconds of training; global batch 4 = 2 ranks x micro-batch 2, so no gradient accumulation.
TRAIN = {"train_iters": 4, "seq_length": 64, "micro_batch_size": 2, "global_batch_size": 4, "lr": 3e-3,
         "warmup_iters": 1, "log_interval": 1, "save_interval": 4, "eval_interval": 0, "threads": 1,
         "slurm": {"nodes": 2}}


@dataclass
class TwoNodeRun:
    root: Path  # the experiment's DATAPOOL_ROOT
    job: dict  # train_stage's SLURM job, as `scontrol show job` shows it
    reference: Path  # the local two-process run's checkpoint folder


def trimmed_demo(workdir: Path) -> None:
    """The demo config with only the CPT path on, a small CPT source and TRAIN's training settings."""
    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "resources").symlink_to(REPO / "resources")
    exp = workdir / "config/experiments/demo"
    (workdir / "cpt_small.jsonl").write_text("".join(itertools.islice(demo_cpt_lines(), 200)))
    pipeline = yaml.safe_load((exp / "pipeline.yaml").read_text())
    pipeline["steps"] = {step: step in ("tokenize_cpt", "hf2mg", "train_cpt") for step in pipeline["steps"]}
    pipeline["data"] = {"cpt": {"small": {"sources": ["cpt_small.jsonl"], "adapter": "text"}}}
    write_yaml(exp / "pipeline.yaml", pipeline)
    step = exp / "steps/4.train_cpt.yaml"
    write_yaml(step, {**yaml.safe_load(step.read_text()), **TRAIN})


@pytest.fixture(scope="module")
def two_nodes(slurm_cluster, tmp_path_factory) -> TwoNodeRun:
    workdir = tmp_path_factory.mktemp("multinode") / "work"
    workdir.mkdir()
    trimmed_demo(workdir)
    snakemake(workdir, "tokenize_cpt", "hf2mg", "--cores", "2", "--config", "experiments=[demo]")
    root = workdir / "datapool/experiments/demo"

    slurm = SlurmRun(workdir, "two_nodes", "train_cpt")

    # Meanwhile the reference: the same settings in two local processes (the entry point runs torchrun).
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        settings = load_experiment("demo", "datapool").settings("train_cpt")
    reference = workdir.parent / "local_dp2"
    try:
        run_stage("train", "cpt", "--init", root / "model/mg/base", "--data", root / "data/tokenized/cpt/small",
                  "--save", reference, "--done", reference / "complete.json",
                  settings={**settings, "nproc_per_node": 2, "threads": 1})
    except BaseException:
        slurm.stop()
        raise
    run = slurm.wait(slurm_cluster)
    assert run.returncode == 0, run.stdout[-6000:]
    (job,) = [j for j in slurm_cluster.jobs()
              if j["JobName"] == run_id(run) and rule_of(j) == ("train_stage", "demo_cpt")]
    return TwoNodeRun(root, job, reference)


def test_the_training_job_got_both_nodes(two_nodes, slurm_cluster):
    job = two_nodes.job
    assert (job["JobState"], int(job["NumNodes"]), job["Partition"], job["TresPerNode"]) == (
        "COMPLETED", 2, "gpu", "gres:gpu:1")
    assert sorted(expand_hostlist(job["NodeList"])) == sorted(slurm_cluster.nodes)


def test_srun_started_a_torchrun_per_node_meeting_at_the_first_node_s_address(two_nodes):
    log = (two_nodes.root / "logs/train_cpt.log").read_text()
    launched = re.search(r"launching: srun --jobid=(\d+) --overlap --nodes=2 --ntasks=2 --ntasks-per-node=1 .*"
                         r"-m torch\.distributed\.run --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d "
                         r"--rdzv_endpoint (\S+):\d+ ", log)
    assert launched, log[-4000:]
    assert launched.group(1) == two_nodes.job["JobId"]
    assert launched.group(2) == "127.0.0.1"  # the NodeAddr of both local nodes; `node2` would not resolve
    assert "2 process(es): tensor 1 x pipeline 1 x data 2 parallel" in log, log[-4000:]


def test_the_run_completed(two_nodes):
    done = json.loads((two_nodes.root / "model/cpt_checkpoints/complete.json").read_text())
    assert (done["kind"], done["iteration"]) == ("cpt", TRAIN["train_iters"])
    assert (two_nodes.root / f"model/cpt_checkpoints/iter_{TRAIN['train_iters']:07d}").is_dir()


def test_the_two_nodes_follow_the_local_two_process_run(two_nodes):
    ours = [m for m in metrics(two_nodes.root / "model/cpt_checkpoints") if "loss" in m]
    local = [m for m in metrics(two_nodes.reference) if "loss" in m]
    assert [m["iteration"] for m in ours] == [m["iteration"] for m in local] == list(range(1, 5))
    for key in ("loss", "grad_norm"):  # grad_norm: the gradient after the all-reduce over both nodes
        assert [m[key] for m in ours] == pytest.approx([m[key] for m in local], abs=1e-6), key
