"""udatasets at scale: token-length filters, near duplicates at the configured threshold, de-dup across the
datasets of an experiment naming the matched record, the accounting identity per file and in total, and the
same bytes out whatever the number of worker processes or shards (an empty shard among them)."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llmrunner.errors import ConfigError, StageError
from llmrunner.udatasets import shard
from llmrunner.udatasets.__main__ import main
from llmrunner.udatasets.adapters import builtin_adapter
from llmrunner.udatasets.core import gather_shards, map_and_gather, write_shard
from llmrunner.udatasets.dedup import DuplicateLines
from llmrunner.udatasets.near_dup import MinHashConfig
from llmrunner.udatasets.settings import UdatasetsSettings
from llmrunner.udatasets.shard import RecordRules, _as_worker
from tests.files import read_jsonl, write_jsonl
from tests.udatasets.shards import OUTPUTS, WORDS, run_shards, words


def outputs(folder: Path, dataset: str) -> dict[str, bytes]:
    return {name.format(dataset): (folder / name.format(dataset)).read_bytes() for name in OUTPUTS}


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory) -> Path:
    """An HF model folder holding a real word-level tokenizer (one token per word or punctuation run)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path_factory.mktemp("model")
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture
def mixed_raw(tmp_path) -> Path:
    """A raw folder of three formats with every fate: kept, rejected, exact and near duplicates, blank lines."""
    raw = tmp_path / "raw"
    write_jsonl(raw / "a.jsonl", [
        {"text": words(0, 20)},                        # 1 kept
        "\n",                                          # 2 blank
        {"text": "tiny"},                              # 3 too_short
        '{"text": "broken\n',                          # 4 invalid_json
        {"text": words(0, 20).upper()},                # 5 near duplicate of 1 (case-folded: identical)
        {"text": words(0, 20) + "  "},                 # 6 exact duplicate of 1
        {"text": words(30, 20)},                       # 7 kept
    ])
    (raw / "b.csv").write_text("text\n" + words(30, 19, ["x1"]) + "\n" + words(60, 20) + "\n", encoding="utf-8")
    (raw / "c.txt").write_text(words(0, 19, ["x2"]), encoding="utf-8")  # near duplicate of a.jsonl:1
    return raw


NEAR = MinHashConfig(threshold=0.7, shingle_words=1)


def test_accounting_identity_per_file_and_in_total(mixed_raw, tmp_path):
    stats = map_and_gather(sorted(mixed_raw.iterdir()), tmp_path / "mixed.jsonl",
                            RecordRules(builtin_adapter("text"), min_chars=10, minhash=NEAR))
    files = stats["files"]
    assert list(files) == ["a.jsonl", "b.csv", "c.txt"]
    assert files["a.jsonl"] == {"input": 6, "kept": 2, "rejected": {"invalid_json": 1, "too_short": 1},
                                "duplicates": {"exact": 1, "near": 1}, "blank_lines": 1}
    assert files["b.csv"]["duplicates"] == {"exact": 0, "near": 1} and files["b.csv"]["kept"] == 1
    assert files["c.txt"]["duplicates"] == {"exact": 0, "near": 1}
    for counts in [stats, *files.values()]:
        assert counts["input"] == counts["kept"] + sum(counts["rejected"].values()) + sum(counts["duplicates"].values())
    for key in ("input", "kept", "blank_lines"):
        assert stats[key] == sum(f[key] for f in files.values())
    assert (stats["input"], stats["kept"], stats["duplicates"]) == (9, 3, {"exact": 1, "near": 3})
    assert stats["duplicate_rate"] == pytest.approx(4 / 9, abs=1e-6)
    assert json.loads((tmp_path / "mixed.stats.json").read_text()) == stats
    duplicates = read_jsonl(tmp_path / "mixed.duplicates.jsonl")
    assert [(d["file"], d["line"], d["kind"], d["duplicate_of"]["file"], d["duplicate_of"]["line"])
            for d in duplicates] == [("a.jsonl", 5, "near", "a.jsonl", 1), ("a.jsonl", 6, "exact", "a.jsonl", 1),
                                     ("b.csv", 2, "near", "a.jsonl", 7), ("c.txt", 1, "near", "a.jsonl", 1)]
    chars = stats["lengths"]["chars"]
    assert chars["records"] == 3 and chars["histogram"] == [{"from": 64, "to": 127, "records": 3}]


