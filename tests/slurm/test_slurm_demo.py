"""The demo experiment (short step counts) through `snakemake --profile profiles/slurm` on the local
SLURM: first with the eval step's input broken (its jobs fail at run time: the failures are reported
with their logs, the run exits non-zero, everything else finishes), then fixed (the rerun does only
what was left). Checks which jobs asked for a GPU, that per-dataset steps are separate SLURM jobs
running side by side, and that the outputs equal a local run's.

The profile is used exactly as shipped: the local node advertises enough CPUs and memory for its
requests (nothing enforces them). Only status polling is tuned on the command line."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from llmrunner.config import load_run_config
from tests.demo import jobs_of, planned_jobs, short_demo
from tests.slurm.runs import PROFILE, SlurmRun, rule_of, run_id, snakemake_cmd

pytestmark = pytest.mark.slurm

GPU_RULES = {"hf2mg_base", "train_stage", "mg2hf_stage", "eval_stage"}
EVAL_STEP = "config/experiments/demo/steps/8.eval.yaml"
STAGES = ("base", "cpt", "sft")
# What is left after every eval job failed and everything else finished (keep-going).
AFTER_EVAL = {"eval_stage": 3, "report_experiment": 1, "report_feedback": 1, "report_compare": 1, "all": 1}
# The eval step's break: an lm_eval set whose task (a YAML of the user's) names a data file that is not there.
# The config loads (the task exists), so the jobs start, and each eval job fails when lm-eval loads the task.
BROKEN_SET = "config/evalsets/broken_mc.yaml"


def dry_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_cmd(workdir, "-n", *args), cwd=workdir, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def minutes(time_limit: str) -> int:
    """SLURM's [D-]HH:MM:SS as minutes."""
    days, _, hms = time_limit.rpartition("-")
    h, m, _ = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m


def megabytes(memory: str) -> float:
    """SLURM's 8000M / 62.50G as MB."""
    return float(memory[:-1]) * {"M": 1, "G": 1024, "T": 1024 ** 2}[memory[-1]]


def threads_by_slurm_job(out: str) -> dict[str, int]:
    """SLURM job id -> the threads Snakemake gave that job, from the run's job blocks (`jobid: N`, then
    `threads: T` only when above 1). Later mentions of a job id (error blocks, printed job logs whose
    own job is always `jobid: 0`) add no `threads:` line of their own."""
    threads, current = {}, None
    for line in out.splitlines():
        if match := re.match(r"\s+jobid: (\d+)$", line):
            current = match.group(1)
            threads.setdefault(current, 1)
        elif (match := re.match(r"\s+threads: (\d+)$", line)) and current:
            threads[current] = int(match.group(1))
        elif not line.startswith(" "):
            current = None
    return {slurm_id: threads[job] for job, slurm_id in
            re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out)}


@dataclass
class SlurmDemo:
    workdir: Path
    root: Path
    failed: subprocess.CompletedProcess
    failed_rule_logs: dict[str, str]
    plan_after_fix: dict[str, int]
    rerun: subprocess.CompletedProcess
    final_plan: subprocess.CompletedProcess
    jobs: list[dict]
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def slurm_demo(slurm_cluster, tmp_path_factory, request) -> SlurmDemo:
    workdir = tmp_path_factory.mktemp("slurm_demo")
    short_demo(workdir)
    eval_step = workdir / EVAL_STEP
    good = eval_step.read_text()
    # A set that exists (so the config loads and the DAG builds) but that the eval stage fails on when it runs.
    task = {"task": "broken_mc", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": "missing.jsonl"}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
            "doc_to_choice": "{{choices}}", "doc_to_target": "label", "metric_list": [{"metric": "acc"}]}
    (workdir / "broken_tasks").mkdir()
    (workdir / "broken_tasks/broken_mc.yaml").write_text(yaml.safe_dump(task))
    (workdir / BROKEN_SET).write_text(yaml.safe_dump({"kind": "lm_eval", "task": "broken_mc",
                                                      "include_path": "broken_tasks"}))
    eval_step.write_text(yaml.safe_dump({**yaml.safe_load(good), "sets": ["broken_mc"]}, sort_keys=False))

    first = SlurmRun(workdir, "broken")
    try:
        # The local reference run, while the SLURM jobs wait in the queue and for status checks.
        request.getfixturevalue("demo_run")
    except BaseException:
        first.stop()
        raise
    failed = first.wait(slurm_cluster)
    logs = {stage: workdir / f"datapool/experiments/demo/logs/eval.{stage}.log" for stage in STAGES}
    failed_rule_logs = {stage: log.read_text() if log.exists() else "" for stage, log in logs.items()}

    eval_step.write_text(good)
    plan = planned_jobs(dry_run(workdir))
    second = SlurmRun(workdir, "fixed")
    rerun = second.wait(slurm_cluster)
    assert rerun.returncode == 0, f"the rerun failed:\n{rerun.stdout[-8000:]}"
    ours = {run_id(failed), run_id(rerun)}
    jobs = [job for job in slurm_cluster.jobs() if job["JobName"] in ours]
    return SlurmDemo(workdir, workdir / "datapool/experiments/demo", failed, failed_rule_logs, plan, rerun,
                     dry_run(workdir),
                     jobs, {"broken run": first.seconds, "fixed run": second.seconds})


