"""Registered eval sets: reading items, ids, versions, and the errors that stop a run at config load."""
from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from llmrunner.config import load_run_config
from llmrunner.errors import ConfigError
from llmrunner.evalsets import (
    EvalSet,
    aggregate,
    content_id,
    decontamination_texts,
    load_registry,
    read_items,
    recorded_versions,
    set_files,
    version_of,
    write_version_record,
)
from llmrunner.schemas import load_schema
from tests.paths import write_yaml

SETS = Path("config/evalsets")


def write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def mc_set(tmp_path: Path, rows: list, **keys) -> EvalSet:
    data = write_lines(tmp_path / "mc.jsonl", rows)
    return EvalSet.from_dict("mc", {"kind": "multiple_choice", "data": str(data), "keys": keys})


def test_fields_are_the_schema_keys():
    assert {f.name for f in fields(EvalSet)} == {"name", *load_schema("evalset")["properties"]}


def test_shipped_sets_are_registered(project):
    registry = load_registry()
    assert {n: s.kind for n, s in registry.items()} == {
        "heldout_text": "perplexity", "heldout_python_docs": "perplexity", "wordnet_mc": "multiple_choice",
        "wordnet_chat": "generation", "hellaswag": "lm_eval", "arc_easy": "lm_eval"}  # lm_eval: the recipes' sets
    # the demo's held-out text, one file per source: all of it, and the Python docs alone (the first file)
    text, python_docs = read_items(registry["heldout_text"]), read_items(registry["heldout_python_docs"])
    assert (len(text), len(python_docs)) == (45, 39) and text[:39] == python_docs
    chat = read_items(registry["wordnet_chat"])
    # the last assistant turn is the reference; the prompt keeps the system and user turns
    assert [m["role"] for m in chat[0]["messages"]] == ["system", "user"]
    assert chat[0]["reference"].startswith("Stocker (noun): ")
    # decontamination looks at what is specific to the item, not the shared system prompt
    assert "You are a helpful assistant." not in decontamination_texts(chat[0])


def test_ids_follow_content_and_versions_follow_items(tmp_path):
    rows = [{"question": f"q{i}?", "choices": ["a", "b"], "label": i % 2} for i in range(3)]
    items = read_items(mc_set(tmp_path, rows))
    assert items[0]["id"] == content_id({"question": "q0?", "choices": ["a", "b"], "label": 0})
    # moved to another line, an item keeps its id; the version changes with the order and the content
    moved = read_items(mc_set(tmp_path, [rows[1], rows[0], rows[2]]))
    assert {i["id"] for i in moved} == {i["id"] for i in items}
    assert version_of(moved) != version_of(items)
    grown = read_items(mc_set(tmp_path, rows + [{"question": "q3?", "choices": ["a", "b"], "label": 0}]))
    assert version_of(grown[:3]) == version_of(items) != version_of(grown)
    # a given id is kept, and key mapping renames fields
    mapped = read_items(mc_set(tmp_path, [{"uid": 7, "prompt": "q?", "options": ["x", "y"], "answer": 1}],
                               id="uid", question="prompt", choices="options", label="answer"))
    assert mapped == [{"id": "7", "question": "q?", "choices": ["x", "y"], "label": 1}]


def test_text_file_documents_are_paragraphs(tmp_path):
    data = tmp_path / "docs.txt"
    data.write_text("first doc\nline two\n\n\nsecond doc\n  \nthird\n")
    items = read_items(EvalSet.from_dict("t", {"kind": "perplexity", "data": str(data)}))
    assert [i["text"] for i in items] == ["first doc\nline two", "second doc", "third"]


