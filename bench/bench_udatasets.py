"""Benchmark udatasets (exact + near de-duplication) against rensa, datatrove or a datasketch loop.

    .venv/bin/python bench/bench_udatasets.py [--repeats 3] [--copies 4] [--workers 1 2] [--references rensa]

The references run in their own virtual environment, never in the project's (datatrove pins other versions):

    python3 -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install datatrove orjson 'xxhash<4' regex tokenizers \
        datasketch rensa==0.5.0

Every contender runs as its own process, timed from start to exit (start-up included), with each worker count,
on three inputs: the demo corpus; it --copies times over (exact copies: the same texts, other ids); and it
--copies times over where each copy after the first has EDIT_RATE of its words replaced (varied copies, a fixed
seed). Runs are interleaved, repeat by repeat, as in bench_tokenize.py: only figures from the same run compare.
See bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness import REPO, environment, machine_line, measure, save_result, summary_rows

REFERENCE_VENV = Path("/tmp/dtvenv")
# datatrove 0.10 hashes str, which xxhash 4 refuses; regex, tokenizers, orjson: imports its dedup and jsonl blocks need
SETUP = (f"python3 -m venv {REFERENCE_VENV} && {REFERENCE_VENV}/bin/pip install datatrove orjson 'xxhash<4' regex "
         "tokenizers datasketch rensa==0.5.0")
REFERENCES = ("datatrove", "datasketch", "rensa")
THRESHOLD, SHINGLE_WORDS, NUM_PERM, SEED = 0.8, 5, 128, 1  # near de-dup settings, the same for every contender
BANDS, ROWS = 15, 7  # what llmrunner.udatasets.near_dup.lsh_bands(0.8, 128) picks; datatrove needs them given
OURS_SETTINGS = {"dedup": "exact", "near_dedup": True, "near_threshold": THRESHOLD,
                 "near_shingle_words": SHINGLE_WORDS, "near_num_perm": NUM_PERM}


# --- the references' own processes (run with the reference venv's python; stdlib + their packages only) ---

def run_datatrove(input_dir: Path, work: Path, workers: int) -> None:
    """datatrove's exact and MinHash de-dup blocks: read -> exact signatures -> find -> filter -> MinHash
    signatures -> buckets -> clusters -> filter -> write, as its examples chain them (one executor per stage)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import exact_dedup as ex
    from datatrove.pipeline.dedup import minhash as mh
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.word_tokenizers import WordTokenizer

    class SplitTokenizer(WordTokenizer):
        """Words split on whitespace, as ours (datatrove's English tokenizer needs NLTK data)."""
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return text.splitlines()

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    exact = ex.ExactDedupConfig(content_getter=document_text)
    minhash = mh.MinhashConfig(n_grams=SHINGLE_WORDS, num_buckets=BANDS, hashes_per_bucket=ROWS, seed=SEED)

    def read():
        return JsonlReader(str(input_dir), compression=None, glob_pattern="*.jsonl")

    def stage(pipeline: list, name: str, tasks: int = workers) -> None:
        LocalPipelineExecutor(pipeline, tasks=tasks, workers=min(workers, tasks), logging_dir=str(work / "logs" / name),
                              start_method="fork").run()

    stage([read(), ex.ExactDedupSignature(str(work / "exact_sigs"), exact, finder_workers=1)], "exact_sigs")
    stage([ex.ExactFindDedups(str(work / "exact_sigs"), str(work / "exact_dups"), exact)], "exact_find", tasks=1)
    exact_filter = ex.ExactDedupFilter(str(work / "exact_dups"), exact,
                                       exclusion_writer=JsonlWriter(str(work / "exact_removed"), compression=None))
    stage([read(), exact_filter, mh.MinhashDedupSignature(str(work / "mh_sigs"), minhash, language=SplitTokenizer())],
          "mh_sigs")
    stage([mh.MinhashDedupBuckets(str(work / "mh_sigs"), str(work / "mh_buckets"), config=minhash)], "mh_buckets",
          tasks=BANDS)
    stage([mh.MinhashDedupCluster(str(work / "mh_buckets"), str(work / "mh_remove"), config=minhash)], "mh_cluster",
          tasks=1)
    stage([read(), ex.ExactDedupFilter(str(work / "exact_dups"), exact),
           mh.MinhashDedupFilter(str(work / "mh_remove"),
                                 exclusion_writer=JsonlWriter(str(work / "near_removed"), compression=None)),
           JsonlWriter(str(work / "kept"), compression=None)], "write")


