"""Settings of the udatasets step: the step config (1.udatasets.yaml) plus the dataset's adapter."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmrunner.errors import ConfigError
from llmrunner.schemas import load_schema
from llmrunner.settings import settings_from_dict
from llmrunner.udatasets.adapters import Adapter, builtin_adapter
from llmrunner.udatasets.augment import AugmentSettings
from llmrunner.udatasets.clean import Cleaning
from llmrunner.udatasets.custom import custom_adapter
from llmrunner.udatasets.near_dup import MinHashConfig
from llmrunner.udatasets.shard import RecordRules

if TYPE_CHECKING:
    from llmrunner.udatasets.decontaminate import EvalIndex

# adapter -> the kind of record it produces (None: either, decided by the user's function)
ADAPTERS = {"text": "cpt", "messages": "sft", "sharegpt": "sft", "alpaca": "sft", "prompt_response": "sft",
            "custom": None}


def udatasets_schema() -> dict:
    """What one udatasets job is configured by: the step's keys (udatasets.schema.json) plus the dataset's
    adapter and reading keys (pipeline.yaml data.<kind>.<dataset>, all but `sources`)."""
    schema = load_schema("udatasets")
    dataset = load_schema("pipeline")["$defs"]["dataset"]
    schema["properties"].update({k: v for k, v in dataset["properties"].items() if k != "sources"})
    return schema


@dataclass(frozen=True)
class UdatasetsSettings:
    """Every key's type, default and range: config/schemas/udatasets.schema.json plus a dataset's keys in
    config/schemas/pipeline.schema.json (`udatasets_schema()`)."""

    adapter: str | None
    """How a raw record becomes the unified schema: 'text' (CPT: the document is under text_key),
    'messages' (OpenAI chat), 'sharegpt', 'alpaca', 'prompt_response' (SFT) or 'custom'
    (adapter_function). None: the adapter that fits --kind ('text' / 'messages')."""
    text_key: str
    """For the 'text' adapter: the key of a raw record that holds the document (dotted: nested)."""
    prompt_key: str
    """For the 'prompt_response' adapter: the key of the prompt (dotted: nested)."""
    response_key: str
    """For the 'prompt_response' adapter: the key of the response (dotted: nested)."""
    adapter_function: str | None
    """For the 'custom' adapter: 'path/to/file.py:function' (relative to the repository root)."""
    txt_mode: str
    """.txt inputs: 'document' (one record per file) or 'paragraphs' (one per blank-line separated block)."""
    unicode_nfc: bool
    """Cleaning: bring the text (CPT) / every message content (SFT) to Unicode NFC (composed: 'e' + U+0301 -> 'é')."""
    strip_control: bool
    """Cleaning: remove control characters (Unicode category Cc: NUL, ESC, DEL, C1, ...) except newline and tab
    (and carriage return, which whitespace: normalize has already turned into a newline). A record left with
    no text is rejected as 'empty'."""
    whitespace: str
    """Cleaning: 'normalize' (\\r\\n and \\r -> \\n, trailing spaces and tabs of each line removed, 3+ newlines ->
    2, the whole text stripped; spaces inside a line, such as code indentation, are kept) or 'keep'."""
    min_chars: int
    """Reject a record whose text (CPT) or total message content (SFT) has fewer characters (after cleaning)."""
    max_chars: int | None
    """Reject a record with more characters than this; None: no limit."""
    min_tokens: int | None
    """Reject a record with fewer tokens (base-model tokenizer; the text, or the sum over the message contents,
    without special tokens or chat template); None: no limit. A token filter makes the base model an input."""
    max_tokens: int | None
    """Reject a record with more tokens than this (counted as for min_tokens); None: no limit."""
    dedup: str
    """'exact': keep the first of records whose cleaned text, NFC-normalised and whitespace-collapsed, is equal;
    'none': keep every record. Across every dataset of the same kind, in pipeline.yaml order."""
    near_dedup: bool
    """Also drop near duplicates (after exact de-dup): records whose MinHash-estimated Jaccard similarity of
    word shingles (case-folded, whitespace-collapsed text) with a kept record reaches near_threshold."""
    near_threshold: float
    """Estimated Jaccard similarity at or above which a record is a near duplicate (0 < t <= 1)."""
    near_shingle_words: int
    """Words per shingle for near de-dup (a text with fewer words is one shingle)."""
    near_num_perm: int
    """MinHash permutations: more estimate the similarity more closely, at more time and memory."""
    decontaminate: list[str]
    """Eval sets (registered, not lm_eval) whose items no kept record may contain: a record sharing a word n-gram
    with an item of one is rejected as 'contaminated:<set>' (decontaminate.py)."""
    decontaminate_ngram: int
    """Words per n-gram for decontamination (and the contamination report)."""
    decontaminate_min_words: int
    """Eval texts shorter than the n-gram count whole only from this many words."""
    augment: dict
    """SFT augmentation settings (augment.py, AugmentSettings); both fractions 0 (the default): off."""
    shards: int
    """Split each dataset over this many map jobs (scatter/gather, e.g. SLURM jobs in parallel); the outputs
    are the same, byte for byte, for any number. Changes the job plan, not the output."""
    threads: int
    """Worker processes of one job (also the Snakemake job's threads); the output does not depend on it."""

    def __post_init__(self) -> None:
        # Types and ranges are the schema's; these rules involve several keys.
        problems = []
        if (self.adapter == "custom") != (self.adapter_function is not None):
            problems.append("adapter_function: give it exactly when adapter is 'custom' "
                            f"(adapter {self.adapter!r}, adapter_function {self.adapter_function!r})")
        if self.max_chars is not None and self.max_chars < self.min_chars:
            problems.append(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars}): "
                            f"every record would be rejected")
        if self.max_tokens is not None and self.max_tokens < (self.min_tokens or 0):
            problems.append(f"max_tokens ({self.max_tokens}) is below min_tokens ({self.min_tokens}): "
                            f"every record would be rejected")
        try:
            AugmentSettings.from_dict(self.augment)
        except ConfigError as err:
            problems.append(str(err).removeprefix("udatasets settings: "))
        if problems:
            raise ConfigError("udatasets settings: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> UdatasetsSettings:
        return settings_from_dict(cls, values, udatasets_schema(), "udatasets")

    def counts_tokens(self) -> bool:
        """Whether a token-length filter is set (then the base model's tokenizer is needed)."""
        return self.min_tokens is not None or self.max_tokens is not None

    def minhash(self) -> MinHashConfig | None:
        """The near-duplicate config, or None when near de-dup is off."""
        if not self.near_dedup:
            return None
        return MinHashConfig(threshold=float(self.near_threshold), shingle_words=self.near_shingle_words,
                             num_perm=self.near_num_perm)

    def augment_settings(self, kind: str) -> AugmentSettings | None:
        """What augment.py makes for a dataset of `kind`: None for CPT (never augmented) or when off."""
        if kind != "sft":
            return None
        settings = AugmentSettings.from_dict(self.augment)
        return settings if settings.enabled() else None

    def decontamination(self, evalsets_json: str) -> EvalIndex | None:
        """The index of the `decontaminate` sets' grams, their definitions read from `evalsets_json` (a rule's
        --evalsets); None when the list is empty."""
        if not self.decontaminate:
            return None
        # imported here: without eval sets a job never loads them (start-up time)
        from llmrunner.udatasets.decontaminate import EvalIndex, read_evalsets, read_sets

        return EvalIndex.build(read_sets(read_evalsets(evalsets_json, self.decontaminate)), self.decontaminate_ngram,
                                self.decontaminate_min_words)

    def record_rules(self, kind: str, dataset: str, tokenizer: Path | None = None,
                     evalsets_json: str = "[]") -> RecordRules:
        """What happens to each record of the dataset on its own (the map side); `tokenizer`: the base model
        folder, required when a token filter is set; `evalsets_json`: the definitions of the `decontaminate`
        sets."""
        if self.counts_tokens() and tokenizer is None:
            raise ConfigError("udatasets: min_tokens / max_tokens are set, so the base model's tokenizer is needed: "
                              "pass --tokenizer <HF model folder> (the workflow passes the base model)")
        return RecordRules(adapter=self.make_adapter(kind, dataset), cleaning=self.cleaning(),
                           min_chars=self.min_chars, max_chars=self.max_chars, min_tokens=self.min_tokens,
                           max_tokens=self.max_tokens, tokenizer=tokenizer if self.counts_tokens() else None,
                           txt_mode=self.txt_mode, minhash=self.minhash(),
                           decontaminate=self.decontamination(evalsets_json),
                           drop_repeats=self.dedup == "exact" or self.near_dedup)

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
