"""Streaming the records of a `.json` file: a top-level array, or an object holding one array.

`json.load` would hold the whole file (and every record) in memory; here the text is read in
chunks and the array's elements are decoded one at a time, so memory is bounded by the largest
record. A file that is not valid JSON as a whole cannot be split into records reliably: it is a
StageError naming the file and the position.
"""
from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path

import orjson

from llmrunner.errors import StageError
from llmrunner.jsonl import open_binary

CHUNK_BYTES = 1 << 20
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


# NaN / Infinity are Python extensions, not JSON: they would leak into the output.
STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def parse_strict(text: str) -> object:
    """STRICT_JSON.decode(text): the same value, or the same error, ~2.5x faster on most lines. orjson parses
    first; a text it refuses, or whose value holds a float (orjson reads an integer past 64 bits as a float,
    silently), is parsed again by STRICT_JSON, so every value and every error is the standard library's (but for
    nesting within a few levels of Python's recursion limit, where the standard library's own answer depends on
    how deep the stack it is called from is)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # invalid JSON, NaN, a lone surrogate's escape, nesting too deep
        return STRICT_JSON.decode(text)
    return STRICT_JSON.decode(text) if _holds_float(value) else value


def _holds_float(value: object) -> bool:
    if type(value) is dict:
        value = value.values()
    elif type(value) is not list:
        return type(value) is float
    for item in value:  # a loop over the values, not all(...): most records are flat and short
        if type(item) in _NESTED_OR_FLOAT and _holds_float(item):
            return True
    return False


_NESTED_OR_FLOAT = (dict, list, float)


class _Text:
    """A window on the decoded text: `buf[pos:]` is unread, refilled from the file on demand."""

    def __init__(self, stream, path: Path) -> None:
        self.stream, self.path = stream, path
        # surrogateescape: undecodable bytes stay in the record (it is rejected), the file goes on.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.buf, self.pos, self.consumed = "", 0, 0

    def fill(self, size: int = CHUNK_BYTES) -> bool:
        """Append the next `size` bytes (CHUNK_BYTES at least), decoded; False at the end of the file."""
        data = self.stream.read(max(size, CHUNK_BYTES))
        self.consumed += self.pos
        self.buf = self.buf[self.pos:] + self.decoder.decode(data, final=not data)
        self.pos = 0
        return bool(data)

    def error(self, what: str) -> StageError:
        return StageError(f"{self.path} is not a JSON array of records (nor an object holding one): {what} "
                          f"at character {self.consumed + self.pos}; fix the file or convert it to JSON Lines")

    def peek(self) -> str:
        """The next non-whitespace character ('' at the end), not consumed."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def expect(self, allowed: str) -> str:
        char = self.peek()
        if not char or char not in allowed:
            raise self.error(f"expected one of {allowed!r}, found {char or 'the end of the file'!r}")
        self.pos += 1
        return char

    def value(self) -> tuple[str, object]:
        """The next JSON value: (its raw text, the decoded value)."""
        self.peek()
        while True:
            try:
                value, end = STRICT_JSON.raw_decode(self.buf, self.pos)
            except (ValueError, RecursionError) as err:
                # Maybe only cut by the end of the buffer: read as much again as is unread, so that a record of
                # n bytes is parsed about twice over in all, not once per chunk (n^2 / CHUNK_BYTES).
                if self.fill(len(self.buf) - self.pos):
                    continue
                raise self.error(f"invalid JSON ({err})") from err
            if end == len(self.buf) and self.fill():  # a number at the boundary may continue
                continue
            raw, self.pos = self.buf[self.pos:end], end
            return raw, value


def iter_json_array(path: Path) -> Iterator[tuple[int, str, object]]:
    """Yield (1-based index, raw text, value) for each element of the file's records array."""
    with open_binary(path) as stream:
        text = _Text(stream, path)
        wrapped = text.expect("[{") == "{"
        if wrapped:
            key_raw, key = text.value()
            if not isinstance(key, str):
                raise text.error("expected a key")
            text.expect(":")
            text.expect("[")
        index = 0
        if text.peek() == "]":
            text.pos += 1
        else:
            while True:
                raw, value = text.value()
                index += 1
                yield index, raw, value
                if text.expect(",]") == "]":
                    break
        if wrapped and text.expect(",}") == ",":
            raise text.error(f"the object has keys after {key_raw}; it must hold exactly one list")
        if text.peek():
            raise text.error("extra data after the records")