def test_near_duplicates_at_the_configured_threshold(tmp_path):
    base = WORDS[:40]
    records = [{"text": " ".join(base)},                                     # 1 kept
               {"text": " ".join(base[:38] + ["x1", "x2"])},                 # 2 Jaccard 38/42 = 0.90 with 1
               {"text": " ".join(base[:24] + [f"y{i}" for i in range(16)])}]  # 3 Jaccard 24/56 = 0.43 with 1
    raw = write_jsonl(tmp_path / "raw.jsonl", records)

    def near_duplicates(threshold: float) -> list[int]:
        out = tmp_path / f"t{threshold}.jsonl"
        rules = RecordRules(builtin_adapter("text"), minhash=MinHashConfig(threshold=threshold, shingle_words=1))
        map_and_gather([raw], out, rules)
        return [d["line"] for d in read_jsonl(out.with_name(f"t{threshold}.duplicates.jsonl"))]

    assert near_duplicates(0.98) == []
    assert near_duplicates(0.8) == [2]
    assert near_duplicates(0.3) == [2, 3]
    exact_only = map_and_gather([raw], tmp_path / "exact.jsonl", RecordRules(builtin_adapter("text")))
    assert exact_only["duplicates"] == {"exact": 0, "near": 0}


def test_a_duplicate_always_names_a_kept_record_and_repeats_cost_only_their_hash(tmp_path):
    raw = write_jsonl(tmp_path / "a.jsonl", [{"text": words(0, 20)}, {"text": words(0, 19, ["x"])},
                                             {"text": words(0, 19, ["x"]) + "\n"}])
    rules = RecordRules(builtin_adapter("text"), minhash=NEAR, drop_repeats=True)
    for dedup in ("exact", "none"):
        map_and_gather([raw], tmp_path / f"{dedup}.jsonl", rules, dedup=dedup)
        duplicates = read_jsonl(tmp_path / f"{dedup}.duplicates.jsonl")
        # line 3 repeats line 2, which was not kept: it is a near duplicate of line 1, as line 2 is
        assert [(d["line"], d["kind"], d["duplicate_of"]["line"]) for d in duplicates] == [(2, "near", 1),
                                                                                          (3, "near", 1)]
    write_shard([raw], tmp_path / "s.jsonl", rules, "a", 0, 1)
    lines = [line.split(b"\t") for line in (tmp_path / "s.jsonl").read_bytes().splitlines()[1:-1]]
    metas = [json.loads(meta) for meta, _ in lines]
    # the repeat: its hash (that of line 2) and whether cleaning changed it, no signature, no record
    assert metas[2] == {"s": "d", "f": 0, "n": 3, "c": 1, "h": metas[1]["h"]} and lines[2][1] == b""
    assert [m["s"] for m in metas] == ["k", "k", "d"] and None not in (metas[0]["m"], metas[1]["m"])
    with pytest.raises(StageError, match="de-dup is off in the gather but was on in the map jobs"):
        gather_shards([tmp_path / "s.jsonl"], tmp_path / "a.jsonl", dedup="none")


