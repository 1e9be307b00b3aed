"""tokenize_sft: conversations -> token ids + an aligned uint8 loss mask (1 = training target).

A conversation is rendered with the tokenizer's own chat template and tokenized as
`apply_chat_template(..., tokenize=True)` would, with one difference: only the special tokens the
template itself writes are special. Text inside a message that spells one (a user typing
"<|im_end|>") stays literal text, so data cannot forge turn boundaries.

How: the template is rendered once with a sentinel in place of each message's content, which
locates the template's own text; the real contents are substituted in (and the result checked
against the template's real rendering, so a template that rewrites content is caught); the text is
split at the template's special tokens, and the pieces between them are encoded with special-token
matching off. The mask is 1 on tokens that overlap an assistant content span (as the
`{% generation %}` mask of `apply_chat_template` marks them) and on the first special token the
template writes after that content (its end of turn, `<|im_end|>` in ChatML).

A conversation is encoded only as far as `max_tokens` (what follows is cut off or the conversation
dropped), a long plain text in pieces with the ids of encoding it whole (pieces.py): a huge message
costs memory for the text, not for its tokens.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrunner.chat_rules import ROLES, turn_order_problem
from llmrunner.errors import StageError, first_few
from llmrunner.indexed import IndexedDatasetWriter, token_dtype
from llmrunner.tokenize.core import (
    BATCH_CHARS,
    Shard,
    batched,
    dataset_prefix,
    input_progress,
    iter_field,
    write_stats,
)
from llmrunner.tokenize.pieces import Splitter
from llmrunner.tokenizer import literal_backend, load_tokenizer

log = logging.getLogger(__name__)

BATCH_CONVERSATIONS = 256
SENTINEL = re.compile("\ue000(\\d+)\ue001")  # Private Use Area: no real text or template writes these


@dataclass
class RenderedChat:
    """A rendered conversation: its text, cut into plain-text pieces and the template's special tokens."""

    text: str
    pieces: list[tuple[int, int, int | None]]
    """(start, end, special token id or None for plain text), covering `text` in order."""
    targets: list[tuple[int, int]]
    """Character spans of the target assistant contents."""
    target_specials: set[int]
    """Start offsets in `text` of the end-of-turn tokens that follow a target content."""