def test_failed_jobs_are_reported_with_their_logs_and_the_run_exits_non_zero(slurm_demo):
    out = slurm_demo.failed.stdout
    assert slurm_demo.failed.returncode != 0
    assert len(set(re.findall(r"SLURM-job '(\d+)' failed", out))) == 3, out[-6000:]
    assert BROKEN_SET in out  # show-failed-logs: the rule logs are printed too
    for stage in STAGES:
        # both logs are named: the rule's own log and the SLURM job's log (kept for failed jobs)
        match = re.search(rf"log: (\S+/logs/eval\.{stage}\.log), "
                          rf"(\S+/\.snakemake/slurm_logs/rule_eval_stage/demo_{stage}/\d+\.log)", out)
        assert match, out[-6000:]
        assert BROKEN_SET in slurm_demo.failed_rule_logs[stage]
        slurm_log = Path(match.group(2))
        assert slurm_log.is_file() and "Error in rule eval_stage" in slurm_log.read_text()
    not_completed = sorted((rule_of(j), j["JobState"]) for j in slurm_demo.jobs
                           if j["JobName"] == run_id(slurm_demo.failed) and j["JobState"] != "COMPLETED")
    assert not_completed == [(("eval_stage", f"demo_{stage}"), "FAILED") for stage in STAGES]


def test_after_the_fix_a_rerun_does_only_the_remaining_work(slurm_demo):
    assert slurm_demo.plan_after_fix == AFTER_EVAL
    assert planned_jobs(slurm_demo.rerun) == AFTER_EVAL
    submitted = sorted(rule_of(j) for j in slurm_demo.jobs if j["JobName"] == run_id(slurm_demo.rerun))
    # the report jobs run where Snakemake runs (localrules)
    assert submitted == sorted(("eval_stage", f"demo_{stage}") for stage in STAGES)
    assert "Nothing to be done" in slurm_demo.final_plan.stdout + slurm_demo.final_plan.stderr


def test_gpu_rules_ask_for_a_gpu_and_cpu_rules_do_not(slurm_demo):
    # What the rules declare (training: its step's `slurm` settings), with the profile's partitions, as Snakemake
    # plans every job
    plan = dry_run(slurm_demo.workdir, "-F")
    requested = {(rule, "_".join(job["wildcards"].values())): job["resources"]
                 for rule in planned_jobs(plan) for job in jobs_of(plan.stdout + plan.stderr, rule)}
    assert {rule for (rule, _), res in requested.items() if res.get("gres")} == GPU_RULES
    seen = set()
    for job in slurm_demo.jobs:
        rule, wildcards = rule_of(job)
        seen.add(rule)
        expected = requested[rule, wildcards]
        where = f"SLURM job {job['JobId']} ({rule} {wildcards})"
        assert job["Partition"] == expected["slurm_partition"], where
        assert minutes(job["TimeLimit"]) == int(expected["runtime"]), where
        assert megabytes(job["MinMemoryNode"]) == int(expected["mem_mb"]), where
        if rule in GPU_RULES:
            assert job["Partition"] == "gpu" and job.get("TresPerNode") == "gres:gpu:1", where
        else:
            assert job["Partition"] == "cpu" and "gpu" not in job.get("TresPerNode", ""), where
    assert GPU_RULES <= seen and {"udatasets_shard", "udatasets_gather", "tokenize_cpt_dataset"} <= seen
    # prepare and report jobs run where Snakemake runs (localrules), never as SLURM jobs
    assert not seen & {"prepare_base_model", "prepare_raw_data", "report_experiment", "report_compare",
                       "report_feedback"}


def test_each_job_gets_as_many_cpus_as_its_step_uses_threads(slurm_demo):
    threads = {**threads_by_slurm_job(slurm_demo.failed.stdout), **threads_by_slurm_job(slurm_demo.rerun.stdout)}
    assert threads.keys() == {job["JobId"] for job in slurm_demo.jobs}
    assert {job["JobId"]: int(job["NumCPUs"]) for job in slurm_demo.jobs} == threads
    assert {rule_of(job)[0] for job in slurm_demo.jobs if threads[job["JobId"]] > 1} >= {"train_stage"}


def test_per_dataset_steps_are_separate_slurm_jobs_that_run_side_by_side(slurm_demo):
    by_rule: dict[str, list[dict]] = {}
    for job in slurm_demo.jobs:
        if job["JobName"] == run_id(slurm_demo.failed):
            by_rule.setdefault(rule_of(job)[0], []).append(job)
    assert sorted(rule_of(j)[1] for j in by_rule["udatasets_gather"]) == [
        "demo_cpt_jargon", "demo_cpt_python_docs", "demo_cpt_wordnet_text", "demo_sft_wordnet_chat"]
    assert len(by_rule["udatasets_shard"]) == 4  # one shard per dataset
    overlapping = [rule for rule in ("udatasets_shard", "udatasets_gather")
                   if (a := by_rule[rule][0])["StartTime"] <= (b := by_rule[rule][1])["EndTime"]
                   and b["StartTime"] <= a["EndTime"]]
    assert overlapping, {r: [(j["StartTime"], j["EndTime"]) for j in by_rule[r]] for r in by_rule}


