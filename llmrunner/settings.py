"""What every stage's <Stage>Settings dataclass shares: building it from the step's values and its JSON schema.

The schema (config/schemas/) is the one declaration of each key's type, default and range; a settings
dataclass declares only the field names (a test checks they match the schema's keys) and, in
`__post_init__`, the rules that involve several fields.
"""
from __future__ import annotations

import copy
from dataclasses import fields
from typing import TypeVar

from llmrunner.errors import ConfigError
from llmrunner.schemas import fill_defaults, schema_problems

T = TypeVar("T")


def settings_from_dict(cls: type[T], values: dict, schema: dict, name: str, key_prefix: str = "") -> T:
    """Build a settings dataclass: defaults filled from `schema`, every value checked against it (an unknown
    key, a wrong type or range is a ConfigError naming the key), then `cls(**values)`. A key the schema gives
    no default and `values` leaves out is None (an optional setting). `key_prefix` names where a nested
    mapping sits in its step's config (`augment`), for the messages."""
    if not isinstance(values, dict):
        where = f"{key_prefix}: " if key_prefix else ""
        raise ConfigError(f"{name} settings: {where}expected a mapping of keys to values, got {values!r}")
    values = fill_defaults(copy.deepcopy(values), schema)
    problems = schema_problems(values, schema, f"{name} settings", key_prefix)
    if problems:
        raise ConfigError("\n".join(problems))
    absent = {f.name: None for f in fields(cls) if f.name not in values}
    return cls(**values, **absent)
