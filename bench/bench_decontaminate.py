"""Benchmark decontamination: udatasets with and without `decontaminate` (the demo's three eval sets), the
contamination report, and lm-eval's own decontamination as the reference.

    .venv/bin/python bench/bench_decontaminate.py [--repeats 3] [--workers 1 2] [--ngram 13]

lm-eval's decontamination (lm_eval/decontamination/) imports `jsonlines`, which the project does not install;
the reference runs with it from a folder of its own, never installed into the project's venv:

    .venv/bin/python -m pip install --target /tmp/lmeval_extra jsonlines

The reference does what lm-eval's pipeline does: its scripts/clean_training_data write the training data's
13-grams (Janitor.normalize_string, word_ngrams) as sorted "<ngram> <document>" lines in .zst files, then
decontaminate.get_train_overlap builds a dict of each set's n-grams and scans those lines. Both parts are timed,
in one process. It finds contaminated eval items (not training records); its normalisation (ASCII lower case,
punctuation deleted) and its rule for short texts (none: a text under 13 words has no 13-gram) differ from ours,
so its counts are shown next to the report's eval_items_hit, not expected to equal them.

Every contender runs as its own process, timed from start to exit (start-up included), on the demo CPT and SFT
data; runs are interleaved, repeat by repeat, as in bench_udatasets.py: only figures from the same run compare.
Nothing about time is asserted.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import REPO, environment, machine_line, measure, save_result, summary_rows

# the demo's CPT text is a folder of one file per source (a raw dataset folder, as udatasets reads one)
INPUTS = {"cpt": REPO / "resources" / "demo" / "cpt", "sft": REPO / "resources" / "demo" / "sft.jsonl.gz"}
REFERENCE_PATH = Path("/tmp/lmeval_extra")
SETUP = f"{REPO}/.venv/bin/python -m pip install --target {REFERENCE_PATH} jsonlines"
# the schema's default, as the udatasets step uses it
MIN_WORDS = json.loads((REPO / "config/schemas/udatasets.schema.json").read_text())["properties"][
    "decontaminate_min_words"]["default"]
CONTENDERS = ("udatasets", "udatasets+decontaminate", "contamination report", "lm-eval")


def registered_sets() -> list[dict]:
    """The demo's registered sets that can be checked (not lm_eval), as a rule passes them (--evalsets)."""
    from llmrunner.evalsets import load_registry

    return [s.to_dict() for s in load_registry(REPO / "config" / "evalsets").values() if s.kind != "lm_eval"]


# --- the reference's own process (project venv + jsonlines) ---

def run_lm_eval(kind: str, path: Path, work: Path, evalsets_json: str, ngram: int) -> None:
    """lm-eval's decontamination of the eval sets against one training file; writes counts.json."""
    import zstandard
    from lm_eval.decontamination.decontaminate import get_train_overlap
    from lm_eval.decontamination.janitor import Janitor, word_ngrams

    from llmrunner.evalsets import EvalSet, decontamination_texts, read_items
    from llmrunner.jsonl import iter_records, resolve_inputs

    janitor = Janitor(ngram_n=ngram)
    lines = []
    records = (record for file in resolve_inputs(path) for _, record in iter_records(file))
    for number, record in enumerate(records, start=1):  # a document's n-grams, as generate_13_grams.py writes them
        text = record["text"] if kind == "cpt" else "\n".join(m["content"] for m in record["messages"])
        lines.extend(f"{gram} {number}\n" for gram in word_ngrams(janitor.normalize_string(text), ngram))
    lines.sort()  # as sort_13_gram_buckets.py
    grams = work / "ngrams"
    grams.mkdir()
    with open(grams / "ngrams_0.bkt.txt.sorted.zst", "wb") as out, zstandard.ZstdCompressor().stream_writer(out) as z:
        z.write("".join(lines).encode("utf-8"))
    (grams / "info.json").write_text(json.dumps({"ngram_size": ngram}))
    docs = {}
    for values in json.loads(evalsets_json):
        evalset = EvalSet.from_dict(values["name"], {k: v for k, v in values.items() if k != "name"})
        docs[(evalset.name, "test")] = ["\n".join(decontamination_texts(item)) for item in read_items(evalset)]
    (work / "data").mkdir()
    os.chdir(work)  # it caches lookups under ./data/<task>/ (and needs ./data to exist)
    overlap = get_train_overlap(docs, str(grams), limit=0)
    (work / "counts.json").write_text(json.dumps({name: len(ids) for name, ids in overlap.items()}))


# --- the harness (project venv) ---

def command(contender: str, kind: str, work: Path, workers: int, evalsets_json: str, ngram: int) -> list[str]:
    names = [s["name"] for s in json.loads(evalsets_json)]
    path = str(INPUTS[kind])
    if contender == "contamination report":
        return [sys.executable, "-m", "llmrunner.udatasets", "contamination", "--datasets", f"{kind}:demo={path}",
                "--evalsets", evalsets_json, "--ngram", str(ngram), "--min-words", str(MIN_WORDS),
                "--out", str(work / "contamination.json")]
    if contender == "lm-eval":
        return [sys.executable, __file__, "lm-eval", kind, path, str(work), evalsets_json, str(ngram)]
    settings = {"decontaminate": names, "decontaminate_ngram": ngram} if contender != "udatasets" else {}
    return [sys.executable, "-m", "llmrunner.udatasets", "--kind", kind, "--input", path, "--out",
            str(work / "kept.jsonl"), "--settings", json.dumps(settings), "--evalsets", evalsets_json,
            "--workers", str(workers)]