@pytest.mark.parametrize("chunk_items", [1, 256])
def test_dropping_repeats_in_the_map_job_changes_no_output(tmp_path, word_tokenizer, monkeypatch, chunk_items):
    """Repeats of every kind, with and without the filters that read a record's contents as they are: the outputs
    are the bytes they are when every record is checked in full. Chunks of one item or of all: with a token
    filter, a record is known to be kept only once its chunk is filtered, so only later chunks drop its repeats."""
    monkeypatch.setattr(shard, "CHUNK_ITEMS", chunk_items)
    raw = write_jsonl(tmp_path / "raw" / "a.jsonl", [
        {"text": words(0, 20), "id": 1},                 # 1 kept
        {"text": words(0, 20), "id": 2},                 # 2 exact duplicate of 1 (a repeat: its hash alone)
        {"text": words(0, 20), "id": 3},                 # 3 exact duplicate of 1
        {"text": words(0, 3)},                           # 4 too_few_tokens
        {"text": words(0, 3)},                           # 5 too_few_tokens again (never kept: checked in full)
        {"text": words(30, 8).replace(" ", "  ", 1)},    # 6 kept
        {"text": words(30, 8)},                          # 7 exact duplicate of 6 (other spacing: checked in full)
        {"text": words(0, 19, ["x"])},                   # 8 near duplicate of 1
        {"text": words(0, 19, ["x"]) + "  "},            # 9 near duplicate of 1 (a repeat of 8)
        '{"text": "\\ud800 w50 w51 w52 w53 w54 w55"}\n',   # 10 invalid_unicode
        '{"text": "\\ud800 w50 w51 w52 w53 w54 w55"}\n',   # 11 invalid_unicode
    ])
    # 1 not_json_serialisable (a NaN, which only a parquet or Arrow file holds): the rest of a repeat must encode too
    pq.write_table(pa.table({"text": [words(0, 20)], "score": [float("nan")]}), raw.parent / "b.parquet")
    for settings in ({"near_dedup": True, "near_shingle_words": 1, "near_threshold": 0.7},
                     {"near_dedup": True, "near_shingle_words": 1, "near_threshold": 0.7, "min_tokens": 4}):
        results = []
        for drop in (True, False):
            out = tmp_path / f"{drop}" / "d.jsonl"
            rules = UdatasetsSettings.from_dict(settings).record_rules("cpt", "d", word_tokenizer)
            assert rules.drop_repeats
            map_and_gather([raw, raw.parent / "b.parquet"], out, replace(rules, drop_repeats=drop))
            results.append(outputs(out.parent, "d"))
        assert results[0] == results[1]
        write_shard([raw], tmp_path / "s.jsonl", rules, "d", 0, 1)
        metas = [json.loads(line.split(b"\t")[0]) for line in (tmp_path / "s.jsonl").read_bytes().splitlines()[1:-1]]
        # with a token filter, 5 repeats a record that was not kept, 7 has other contents: both are checked in full
        dropped = [2, 3, 5, 7, 9] if "min_tokens" not in settings else [2, 3, 9] if chunk_items == 1 else []
        assert [m["n"] for m in metas if m["s"] == "d"] == dropped
        stats = json.loads(results[0]["d.stats.json"])
        assert stats["duplicates"] == {"exact": 3 if "min_tokens" in settings else 4, "near": 2}
        assert stats["rejected"] == {"invalid_unicode": 2, "not_json_serialisable": 1,
                                     **({"too_few_tokens": 2} if "min_tokens" in settings else {})}


def test_duplicate_lines_are_json_dumps_lines():
    lines = DuplicateLines(['a "quoted" file.jsonl', "caf\u00e9.jsonl"], ["old", "n\u00e9w\\set"],
                           {0: ["x.jsonl"], 1: ['a "quoted" file.jsonl', "caf\u00e9.jsonl"]})
    for own, line, kind, dataset, file, matched in [(0, 3, "exact", 0, 0, 1), (1, 12, "near", 1, 0, 2),
                                                   (1, 13, "near", 1, 0, 2), (0, 4, "near", 0, 0, 9)]:
        files = [["x.jsonl"], ['a "quoted" file.jsonl', "caf\u00e9.jsonl"]]
        expected = {"file": files[1][own], "line": line, "kind": kind,
                    "duplicate_of": {"dataset": ["old", "n\u00e9w\\set"][dataset], "file": files[dataset][file],
                                     "line": matched}}
        assert lines(own, line, kind, dataset, file, matched) == \
            json.dumps(expected, ensure_ascii=False).encode("utf-8") + b"\n"


