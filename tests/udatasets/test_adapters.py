"""Built-in adapters: each raw shape -> the unified schema, and a reason for every unusable record."""
from __future__ import annotations

import pytest

from llmrunner.udatasets.adapters import builtin_adapter, take

USER_ASSISTANT = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]


def test_take_reaches_nested_keys_and_drops_emptied_parents():
    record = {"meta": {"body": "doc", "lang": "en"}, "id": 1}
    assert take(record, "meta.body") == (True, "doc", {"meta": {"lang": "en"}, "id": 1})
    assert take({"meta": {"body": "doc"}}, "meta.body") == (True, "doc", {})
    assert take({"meta.body": "flat"}, "meta.body") == (True, "flat", {})  # a literal dotted key wins
    assert take({"meta": "not an object"}, "meta.body")[0] is False
    assert record == {"meta": {"body": "doc", "lang": "en"}, "id": 1}  # the raw record is not changed


@pytest.mark.parametrize("raw, expected", [
    ({"meta": {"body": "A doc.", "lang": "en"}, "text": "title"}, ({"text": "A doc.", "meta": {"lang": "en"}}, None)),
    ({"meta": {"title": "x"}}, (None, "missing_text")),
    ({"meta": {"body": ["A", "doc"]}}, (None, "text_not_a_string")),
])
def test_text_adapter_with_a_nested_key(raw, expected):
    assert builtin_adapter("text", text_key="meta.body")(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ({"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi?"},
                        {"from": "gpt", "value": "Hello."}], "id": "c1"},
     ({"messages": [{"role": "system", "content": "Be brief."}, *USER_ASSISTANT], "id": "c1"}, None)),
    ({"messages": "kept apart"}, (None, "missing_conversations")),
    ({"conversations": {"from": "human"}}, (None, "conversations_not_a_list")),
    ({"conversations": ["Hi?"]}, (None, "message_not_an_object")),
    ({"conversations": [{"from": "bot", "value": "x"}]}, (None, "bad_role")),
    ({"conversations": [{"from": ["human"], "value": "x"}]}, (None, "bad_role")),  # unhashable: no crash
    # tool turns map to the role "tool", which the SFT schema does not accept (yet): rejected, not dropped
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "tool", "value": "{}"},
                        {"from": "gpt", "value": "b"}]}, (None, "bad_role")),
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": 3}]},
     (None, "content_not_a_string")),
    ({"conversations": [{"from": "gpt", "value": "b"}, {"from": "human", "value": "a"}]},
     (None, "last_turn_not_assistant")),
])
def test_sharegpt_adapter(raw, expected):
    assert builtin_adapter("sharegpt")(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ({"instruction": "Sum.", "input": "1 2", "output": "3", "src": "a"},
     ({"messages": [{"role": "user", "content": "Sum.\n\n1 2"}, {"role": "assistant", "content": "3"}],
       "src": "a"}, None)),
    ({"instruction": "Hi?", "input": "  ", "output": "Hello."}, ({"messages": USER_ASSISTANT}, None)),
    ({"instruction": "Hi?", "output": "Hello."}, ({"messages": USER_ASSISTANT}, None)),
    ({"instruction": "Hi?", "input": None, "output": "Hello."}, ({"messages": USER_ASSISTANT}, None)),
    ({"input": "1 2", "output": "3"}, (None, "missing_instruction")),
    ({"instruction": "Sum."}, (None, "missing_output")),
    ({"instruction": "Sum.", "input": 12, "output": "3"}, (None, "input_not_a_string")),
    ({"instruction": "Sum.", "output": {"a": 3}}, (None, "output_not_a_string")),
])
def test_alpaca_adapter(raw, expected):
    assert builtin_adapter("alpaca")(raw) == expected


def test_prompt_response_adapter_default_and_configured_keys():
    assert builtin_adapter("prompt_response")({"prompt": "Hi?", "response": "Hello.", "id": 2}) == (
        {"messages": USER_ASSISTANT, "id": 2}, None)
    adapt = builtin_adapter("prompt_response", prompt_key="q", response_key="a.best")
    assert adapt({"q": "Hi?", "a": {"best": "Hello."}}) == ({"messages": USER_ASSISTANT}, None)
    assert adapt({"prompt": "Hi?", "a": {"best": "Hello."}}) == (None, "missing_prompt")
    assert adapt({"q": "Hi?", "a": {}}) == (None, "missing_response")
    assert adapt({"q": None, "a": {"best": "x"}}) == (None, "prompt_not_a_string")


def test_messages_adapter_drops_extra_message_keys():
    raw = {"messages": [{**USER_ASSISTANT[0], "name": "u"}, USER_ASSISTANT[1]], "id": 3}
    assert builtin_adapter("messages")(raw) == ({"messages": USER_ASSISTANT, "id": 3}, None)
