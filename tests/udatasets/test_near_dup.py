"""Near-duplicate detection on real demo documents edited to known Jaccard similarities of their word shingles.

Signatures are deterministic, so every outcome here is fixed; the similarities are chosen well away from the
thresholds (LSH and the MinHash estimate are approximate near them)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from llmrunner.udatasets import near_dup
from llmrunner.udatasets.near_dup import (
    MinHashConfig,
    NearDupIndex,
    candidate_probability,
    lsh_bands,
    minhash_signature,
    recall_point,
)
from llmrunner.udatasets.records import normalise
from tests.paths import REPO, demo_cpt_texts


@pytest.fixture(scope="module")
def documents() -> list[str]:
    """The first 12 demo CPT documents of 300 words or more."""
    texts = []
    for text in demo_cpt_texts():
        if len(text.split()) >= 300:
            texts.append(text)
        if len(texts) == 12:
            return texts
    raise AssertionError("the demo corpus has fewer than 12 documents of 300+ words")


def true_jaccard(a: str, b: str, shingle_words: int = 5) -> float:
    """Jaccard similarity of the two texts' sets of word shingles, computed directly."""
    def shingles(text: str) -> set[tuple[str, ...]]:
        words = text.split()
        return {tuple(words[i:i + shingle_words]) for i in range(max(len(words) - shingle_words + 1, 1))}
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


def edited(text: str, every: int) -> str:
    """`text` with every `every`-th word replaced by a word found nowhere else."""
    return " ".join(f"edit{i}x" if i % every == every - 1 else word for i, word in enumerate(text.split()))


def estimated_jaccard(a: bytes, b: bytes) -> float:
    return float(np.mean(np.frombuffer(a, "<u4") == np.frombuffer(b, "<u4")))


def index_of(texts: list[str], config: MinHashConfig) -> NearDupIndex:
    index = NearDupIndex(config)
    for number, text in enumerate(texts):
        index.add(number, minhash_signature(text, config))
    return index


def test_exact_copies_are_found_and_others_are_not(documents):
    config = MinHashConfig()
    index = index_of(documents[:6], config)
    assert [index.find(minhash_signature(text, config)) for text in documents] == [0, 1, 2, 3, 4, 5] + [None] * 6


def test_edits_well_above_the_threshold_are_found_and_well_below_are_not(documents):
    config = MinHashConfig(threshold=0.8)
    index = index_of(documents, config)
    for number, text in enumerate(documents):
        close, far = edited(text, 200), edited(text, 10)  # one word in 200 changed / one in 10
        assert true_jaccard(text, close) >= 0.94 and true_jaccard(text, far) <= 0.4
        assert index.find(minhash_signature(close, config)) == number
        assert index.find(minhash_signature(far, config)) is None


def test_the_estimate_follows_the_true_similarity(documents):
    config = MinHashConfig()
    for text in documents:
        for every in (200, 20, 10, 6):
            variant = edited(text, every)
            estimate = estimated_jaccard(minhash_signature(text, config), minhash_signature(variant, config))
            assert abs(estimate - true_jaccard(text, variant)) < 0.15, every


def test_the_threshold_decides_a_middling_pair(documents):
    text = documents[0]
    middling = edited(text, 20)
    assert 0.55 <= true_jaccard(text, middling) <= 0.65
    lenient, strict = MinHashConfig(threshold=0.4), MinHashConfig(threshold=0.8)
    assert index_of([text], lenient).find(minhash_signature(middling, lenient)) == 0
    assert index_of([text], strict).find(minhash_signature(middling, strict)) is None


def test_the_shingle_size_decides_a_pair_with_scattered_edits(documents):
    """Changing every 4th word spares most single words but leaves no 5-word run intact."""
    text = documents[1]
    scattered = edited(text, 4)
    assert true_jaccard(text, scattered, 1) >= 0.5 and true_jaccard(text, scattered, 5) == 0.0
    words, shingles = MinHashConfig(threshold=0.4, shingle_words=1), MinHashConfig(threshold=0.4, shingle_words=5)
    assert index_of([text], words).find(minhash_signature(scattered, words)) == 0
    assert index_of([text], shingles).find(minhash_signature(scattered, shingles)) is None


def test_the_earliest_added_match_wins(documents):
    config = MinHashConfig()
    text = documents[2]
    index = NearDupIndex(config)
    index.add("unrelated", minhash_signature(documents[3], config))
    index.add("near copy", minhash_signature(edited(text, 150), config))
    index.add("exact copy", minhash_signature(text, config))
    assert index.find(minhash_signature(text, config)) == "near copy"
    assert index.find(minhash_signature(documents[3], config)) == "unrelated"
    assert len(index) == 3


