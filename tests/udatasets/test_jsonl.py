"""llmrunner.jsonl: streaming reads of .jsonl / .jsonl.gz, per-line decoding, data-file listing."""
from __future__ import annotations

import gzip

import pytest

from llmrunner.errors import StageError
from llmrunner.jsonl import iter_lines, iter_records, list_data_files, resolve_inputs


def test_iter_lines_survives_bad_bytes_in_gzip(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\r\n\xc3\x28\n{"b": 2}\n'))
    lines = list(iter_lines(path))
    assert [(n, ok) for n, _, ok in lines] == [(1, True), (2, False), (3, True)]
    assert lines[0].text == '{"a": 1}' and lines[1].text == "\\xc3("


def test_damaged_gzip_is_a_stage_error_naming_the_file(tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n' * 1000)[:-20])
    with pytest.raises(StageError, match="cut.jsonl.gz is a damaged gzip file"):
        list(iter_lines(path))


def test_iter_records_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n[2]\n')
    records = iter_records(path)
    assert next(records) == (1, {"a": 1})
    with pytest.raises(StageError, match=r"d.jsonl, line 3: expected a JSON object"):
        next(records)


def test_list_data_files_is_sorted_and_explains_an_empty_folder(tmp_path):
    for name in ["b.jsonl.gz", "a.jsonl", "c.json", "notes.txt"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in list_data_files(tmp_path)] == ["a.jsonl", "b.jsonl.gz"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "data.json").write_text("")
    with pytest.raises(StageError, match=r"empty has no \*\.jsonl .*it contains: data\.json"):
        list_data_files(empty)
    with pytest.raises(StageError, match="does not exist"):
        resolve_inputs(tmp_path / "missing.jsonl")
    assert resolve_inputs(tmp_path / "a.jsonl") == [tmp_path / "a.jsonl"]
