"""The logs of udatasets and tokenize, as a workflow job writes them (stderr to a file): progress lines with
totals, without carriage returns. A udatasets map job counts the bytes of its (compressed) input, the gather
job the records of the shard files; tokenize counts the documents that udatasets kept, or the input's bytes
when it reads a raw folder."""
from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from tests.paths import REPO

TEXTS = [f"Document {i}: " + "some words to read " * (i % 7 + 1) for i in range(40)]


def run_logged(module: str, args: list[str], log: Path) -> str:
    """Run `python -m MODULE ARGS` as a rule does (`> {log} 2>&1`); the log's text."""
    with open(log, "wb") as stream:
        subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, stdout=stream, stderr=subprocess.STDOUT,
                       check=True, timeout=120)
    text = log.read_bytes().decode("utf-8")
    assert "\r" not in text
    return text


def progress_lines(log: str, desc: str) -> list[str]:
    return [line.split(" INFO ", 1)[1] for line in log.splitlines() if f"INFO {desc}: " in line]


def test_udatasets_then_tokenize_log_progress_with_totals(tiny_tokenizer_dir, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    lines = "".join(json.dumps({"text": t}) + "\n" for t in TEXTS + TEXTS[:5])  # 5 exact duplicates
    (raw / "a.jsonl.gz").write_bytes(gzip.compress(lines.encode("utf-8"), mtime=0))
    processed = tmp_path / "processed" / "demo.jsonl"
    stored = tqdm.format_sizeof((raw / "a.jsonl.gz").stat().st_size, "B")  # the gzip file's size on disk
    whole = re.escape(f"{stored}/{stored}")

    # the workflow's udatasets jobs: two map jobs, each reading the whole input (the second with worker processes,
    # which read it themselves and report where they are), and the gather job
    shards = [tmp_path / "processed" / ".shards" / f"demo.{i}-of-2.jsonl" for i in range(2)]
    for i, shard in enumerate(shards):
        log = run_logged("llmrunner.udatasets", ["shard", "--kind", "cpt", "--input", str(raw), "--dataset", "demo",
                                                 "--shard", str(i), "--shards", "2", "--out", str(shard),
                                                 "--workers", str(i + 1)],
                         tmp_path / f"udatasets_shard.{i}.log")
        shown = progress_lines(log, f"udatasets demo shard {i} of 2")
        assert shown[0] == f"udatasets demo shard {i} of 2: 0B/{stored} (0%), ? B/s, ETA ?"
        assert re.fullmatch(rf"udatasets demo shard {i} of 2: {whole} \(100%\), \S+B/s, ETA 0:00:00, "
                            rf"{23 - i} records", shown[-1])  # every other of the 45 lines
    log = run_logged("llmrunner.udatasets", ["gather", "--kind", "cpt", "--shard-files", *map(str, shards),
                                             "--out", str(processed)], tmp_path / "udatasets.log")
    shown = progress_lines(log, "udatasets demo gather")
    assert shown[0] == "udatasets demo gather: 0/45 records (0%), ? records/s, ETA ?"
    assert re.fullmatch(r"udatasets demo gather: 45/45 records \(100%\), \S+ records/s, ETA 0:00:00", shown[-1])

    tokenize = ["cpt", "--tokenizer", str(tiny_tokenizer_dir), "--settings", '{"threads": 1}']
    log = run_logged("llmrunner.tokenize", [*tokenize, "--input", str(processed), "--out-prefix",
                                            str(tmp_path / "tok" / "demo")], tmp_path / "tokenize.log")
    shown = progress_lines(log, "tokenize cpt demo")
    assert shown[0] == "tokenize cpt demo: 0/40 documents (0%), ? documents/s, ETA ?"  # the 40 udatasets kept
    assert re.fullmatch(r"tokenize cpt demo: 40/40 documents \(100%\), \S+ documents/s, ETA 0:00:00", shown[-1])

    # a tokenize shard job: the lines it counted to split the input
    log = run_logged("llmrunner.tokenize", [*tokenize, "--input", str(processed), "--shard", "1", "--shards", "2",
                                            "--out-prefix", str(tmp_path / "tok" / "demo.1-of-2")],
                     tmp_path / "tokenize_shard.log")
    assert progress_lines(log, "tokenize cpt demo.1-of-2")[-1].startswith(
        "tokenize cpt demo.1-of-2: 20/20 documents (100%), ")

    # udatasets off: tokenize reads the raw folder, whose size it knows, not its documents
    log = run_logged("llmrunner.tokenize", [*tokenize, "--input", str(raw), "--out-prefix",
                                            str(tmp_path / "tok" / "raw")], tmp_path / "tokenize_raw.log")
    shown = progress_lines(log, "tokenize cpt raw")
    assert shown[0] == f"tokenize cpt raw: 0B/{stored} (0%), ? B/s, ETA ?"
    assert re.fullmatch(rf"tokenize cpt raw: {whole} \(100%\), \S+B/s, ETA 0:00:00, 45 documents",
                        shown[-1])
