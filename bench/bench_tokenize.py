"""Benchmark tokenize cpt against Megatron's reference writer and the raw `tokenizers` ceiling (HF's
encode_batch_fast alone; ours encodes with tokie where it gives the same ids: llmrunner/tokenize/fast.py).

    .venv/bin/python bench/bench_tokenize.py [--repeats 3] [--copies 4] [--workers 1 2]

Every contender runs as its own process, timed from start to exit (start-up included), on the
demo corpus and on it repeated --copies times, with each worker count. Runs are interleaved
(repeat by repeat, the contenders' order rotating) because shared machines drift by ±20%
between minutes: only figures from the same run compare. See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from harness import REPO, environment, machine_line, measure, save_result, summary_rows

CONTENDERS = ("ours", "reference", "ceiling")
CEILING_BATCH = 512  # documents per encode_batch call (ours: up to 1,024 documents or 256 KiB of text)


def ceiling(input_path: Path, tokenizer_json: Path, out: Path) -> None:
    """The least any tokenize step must do: read, parse, encode_batch (Rust threads), write the ids."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    eod = tok.token_to_id("<|endoftext|>")
    with open(input_path, "rb") as lines, open(out, "wb") as sink:
        batch: list[str] = []
        for line in lines:
            batch.append(json.loads(line)["text"])
            if len(batch) == CEILING_BATCH:
                write_ids(tok, batch, eod, sink, np)
                batch = []
        write_ids(tok, batch, eod, sink, np)


def write_ids(tok, batch: list[str], eod: int, sink, np) -> None:
    for encoding in tok.encode_batch_fast(batch):
        np.array(encoding.ids + [eod], dtype=np.uint16).tofile(sink)


def command(contender: str, data: Path, tokenizer: Path, out: Path, workers: int) -> list[str]:
    if contender == "ours":
        return [sys.executable, "-m", "llmrunner.tokenize", "cpt", "--input", str(data), "--tokenizer",
                str(tokenizer), "--out-prefix", str(out), "--threads", str(workers)]
    if contender == "reference":
        return [sys.executable, str(REPO / "tests" / "tokenize" / "reference_writer.py"), "--input", str(data),
                "--tokenizer", str(tokenizer), "--out-prefix", str(out), "--workers", str(workers)]
    return [sys.executable, __file__, "ceiling", str(data), str(tokenizer / "tokenizer.json"), f"{out}.bin"]


def prepare(work: Path, copies: int) -> tuple[Path, dict[str, Path]]:
    """The demo tokenizer (as prepare builds it) and the demo corpus, plain and repeated."""
    from llmrunner.prepare.tiny_model import DEMO_CORPUS, corpus_lines, train_tokenizer

    corpus = [REPO / path for path in DEMO_CORPUS]
    tokenizer = work / "tokenizer"
    train_tokenizer(corpus).save_pretrained(tokenizer)
    demo = work / "demo.jsonl"
    with open(demo, "w", encoding="utf-8") as dst:
        dst.writelines(corpus_lines(corpus))
    repeated = work / f"demo_x{copies}.jsonl"
    with open(repeated, "wb") as dst:
        for _ in range(copies):
            dst.write(demo.read_bytes())
    return tokenizer, {"demo": demo, f"{copies}x": repeated}


def run(repeats: int, copies: int, worker_counts: list[int]) -> dict:
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_tokenize_") as tmp:
        work = Path(tmp)
        tokenizer, inputs = prepare(work, copies)
        sizes = {name: {"bytes": path.stat().st_size, "docs": sum(1 for _ in open(path, "rb"))}
                 for name, path in inputs.items()}
        samples: dict[tuple[str, int, str], list[tuple[float, int]]] = {}
        order = list(CONTENDERS)
        for rep in range(repeats):
            for size, data in inputs.items():
                for workers in worker_counts:
                    for contender in order:
                        out = work / f"out_{contender}"
                        wall, peak = measure(command(contender, data, tokenizer, out, workers),
                                             {"HF_HUB_OFFLINE": "1", "RAYON_NUM_THREADS": str(workers),
                                              "TOKENIZERS_PARALLELISM": "true" if workers > 1 else "false"})
                        samples.setdefault((size, workers, contender), []).append((wall, peak))
                        print(f"  repeat {rep + 1}/{repeats} {size:>5} w={workers} {contender:<9} "
                              f"{wall:6.1f} s {peak / 2**20:7.0f} MiB", flush=True)
                    # the reference must agree with ours on this text (no special-token spellings in it)
                    same = all(Path(f"{work}/out_ours_text_document.{e}").read_bytes()
                               == Path(f"{work}/out_reference_text_document.{e}").read_bytes() for e in ("bin", "idx"))
                    sizes[size]["identical_to_reference"] = same
                    sizes[size]["tokens"] = json.loads((work / "out_ours.stats.json").read_text())["tokens"]
            order = order[1:] + order[:1]  # rotate: no contender always runs first (cold caches) or last
    rows = summary_rows(samples, sizes)
    for row in rows:
        key = (row["input"], row["workers"])
        peers = {r["contender"]: r["wall_s"] for r in rows if (r["input"], r["workers"]) == key}
        row["speedup_vs_reference"] = peers["reference"] / row["wall_s"]
        row["fraction_of_ceiling"] = peers["ceiling"] / row["wall_s"]
    # Other work on the machine skews every figure: the 1-minute load average before and after says how much.
    return {**environment(("tokenizers", "tokie", "transformers", "megatron-core", "torch", "numpy")),
            "load_before": load_before, "load_after": os.getloadavg()[0], "repeats": repeats,
            "inputs": sizes, "rows": rows}


def print_table(result: dict) -> None:
    print("\n" + machine_line(result))
    for name, size in result["inputs"].items():
        print(f"{name}: {size['bytes'] / 2**20:.1f} MiB, {size['docs']} docs, {size['tokens']} tokens, "
              f"ours == reference: {size['identical_to_reference']}")
    print(f"median of {result['repeats']} (wall time, start-up included); load average "
          f"{result['load_before']:.1f} before, {result['load_after']:.1f} after\n")
    head = ("input", "workers", "contender", "wall s", "docs/s", "tokens/s", "MB/s", "peak PSS MiB", "× ref",
            "of ceiling")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for r in result["rows"]:
        print(f"| {r['input']} | {r['workers']} | {r['contender']} | {r['wall_s']:.1f} | {r['docs_per_s']:,.0f} | "
              f"{r['tokens_per_s']:,.0f} | {r['mb_per_s']:.2f} | {r['peak_pss_mib']:,.0f} | "
              f"{r['speedup_vs_reference']:.2f} | {r['fraction_of_ceiling']:.0%} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "ceiling":  # the ceiling contender's own process
        ceiling(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender; the table shows medians")
    parser.add_argument("--copies", type=int, default=4, help="the larger input is the demo corpus this many times")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    result = run(args.repeats, args.copies, args.workers)
    print_table(result)
    save_result(result, "tokenize")


if __name__ == "__main__":
    main()
