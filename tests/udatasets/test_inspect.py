"""scripts/inspect_data.py: every raw shape gets the adapter that fits it, and the suggested entry, pasted into a
pipeline.yaml, is valid and accepts the records in udatasets' own adapter; bad input is one line and exit 1."""
from __future__ import annotations

import csv
import glob
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from llmrunner.errors import StageError
from llmrunner.schemas import load_schema, schema_problems
from llmrunner.udatasets.inspect import inspect_source, render
from llmrunner.udatasets.readers import iter_raw
from llmrunner.udatasets.settings import UdatasetsSettings
from tests.paths import REPO

SCRIPT = REPO / "scripts/inspect_data.py"
DOC = "A paragraph of a document, long enough to be the main text of the record. " * 3


def jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."}]
# (file name, writer, records, expected adapter, expected keys): one shape per built-in adapter, in a different
# format each, so that every reader is used.
SHAPES = {
    "text": ("docs.jsonl", lambda p, rs: p.write_bytes(jsonl(rs)),
             [{"id": f"d{i}", "url": f"https://example.org/{i}", "text": f"{i} {DOC}"} for i in range(8)],
             "text", {"text_key": "text"}),
    "nested_text": ("web.parquet", lambda p, rs: pq.write_table(pa.Table.from_pylist(rs), p),
                    [{"id": i, "meta": {"title": f"Doc {i}", "body": f"{i} {DOC}", "lang": "en"}} for i in range(8)],
                    "text", {"text_key": "meta.body"}),
    "messages": ("chat.jsonl.zst", lambda p, rs: p.write_bytes(zstandard.ZstdCompressor().compress(jsonl(rs))),
                 [{"id": i, "messages": CHAT} for i in range(8)], "messages", {}),
    "sharegpt": ("sg.json", lambda p, rs: p.write_text(json.dumps(rs)),
                 [{"id": i, "conversations": [{"from": "human", "value": f"Q{i}?"}, {"from": "gpt", "value": "A."}]}
                  for i in range(8)], "sharegpt", {}),
    "alpaca": ("alpaca.csv", write_csv,
               [{"instruction": f"Do {i}.", "input": "" if i % 2 else "with this", "output": "Done."}
                for i in range(8)], "alpaca", {}),
    "prompt_response": ("qa.jsonl.gz", lambda p, rs: p.write_bytes(gzip.compress(jsonl(rs), mtime=0)),
                        [{"id": i, "question": f"Why {i}?", "answer": "Because."} for i in range(8)],
                        "prompt_response", {"prompt_key": "question", "response_key": "answer"}),
}


def pasted_entry(report: str) -> tuple[str, str, dict]:
    """(kind, name, entry) of the YAML the report suggests, checked as pipeline.yaml's `data` section."""
    data = yaml.safe_load(report[report.index("\ndata:\n"):])["data"]
    pipeline = load_schema("pipeline")
    assert schema_problems(data, {"$defs": pipeline["$defs"], **pipeline["properties"]["data"]}, "pasted") == []
    [(kind, datasets)] = data.items()
    [(name, entry)] = datasets.items()
    return kind, name, entry


def accepted(entry: dict, kind: str, name: str, path: Path) -> tuple[int, int]:
    """(records udatasets' adapter, built from the entry as the workflow builds it, accepts; records)."""
    reading = {k: v for k, v in entry.items() if k != "sources"}
    adapter = UdatasetsSettings.from_dict(reading).make_adapter(kind, name)
    records = [item.record for item in iter_raw(path, reading.get("txt_mode", "document"))]
    return sum(adapter(r)[0] is not None for r in records), len(records)


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_gets_its_adapter_and_the_entry_accepts_the_records(tmp_path, shape):
    name, write, records, adapter, keys = SHAPES[shape]
    path = tmp_path / name
    write(path, records)
    result = inspect_source(path, samples=2)
    assert (result.suggestion.adapter, result.suggestion.keys) == (adapter, keys)
    assert result.suggestion.accepted == result.records == len(records)
    report = render(result)
    kind, _, entry = pasted_entry(report)
    assert {k: v for k, v in entry.items() if k not in ("sources", "adapter")} == keys
    assert entry["adapter"] == adapter and glob.glob(entry["sources"][0]) == [str(path)]
    assert accepted(entry, kind, "d", path) == (len(records), len(records))
    assert f"items: {len(records)} (all of them)" in report and f"\n[{name}:" in report
    assert "median" in report