def test_token_filters_count_with_the_base_model_tokenizer(tmp_path, word_tokenizer):
    raw = write_jsonl(tmp_path / "raw" / "a.jsonl", [
        {"text": words(0, 3)},   # 1 too_few_tokens (3 < 4)
        {"text": words(10, 5)},  # 2 kept
        {"text": words(20, 6)},  # 3 kept
        {"text": words(30, 7)},  # 4 too_many_tokens (7 > 6)
        {"text": "w1, w2."},     # 5 too_few_tokens: 4 tokens (w1 , w2 .)
    ])
    out = tmp_path / "cpt" / "d.jsonl"
    main(["--kind", "cpt", "--input", str(raw.parent), "--out", str(out), "--tokenizer", str(word_tokenizer),
          "--settings", json.dumps({"min_chars": 1, "min_tokens": 5, "max_tokens": 6})])
    stats = json.loads(out.with_name("d.stats.json").read_text())
    assert stats["rejected"] == {"too_few_tokens": 2, "too_many_tokens": 1} and stats["kept"] == 2
    assert [r["line"] for r in read_jsonl(out.with_name("d.rejects.jsonl"))] == [1, 4, 5]
    assert stats["lengths"]["tokens"] == {"records": 2, "min": 5, "max": 6, "mean": 5.5,
                                          "histogram": [{"from": 4, "to": 7, "records": 2}]}

    chats = write_jsonl(tmp_path / "raw_sft" / "c.jsonl", [  # SFT: the sum over the message contents
        {"messages": [{"role": "user", "content": words(0, 2)}, {"role": "assistant", "content": words(5, 3)}]},
        {"messages": [{"role": "user", "content": words(0, 2)}, {"role": "assistant", "content": words(5, 2)}]},
    ])
    out = tmp_path / "sft" / "c.jsonl"
    main(["--kind", "sft", "--input", str(chats), "--out", str(out), "--tokenizer", str(word_tokenizer),
          "--settings", json.dumps({"min_tokens": 5})])
    assert [r["reason"] for r in read_jsonl(out.with_name("c.rejects.jsonl"))] == ["too_few_tokens"]


def test_token_filter_without_a_tokenizer_is_a_config_error(tmp_path):
    raw = write_jsonl(tmp_path / "a.jsonl", [{"text": "some words"}])
    with pytest.raises(ConfigError, match="min_tokens / max_tokens are set.*--tokenizer"):
        main(["--kind", "cpt", "--input", str(raw), "--out", str(tmp_path / "o.jsonl"),
              "--settings", json.dumps({"max_tokens": 10})])
    with pytest.raises(ConfigError, match=r"max_tokens \(3\) is below min_tokens \(4\)"):
        UdatasetsSettings.from_dict({"min_tokens": 4, "max_tokens": 3})
    with pytest.raises(ConfigError, match="key 'near_threshold': 0 is less than or equal to the minimum of 0"):
        UdatasetsSettings.from_dict({"near_threshold": 0})


def test_dedup_across_datasets_names_the_matched_record(tmp_path):
    settings = {"near_dedup": True, "near_shingle_words": 1, "near_threshold": 0.7, "min_chars": 1}
    first = write_jsonl(tmp_path / "raw" / "first" / "f.jsonl", [{"text": words(0, 20)}, {"text": words(40, 20)}])
    second = write_jsonl(tmp_path / "raw" / "second" / "s.jsonl", [
        {"text": words(50, 20)},             # 1 kept (shares half with first:2)
        {"text": words(40, 20)},             # 2 exact duplicate of first:2
        {"text": words(0, 19, ["x"])},       # 3 near duplicate of first:1
        {"text": words(50, 20)},             # 4 exact duplicate of its own line 1
    ])
    out = tmp_path / "processed"
    first_shards = run_shards(first.parent, out, "first", 2, settings)
    second_shards = run_shards(second.parent, out, "second", 2, settings)
    main(["gather", "--kind", "cpt", "--shard-files", *map(str, first_shards + second_shards),
          "--out", str(out / "second.jsonl"), "--settings", json.dumps(settings)])
    assert read_jsonl(out / "second.duplicates.jsonl") == [
        {"file": "s.jsonl", "line": 2, "kind": "exact",
         "duplicate_of": {"dataset": "first", "file": "f.jsonl", "line": 2}},
        {"file": "s.jsonl", "line": 3, "kind": "near",
         "duplicate_of": {"dataset": "first", "file": "f.jsonl", "line": 1}},
        {"file": "s.jsonl", "line": 4, "kind": "exact",
         "duplicate_of": {"dataset": "second", "file": "s.jsonl", "line": 1}}]
    stats = json.loads((out / "second.stats.json").read_text())
    assert stats["duplicates_by_dataset"] == {"first": {"exact": 1, "near": 1}, "second": {"exact": 1, "near": 0}}
    assert read_jsonl(out / "second.jsonl") == [{"text": words(50, 20)}]
    with pytest.raises(ConfigError, match="the last shard files must be those of 'first'"):
        gather_shards(first_shards + second_shards, out / "first.jsonl")


