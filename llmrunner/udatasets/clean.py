"""Cleaning of a unified record's text (CPT `text`, SFT every message `content`), after the adapter and
before the length filters and de-duplication: Unicode NFC, control characters, whitespace.

Spaces inside a line are never touched (code indentation matters)."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

WHITESPACE_MODES = ("normalize", "keep")

# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F. \n and \t are kept; so is \r, which
# only survives to this point under whitespace: keep (normalize has already turned it into \n).
_CONTROL = {c: None for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]
            if unicodedata.category(chr(c)) == "Cc" and chr(c) not in "\n\t\r"}
_CONTROL_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in _CONTROL) + "]")
_TRAILING_BLANKS = re.compile(r"[ \t]+(?=\n)")
_BLANK_LINES = re.compile(r"\n{3,}")


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
        """One text, cleaned."""
        if self.unicode_nfc and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        if self.whitespace == "normalize" and "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self.strip_control and _CONTROL_RE.search(text):
            text = text.translate(_CONTROL)
        if self.whitespace == "normalize":  # the substring checks skip the (slower) regexes on most texts
            if " \n" in text or "\t\n" in text:
                text = _TRAILING_BLANKS.sub("", text)
            if "\n\n\n" in text:
                text = _BLANK_LINES.sub("\n\n", text)
            text = text.strip()
        return text

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
