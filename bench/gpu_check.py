"""GPU check: the project's real stages on one GPU, with the figures a user sizes a cluster run by.

    bench/gpu_check.sh [--out DIR] [--steps 12] [--skip 4] [--micro-batch 1] [--global-batch 8]
    bench/gpu_check.sh --smoke           # the same sequence on the CPU with the demo model (~2 min)

In order, each a fresh process with its log in <out>/logs/<stage>.log (its tail is printed when it fails):
1. all_reduce: torch.distributed with NCCL (gloo in smoke mode), world size 1, one all_reduce on the device;
2. model: an HF folder of the Qwen3-1.7B-Base shape with random bf16 weights and a stand-in tokenizer of its
   vocabulary (`python -m llmrunner.prepare.real_shapes`); smoke: the demo model (builtin:tiny-qwen3);
3. tokenize: the demo CPT corpus with that tokenizer (`python -m llmrunner.tokenize cpt`);
4. hf2mg (`python -m llmrunner.convert hf2mg`);
5. train: bf16 CPT (`python -m llmrunner.train cpt`), seq_length 4096; tokens/s, TFLOP/s, MFU and peak GPU
   memory are the medians (memory: the largest) over the steps after --skip of its logs/metrics.jsonl;
6. mg2hf: the trained checkpoint back to an HF folder (`python -m llmrunner.convert mg2hf`);
7. eval: the demo's heldout_text set on that export (`python -m llmrunner.eval`, dtype auto: bf16 on the GPU).

The summary (a table here, summary.json in --out, rewritten after every stage so a run cut short still leaves
what it measured) goes to --out: default $OUT when set, else bench/results/gpu_check_<date>_<host>/. The
models and checkpoints (~40 GB for the 1.7B shape) go to a temporary folder (--work), removed at the end.
Goal (issue 14): MFU >= 40% for the Qwen3-1.7B shape on one H100-class GPU. See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, environment

from llmrunner.cli import run_main
from llmrunner.errors import ConfigError

GOAL_MFU = 0.40
GOAL = f"MFU >= {GOAL_MFU:.0%} for the Qwen3-1.7B shape on one H100-class GPU (bf16, seq_length 4096)"
SHAPE = "qwen3-1.7b-base"
EVAL_SET = "heldout_text"
WORK_SPACE_GB = 45  # HF folder 3.4 + hf2mg's fp32 checkpoint 6.9 + the trained checkpoint ~24 + export + slack
# Train settings per mode (with those set in run_check); the rest are the train schema's defaults.
TRAIN = {
    # micro-batch 1: ~31 GB of weights, fp32 gradients and optimizer state, ~14 GB activations a sequence
    "gpu": {"seq_length": 4096, "micro_batch_size": 1, "global_batch_size": 8, "train_iters": 12},
    "smoke": {"seq_length": 128, "micro_batch_size": 2, "global_batch_size": 4, "train_iters": 6},
}
# lm-eval's context length and items scored (None: all 45) on the eval set, per mode.
EVAL = {"gpu": {"max_length": 2048, "limit": None}, "smoke": {"max_length": 128, "limit": 10}}
# Loose: on a GPU the Megatron side of the parity checks runs in CUDA kernels, the HF side on the CPU; the
# measured differences are reported, these only keep a conversion that is clearly wrong from passing.
PARITY = {"parity_tolerance": 1e-2, "parity_tolerance_bf16": 0.1}


class StageFailed(Exception):
    """A stage exited non-zero (its log's tail has been printed)."""


def run_stage(name: str, argv: list[str], logs: Path, timeout: float) -> float:
    """Run one stage from the repository root, its output to logs/<name>.log; return its wall seconds."""
    log = logs / f"{name}.log"
    print(f"[{name}] {' '.join(argv[:4])} ... (log: {log})", flush=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        try:
            code = subprocess.run(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}).returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout:.0f} s"
    wall = time.perf_counter() - started
    if code != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-40:])
        print(f"[{name}] FAILED ({code}) after {wall:.0f} s; last lines of {log}:\n{tail}", flush=True)
        raise StageFailed(name)
    print(f"[{name}] done in {wall:.1f} s", flush=True)
    return wall


