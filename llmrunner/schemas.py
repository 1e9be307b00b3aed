"""The JSON schemas under config/schemas/: the one declaration of every config key's type, default and range.

Config loading (llmrunner.config) and every stage's settings (llmrunner.settings) go through these
functions, so a default or a range is never written twice.
"""
from __future__ import annotations

import copy
import difflib
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from llmrunner.package_data import SCHEMA_DIR

REPO_ROOT = Path(__file__).resolve().parents[1]


@cache
def _read_schema(name: str) -> str:
    return (SCHEMA_DIR / f"{name}.schema.json").read_text()


def load_schema(name: str) -> dict:
    """config/schemas/<name>.schema.json (a fresh copy: callers may change it)."""
    return json.loads(_read_schema(name))


def resolve_ref(schema: dict, root: dict) -> dict:
    """`schema`, or the local definition its `$ref` ('#/$defs/<name>') points to."""
    ref = schema.get("$ref")
    if not ref:
        return schema
    node: Any = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def fill_defaults(value: Any, schema: dict, root: dict | None = None) -> Any:
    """Fill `default`s from the schema into mappings (recursively); types are checked later."""
    root = schema if root is None else root
    schema = resolve_ref(schema, root)
    if not isinstance(value, dict) or schema.get("type") != "object":
        return value
    for key, sub in schema.get("properties", {}).items():
        sub = resolve_ref(sub, root)
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            value[key] = fill_defaults(value[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in value:
            if key not in schema.get("properties", {}):
                value[key] = fill_defaults(value[key], extra, root)
    return value


def schema_problems(value: Any, schema: dict, source: str, key_prefix: str = "") -> list[str]:
    """Every schema violation as one line: file, key path (after `key_prefix`, for a mapping checked on its
    own), what is wrong, the fix."""
    problems = []
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path))):
        path = ".".join((*([key_prefix] if key_prefix else []), *(str(p) for p in err.absolute_path)))
        if err.validator == "additionalProperties":
            allowed = list(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(allowed)):
                key_path = f"{path}.{key}" if path else key
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
                problems.append(f"{source}: unknown key '{key_path}' ({hint})")
            continue
        where = f"key '{path}'" if path else "top level"
        hint = err.schema.get("description", "")
        problems.append(f"{source}: {where}: {err.message}" + (f" — {hint}" if hint else ""))
    return problems
