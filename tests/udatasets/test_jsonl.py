"""llmrunner.jsonl: streaming reads of .jsonl / .jsonl.gz / .jsonl.zst, per-line decoding, data-file
listing, and the errors for files that end early or cannot be read."""
from __future__ import annotations

import codecs
import gzip
import os
import socket
import struct

import pytest
import zstandard

from llmrunner.errors import StageError
from llmrunner.jsonl import file_problem, iter_lines, iter_records, list_data_files, open_binary, resolve_inputs

RECORDS = b"".join(b'{"text": "record %d"}\n' % i for i in range(20_000))
COMPRESS = {"gz": lambda b: gzip.compress(b, mtime=0), "zst": lambda b: zstandard.ZstdCompressor().compress(b)}


def test_iter_lines_survives_bad_bytes_in_gzip(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\r\n\xc3\x28\n{"b": 2}\n'))
    lines = list(iter_lines(path))
    assert [(n, ok) for n, _, ok in lines] == [(1, True), (2, False), (3, True)]
    assert lines[0].text == '{"a": 1}' and lines[1].text == "\\xc3("


def test_zstd_reads_every_frame_and_skips_skippable_ones(tmp_path):
    # pzstd and `cat a.zst b.zst` write several frames; pzstd puts a skippable frame before each.
    compress = zstandard.ZstdCompressor().compress
    skippable = struct.pack("<II", 0x184D2A50, 4) + b"size"
    path = tmp_path / "frames.jsonl.zst"
    path.write_bytes(skippable + compress(RECORDS[:100_000]) + skippable + compress(RECORDS[100_000:]))
    assert sum(1 for _ in iter_records(path)) == 20_000
    path.write_bytes(path.read_bytes()[:-10])  # the last frame cut short
    with pytest.raises(StageError, match="frames.jsonl.zst: the zstd stream ends early"):
        list(iter_lines(path))


def test_damaged_gzip_is_a_stage_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(b"not gzip at all\n")
    with pytest.raises(StageError, match="bad.jsonl.gz is a damaged gzip file"):
        list(iter_lines(path))


@pytest.mark.parametrize("suffix", ["", ".gz", ".zst"])
def test_byte_order_mark_does_not_cost_the_first_record(tmp_path, suffix):
    path = tmp_path / f"bom.jsonl{suffix}"
    path.write_bytes(COMPRESS.get(suffix[1:], lambda b: b)(codecs.BOM_UTF8 + b'{"a": 1}\n{"b": "\xef\xbb\xbf"}\n'))
    assert list(iter_records(path)) == [(1, {"a": 1}), (2, {"b": "\ufeff"})]  # only the one at the start goes


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


def test_what_is_not_a_regular_file_is_named_not_skipped_or_waited_on(tmp_path):
    os.mkfifo(tmp_path / "pipe.jsonl")
    (tmp_path / "gone.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.jsonl"))  # the socket file stays after the socket closes
    not_regular = ", not a regular file; give a file"
    assert file_problem(tmp_path / "pipe.jsonl") == f"{tmp_path}/pipe.jsonl is a FIFO{not_regular}"
    assert file_problem(tmp_path / "sock.jsonl") == f"{tmp_path}/sock.jsonl is a socket{not_regular}"
    assert file_problem("/dev/null") == f"/dev/null is a character device{not_regular}"
    assert file_problem(tmp_path) == f"{tmp_path} is a folder{not_regular}"
    assert "gone.jsonl does not exist (a link to" in file_problem(tmp_path / "gone.jsonl")
    # A folder of data files: the FIFO is reported (opening it would wait forever), not left out.
    assert [p.name for p in list_data_files(tmp_path)] == ["gone.jsonl", "pipe.jsonl", "sock.jsonl"]
    with pytest.raises(StageError, match="pipe.jsonl is a FIFO, not a regular file; give a file"):
        list(iter_lines(tmp_path / "pipe.jsonl"))
    with pytest.raises(StageError, match="input .*pipe.jsonl is a FIFO"):
        resolve_inputs(tmp_path / "pipe.jsonl")
    with pytest.raises(StageError, match="gone.jsonl does not exist"):
        open_binary(tmp_path / "gone.jsonl")
