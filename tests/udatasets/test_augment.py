"""SFT augmentation on the demo's conversations: what each augmentation makes, its markers, how many,
determinism under the seed, the originals left alone, and the settings' errors."""
from __future__ import annotations

import copy
import gzip
import json
from dataclasses import fields

import jsonschema
import pytest

from llmrunner.errors import ConfigError
from llmrunner.udatasets.adapters import adapt_messages
from llmrunner.udatasets.augment import AugmentSettings, augment
from tests.paths import REPO

PROMPTS = ["Answer in one sentence.", "You are a dictionary.", "You are a helpful assistant."]
SFT_SCHEMA = jsonschema.Draft202012Validator(json.loads((REPO / "config/schemas/records/sft.schema.json").read_text()))


@pytest.fixture(scope="module")
def demo() -> list[tuple[dict, dict]]:
    """The demo's 6000 SFT conversations (system + user + assistant each), with their sources."""
    with gzip.open(REPO / "resources/demo/sft.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [(json.loads(line), {"dataset": "demo", "file": "sft.jsonl.gz", "line": n})
                for n, line in enumerate(lines, 1)]


def settings(**values) -> AugmentSettings:
    return AugmentSettings.from_dict({"system_prompts": PROMPTS, **values})


def by_kind(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["augmentation"]["kind"] == kind]


def test_system_prompt_copies(demo):
    made = list(augment(demo, settings(system_prompt_fraction=0.1)))
    assert 500 <= len(made) <= 700  # 10 % of 6000 (the standard deviation is 23)
    originals = {source["line"]: record for record, source in demo}
    for record in made:
        assert record["augmentation"]["kind"] == "system_prompt"
        [source] = record["augmentation"]["from"]
        original = originals[source["line"]]["messages"]
        system, *turns = record["messages"]
        assert system["role"] == "system" and system["content"] in PROMPTS
        assert system["content"] != original[0]["content"]  # never the prompt it already has
        assert turns == original[1:]
    assert {r["messages"][0]["content"] for r in made} == set(PROMPTS[:2])  # both others are drawn


def test_system_prompt_is_inserted_when_there_is_none():
    record = {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}], "id": 4}
    source = {"dataset": "d", "file": "f.jsonl", "line": 1}
    [made] = augment([(record, source)], settings(system_prompt_fraction=1.0, system_prompts=["Be brief."]))
    assert made == {"messages": [{"role": "system", "content": "Be brief."}, *record["messages"]], "id": 4,
                    "augmentation": {"kind": "system_prompt", "from": [source]}}


def test_multi_turn_conversations(demo):
    made = list(augment(demo, settings(multi_turn_fraction=0.3, multi_turn_exchanges=3)))
    parts = sum(len(r["augmentation"]["from"]) for r in made)
    assert 1650 <= parts <= 1950  # 30 % of 6000 single exchanges (the standard deviation is 35)
    originals = {source["line"]: record for record, source in demo}
    for record in made:
        assert record["augmentation"]["kind"] == "multi_turn"
        sources = record["augmentation"]["from"]
        assert len(sources) == 3 and [s["line"] for s in sources] == sorted(s["line"] for s in sources)
        expected = originals[sources[0]["line"]]["messages"][:1]  # the shared system turn, once
        for source in sources:
            expected += originals[source["line"]]["messages"][1:]
        assert record["messages"] == expected
        assert [m["role"] for m in record["messages"]] == ["system"] + ["user", "assistant"] * 3


def test_new_records_are_valid_marked_and_the_originals_untouched(demo):
    before = copy.deepcopy(demo)
    made = list(augment(demo, settings(system_prompt_fraction=0.2, multi_turn_fraction=0.2)))
    assert demo == before
    assert {r["augmentation"]["kind"] for r in made} == {"system_prompt", "multi_turn"}
    for record in made:
        assert adapt_messages(record) == (record, None)
        assert list(SFT_SCHEMA.iter_errors(record)) == []