def test_sharing_an_lsh_bucket_is_not_enough(documents):
    """A signature equal to a stored one in the first band only lands in its bucket but estimates ~rows/num_perm."""
    config = MinHashConfig()
    index = index_of(documents[:1], config)
    stored, other = minhash_signature(documents[0], config), minhash_signature(documents[1], config)
    band_bytes = index.rows * 4
    crafted = stored[:band_bytes] + other[band_bytes:]
    assert estimated_jaccard(stored, crafted) < 0.3
    assert index.find(crafted) is None


def test_short_and_empty_texts_are_one_shingle():
    config = MinHashConfig(shingle_words=5)
    index = index_of(["three short words", ""], config)
    assert index.find(minhash_signature("three  short\nwords", config)) == 0  # whitespace splits words only
    assert index.find(minhash_signature("", config)) == 1
    assert index.find(minhash_signature("three short words too", config)) is None


def test_signatures_are_fixed_bytes_identical_across_processes(documents):
    config = MinHashConfig(num_perm=64, seed=7)
    here = [minhash_signature(text, config).hex() for text in documents[:4]]
    assert all(len(signature) == 64 * 4 * 2 for signature in here)
    script = ("import json, sys\nfrom llmrunner.udatasets.near_dup import MinHashConfig, minhash_signature\n"
              "config = MinHashConfig(num_perm=64, seed=7)\n"
              "print(json.dumps([minhash_signature(t, config).hex() for t in json.load(sys.stdin)]))")
    for hash_seed in ("0", "12345"):  # Python's own str hash() differs between these processes
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", script], input=json.dumps(documents[:4]), env=env,
                              capture_output=True, text=True, check=True)
        assert json.loads(done.stdout) == here
    assert minhash_signature(documents[0], MinHashConfig(num_perm=64, seed=8)).hex() != here[0]


def test_a_signature_of_another_config_is_refused(documents):
    index = NearDupIndex(MinHashConfig(num_perm=128))
    with pytest.raises(ValueError, match="num_perm 128"):
        index.find(minhash_signature(documents[0], MinHashConfig(num_perm=64)))


@pytest.mark.parametrize("field, value", [("threshold", 0.0), ("threshold", 1.5), ("shingle_words", 0),
                                          ("num_perm", 1), ("seed", -1)])
def test_bad_config_values_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        MinHashConfig(**{field: value})


def pair_at_jaccard(rng: random.Random, number: int, shared: int, apart: int) -> tuple[str, str]:
    """Two texts whose word 5-shingle sets have Jaccard exactly (shared - 4) / (shared - 4 + 2 * apart): a common
    run of `shared` words, then `apart` words of each text's own. Every word occurs once in the whole test."""
    def words(tag: str, count: int) -> list[str]:
        return [f"{tag}{number}x{i}y{rng.randrange(10**6)}" for i in range(count)]
    common = words("s", shared)
    return " ".join(common + words("a", apart)), " ".join(common + words("b", apart))


def test_pairs_at_threshold_plus_0_1_are_found_999_in_1000():
    """10,000 pairs at Jaccard exactly 0.9, threshold 0.8: LSH makes at least 99.9% of them candidates (all, here;
    datasketch's banding: 93%), and loses none whose signatures agree enough, so that the whole check finds at
    least 99.9% (the estimate alone misses ~0.04% at 128 permutations: 9 here)."""
    config, rng, pairs = MinHashConfig(threshold=0.8), random.Random(20261206), 10_000
    texts = [pair_at_jaccard(rng, n, 184, 10) for n in range(pairs)]
    assert {true_jaccard(a, b) for a, b in texts[:100]} == {0.9}
    index = NearDupIndex(config)
    first = np.empty((pairs, config.num_perm), dtype="<u4")
    second = np.empty_like(first)
    for n, (a, b) in enumerate(texts):
        first[n] = np.frombuffer(minhash_signature(a, config), "<u4")
        second[n] = np.frombuffer(minhash_signature(b, config), "<u4")
        index.add(n, first[n].tobytes())
    used = index.bands * index.rows
    candidate = (first[:, :used] == second[:, :used]).reshape(pairs, index.bands, index.rows).all(axis=2).any(axis=1)
    accepted = (first == second).mean(axis=1) >= config.threshold
    found = np.array([index.find(second[n].tobytes()) == n for n in range(pairs)])
    assert np.count_nonzero(candidate) >= 0.999 * pairs
    assert np.array_equal(found, candidate & accepted)
    assert np.count_nonzero(found) >= 0.999 * pairs


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.85, 0.9, 1.0])
@pytest.mark.parametrize("num_perm", [64, 128, 256])
def test_banding_makes_pairs_above_the_threshold_candidates(threshold, num_perm):
    bands, rows = lsh_bands(threshold, num_perm)
    assert bands * rows <= num_perm
    point = recall_point(threshold)
    assert point == (min(threshold + 0.1, 1.0) if threshold <= 0.8 else (1 + threshold) / 2)
    assert candidate_probability(point, bands, rows) >= 0.999


