"""Cleaning of a unified record's text (CPT `text`, SFT every message `content`), after the adapter and
before the length filters and de-duplication: Unicode NFC, control characters, whitespace.

Spaces inside a line are never touched (code indentation matters). A text longer than PIECE_CHARS is cleaned a
piece at a time and joined once: with a copy per rule, a 50 MB document of 4-byte characters would take a gigabyte.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from llmrunner.udatasets.near_dup import ASCII_SPACE

PIECE_CHARS = 1 << 20


# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F. \n and \t are kept; so is \r, which
# only survives to this point under whitespace: keep (normalize has already turned it into \n).
_CONTROL = {c: None for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]
            if unicodedata.category(chr(c)) == "Cc" and chr(c) not in "\n\t\r"}
_CONTROL_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _CONTROL) + "]")
# Every byte but the control characters: deleting them from an ASCII text leaves exactly its control characters
# (a C loop over bytes, several times faster than the regex's search).
_NOT_CONTROL = bytes(c for c in range(256) if c not in _CONTROL)
# The ASCII bytes that some rule removes or replaces wherever they are: control characters and \r.
_REPLACED = np.zeros(256, dtype=bool)
_REPLACED[[*_CONTROL, ord("\r")]] = True
_NEWLINE, _SPACE, _TAB = ord("\n"), ord(" "), ord("\t")
# Where a long text is cut: before a space or line break that follows a character no rule removes or turns into
# whitespace. No rule reaches across such a cut (runs of trailing blanks or line breaks, \r\n, NFC's combining
# sequences), so the pieces cleaned apart and joined are the text cleaned whole.
_CUT = re.compile(r"[^\s\x00-\x1f\x7f-\x9f](?=[ \n])")


def _pieces(text: str) -> Iterator[str]:
    """`text` in consecutive pieces of PIECE_CHARS characters or more, cut where cleaning allows (the rest in one
    piece where it allows no cut)."""
    start = 0
    while len(text) - start > PIECE_CHARS and (cut := _CUT.search(text, start + PIECE_CHARS)):
        yield text[start:cut.end()]
        start = cut.end()
    yield text[start:]


def _strip_ends(parts: list[str]) -> bool:
    """Strip the whitespace at both ends of the text that `parts` make up, in place; whether anything changed."""
    count = len(parts)
    while parts and (not parts[0] or parts[0].isspace()):
        del parts[0]
    while parts and (not parts[-1] or parts[-1].isspace()):
        del parts[-1]
    if not parts:
        return count > 0
    first, last = parts[0], parts[-1]
    parts[0] = parts[0].lstrip()
    parts[-1] = parts[-1].rstrip()
    return len(parts) != count or parts[0] is not first or parts[-1] is not last


def _squeeze_line_breaks(text: str) -> str:
    """Every run of 3 or more line breaks as 2. Three replaced by two until none is left ends at exactly two for
    any run (one of k becomes 2 (k // 3) + k % 3 >= 2 long); ~4x faster than a regex's sub on the demo corpus."""
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def _has_control(text: str) -> bool:
    if text.isascii():
        return bool(text.encode("ascii").translate(None, _NOT_CONTROL))
    return _CONTROL_RE.search(text) is not None


@dataclass(frozen=True)
class Cleaning:
    """What to do to each text; see UdatasetsSettings for the meaning of each field."""
    unicode_nfc: bool = True
    strip_control: bool = True
    whitespace: str = "normalize"

    @property
    def active(self) -> bool:
        return self.unicode_nfc or self.strip_control or self.whitespace != "keep"

    def text(self, text: str) -> str:
        """One text, cleaned (the same object when nothing changed)."""
        if len(text) <= PIECE_CHARS:  # most texts: one piece, whose ends are the text's
            text = self._piece(text)
            return text.strip() if self.whitespace == "normalize" else text
        parts, changed = [], False
        for piece in _pieces(text):
            parts.append(self._piece(piece))
            changed |= parts[-1] is not piece
        if self.whitespace == "normalize":
            changed |= _strip_ends(parts)
        return "".join(parts) if changed else text

    def _piece(self, text: str) -> str:
        """One piece of a text cleaned by every rule but the stripping of the text's ends."""
        if self.unicode_nfc and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        if self.whitespace == "normalize" and "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self.strip_control and _has_control(text):
            text = text.translate(_CONTROL)
        if self.whitespace == "normalize":  # the substring checks skip the (slower) steps on most texts
            if " \n" in text or "\t\n" in text:  # blanks before a line break go (not at the text's end)
                lines = text.split("\n")
                text = "\n".join([line.rstrip(" \t") for line in lines[:-1]] + lines[-1:])
            text = _squeeze_line_breaks(text)
        return text

    def batch(self, records: list[dict]) -> list[tuple[dict, bool] | None]:
        """For each record, what `record` returns it as, where a few numpy passes over all the texts at once tell:
        a CPT record whose text is ASCII and holds nothing a rule changes (a control character or \r, blanks before
        a line break, whitespace at either end; ASCII is NFC already) but, at most, runs of three or more line
        breaks, squeezed here (most demo texts: ~8 µs a text against ~16 for `record`); None for the others,
        which take `record`."""
        results: list[tuple[dict, bool] | None] = [None] * len(records)
        batch = [i for i, record in enumerate(records) if "messages" not in record
                 and 0 < len(record["text"]) <= PIECE_CHARS and record["text"].isascii()]
        if not self.active or not batch:
            return results
        texts = [records[i]["text"].encode("ascii") for i in batch]
        data = np.frombuffer(b"x".join(texts), dtype=np.uint8)  # no rule's pattern reaches across an "x"
        starts = np.cumsum([0] + [len(text) + 1 for text in texts[:-1]])
        ends = starts + [len(text) for text in texts]
        changed = _REPLACED.take(data)
        newline = data == _NEWLINE
        changed[:-1] |= ((data[:-1] == _SPACE) | (data[:-1] == _TAB)) & newline[1:]
        squeezed = np.zeros(len(data), dtype=bool)  # the third line break of a run and those after it go
        squeezed[2:] = newline[2:] & newline[1:-1] & newline[:-2]
        changed = np.logical_or.reduceat(changed, starts) | ASCII_SPACE.take(data[starts]) \
            | ASCII_SPACE.take(data[ends - 1])
        squeeze = np.logical_or.reduceat(squeezed, starts)
        for i, start, end, change, runs in zip(batch, starts.tolist(), ends.tolist(), changed.tolist(),
                                               squeeze.tolist()):
            if change or (runs and self.whitespace != "normalize"):
                continue
            if not runs:
                results[i] = records[i], False
                continue
            text = data[start:end][~squeezed[start:end]].tobytes().decode("ascii")
            results[i] = {**records[i], "text": text}, True
        return results

    def record(self, record: dict) -> tuple[dict, bool]:
        """(the record with its text cleaned, whether anything changed). The input record is not modified."""
        if not self.active:
            return record, False
        if "messages" in record:
            messages, changed = [], False
            for message in record["messages"]:
                content = self.text(message["content"])
                if content != message["content"]:
                    message, changed = {**message, "content": content}, True
                messages.append(message)
            return ({**record, "messages": messages}, True) if changed else (record, False)
        text = self.text(record["text"])
        return ({**record, "text": text}, True) if text != record["text"] else (record, False)
