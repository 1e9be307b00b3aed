"""The unified record schemas (config/schemas/records/) describe what the adapters produce: every record an
adapter keeps is valid, and a record the schema rejects is rejected by the adapters too, with a reason."""
from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import jsonschema
import pytest

from llmrunner.chat_rules import ROLES
from llmrunner.udatasets.__main__ import main
from llmrunner.udatasets.adapters import adapt_messages, adapt_text, builtin_adapter
from llmrunner.udatasets.custom import custom_adapter
from tests.paths import REPO, demo_cpt_lines

SCHEMAS = REPO / "config/schemas/records"
EXAMPLE_ADAPTER = f"{REPO / 'docs/examples/udatasets_adapter.py'}:best_answer"


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


VALIDATORS = {"cpt": validator("cpt"), "sft": validator("sft")}


def errors(kind: str, record: dict) -> list[str]:
    return [e.message for e in VALIDATORS[kind].iter_errors(record)]


def described(schema: object, where: str = "") -> list[str]:
    """The paths of the properties (and definitions) in `schema` that have no description."""
    missing = []
    if isinstance(schema, dict):
        for group in ("properties", "$defs"):
            for name, sub in schema.get(group, {}).items():
                if "description" not in sub:
                    missing.append(f"{where}/{group}/{name}")
        for key, sub in schema.items():
            missing += described(sub, f"{where}/{key}")
    elif isinstance(schema, list):
        for n, sub in enumerate(schema):
            missing += described(sub, f"{where}/{n}")
    return missing


@pytest.mark.parametrize("kind", ["cpt", "sft"])
def test_every_property_of_the_record_schemas_is_described(kind):
    assert described(json.loads((SCHEMAS / f"{kind}.schema.json").read_text())) == []


SYSTEM, USER = {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Héllo?\x00"}
# (adapter, its keys, raw record): every shape each built-in and the shipped custom adapter reads, with
# metadata of all JSON types, nested keys, empty contents, tool turns and reserved keys in the raw record.
RAW = [
    ("text", {}, {"text": "A doc.", "id": 1, "tags": ["a"], "score": 0.5, "ok": True, "none": None}),
    ("text", {}, {"text": ""}),
    ("text", {"text_key": "meta.body"}, {"meta": {"body": "Doc.", "lang": "en"}, "text": "title"}),
    ("text", {"text_key": "body"}, {"body": "Doc.", "messages": [{"role": "user", "content": "x"}]}),
    ("messages", {}, {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]}),
    ("messages", {}, {"messages": [{"role": "system", "content": "s", "name": "x"},
                                   {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}],
                      "text": "meta, not the conversation", "id": {"n": 1}}),
    ("messages", {}, {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "call"},
                                   {"role": "tool", "content": ""}, {"role": "assistant", "content": "a"}],
                      "augmentation": {"kind": "x", "from": [{"dataset": "d", "file": "f", "line": 1}]}}),
    ("sharegpt", {}, {"conversations": [SYSTEM, USER, {"from": "gpt", "value": "Hi."}], "messages": "raw"}),
    ("sharegpt", {}, {"conversations": [USER, {"from": "function_call", "value": "f()"},
                                        {"from": "observation", "value": "1"}, {"from": "gpt", "value": "1."}]}),
    ("alpaca", {}, {"instruction": "Sum.", "input": "1 2", "output": "3", "category": "math"}),
    ("alpaca", {}, {"instruction": "Hi.", "input": None, "output": ""}),
    ("prompt_response", {}, {"prompt": "Hi?", "response": "Hello.", "messages": None}),
    ("prompt_response", {"prompt_key": "q.text", "response_key": "a"}, {"q": {"text": "Hi?", "id": 2}, "a": "Yo."}),
]
CUSTOM = [
    {"question": {"title": "Sum?", "body": "1 + 2"}, "answers": [{"text": "3", "score": 2}], "site": None},
    {"question": {"body": ""}, "answers": [{"text": ""}], "site": "s"},
]


def test_every_record_the_adapters_keep_is_valid():
    adapted = [(builtin_adapter(name, **keys)(raw), "cpt" if name == "text" else "sft") for name, keys, raw in RAW]
    adapted += [(custom_adapter(EXAMPLE_ADAPTER, "sft")(raw), "sft") for raw in CUSTOM]
    for (record, reason), kind in adapted:
        assert reason is None and errors(kind, record) == [], (record, reason)


