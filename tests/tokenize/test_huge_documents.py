"""A 50 MB document, and a conversation with a 20 MB message, through the real entry point in a
subprocess: peak memory stays under 1 GiB (a 50 MB document took 5.9 GB when encoded whole) and the
output holds the ids of encoding the text whole."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmrunner.indexed import read_index
from llmrunner.tokenizer import load_text_tokenizer, load_tokenizer
from tests.paths import REPO
from tests.tokenize.huge_doc import huge_text

pytestmark = pytest.mark.slow  # 50 MB documents: `make test-fast` leaves them out
PEAK_LIMIT = 1 << 30
BLOCK_CHARS = 1_000_000
BLOCKS = 50  # a 50 MB document


def letters_at_both_ends(text: str) -> str:
    """`text` without what precedes its first letter or follows its last."""
    first = next(i for i, c in enumerate(text) if c.isalpha())
    last = next(i for i in range(len(text) - 1, -1, -1) if text[i].isalpha())
    return text[first:last + 1]


# Runs a command and writes its peak resident memory (KiB on Linux) to a file. The measured process is this
# small script's child: Linux records in a child's ru_maxrss the memory of the process it was forked from as
# well (the high-water mark survives exec), which for a child of this test process would be the test's own.
MEASURE = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
           "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
           "sys.exit(code)")


def run_tokenize(args: list[str], log: Path) -> int:
    """Run `python -m llmrunner.tokenize ARGS` and return its peak resident memory in bytes; a failure shows
    the log."""
    peak_file = log.with_suffix(".peak")
    with open(log, "wb") as out:
        code = subprocess.call([sys.executable, "-c", MEASURE, str(peak_file), sys.executable, "-m",
                                "llmrunner.tokenize", *args], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    assert code == 0, log.read_text(encoding="utf-8", errors="replace")[-3000:]
    return int(peak_file.read_text()) * 1024


def test_a_50_mb_document_in_bounded_memory(tiny_tokenizer_dir, tmp_path):
    """The document is a block of real text (demo corpus, unicode, digits, whitespace runs, newlines) 50 times,
    joined by spaces. The expected ids are the block's, then those of space + block 49 times: encoding
    two blocks whole shows that the ids split there, so no 50 MB whole encoding (~6 GB) is needed."""
    block = letters_at_both_ends(huge_text(BLOCK_CHARS))
    backend = load_text_tokenizer(tiny_tokenizer_dir).backend
    first, joined = (e.ids for e in backend.encode_batch([block, " " + block]))
    assert backend.encode(block + " " + block).ids == first + joined

    data = tmp_path / "huge.jsonl"
    body = json.dumps(block, ensure_ascii=False)[1:-1]
    with open(data, "w", encoding="utf-8") as out:  # written in parts: the test holds no 50 MB string
        out.write('{"text": "short before"}\n{"text": "' + body + (" " + body) * (BLOCKS - 1) + '"}\n')
        out.write('{"text": "short after"}\n')
    assert data.stat().st_size > 50_000_000

    peak = run_tokenize(["cpt", "--input", str(data), "--tokenizer", str(tiny_tokenizer_dir), "--out-prefix",
                         str(tmp_path / "out"), "--settings", '{"threads": 2}'], tmp_path / "cpt.log")
    assert peak < PEAK_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"

    eod = load_tokenizer(tiny_tokenizer_dir).eos_token_id
    short = [e.ids + [eod] for e in backend.encode_batch(["short before", "short after"])]
    expected = np.concatenate([short[0], first, np.tile(joined, BLOCKS - 1), [eod], short[1]])
    index = read_index(tmp_path / "out_text_document")
    assert index.document_indices.tolist() == [0, 1, 2, 3]
    assert index.sequence_lengths.tolist() == [len(short[0]), len(first) + len(joined) * (BLOCKS - 1) + 1,
                                               len(short[1])]
    assert np.array_equal(np.fromfile(tmp_path / "out_text_document.bin", index.dtype), expected)


def test_conversations_with_a_20_mb_message_in_bounded_memory(tiny_tokenizer_dir, tmp_path):
    """Only the first max_tokens tokens of a conversation are kept, so only they are encoded: the ids and mask
    that apply_chat_template gives for the conversation with its long message shortened, cut there. A huge
    user message leaves no assistant token within the cut: that conversation is dropped."""
    text = huge_text(20_000_000)
    chats = [[{"role": "user", "content": "Summarise this:\n" + text}, {"role": "assistant", "content": "No."}],
             [{"role": "user", "content": "Write a long text."}, {"role": "assistant", "content": text}]]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": c}, ensure_ascii=False) + "\n" for c in chats), encoding="utf-8")
    del text, chats
    peak = run_tokenize(["sft", "--input", str(data), "--tokenizer", str(tiny_tokenizer_dir), "--out-prefix",
                         str(tmp_path / "out"), "--settings", '{"threads": 2, "max_tokens": 4096}'],
                        tmp_path / "sft.log")
    assert peak < PEAK_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB"

    stats = json.loads((tmp_path / "out.stats.json").read_text(encoding="utf-8"))
    assert (stats["input"], stats["conversations"], stats["truncated"], stats["tokens"]) == (2, 1, 1, 4096)
    assert stats["dropped_by_reason"] == {"no_target": 1}
    shortened = [{"role": "user", "content": "Write a long text."},
                 {"role": "assistant", "content": huge_text(100_000)[:100_000]}]
    ref = load_tokenizer(tiny_tokenizer_dir).apply_chat_template(
        shortened, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert len(ref["input_ids"]) > 4096
    ids = np.fromfile(tmp_path / "out_text_document.bin", read_index(tmp_path / "out_text_document").dtype)
    mask = np.fromfile(tmp_path / "out_loss_mask_document.bin", np.uint8)
    assert ids.tolist() == list(ref["input_ids"][:4096]) and mask.tolist() == list(ref["assistant_masks"][:4096])
