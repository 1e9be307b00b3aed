"""udatasets: every raw line ends up kept, rejected (with its reason) or marked duplicate, and the
stats add up; bad bytes and bad JSON never stop the stream."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from llmrunner.errors import ConfigError
from llmrunner.udatasets.__main__ import main
from llmrunner.udatasets.adapters import builtin_adapter
from llmrunner.udatasets.core import map_and_gather, output_paths
from llmrunner.udatasets.settings import UdatasetsSettings
from llmrunner.udatasets.shard import RecordRules, encode_record
from tests.files import read_jsonl


def write_lines(path: Path, lines: list[bytes]) -> Path:
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def dumps(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


@pytest.fixture
def cpt_raw(tmp_path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_lines(raw / "a.jsonl", [
        dumps({"body": "Caf\u00e9 au  lait", "source": "x"}),  # 1 kept (NFC form, two spaces)
        b'{"body": "broken',                                     # 2 invalid_json
        b"[1, 2]",                                               # 3 not_an_object
        b'{"body": "bad \xff byte"}',                            # 4 invalid_utf8
        b"",                                                     # blank: not a record
        dumps({"text": "no body key"}),                          # 6 missing_text
        dumps({"body": 42}),                                     # 7 text_not_a_string
        dumps({"body": "   \n "}),                               # 8 empty
        dumps({"body": "tiny"}),                                 # 9 too_short (min_chars 5)
        dumps({"body": "x" * 50}),                               # 10 too_long (max_chars 40)
        b'{"body": "lone \\ud800 surrogate"}',                   # 11 invalid_unicode
        b'{"body": "not json", "n": NaN}',                       # 12 invalid_json (NaN is not JSON)
        dumps({"body": "Caf\u00e9 au  lait", "source": "again"}),  # 13 duplicate of a.jsonl:1
    ])
    write_lines(raw / "b.jsonl.gz", [
        dumps({"body": "Cafe\u0301 au\tlait\n"}),  # 1 duplicate: NFD spelling, other whitespace
        dumps({"body": "Second document."}),       # 2 kept
    ])
    (raw / "README.md").write_text("not data")
    return raw


def test_cpt_every_line_is_accounted_for(cpt_raw, tmp_path):
    out = tmp_path / "processed" / "cpt" / "demo.jsonl"
    stats = map_and_gather(sorted(cpt_raw.glob("*.jsonl*")), out,
                            RecordRules(builtin_adapter("text", text_key="body"), min_chars=5, max_chars=40))
    assert stats["rejected"] == {"empty": 1, "invalid_json": 2, "invalid_unicode": 1, "invalid_utf8": 1,
                                 "missing_text": 1, "not_an_object": 1, "text_not_a_string": 1,
                                 "too_long": 1, "too_short": 1}
    assert stats["duplicates"] == {"exact": 2, "near": 0}
    assert stats["kept"] == 2 and stats["blank_lines"] == 1
    assert stats["input"] == stats["kept"] + sum(stats["rejected"].values()) + stats["duplicates"]["exact"] == 14
    paths = output_paths(out)
    assert json.loads(paths["stats"].read_text()) == stats

    kept = read_jsonl(out)
    assert kept == [{"text": "Caf\u00e9 au  lait", "source": "x"}, {"text": "Second document."}]
    rejects = read_jsonl(paths["rejects"])
    assert [(r["file"], r["line"], r["reason"]) for r in rejects][:3] == [
        ("a.jsonl", 2, "invalid_json"), ("a.jsonl", 3, "not_an_object"), ("a.jsonl", 4, "invalid_utf8")]
    assert rejects[0]["raw"] == '{"body": "broken'
    assert rejects[2]["raw"] == '{"body": "bad \\xff byte"}'  # the bad byte, visible and escaped
    assert read_jsonl(paths["duplicates"]) == [
        {"file": "a.jsonl", "line": 13, "kind": "exact",
         "duplicate_of": {"dataset": "demo", "file": "a.jsonl", "line": 1}},
        {"file": "b.jsonl.gz", "line": 1, "kind": "exact",
         "duplicate_of": {"dataset": "demo", "file": "a.jsonl", "line": 1}}]


@pytest.mark.parametrize("record", [
    {"text": "plain ASCII", "id": 7, "ok": True, "note": None},
    {"text": "a DEL \x7f in the text", "id": "x"},
    {"text": "text", "id": "a DEL \x7f in the id"},
    {"text": "spells \\u007f", "id": 1},
    {"text": "quotes \" and \\ and \n\t\x01", "big": 1 << 70, "score": 1.5},
    {"text": "caf\u00e9", "id": "x"},
    {"text": "ASCII", "meta": {"source": "caf\u00e9"}, "tags": ["a", "b"]},
    {"text": "ASCII", "\u00fcber": "key"},
])
def test_encoded_records_are_json_dumps_lines(record):
    """Whatever path encode_record takes (an all-ASCII record has a faster one), the line is json.dumps's."""
    assert encode_record(record) == (json.dumps(record, ensure_ascii=False).encode("utf-8"), None)