def document_text(document) -> str:  # module level: datatrove pickles it to its workers
    return document.text


def run_datasketch(input_dir: Path, work: Path) -> None:
    """The plain loop a user would write with datasketch: exact hash set, then MinHashLSH query + verify."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    template, signatures = MinHash(num_perm=NUM_PERM, seed=SEED), []
    counts = {"kept": 0, "exact": 0, "near": 0}
    with open(work / "kept.jsonl", "w", encoding="utf-8") as kept:
        for line, shingles in new_documents(input_dir, counts):
            minhash = template.copy()
            minhash.update_batch(shingle.encode("utf-8") for shingle in shingles)
            if any(minhash.jaccard(signatures[n]) >= THRESHOLD for n in sorted(lsh.query(minhash))):
                counts["near"] += 1
                continue
            lsh.insert(len(signatures), minhash)
            signatures.append(minhash)
            kept.write(line)
            counts["kept"] += 1
    (work / "counts.json").write_text(json.dumps(counts))


def new_documents(input_dir: Path, counts: dict[str, int]) -> Iterator[tuple[str, list[str]]]:
    """The reference loops' shared front: each jsonl line whose text is not an exact repeat (counted in
    counts["exact"]), with its word 5-shingles."""
    import hashlib

    seen: set[bytes] = set()
    for path in sorted(input_dir.glob("*.jsonl")):
        for line in open(path, encoding="utf-8"):
            text = json.loads(line)["text"]
            digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
            if digest in seen:
                counts["exact"] += 1
                continue
            seen.add(digest)
            words = text.split()
            yield line, [" ".join(words[i:i + SHINGLE_WORDS]) for i in range(max(len(words) - SHINGLE_WORDS + 1, 1))]


RENSA_BATCH = 1024  # documents per add_pairs call: rensa's batch API, as its README uses it


def run_rensa(input_dir: Path, work: Path) -> None:
    """The de-dup a rensa user would write, after its README: an exact hash set, then RMinHashDeduplicator (R-MinHash,
    LSH, each candidate checked against the threshold) fed word 5-shingles in batches through add_pairs."""
    from rensa import RMinHashDeduplicator

    dedup = RMinHashDeduplicator(threshold=THRESHOLD, num_perm=NUM_PERM, use_lsh=True, seed=SEED)
    counts = {"kept": 0, "exact": 0, "near": 0}

    def flush(batch: list[tuple[str, list[str]]], lines: list[str], kept) -> None:
        for line, new in zip(lines, dedup.add_pairs(batch)):
            if new:
                kept.write(line)
                counts["kept"] += 1
            else:
                counts["near"] += 1
        batch.clear()
        lines.clear()

    with open(work / "kept.jsonl", "w", encoding="utf-8") as kept:
        batch: list[tuple[str, list[str]]] = []
        lines: list[str] = []
        for number, (line, shingles) in enumerate(new_documents(input_dir, counts)):
            batch.append((str(number), shingles))
            lines.append(line)
            if len(batch) >= RENSA_BATCH:
                flush(batch, lines, kept)
        flush(batch, lines, kept)
    (work / "counts.json").write_text(json.dumps(counts))


# --- the harness (project venv) ---

def _children_cpu() -> float:
    """User + system seconds of this process's finished children (and theirs, as each waited for them): the
    difference over one measured run is its CPU time, which a machine shared with other jobs changes less than the
    wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def command(contender: str, reference_python: Path, input_dir: Path, work: Path, workers: int) -> list[str]:
    if contender == "ours":
        return [sys.executable, "-m", "llmrunner.udatasets", "--kind", "cpt", "--input", str(input_dir),
                "--out", str(work / "kept.jsonl"), "--settings", json.dumps(OURS_SETTINGS), "--workers", str(workers)]
    return [str(reference_python), __file__, contender, str(input_dir), str(work), str(workers)]