def all_reduce_probe(backend: str, result: Path) -> None:
    """A one-process group with `backend`, one all_reduce on its device; the device and NCCL version to `result`."""
    import torch
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
    values = torch.arange(4, dtype=torch.float32, device=device)
    dist.all_reduce(values)
    if backend != "nccl":
        found = {"device": "cpu", "nccl": None}
    else:
        found = {"device": torch.cuda.get_device_name(0), "nccl": ".".join(map(str, torch.cuda.nccl.version())),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
                 "bf16": torch.cuda.is_bf16_supported(),
                 "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30}
    dist.destroy_process_group()
    if values.cpu().tolist() != [0.0, 1.0, 2.0, 3.0]:
        raise SystemExit(f"all_reduce over one {backend} process changed its input: {values.tolist()}")
    result.write_text(json.dumps({"backend": backend, **found, "torch": torch.__version__,
                                  "cuda": torch.version.cuda}) + "\n")


def write_corpus(path: Path) -> None:
    """The demo CPT corpus as one jsonl (its files interleaved, as the demo tokenizer reads them)."""
    from llmrunner.prepare.tiny_model import DEMO_CORPUS, corpus_lines

    with open(path, "w") as out:
        out.writelines(corpus_lines([REPO / p for p in DEMO_CORPUS]))


def train_figures(metrics: Path, skip: int) -> dict:
    """Medians over the steps after `skip` (memory: the largest) of a run's metrics.jsonl, plus its first and
    last loss."""
    steps = [line for line in map(json.loads, metrics.read_text().splitlines()) if "loss" in line]
    measured = [line for line in steps if line["iteration"] > skip]
    figures = {"steps_measured": [line["iteration"] for line in measured],
               "flops_per_token": measured[-1]["flops_per_token"],
               "loss_first": steps[0]["loss"], "loss_last": steps[-1]["loss"]}
    for key in ("tokens_per_s", "tflops_per_device", "mfu"):
        values = [line[key] for line in measured if key in line]
        figures[key] = statistics.median(values) if values else None
    memory = [line["peak_gpu_memory_gib"] for line in measured if "peak_gpu_memory_gib" in line]
    figures["peak_gpu_memory_gib"] = max(memory) if memory else None
    return figures


def parity(folder: Path) -> dict:
    """A conversion's parity.json figures: max |logit difference| in float32 and, for a bf16 export, relative
    to the largest |logit| in bf16."""
    record = json.loads((folder / "parity.json").read_text())
    bf16 = record.get("bfloat16", {}).get("relative_diff")
    return {"float32_max_abs_diff": record["max_abs_logit_diff"], "bfloat16_relative_diff": bf16}


def run_check(mode: str, out: Path, work: Path, steps: int | None, skip: int, micro: int | None,
              global_batch: int | None, extra_settings: dict) -> dict:
    """Run the stages in order into `work`; the summary (also written to out/summary.json after each stage)."""
    from llmrunner.eval.core import resolve_dtype
    from llmrunner.evalsets import load_registry
    from llmrunner.train.settings import TrainSettings

    smoke = mode == "smoke"
    threads = 2 if smoke else os.cpu_count() or 1
    py = sys.executable
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    train = {**TRAIN[mode], "precision": "bf16", "lr": 1e-5, "min_lr": 1e-5, "warmup_iters": 0,
             "eval_interval": 0, "split": "100,0,0", "log_interval": 1, "threads": threads, **extra_settings}
    train.update({k: v for k, v in {"train_iters": steps, "micro_batch_size": micro,
                                    "global_batch_size": global_batch}.items() if v is not None})
    train["save_interval"] = train["train_iters"]  # one checkpoint, at the end
    TrainSettings.from_dict(train)  # a bad --train-settings fails now, not after minutes of conversion
    if skip >= train["train_iters"]:
        raise ConfigError(f"--skip {skip} leaves none of the {train['train_iters']} training steps to measure; "
                          "lower --skip or raise --steps")
    summary: dict = {"goal": GOAL, "mode": mode, "shape": "builtin:tiny-qwen3" if smoke else SHAPE,
                     **environment(("torch", "megatron-core", "transformers")), "train_settings": train,
                     "skip": skip, "stages": {}, "failed": None}

    def save() -> None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    hf, mg, tokens, cpt, export = (work / name for name in ("hf", "mg", "tokens/demo", "cpt", "export"))
    tokens.parent.mkdir(parents=True)
    convert = json.dumps({**PARITY, "threads": threads})
    registry = load_registry(REPO / "config" / "evalsets")
    eval_settings = {"sets": [EVAL_SET], "batch_size": 8, **EVAL[mode], "dtype": "auto", "threads": threads}
    model = ([py, "-m", "llmrunner.prepare", "base-model", "--src", "builtin:tiny-qwen3", "--out", str(hf)] if smoke
             else [py, "-m", "llmrunner.prepare.real_shapes", SHAPE, str(hf), "--dtype", "bfloat16"])
    stages = [
        ("all_reduce", [py, __file__, "all-reduce", "gloo" if smoke else "nccl", str(out / "device.json")], 180),
        ("model", model, 600),
        ("tokenize", [py, "-m", "llmrunner.tokenize", "cpt", "--input", str(work / "corpus.jsonl"), "--tokenizer",
                      str(hf), "--out-prefix", str(tokens), "--settings", "{}", "--threads", str(threads)], 600),
        ("hf2mg", [py, "-m", "llmrunner.convert", "hf2mg", "--hf", str(hf), "--out", str(mg), "--settings", convert,
                   "--threads", str(threads)], 900),
        ("train", [py, "-m", "llmrunner.train", "cpt", "--init", str(mg), "--data", str(tokens), "--save", str(cpt),
                   "--done", str(cpt / "complete.json"), "--settings", json.dumps(train), "--threads",
                   str(threads)], 900),
        ("mg2hf", [py, "-m", "llmrunner.convert", "mg2hf", "--mg", str(cpt), "--hf-side", str(hf), "--out",
                   str(export), "--settings", convert, "--threads", str(threads)], 900),
        ("eval", [py, "-m", "llmrunner.eval", "--model", str(export), "--stage", "cpt", "--out",
                  str(out / "eval" / "results.json"), "--settings", json.dumps(eval_settings), "--evalsets",
                  json.dumps([registry[EVAL_SET].to_dict()]), "--datapool", str(work / "datapool"), "--threads",
                  str(threads)], 600),
    ]
    write_corpus(work / "corpus.jsonl")
    started = time.perf_counter()
    for name, argv, timeout in stages:
        try:
            summary["stages"][name] = round(run_stage(name, argv, logs, timeout), 1)
        except StageFailed:
            summary["failed"] = name
        summary["total_wall_s"] = round(time.perf_counter() - started, 1)
        if summary["failed"]:
            save()
            break
        if name == "all_reduce":
            summary["device"] = json.loads((out / "device.json").read_text())
        elif name == "hf2mg":
            summary["parity_hf2mg"] = parity(mg)
        elif name == "train":
            shutil.copy(cpt / "logs" / "metrics.jsonl", out / "metrics.jsonl")
            summary["train"] = train_figures(out / "metrics.jsonl", skip)
            mfu = summary["train"]["mfu"]
            summary["goal_met"] = None if smoke or mfu is None else mfu >= GOAL_MFU
        elif name == "mg2hf":
            summary["parity_mg2hf"] = parity(export)
        elif name == "eval":
            scored = json.loads((out / "eval" / "results.json").read_text())["sets"][EVAL_SET]
            summary["eval"] = {"set": EVAL_SET, "metric": scored["metric"], "score": scored["score"],
                               "dtype": resolve_dtype("auto")}
        save()
    return summary


def print_table(summary: dict, out: Path) -> None:
    """The summary as one markdown table."""
    train, device = summary.get("train", {}), summary.get("device", {})

    def number(value, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    rows = [
        ("device", f"{device['device']} ({device['backend']} {device['nccl']})" if device.get("nccl")
         else device.get("device", "n/a")),
        ("model", f"{summary['shape']}, bf16, seq_length {summary['train_settings']['seq_length']}, "
                  f"{summary['train_settings']['micro_batch_size']} x {summary['train_settings']['global_batch_size']}"
                  " (micro x global batch)"),
        ("steps measured", f"{train['steps_measured'][0]}-{train['steps_measured'][-1]}" if train else "n/a"),
        ("tokens/s", number(train.get("tokens_per_s"), ",.0f")),
        ("model FLOPs per token", number(train.get("flops_per_token"), ".4g")),
        ("TFLOP/s per device", number(train.get("tflops_per_device"), ".3g")),
        ("MFU (dense bf16 peak)", number(train.get("mfu"), ".1%")),
        ("peak GPU memory GiB", number(train.get("peak_gpu_memory_gib"), ".1f")),
        ("loss first -> last", f"{train['loss_first']:.3f} -> {train['loss_last']:.3f}" if train else "n/a"),
        ("parity hf2mg / mg2hf: fp32 max abs logit diff",
         " / ".join(number(summary.get(k, {}).get("float32_max_abs_diff"), ".2e")
                    for k in ("parity_hf2mg", "parity_mg2hf"))),
        ("parity mg2hf: bf16 diff / max abs logit",
         number(summary.get("parity_mg2hf", {}).get("bfloat16_relative_diff"), ".2e")),
        ("eval", f"{summary['eval']['set']} {summary['eval']['metric']} {summary['eval']['score']:.4f} "
                 f"({summary['eval']['dtype']})" if "eval" in summary else "n/a"),
        ("stage wall s", ", ".join(f"{k} {v}" for k, v in summary["stages"].items())),
        ("total wall s", number(summary.get("total_wall_s"), ".0f")),
        ("goal", f"{GOAL}: " + {True: "MET", False: "NOT MET", None: "not measured"}[summary.get("goal_met")]),
    ]
    print(f"\nGPU check ({summary['mode']}), {summary['date']} {summary['host']}")
    print("| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if summary["failed"]:
        print(f"\nFAILED at stage {summary['failed']} (log: {out / 'logs' / (summary['failed'] + '.log')})")
    print(f"\n-> {out / 'summary.json'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", default=os.environ.get("GPU_CHECK_SMOKE") == "1",
                        help="the same stages on the CPU with the demo model (also GPU_CHECK_SMOKE=1)")
    parser.add_argument("--out", type=Path, help="where the summary and logs go (default $OUT, else bench/results/)")
    parser.add_argument("--work", type=Path, help="where models and checkpoints go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--steps", type=int, help="training steps (default 12; smoke 6)")
    parser.add_argument("--skip", type=int, help="first steps left out of the figures, warm-up (default 4; smoke 2)")
    parser.add_argument("--micro-batch", type=int, help="sequences per micro-batch (default 1; smoke 2)")
    parser.add_argument("--global-batch", type=int, help="sequences per step (default 8; smoke 4)")
    parser.add_argument("--train-settings", type=json.loads, default={},
                        help='more train settings as JSON, e.g. \'{"recompute": "selective", "micro_batch_size": 4}\'')
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "gpu"
    import torch

    if mode == "gpu" and not torch.cuda.is_available():
        raise ConfigError("no CUDA device: the GPU check needs one (--smoke runs the same stages on the CPU)")
    date_host = f"{time.strftime('%Y-%m-%d')}_{socket.gethostname()}"
    out = args.out or (Path(os.environ["OUT"]) if os.environ.get("OUT") else
                       REPO / "bench" / "results" / f"gpu_check_{mode}_{date_host}")
    out.mkdir(parents=True, exist_ok=True)
    work_root = args.work or Path(tempfile.gettempdir())
    free_gb = shutil.disk_usage(work_root).free / 1e9
    if mode == "gpu" and free_gb < WORK_SPACE_GB:
        raise ConfigError(f"{work_root} has {free_gb:.0f} GB free; the 1.7B shape's models and checkpoints need "
                          f"~{WORK_SPACE_GB} GB: point --work at a larger disk")
    work = Path(tempfile.mkdtemp(prefix="gpu_check_", dir=work_root))
    skip = args.skip if args.skip is not None else (2 if args.smoke else 4)
    try:
        summary = run_check(mode, out, work, args.steps, skip, args.micro_batch, args.global_batch,
                            args.train_settings)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(summary, out)
    numbers = [v for v in summary.get("train", {}).values() if isinstance(v, float)]
    if summary["failed"] or not all(map(math.isfinite, numbers)):
        raise SystemExit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["all-reduce"]:  # the all_reduce stage's process
        all_reduce_probe(sys.argv[2], Path(sys.argv[3]))
    else:
        run_main(main)
