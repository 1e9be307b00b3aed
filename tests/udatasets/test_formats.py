"""Every input format through the whole step: bad records of each kind are rejected with their
position in the file, big records pass, and input = kept + rejected + duplicates every time."""
from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from llmrunner.errors import StageError
from llmrunner.udatasets.__main__ import main
from llmrunner.udatasets.adapters import builtin_adapter
from llmrunner.udatasets.core import map_and_gather
from llmrunner.udatasets.json_stream import STRICT_JSON, parse_strict
from llmrunner.udatasets.shard import RecordRules
from tests.files import run_unable_to_read
from tests.paths import demo_cpt_lines

BIG = "word " * 1_000_000  # a 5 MB record
BIG_CLEAN = BIG.rstrip()  # as kept: cleaning strips the text's trailing whitespace


def clean(tmp_path: Path, inputs: list[Path], adapter: str = "text", **options) -> tuple[dict, list, list]:
    """Run the step; check the accounting identity; return (stats, kept records, rejects)."""
    out = tmp_path / "out" / "d.jsonl"
    keys = {k: options.pop(k) for k in ("text_key", "prompt_key", "response_key") if k in options}
    stats = map_and_gather(inputs, out, RecordRules(builtin_adapter(adapter, **keys), **options))
    assert stats["input"] == stats["kept"] + sum(stats["rejected"].values()) + sum(stats["duplicates"].values())
    read = [[json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            for path in (out, out.with_name("d.rejects.jsonl"))]
    assert len(read[0]) == stats["kept"] and len(read[1]) == sum(stats["rejected"].values())
    return stats, read[0], read[1]


def positions(rejects: list[dict]) -> list[tuple[int, str]]:
    return [(r["line"], r["reason"]) for r in rejects]


JSONL_LINES = [
    b'{"text": "good one"}',          # 1 kept
    b'{"text": "broken',              # 2 invalid_json
    b'{"text": "bad \xff byte"}',     # 3 invalid_utf8
    b'{"text": "raw \x00 NUL"}',      # 4 invalid_json: JSON forbids raw control characters in strings
    b'{"text": "escaped \\u0000 NUL"}',  # 5 kept (removing control characters is the cleaning's job)
    b'"just a string"',               # 6 not_an_object
    b'{"body": "no text"}',           # 7 missing_text
    b'{"text": 7}',                   # 8 text_not_a_string
    json.dumps({"text": BIG}).encode(),  # 9 kept
    b'{"text": "good one"}',          # 10 duplicate
]
JSONL_REJECTS = [(2, "invalid_json"), (3, "invalid_utf8"), (4, "invalid_json"), (6, "not_an_object"),
                 (7, "missing_text"), (8, "text_not_a_string")]


@pytest.mark.parametrize("name, compress", [
    ("d.jsonl", lambda b: b),
    ("d.jsonl.gz", lambda b: gzip.compress(b, mtime=0)),
    ("d.jsonl.zst", lambda b: zstandard.ZstdCompressor().compress(b)),
])
def test_jsonl_plain_gzip_zstd(tmp_path, name, compress):
    path = tmp_path / name
    path.write_bytes(compress(b"\n".join(JSONL_LINES) + b"\n"))
    stats, kept, rejects = clean(tmp_path, [path])
    assert positions(rejects) == JSONL_REJECTS
    assert stats["kept"] == 3 and stats["duplicates"] == {"exact": 1, "near": 0} and kept[2]["text"] == BIG_CLEAN
    assert kept[1]["text"] == "escaped  NUL"  # the control character removed by the cleaning


def test_damaged_zstd_is_a_stage_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.jsonl.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b'{"text": "a"}\n' * 1000)[:-5] + b"\x00" * 9)
    with pytest.raises(StageError, match="bad.jsonl.zst is a damaged zstd file"):
        clean(tmp_path, [path])


