"""Near-duplicate detection: MinHash signatures of word shingles and an LSH index over them.

A text becomes the set of its runs of `shingle_words` consecutive words ("shingles", words split on
whitespace as `str.split()` does); two texts are near duplicates when the Jaccard similarity of their shingle
sets, estimated from their MinHash signatures, reaches the threshold. The index finds candidates by LSH
banding, then checks each candidate's estimated Jaccard, so a bucket collision alone never marks a duplicate.

Why numpy, not datasketch: datasketch's MinHash hashes each shingle with SHA-1 in a Python loop (~2,000
demo documents/s on one core); hashing all of a text's bytes at once in numpy is ~3x faster. The scheme is
datasketch's "affine32": a 64-bit shingle hash mixed down to 32 bits, then `num_perm` permutations
h -> a*h + b mod 2^32 with odd a (bijections, so no permutation adds collisions), drawn from numpy's legacy
RandomState, whose stream is fixed across numpy versions; bands and rows are chosen as datasketch's
MinHashLSH chooses them. Everything is fixed-width integer arithmetic: signatures depend only on the text and
the config, never on the process or the machine.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SIGNATURE_DTYPE = np.dtype("<u4")
_U64 = np.uint64
_BASE = _U64(0x100000001B3)  # odd, hence invertible mod 2^64: a word's hash does not depend on where it starts
_BASE_INVERSE = _U64(pow(int(_BASE), -1, 1 << 64))


@dataclass(frozen=True)
class MinHashConfig:
    threshold: float = 0.8
    """Estimated Jaccard similarity at or above which a record is a near duplicate."""
    shingle_words: int = 5
    """Words per shingle (texts shorter than this: one shingle of all words)."""
    num_perm: int = 128
    """Permutations in the signature: more estimate the similarity more closely, at more time and memory."""
    seed: int = 1
    """Seed of the permutations; signatures compare only under the same seed."""

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.threshold <= 1.0:
            problems.append(f"threshold {self.threshold}: must be in (0, 1]")
        if self.shingle_words < 1:
            problems.append(f"shingle_words {self.shingle_words}: must be at least 1")
        if self.num_perm < 2:
            problems.append(f"num_perm {self.num_perm}: must be at least 2")
        if not 0 <= self.seed < 2**32:
            problems.append(f"seed {self.seed}: must be in [0, 2^32)")
        if problems:
            raise ValueError("MinHashConfig: " + "; ".join(problems))


def _mix(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser, in place: spreads every input bit over all output bits."""
    values ^= values >> _U64(33)
    values *= _U64(0xFF51AFD7ED558CCD)
    values ^= values >> _U64(33)
    values *= _U64(0xC4CEB9FE1A85EC53)
    values ^= values >> _U64(33)
    return values


def _powers(base: np.uint64, n: int) -> np.ndarray:
    """base^0 .. base^(n-1) mod 2^64."""
    powers = np.full(n, base, dtype=np.uint64)
    powers[0] = 1
    return np.cumprod(powers, out=powers)


def shingle_hashes(text: str, shingle_words: int) -> np.ndarray:
    """A 64-bit hash of each run of `shingle_words` consecutive words of `text` (one per position, repeats
    included); a text of fewer words gives one hash of all of them."""
    data = np.frombuffer(" ".join(text.split()).encode("utf-8"), dtype=np.uint8)
    spaces = np.flatnonzero(data == 32)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [len(data)]))
    # polynomial hash of every prefix; a word's hash is its slice of that, shifted back to position 0
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum((data + _U64(1)) * _powers(_BASE, len(data) + 1)[:-1], out=prefix[1:])
    words = _mix((prefix[ends] - prefix[starts]) * _powers(_BASE_INVERSE, len(data) + 1)[starts])
    count = max(len(words) - shingle_words + 1, 1)
    shingles = words[:count].copy()
    for offset in range(1, min(shingle_words, len(words))):
        shingles *= _BASE
        shingles += words[offset:offset + count]
    return _mix(shingles)


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the permutations h -> a*h + b mod 2^32, a odd; drawn as datasketch's affine32 scheme draws them."""
    generator = np.random.RandomState(seed)
    a = generator.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def minhash_signature(text: str, config: MinHashConfig) -> bytes:
    """The MinHash signature of `text`'s word shingles: `num_perm` uint32 values, little-endian.
    `text` is compared as given; normalising it (case, punctuation, Unicode) is the caller's job."""
    hashes = (shingle_hashes(text, config.shingle_words) >> _U64(32)).astype(np.uint32)
    a, b = _permutations(config.num_perm, config.seed)
    permuted = np.multiply.outer(hashes, a)
    permuted += b
    return permuted.min(axis=0).astype(SIGNATURE_DTYPE, copy=False).tobytes()


@lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band), bands * rows <= num_perm, that minimise the false-positive plus false-negative
    probability mass around `threshold`, as datasketch's MinHashLSH chooses them: two texts of Jaccard s share a
    bucket with probability 1 - (1 - s^rows)^bands."""
    below = np.linspace(0.0, threshold, 201)
    above = np.linspace(threshold, 1.0, 201)
    best, choice = float("inf"), (1, num_perm)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = np.trapezoid(1 - (1 - below**rows) ** bands, below)
            false_negative = np.trapezoid((1 - above**rows) ** bands, above)
            if false_positive + false_negative < best:
                best, choice = false_positive + false_negative, (bands, rows)
    return choice


class NearDupIndex:
    """Signatures of the records added so far, searchable for a near duplicate of a new one.

    Memory per record: its signature (num_perm * 4 bytes), its key, and one entry per LSH band in that band's
    table (a 64-bit hash of the band -> the insertion number, or a list of them when several records share it)."""

    def __init__(self, config: MinHashConfig) -> None:
        self.config = config
        self.bands, self.rows = lsh_bands(config.threshold, config.num_perm)
        self._band_weights = _powers(_BASE, self.rows)
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._keys: list[Hashable] = []
        self._signatures = np.empty((1024, config.num_perm), dtype=SIGNATURE_DTYPE)

    def __len__(self) -> int:
        return len(self._keys)

    def _decode(self, signature: bytes) -> np.ndarray:
        expected = self.config.num_perm * SIGNATURE_DTYPE.itemsize
        if len(signature) != expected:
            raise ValueError(f"signature of {len(signature)} bytes, expected {expected} "
                             f"(num_perm {self.config.num_perm} x 4): made with another MinHashConfig?")
        return np.frombuffer(signature, dtype=SIGNATURE_DTYPE)

    def _band_hashes(self, values: np.ndarray) -> list[int]:
        bands = values[: self.bands * self.rows].reshape(self.bands, self.rows).astype(np.uint64)
        return _mix((bands * self._band_weights).sum(axis=1, dtype=np.uint64)).tolist()

    def find(self, signature: bytes) -> Hashable | None:
        """The key of the earliest added record whose estimated Jaccard with `signature` is at least the
        threshold, or None."""
        values = self._decode(signature)
        candidates: set[int] = set()
        for table, band in zip(self._tables, self._band_hashes(values)):
            bucket = table.get(band)
            if isinstance(bucket, list):
                candidates.update(bucket)
            elif bucket is not None:
                candidates.add(bucket)
        if not candidates:
            return None
        numbers = np.array(sorted(candidates))
        similarity = np.count_nonzero(self._signatures[numbers] == values, axis=1) / self.config.num_perm
        matches = np.flatnonzero(similarity >= self.config.threshold)
        return self._keys[numbers[matches[0]]] if len(matches) else None

    def add(self, key: Hashable, signature: bytes) -> None:
        """Index `signature` under `key` (keys need not be unique: `find` returns the earliest)."""
        values = self._decode(signature)
        number = len(self._keys)
        if number == len(self._signatures):
            self._signatures = np.concatenate((self._signatures, np.empty_like(self._signatures)))
        self._signatures[number] = values
        self._keys.append(key)
        for table, band in zip(self._tables, self._band_hashes(values)):
            bucket = table.setdefault(band, number)
            if isinstance(bucket, list):
                bucket.append(number)
            elif bucket != number:
                table[band] = [bucket, number]