def outcome(contender: str, work: Path) -> dict:
    """What the contender found: records rejected as contaminated (udatasets), eval items hit per set."""
    if contender.startswith("udatasets"):
        stats = json.loads((work / "kept.stats.json").read_text())
        return {"kept": stats["kept"], "contaminated": {reason.split(":", 1)[1]: count for reason, count
                                                        in stats["rejected"].items() if reason.startswith("contam")}}
    if contender == "contamination report":
        pairs = json.loads((work / "contamination.json").read_text())["pairs"]
        return {"records_hit": {p["set"]: p["records_hit"] for p in pairs},
                "eval_items_hit": {p["set"]: p["eval_items_hit"] for p in pairs}}
    return {"eval_items_hit": json.loads((work / "counts.json").read_text())}


def run(repeats: int, worker_counts: list[int], ngram: int, reference: bool) -> dict:
    from llmrunner.jsonl import resolve_inputs

    evalsets_json = json.dumps(registered_sets())
    sizes = {}
    for kind, path in INPUTS.items():
        files = resolve_inputs(path)
        docs = 0
        for file in files:
            with gzip.open(file, "rb") as lines:
                docs += sum(1 for line in lines if line.strip())
        sizes[kind] = {"docs": docs, "bytes": sum(file.stat().st_size for file in files)}
    contenders = [c for c in CONTENDERS if reference or c != "lm-eval"]
    samples: dict[tuple[str, int, str], list[tuple[float, int]]] = {}
    results: dict[tuple[str, int, str], dict] = {}
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{REFERENCE_PATH}"}
    with tempfile.TemporaryDirectory(prefix="bench_decontaminate_") as tmp:
        for rep in range(repeats):
            for kind in INPUTS:
                for workers in worker_counts:
                    for contender in contenders:
                        if not contender.startswith("udatasets") and workers != worker_counts[0]:
                            continue  # one process: the worker count does not apply
                        work = Path(tmp) / f"{contender.replace(' ', '_')}_{kind}_{workers}_{rep}"
                        work.mkdir()
                        wall, peak = measure(command(contender, kind, work, workers, evalsets_json, ngram),
                                             env if contender == "lm-eval" else {"OMP_NUM_THREADS": "1"})
                        samples.setdefault((kind, workers, contender), []).append((wall, peak))
                        results[(kind, workers, contender)] = outcome(contender, work)
                        print(f"  repeat {rep + 1}/{repeats} {kind} w={workers} {contender:<24} {wall:6.2f} s "
                              f"{peak / 2**20:6.0f} MiB {results[(kind, workers, contender)]}", flush=True)
            contenders = contenders[1:] + contenders[:1]  # rotate: no contender always runs first or last
    rows = summary_rows(samples, sizes, lambda key: {"found": results[key]})
    return {**environment(("numpy", "lm_eval")), "repeats": repeats, "ngram": ngram,
            "sets": [s["name"] for s in json.loads(evalsets_json)], "inputs": sizes, "rows": rows}


def print_table(result: dict) -> None:
    print("\n" + machine_line(result))
    for name, size in result["inputs"].items():
        print(f"{name}: {size['bytes'] / 2**20:.1f} MiB gzip, {size['docs']} records")
    print(f"median of {result['repeats']} (wall time, start-up included); {result['ngram']}-grams against "
          f"{', '.join(result['sets'])}\n")
    head = ("input", "workers", "contender", "wall s", "records/s", "peak PSS MiB", "found")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    order = list(CONTENDERS)
    for r in sorted(result["rows"], key=lambda r: (r["input"], r["workers"], order.index(r["contender"]))):
        print(f"| {r['input']} | {r['workers']} | {r['contender']} | {r['wall_s']:.2f} | {r['docs_per_s']:,.0f} | "
              f"{r['peak_pss_mib']:,.0f} | {json.dumps(r['found'])} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "lm-eval":  # the reference's own process
        run_lm_eval(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5], int(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender; the table shows medians")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="udatasets worker processes")
    parser.add_argument("--ngram", type=int, default=13)
    args = parser.parse_args()
    reference = subprocess.run([sys.executable, "-c", "import lm_eval.decontamination.decontaminate"],
                               env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REFERENCE_PATH}"},
                               capture_output=True).returncode == 0
    if not reference:
        print(f"lm-eval's decontamination does not import (jsonlines missing?): measuring ours only. For it:\n"
              f"  {SETUP}")
    result = run(args.repeats, args.workers, args.ngram, reference)
    print_table(result)
    save_result(result, "decontaminate")


if __name__ == "__main__":
    main()
