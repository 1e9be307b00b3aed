"""Encoding a huge text in pieces with the ids of encoding it whole, so memory stays bounded.

The Rust tokenizer holds over 100 bytes per character of the text it encodes (the normalized string's
alignments, every token's string, offsets and masks): 6 to 8 GB for one 50 MB document. A text longer than
`Splitter.piece_chars` is therefore cut into pieces, each encoded on its own.

A cut is made only where the tokenizer's pre-tokenizer splits anyway, since the model (BPE, WordPiece,
Unigram) encodes each pre-token on its own: then the pieces' ids, concatenated, are the whole text's.
Candidates are a space or newline between a non-space and a letter ("word| word", "end|\\nNext"); each is
checked on the text around it (WINDOW characters each side), where the left part and the right part must
give, concatenated, what the window gives whole: the same normalized text, the same pre-tokens, the same
ids. That rules out a cut inside a pre-token (".\\n" is one for GPT-4, Qwen, DeepSeek), next to an added token,
or under a normalizer or pre-tokenizer that treats a text's start specially (`Strip`, `Prepend`,
`add_prefix_space`). A tokenizer with no pre-tokenizer (the whole text is one word), with truncation or
padding set, is never cut, nor is a text with no candidate that passes (it is encoded whole, as before).
The check assumes that whether the pre-tokenizer splits at a point depends on the text near it, as it does
for the usual regex pre-tokenizers (a non-space before the cut, a space or newline at it, a letter after it),
not for one that matched chunks of a fixed length across lines. tests/tokenize/test_pieces.py compares
piece-wise and whole encodings on real text for the demo tokenizer (GPT-2's regex) and DeepSeek's.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import NamedTuple

from llmrunner.tokenize.fast import BatchIds

log = logging.getLogger(__name__)

PIECE_CHARS = 1 << 15  # a piece's length, about; several fit in one encode batch, for the thread pool
WINDOW = 256  # characters each side of a cut that the check encodes
CUT_TRIES = 32  # candidates checked per piece before the piece is made longer
LONG_WHOLE = 1 << 20  # a text this long encoded whole is worth a warning (over 100 MB)
CANDIDATE = re.compile(r"(?<=\S)[ \n](?=[^\W\d_])")  # a space or newline between a non-space and a letter


class Splitter:
    """Cuts texts into pieces at points where encoding in pieces gives the ids of encoding whole."""

    def __init__(self, backend, piece_chars: int | None = None) -> None:
        self.backend = backend
        self.piece_chars = piece_chars or PIECE_CHARS
        self.normalizer = backend.normalizer
        self.pre_tokenizer = backend.pre_tokenizer
        self.enabled = self.pre_tokenizer is not None and backend.truncation is None and backend.padding is None

    def spans(self, text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
        """(start, end) of consecutive pieces that cover `text[start:end]` (all of it by default): one span
        when it is at most `piece_chars` long, else pieces of about that length, each cut at a safe point."""
        end = len(text) if end is None else end
        while self.enabled and end - start > self.piece_chars:
            cut = self.find_cut(text, start, end)
            if cut is None:
                break
            yield start, cut
            start = cut
        yield start, end

    def find_cut(self, text: str, start: int, end: int) -> int | None:
        """A safe cut at least `piece_chars` after `start`, before `end`; None when there is none."""
        search = start + self.piece_chars
        while search < end:
            for tries, match in enumerate(CANDIDATE.finditer(text, search, end), start=1):
                if self.cut_is_safe(text, match.start(), start, end):
                    return match.start()
                if tries == CUT_TRIES:  # this stretch resists (say, a tokenizer that never splits here): go on
                    search = match.start() + self.piece_chars
                    break
            else:
                break  # no candidate left
        if end - start > LONG_WHOLE:
            log.warning("a text of %d characters has no point where it can be cut without changing its tokens; "
                        "it is encoded whole, which takes over 100 bytes of memory per character", end - start)
        return None

    def cut_is_safe(self, text: str, cut: int, start: int, end: int) -> bool:
        """Whether the window around `cut` (within `text[start:end]`) gives, cut there, what it gives whole:
        normalized text, pre-tokens and ids."""
        whole = text[max(cut - WINDOW, start):min(cut + WINDOW, end)]
        left, right = text[max(cut - WINDOW, start):cut], text[cut:min(cut + WINDOW, end)]
        parts = (left, right, whole)
        if self.normalizer is not None:
            parts = tuple(map(self.normalizer.normalize_str, parts))
            if parts[0] + parts[1] != parts[2]:
                return False
        words = [[word for word, _ in self.pre_tokenizer.pre_tokenize_str(part)] for part in parts]
        if words[0] + words[1] != words[2]:
            return False
        ids = [encoding.ids for encoding in self.backend.encode_batch([left, right, whole], add_special_tokens=False)]
        return ids[0] + ids[1] == ids[2]


def special_tokens_around(backend) -> tuple[list[int], list[int]] | None:
    """The ids the post-processor puts before and after a text's own (`add_special_tokens=True`: a bos, an eos),
    which a text encoded in pieces gets once, around all of them; None when it does more than surround."""
    bare = backend.encode("a", add_special_tokens=False).ids
    full = backend.encode("a", add_special_tokens=True).ids
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return full[:i], full[i + len(bare):]
    return None


class Piece(NamedTuple):
    """A document, or a piece of one too long to encode at once."""

    text: str
    first: bool
    last: bool


class PieceEncoder:
    """`tokenizer(text)["input_ids"]` of CPT documents, one longer than `longer_than` in pieces: the pieces' ids,
    concatenated and surrounded by what the post-processor adds to a whole text, are the whole document's."""

    def __init__(self, backend, longer_than: int, encode: BatchIds) -> None:
        # encode(texts, add_special_tokens): the backend's ids (fast.py); True is what tokenizer(text) does.
        self.encode = encode
        self.longer_than = longer_than
        around = special_tokens_around(backend)
        self.splitter = Splitter(backend) if around is not None else None
        self.prefix, self.suffix = around or ([], [])

    def pieces(self, texts: Iterator[str]) -> Iterator[Piece]:
        """Each text as one piece, or in pieces when it is longer than `longer_than` (and can be cut safely)."""
        for text in texts:
            if self.splitter is None or len(text) <= self.longer_than:
                yield Piece(text, True, True)
                continue
            for start, end in self.splitter.spans(text):
                yield Piece(text[start:end], start == 0, end == len(text))

    def __call__(self, batch: list[Piece]) -> list[list[int]]:
        """The ids of each piece: a whole document's with its special tokens, a piece's with those that the
        post-processor puts before the document (first piece) or after it (last piece)."""
        whole = [piece.text for piece in batch if piece.first and piece.last]
        parts = [piece.text for piece in batch if not (piece.first and piece.last)]
        whole_ids = iter(self.encode(whole, True) if whole else ())
        part_ids = iter(self.encode(parts, False) if parts else ())
        out = []
        for piece in batch:
            if piece.first and piece.last:
                out.append(next(whole_ids))
            else:
                out.append((self.prefix if piece.first else []) + next(part_ids)
                           + (self.suffix if piece.last else []))
        return out