@pytest.mark.parametrize("rows, message", [
    ([], "has no items"),
    (["{not json"], "mc.jsonl, line 1: not valid JSON"),
    ([{"question": "q", "choices": ["a", "b"]}], "mc.jsonl line 1: no key 'label'"),
    ([{"question": "q", "choices": ["a", "b"], "label": 2}], "0-based index of the right choice (0 to 1), got 2"),
    ([{"question": "q", "choices": "ab", "label": 0}], "'choices' must be a list of at least 2"),
    ([{"id": "x", "question": "q", "choices": ["a", "b"], "label": 0}] * 2, "line 2: item id 'x' is also the id"),
])
def test_bad_items_name_file_line_and_key(tmp_path, rows, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_items(mc_set(tmp_path, rows))


def test_data_lists_files_read_in_order(tmp_path):
    first = write_lines(tmp_path / "a.jsonl", [{"text": "one"}, {"text": "two"}])
    second = write_lines(tmp_path / "b" / "c.jsonl", [{"text": "three"}])
    listed = EvalSet.from_dict("t", {"kind": "perplexity", "data": [str(first), str(second)]})
    assert [i["text"] for i in read_items(listed)] == ["one", "two", "three"]
    assert set_files(listed, tmp_path)[1:] == [first, second]  # what the eval and udatasets rules read
    # the same items from one file: the same ids and version
    joined = write_lines(tmp_path / "all.jsonl", [{"text": "one"}, {"text": "two"}, {"text": "three"}])
    single = EvalSet.from_dict("t", {"kind": "perplexity", "data": str(joined)})
    assert read_items(single) == read_items(listed) and version_of(read_items(single)) == version_of(read_items(listed))


def test_listed_files_are_named_in_errors(tmp_path):
    good = write_lines(tmp_path / "a.jsonl", [{"id": "x", "text": "one"}, {"text": "two"}])
    bad = write_lines(tmp_path / "b.jsonl", [{"text": "three"}, "{not json"])
    with pytest.raises(ConfigError, match=r"t\.yaml: .*b\.jsonl, line 2: not valid JSON"):
        read_items(EvalSet.from_dict("t", {"kind": "perplexity", "data": [str(good), str(bad)]}), "t.yaml")
    again = write_lines(tmp_path / "c.jsonl", [{"text": "three"}, {"id": "x", "text": "four"}])
    with pytest.raises(ConfigError, match=rf"{again} line 2: item id 'x' is also the id of {good} line 1; ids must "
                                          r"be unique within a set"):
        read_items(EvalSet.from_dict("t", {"kind": "perplexity", "data": [str(good), str(again)]}))
    empty = write_lines(tmp_path / "empty.jsonl", [])
    with pytest.raises(ConfigError, match=rf"data {empty} has no items; add some, or remove it from `data`$"):
        read_items(EvalSet.from_dict("t", {"kind": "perplexity", "data": [str(good), str(empty)]}))
    with pytest.raises(ConfigError, match=r"data a\.txt is a text file; kind multiple_choice needs \.jsonl items"):
        EvalSet.from_dict("t", {"kind": "multiple_choice", "data": [str(good), "a.txt"]})
    with pytest.raises(ConfigError, match=r"key 'data': \[\] should be non-empty"):
        EvalSet.from_dict("t", {"kind": "perplexity", "data": []})


def test_mapped_key_missing_names_the_mapping(tmp_path):
    with pytest.raises(ConfigError, match=r"line 1: no key 'prompt' \(keys.question maps it to 'prompt'\)"):
        read_items(mc_set(tmp_path, [{"question": "q", "choices": ["a", "b"], "label": 0}], question="prompt"))


def test_aggregate_is_corpus_bits_per_byte_or_mean():
    ppl = [{"score": 0.0, "metrics": {"loglikelihood": -math.log(2) * 10, "bytes": 10}},
           {"score": 0.0, "metrics": {"loglikelihood": -math.log(2) * 30, "bytes": 10}}]
    assert aggregate(ppl) == pytest.approx(2.0)  # 40 bits over 20 bytes, not a mean of per-item values
    assert aggregate([{"score": 1.0, "metrics": {}}, {"score": 0.0, "metrics": {}}]) == 0.5


def test_version_records_are_written_once(tmp_path):
    evalset = EvalSet.from_dict("s", {"kind": "perplexity", "data": "x.jsonl"})
    write_version_record(str(tmp_path), evalset, "aaa", ["1", "2", "3"])
    write_version_record(str(tmp_path), evalset, "bbb", ["1", "2"])
    write_version_record(str(tmp_path), evalset, "aaa", ["changed"])
    assert [(r["version"], r["ids"]) for r in recorded_versions(str(tmp_path), "s")] == [
        ("bbb", ["1", "2"]), ("aaa", ["1", "2", "3"])]


# ---------------------------------------------------------------- config load
def eval_sets(*names: str) -> None:
    path = Path("config/experiments/demo/steps/8.eval.yaml")
    data = yaml.safe_load(path.read_text())
    data["sets"] = list(names)
    write_yaml(path, data)


def load_error() -> str:
    with pytest.raises(ConfigError) as err:
        load_run_config({})
    return str(err.value)


def test_set_listed_but_not_registered(project):
    eval_sets("heldout_text", "wordnet_mcq")
    assert "8.eval.yaml: sets lists 'wordnet_mcq', which is not a registered eval set" in load_error()


def test_decontaminate_lists_an_unregistered_set(project):
    path = Path("config/experiments/demo/steps/1.udatasets.yaml")
    write_yaml(path, {**(yaml.safe_load(path.read_text()) or {}), "decontaminate": ["nope"]})
    assert "1.udatasets.yaml: decontaminate lists 'nope', which is not a registered eval set" in load_error()


def test_two_sets_with_one_name(project):
    (SETS / "wordnet_mc.yml").write_text((SETS / "wordnet_mc.yaml").read_text())
    assert "a second eval set named 'wordnet_mc'" in load_error()


def test_missing_and_empty_set_files(project):
    write_yaml(SETS / "gone.yaml", {"kind": "perplexity", "data": "resources/none.jsonl"})
    Path("empty.jsonl").write_text("")
    write_yaml(SETS / "empty.yaml", {"kind": "perplexity", "data": "empty.jsonl"})
    message = load_error()
    assert "gone.yaml: data resources/none.jsonl does not exist" in message
    assert "empty.yaml: data empty.jsonl has no items" in message


def test_line_lacking_a_key_stops_the_load(project):
    write_lines(Path("chat.jsonl"), [{"messages": [{"role": "user", "content": "hi"},
                                                   {"role": "assistant", "content": "hello"}]},
                                     {"prompt": "no messages"}])
    write_yaml(SETS / "chat.yaml", {"kind": "generation", "data": "chat.jsonl"})
    assert "chat.yaml: chat.jsonl line 2: no key 'messages'" in load_error()


def test_kind_needs_its_keys(project):
    write_yaml(SETS / "lm.yaml", {"kind": "lm_eval"})
    write_yaml(SETS / "gen.yaml", {"kind": "generation", "data": "x.txt"})
    message = load_error()
    assert "lm.yaml: kind lm_eval needs `task`" in message
    assert "gen.yaml: data x.txt is a text file; kind generation needs .jsonl items" in message
