"""Reading JSON Lines data (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`) as a stream, one line at a time.

Lines are read as bytes and decoded one by one, so a line that is not valid UTF-8 is reported
(and can be rejected) without ending the stream: a text-mode reader would raise in the middle of
a file and lose the rest of it.
"""
from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import zstandard

from llmrunner.errors import StageError

DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")


class Line(NamedTuple):
    """One line of a data file, without its line ending."""

    number: int
    """1-based line number in the (decompressed) file."""
    text: str
    """The decoded line; invalid bytes appear as `\\xNN` escapes when `valid_utf8` is False."""
    valid_utf8: bool


def is_data_file(path: Path, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> bool:
    return path.name.endswith(suffixes)


def open_binary(path: str | Path) -> IO[bytes]:
    """Open a file for streaming reads, decompressing `.gz` / `.zst` (chosen by the name)."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"data file {path} does not exist")
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".zst"):
        # The decompression reader has no readline(); the buffered wrapper adds it (and line iteration).
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def iter_lines(path: str | Path) -> Iterator[Line]:
    """Yield every line of a `.jsonl` / `.jsonl.gz` / `.jsonl.zst` file, decoded as UTF-8 one line at a time.

    Blank lines are yielded too (the caller decides); a damaged compressed stream is a StageError
    naming the file, raised after the lines before the damage.
    """
    number = 0
    try:
        with open_binary(path) as stream:
            for number, raw in enumerate(stream, start=1):
                raw = raw.rstrip(b"\r\n")
                try:
                    yield Line(number, raw.decode("utf-8"), True)
                except UnicodeDecodeError:
                    yield Line(number, raw.decode("utf-8", errors="backslashreplace"), False)
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise StageError(f"{path} is a damaged gzip file (read up to line {number}: {err}); "
                         f"re-create or re-download it") from err
    except zstandard.ZstdError as err:
        raise StageError(f"{path} is a damaged zstd file (read up to line {number}: {err}); "
                         f"re-create or re-download it") from err


def iter_records(path: str | Path, lines: range | None = None) -> Iterator[tuple[int, dict]]:
    """Yield `(line number, object)` for each non-blank line of a file that must be clean JSON Lines;
    with `lines`, only for those line numbers (the others are not parsed: a shard's part of a file).

    For data already in the unified schema (processed output, or raw data when udatasets is off):
    any bad line is a StageError naming the file and line, since there is no rejects file here.
    """
    fix = "clean the data (enable the udatasets step, which rejects such lines)"
    for line in iter_lines(path):
        if lines is not None and line.number < lines.start:
            continue
        if lines is not None and line.number >= lines.stop:
            break
        if not line.text.strip():
            continue
        where = f"{path}, line {line.number}"
        if not line.valid_utf8:
            raise StageError(f"{where}: not valid UTF-8; {fix}")
        try:
            record = json.loads(line.text)
        except json.JSONDecodeError as err:
            raise StageError(f"{where}: not valid JSON ({err}); {fix}") from err
        if not isinstance(record, dict):
            raise StageError(f"{where}: expected a JSON object, got {type(record).__name__}; {fix}")
        yield line.number, record


def _patterns(suffixes: tuple[str, ...]) -> str:
    return " / ".join(f"*{s}" for s in suffixes)


def list_data_files(folder: str | Path, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> list[Path]:
    """The files directly in `folder` whose names end in one of `suffixes`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StageError(f"data folder {folder} does not exist (or is not a folder); "
                         f"check the dataset's sources and that the prepare step ran")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_data_file(p, suffixes))
    if not files:
        present = sorted(p.name for p in folder.iterdir())
        shown = ", ".join(present[:20]) + (", ..." if len(present) > 20 else "") if present else "nothing"
        raise StageError(f"data folder {folder} has no {_patterns(suffixes)} files (it contains: "
                         f"{shown}); give the dataset sources in one of these formats")
    return files


def resolve_inputs(path: str | Path, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> list[Path]:
    """A data file itself, or the data files of a folder (a raw dataset folder)."""
    path = Path(path)
    if path.is_dir():
        return list_data_files(path, suffixes)
    if not path.is_file():
        raise StageError(f"input {path} does not exist; give a {_patterns(suffixes)} file or a folder of them")
    if not is_data_file(path, suffixes):
        raise StageError(f"input {path} is not a {_patterns(suffixes)} file")
    return [path]
