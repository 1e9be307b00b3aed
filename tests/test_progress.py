"""Progress lines (llmrunner.progress): done / total, percent, rate and ETA on one line each, no carriage return
when stderr is a log file; bytes of compressed input counted as stored."""
from __future__ import annotations

import gzip
import io
import logging
import sys
from itertools import islice

import pytest

from llmrunner.jsonl import bytes_read, iter_lines
from llmrunner.progress import Progress, ReadPosition, _size, format_line
from llmrunner.udatasets.readers import row_count


def fields(**changes) -> dict:
    """tqdm's format_dict, the keys format_line reads."""
    return {"prefix": "udatasets python_docs", "n": 12_000, "total": 48_620, "unit": "records", "unit_scale": False,
            "elapsed": 4.0, "rate": 3_000.0, "postfix": "", **changes}


def test_line_has_total_percent_rate_and_eta():
    assert format_line(fields()) == ("udatasets python_docs: 12,000/48,620 records (25%), 3,000 records/s, "
                                     "ETA 0:00:12")
    assert format_line(fields(n=1_200_000, total=4_862_000, unit="B", unit_scale=True, rate=310_000.0,
                              postfix="9,000 records")) == \
        "udatasets python_docs: 1.20MB/4.86MB (25%), 310kB/s, ETA 0:00:12, 9,000 records"
    # before any rate is measured: the start line
    assert format_line(fields(n=0, elapsed=0, rate=None)) == \
        "udatasets python_docs: 0/48,620 records (0%), ? records/s, ETA ?"


@pytest.mark.parametrize("number", [1, 9.994, 9.996, 99.9, 99.96, 100, 999.4, 999.6, 310_000, 1_200_000, 4_862_000,
                                    12.3e9, 5e16])
def test_sizes_read_as_on_a_terminal_bar(number):
    from tqdm import tqdm

    assert _size(number, "B") == tqdm.format_sizeof(number, "B")


def test_a_log_file_gets_whole_lines(monkeypatch, caplog):
    stderr = io.StringIO()  # not a terminal, as under Snakemake's `> {log} 2>&1`
    monkeypatch.setattr(sys, "stderr", stderr)
    with caplog.at_level(logging.INFO, logger="llmrunner.progress"), \
            Progress("tokenize cpt demo", "documents", [], total=100, interval=0) as progress:
        for _ in range(4):
            progress.advance(25)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("tokenize cpt demo: 0/100 documents (0%)")
    assert any(line.startswith("tokenize cpt demo: 50/100 documents (50%), ") and " documents/s, ETA " in line
               for line in lines)
    assert lines[-1].startswith("tokenize cpt demo: 100/100 documents (100%), ")
    assert not any("\r" in line or "\n" in line for line in lines)
    assert stderr.getvalue() == ""  # no bar drawn beside the log lines


def test_a_terminal_gets_a_tqdm_bar(monkeypatch, caplog):
    """On a terminal the pass draws tqdm's bar (imported there only), redrawn in place, and logs no lines."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stderr = Terminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    with caplog.at_level(logging.INFO, logger="llmrunner.progress"), \
            Progress("udatasets demo", "records", [], total=100, interval=0) as progress:
        for _ in range(4):
            progress.advance(25)
    drawn = stderr.getvalue()
    assert "\r" in drawn and "udatasets demo" in drawn and "100/100" in drawn and "records" in drawn
    assert not caplog.records


def test_read_position_counts_compressed_bytes_as_stored(tmp_path):
    data = tmp_path / "a.jsonl.gz"
    data.write_bytes(gzip.compress(b"".join(b'{"text": "%d %s"}\n' % (i, b"x" * (i % 97)) for i in range(50_000)),
                     mtime=0))
    skipped = tmp_path / "b.jsonl"
    skipped.write_text('{"text": "read some other way"}\n')
    read = ReadPosition([data, skipped])
    assert read.total == data.stat().st_size + skipped.stat().st_size
    lines = iter_lines(data)
    for line in islice(lines, 25_000):
        read.at(0, line.number)
    assert 0 < read.position() < data.stat().st_size
    list(lines)
    assert read.position() == data.stat().st_size
    read.at(1, 1)  # the pass moved on: the first file counts whole, the second as far as it was read (not yet)
    assert read.position() == data.stat().st_size


def test_read_position_counts_what_a_worker_process_read(tmp_path):
    """udatasets workers read the input themselves: the parent's position is the bytes a worker reports, counted
    by its own copy of the counter, which started from this process's count when it forked."""
    data = tmp_path / "a.jsonl"
    data.write_bytes(b'{"text": "x"}\n' * 1000)
    read = ReadPosition([data])
    read.at(0, 400, bytes_read() + 6000)
    assert read.position() == 6000
    read.at(0, 1000, bytes_read() + data.stat().st_size)
    assert read.position() == data.stat().st_size


def test_read_position_of_a_parquet_file_follows_its_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(400)]}), data, row_group_size=100)
    assert row_count(data) == 400
    assert row_count(tmp_path / "b.jsonl") is None
    read = ReadPosition([data], [row_count(data)])
    read.at(0, 100)
    assert read.position() == data.stat().st_size // 4
    read.at(0, 400)
    assert read.position() == data.stat().st_size


@pytest.mark.parametrize("total", [0, None])
def test_no_total_counts_what_is_done(monkeypatch, caplog, total):
    """Nothing to read (an empty input list) or an empty count: the lines show what is done, without a percent."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    with caplog.at_level(logging.INFO, logger="llmrunner.progress"), \
            Progress("udatasets empty", "records", [], total=total, interval=0) as progress:
        progress.advance(0)
    assert caplog.records and "0 records" in caplog.records[-1].getMessage()
    assert all("%" not in r.getMessage() and "ETA" not in r.getMessage() for r in caplog.records)
