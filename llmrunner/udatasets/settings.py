"""Settings of the udatasets step: the step config (1.udatasets.yaml) plus the dataset's adapter."""
from __future__ import annotations

from dataclasses import dataclass

from llmrunner.errors import ConfigError
from llmrunner.settings import is_int, settings_from_dict
from llmrunner.udatasets.adapters import Adapter, builtin_adapter
from llmrunner.udatasets.clean import WHITESPACE_MODES, Cleaning
from llmrunner.udatasets.custom import custom_adapter
from llmrunner.udatasets.readers import TXT_MODES

# adapter -> the kind of record it produces (None: either, decided by the user's function)
ADAPTERS = {"text": "cpt", "messages": "sft", "sharegpt": "sft", "alpaca": "sft", "prompt_response": "sft",
            "custom": None}
DEDUP_MODES = ("exact", "none")


@dataclass(frozen=True)
class UdatasetsSettings:
    adapter: str | None = None
    """How a raw record becomes the unified schema: 'text' (CPT: the document is under text_key),
    'messages' (OpenAI chat), 'sharegpt', 'alpaca', 'prompt_response' (SFT) or 'custom'
    (adapter_function). None: the adapter that fits --kind ('text' / 'messages')."""
    text_key: str = "text"
    """For the 'text' adapter: the key of a raw record that holds the document (dotted: nested)."""
    prompt_key: str = "prompt"
    """For the 'prompt_response' adapter: the key of the prompt (dotted: nested)."""
    response_key: str = "response"
    """For the 'prompt_response' adapter: the key of the response (dotted: nested)."""
    adapter_function: str | None = None
    """For the 'custom' adapter: 'path/to/file.py:function' (relative to the repository root)."""
    txt_mode: str = "document"
    """.txt inputs: 'document' (one record per file) or 'paragraphs' (one per blank-line separated block)."""
    unicode_nfc: bool = True
    """Cleaning: bring the text (CPT) / every message content (SFT) to Unicode NFC (composed: 'e' + U+0301 -> 'é')."""
    strip_control: bool = True
    """Cleaning: remove control characters (Unicode category Cc: NUL, ESC, DEL, C1, ...) except newline and tab
    (and carriage return, which whitespace: normalize has already turned into a newline). A record left with
    no text is rejected as 'empty'."""
    whitespace: str = "normalize"
    """Cleaning: 'normalize' (\\r\\n and \\r -> \\n, trailing spaces and tabs of each line removed, 3+ newlines ->
    2, the whole text stripped; spaces inside a line, such as code indentation, are kept) or 'keep'."""
    min_chars: int = 1
    """Reject a record whose text (CPT) or total message content (SFT) has fewer characters (after cleaning)."""
    max_chars: int | None = None
    """Reject a record with more characters than this; None: no limit."""
    dedup: str = "exact"
    """'exact': keep the first of records whose cleaned text, NFC-normalised and whitespace-collapsed, is equal;
    'none': keep every record."""

    def __post_init__(self) -> None:
        problems = []
        if self.adapter is not None and self.adapter not in ADAPTERS:
            problems.append(f"adapter: {self.adapter!r} is not one of {sorted(ADAPTERS)}")
        for key in ("text_key", "prompt_key", "response_key"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                problems.append(f"{key}: must be a non-empty string, got {getattr(self, key)!r}")
        if (self.adapter == "custom") != (self.adapter_function is not None):
            problems.append("adapter_function: give it exactly when adapter is 'custom' "
                            f"(adapter {self.adapter!r}, adapter_function {self.adapter_function!r})")
        if self.txt_mode not in TXT_MODES:
            problems.append(f"txt_mode: {self.txt_mode!r} is not one of {list(TXT_MODES)}")
        for key in ("unicode_nfc", "strip_control"):
            if not isinstance(getattr(self, key), bool):
                problems.append(f"{key}: must be true or false, got {getattr(self, key)!r}")
        if self.whitespace not in WHITESPACE_MODES:
            problems.append(f"whitespace: {self.whitespace!r} is not one of {list(WHITESPACE_MODES)}")
        if not is_int(self.min_chars) or self.min_chars < 0:
            problems.append(f"min_chars: must be an integer >= 0, got {self.min_chars!r}")
        if self.max_chars is not None and (not is_int(self.max_chars) or self.max_chars < 1):
            problems.append(f"max_chars: must be null or an integer >= 1, got {self.max_chars!r}")
        elif self.max_chars is not None and is_int(self.min_chars) and self.max_chars < self.min_chars:
            problems.append(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars}): "
                            f"every record would be rejected")
        if self.dedup not in DEDUP_MODES:
            problems.append(f"dedup: {self.dedup!r} is not one of {list(DEDUP_MODES)}")
        if problems:
            raise ConfigError("udatasets settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> UdatasetsSettings:
        return settings_from_dict(cls, values, "udatasets")

    def cleaning(self) -> Cleaning:
        """The cleaning applied to each record's text after the adapter."""
        return Cleaning(unicode_nfc=self.unicode_nfc, strip_control=self.strip_control, whitespace=self.whitespace)

    def adapter_for(self, kind: str) -> str:
        """The adapter to use for `kind` ('cpt' or 'sft'); an adapter of the other kind is an error."""
        adapter = self.adapter or next(a for a, k in ADAPTERS.items() if k == kind)
        if ADAPTERS[adapter] not in (None, kind):
            fitting = next(a for a, k in ADAPTERS.items() if k == kind)
            raise ConfigError(f"udatasets: adapter {adapter!r} makes {ADAPTERS[adapter]} records, but this "
                              f"is a {kind} dataset; set the dataset's adapter to {fitting!r} in pipeline.yaml")
        return adapter

    def make_adapter(self, kind: str, dataset: str) -> Adapter:
        """The adapter function for `kind`, bound to this dataset's keys (or the user's function)."""
        name = self.adapter_for(kind)
        if name == "custom":
            key = f"data.{kind}.{dataset}.adapter_function in pipeline.yaml"
            return custom_adapter(self.adapter_function, kind, key)
        return builtin_adapter(name, text_key=self.text_key, prompt_key=self.prompt_key,
                               response_key=self.response_key)