def test_same_seed_same_records_other_seed_other_records(demo):
    chosen = settings(system_prompt_fraction=0.1, multi_turn_fraction=0.1, seed=7)
    first = list(augment(demo, chosen))
    assert list(augment(iter(demo), chosen)) == first
    other = list(augment(demo, settings(system_prompt_fraction=0.1, multi_turn_fraction=0.1, seed=8)))
    assert other != first
    lines = {r["augmentation"]["from"][0]["line"] for r in by_kind(first, "system_prompt")}
    other_lines = {r["augmentation"]["from"][0]["line"] for r in by_kind(other, "system_prompt")}
    assert len(lines & other_lines) < len(lines) / 2  # another seed chooses (mostly) other conversations


def test_a_conversation_is_chosen_for_itself_not_for_its_position(demo):
    """Removing records changes no decision about the others: the seed and the conversation decide."""
    chosen = settings(system_prompt_fraction=0.1)
    full = list(augment(demo, chosen))
    later = list(augment(demo[1000:], chosen))
    assert later == [r for r in full if r["augmentation"]["from"][0]["line"] > 1000]


def chat(system: str | None, user: str, **meta) -> dict:
    turns = [{"role": "user", "content": user}, {"role": "assistant", "content": user.upper()}]
    return {"messages": ([{"role": "system", "content": system}] if system else []) + turns, **meta}


def test_multi_turn_joins_only_single_exchanges_with_the_same_system_prompt():
    records = [chat(None, "a", src="x", n=1), chat(None, "b", src="x", n=2),   # joined: no system prompt
               chat("S", "c"),                                                 # another prompt: run restarts
               {"messages": [*chat(None, "d")["messages"], *chat(None, "e")["messages"]]},  # two exchanges: not a part
               chat("S", "f"), chat(None, "g")]                                # end of input: not joined
    sources = [{"dataset": "d", "file": "f.jsonl", "line": n} for n in range(1, len(records) + 1)]
    made = list(augment(zip(records, sources), settings(multi_turn_fraction=1.0)))
    assert made == [
        {"messages": chat(None, "a")["messages"] + chat(None, "b")["messages"], "src": "x",  # shared metadata only
         "augmentation": {"kind": "multi_turn", "from": sources[:2]}},
        {"messages": chat("S", "c")["messages"] + chat("S", "f")["messages"][1:],
         "augmentation": {"kind": "multi_turn", "from": [sources[2], sources[4]]}},
    ]


def test_off_by_default_and_the_schema_defaults_are_the_settings_defaults():
    schema = json.loads((REPO / "config/schemas/udatasets.schema.json").read_text())["properties"]["augment"]
    defaults = {key: prop["default"] for key, prop in schema["properties"].items()}
    assert set(defaults) == {f.name for f in fields(AugmentSettings)}
    assert AugmentSettings.from_dict(defaults) == AugmentSettings.from_dict({})
    assert not AugmentSettings.from_dict({}).enabled()
    off = AugmentSettings.from_dict({})
    assert list(augment([(chat(None, "a"), {"dataset": "d", "file": "f", "line": 1})], off)) == []


@pytest.mark.parametrize("values, key", [
    ({"system_prompt_fraction": 1.5, "system_prompts": ["x"]}, "augment.system_prompt_fraction"),
    ({"multi_turn_fraction": "half"}, "augment.multi_turn_fraction"),
    ({"system_prompt_fraction": 0.1}, "augment.system_prompts"),
    ({"system_prompts": ["ok", " "]}, "augment.system_prompts"),
    ({"multi_turn_exchanges": 1}, "augment.multi_turn_exchanges"),
    ({"seed": 1.5}, "augment.seed"),
    ({"multi_turns": 3}, "augment.multi_turns"),
])
def test_bad_settings_name_the_key(values, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        AugmentSettings.from_dict(values)