def test_shard_files_that_do_not_belong_together_are_refused(tmp_path):
    raw = write_jsonl(tmp_path / "raw" / "a.jsonl", [{"text": words(i, 5)} for i in range(5)])
    out = tmp_path / "processed"
    shards = run_shards(raw.parent, out, "a", 3, {})
    with pytest.raises(StageError, match="2 shard files given .* written as 3 shards"):
        gather_shards(shards[:2], out / "a.jsonl")
    with pytest.raises(StageError, match="shard 2 of 3 .* does not follow"):
        gather_shards([shards[0], shards[2], shards[1]], out / "a.jsonl")
    shards[1].write_bytes(shards[1].read_bytes().rsplit(b"\n", 2)[0] + b"\n")  # cut off the end marker
    with pytest.raises(StageError, match="ends without its end marker"):
        gather_shards(shards, out / "a.jsonl")


SCALE_SETTINGS = {"near_dedup": True, "near_shingle_words": 2, "near_threshold": 0.6, "min_chars": 12,
                  "min_tokens": 3}


@pytest.fixture
def scale_raw(tmp_path) -> Path:
    """Twelve files of records with every fate, and an empty file."""
    raw = tmp_path / "raw"
    for f in range(10):
        write_jsonl(raw / f"part{f:02d}.jsonl", [
            {"text": words((f * 7 + i) % 60, 8 + i % 5)} if i % 6 else "\n" for i in range(13)])
    (raw / "part10.csv").write_text("text\n" + "\n".join(words(i, 9) for i in range(0, 40, 3)) + "\n")
    (raw / "part11.jsonl").write_text("")
    write_jsonl(raw / "part12.jsonl", ['{"text": "broken\n', {"text": "tiny"}, {"text": "unknownwordsonly"},
                                       {"text": "alpha beta gamma delta"}, {"text": "alpha beta  gamma delta"}])
    return raw


def test_worker_processes_do_not_change_the_output(scale_raw, tmp_path, word_tokenizer):
    results = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}" / "d.jsonl"
        main(["--kind", "cpt", "--input", str(scale_raw), "--out", str(out), "--workers", str(workers),
              "--tokenizer", str(word_tokenizer), "--settings", json.dumps(SCALE_SETTINGS)])
        results.append(outputs(out.parent, "d"))
    assert results[0] == results[1]
    stats = json.loads(results[0]["d.stats.json"])
    assert stats["kept"] and stats["rejected"] and stats["duplicates"]["exact"] and stats["duplicates"]["near"]


def test_with_workers_a_repeat_stops_at_its_hash_whichever_worker_kept_its_record(tmp_path, monkeypatch):
    """Each worker checks every other chunk; what one keeps reaches the others through the parent (KeptLog), so a
    repeat of a record kept by the other worker is settled as a `d` line too (the exact-copies case: most lines),
    and the output is that of one process."""
    monkeypatch.setattr(shard, "CHUNK_ITEMS", 1)
    raw = write_jsonl(tmp_path / "a.jsonl", [{"text": words(0, 20), "id": 0}]
                      + [{"text": words(i, 6), "id": i} for i in range(1, 20)]
                      + [{"text": words(0, 20), "id": i} for i in range(20, 30)])
    rules = RecordRules(builtin_adapter("text"), minhash=NEAR, drop_repeats=True)
    write_shard([raw], tmp_path / "s.jsonl", rules, "a", 0, 1, workers=2)
    metas = [json.loads(line.split(b"\t")[0]) for line in (tmp_path / "s.jsonl").read_bytes().splitlines()[1:-1]]
    # lines 21-30 (chunks 20-29) fall to both workers; line 1 (chunk 0) was kept by the first
    assert [m["s"] for m in metas[20:]] == ["d"] * 10 and {m["h"] for m in metas[20:]} == {metas[0]["h"]}
    for workers in (1, 2):
        map_and_gather([raw], tmp_path / f"w{workers}" / "a.jsonl", rules, workers=workers)
    assert outputs(tmp_path / "w1", "a") == outputs(tmp_path / "w2", "a")


def test_an_error_in_a_worker_stops_the_job_with_its_traceback(tmp_path):
    """A custom adapter that raises: the parent raises the worker's exception, which names where it happened."""
    def adapter(record: dict) -> tuple[dict | None, str | None]:
        if record["text"] == "boom":
            raise KeyError("no such field")
        return {"text": record["text"]}, None

    raw = write_jsonl(tmp_path / "a.jsonl", [{"text": words(i, 6)} for i in range(300)] + [{"text": "boom"}])
    with pytest.raises(KeyError, match="no such field") as raised:
        map_and_gather([raw], tmp_path / "out" / "a.jsonl", RecordRules(adapter, drop_repeats=True), workers=2)
    assert any("in a udatasets worker process" in note and "adapter" in note for note in raised.value.__notes__)


