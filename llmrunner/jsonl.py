"""Reading JSON Lines data (`.jsonl`, `.jsonl.gz`, `.jsonl.zst`) as a stream, one line at a time.

Lines are read as bytes and decoded one by one, so a line that is not valid UTF-8 is reported
(and can be rejected) without ending the stream: a text-mode reader would raise in the middle of
a file and lose the rest of it. A compressed file that ends early (a cut copy) is an error, never
a shorter file.
"""
from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import stat
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

import zstandard

from llmrunner.errors import StageError

DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")
# A zstd decompression call returns all the output of the input it is given: the input per call
# follows the compression ratio seen (thousands for runs of repeated records) so that one call
# returns about ZSTD_OUT_BYTES, between ZSTD_MIN_IN and ZSTD_MAX_IN compressed bytes.
ZSTD_OUT_BYTES = 1 << 22
ZSTD_MIN_IN, ZSTD_MAX_IN = 1 << 6, 1 << 14
READ_BUFFER = 1 << 20  # bytes per read of a data file: line iteration over io's default 8 KiB took twice the time
_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class Line(NamedTuple):
    """One line of a data file, without its line ending."""

    number: int
    """1-based line number in the (decompressed) file."""
    text: str
    """The decoded line; invalid bytes appear as `\\xNN` escapes when `valid_utf8` is False."""
    valid_utf8: bool