def test_default_banding_against_datasketchs():
    """datasketch's banding for 0.8 and 128 permutations (9 x 13) misses 7% of pairs at 0.9; ours, 0.006%, for
    more candidates below the threshold (which the signature check drops)."""
    bands, rows = lsh_bands(0.8, 128)
    assert candidate_probability(0.9, 9, 13) < 0.93
    assert candidate_probability(0.9, bands, rows) >= 0.9999
    assert candidate_probability(0.5, bands, rows) < 0.15 and candidate_probability(0.3, bands, rows) < 0.005


def test_signatures_do_not_depend_on_how_the_text_is_cut(documents, monkeypatch):
    """A text is hashed near_dup.PIECE_CHARS characters at a time; words and shingles cut between pieces, and a
    word longer than a piece, hash as if whole."""
    config = MinHashConfig(shingle_words=3)
    texts = [documents[0], "word " * 50 + "x" * 40 + " y", "  lead\tand\n\ntrail  ",
             "\u00e9t\u00e9 \U0001F609 \u65e5\u672c", " ", "", "one"]
    whole = [minhash_signature(text, config) for text in texts]
    for piece in (1, 2, 7, 64):
        monkeypatch.setattr(near_dup, "PIECE_CHARS", piece)
        assert [minhash_signature(text, config) for text in texts] == whole, piece


def test_normalised_ascii_texts_are_those_of_normalise(documents):
    """The map side's batch of ASCII texts: the exact-dedup key records.normalise gives each (words apart by one
    space, whatever the whitespace: str.split's, \\x1c-\\x1f among it), each text and all at once."""
    rng = random.Random(1)
    pieces = ["a", "Bc", "d.e", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "x"]
    texts = [t for t in documents if t.isascii()]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 30))) for _ in range(500)]
    texts = [t for t in texts if t.split()]  # a text with a word at least, as the map side's are
    assert near_dup.normalised_ascii([t.encode("ascii") for t in texts]) == \
        [normalise(t).encode("ascii") for t in texts]
    assert [near_dup.normalised_ascii([t.encode("ascii")])[0] for t in texts[-50:]] == \
        [normalise(t).encode("ascii") for t in texts[-50:]]


@pytest.mark.parametrize("config", [MinHashConfig(), MinHashConfig(shingle_words=1, num_perm=16),
                                    MinHashConfig(shingle_words=3, num_perm=4096)])
def test_signatures_of_a_batch_are_those_of_each_text(documents, monkeypatch, config):
    """minhash_signatures hashes many texts in one round of numpy calls; each signature is the bytes that
    minhash_signature gives, whatever the text: ASCII or not, other whitespace (str.split's), fewer words than a
    shingle, none, a text longer than a batch, more shingles than are permuted at a time, batches cut anywhere."""
    rng = random.Random(0)
    texts = documents + ["", " ", "a", "a b", "a b c d", "one two three four five", "x\u00a0y z\u2003w q r s",
                         "\u00e9t\u00e9  \U0001F609\n\t\u65e5\u672c a b c", "\x1c\x1dword other\x1f more words here",
                         "w " * 20000, "a" * 3000]
    words = ["a", "b", "c", "\u00e9", "\u3000", "x\ty", "\x85"]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randrange(40))) for _ in range(200)]
    rng.shuffle(texts)
    each = [minhash_signature(text, config) for text in texts]
    assert near_dup.minhash_signatures(texts, config) == each
    normalised = [normalise(text, casefold=True) for text in texts]  # what the map side signs, hashed as they are
    assert near_dup.minhash_signatures(normalised, config, spaced=True) == [minhash_signature(text, config)
                                                                            for text in normalised]
    monkeypatch.setattr(near_dup, "BATCH_BYTES", 4096)
    near_dup._power_table.cache_clear()
    try:
        assert near_dup.minhash_signatures(texts, config) == each
    finally:
        near_dup._power_table.cache_clear()
