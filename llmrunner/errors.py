"""The errors a user can act on. Entry points print them as one paragraph and exit 1."""


class LLMRunnerError(Exception):
    """Base class: a problem the user can fix (bad config, missing input, bad data)."""


class ConfigError(LLMRunnerError):
    """A config file is wrong: the message names the file, the key path and the fix."""


class StageError(LLMRunnerError):
    """A stage cannot do its job with the inputs it was given."""


def first_few(names: list[str], shown: int = 5) -> str:
    """Names for a message: the first `shown`, then how many more."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
