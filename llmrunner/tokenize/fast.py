"""A faster exact encoder for tokenize cpt: tokie, a Rust BPE that reads tokenizer.json, used only where it
gives the ids of HF `tokenizers` (the backend llmrunner.tokenizer loads).

HF's batch encode is most of a CPT job's time; tokie encodes a byte-level BPE several times faster and returns a
batch's ids as one array (bench/README.md, bench_tokenize.py). It is used only when
1. the tokenizer is one it expresses, decided from the backend's own serialization (`refusal`): a BPE model
   without dropout, byte fallback or word prefix/suffix; no normalizer or NFC; one regex, in a ByteLevel
   pre-tokenizer (no prefix space) or a Split (isolated matches) before it; ByteLevel and TemplateProcessing
   post-processors; no truncation or padding. Anything else, a type this list does not name included, is
   encoded by HF;
2. it gives HF's ids on the job's first batch, encoded both ways; a difference sends the whole job to HF.
Either way a log line says which encoder runs and why. Three kinds of text are always encoded by HF: one that
spells an added token (special or not: HF, set to `encode_special_tokens`, keeps a special token's spelling
literal text yet still splits out a non-special added token such as Qwen3's "<think>", which tokie cannot be
told to do), one with a character tokie's pre-tokenizer classes otherwise (`odd_characters`), and one with a
pre-token that could be longer than tokie encodes exactly (`long_runs`).
"""
from __future__ import annotations

import functools
import json
import logging
import re
import sys
import tempfile
import unicodedata
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

BatchIds = Callable[[list[str], bool], list[list[int]]]
"""(texts, add_special_tokens) -> the ids of each text."""

NORMALIZERS = {"NFC"}
PRE_TOKENIZERS = {"ByteLevel", "Split"}
POST_PROCESSORS = {"ByteLevel", "TemplateProcessing"}
LONG_RUN = 4_000  # bytes: long_runs
_SPACE = np.isin(np.arange(256), [9, 10, 11, 12, 13, 32])
RUN_KINDS = (_SPACE | (np.arange(256) > 127), ~_SPACE)
"""Per byte value, whether it continues a run of whitespace, of non-whitespace (long_runs)."""


def hf_ids(backend) -> BatchIds:
    """The ids of a batch from the HF backend (encode_batch_fast skips the offsets)."""
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return lambda texts, add_special_tokens: [e.ids for e in encode(texts, add_special_tokens=add_special_tokens)]


def refusal(config: dict) -> str | None:
    """Why tokie cannot stand in for the tokenizer serialized as `config` (a tokenizer.json); None if it can."""
    model = config.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout") or model.get("byte_fallback") \
            or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
        return f"its model is not a plain BPE ({_describe(model)})"
    if config.get("truncation") or config.get("padding"):
        return "it truncates or pads"
    for part, allowed in (("normalizer", NORMALIZERS), ("pre_tokenizer", PRE_TOKENIZERS),
                          ("post_processor", POST_PROCESSORS)):
        for step in _steps(config.get(part)):
            if step.get("type") not in allowed:
                return f"its {part} {_describe(step)} is not one of {', '.join(sorted(allowed))}"
            if part == "pre_tokenizer" and (step.get("add_prefix_space") or step.get("invert") or (
                    step["type"] == "Split" and ("Regex" not in step.get("pattern", {})
                                                 or step.get("behavior") != "Isolated"))):
                return f"its pre-tokenizer {_describe(step)} is not a plain regex split or byte-level step"
    regexes = [step for step in _steps(config.get("pre_tokenizer"))
               if step["type"] == "Split" or step.get("use_regex", True)]
    if len(regexes) > 1:  # DeepSeek's: tokie's ids differ where no regex matches a character (" \u0380")
        return f"its pre-tokenizer splits with {len(regexes)} regexes, not one"
    return None


def _steps(component: dict | None) -> list[dict]:
    """A normalizer's, pre-tokenizer's or post-processor's steps: a Sequence's members, else itself."""
    if component is None:
        return []
    if component.get("type") == "Sequence":
        members = component.get("normalizers") or component.get("pretokenizers") or component.get("processors") or []
        return [step for member in members for step in _steps(member)]
    return [component]


def _describe(step: dict) -> str:
    return json.dumps({k: v for k, v in step.items() if k not in ("vocab", "merges")})[:200]