class ChatEncoder:
    """Renders and tokenizes conversations with one tokenizer's chat template."""

    def __init__(self, tokenizer, source: str = "the tokenizer") -> None:
        if not tokenizer.chat_template:
            raise StageError(f"{source} has no chat template, which SFT needs to render conversations; "
                             f"add one (chat_template.jinja or tokenizer_config.json chat_template)")
        self.tokenizer = tokenizer
        self.source = source
        self.backend = literal_backend(tokenizer)
        self.splitter = Splitter(self.backend)
        self.special_ids = {tok.content: idx for idx, tok in self.backend.get_added_tokens_decoder().items()
                            if tok.special}
        names = sorted(self.special_ids, key=len, reverse=True)  # longest first: no prefix wins early
        self.special_re = re.compile("|".join(map(re.escape, names))) if names else None

    def render(self, messages: list[dict], where: str) -> str:
        from jinja2 import TemplateError

        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        except TemplateError as err:  # templates reject conversations with raise_exception(...)
            raise StageError(f"{where}: the chat template of {self.source} refused this conversation: "
                             f"{err}; fix or drop it") from err

    def rendered(self, messages: list[dict], train_on: str, where: str) -> RenderedChat:
        """Render `messages` and locate the template's special tokens and the target contents."""
        masked = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
        skeleton = self.render(masked, where)
        parts = SENTINEL.split(skeleton)  # template text, message index, template text, ...
        order = [int(i) for i in parts[1::2]]
        if sorted(order) != list(range(len(messages))):
            raise StageError(f"{where}: the chat template of {self.source} does not write each message's "
                             f"content exactly once; SFT cannot tell the contents from the template")
        assistants = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        wanted = set(assistants if train_on == "all_assistant" else assistants[-1:])
        # The real rendering must be the skeleton with each sentinel replaced by its content; it is checked part
        # by part in place (no copy of a long conversation), so a template that rewrites content is caught.
        text = self.render(messages, where)
        at, pieces, targets, target_specials = 0, [], [], set()  # at: where the next part starts in `text`
        pending_end = False  # a target content was just written: the next template special ends its turn
        for k, part in enumerate(parts):
            if k % 2:  # a message's content: plain text, never split at special-token look-alikes
                i = int(part)
                part = messages[i]["content"]
                if part:
                    pieces.append((at, at + len(part), None))
                if i in wanted:
                    targets.append((at, at + len(part)))
                    pending_end = True
            else:
                pos = 0
                for match in self.special_re.finditer(part) if self.special_re else ():
                    if match.start() > pos:
                        pieces.append((at + pos, at + match.start(), None))
                    if pending_end:
                        target_specials.add(at + match.start())
                        pending_end = False
                    pieces.append((at + match.start(), at + match.end(), self.special_ids[match.group()]))
                    pos = match.end()
                if pos < len(part):
                    pieces.append((at + pos, at + len(part), None))
            if not text.startswith(part, at):
                at = -1
                break
            at += len(part)
        if at != len(text):
            raise StageError(f"{where}: the chat template of {self.source} changes message content while "
                             f"rendering (for example strips it), so SFT cannot locate the assistant text; "
                             f"clean the content (e.g. strip leading newlines) or use a template that "
                             f"inserts content verbatim")
        return RenderedChat(text, _merge_plain(pieces), targets, target_specials)

    def encode(self, chats: list[RenderedChat], limit: int | None = None) -> list[tuple[list[int], list[int]]]:
        """Token ids and loss mask of each rendered conversation (one batch call to the Rust tokenizer). With
        `limit`, a conversation's ids end soon after they pass `limit` (the caller cuts there anyway): a plain
        text longer than a batch is encoded in pieces (pieces.py), only as far as the limit."""
        short = [[(s, e) for s, e, special in lay.pieces if special is None and e - s <= BATCH_CHARS]
                 for lay in chats]
        encodings = iter(self.backend.encode_batch([lay.text[s:e] for lay, spans in zip(chats, short)
                                                    for s, e in spans], add_special_tokens=False))
        out = []
        for lay, spans in zip(chats, short):
            encoded = {start: next(encodings) for start, _ in spans}  # by the plain text's start
            ids: list[int] = []
            mask: list[int] = []
            for start, end, special in lay.pieces:
                if limit is not None and len(ids) > limit:
                    break
                if special is not None:
                    ids.append(special)
                    mask.append(int(start in lay.target_specials))
                    continue
                parts = [(start, encoded[start])] if start in encoded else self._long(lay.text, start, end)
                for offset, encoding in parts:
                    ids.extend(encoding.ids)
                    mask.extend(int(any(offset + a < e and offset + b > s for s, e in lay.targets))
                                for a, b in encoding.offsets)
                    if limit is not None and len(ids) > limit:
                        break
            out.append((ids, mask))
        return out

    def _long(self, text: str, start: int, end: int) -> Iterator[tuple[int, object]]:
        """(offset, encoding) of each piece of the plain text `text[start:end]`, encoded when asked for."""
        for piece_start, piece_end in self.splitter.spans(text, start, end):
            yield piece_start, self.backend.encode(text[piece_start:piece_end], add_special_tokens=False)


def _merge_plain(pieces: list[tuple[int, int, int | None]]) -> list[tuple[int, int, int | None]]:
    """Join adjacent plain-text pieces: between two special tokens the text is encoded in one piece,
    as apply_chat_template does (content and template text can merge into one token)."""
    merged: list[tuple[int, int, int | None]] = []
    for start, end, special in pieces:
        if special is None and merged and merged[-1][2] is None and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end, None)
        else:
            merged.append((start, end, special))
    return merged


def check_messages(where: str, messages: list) -> list[dict]:
    """The conversation when it follows the SFT rules (llmrunner/chat_rules.py); otherwise a StageError naming
    the line and the rule: data read without udatasets was never validated, and a turn with an unknown role
    would be rendered and silently never trained."""
    fix = "enable the udatasets step to validate and clean SFT data (docs/records.md has the rules)"
    for n, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise StageError(f"{where}: messages[{n}] must be an object with string 'role' and 'content'; {fix}")
        if m["role"] not in ROLES:
            raise StageError(f"{where}: messages[{n}] has role {m['role']!r}, not one of {list(ROLES)}; {fix}")
    problem = turn_order_problem([m["role"] for m in messages])
    if problem is not None:
        raise StageError(f"{where}: the conversation breaks an SFT rule ({problem}); {fix}")
    return messages


def content_chars(item: tuple[str, list]) -> int:
    """The characters of a conversation's message contents (not yet checked: anything else counts 0)."""
    return sum(len(m["content"]) for m in item[1] if isinstance(m, dict) and isinstance(m.get("content"), str))


