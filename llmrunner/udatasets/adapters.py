"""Adapters: one raw JSON object -> a record in the unified schema, or the reason it is rejected.

Unified schema (config/schemas/records/{cpt,sft}.schema.json, docs/records.md): CPT `{"text": str, ...meta}`;
SFT `{"messages": [{"role", "content"}, ...], ...meta}`. Keys other than the ones an adapter reads are kept as
metadata; messages keep only role and content. Every CPT adapter ends in `adapt_text` and every SFT adapter
(custom ones included) in `adapt_messages`, so these two functions are the one place the rules live.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from llmrunner.chat_rules import ROLES, turn_order_problem

# ShareGPT speaker names -> roles, with LLaMA-Factory's tool names: `function_call` is the assistant's
# call (trained, like any assistant turn), `observation` / `function` / `tool` the result (never trained).
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "function": "tool",
                  "tool": "tool"}
SOURCE_KEYS = {"dataset": str, "file": str, "line": int}  # one source of an augmented record

Adapted = tuple[dict | None, str | None]  # (unified record, None) or (None, reject reason)
Adapter = Callable[[dict], Adapted]


def take(record: dict, key: str) -> tuple[bool, object, dict]:
    """(found, value, the record without it) for `key`, which may be dotted (`meta.body`) to reach
    into nested objects; a literal key containing dots wins. Parent objects left empty are dropped."""
    if key in record:
        rest = dict(record)  # a copy, then one key out: ~2x faster than a comprehension over the keys
        return True, rest.pop(key), rest
    head, dot, tail = key.partition(".")
    if not dot or not isinstance(record.get(head), dict):
        return False, None, record
    found, value, inner = take(record[head], tail)
    if not found:
        return False, None, record
    rest = {k: v for k, v in record.items() if k != head}
    if inner:
        rest[head] = inner
    return True, value, rest


def adapt_text(record: dict, text_key: str = "text") -> Adapted:
    """CPT: the document is the string under `text_key` (dotted for nested keys); it becomes `text`."""
    found, text, meta = take(record, text_key)
    if not found:
        return None, "missing_text"
    if not isinstance(text, str):
        return None, "text_not_a_string"
    # Reserved keys: a raw `text` that is not the document must not overwrite it, and a `messages` key
    # would make the record look like a conversation to the later steps.
    meta.pop("text", None)
    meta.pop("messages", None)
    return {"text": text, **meta}, None


def is_augmentation_marker(value: object) -> bool:
    """Whether `value` is a well-formed `augmentation` metadata value: `{"kind": str, "from": [source, ...]}`
    (a record written by augment.py and read again, for example when processed output becomes raw data)."""
    return (isinstance(value, dict) and set(value) == {"kind", "from"} and isinstance(value["kind"], str)
            and isinstance(value["from"], list) and len(value["from"]) > 0
            and all(isinstance(source, dict) and set(source) == set(SOURCE_KEYS)
                    and all(isinstance(source[k], t) and not isinstance(source[k], bool)
                            for k, t in SOURCE_KEYS.items()) for source in value["from"]))


def adapt_messages(record: dict) -> Adapted:
    """SFT: OpenAI-style `messages`, each `{"role", "content": str}`, in a trainable order (turn_order_problem).
    Metadata are kept; `augmentation`, reserved for the marker augment.py writes, must be well-formed."""
    if "messages" not in record:
        return None, "missing_messages"
    messages = record["messages"]
    if not isinstance(messages, list):
        return None, "messages_not_a_list"
    clean = []
    for message in messages:
        if not isinstance(message, dict):
            return None, "message_not_an_object"
        if message.get("role") not in ROLES:
            return None, "bad_role"
        if not isinstance(message.get("content"), str):
            return None, "content_not_a_string"
        clean.append({"role": message["role"], "content": message["content"]})
    problem = turn_order_problem([m["role"] for m in clean])
    if problem is not None:
        return None, problem
    if "augmentation" in record and not is_augmentation_marker(record["augmentation"]):
        return None, "bad_augmentation_marker"
    meta = {k: v for k, v in record.items() if k != "messages"}
    return {"messages": clean, **meta}, None


def _chat(messages: list[dict], meta: dict) -> Adapted:
    meta.pop("messages", None)  # the built messages replace any raw key of that name
    return adapt_messages({"messages": messages, **meta})


def adapt_sharegpt(record: dict) -> Adapted:
    """SFT: ShareGPT `conversations`, a list of `{"from": <a key of SHAREGPT_ROLES>, "value": str}`."""
    found, turns, meta = take(record, "conversations")
    if not found:
        return None, "missing_conversations"
    if not isinstance(turns, list):
        return None, "conversations_not_a_list"
    messages = []
    for turn in turns:
        if not isinstance(turn, dict):
            return None, "message_not_an_object"
        speaker = turn.get("from")
        if not isinstance(speaker, str) or speaker not in SHAREGPT_ROLES:
            return None, "bad_role"
        messages.append({"role": SHAREGPT_ROLES[speaker], "content": turn.get("value")})
    return _chat(messages, meta)


def _strings(record: dict, keys: dict[str, str]) -> tuple[dict[str, str] | None, str | None, dict]:
    """The string fields `keys` (name -> raw key) of a record, or the reject reason; and the rest."""
    values, rest = {}, record
    for name, key in keys.items():
        found, value, rest = take(rest, key)
        if not found:
            return None, f"missing_{name}", rest
        if not isinstance(value, str):
            return None, f"{name}_not_a_string", rest
        values[name] = value
    return values, None, rest


def adapt_alpaca(record: dict) -> Adapted:
    """SFT: Alpaca `instruction` / `input` (optional) / `output` -> one user turn and the assistant's answer.
    A non-empty input follows the instruction after a blank line, as in Alpaca's own prompt."""
    if record.get("input") is None:  # absent or null: an instruction without input
        record = {**record, "input": ""}
    fields, reason, meta = _strings(record, {"instruction": "instruction", "input": "input", "output": "output"})
    if fields is None:
        return None, reason
    prompt = f"{fields['instruction']}\n\n{fields['input']}" if fields["input"].strip() else fields["instruction"]
    return _chat([{"role": "user", "content": prompt}, {"role": "assistant", "content": fields["output"]}], meta)


def adapt_prompt_response(record: dict, prompt_key: str = "prompt", response_key: str = "response") -> Adapted:
    """SFT: a prompt and its response under configurable (possibly dotted) keys -> user + assistant turns."""
    fields, reason, meta = _strings(record, {"prompt": prompt_key, "response": response_key})
    if fields is None:
        return None, reason
    return _chat([{"role": "user", "content": fields["prompt"]},
                  {"role": "assistant", "content": fields["response"]}], meta)


def builtin_adapter(name: str, text_key: str = "text", prompt_key: str = "prompt",
                    response_key: str = "response") -> Adapter:
    """The built-in adapter `name`, bound to its keys."""
    adapters: dict[str, Adapter] = {
        "text": partial(adapt_text, text_key=text_key),
        "messages": adapt_messages,
        "sharegpt": adapt_sharegpt,
        "alpaca": adapt_alpaca,
        "prompt_response": partial(adapt_prompt_response, prompt_key=prompt_key, response_key=response_key),
    }
    return adapters[name]
