"""Custom adapters: a user's Python function, named in pipeline.yaml as `path/to/file.py:function`.

The function takes one raw record (a dict) and returns a unified record (CPT `{"text": ...}` or
SFT `{"messages": [...]}`, plus any metadata), or None to reject it; raising ValueError(reason)
rejects it with that reason. Its result goes through the built-in validation of the dataset's kind,
so a custom adapter cannot produce records that the later steps would choke on.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from llmrunner.errors import ConfigError, StageError
from llmrunner.udatasets.adapters import Adapted, Adapter, adapt_messages, adapt_text

FIX = "set it to 'path/to/file.py:function' (the path relative to the repository root)"


def split_spec(spec: str, key: str) -> tuple[Path, str]:
    """'path/to/file.py:function' -> (path, function name); a ConfigError naming `key` when malformed."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name.isidentifier():
        raise ConfigError(f"{key}: {spec!r} is not of the form 'file.py:function'; {FIX}")
    return Path(path), name


def load_function(spec: str, key: str) -> Callable[[dict], object]:
    """Import the function named by `spec` from its file (which need not be on the import path);
    `key` is where the user wrote `spec`, for the error messages."""
    path, name = split_spec(spec, key)
    if not path.is_file():
        raise ConfigError(f"{key}: {spec!r}: the file {path} does not exist; {FIX}")
    module_spec = importlib.util.spec_from_file_location(f"llmrunner_custom_adapter_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    function = getattr(module, name, None)
    if not callable(function):
        defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ConfigError(f"{key}: {spec!r}: {path} defines no function {name!r} (it defines: "
                          f"{', '.join(defined) or 'none'}); {FIX}")
    return function


def custom_adapter(spec: str, kind: str, key: str = "adapter_function") -> Adapter:
    """The adapter that runs the user's function and validates its result as a `kind` record."""
    function = load_function(spec, key)
    validate = adapt_text if kind == "cpt" else adapt_messages

    def adapt(record: dict) -> Adapted:
        try:
            result = function(record)
        except ValueError as err:  # the documented way to reject with a reason
            return None, f"custom: {err}"
        except Exception as err:  # a bug in the function: stop, naming it, rather than reject everything
            raise StageError(f"custom adapter {spec} raised {type(err).__name__}: {err}; fix the function "
                             f"(return None or raise ValueError(reason) to reject a record)") from err
        if result is None:
            return None, "custom_rejected"
        if not isinstance(result, dict):
            return None, "custom_result_not_an_object"
        return validate(result)

    return adapt