def tokenize_sft(inputs: list[Path], tokenizer_dir: Path, out_prefix: Path, max_tokens: int = 2048,
                 overlong: str = "truncate", train_on: str = "all_assistant", shard: Shard = Shard()) -> dict:
    """Write `<prefix>_text_document` and `<prefix>_loss_mask_document` (.bin/.idx) and the stats file,
    for the shard's conversations (all of them by default)."""
    tokenizer = load_tokenizer(tokenizer_dir)
    encoder = ChatEncoder(tokenizer, source=f"the tokenizer in {tokenizer_dir}")
    seen = written = tokens = targets = truncated = 0
    ranges = shard.line_ranges(inputs)
    dropped: Counter[str] = Counter()
    with (IndexedDatasetWriter(dataset_prefix(out_prefix, "text_document"), token_dtype(len(tokenizer))) as texts,
          IndexedDatasetWriter(dataset_prefix(out_prefix, "loss_mask_document"), np.uint8) as masks,
          input_progress(inputs, shard, ranges, f"tokenize sft {out_prefix.name}", "conversations") as progress):
        conversations = iter_field(inputs, "messages", list, ranges)
        for batch in batched(conversations, BATCH_CONVERSATIONS, BATCH_CHARS, content_chars):
            chats = [encoder.rendered(check_messages(where, msgs), train_on, where) for where, msgs in batch]
            kept_ids, kept_masks = [], []
            for ids, mask in encoder.encode(chats, limit=max_tokens):
                seen += 1
                cut = len(ids) > max_tokens
                if cut and overlong == "drop":
                    dropped["overlong"] += 1
                    continue
                ids, mask = ids[:max_tokens], mask[:max_tokens]
                if not any(mask):  # nothing to learn from (the targets were cut off, or there were none)
                    dropped["no_target"] += 1
                    continue
                kept_ids.append(ids)
                kept_masks.append(mask)
                truncated += cut
                tokens += len(ids)
                targets += sum(mask)
            texts.add_documents(kept_ids)
            masks.add_documents(kept_masks)
            written += len(kept_ids)
            progress.advance(len(batch))
    assert seen == written + sum(dropped.values())
    stats = {"conversations": written, "tokens": tokens, "target_tokens": targets, "truncated": truncated,
             "dropped": sum(dropped.values()), "dropped_by_reason": dict(sorted(dropped.items())), "input": seen,
             "max_tokens": max_tokens, "overlong": overlong, "train_on": train_on, "vocab_size": len(tokenizer),
             "inputs": [str(p) for p in inputs]}
    stats_path = write_stats(out_prefix, stats)
    log.info("%d of %d conversations, %d tokens (%d targets), %d truncated, %d dropped -> %s_{text,loss_mask}"
             "_document.{bin,idx}; stats -> %s", written, seen, tokens, targets, truncated, stats["dropped"],
             out_prefix, stats_path)
    if shard.count == 1:
        require_conversations(stats, out_prefix)
    return stats


DROP_REASONS = {"overlong": "longer than max_tokens ({max_tokens}) with overlong: drop",
                "no_target": "no assistant token within the first max_tokens ({max_tokens}) tokens"}


def require_conversations(stats: dict, out_prefix: Path) -> None:
    """Stop when a whole SFT dataset has no conversation left (a shard may have none): training would fail on
    its empty files much later ("cannot mmap an empty file"). Called after the outputs are written."""
    if stats["conversations"]:
        return
    if not stats["input"]:
        raise StageError(f"dataset {out_prefix.name!r} has no conversation: none read from "
                         f"{first_few(stats['inputs'])} "
                         f"(the files are empty or hold only blank lines); fix the data, or remove the dataset "
                         f"from pipeline.yaml")
    reasons = "; ".join(f"{count} {DROP_REASONS.get(reason, reason).format(max_tokens=stats['max_tokens'])}"
                        for reason, count in sorted(stats["dropped_by_reason"].items()))
    raise StageError(f"dataset {out_prefix.name!r} has no conversation left: {stats['input']} read from "
                     f"{first_few(stats['inputs'])}, all dropped ({reasons}); raise max_tokens or set overlong: "
                     f"truncate in the tokenize_sft step, or fix the data")


SFT_SUMMED = ("conversations", "tokens", "target_tokens", "truncated", "dropped", "dropped_by_reason", "input")
"""The SFT stats that add up over shards."""
