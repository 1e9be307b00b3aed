"""ConvertSettings: the hf2mg / mg2hf steps' config (steps/6.hf2mg.yaml, steps/5.mg2hf.yaml after validation)."""
from __future__ import annotations

import string
from dataclasses import dataclass

from llmrunner.errors import ConfigError
from llmrunner.schemas import load_schema
from llmrunner.settings import settings_from_dict

# The placeholders an external `command` may use, per step (docs/stages.md, "External converter").
PLACEHOLDERS = {
    "hf2mg": ("input", "output", "threads"),
    "mg2hf": ("input", "output", "hf_side", "iteration", "threads"),
}
ALL_PLACEHOLDERS = tuple(dict.fromkeys(name for names in PLACEHOLDERS.values() for name in names))

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
    """Every key's type, default and range: config/schemas/convert.schema.json."""

    parity_tolerance: float
    """Largest allowed |HF logit - Megatron logit| (float32) on the parity input; above it the
    conversion fails. Deep models may need a little more (1e-4) from summation order alone."""

    parity_tolerance_bf16: float
    """mg2hf with a bfloat16 export: largest allowed |HF logit - Megatron logit| with both models run in
    bfloat16, as on a GPU, as a fraction of the largest |logit| (the float32 check runs as well)."""

    dtype: str | None
    """mg2hf: dtype of the exported weights, float32 or bfloat16; None: the dtype the checkpoint's
    weights were saved in (training's precision). Only the built-in converter."""

    threads: int
    """CPU threads for torch (`torch.set_num_threads`); `--threads` overrides it."""

    command: str | None
    """An external converter run through bash instead of the built-in one (None: built in). Its
    placeholders are replaced by shell-quoted values: {input}, {output}, {threads} in both steps,
    {hf_side} and {iteration} in mg2hf only (`PLACEHOLDERS`); `{{`/`}}` are literal braces."""

    command_files: list[str]
    """Files the external `command` reads: the workflow makes them the job's inputs (never passed to
    the stage)."""

    copy_hf_files: list[str]
    """mg2hf: glob patterns of files copied from the HF side folder (the base model) into the export;
    with `command`, after it ran, and a file the command wrote itself is kept."""

    @classmethod
    def from_dict(cls, values: dict) -> ConvertSettings:
        return settings_from_dict(cls, values, load_schema("convert"), "convert")

    def __post_init__(self) -> None:
        problems = []
        if self.command is not None:
            problems += command_problems(self.command, ALL_PLACEHOLDERS)
            if self.dtype is not None:
                problems.append(f"`dtype: {self.dtype}` is set but the external `command` writes the export, in "
                                "whatever dtype it chooses: remove `dtype` (or `command`)")
        elif self.command_files:
            problems.append("`command_files` is set but `command` is not, so nothing reads them: set `command` "
                            "(the external converter) or remove `command_files`")
        bad = [p for p in self.copy_hf_files if p.startswith("/") or ".." in p.split("/")]
        if bad:
            problems.append(f"`copy_hf_files`: {bad} are not patterns inside the HF folder "
                            "(relative, no '..'), e.g. 'tokenizer*'")
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
