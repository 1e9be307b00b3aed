"""udatasets cleaning: NFC, control characters and whitespace, each configurable; the length filters and the
exact de-duplication see the cleaned text; the accounting identity still holds."""
from __future__ import annotations

import json
import random

import pytest

from llmrunner.errors import ConfigError
from llmrunner.udatasets import clean
from llmrunner.udatasets.adapters import builtin_adapter
from llmrunner.udatasets.clean import Cleaning
from llmrunner.udatasets.core import map_and_gather
from llmrunner.udatasets.settings import UdatasetsSettings
from llmrunner.udatasets.shard import RecordRules
from tests.files import read_jsonl, write_jsonl
from tests.paths import demo_cpt_texts

OFF = Cleaning(unicode_nfc=False, strip_control=False, whitespace="keep")


def test_nfc_on_and_off():
    assert Cleaning().text("Cafe\u0301") == "Caf\u00e9"
    assert Cleaning(unicode_nfc=False).text("Cafe\u0301") == "Cafe\u0301"


def test_control_characters_removed_but_newline_and_tab_kept():
    text = "a\x00b\x1b[31mc\x7f\x85d\te\nf\x0bg\x0ch"
    assert Cleaning(whitespace="keep").text(text) == "ab[31mcd\te\nfgh"
    assert Cleaning(strip_control=False, whitespace="keep").text(text) == text


def test_whitespace_normalize_and_keep():
    text = "  first  \r\nsecond\t \rthird\n\n\n\n  fourth \n\n"
    assert Cleaning().text(text) == "first\nsecond\nthird\n\n  fourth"
    assert Cleaning(whitespace="keep").text(text) == text
    assert Cleaning().text("a\n \t\n\t \nb") == "a\n\nb"  # blank-looking lines count as blank
    # any run of 3 or more line breaks becomes exactly 2, whatever its length modulo 3
    assert all(Cleaning().text("a" + "\n" * k + "b\n\nc") == "a\n\nb\n\nc" for k in range(2, 30))


def test_code_indentation_and_inner_spaces_kept():
    code = "def f(x):\n    if x:\n        return  x   # two spaces\n\n\treturn None"
    assert Cleaning().text(code + "   \n") == code


@pytest.mark.parametrize("cleaning", [Cleaning(), Cleaning(whitespace="keep"), Cleaning(unicode_nfc=False),
                                      Cleaning(strip_control=False)], ids=["default", "keep", "no_nfc", "no_control"])
def test_a_long_text_cleaned_in_pieces_is_cleaned_as_if_whole(cleaning, monkeypatch):
    """Texts longer than clean.PIECE_CHARS are cleaned a piece at a time: with pieces of 1 to 8 characters, every
    cut falls next to blanks, line breaks, control and combining characters, and nothing changes."""
    rng = random.Random(11)
    alphabet = ["a", "b", " ", "  ", "\t", "\n", "\n\n\n", "\r", "\r\n", "\x00", "\x1c", "\x85", "\u00a0", "e\u0301",
                "\u0301", "\u3000", "\U0001F609"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(400)]
    whole = [cleaning.text(text) for text in texts]
    for piece in (1, 2, 3, 8):
        monkeypatch.setattr(clean, "PIECE_CHARS", piece)
        assert [cleaning.text(text) for text in texts] == whole, piece
    assert cleaning.text("already clean") == "already clean"


@pytest.mark.parametrize("cleaning", [Cleaning(), Cleaning(whitespace="keep"), Cleaning(strip_control=False), OFF],
                         ids=["default", "keep", "no_control", "off"])
def test_records_cleaned_as_a_batch_are_cleaned_as_one_by_one(cleaning):
    """Cleaning.batch, a few numpy passes over many texts, gives what `record` gives wherever it gives anything: on
    the demo texts (most of which it cleans), and on short random texts of every ASCII whitespace and control
    character, next to each other and at the ends, mixed with non-ASCII, empty and SFT records (left to `record`)."""
    rng = random.Random(5)
    alphabet = ["a", "b", " ", "\t", "\n", "\n\n", "\r", "\x00", "\x0b", "\x0c", "\x1c", "\x1f", "\x7f", "x"]
    records = [{"text": text, "id": i} for i, text in enumerate(demo_cpt_texts())]
    records += [{"text": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))} for _ in range(3000)]
    records += [{"text": "caf\u00e9 "}, {"text": ""}, {"messages": [{"role": "user", "content": "hi"}]}]
    rng.shuffle(records)
    batch = cleaning.batch(records)
    for record, result in zip(records, batch):
        if result is not None:
            assert result == cleaning.record(record), record
    made = [result for result in batch if result is not None]
    if cleaning == Cleaning():  # the default: most of the demo, some of it squeezed
        assert len(made) > len(records) // 2 and any(cleaned for _, cleaned in made)


def test_everything_off_changes_nothing():
    text = "e\u0301\x00 \r\n\n\n\n x  "
    assert OFF.text(text) == text
    record = {"text": text}
    assert OFF.record(record) == (record, False)


