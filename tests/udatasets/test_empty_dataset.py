"""A dataset left without records stops at the gather job, naming where its records went; an empty shard of
a dataset that has records is fine. The rejects, duplicates and stats stay readable after Snakemake deletes
the failed job's outputs (a link in `.failed/`, and the first rejects in the log)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmrunner.errors import StageError
from llmrunner.udatasets.__main__ import main
from tests.files import read_jsonl, write_jsonl
from tests.udatasets.shards import OUTPUTS, run_shards, words

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {"near_dedup": True, "near_shingle_words": 1, "near_threshold": 0.7, "min_chars": 8}


def gather(shard_files: list[Path], out: Path) -> subprocess.CompletedProcess:
    """The gather job as the workflow runs it: its own process, its stderr the job's log."""
    return subprocess.run([sys.executable, "-m", "llmrunner.udatasets", "gather", "--kind", "cpt", "--shard-files",
                           *map(str, shard_files), "--out", str(out), "--settings", json.dumps(SETTINGS)],
                          cwd=REPO, capture_output=True, text=True)


def test_every_record_rejected_or_duplicate_stops_the_gather_naming_where_they_went(tmp_path):
    out = tmp_path / "processed"
    first = write_jsonl(tmp_path / "raw" / "web" / "w.jsonl", [{"text": words(0, 20)}, {"text": words(40, 20)}])
    second = write_jsonl(tmp_path / "raw" / "forum" / "f.jsonl", [
        {"text": "   "},                     # 1 empty
        {"text": words(40, 20)},             # 2 exact duplicate of web:2
        {"text": "tiny"},                    # 3 too_short
        "\n",                                # blank: not a record
        {"text": words(0, 19, ["x"])},       # 5 near duplicate of web:1
        {"body": "no text"},                 # 6 missing_text
        {"text": ""},                        # 7 empty
    ])
    shards = run_shards(first.parent, out, "web", 2, SETTINGS) + run_shards(second.parent, out, "forum", 3, SETTINGS)
    job = gather(shards, out / "forum.jsonl")
    assert job.returncode == 1
    failed = out / ".failed"
    error = job.stderr.strip().splitlines()[-1]
    assert error == (
        f"error: dataset 'forum' has no record left: 6 read from f.jsonl, 4 rejected (reasons: empty 2, "
        f"missing_text 1, too_short 1; see {failed / 'forum.rejects.jsonl'}), 2 duplicates (exact 1, near 1) of "
        f"records kept in earlier datasets (web 2; see {failed / 'forum.duplicates.jsonl'}); counts per file in "
        f"{failed / 'forum.stats.json'}; fix the sources or the filters (steps/1.udatasets.yaml)")
    # the log has the counts and the first rejects and duplicates, with their lines
    assert "input 6 = kept 0 + rejected 4 + duplicates 1 exact, 1 near" in job.stderr
    assert '"line": 3, "reason": "too_short"' in job.stderr and '"line": 5, "kind": "near"' in job.stderr

    for name in OUTPUTS:  # what Snakemake does to a failed job's outputs
        (out / name.format("forum")).unlink()
    assert [r["reason"] for r in read_jsonl(failed / "forum.rejects.jsonl")] == [
        "empty", "too_short", "missing_text", "empty"]
    assert len(read_jsonl(failed / "forum.duplicates.jsonl")) == 2
    assert json.loads((failed / "forum.stats.json").read_text())["files"]["f.jsonl"]["blank_lines"] == 1

    # fixed (a record of its own): the gather passes, and the stale evidence goes
    write_jsonl(second, [{"text": words(60, 20)}])
    shards = shards[:2] + run_shards(second.parent, out, "forum", 3, SETTINGS)
    assert gather(shards, out / "forum.jsonl").returncode == 0
    assert read_jsonl(out / "forum.jsonl") == [{"text": words(60, 20)}]
    assert not list(failed.iterdir())


@pytest.mark.parametrize("form", ["gather", "one process"])
def test_an_empty_source_stops_the_dataset(tmp_path, form):
    raw = tmp_path / "raw" / "web"
    raw.mkdir(parents=True)
    (raw / "a.jsonl").write_bytes(b"")
    (raw / "b.jsonl").write_text("\n\n")
    out = tmp_path / "processed" / "web.jsonl"
    expected = r"dataset 'web' has no record left: 0 read from a.jsonl, b.jsonl \(only 2 blank lines\); the files"
    with pytest.raises(StageError, match=expected):
        if form == "gather":  # 3 shard jobs, each with nothing: fine; the gather decides
            main(["gather", "--kind", "cpt", "--shard-files", *map(str, run_shards(raw, out.parent, "web", 3, {})),
                  "--out", str(out)])
        else:
            main(["--kind", "cpt", "--input", str(raw), "--out", str(out)])
    assert json.loads((out.parent / ".failed" / "web.stats.json").read_text())["input"] == 0


def test_an_empty_shard_of_a_dataset_with_records_is_fine(tmp_path):
    raw = write_jsonl(tmp_path / "raw" / "web" / "a.jsonl", [{"text": words(0, 20)}])
    out = tmp_path / "processed"
    shards = run_shards(raw.parent, out, "web", 4, SETTINGS)  # shards 1 to 3 hold no record
    main(["gather", "--kind", "cpt", "--shard-files", *map(str, shards), "--out", str(out / "web.jsonl"),
          "--settings", json.dumps(SETTINGS)])
    assert read_jsonl(out / "web.jsonl") == [{"text": words(0, 20)}]
    assert not (out / ".failed").exists()
