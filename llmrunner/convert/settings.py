"""ConvertSettings: the hf2mg / mg2hf steps' config (steps/6.hf2mg.yaml, steps/5.mg2hf.yaml after validation)."""
from __future__ import annotations

import string
from dataclasses import dataclass

from llmrunner.errors import ConfigError
from llmrunner.settings import is_int, settings_from_dict

# The placeholders an external `command` may use, per step (docs/stages.md, "External converter").
PLACEHOLDERS = {
    "hf2mg": ("input", "output", "threads"),
    "mg2hf": ("input", "output", "hf_side", "iteration", "threads"),
}
ALL_PLACEHOLDERS = tuple(dict.fromkeys(name for names in PLACEHOLDERS.values() for name in names))

# Files of an HF folder that are neither weights nor the model config: tokenizer, chat template, generation defaults.
DEFAULT_HF_SIDE_FILES = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt",
                         "chat_template*", "generation_config.json")


def command_placeholders(command: str) -> list[str]:
    """The `{name}` placeholders of a command, in order; `{{` and `}}` are literal braces.

    Raises ValueError for a lone brace or a placeholder with a format spec, conversion or index.
    """
    try:
        parsed = list(string.Formatter().parse(command))
    except ValueError as err:  # a lone '{' or '}'
        raise ValueError(f"{err} (a literal brace is written {{{{ or }}}})") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise ValueError(f"'{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}' "
                             "is not a plain placeholder (write {name}; literal braces are {{ and }})")
        names.append(name)
    return names


@dataclass(frozen=True)
class ConvertSettings:
    parity_tolerance: float = 1e-5
    """Largest allowed |HF logit - Megatron logit| (float32) on the parity input; above it the
    conversion fails. Deep models may need a little more (1e-4) from summation order alone."""

    threads: int = 2
    """CPU threads for torch (`torch.set_num_threads`); `--threads` overrides it."""

    command: str | None = None
    """An external converter run through bash instead of the built-in one (None: built in). Its
    placeholders are replaced by shell-quoted values: {input}, {output}, {threads} in both steps,
    {hf_side} and {iteration} in mg2hf only (`PLACEHOLDERS`); `{{`/`}}` are literal braces."""

    copy_hf_files: tuple[str, ...] = DEFAULT_HF_SIDE_FILES
    """mg2hf: glob patterns of files copied from the HF side folder (the base model) into the export;
    with `command`, after it ran, and a file the command wrote itself is kept."""

    @classmethod
    def from_dict(cls, values: dict) -> ConvertSettings:
        return settings_from_dict(cls, values, "convert")

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.parity_tolerance, bool) or not isinstance(self.parity_tolerance, (int, float)) \
                or self.parity_tolerance <= 0:
            problems.append(f"`parity_tolerance` must be a positive number, got {self.parity_tolerance!r}")
        if not is_int(self.threads) or self.threads < 1:
            problems.append(f"`threads` must be a positive integer, got {self.threads!r}")
        if self.command is not None:
            problems += command_problems(self.command, ALL_PLACEHOLDERS)
        if isinstance(self.copy_hf_files, (list, tuple)) and all(isinstance(p, str) for p in self.copy_hf_files):
            object.__setattr__(self, "copy_hf_files", tuple(self.copy_hf_files))  # JSON gives a list
            bad = [p for p in self.copy_hf_files if not p or p.startswith("/") or ".." in p.split("/")]
            if bad:
                problems.append(f"`copy_hf_files`: {bad} are not patterns inside the HF folder "
                                "(relative, no '..'), e.g. 'tokenizer*'")
        else:
            problems.append(f"`copy_hf_files` must be a list of glob patterns, got {self.copy_hf_files!r}")
        if problems:
            raise ConfigError("convert settings: " + "; ".join(problems) + ".")


def command_problems(command: object, allowed: tuple[str, ...]) -> list[str]:
    """What is wrong with a `command` template when only `allowed` placeholders are known."""
    if not isinstance(command, str) or not command.strip():
        return [f"`command` must be a non-empty string (or null for the built-in converter), got {command!r}"]
    try:
        names = command_placeholders(command)
    except ValueError as err:
        return [f"`command`: {err}"]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        return [f"`command` uses unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                f"known here: {', '.join('{' + n + '}' for n in allowed)} (literal braces are {{{{ and }}}})"]
    return []