def test_dedup_none_keeps_duplicates(tmp_path):
    raw = write_lines(tmp_path / "a.jsonl", [dumps({"text": "same"}), dumps({"text": "same"})])
    stats = map_and_gather([raw], tmp_path / "out.jsonl", RecordRules(builtin_adapter("text")), dedup="none")
    assert stats["kept"] == 2 and stats["duplicates"] == {"exact": 0, "near": 0}
    assert (tmp_path / "out.duplicates.jsonl").read_text() == ""


def chat(*turns: tuple[str, object]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


def test_sft_validation_reasons_and_duplicates(tmp_path):
    good = chat(("system", "Be brief."), ("user", "Hi?"), ("assistant", "Hello."))
    lines = [
        dumps({**good, "id": 7}),                                        # 1 kept, meta kept
        dumps({"prompt": "Hi?"}),                                        # 2 missing_messages
        dumps({"messages": "Hi?"}),                                      # 3 messages_not_a_list
        dumps({"messages": ["Hi?"]}),                                    # 4 message_not_an_object
        dumps(chat(("robot", "x"), ("user", "a"), ("assistant", "b"))),  # 5 bad_role
        dumps(chat(("user", "a"), ("assistant", None))),                 # 6 content_not_a_string
        dumps(chat(("system", "s"), ("assistant", "b"))),                # 7 no_user_turn
        dumps(chat(("user", "a"))),                                      # 8 no_assistant_turn
        dumps(chat(("user", "a"), ("assistant", "b"), ("user", "c"))),   # 9 last_turn_not_assistant
        dumps(chat(("user", " "), ("assistant", ""))),                   # 10 empty
        dumps(chat(("system", "Be  brief."), ("user", "Hi?"), ("assistant", "Hello. "))),  # 11 duplicate of 1
        dumps(chat(("user", "Hi?"), ("assistant", "Hello."))),  # 12 kept: without the system turn, another chat
        dumps(chat(("user", "a"), ("assistant", " \n"))),               # 13 empty: an assistant turn without text
    ]
    raw = write_lines(tmp_path / "chats.jsonl", lines)
    out = tmp_path / "sft.jsonl"
    stats = map_and_gather([raw], out, RecordRules(builtin_adapter("messages")))
    assert stats["rejected"] == {"bad_role": 1, "content_not_a_string": 1, "empty": 2, "last_turn_not_assistant": 1,
                                 "message_not_an_object": 1, "messages_not_a_list": 1, "missing_messages": 1,
                                 "no_assistant_turn": 1, "no_user_turn": 1}
    assert stats["kept"] == 2 and stats["duplicates"] == {"exact": 1, "near": 0} and stats["input"] == 13
    assert read_jsonl(out)[0] == {**good, "id": 7}
    assert read_jsonl(tmp_path / "sft.duplicates.jsonl") == [
        {"file": "chats.jsonl", "line": 11, "kind": "exact",
         "duplicate_of": {"dataset": "sft", "file": "chats.jsonl", "line": 1}}]


def test_sft_message_keys_beyond_role_and_content_are_dropped(tmp_path):
    record = {"messages": [{"role": "user", "content": "a", "name": "u1"}, {"role": "assistant", "content": "b"}]}
    raw = write_lines(tmp_path / "c.jsonl", [dumps(record)])
    map_and_gather([raw], tmp_path / "o.jsonl", RecordRules(builtin_adapter("messages")))
    assert read_jsonl(tmp_path / "o.jsonl") == [chat(("user", "a"), ("assistant", "b"))]


def test_settings_reject_unknown_keys_and_contradictions():
    with pytest.raises(ConfigError, match="unknown key"):
        UdatasetsSettings.from_dict({"min_char": 3})
    with pytest.raises(ConfigError, match="max_chars .* below min_chars"):
        UdatasetsSettings.from_dict({"min_chars": 10, "max_chars": 5})
    with pytest.raises(ConfigError, match="adapter 'text' makes cpt records.*'messages'"):
        UdatasetsSettings.from_dict({"adapter": "text"}).adapter_for("sft")
    assert UdatasetsSettings.from_dict({}).adapter_for("sft") == "messages"


def test_cli_writes_all_four_outputs(cpt_raw, tmp_path):
    out = tmp_path / "data" / "processed" / "cpt" / "demo.jsonl"
    main(["--kind", "cpt", "--input", str(cpt_raw), "--out", str(out),
          "--settings", json.dumps({"adapter": "text", "text_key": "body", "min_chars": 1, "max_chars": None,
                                    "dedup": "exact"})])
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == ["demo.duplicates.jsonl", "demo.jsonl", "demo.rejects.jsonl", "demo.stats.json"]
    with pytest.raises(ConfigError, match="ending in .jsonl"):
        main(["--kind", "cpt", "--input", str(cpt_raw), "--out", str(tmp_path / "demo.json")])
