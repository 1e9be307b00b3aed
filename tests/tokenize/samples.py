"""Documents and conversations the tokenize tests share: plain and edge-case CPT texts (unicode, whitespace,
very long, special-token look-alikes), chats, and writers of their JSONL inputs."""
from __future__ import annotations

import json
from pathlib import Path

DOCS = ["The quick brown fox.\nJumps over the lazy dog.", "", "def f(x):\n    return x * 2  # ünïcödé",
        "Another document, with numbers 12345."]


def write_docs(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t, "source": "t"}) + "\n" for t in texts), encoding="utf-8")
    return path


def assert_identical(ours: Path, ref: Path) -> None:
    for ext in ("bin", "idx"):
        assert Path(f"{ours}_text_document.{ext}").read_bytes() == Path(f"{ref}_text_document.{ext}").read_bytes()


# Everything except text spelling a special token must come out byte-identical to Megatron's.
VARIED = DOCS + ["", "   ", "\n\n\t \n", " leading and trailing spaces  ", "tabs\tand\r\nCRLF\r\n",
                 "日本語のテキスト、中文文本，한국어 텍스트", "emoji 🙂👍🏽 and ZWJ 👩‍👩‍👧",
                 "e\u0301 vs \u00e9 (NFD/NFC)", "Ελληνικά кириллица עברית العربية",
                 "\u00a0nbsp\u2009thin\u3000ideographic", "x" * 5000,
                 " ".join(f"word{i}" for i in range(2000)), "<|im_start> not quite a special token <im_end|>"]


def chat(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in turns]


MULTI_TURN = chat(("system", "You are a helpful assistant."), ("user", 'Define "leery".'),
                  ("assistant", "Leery (adj): openly distrustful."), ("user", "And 'stocker'?"),
                  ("assistant", "Stocker (noun): a young steer kept as stock."))
EDGY = chat(("user", "  leading spaces\n\nand blank lines  "), ("assistant", "\n\nstarts with newlines\n"),
            ("user", "ünïcödé → 中文"), ("assistant", ""))


def write_chats(path: Path, conversations: list[list[dict]]) -> Path:
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations), encoding="utf-8")
    return path
