"""ConvertSettings: the hf2mg / mg2hf steps' config (steps/6.hf2mg.yaml, steps/5.mg2hf.yaml after validation)."""
from __future__ import annotations

from dataclasses import dataclass

from llmrunner.errors import ConfigError
from llmrunner.settings import is_int, settings_from_dict


@dataclass(frozen=True)
class ConvertSettings:
    parity_tolerance: float = 1e-5
    """Largest allowed |HF logit - Megatron logit| (float32) on the parity input; above it the
    conversion fails. Deep models may need a little more (1e-4) from summation order alone."""

    threads: int = 2
    """CPU threads for torch (`torch.set_num_threads`); `--threads` overrides it."""

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
        if problems:
            raise ConfigError("convert settings: " + "; ".join(problems) + ".")
