"""Benchmark training throughput: our megatron-core training command against a plain PyTorch/transformers loop.

    .venv/bin/python bench/bench_train.py [--repeats 3] [--steps 30] [--threads 2]
    .venv/bin/python bench/bench_train.py --gpu [--peak-flops 989e12] [--seq-length 4096] [--micro-batch 2]

CPU (default): the demo model (builtin:tiny-qwen3, built as prepare builds it, converted with hf2mg) on
tokens of the demo corpus (tokenized as tokenize_cpt does), same batch, sequence length, learning rate
and AdamW settings for both contenders:
- `ours`: `python -m llmrunner.train cpt ...`, the real entry point; per-step tokens/s from its metrics.jsonl;
- `plain`: HF Qwen3ForCausalLM from the same HF folder, torch.optim.AdamW, gradient clipping, the same
  token file read as consecutive windows; per-step tokens/s timed the same way (batch + step);
- `plain_heap`: the same loop with glibc's malloc set through its environment as our entry point sets it
  in-process (llmrunner.megatron.cpu_compat.keep_freed_memory): the loop against the loop, allocator aside.
Each run is a fresh process; runs alternate (the order rotating every repeat) so machine load hits all
alike. The table gives, per contender, the median and best over repeats of each run's median step
tokens/s (steps after --skip), and the peak memory (PSS) of the run's process tree (sampled every 50 ms).

--gpu: a Qwen3-1.7B-shaped model in bf16 with our megatron-core step on one GPU (random weights and
tokens): tokens/s and MFU = model FLOPs per token (llmrunner.train.metrics.flops_per_token, Megatron-LM's
count) x tokens/s / --peak-flops (dense bf16 of the device; default: the training metrics' table by name).
Without CUDA it says so and exits 0.

Results go to bench/results/train_<date>_<host>.json (not tracked by git). See bench/README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, environment, measure, save_result

CONTENDERS = ("ours", "plain", "plain_heap")
# plain_heap's environment: glibc's malloc takes large blocks from its heap and keeps what is freed, the settings
# cpu_compat.keep_freed_memory makes with mallopt in our training processes (2**40: a trim threshold never reached).
KEEP_FREED_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}
CORPUS_DOCS = 1500  # the first documents of the demo corpus: ~0.6 M tokens, more than any run reads
# The demo's CPT step (config/experiments/demo/steps/4.train_cpt.yaml), no validation, saves only at the end.
HPARAMS = {"seq_length": 256, "micro_batch_size": 8, "global_batch_size": 8, "lr": 2.0e-3, "min_lr": 2.0e-3,
           "warmup_iters": 0, "lr_decay_style": "constant", "weight_decay": 0.01, "adam_beta1": 0.9,
           "adam_beta2": 0.95, "adam_eps": 1e-8, "clip_grad": 1.0, "eval_interval": 0, "split": "100,0,0",
           "log_interval": 10}
IDX_DTYPES = {1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float64", 7: "float32", 8: "uint16"}


def run_stage(*argv: str) -> None:
    proc = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-3000:]}")


def prepare(work: Path) -> tuple[Path, Path, Path]:
    """(HF demo model, its Megatron checkpoint, token prefix) built by the stages' own entry points."""
    from llmrunner.prepare.tiny_model import DEMO_CORPUS, corpus_lines

    hf, mg, tokens = work / "hf", work / "mg", work / "tokens" / "demo"
    run_stage("llmrunner.prepare", "base-model", "--src", "builtin:tiny-qwen3", "--out", str(hf))
    run_stage("llmrunner.convert", "hf2mg", "--hf", str(hf), "--out", str(mg))
    docs = work / "demo.jsonl"
    with open(docs, "w") as out:
        for _, line in zip(range(CORPUS_DOCS), corpus_lines([REPO / path for path in DEMO_CORPUS])):
            out.write(line)
    tokens.parent.mkdir(parents=True)
    run_stage("llmrunner.tokenize", "cpt", "--input", str(docs), "--tokenizer", str(hf), "--out-prefix", str(tokens))
    return hf, mg, tokens


def read_tokens(prefix: Path):
    """All token ids of a Megatron .bin/.idx pair, as one array (dtype from the .idx header)."""
    import numpy as np

    header = Path(f"{prefix}_text_document.idx").read_bytes()[:18]
    return np.fromfile(f"{prefix}_text_document.bin", dtype=IDX_DTYPES[header[17]])