def is_data_file(path: Path, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> bool:
    return path.name.endswith(suffixes)


def file_problem(path: str | Path) -> str | None:
    """Why `path` cannot be read as a data file (missing, not a regular file, unreadable), naming it
    and the fix; None when it can. A link is followed, wherever it points."""
    denied = f"{path}: permission denied; make it readable by the user running the workflow"
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        target = f" (a link to {os.readlink(path)}, which does not exist)" if os.path.islink(path) else ""
        return f"{path} does not exist{target}"
    except PermissionError:  # a folder on the way that this user may not enter
        return denied
    except OSError as err:  # a loop of links, an I/O error
        return f"{path} cannot be read ({err.strerror}); give a readable file"
    if not stat.S_ISREG(mode):
        kind = next((name for is_kind, name in _NOT_REGULAR if is_kind(mode)), "not a regular file")
        return f"{path} is {kind}, not a regular file; give a file"
    try:
        # Opening is the only true test: os.access says yes to root where the filesystem says no
        # (root-squashed NFS, ACLs).
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        return denied
    except OSError as err:
        return f"{path} cannot be read ({err.strerror}); give a readable file"
    return None


def require_file(path: str | Path) -> None:
    """A StageError naming `path` and the fix unless it is a regular file this user can read."""
    if problem := file_problem(path):
        raise StageError(problem)


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of every frame of a zstd file, in order; an EOFError (as gzip raises)
    where the file ends inside a frame.

    zstandard's stream_reader returns what it has and stops without a word when the input ends
    inside a frame, so a cut file reads as a shorter one; a decompressobj says whether its frame
    reached its end (`eof`), and hands over the bytes after it (`unused_data`) for the next frame.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw, self._dctx = raw, zstandard.ZstdDecompressor()
        self._frame: zstandard.ZstdDecompressionObj | None = None  # None between frames
        self._in, self._out = memoryview(b""), memoryview(b"")  # compressed input; output not yet read
        self._step = 1 << 10  # compressed bytes for the next call: few, until the ratio is known

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._out:
            if not self._in:
                self._in = memoryview(self._raw.read(ZSTD_MAX_IN))
                if not self._in:
                    if self._frame is not None:
                        raise EOFError("the file ends inside a zstd frame")
                    return 0
            data, self._in = self._in[:self._step], self._in[self._step:]
            self._out = memoryview(self._decompress(data))
            self._step = max(ZSTD_MIN_IN, min(ZSTD_MAX_IN, len(data) * ZSTD_OUT_BYTES // max(len(self._out), 1)))
        size = min(len(buffer), len(self._out))
        buffer[:size] = self._out[:size]
        self._out = self._out[size:]
        return size

    def _decompress(self, data: memoryview) -> bytes:
        out = []
        while data:
            if self._frame is None:
                self._frame = self._dctx.decompressobj()
            out.append(self._frame.decompress(data))
            if not self._frame.eof:  # the frame goes on in the next read
                break
            data, self._frame = self._frame.unused_data, None
        return b"".join(out)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _CountedFile(io.FileIO):
    """A data file that adds the bytes read from it, as stored (compressed or not), to `bytes_read()`: how far
    a pass over files of known size has come (llmrunner.progress)."""

    read_so_far = 0

    def read(self, size: int = -1) -> bytes | None:
        data = super().read(size)
        _CountedFile.read_so_far += len(data or b"")
        return data

    def readall(self) -> bytes:
        data = super().readall()
        _CountedFile.read_so_far += len(data)
        return data

    def readinto(self, buffer) -> int | None:
        count = super().readinto(buffer)
        _CountedFile.read_so_far += count or 0
        return count


def bytes_read() -> int:
    """Bytes this process has read from data files opened by `open_binary`, as stored on disk."""
    return _CountedFile.read_so_far


def open_binary(path: str | Path) -> io.BufferedIOBase:
    """Open a file for streaming reads, decompressing `.gz` / `.zst` (chosen by the name) and
    dropping a UTF-8 byte-order mark at its start (editors on Windows write one; it is not data)."""
    path = Path(path)
    if problem := file_problem(path):
        raise StageError(f"data file {problem}")
    raw = _CountedFile(path)
    if path.name.endswith(".gz"):
        stream: io.BufferedIOBase = gzip.GzipFile(fileobj=raw)
        stream.myfileobj = raw  # closed with the stream, as gzip.open's own file is
    elif path.name.endswith(".zst"):
        # The buffered wrapper adds readline() and line iteration.
        stream = io.BufferedReader(_ZstdFrames(raw), READ_BUFFER)
    else:
        stream = io.BufferedReader(raw, READ_BUFFER)
    try:
        if stream.peek(len(codecs.BOM_UTF8)).startswith(codecs.BOM_UTF8):
            stream.read(len(codecs.BOM_UTF8))
    except BaseException:  # a damaged compressed file can fail at its first read
        stream.close()
        raise
    return stream


def iter_lines(path: str | Path) -> Iterator[Line]:
    """Yield every line of a `.jsonl` / `.jsonl.gz` / `.jsonl.zst` file, decoded as UTF-8 one line at a time.

    Blank lines are yielded too (the caller decides); a compressed stream that ends early or is
    damaged is a StageError naming the file, raised after the lines before the damage.
    """
    number = 0
    kind = "gzip" if str(path).endswith(".gz") else "zstd"
    try:
        with open_binary(path) as stream:
            for number, raw in enumerate(stream, start=1):
                raw = raw.rstrip(b"\r\n")
                try:
                    yield Line(number, raw.decode("utf-8"), True)
                except UnicodeDecodeError:
                    yield Line(number, raw.decode("utf-8", errors="backslashreplace"), False)
    except EOFError as err:  # gzip and _ZstdFrames: the file stops before the stream's end
        raise StageError(f"{path}: the {kind} stream ends early (truncated or damaged file) after {number} "
                         f"lines; re-copy or re-compress it") from err
    except (gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as err:
        raise StageError(f"{path} is a damaged {kind} file (read up to line {number}: {err}); "
                         f"re-create or re-download it") from err


UNIFIED_DATA_FIX = "clean the data (enable the udatasets step, which rejects such lines)"


def iter_records(path: str | Path, lines: range | None = None,
                 fix: str = UNIFIED_DATA_FIX) -> Iterator[tuple[int, dict]]:
    """Yield `(line number, object)` for each non-blank line of a file that must be clean JSON Lines;
    with `lines`, only for those line numbers (the others are not parsed: a shard's part of a file).

    For data already in the unified schema (processed output, or raw data when udatasets is off), or eval
    items: any bad line is a StageError naming the file and line, and `fix`, since there is no rejects file.
    """
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
    # Not only regular files: a FIFO or a dangling link named like data is an error when read, not skipped.
    files = sorted(p for p in folder.iterdir() if is_data_file(p, suffixes) and not p.is_dir())
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
    if problem := file_problem(path):
        raise StageError(f"input {problem}")
    if not is_data_file(path, suffixes):
        raise StageError(f"input {path} is not a {_patterns(suffixes)} file")
    return [path]