def write_20000(path: Path) -> None:
    texts = [f"record number {i}" for i in range(20_000)]
    if path.name.endswith(".parquet"):
        pq.write_table(pa.table({"text": texts}), path)
        return
    data = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz")
                     else zstandard.ZstdCompressor().compress(data))


@pytest.mark.parametrize("name, error", [
    ("d.jsonl.gz", r"d.jsonl.gz: the gzip stream ends early \(truncated or damaged file\) after \d+ lines; "
                   "re-copy or re-compress it"),
    ("d.jsonl.zst", r"d.jsonl.zst: the zstd stream ends early \(truncated or damaged file\) after \d+ lines; "
                    "re-copy or re-compress it"),
    ("d.parquet", "d.parquet is not a readable parquet file"),  # the row index is at the end: never silent
])
def test_compressed_file_cut_at_60_percent_stops_the_step_naming_it(tmp_path, name, error):
    full = tmp_path / "full" / name
    full.parent.mkdir()
    write_20000(full)
    assert clean(tmp_path, [full])[0]["input"] == 20_000
    cut = tmp_path / name
    cut.write_bytes(full.read_bytes()[:full.stat().st_size * 6 // 10])
    with pytest.raises(StageError, match=error):
        clean(tmp_path, [cut])


BOM_JSONL = codecs.BOM_UTF8 + b'{"text": "one"}\n{"text": "two"}\n'


@pytest.mark.parametrize("name, content, texts", [
    ("d.jsonl", BOM_JSONL, ["one", "two"]),
    ("d.jsonl.gz", gzip.compress(BOM_JSONL), ["one", "two"]),
    ("d.jsonl.zst", zstandard.ZstdCompressor().compress(BOM_JSONL), ["one", "two"]),
    ("d.json", codecs.BOM_UTF8 + b'[{"text": "one"}, {"text": "two"}]', ["one", "two"]),
    ("d.txt", codecs.BOM_UTF8 + b"one", ["one"]),
])
def test_a_byte_order_mark_costs_no_record(tmp_path, name, content, texts):
    path = tmp_path / name
    path.write_bytes(content)
    stats, kept, rejects = clean(tmp_path, [path])
    assert rejects == [] and [r["text"] for r in kept] == texts and stats["input"] == len(texts)


@pytest.mark.parametrize("name", ["d.jsonl.zst", "d.csv", "d.parquet"])
def test_cli_names_an_unreadable_raw_file(tmp_path, name):
    path = tmp_path / "raw" / name
    path.parent.mkdir()
    path.write_text("text\nhello\n") if name.endswith(".csv") else write_20000(path)
    result = run_unable_to_read(["-m", "llmrunner.udatasets", "--kind", "cpt", "--input", str(path.parent),
                                 "--out", str(tmp_path / "out/d.jsonl")], path)
    assert result.returncode == 1, result.stderr
    assert f"{path}: permission denied; make it readable by the user running the workflow" in result.stderr
    assert "Traceback" not in result.stderr


JSON_ELEMENTS = [
    b'{"text": "good one"}',           # 1 kept
    b'{"text": "bad \xff byte"}',      # 2 invalid_utf8
    b'{"text": "escaped \\u0000 NUL"}',  # 3 kept
    b'[1, 2]',                          # 4 not_an_object
    b'{"body": "no text"}',            # 5 missing_text
    b'{"text": null}',                 # 6 text_not_a_string
    json.dumps({"text": BIG}).encode(),  # 7 kept (longer than the read chunk)
    b'{"text": "good  one"}',          # 8 duplicate
    b'12345',                           # 9 not_an_object (a number at the end of a chunk)
]


@pytest.mark.parametrize("wrap", [lambda b: b"[" + b, lambda b: b'{"rows": [' + b + b"}"])
def test_json_array_or_object_holding_one_list(tmp_path, wrap):
    path = tmp_path / "d.json"
    path.write_bytes(wrap(b",\n ".join(JSON_ELEMENTS) + b"]\n"))
    stats, kept, rejects = clean(tmp_path, [path])
    assert positions(rejects) == [(2, "invalid_utf8"), (4, "not_an_object"), (5, "missing_text"),
                                  (6, "text_not_a_string"), (9, "not_an_object")]
    assert rejects[0]["raw"] == '{"text": "bad \\xff byte"}'
    assert stats["kept"] == 3 and stats["duplicates"] == {"exact": 1, "near": 0} and kept[2]["text"] == BIG_CLEAN


@pytest.mark.parametrize("content, problem", [
    (b'[{"text": "a"}, {"text": "b}]', "invalid JSON"),
    (b'[{"text": "a"} {"text": "b"}]', "expected one of ',]'"),
    (b'{"rows": [], "more": []}', "exactly one list"),
    (b'"text"', "expected one of '\\[{'"),
    (b'[{"text": "a"}] []', "extra data"),
])
def test_json_that_is_not_json_is_a_stage_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(StageError, match=f"broken.json is not a JSON array.*{problem}"):
        clean(tmp_path, [path])


def test_csv_rows_with_the_line_each_starts_on(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"".join([
        b"\xef\xbb\xbfid,body\r\n",                 # a byte-order mark, as spreadsheets write it
        b'1,"first ""quoted"" doc"\r\n',            # line 2 kept
        b'2,"spans\r\ntwo lines"\r\n',              # line 3 kept
        b"3,bad \xff byte\r\n",                    # line 5 invalid_utf8
        b"4,raw \x00 NUL\r\n",                     # line 6 kept (cleaning decides about control characters)
        b"5\r\n",                                  # line 7 csv_field_count (too few)
        b"6,a,b\r\n",                              # line 8 csv_field_count (too many)
        b"7,\r\n",                                 # line 9 empty
        f"8,{BIG}\r\n".encode(),                   # line 10 kept: far over csv's 128 KiB default field limit
        b"9,first \"quoted\" doc\r\n",             # line 11 duplicate of line 2 (quotes mid-field are text)
        b'10,"first ""quoted""  doc"\r\n',         # line 12 duplicate of line 2
    ]))
    stats, kept, rejects = clean(tmp_path, [path], text_key="body")
    assert positions(rejects) == [(5, "invalid_utf8"), (7, "csv_field_count"), (8, "csv_field_count"),
                                  (9, "empty")]
    assert rejects[0]["raw"] == '{"id": "3", "body": "bad \\xff byte"}'
    assert kept[0] == {"text": 'first "quoted" doc', "id": "1"} and kept[1]["text"] == "spans\ntwo lines"
    assert stats["kept"] == 4 and stats["duplicates"] == {"exact": 2, "near": 0} and kept[3]["text"] == BIG_CLEAN
    duplicates = (tmp_path / "out" / "d.duplicates.jsonl").read_text().splitlines()
    assert [(d["line"], d["duplicate_of"]["line"]) for d in map(json.loads, duplicates)] == [(11, 2), (12, 2)]


def test_parquet_streams_rows_and_keeps_metadata(tmp_path):
    path = tmp_path / "d.parquet"
    table = pa.table({"text": ["good", None, "NUL \x00 inside", BIG, "good"],
                      "score": [1.0, 2.0, 3.0, float("nan"), 5.0],
                      "day": pa.array([19000] * 5, pa.int32()).cast(pa.date32())})
    pq.write_table(table, path, row_group_size=2)
    stats, kept, rejects = clean(tmp_path, [path])
    assert positions(rejects) == [(2, "text_not_a_string"), (4, "not_json_serialisable")]
    assert kept[0] == {"text": "good", "score": 1.0, "day": "2022-01-08"}  # a date becomes its ISO string
    assert stats["kept"] == 2 and stats["duplicates"] == {"exact": 1, "near": 0}


def test_parquet_that_cannot_be_read_is_a_stage_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(StageError, match="bad.parquet is not a readable parquet file"):
        clean(tmp_path, [path])


def test_txt_one_document_per_file(tmp_path):
    (tmp_path / "a.txt").write_text("First document.\n\nStill the first.\n")
    (tmp_path / "b.txt").write_bytes(b"bad \xff byte")
    (tmp_path / "c.txt").write_text("")
    (tmp_path / "d.txt").write_text(BIG)
    stats, kept, rejects = clean(tmp_path, sorted(tmp_path.glob("*.txt")))
    assert [(r["file"], r["line"], r["reason"]) for r in rejects] == [("b.txt", 1, "invalid_utf8"),
                                                                     ("c.txt", 1, "empty")]
    assert kept[0] == {"text": "First document.\n\nStill the first."} and kept[1]["text"] == BIG_CLEAN


def test_txt_paragraphs_numbered_from_one(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes(b"One, line one.\nOne, line two.\n\n\n  \nTwo \xff.\n\n" + BIG.encode()
                     + b"\n\nOne,  line one.\r\nOne, line two.")
    stats, kept, rejects = clean(tmp_path, [path], txt_mode="paragraphs")
    assert positions(rejects) == [(2, "invalid_utf8")]
    assert kept[0] == {"text": "One, line one.\nOne, line two."} and kept[1]["text"] == BIG_CLEAN
    assert stats["input"] == 4 and stats["duplicates"] == {"exact": 1, "near": 0}


def test_cli_reads_a_folder_of_mixed_formats_in_name_order(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_text("prompt,response\nHi?,Hello.\n")
    (raw / "b.json").write_text(json.dumps([{"prompt": "Sum?", "response": "3"}]))
    (raw / "c.jsonl").write_text(json.dumps({"prompt": "Hi?", "response": "Hello."}) + "\n")
    (raw / "notes.md").write_text("not data")
    out = tmp_path / "processed" / "sft" / "chat.jsonl"
    main(["--kind", "sft", "--input", str(raw), "--out", str(out),
          "--settings", json.dumps({"adapter": "prompt_response"})])
    stats = json.loads(out.with_name("chat.stats.json").read_text())
    assert list(stats["files"]) == ["a.csv", "b.json", "c.jsonl"]
    assert (stats["input"], stats["kept"], stats["duplicates"]) == (3, 2, {"exact": 1, "near": 0})


STANDARD_LIBRARY_EDGES = [
    '{"id": 123456789012345678901234567890}',  # past 64 bits: orjson would read a float
    '{"id": -9223372036854775809, "n": 18446744073709551615}',
    '{"score": 0.1, "x": 1e30, "nested": [{"deep": [1.5]}]}',
    '{"a": 1, "a": 2, "b": 3}',  # a repeated key: the last value, at the first key's place
    '{"text": "\\ud800 lone"}',  # a lone surrogate's escape: orjson refuses it, the standard library reads it
    '{"text": "\\u00e9\\n\\t\\"q\\" \\\\ \\u0000"}',
    '{"x": NaN}', '{"x": Infinity}', '{"x": 1e400}', '{"x": 1,}', '{"x": 1} {"y": 2}', '{"x": 01}',
    ' \t{"x" : [ ] , "y" : { } }\t ', "[1, 2]", '"just a string"', "null", "[" * 5000 + "]" * 5000,
]


def _parsed(parse, line: str) -> tuple[str, object]:
    try:
        return "value", repr(parse(line))
    except (ValueError, RecursionError) as err:
        return "error", RecursionError if isinstance(err, RecursionError) else ValueError


@pytest.mark.parametrize("line", STANDARD_LIBRARY_EDGES)
def test_a_json_lines_line_parses_as_the_standard_library_parses_it(line):
    """parse_strict is orjson with STRICT_JSON behind it: the same value (type and all) or the same error class."""
    assert _parsed(parse_strict, line) == _parsed(STRICT_JSON.decode, line)


def test_the_demo_corpus_parses_as_the_standard_library_parses_it():
    assert all(_parsed(parse_strict, line) == _parsed(STRICT_JSON.decode, line) for line in demo_cpt_lines())
