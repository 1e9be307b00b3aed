"""What every stage's <Stage>Settings dataclass shares: building it from the step's JSON."""
from __future__ import annotations

from dataclasses import fields
from typing import TypeVar

from llmrunner.errors import ConfigError

T = TypeVar("T")


def settings_from_dict(cls: type[T], values: dict, step: str) -> T:
    """Build a settings dataclass; an unknown key is an error naming the step and the known keys."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{step} settings: unknown key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**values)


def is_int(value: object) -> bool:
    """An int that is not a bool (JSON true would otherwise pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)
