"""What the later steps of udatasets need to know about a unified record: its content and its dedup key.

Unified schema: CPT `{"text": str, ...meta}`; SFT `{"messages": [{"role", "content"}, ...], ...meta}`.
"""
from __future__ import annotations

import json
import unicodedata

PIECE_CHARS = 1 << 20


def dedup_key(record: dict) -> str:
    """What two records must share to be exact duplicates: the normalised text (SFT: each turn's
    role and normalised content, JSON-encoded so that no content can imitate a turn boundary)."""
    if "messages" in record:
        return json.dumps([[m["role"], normalise(m["content"])] for m in record["messages"]], ensure_ascii=False)
    return normalise(record["text"])


def near_dup_text(record: dict, key: str | None = None) -> str:
    """What near-duplicate detection compares: the exact-dedup normalisation, case-folded (SFT: each turn as
    `role: content`, one per line), so that case and spacing never hide a near duplicate. `key`: the record's
    dedup_key, when the caller has it: a CPT record's answer is then its case-folded form (case folding maps each
    character on its own, so folding the joined words equals joining the folded ones), not a second normalising."""
    if "messages" in record:
        return "\n".join(f"{m['role'].casefold()}: {normalise(m['content'], casefold=True)}"
                         for m in record["messages"])
    if key is not None and len(key) <= PIECE_CHARS:  # a longer one is folded a piece at a time, for memory
        return key.lower() if key.isascii() else key.casefold()  # the same for ASCII, and faster
    return normalise(record["text"], casefold=True)


def contents(record: dict) -> list[str]:
    """The texts whose tokens a token-length filter counts: the text (CPT) or every message content (SFT)."""
    if "messages" in record:
        return [m["content"] for m in record["messages"]]
    return [record["text"]]


def content_chars(record: dict) -> int:
    """Characters of content: the text (CPT) or the sum over message contents (SFT)."""
    if "messages" in record:
        return sum(len(m["content"]) for m in record["messages"])
    return len(record["text"])


def is_blank(record: dict) -> bool:
    """No content but whitespace (SFT: in any user or assistant turn; an empty system prompt or tool result
    is allowed — docs/records.md)."""
    if "messages" in record:
        return any(not m["content"].strip() for m in record["messages"] if m["role"] in ("user", "assistant"))
    return not record["text"].strip()


def normalise(text: str, casefold: bool = False) -> str:
    """NFC, and every run of whitespace collapsed to one space (ends stripped): the exact-dedup key; `casefold`:
    case-folded too. A text is split and folded PIECE_CHARS characters at a time: for the whole of a 50 MB
    document, the list of its words takes 500 MB and str.casefold's buffer 12 bytes a character."""
    text = unicodedata.normalize("NFC", text)
    parts: list[str] = []
    gap = False  # whitespace since the last word: a word cut between two pieces has none
    for start in range(0, len(text), PIECE_CHARS):
        piece = text[start:start + PIECE_CHARS]
        words = " ".join(piece.split())
        if words:
            if parts and (gap or piece[0].isspace()):
                parts.append(" ")
            parts.append(words.casefold() if casefold else words)
            gap = piece[-1].isspace()
        else:
            gap = True
    return "".join(parts)
