"""Readers: one raw file of any supported format -> a stream of raw items, one per record.

Every format yields the same `RawItem`, so the rest of udatasets never looks at file formats. A bad
record becomes an item with a reject reason and the stream goes on; only a file that cannot be read
at all (a damaged archive, a .json that is not JSON) is a StageError naming it.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from llmrunner.errors import StageError
from llmrunner.jsonl import DATA_SUFFIXES, Line, iter_lines, open_binary, require_file
from llmrunner.udatasets.hf_sources import ARROW_SUFFIX, BATCH_ROWS
from llmrunner.udatasets.json_stream import iter_json_array, parse_strict

RAW_SUFFIXES = DATA_SUFFIXES + (".json", ".parquet", ".csv", ".txt", ARROW_SUFFIX)
BLANK = "blank"  # not a record (an empty line of JSON Lines): counted apart, never rejected


class RawItem(NamedTuple):
    number: int
    """1-based: the line (jsonl, csv), the record index (json, parquet, arrow) or the paragraph (txt)."""
    raw: str
    """The record as found, for the rejects file (csv / parquet / arrow rows: as a JSON object)."""
    record: dict | None
    """The parsed object, or None when `reason` says why it is unusable."""
    reason: str | None = None


def _invalid_utf8(number: int, raw: str) -> RawItem | None:
    """A reject when `raw` (decoded with surrogateescape) held undecodable bytes; they show as `\\xNN`."""
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        visible = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return RawItem(number, visible, None, "invalid_utf8")
    return None


def _object_item(number: int, raw: str, value: object) -> RawItem:
    if not isinstance(value, dict):
        return RawItem(number, raw, None, "not_an_object")
    return RawItem(number, raw, value)


def jsonl_item(line: Line) -> RawItem:
    """One line of a JSON Lines file, parsed."""
    if not line.text.strip():
        return RawItem(line.number, line.text, None, BLANK)
    if not line.valid_utf8:
        return RawItem(line.number, line.text, None, "invalid_utf8")
    try:
        value = parse_strict(line.text)
    except (ValueError, RecursionError):  # ValueError covers JSONDecodeError and over-long integers
        return RawItem(line.number, line.text, None, "invalid_json")
    return _object_item(line.number, line.text, value)


def read_jsonl(path: Path) -> Iterator[RawItem]:
    return map(jsonl_item, iter_lines(path))


def read_json(path: Path) -> Iterator[RawItem]:
    for index, raw, value in iter_json_array(path):
        yield _invalid_utf8(index, raw) or _object_item(index, raw, value)


def read_csv(path: Path) -> Iterator[RawItem]:
    # The default limit (128 KiB per field) would end the file at the first long document.
    csv.field_size_limit(sys.maxsize)
    # surrogateescape keeps undecodable bytes in the row, so that one row is rejected, not the file;
    # open_binary drops the byte-order mark that spreadsheet exports put before the first column name.
    with io.TextIOWrapper(open_binary(path), encoding="utf-8", errors="surrogateescape", newline="") as stream:
        reader = csv.DictReader(stream)
        try:
            reader.fieldnames  # reads the header, so that line_num is where the first row starts
            first_line = reader.line_num + 1
            for row in reader:
                number, first_line = first_line, reader.line_num + 1  # a quoted field may span lines
                raw = json.dumps(row, ensure_ascii=False)  # a None key / value still dumps: "null"
                if bad := _invalid_utf8(number, raw):
                    yield bad
                elif None in row or None in row.values():  # more / fewer fields than the header
                    yield RawItem(number, raw, None, "csv_field_count")
                else:
                    yield RawItem(number, raw, row)
        except csv.Error as err:
            raise StageError(f"{path}, line {reader.line_num}: not readable as CSV ({err}); fix the file") from err


def _row_items(path: Path, batches: Callable[[], Iterator], form: str) -> Iterator[RawItem]:
    """The rows of Arrow `batches` (tables or record batches), numbered from 1, each as a JSON object for the
    rejects file; a file that stops being readable is a StageError naming it."""
    import pyarrow  # only for parquet and arrow inputs

    require_file(path)  # else a FIFO would block, and permission denied read as a damaged file
    number = 0
    try:
        for batch in batches():
            for row in batch.to_pylist():
                number += 1
                yield RawItem(number, json.dumps(row, ensure_ascii=False, default=str), row)
    except (pyarrow.ArrowException, OSError) as err:
        raise StageError(f"{path} is not a readable {form} file (read {number} rows: {err}); "
                         f"re-create or re-download it") from err


def read_parquet(path: Path) -> Iterator[RawItem]:
    import pyarrow.parquet as pq

    return _row_items(path, lambda: pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS), "parquet")


def read_arrow(path: Path) -> Iterator[RawItem]:
    """An Arrow stream file as the datasets library writes it (prepare's copy of an `hf:` source), memory-mapped;
    rows as stored (features not decoded: an image stays its bytes and path)."""
    import datasets

    return _row_items(path, lambda: datasets.Dataset.from_file(str(path)).with_format("arrow").iter(
        batch_size=BATCH_ROWS), "Arrow (datasets)")


def read_txt(path: Path, mode: str) -> Iterator[RawItem]:
    """`document`: the whole file is one record; `paragraphs`: each blank-line separated block is one."""
    if mode == "document":
        with open_binary(path) as stream:
            yield _text_item(1, stream.read())
        return
    paragraph: list[bytes] = []
    number = 0
    with open_binary(path) as stream:
        for line in itertools.chain(stream, [b""]):  # the final b"" closes the last paragraph
            if line.strip():
                paragraph.append(line)
            elif paragraph:
                number += 1
                yield _text_item(number, b"".join(paragraph).rstrip(b"\r\n"))
                paragraph = []


def _text_item(number: int, data: bytes) -> RawItem:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return RawItem(number, data.decode("utf-8", errors="backslashreplace"), None, "invalid_utf8")
    return RawItem(number, text, {"text": text})


def iter_raw(path: Path, txt_mode: str = "document") -> Iterator[RawItem]:
    """The raw items of one file, by the format its name ends in."""
    name = path.name
    if name.endswith(DATA_SUFFIXES):
        return read_jsonl(path)
    if name.endswith(".json"):
        return read_json(path)
    if name.endswith(".csv"):
        return read_csv(path)
    if name.endswith(".parquet"):
        return read_parquet(path)
    if name.endswith(".txt"):
        return read_txt(path, txt_mode)
    if name.endswith(ARROW_SUFFIX):
        return read_arrow(path)
    raise StageError(f"{path}: not a raw data file (formats: {', '.join(RAW_SUFFIXES)})")


def row_count(path: Path) -> int | None:
    """The rows of a parquet or Arrow file, from its metadata (progress: these are not read through
    `open_binary`, whose byte count measures the other formats); None for other formats or a damaged file,
    which its reader reports."""
    if not path.name.endswith((".parquet", ARROW_SUFFIX)):
        return None
    import pyarrow

    try:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        import datasets

        return datasets.Dataset.from_file(str(path)).num_rows
    except (pyarrow.ArrowException, OSError):
        return None


def iter_items(paths: list[Path], txt_mode: str = "document", shard: int = 0,
               shards: int = 1) -> Iterator[tuple[int, Line | RawItem]]:
    """(index of the file in `paths`, item) for the items of `paths`, in order, whose running index j over all
    items of all files (blank lines included) has j % shards == shard. A JSON Lines item is its `Line`, not
    parsed (`jsonl_item` parses it), so a shard never parses the lines that other shards own; the other
    formats are parsed as they are read."""
    j = 0
    for number, path in enumerate(paths):
        items = iter_lines(path) if path.name.endswith(DATA_SUFFIXES) else iter_raw(path, txt_mode)
        for item in items:
            if j % shards == shard:
                yield number, item
            j += 1