def plain_loop(hf: Path, prefix: Path, steps: int, threads: int, out: Path) -> None:
    """The transformers baseline: AdamW over consecutive windows of the token file; one JSON line per step."""
    import torch
    from transformers import Qwen3ForCausalLM

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM.from_pretrained(hf, torch_dtype=torch.float32)
    model.train()
    h = HPARAMS
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": h["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=h["lr"], betas=(h["adam_beta1"], h["adam_beta2"]), eps=h["adam_eps"])
    ids = read_tokens(prefix)
    seq, batch = h["seq_length"], h["micro_batch_size"]
    with open(out, "w") as log:
        for step in range(steps):
            started = time.perf_counter()
            first = step * batch * seq
            tokens = torch.stack([torch.from_numpy(ids[(first + i * seq) % (len(ids) - seq):][:seq].astype("int64"))
                                  for i in range(batch)])
            loss = model(input_ids=tokens, labels=tokens).loss  # transformers shifts the labels itself
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), h["clip_grad"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds = time.perf_counter() - started
            log.write(json.dumps({"iteration": step + 1, "loss": loss.item(),
                                  "tokens_per_s": batch * seq / seconds}) + "\n")


def command(contender: str, hf: Path, mg: Path, prefix: Path, steps: int, threads: int, out: Path) -> list[str]:
    if contender == "ours":
        settings = {**HPARAMS, "train_iters": steps, "save_interval": steps, "threads": threads}
        return [sys.executable, "-m", "llmrunner.train", "cpt", "--init", str(mg), "--data", str(prefix),
                "--save", str(out), "--done", str(out / "complete.json"), "--settings", json.dumps(settings),
                "--threads", str(threads)]
    return [sys.executable, __file__, "plain", str(hf), str(prefix), str(steps), str(threads), str(out / "steps.jsonl")]


def step_rates(metrics: Path, skip: int) -> list[float]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["iteration"] > skip]


def environment_with_gpu() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {**environment(("torch", "megatron-core", "transformers")), "gpu": gpu}


def run_cpu(repeats: int, steps: int, skip: int, threads: int) -> dict:
    from llmrunner.megatron import cpu_compat

    # The MKL branch our entry point pins, for both contenders: the comparison is of the training loops, not of
    # MKL's branches (bench/README.md measures those). A MKL_CBWR set by the user applies to both too.
    cpu_compat.pin_mkl_branch()
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        hf, mg, prefix = prepare(work)
        for repeat in range(repeats):
            shift = repeat % len(CONTENDERS)
            order = CONTENDERS[shift:] + CONTENDERS[:shift]
            for contender in order:
                out = work / f"{contender}_{repeat}"
                out.mkdir()
                _, peak = measure(command(contender, hf, mg, prefix, steps, threads, out),
                                  {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
                                   **(KEEP_FREED_ENV if contender == "plain_heap" else {})})
                metrics = out / "logs/metrics.jsonl" if contender == "ours" else out / "steps.jsonl"
                rates = step_rates(metrics, skip)
                runs[contender].append({"tokens_per_s": statistics.median(rates), "peak_pss": peak, "steps": rates})
                print(f"  repeat {repeat + 1}/{repeats} {contender}: {statistics.median(rates):,.0f} tokens/s, "
                      f"peak PSS {peak / 2**20:,.0f} MiB", flush=True)
    return {"mode": "cpu", **environment_with_gpu(), "repeats": repeats, "steps": steps, "skip": skip,
            "threads": threads, "mkl_cbwr": os.environ["MKL_CBWR"], "hparams": HPARAMS, "runs": runs}


def print_cpu_table(result: dict) -> None:
    versions = result["versions"]
    print(f"\n{result['date']} {result['host']}: {result['cpu_model']}, {result['cpu_count']} cores, torch "
          f"{versions['torch']}, megatron-core {versions['megatron-core']}, transformers {versions['transformers']}")
    print(f"demo model, batch {HPARAMS['micro_batch_size']} x {HPARAMS['seq_length']} tokens, {result['threads']} "
          f"threads, MKL_CBWR={result['mkl_cbwr']}, steps {result['skip'] + 1}-{result['steps']} of each run, "
          f"{result['repeats']} runs each\n")
    print("| contender | median tokens/s | best tokens/s | peak PSS MiB |")
    print("|---|---|---|---|")
    for contender, runs in result["runs"].items():
        rates = [r["tokens_per_s"] for r in runs]
        print(f"| {contender} | {statistics.median(rates):,.0f} | {max(rates):,.0f} | "
              f"{max(r['peak_pss'] for r in runs) / 2**20:,.0f} |")
    ours, plain, plain_heap = (statistics.median(r["tokens_per_s"] for r in result["runs"][c]) for c in CONTENDERS)
    print(f"\nours / plain: {ours / plain:.2f}; ours / plain_heap: {ours / plain_heap:.2f}")


