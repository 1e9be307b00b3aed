"""SFT augmentation: new conversations made from the kept ones, each marked with how and from what.

Two augmentations that SFT practitioners use:
- `system_prompt`: a copy of a conversation with its system prompt replaced (or one inserted) by a prompt
  drawn from a configured list, so the model does not tie its behaviour to one fixed system prompt;
- `multi_turn`: k consecutive single-exchange conversations (user + assistant, the same system prompt or
  none) joined into one k-exchange conversation, so the model sees earlier turns as context.

Which conversations are chosen, and which prompt, depends only on `seed` and a digest of the conversation
itself (never on Python's hash()), so adding or removing other records changes no other decision, and the
same input and settings give the same output on any machine. The originals are never changed.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from llmrunner.errors import ConfigError
from llmrunner.schemas import load_schema
from llmrunner.settings import settings_from_dict


@dataclass(frozen=True)
class AugmentSettings:
    """The `augment:` mapping of steps/1.udatasets.yaml; every key's type, default and range are in
    config/schemas/udatasets.schema.json (properties.augment)."""
    seed: int
    """Seeds every choice; another seed chooses other conversations and prompts."""
    system_prompt_fraction: float
    """Share of the kept conversations that get one copy with a system prompt drawn from system_prompts
    (replacing the conversation's own system turn, or inserted first when it has none); 0: off."""
    system_prompts: list[str]
    """The system prompts to draw from (a copy never gets the prompt it already has)."""
    multi_turn_fraction: float
    """Share of the single-exchange conversations (user + assistant, optionally after a system turn) used
    as parts of multi-turn conversations; 0: off."""
    multi_turn_exchanges: int
    """How many consecutive chosen single-exchange conversations one multi-turn conversation joins."""

    def __post_init__(self) -> None:
        if self.system_prompt_fraction and not self.system_prompts:
            raise ConfigError("udatasets settings: augment.system_prompts: give at least one prompt when "
                              "system_prompt_fraction is above 0 (or set system_prompt_fraction: 0)")

    @classmethod
    def from_dict(cls, values: dict) -> AugmentSettings:
        """The settings from the `augment:` mapping; a ConfigError naming `augment.<key>` on bad input."""
        return settings_from_dict(cls, values, load_schema("udatasets")["properties"]["augment"], "udatasets",
                                  key_prefix="augment")

    def enabled(self) -> bool:
        """Whether any augmentation makes records."""
        return self.system_prompt_fraction > 0 or self.multi_turn_fraction > 0


def draw(seed: int, kind: str, messages: list[dict]) -> tuple[float, int]:
    """Two numbers fixed by (seed, kind, conversation): a uniform one in [0, 1) that decides whether the
    conversation is chosen, and an integer that picks among alternatives."""
    key = json.dumps([seed, kind, [[m["role"], m["content"]] for m in messages]], ensure_ascii=False)
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "little") / 2**64, int.from_bytes(digest[8:], "little")


def mark(messages: list[dict], meta: dict, kind: str, sources: list[dict]) -> dict:
    """A new record with its augmentation marker (replacing any marker in `meta`)."""
    return {"messages": messages, **meta, "augmentation": {"kind": kind, "from": sources}}


def metadata(record: dict) -> dict:
    """The record's metadata: every key but the messages and an earlier augmentation marker."""
    return {k: v for k, v in record.items() if k not in ("messages", "augmentation")}


def with_system_prompt(record: dict, source: dict, settings: AugmentSettings) -> dict | None:
    """The `system_prompt` copy of a record, or None when it is not chosen."""
    chosen, pick = draw(settings.seed, "system_prompt", record["messages"])
    if chosen >= settings.system_prompt_fraction:
        return None
    messages = record["messages"]
    has_system = messages[0]["role"] == "system"
    prompts = [p for p in settings.system_prompts if not has_system or p != messages[0]["content"]]
    if not prompts:
        return None
    turns = messages[1:] if has_system else messages
    system = {"role": "system", "content": prompts[pick % len(prompts)]}
    return mark([system, *turns], metadata(record), "system_prompt", [source])


def single_exchange(messages: list[dict]) -> bool:
    """user + assistant, optionally after a system turn: what multi-turn assembly joins."""
    return [m["role"] for m in messages if m["role"] != "system"] == ["user", "assistant"]


def joined(parts: list[tuple[dict, dict]]) -> dict:
    """One multi-turn record from single-exchange parts that share their system turn (or have none). Metadata
    that every part has with the same value are kept; the rest differ between the parts and are left out."""
    first = parts[0][0]
    messages = list(first["messages"])
    for record, _ in parts[1:]:
        messages.extend(m for m in record["messages"] if m["role"] != "system")
    meta = {k: v for k, v in metadata(first).items() if all(k in r and r[k] == v for r, _ in parts[1:])}
    return mark(messages, meta, "multi_turn", [source for _, source in parts])


def system_of(record: dict) -> str | None:
    """The record's system prompt, or None when it has no system turn."""
    first = record["messages"][0]
    return first["content"] if first["role"] == "system" else None


def augment(records: Iterable[tuple[dict, dict]], settings: AugmentSettings) -> Iterator[dict]:
    """The new records made from `records` (the kept SFT records of one dataset in output order, each with its
    source `{"dataset", "file", "line"}`), in input order; the originals are not yielded and not changed.

    Multi-turn assembly chooses single-exchange conversations (multi_turn_fraction) and joins each run of
    multi_turn_exchanges consecutive chosen ones that share a system prompt; a chosen conversation with
    another system prompt starts a new run (the unfinished one is not used), and so does the end of input."""
    run: list[tuple[dict, dict]] = []
    for record, source in records:
        if settings.system_prompt_fraction > 0:
            copy = with_system_prompt(record, source, settings)
            if copy is not None:
                yield copy
        if settings.multi_turn_fraction <= 0 or not single_exchange(record["messages"]):
            continue
        if draw(settings.seed, "multi_turn", record["messages"])[0] >= settings.multi_turn_fraction:
            continue
        if run and system_of(run[0][0]) != system_of(record):
            run = []
        run.append((record, source))
        if len(run) == settings.multi_turn_exchanges:
            yield joined(run)
            run = []