def test_record_cleaning_does_not_modify_its_input():
    record = {"messages": [{"role": "user", "content": "hi \r\n"}, {"role": "assistant", "content": "ok"}], "id": 1}
    cleaned, changed = Cleaning().record(record)
    assert changed and cleaned == {"messages": [{"role": "user", "content": "hi"},
                                                {"role": "assistant", "content": "ok"}], "id": 1}
    assert record["messages"][0]["content"] == "hi \r\n"
    assert Cleaning().record({"text": "clean"}) == ({"text": "clean"}, False)


def test_cpt_cleaning_filters_dedup_and_accounting(tmp_path):
    raw = write_jsonl(tmp_path / "a.jsonl", [
        {"text": "Cafe\u0301 \x1b[0mau lait\r\n"},     # 1 kept, cleaned
        {"text": "\x00\x01 \x1b\r\n \t"},              # 2 empty after cleaning
        {"text": "Caf\u00e9 [0mau lait   "},           # 3 duplicate of 1 (differs only in trailing whitespace)
        {"text": "short\x00\x00\x00\x00\x00\x00"},     # 4 too_short: counted after cleaning (5 < 6)
        {"text": "    indented code\n\tx = 1"},         # 5 kept, cleaned (leading spaces of the text stripped)
        {"text": "already clean"},                     # 6 kept, not cleaned
    ])
    out = tmp_path / "out.jsonl"
    stats = map_and_gather([raw], out, RecordRules(builtin_adapter("text"), min_chars=6))
    assert stats["kept"] == 3 and stats["rejected"] == {"empty": 1, "too_short": 1}
    assert stats["duplicates"] == {"exact": 1, "near": 0} and stats["cleaned"] == 5
    assert stats["input"] == stats["kept"] + sum(stats["rejected"].values()) + stats["duplicates"]["exact"] == 6
    assert [r["text"] for r in read_jsonl(out)] == ["Caf\u00e9 [0mau lait", "indented code\n\tx = 1", "already clean"]
    assert read_jsonl(tmp_path / "out.duplicates.jsonl") == [
        {"file": "a.jsonl", "line": 3, "kind": "exact",
         "duplicate_of": {"dataset": "out", "file": "a.jsonl", "line": 1}}]
    assert [(r["line"], r["reason"]) for r in read_jsonl(tmp_path / "out.rejects.jsonl")] == [
        (2, "empty"), (4, "too_short")]


def test_cleaning_off_keeps_text_as_found(tmp_path):
    raw = write_jsonl(tmp_path / "a.jsonl", [{"text": "x\x00y \r\n"}, {"text": "\x00"}])
    stats = map_and_gather([raw], tmp_path / "o.jsonl", RecordRules(builtin_adapter("text"), cleaning=OFF))
    assert stats["kept"] == 2 and stats["cleaned"] == 0 and stats["rejected"] == {}
    assert read_jsonl(tmp_path / "o.jsonl") == [{"text": "x\x00y \r\n"}, {"text": "\x00"}]


def test_sft_every_message_cleaned_and_deduplicated(tmp_path):
    def chat(user: str, assistant: str) -> dict:
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}

    raw = write_jsonl(tmp_path / "c.jsonl", [
        chat("Que\u0301 tal?\x00", "Bien.\r\n\r\n\r\n\r\nY tu?  "),   # 1 kept, cleaned
        chat("Qu\u00e9 tal?", "Bien.\n\nY tu?"),                        # 2 duplicate of 1
        chat("\x07", "\x1b"),                                           # 3 empty after cleaning
    ])
    out = tmp_path / "sft.jsonl"
    stats = map_and_gather([raw], out, RecordRules(builtin_adapter("messages")))
    assert stats["kept"] == 1 and stats["duplicates"] == {"exact": 1, "near": 0} and stats["rejected"] == {"empty": 1}
    assert stats["cleaned"] == 2 and stats["input"] == 3
    assert read_jsonl(out) == [chat("Qu\u00e9 tal?", "Bien.\n\nY tu?")]


def test_cli_settings_reach_the_cleaning(tmp_path):
    from llmrunner.udatasets.__main__ import main

    raw = tmp_path / "raw"
    raw.mkdir()
    write_jsonl(raw / "a.jsonl", [{"text": "a \r\nb"}])
    out = tmp_path / "keep.jsonl"
    main(["--kind", "cpt", "--input", str(raw), "--out", str(out), "--settings", json.dumps({"whitespace": "keep"})])
    assert read_jsonl(out) == [{"text": "a \r\nb"}]
    main(["--kind", "cpt", "--input", str(raw), "--out", str(tmp_path / "norm.jsonl")])
    assert read_jsonl(tmp_path / "norm.jsonl") == [{"text": "a\nb"}]


def test_settings_defaults_and_bad_values():
    assert UdatasetsSettings.from_dict({}).cleaning() == Cleaning(unicode_nfc=True, strip_control=True,
                                                                  whitespace="normalize")
    assert UdatasetsSettings.from_dict({"unicode_nfc": False}).cleaning().unicode_nfc is False
    with pytest.raises(ConfigError, match="key 'whitespace': 'collapse' is not one of"):
        UdatasetsSettings.from_dict({"whitespace": "collapse"})
    with pytest.raises(ConfigError, match="key 'strip_control': 'yes' is not of type 'boolean'"):
        UdatasetsSettings.from_dict({"strip_control": "yes"})