@pytest.mark.parametrize("length", range(6))
def test_schema_and_adapter_agree_on_every_role_sequence(length):
    """Over every sequence of roles up to 5 turns: what the adapter keeps, the schema accepts; what the schema
    rejects, the adapter rejects (the turn order the schema cannot express, only the adapter checks)."""
    kept = 0
    for roles in itertools.product(ROLES, repeat=length):
        record = {"messages": [{"role": role, "content": "x"} for role in roles]}
        result, reason = adapt_messages(record)
        if result is not None:
            kept += 1
            assert errors("sft", result) == [], roles
        if errors("sft", record):
            assert reason is not None, roles
    # user-assistant pairs after an optional system turn, with tool results after an assistant's call:
    # 2 turns: u a; 3: s u a; 4: s? u a u a, u a t a; 5: s u a u a, s u a t a, u a t t a
    assert kept == {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 3}[length]


USER_ASSISTANT = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]


@pytest.mark.parametrize("record, reason, schema_error", [
    ({"prompt": "x"}, "missing_messages", "'messages' is a required property"),
    ({"messages": {"role": "user"}}, "messages_not_a_list", "is not of type 'array'"),
    ({"messages": [{"role": "bot", "content": "u"}, USER_ASSISTANT[1]]}, "bad_role", "is not one of"),
    ({"messages": [{"role": "user", "content": None}, USER_ASSISTANT[1]]}, "content_not_a_string",
     "is not of type 'string'"),
    ({"messages": [USER_ASSISTANT[0], {"role": "system", "content": "s"}, USER_ASSISTANT[1]]}, "system_not_first",
     "should not be valid"),
    ({"messages": [{"role": "system", "content": "s"}, USER_ASSISTANT[1]]}, "no_user_turn", "does not contain"),
    ({"messages": [*USER_ASSISTANT, {"role": "user", "content": "u"}]}, "last_turn_not_assistant", None),
    ({"messages": [USER_ASSISTANT[0], *USER_ASSISTANT]}, "roles_not_alternating", None),
    ({"messages": USER_ASSISTANT, "augmentation": {"kind": "x", "from": []}}, "bad_augmentation_marker",
     "should be non-empty"),
])
def test_invalid_sft_records_are_rejected_with_a_reason(record, reason, schema_error):
    assert adapt_messages(record) == (None, reason)
    found = errors("sft", record)
    if schema_error is None:  # the turn order: only the adapter (and docs/records.md) can say it
        assert found == []
    else:
        assert any(schema_error in message for message in found), found


@pytest.mark.parametrize("record, reason, schema_error", [
    ({"body": "x"}, "missing_text", "'text' is a required property"),
    ({"text": ["x"]}, "text_not_a_string", "is not of type 'string'"),
])
def test_invalid_cpt_records_are_rejected_with_a_reason(record, reason, schema_error):
    assert adapt_text(record) == (None, reason)
    assert any(schema_error in message for message in errors("cpt", record))


def test_a_cpt_record_may_not_carry_messages():
    record = {"text": "x", "messages": []}
    assert errors("cpt", record) != []
    assert adapt_text(record) == ({"text": "x"}, None)


AUGMENT = {"seed": 3, "system_prompt_fraction": 0.1, "system_prompts": ["Be brief."], "multi_turn_fraction": 0.1}


@pytest.mark.parametrize("kind, lines, settings", [("sft", None, {"augment": AUGMENT}), ("cpt", 300, {})])
def test_processed_demo_data_is_valid(kind, lines, settings, tmp_path: Path):
    """The whole output of the udatasets command on the demo data, augmented records included."""
    raw = tmp_path / f"{kind}.jsonl"
    if kind == "cpt":
        raw.write_text("".join(line.rstrip("\n") + "\n" for line in itertools.islice(demo_cpt_lines(), lines)),
                       encoding="utf-8")
    else:
        with gzip.open(REPO / "resources/demo/sft.jsonl.gz", "rt", encoding="utf-8") as src:
            raw.write_text("".join(itertools.islice(src, lines)), encoding="utf-8")
    out = tmp_path / "processed.jsonl"
    main(["--kind", kind, "--input", str(raw), "--out", str(out), "--settings", json.dumps(settings)])
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    stats = json.loads((tmp_path / "processed.stats.json").read_text())
    assert len(records) == stats["kept"] + stats.get("augmented", 0) > 0
    assert [record for record in records if errors(kind, record)] == []
    if kind == "sft":
        assert stats["augmented"] > 0 and all("augmentation" in r for r in records[stats["kept"]:])