def run_gpu(steps: int, skip: int, seq_length: int, micro_batch: int, peak_flops: float | None) -> dict | None:
    """Our megatron-core step on a Qwen3-1.7B-shaped model in bf16 on one GPU; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    from llmrunner.megatron import parallel
    from llmrunner.megatron.hf_mapping import shape_from_hf_config
    from llmrunner.prepare.real_shapes import real_config
    from llmrunner.train.metrics import flops_per_token, peak_bf16_flops
    from llmrunner.train.settings import TrainSettings
    from llmrunner.train.steps import build_model_and_optimizer, train_step

    peak_flops = peak_flops or peak_bf16_flops(torch.cuda.get_device_name())
    if peak_flops is None:
        raise SystemExit(f"no bf16 peak known for {torch.cuda.get_device_name()}: give --peak-flops")
    s = TrainSettings.from_dict({"train_iters": steps, "seq_length": seq_length, "micro_batch_size": micro_batch,
                                 "global_batch_size": micro_batch, "warmup_iters": 0, "precision": "bf16"})
    parallel.init_distributed()
    parallel.seed_everything(s.seed)
    shape = shape_from_hf_config(real_config("qwen3-1.7b-base"))
    model, optimizer, scheduler = build_model_and_optimizer(shape, s)
    parameters = sum(p.numel() for p in model.parameters())
    tokens = torch.randint(0, shape.vocab_size, (micro_batch, seq_length + 1))
    batch = {"tokens": tokens[:, :-1], "labels": tokens[:, 1:], "loss_mask": torch.ones(micro_batch, seq_length),
             "position_ids": torch.arange(seq_length).expand(micro_batch, seq_length)}
    rates = []
    for step in range(steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        train_step(model, optimizer, scheduler, iter([batch]), s, 1)
        torch.cuda.synchronize()
        if step >= skip:
            rates.append(micro_batch * seq_length / (time.perf_counter() - started))
    tokens_per_s = statistics.median(rates)
    return {"mode": "gpu", **environment_with_gpu(), "shape": dataclasses.asdict(shape), "parameters": parameters,
            "steps": steps, "skip": skip, "seq_length": seq_length, "micro_batch": micro_batch,
            "tokens_per_s": tokens_per_s, "best_tokens_per_s": max(rates), "peak_flops": peak_flops,
            "mfu": flops_per_token(shape, seq_length) * tokens_per_s / peak_flops,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "plain":  # a contender process
        hf, prefix, steps, threads, out = sys.argv[2:7]
        plain_loop(Path(hf), Path(prefix), int(steps), int(threads), Path(out))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each contender (alternating)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--skip", type=int, default=5, help="first steps of each run left out (warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads of each contender")
    parser.add_argument("--gpu", action="store_true", help="the Qwen3-1.7B-shaped bf16 run on one GPU instead")
    parser.add_argument("--seq-length", type=int, default=4096, help="--gpu: tokens per sequence")
    parser.add_argument("--micro-batch", type=int, default=2, help="--gpu: sequences per step")
    parser.add_argument("--peak-flops", type=float, default=None,
                        help="--gpu: the device's dense bf16 FLOP/s for MFU (default: the training metrics' table "
                             "by device name, llmrunner.train.metrics.PEAK_BF16_FLOPS)")
    args = parser.parse_args()
    if args.skip >= args.steps:
        parser.error(f"--skip {args.skip} must be below --steps {args.steps}")
    sys.path.insert(0, str(REPO))
    if args.gpu:
        result = run_gpu(args.steps, args.skip, args.seq_length, args.micro_batch, args.peak_flops)
        if result is None:
            print("no CUDA device: the --gpu benchmark needs one (nothing measured)")
            return
        print(f"{result['gpu']}: Qwen3-1.7B shape ({result['parameters'] / 1e9:.2f} B parameters), bf16, "
              f"{args.micro_batch} x {args.seq_length} tokens per step: {result['tokens_per_s']:,.0f} tokens/s "
              f"(best {result['best_tokens_per_s']:,.0f}), MFU {result['mfu']:.1%} of {result['peak_flops']:.3g} "
              "FLOP/s, "
              f"peak memory {result['peak_gpu_memory_gib']:.1f} GiB")
        save_result(result, "train_gpu")
    else:
        result = run_cpu(args.repeats, args.steps, args.skip, args.threads)
        print_cpu_table(result)
        save_result(result, "train")


if __name__ == "__main__":
    main()