def test_keys_show_nested_paths_types_and_fill(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(jsonl([{"meta": {"body": DOC, "n": 1}, "tags": ["a"]}, {"meta": {"body": DOC, "n": None},
                                                                                   "turns": [{"speaker": "x"}]}]))
    result = inspect_source(path)
    assert {p: (s.records, dict(s.types)) for p, s in result.keys.items()} == {
        "meta": (2, {"object": 2}), "meta.body": (2, {"string": 2}), "meta.n": (2, {"integer": 1, "null": 1}),
        "tags": (1, {"list of strings": 1}), "turns": (1, {"list of objects": 1}),
        "turns[].speaker": (1, {"string": 1})}
    assert re.search(r"\n  meta\.n +100\.0% +integer 50%, null 50%\n", render(result))


def test_alpaca_is_preferred_to_prompt_response_over_the_same_keys(tmp_path):
    name, write, records, *_ = SHAPES["alpaca"]
    write(tmp_path / name, records)
    result = inspect_source(tmp_path / name)
    tried = {c.label(): c.accepted for c in result.candidates}
    assert tried["prompt_response (prompt_key: instruction, response_key: output)"] == len(records)
    assert result.suggestion.adapter == "alpaca"


def test_paragraphs_of_a_txt_file_and_its_txt_mode_in_the_entry(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("First paragraph.\n\nSecond one,\non two lines.\n\n\nThird.\n")
    result = inspect_source(path, txt_mode="paragraphs")
    assert result.records == 3 and result.suggestion.label() == "text (text_key: text)"
    kind, name, entry = pasted_entry(render(result))
    assert entry["txt_mode"] == "paragraphs" and accepted(entry, kind, name, path) == (3, 3)
    assert "txt_mode" not in pasted_entry(render(inspect_source(path)))[2]  # the default is left out


@pytest.mark.parametrize("records, why", [
    ([{"id": i, "tokens": [1, 2, 3], "labels": ["x"]} for i in range(4)], "no string field"),
    # a conversation under a key the chat adapters do not read: the string beside it (an id) is no text
    ([{"id": f"c{i}", "chat": {"turns": CHAT}} for i in range(4)], "a list of chat turns at chat.turns"),
    # messages present, but in an order no chat template can train on
    ([{"messages": CHAT[::-1]} for _ in range(4)], "the closest, messages, accepts 0 of 4"),
])
def test_a_shape_no_builtin_adapter_fits_asks_for_a_custom_adapter(tmp_path, records, why):
    path = tmp_path / "odd.jsonl"
    path.write_bytes(jsonl(records))
    result = inspect_source(path)
    assert result.suggestion is None and why in result.why_none
    report = render(result)
    assert "no built-in adapter fits" in report and "docs/examples/udatasets_adapter.py" in report
    assert pasted_entry(report.replace("cpt or sft", "sft"))[2]["adapter"] == "custom"


def test_a_folder_is_read_in_name_order_and_its_entry_globs_each_format(tmp_path):
    name, write, records, *_ = SHAPES["text"]
    write(tmp_path / "a.jsonl", records[:3])
    write_csv(tmp_path / "b.csv", records[3:])
    (tmp_path / "notes.md").write_text("not data")
    result = inspect_source(tmp_path, samples=10)
    assert [w for w, _ in result.samples][2:4] == ["a.jsonl:3", "b.csv:2"] and result.suggestion.adapter == "text"
    entry = pasted_entry(render(result))[2]
    assert entry["sources"] == [f"{tmp_path}/*.csv", f"{tmp_path}/*.jsonl"]


def test_only_max_records_are_read_and_the_report_says_so(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b'{"text": "one"}\n\n' * 10 + b"broken\n")
    result = inspect_source(path, max_records=4)
    assert (result.items, result.truncated, result.suggestion.accepted) == (4, True, 4)
    assert "the first 4 only (--max-records 4); the source holds more" in render(result)
    result = inspect_source(path)
    assert (result.items, result.truncated, dict(result.unusable)) == (11, False, {"invalid_json": 1})


def test_long_strings_and_lists_are_shortened_in_samples(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_bytes(jsonl([{"text": "x" * 1000, "ids": list(range(20)), "bad": "\ud800"}]))
    report = render(inspect_source(path))
    assert '"x' + "x" * 159 + '... [+840 chars]"' in report and '"... [+14 items]"' in report
    assert "\\ud800" in report  # a lone surrogate is printed escaped, not as an encoding error


@pytest.mark.parametrize("demo, adapter", [("cpt/python-docs.jsonl.gz", "text"), ("sft.jsonl.gz", "messages")])
def test_the_demo_data(demo, adapter):
    result = inspect_source(REPO / "resources/demo" / demo)
    assert result.suggestion.adapter == adapter and result.suggestion.accepted == result.records > 1000
    kind, _, entry = pasted_entry(render(result))
    assert entry["sources"] == [f"resources/demo/{demo}"] and kind == {"text": "cpt", "messages": "sft"}[adapter]


def run_script(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True)


def test_the_script_on_the_demo_sft_data():
    proc = run_script("resources/demo/sft.jsonl.gz", "-n", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("[sft.jsonl.gz:") == 1 and "adapter: messages" in proc.stdout


@pytest.mark.parametrize("name, content, message", [
    ("missing.jsonl", None, "missing.jsonl does not exist"),
    ("data.xml", "<a/>", "is not a *.jsonl / *.jsonl.gz"),
    ("empty.jsonl", "", "empty.jsonl holds no records"),
    ("header.csv", "a,b\n", "header.csv holds no records"),
    ("junk.jsonl", "junk\n[1]\n", "none of the 2 items read is a usable record (invalid_json 1, not_an_object 1)"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    proc = run_script(name, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and message in proc.stderr and "Traceback" not in proc.stderr
    if content is not None:  # the same error from the module
        with pytest.raises(StageError, match="holds no records|not a|usable"):
            inspect_source(tmp_path / name)
