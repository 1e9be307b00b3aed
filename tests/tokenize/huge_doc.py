"""A huge document of real text for the memory tests: the demo corpus (Python documentation, the Jargon
File, WordNet) interleaved with unicode, digit runs, long whitespace runs and bare newlines, repeated
to the length asked for. Also a script, to write one as a JSON Lines file for measuring by hand:
    python -m tests.tokenize.huge_doc OUT.jsonl [MEGABYTES]
"""
from __future__ import annotations

import json
import sys
from itertools import cycle
from pathlib import Path

from tests.paths import demo_cpt_texts

EXTRAS = ["日本語のテキスト、中文文本，한국어 텍스트", "emoji 🙂👍🏽 and ZWJ 👩‍👩‍👧", "e\u0301 vs \u00e9",
          "Ελληνικά кириллица עברית العربية", "\u00a0nbsp\u2009thin\u3000ideographic", " " * 300, "\t" * 40,
          "\n" * 7, "3.14159265358979 1234567890123 0x7f 1e-9", "a   b\r\nc \n d"]


def demo_texts(limit_chars: int) -> list[str]:
    """The demo corpus's documents, up to about `limit_chars` characters of them."""
    texts, chars = [], 0
    for text in demo_cpt_texts():
        texts.append(text)
        chars += len(text)
        if chars >= limit_chars:
            break
    return texts


def huge_text(chars: int, source_chars: int = 4_000_000) -> str:
    """About `chars` characters (at least): demo documents, each followed by one of EXTRAS, cycled."""
    parts, total = [], 0
    for text, extra in zip(cycle(demo_texts(source_chars)), cycle(EXTRAS)):
        parts += [text, extra]
        total += len(text) + len(extra)
        if total >= chars:
            return "".join(parts)
    raise AssertionError("unreachable: cycle() never ends")


def write_huge_doc(path: Path, chars: int) -> Path:
    """A .jsonl file holding one document of about `chars` characters, between two short ones."""
    with open(path, "w", encoding="utf-8") as out:
        for text in ("a short document before", huge_text(chars), "and one after"):
            out.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
    return path


if __name__ == "__main__":
    write_huge_doc(Path(sys.argv[1]), int(float(sys.argv[2] if len(sys.argv) > 2 else 50) * 1_000_000))