def test_outputs_equal_the_local_run(slurm_demo, demo_run):
    tokenized = sorted(p.relative_to(demo_run) for p in (demo_run / "data/tokenized").rglob("*")
                       if p.suffix in (".bin", ".idx"))
    assert len(tokenized) == 10  # three cpt datasets' text, sft text + loss mask, each .bin and .idx
    for rel in tokenized:
        assert (slurm_demo.root / rel).read_bytes() == (demo_run / rel).read_bytes(), rel

    import torch
    from safetensors.torch import load_file

    ours, local = (load_file(root / "model/hf/sft/model.safetensors") for root in (slurm_demo.root, demo_run))
    assert ours.keys() == local.keys()
    different = [name for name in local if not torch.equal(ours[name], local[name])]
    assert not different, f"final SFT weights differ from the local run's in {different}"
    print(f"SLURM runs: {', '.join(f'{k} {v:.0f} s' for k, v in slurm_demo.seconds.items())}")


def test_training_stops_before_the_time_limit_with_a_checkpoint_and_the_rerun_resumes(slurm_demo, slurm_cluster,
                                                                                       demo_run):
    """SFT training again, first in a job with a 1-minute limit: it stops by itself ahead of it (no signal
    from SLURM can reach it through the executor's job step), saves and fails; the rerun with the step's own
    time limit resumes and ends with the local run's weights. Runs last: it retrains the demo's SFT stage."""
    step = slurm_demo.workdir / "config/experiments/demo/steps/7.train_sft.yaml"
    # a 1-minute time limit, stopping 55 s before it: right after the first step (the job starts less than 5 s
    # before it)
    sft = yaml.safe_load(step.read_text())
    step.write_text(yaml.safe_dump({**sft, "stop_before_time_limit": 55, "slurm": {**sft.get("slurm", {}),
                                                                                    "runtime": 1}}))
    # both gone, so that `mg2hf` needs training (an existing model/hf/sft would satisfy it)
    for done in ("model/sft_checkpoints", "model/hf/sft"):
        shutil.rmtree(slurm_demo.root / done)
    train_log = slurm_demo.root / "logs/train_sft.log"

    limited_run = SlurmRun(slurm_demo.workdir, "time_limit", "mg2hf").wait(slurm_cluster)
    assert limited_run.returncode != 0, limited_run.stdout[-6000:]
    stopped = re.search(r"stopped at iteration (\d+)/12 with a checkpoint \(SIGUSR2\)", train_log.read_text())
    assert stopped, train_log.read_text()[-4000:]
    assert "time limit is near" in train_log.read_text()
    saved = int(stopped.group(1))
    assert (slurm_demo.root / f"model/sft_checkpoints/iter_{saved:07d}").is_dir()
    assert not (slurm_demo.root / "model/sft_checkpoints/complete.json").exists()
    (job,) = [j for j in slurm_cluster.jobs() if j["JobName"] == run_id(limited_run)
              and rule_of(j) == ("train_stage", "demo_sft")]
    partition = yaml.safe_load((PROFILE / "config.yaml").read_text())["set-resources"]["train_stage"]["slurm_partition"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(slurm_demo.workdir)
        request = load_run_config({"experiments": ["demo"]}).slurm_resources("demo", "train_sft")
    assert (job["JobState"], job["ExitCode"].split(":")[0]) == ("FAILED", "1")  # srun's code, not the job's 140
    assert (minutes(job["TimeLimit"]), job["Partition"], job["TresPerNode"], int(job["NumNodes"])) == (
        1, partition, f"gres:{request['gres']}", request["nodes"])
    assert megabytes(job["MinMemoryNode"]) == request["mem_mb"]

    step.write_text(yaml.safe_dump(sft))  # the experiment's own time limit again
    rerun = SlurmRun(slurm_demo.workdir, "resume", "mg2hf").wait(slurm_cluster)
    assert rerun.returncode == 0, rerun.stdout[-6000:]
    assert re.search(rf"resuming \S+/model/sft_checkpoints from iteration {saved} ", train_log.read_text())
    assert json.loads((slurm_demo.root / "model/sft_checkpoints/complete.json").read_text())["iteration"] == 12

    import torch
    from safetensors.torch import load_file

    ours, local = (load_file(root / "model/hf/sft/model.safetensors") for root in (slurm_demo.root, demo_run))
    assert ours.keys() == local.keys()
    different = [name for name in local if not torch.equal(ours[name], local[name])]
    assert not different, f"resumed SFT weights differ from the uninterrupted local run's in {different}"