def counts(contender: str, work: Path) -> dict[str, int]:
    """kept / exact / near duplicates as the contender reported or wrote them."""
    if contender == "ours":
        stats = json.loads((work / "kept.stats.json").read_text())
        return {"kept": stats["kept"], **{kind: stats["duplicates"].get(kind, 0) for kind in ("exact", "near")}}
    if contender in ("datasketch", "rensa"):
        return json.loads((work / "counts.json").read_text())
    lines = {name: sum(sum(1 for _ in open(f, "rb")) for f in (work / name).glob("*.jsonl"))
             for name in ("kept", "exact_removed", "near_removed")}
    return {"kept": lines["kept"], "exact": lines["exact_removed"], "near": lines["near_removed"]}


EDIT_RATE, EDIT_SEED = 0.05, 1234  # varied copies: the share of words replaced, and the seed that picks them
_WORD = re.compile(r"\S+")


def edited(text: str, rng: random.Random) -> str:
    """`text` with each word replaced by a made-up one with probability EDIT_RATE (whitespace kept as it was)."""
    return _WORD.sub(lambda m: f"edit{rng.randrange(1 << 30):x}" if rng.random() < EDIT_RATE else m.group(), text)


def prepare(work: Path, copies: int, shards: int) -> dict[str, Path]:
    """The three inputs, each as a folder of `shards` jsonl files (datatrove runs one task per file; ours reads
    the files in name order, so the record order is the corpus order either way)."""
    from llmrunner.prepare.tiny_model import DEMO_CORPUS, corpus_lines

    texts = [json.loads(line)["text"] for line in corpus_lines([REPO / path for path in DEMO_CORPUS])]
    rng = random.Random(EDIT_SEED)
    inputs = {"demo": texts, f"{copies}x exact": texts * copies,
              f"{copies}x varied": texts + [edited(text, rng) for _ in range(2, copies + 1) for text in texts]}
    folders = {}
    for name, docs in inputs.items():
        folder = work / f"input_{name}"
        folder.mkdir()
        per_shard = -(-len(docs) // shards)
        for shard in range(shards):
            with open(folder / f"part{shard:02d}.jsonl", "w", encoding="utf-8") as out:
                for number, text in enumerate(docs[shard * per_shard:(shard + 1) * per_shard]):
                    out.write(json.dumps({"text": text, "id": f"{shard}-{number}"}, ensure_ascii=False) + "\n")
        folders[name] = folder
    return folders


def available(reference_python: Path, requested: list[str]) -> list[str]:
    """The references that import in the reference venv; with none requested, the first of REFERENCES that does."""
    def imports(module: str) -> bool:
        return reference_python.exists() and subprocess.run([str(reference_python), "-c", f"import {module}"],
                                                            capture_output=True).returncode == 0
    if requested:
        missing = [name for name in requested if not imports(name)]
        if missing:
            raise SystemExit(f"{', '.join(missing)} not importable with {reference_python}; create it with:\n{SETUP}")
        return requested
    for name in REFERENCES:
        if imports(name):
            return [name]
    print(f"no reference found ({reference_python}): measuring ours only. For one:\n  {SETUP}")
    return []


def reference_versions(reference_python: Path, references: list[str]) -> dict[str, str]:
    """The versions of the references, as installed in the reference venv."""
    return {name: subprocess.run([str(reference_python), "-c", f"import importlib.metadata as m; "
                                  f"print(m.version('{name}'))"], capture_output=True, text=True).stdout.strip()
            for name in references}


def run(repeats: int, copies: int, worker_counts: list[int], reference_python: Path, references: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_udatasets_") as tmp:
        work = Path(tmp)
        inputs = prepare(work, copies, max(worker_counts))
        sizes = {name: {"bytes": sum(f.stat().st_size for f in folder.iterdir()),
                        "docs": sum(1 for f in folder.iterdir() for _ in open(f, "rb"))}
                 for name, folder in inputs.items()}
        samples: dict[tuple[str, int, str], list[tuple[float, int]]] = {}
        results: dict[tuple[str, int, str], dict[str, int]] = {}
        cpu: dict[tuple[str, int, str], list[float]] = {}  # user + system seconds of the run's processes
        peaks: dict[tuple[str, int, str], int] = {}
        order = ["ours", *references]
        # the timed rounds, then one round that samples memory (sampling takes CPU the timed runs should not lose)
        for rep in range(repeats + 1):
            memory = rep == repeats
            for size, folder in inputs.items():
                for workers in worker_counts:
                    for contender in order:
                        if contender in ("datasketch", "rensa") and workers != worker_counts[0]:
                            continue  # one process: the worker count does not apply
                        key = (size, workers, contender)
                        out = work / f"out_{contender}_{size}_{workers}_{rep}"
                        out.mkdir()
                        before = _children_cpu()
                        wall, peak = measure(command(contender, reference_python, folder, out, workers),
                                             {"OMP_NUM_THREADS": "1"}, memory=memory)
                        results[key] = counts(contender, out)
                        if memory:
                            peaks[key] = peak
                            print(f"  memory {size:>10} w={workers} {contender:<10} {peak / 2**20:7.0f} MiB",
                                  flush=True)
                            continue
                        cpu.setdefault(key, []).append(_children_cpu() - before)
                        samples.setdefault(key, []).append((wall, 0))
                        print(f"  repeat {rep + 1}/{repeats} {size:>10} w={workers} {contender:<10} "
                              f"{wall:6.1f} s cpu {cpu[key][-1]:5.1f} s {results[key]}", flush=True)
            order = order[1:] + order[:1]  # rotate: no contender always runs first (cold caches) or last
    rows = summary_rows(samples, sizes, lambda key: {**results[key], "cpu_s": statistics.median(cpu[key]),
                                                     "peak_pss_mib": peaks[key] / 2**20})
    return {**environment(("numpy",), **reference_versions(reference_python, references)), "repeats": repeats,
            "inputs": sizes, "settings": OURS_SETTINGS, "rows": rows}


def print_table(result: dict) -> None:
    print("\n" + machine_line(result))
    for name, size in result["inputs"].items():
        print(f"{name}: {size['bytes'] / 2**20:.1f} MiB, {size['docs']} docs")
    print(f"median of {result['repeats']} (wall time, start-up included); near de-dup: Jaccard >= {THRESHOLD} "
          f"of word {SHINGLE_WORDS}-shingles, {NUM_PERM} permutations\n")
    head = ("input", "workers", "contender", "wall s", "cpu s", "docs/s", "MB/s", "peak PSS MiB", "kept", "exact dups",
            "near dups")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    inputs = list(result["inputs"])
    for r in sorted(result["rows"], key=lambda r: (inputs.index(r["input"]), r["workers"], r["contender"] != "ours")):
        print(f"| {r['input']} | {r['workers']} | {r['contender']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
              f"{r['docs_per_s']:,.0f} | "
              f"{r['mb_per_s']:.2f} | {r['peak_pss_mib']:,.0f} | {r['kept']:,} | {r['exact']:,} | {r['near']:,} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "datatrove":  # a reference's own process
        run_datatrove(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return
    if len(sys.argv) > 1 and sys.argv[1] in ("datasketch", "rensa"):
        (run_datasketch if sys.argv[1] == "datasketch" else run_rensa)(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender; the table shows medians")
    parser.add_argument("--copies", type=int, default=4, help="the larger input is the demo corpus this many times")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--reference-python", type=Path, default=REFERENCE_VENV / "bin" / "python",
                        help="python of the venv that holds the references")
    parser.add_argument("--references", nargs="*", default=[], choices=REFERENCES,
                        help="which to run (default: the first of these that imports)")
    args = parser.parse_args()
    references = available(args.reference_python, args.references)
    result = run(args.repeats, args.copies, args.workers, args.reference_python, references)
    print_table(result)
    save_result(result, "udatasets")


if __name__ == "__main__":
    main()
