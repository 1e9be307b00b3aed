"""Adapters: one raw JSON object -> a record in the unified schema, or the reason it is rejected.

Unified schema: CPT `{"text": str, ...meta}`; SFT `{"messages": [{"role", "content"}, ...], ...meta}`.
Keys other than the data key are kept as metadata; messages keep only role and content.
"""
from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable

ROLES = ("system", "user", "assistant")

Adapted = tuple[dict | None, str | None]  # (unified record, None) or (None, reject reason)


def adapt_text(record: dict, text_key: str) -> Adapted:
    """CPT: the document is the string under `text_key`; it becomes `text`."""
    if text_key not in record:
        return None, "missing_text"
    text = record[text_key]
    if not isinstance(text, str):
        return None, "text_not_a_string"
    meta = {k: v for k, v in record.items() if k not in (text_key, "text")}
    return {"text": text, **meta}, None


def adapt_messages(record: dict, text_key: str) -> Adapted:
    """SFT: OpenAI-style `messages`; at least one user and one assistant turn, the last one the assistant's."""
    if "messages" not in record:
        return None, "missing_messages"
    messages = record["messages"]
    if not isinstance(messages, list):
        return None, "messages_not_a_list"
    clean = []
    for message in messages:
        if not isinstance(message, dict):
            return None, "message_not_an_object"
        if message.get("role") not in ROLES:
            return None, "bad_role"
        if not isinstance(message.get("content"), str):
            return None, "content_not_a_string"
        clean.append({"role": message["role"], "content": message["content"]})
    roles = [m["role"] for m in clean]
    if "user" not in roles:
        return None, "no_user_turn"
    if "assistant" not in roles:
        return None, "no_assistant_turn"
    if roles[-1] != "assistant":
        return None, "last_turn_not_assistant"
    meta = {k: v for k, v in record.items() if k != "messages"}
    return {"messages": clean, **meta}, None


ADAPTERS: dict[str, Callable[[dict, str], Adapted]] = {"text": adapt_text, "messages": adapt_messages}


def dedup_key(record: dict) -> str:
    """What two records must share to be exact duplicates: the normalised text (SFT: each turn's
    role and normalised content, JSON-encoded so that no content can imitate a turn boundary)."""
    if "messages" in record:
        return json.dumps([[m["role"], normalise(m["content"])] for m in record["messages"]], ensure_ascii=False)
    return normalise(record["text"])


def content_chars(record: dict) -> int:
    """Characters of content: the text (CPT) or the sum over message contents (SFT)."""
    if "messages" in record:
        return sum(len(m["content"]) for m in record["messages"])
    return len(record["text"])


def is_blank(record: dict) -> bool:
    """No content but whitespace (SFT: in every turn)."""
    if "messages" in record:
        return not any(m["content"].strip() for m in record["messages"])
    return not record["text"].strip()


def normalise(text: str) -> str:
    """NFC, and every run of whitespace collapsed to one space (ends stripped): the exact-dedup key."""
    return " ".join(unicodedata.normalize("NFC", text).split())
