"""What every stage entry point shares: logging setup, settings parsing, error mapping."""
from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

from llmrunner.errors import LLMRunnerError


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)


def parse_settings(text: str) -> dict:
    """Settings arrive from the rule as one JSON object (the step's validated config)."""
    value = json.loads(text) if text else {}
    if not isinstance(value, dict):
        raise LLMRunnerError(f"--settings must be a JSON object, got {type(value).__name__}")
    return value


def exit_code(action: Callable[[], int | None]) -> int:
    """Run `action` and return its exit code (None: 0); a user-fixable error becomes one paragraph on stderr and
    exit code 1."""
    try:
        return action() or 0
    except LLMRunnerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run an entry point; a user-fixable error becomes one paragraph on stderr and exit code 1."""
    setup_logging()
    code = exit_code(lambda: main(argv))
    if code:
        sys.exit(code)
