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
    # a tool result answers the assistant's call, so it must follow an assistant turn
    ({"conversations": [{"from": "human", "value": "a"}, {"from": "tool", "value": "{}"},
                        {"from": "gpt", "value": "b"}]}, (None, "tool_not_after_assistant")),
    # LLaMA-Factory's tool names: function_call is the assistant's call, observation the tool's result
    ({"conversations": [{"from": "human", "value": "Weather?"}, {"from": "function_call", "value": "get()"},
                        {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "Sunny."}]},
     ({"messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "get()"},
                    {"role": "tool", "content": "sunny"}, {"role": "assistant", "content": "Sunny."}]}, None)),
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


def test_text_adapter_drops_reserved_keys_of_the_raw_record():
    raw = {"body": "A doc.", "text": "title", "messages": ["kept apart"], "id": 1}
    assert builtin_adapter("text", text_key="body")(raw) == ({"text": "A doc.", "id": 1}, None)


def turns(*roles: str) -> dict:
    return {"messages": [{"role": r, "content": f"{r} {n}"} for n, r in enumerate(roles)]}


@pytest.mark.parametrize("roles", [
    ("user", "assistant"),
    ("system", "user", "assistant"),
    ("system", "user", "assistant", "user", "assistant"),
    ("user", "assistant", "tool", "assistant"),                   # a call, its result, the answer
    ("user", "assistant", "tool", "tool", "assistant", "tool", "assistant", "user", "assistant"),
])
def test_trainable_turn_orders_are_kept(roles):
    assert builtin_adapter("messages")(turns(*roles)) == (turns(*roles), None)


@pytest.mark.parametrize("roles, reason", [
    ((), "no_user_turn"),
    (("system", "assistant"), "no_user_turn"),
    (("user",), "no_assistant_turn"),
    (("user", "assistant", "user"), "last_turn_not_assistant"),
    (("user", "assistant", "tool"), "last_turn_not_assistant"),  # the answer to the tool result is missing
    (("user", "system", "assistant"), "system_not_first"),
    (("system", "system", "user", "assistant"), "system_not_first"),
    (("assistant", "user", "assistant"), "first_turn_not_user"),
    (("system", "tool", "user", "assistant"), "first_turn_not_user"),
    (("user", "user", "assistant"), "roles_not_alternating"),
    (("user", "assistant", "assistant"), "roles_not_alternating"),
    (("user", "assistant", "tool", "user", "assistant"), "roles_not_alternating"),  # tool result unanswered
    (("user", "tool", "assistant"), "tool_not_after_assistant"),
    (("user", "assistant", "user", "tool", "assistant"), "tool_not_after_assistant"),
])
def test_untrainable_turn_orders_are_rejected_with_the_rule_they_break(roles, reason):
    assert builtin_adapter("messages")(turns(*roles)) == (None, reason)


def test_augmentation_marker_is_kept_when_well_formed_and_rejected_otherwise():
    marker = {"kind": "multi_turn", "from": [{"dataset": "d", "file": "a.jsonl", "line": 3}]}
    record = {**turns("user", "assistant"), "augmentation": marker}
    assert builtin_adapter("messages")(record) == (record, None)
    for bad in ("x", {"kind": "multi_turn", "from": []}, {**marker, "extra": 1},
                {"kind": "multi_turn", "from": [{"dataset": "d", "file": "a.jsonl", "line": True}]}):
        assert builtin_adapter("messages")({**record, "augmentation": bad}) == (None, "bad_augmentation_marker")