class ExactEncoder:
    """The ids of a batch of texts, from tokie where it matches HF, else from the HF backend."""

    def __init__(self, backend) -> None:
        self.hf = hf_ids(backend)
        config = json.loads(backend.to_str())
        reason = refusal(config)
        missing = None if reason else _tokie_missing()
        self.fast = None if reason or missing else _load_tokie(backend)
        self.checked = False
        contents = sorted((token["content"] for token in config.get("added_tokens", [])), key=len, reverse=True)
        self.added = re.compile("|".join(map(re.escape, contents))) if contents else None
        self.nfc = any(step.get("type") == "NFC" for step in _steps(config.get("normalizer")))
        if reason:
            log.info("encoding with HF tokenizers: the fast encoder (tokie) cannot express this tokenizer: %s", reason)
        elif missing:
            log.info("encoding with HF tokenizers: %s", missing)

    def for_hf(self, text: str) -> bool:
        """Whether `text` holds an added token's spelling or an odd character, as written or (NFC) normalized."""
        texts = (text, unicodedata.normalize("NFC", text)) if self.nfc and not text.isascii() else (text,)
        return any(has_odd_character(t) or (self.added is not None and self.added.search(t)) for t in texts)

    def __call__(self, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
        if self.fast is None:
            return self.hf(texts, add_special_tokens)
        literal = [long or self.for_hf(text) for text, long in zip(texts, long_runs(texts))]
        out = self.hf([t for t, by_hf in zip(texts, literal) if by_hf], add_special_tokens) if any(literal) else []
        plain = [t for t, by_hf in zip(texts, literal) if not by_hf]
        if plain:
            flat, lengths = self.fast.encode_batch_flat(plain, add_special_tokens=add_special_tokens)
            fast = iter(np.split(flat, np.cumsum(lengths[:-1])))
            hf = iter(out)
            out = [next(hf) if by_hf else next(fast).tolist() for by_hf in literal]
        if not self.checked:
            return self.check(texts, add_special_tokens, out)
        return out

    def check(self, texts: list[str], add_special_tokens: bool, ids: list[list[int]]) -> list[list[int]]:
        """The job's first batch: compare the fast ids with HF's, and on any difference use HF from now on."""
        self.checked = True
        reference = self.hf(texts, add_special_tokens)
        differ = [i for i, (a, b) in enumerate(zip(ids, reference)) if a != b]
        if differ:
            self.fast = None
            log.warning("encoding with HF tokenizers: the fast encoder (tokie) gave other ids than HF for %d of the "
                        "first %d texts (the first at %r...)", len(differ), len(texts), texts[differ[0]][:60])
        else:
            log.info("encoding with tokie: it gave HF tokenizers' ids for all of the first %d texts (%d characters)",
                     len(texts), sum(map(len, texts)))
        return reference


@functools.cache
def odd_characters() -> np.ndarray:
    """Per code point, whether tokie's pre-tokenizer classes it otherwise than the regex it stands for (tokie
    0.1.4; test_fast.py encodes every code point beside a space, letter, digit, punctuation and newline): letter
    numbers (\\p{Nl}, "Ⅻ": a letter to tokie after a space) and spaces other than U+0020 (U+00A0 before a
    letter). All are outside ASCII, and below ODD_CHARACTERS_END: the table is made once per job, and scanning
    every code point took 0.3 s of it."""
    table = np.zeros(sys.maxunicode + 1, bool)
    table[[ord(c) for c in map(chr, range(ODD_CHARACTERS_END))
           if unicodedata.category(c) == "Nl" or (unicodedata.category(c) == "Zs" and c != " ")]] = True
    return table


# Every Nl and Zs code point lies in planes 0-1; planes 2-16 hold ideographs, tags, variation selectors and private
# use (test_fast.py checks the scan against every code point).
ODD_CHARACTERS_END = 0x20000


def has_odd_character(text: str) -> bool:
    return not text.isascii() and bool(
        odd_characters()[np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)].any())


def long_runs(texts: list[str]) -> list[bool]:
    """Whether each text has a run of LONG_RUN bytes (UTF-8) of whitespace or of non-whitespace, a byte above 127
    counting as both: tokie cuts a pre-token longer than 10,000 bytes, which can change its ids, and a pre-token
    of the regexes in use (GPT-2, Qwen, Llama 3) is at most a character, a run of each kind and newlines."""
    if not texts:
        return []
    encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
    data = np.frombuffer(b"\n".join(encoded), np.uint8)
    separators = np.cumsum([len(e) + 1 for e in encoded]) - 1  # the joining newlines (and one past the end)
    long = np.zeros(len(texts), bool)
    for kind in RUN_KINDS:
        mask = kind[data]
        mask[separators[:-1]] = False  # no run crosses from one text to the next
        padded = np.zeros(len(mask) + 2, bool)
        padded[1:-1] = mask
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        starts, ends = edges[::2], edges[1::2]
        long[np.searchsorted(separators, starts[ends - starts >= LONG_RUN])] = True
    return long.tolist()


def _tokie_missing() -> str | None:
    """Why tokie cannot be used here: not installed (it has no wheel for some platforms, Linux aarch64 among them:
    pyproject.toml installs it only where it has one); None when it imports."""
    try:
        import tokie  # noqa: F401
    except ImportError:
        return "tokie is not installed (pyproject.toml installs it only on the platforms it has wheels for)"
    return None


def _load_tokie(backend):
    """tokie's tokenizer for the backend as loaded (transformers may have changed it from the file on disk)."""
    import tokie

    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as file:
        file.write(backend.to_str())
        file.flush()
        return tokie.Tokenizer.from_json(file.name)