def test_a_worker_that_dies_is_a_clear_error(tmp_path):
    def adapter(record: dict) -> tuple[dict | None, str | None]:
        if record["text"] == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        return {"text": record["text"]}, None

    raw = write_jsonl(tmp_path / "a.jsonl", [{"text": words(i, 6)} for i in range(300)] + [{"text": "die"}])
    with pytest.raises(StageError, match="worker process ended without finishing"):
        map_and_gather([raw], tmp_path / "out" / "a.jsonl", RecordRules(adapter), workers=2)


def test_a_worker_process_ends_on_sigterm_whatever_its_parent_does_with_it():
    """A forked worker inherits Python signal handlers; one that keeps SIGTERM from ending it (a test session
    turning it into KeyboardInterrupt hung CI) makes the parent, which ends its workers with SIGTERM when it stops
    early, wait forever. The worker start resets it."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        _as_worker()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("shards", [2, 3, 200])  # 200: more shards than records, so most are empty
def test_sharded_output_equals_unsharded_byte_for_byte(scale_raw, tmp_path, word_tokenizer, shards):
    settings = {**SCALE_SETTINGS}
    one = tmp_path / "one" / "d.jsonl"
    main(["--kind", "cpt", "--input", str(scale_raw), "--out", str(one), "--tokenizer", str(word_tokenizer),
          "--settings", json.dumps(settings)])
    folder = tmp_path / "sharded"
    files = [folder / ".shards" / f"d.{i}-of-{shards}.jsonl" for i in range(shards)]
    for i, path in enumerate(files):
        write_shard(sorted(scale_raw.iterdir()), path,
                    UdatasetsSettings.from_dict(settings).record_rules("cpt", "d", word_tokenizer), "d", i, shards)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An open-file limit below the shard count (the usual soft 1,024 against thousands of shards), in a process
    # that already holds files of its own: the gather holds every shard file open, and raises the limit itself.
    with ExitStack() as held:
        for _ in range(60):
            held.enter_context(open(os.devnull))
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 100), hard))
        try:
            gather_shards(files, folder / "d.jsonl", near=UdatasetsSettings.from_dict(settings).minhash())
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert outputs(folder, "d") == outputs(one.parent, "d")


def test_more_shards_than_the_hard_open_file_limit_is_a_clear_error(tmp_path):
    # In a child process: lowering the hard limit cannot be undone without privileges.
    script = f"""
import resource
from pathlib import Path
from llmrunner.cli import run_main
from llmrunner.udatasets.core import gather_shards

resource.setrlimit(resource.RLIMIT_NOFILE, (64, 128))
shards = [Path("{tmp_path}") / f"d.{{i}}-of-500.jsonl" for i in range(500)]
run_main(lambda argv: gather_shards(shards, Path("{tmp_path}") / "d.jsonl"))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "reads 500 shard files at once" in result.stderr and "lower `shards`" in result.stderr, result.stderr


def test_sft_augmentation_follows_the_kept_records(tmp_path):
    def chat(question: str, answer: str) -> dict:
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}

    raw = write_jsonl(tmp_path / "raw" / "c.jsonl", [chat("Hi there?", "Hello."), chat("Sum of 1 and 2?", "3"),
                                                     chat("Hi there?", "Hello.")])
    out = tmp_path / "sft" / "c.jsonl"
    augment = {"system_prompt_fraction": 1, "system_prompts": ["Be brief."]}
    main(["--kind", "sft", "--input", str(raw), "--out", str(out),
          "--settings", json.dumps({"augment": augment, "min_chars": 1})])
    records = read_jsonl(out)
    stats = json.loads(out.with_name("c.stats.json").read_text())
    assert (stats["kept"], stats["augmented"], stats["duplicates"]["exact"]) == (2, 2, 1)
    assert records[:2] == [chat("Hi there?", "Hello."), chat("Sum of 1 and 2?", "3")]  # originals first
    assert records[2]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert records[3]["augmentation"] == {"kind": "system_prompt",
                                          "from": [{"dataset": "c", "file": "c.jsonl", "line": 2}]}
    assert not list(out.parent.glob("*.tmp"))
