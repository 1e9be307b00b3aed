"""Near-duplicate detection: MinHash signatures of word shingles and an LSH index over them.

A text becomes the set of its runs of `shingle_words` consecutive words ("shingles", words split on
whitespace as `str.split()` does); two texts are near duplicates when the Jaccard similarity of their shingle
sets, estimated from their MinHash signatures, reaches the threshold. The index finds candidates by LSH
banding, then checks each candidate's estimated Jaccard, so a bucket collision alone never marks a duplicate.

Why numpy, not datasketch: datasketch's MinHash hashes each shingle with SHA-1 in a Python loop (~2,000 demo
documents/s on one core); hashing a text's bytes a piece at a time in numpy is ~3x faster. The scheme is
datasketch's "affine32": a 64-bit shingle hash mixed down to 32 bits, then `num_perm` permutations
h -> a*h + b mod 2^32 with odd a (bijections, so no permutation adds collisions), drawn from numpy's legacy
RandomState, whose stream is fixed across numpy versions. Everything is fixed-width integer arithmetic:
signatures depend only on the text and the config, never on the process, the machine or how the text was cut
into pieces. Bands and rows are chosen for recall, not as datasketch chooses them (that misses ~7% of pairs at
Jaccard 0.9 for threshold 0.8): see lsh_bands.

Memory: a text is hashed PIECE_CHARS characters at a time and its shingles are permuted PERMUTED_BYTES at a
time, so a 50 MB document needs tens of megabytes here, not gigabytes.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SIGNATURE_DTYPE = np.dtype("<u4")
_U64 = np.uint64
_BASE = _U64(0x100000001B3)  # odd, hence invertible mod 2^64: a word's hash does not depend on where it starts
_BASE_INVERSE = _U64(pow(int(_BASE), -1, 1 << 64))
PIECE_CHARS = 1 << 18  # characters of a text hashed at a time (up to 1 MiB of UTF-8, 8 bytes of arrays a byte)
PERMUTED_BYTES = 1 << 23  # shingle hashes x permutations (uint32) held at a time
CANDIDATE_RECALL = 0.9999
"""The probability with which LSH must make a pair at Jaccard recall_point(threshold) a candidate. Above the
99.9% goal because the signature check then misses some of those pairs too (0.036% at Jaccard 0.9 with threshold
0.8 and 128 permutations, the estimate's binomial spread): with both, ~99.96% of such pairs are found."""


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


def _polynomial(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unmixed hash, byte length) of each space-separated word of `data` (UTF-8 bytes, single spaces): the
    polynomial sum of (byte + 1) * BASE^i, i counted from the word's first byte. Splitting a word into x and y
    gives hash(xy) = hash(x) + BASE^len(x) * hash(y), which joins a word cut between two pieces of a text."""
    spaces = np.flatnonzero(data == 32)
    starts = np.concatenate(([0], spaces + 1))
    ends = np.concatenate((spaces, [len(data)]))
    # the hash of every prefix; a word's hash is its slice of that, shifted back to position 0
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum((data + _U64(1)) * _powers(_BASE, len(data) + 1)[:-1], out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * _powers(_BASE_INVERSE, len(data) + 1)[starts], ends - starts


def _word_hashes(text: str) -> Iterator[np.ndarray]:
    """The 64-bit hash of each word of `text` (split on whitespace as `str.split()` does), in order, in blocks; a
    text without words gives one hash, of the empty word. The text is read PIECE_CHARS characters at a time, so
    memory follows the piece, not the text; a word cut between two pieces is hashed as if whole."""
    carry: tuple[int, int] | None = None  # (unmixed hash, byte length) of a word that may go on in the next piece
    found = False
    for start in range(0, len(text), PIECE_CHARS):
        piece = text[start:start + PIECE_CHARS]
        words = piece.split()
        if carry is not None and (not words or piece[0].isspace()):  # the carried word ended with its piece
            yield _mix(np.array([carry[0]], dtype=np.uint64))
            carry = None
        if not words:
            continue
        found = True
        hashes, lengths = _polynomial(np.frombuffer(" ".join(words).encode("utf-8"), dtype=np.uint8))
        if carry is not None:  # the piece starts inside the carried word
            hashes[0] = (carry[0] + int(hashes[0]) * pow(int(_BASE), carry[1], 1 << 64)) % (1 << 64)
            lengths[0] += carry[1]
            carry = None
        if start + PIECE_CHARS < len(text) and not piece[-1].isspace():  # the last word may go on
            carry = int(hashes[-1]), int(lengths[-1])
            hashes = hashes[:-1]
        yield _mix(hashes)
    if not found:
        yield _mix(np.zeros(1, dtype=np.uint64))


def _fold(words: np.ndarray, count: int, width: int) -> np.ndarray:
    """The unmixed hash of each of the first `count` runs of `width` consecutive word hashes."""
    shingles = words[:count].copy()
    for offset in range(1, width):
        shingles *= _BASE
        shingles += words[offset:offset + count]
    return shingles


def shingle_hashes(text: str, shingle_words: int) -> Iterator[np.ndarray]:
    """A 64-bit hash of each run of `shingle_words` consecutive words of `text` (one per position, repeats
    included), in order, in blocks; a text of fewer words gives one hash of all of them."""
    tail = np.empty(0, dtype=np.uint64)  # the last words seen, which begin shingles that end in the next block
    whole = False
    for block in _word_hashes(text):
        words = np.concatenate((tail, block)) if len(tail) else block
        count = len(words) - shingle_words + 1
        if count >= 1:
            yield _mix(_fold(words, count, shingle_words))
            words, whole = words[count:], True
        tail = words
    if not whole:
        yield _mix(_fold(tail, 1, len(tail)))


Segment = tuple[int, int, int]  # (width, index of the first run's first word, runs)


def word_runs(text: str, widths: tuple[int, ...]) -> Iterator[tuple[np.ndarray, list[Segment]]]:
    """For each width w in `widths`, a 64-bit hash of every run of w consecutive words of `text` (none for a w
    longer than the text), in blocks: (hashes, segments), the hashes of each width consecutive and in text
    order, described by `segments`. A run's hash is the polynomial fold of its words' (mixed) hashes, not mixed
    again: the last word's hash is uniform over 64 bits, so the fold is too, and two different runs of one width
    collide with probability 2^-64 (their difference is a sum of odd multiples of word-hash differences).
    Every width is folded from the one before (w vector steps for the widest w, not the sum of the widths)."""
    widest, wanted = max(widths), set(widths)
    tail = np.empty(0, dtype=np.uint64)  # the last words seen, which begin runs that end in the next block
    offset = 0  # the index in the text of words[0]
    for block in _word_hashes(text):
        words = np.concatenate((tail, block)) if len(tail) else block
        hashes, segments = [], []
        folded = words  # the runs of width 1
        for width in range(1, min(widest, len(words)) + 1):
            if width > 1:
                folded = folded[:-1] * _BASE + words[width - 1:]
            first = max(len(tail) - width + 1, 0)  # runs that start before `first` ended in an earlier block
            if width in wanted and first < len(folded):
                hashes.append(folded[first:])
                segments.append((width, offset + first, len(folded) - first))
        if hashes:
            yield (np.concatenate(hashes) if len(hashes) > 1 else hashes[0].copy()), segments
        keep = min(widest - 1, len(words))
        offset += len(words) - keep
        tail = words[len(words) - keep:]


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
    a, b = _permutations(config.num_perm, config.seed)
    signature = None
    rows = max(PERMUTED_BYTES // (4 * config.num_perm), 1)  # shingles permuted at a time
    for block in shingle_hashes(text, config.shingle_words):
        hashes = (block >> _U64(32)).astype(np.uint32)
        for start in range(0, len(hashes), rows):
            permuted = np.multiply.outer(hashes[start:start + rows], a)
            permuted += b
            least = permuted.min(axis=0)
            signature = least if signature is None else np.minimum(signature, least, out=signature)
    return signature.astype(SIGNATURE_DTYPE, copy=False).tobytes()


BATCH_BYTES = 1 << 16  # UTF-8 bytes of texts hashed together by minhash_signatures (a longer text goes alone)
ASCII_SPACE = np.zeros(256, dtype=bool)
ASCII_SPACE[[ord(c) for c in map(chr, range(128)) if c.isspace()]] = True  # what str.split() splits ASCII text on
_IN_WORD = ~ASCII_SPACE


def _word_bounds(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(which bytes of `data` are in a word, where each word starts, where it ends: its first byte after), the
    words of ASCII text as str.split() finds them (whitespace: the bytes ASCII_SPACE marks)."""
    in_word = np.zeros(len(data) + 2, dtype=bool)  # a False byte either side: every word starts and ends
    _IN_WORD.take(data, out=in_word[1:-1])  # take: ~2x faster than indexing with the bytes
    changes = np.flatnonzero(in_word[1:] != in_word[:-1])  # alternately a word's start and its end
    return in_word[1:-1], changes[0::2], changes[1::2]


def normalised_ascii(texts: list[bytes]) -> list[bytes]:
    """[b" ".join(text.split()) for text in texts] (records.normalise's key for ASCII text, whose str.split()
    splits where bytes.split() does and on \\x1c-\\x1f too), each text with a word at least: a few numpy passes
    over all the texts at once instead of a word object per word (~8 µs a demo text against ~18)."""
    data = np.frombuffer(b"\n".join(texts), dtype=np.uint8)
    in_word, starts, ends = _word_bounds(data)
    keep = in_word.copy()
    out = data.copy()
    keep[ends[:-1]] = True  # the first byte after each word but the last: the space before the next word ...
    out[ends[:-1]] = ord(" ")
    text_ends = np.cumsum([len(text) + 1 for text in texts[:-1]])  # ... or the line break before the next text
    out[ends[np.searchsorted(starts, text_ends) - 1]] = ord("\n")
    return out[keep].tobytes().split(b"\n")


@lru_cache(maxsize=2)
def _power_table(base: int) -> np.ndarray:
    """base^0 .. base^(2 BATCH_BYTES) mod 2^64: enough for any batch of minhash_signatures."""
    return _powers(_U64(base), 2 * BATCH_BYTES + 1)


def minhash_signatures(texts: list[str], config: MinHashConfig, spaced: bool = False) -> list[bytes]:
    """[minhash_signature(text, config) for text in texts], the same bytes, computed a batch of texts at a time:
    one round of numpy calls for many short texts instead of one per text, whose fixed cost (~40 calls) is most
    of a short text's signature. An ASCII text is hashed as it is (its whitespace is the bytes ASCII_SPACE marks); any
    other text has its words joined by single spaces first, unless `spaced`: the caller knows that no text holds
    whitespace beyond ASCII (records.normalise's output), so every text is hashed as it is."""
    signatures: list[bytes | None] = [None] * len(texts)
    batch: list[int] = []
    data: list[bytes] = []
    size = 0
    for index, text in enumerate(texts):
        encoded = (text if spaced or text.isascii() else " ".join(text.split())).encode("utf-8") \
            if len(text) <= BATCH_BYTES else b""
        if not encoded or len(encoded) > BATCH_BYTES:  # no word (a rare case, done as ever) or a long text
            signatures[index] = minhash_signature(text, config)
            continue
        batch.append(index)
        data.append(encoded)
        size += len(encoded) + 1
        if size >= BATCH_BYTES:
            _sign_batch(texts, batch, data, config, signatures)
            batch, data, size = [], [], 0
    if batch:
        _sign_batch(texts, batch, data, config, signatures)
    return signatures


def _sign_batch(texts: list[str], batch: list[int], data: list[bytes], config: MinHashConfig,
                signatures: list[bytes | None]) -> None:
    """Sign texts[i] for i in `batch` (`data`: their UTF-8, words apart by whitespace bytes) into `signatures`."""
    width = config.shingle_words
    offsets = np.cumsum([0] + [len(d) + 1 for d in data])  # texts joined by one space each
    joined = np.frombuffer(b" ".join(data), dtype=np.uint8)
    starts, ends = _word_bounds(joined)[1:]
    # each word's hash as _polynomial gives it: its slice of the prefix sums, shifted back to position 0
    prefix = np.zeros(len(joined) + 1, dtype=np.uint64)
    np.cumsum((joined + _U64(1)) * _power_table(int(_BASE))[:len(joined)], out=prefix[1:])
    words = _mix((prefix[ends] - prefix[starts]) * _power_table(int(_BASE_INVERSE))[starts])
    first = np.searchsorted(starts, offsets[:-1])  # each text's first word; its words end at the next one's
    counts = np.diff(np.append(first, len(words))) - width + 1  # shingles of each text (< 1: fewer words)
    runs = max(len(words) - width + 1, 0)
    shingles = _fold(words, runs, width) if runs else np.empty(0, dtype=np.uint64)
    valid = np.ones(runs, dtype=bool)  # runs that end in the text they start in
    crossing = (first[1:, None] - width + 1 + np.arange(width - 1)).ravel()
    valid[crossing[(crossing >= 0) & (crossing < runs)]] = False
    hashes = (_mix(shingles[valid]) >> _U64(32)).astype(np.uint32)
    a, b = _permutations(config.num_perm, config.seed)
    rows = max(PERMUTED_BYTES // (4 * config.num_perm), 1)
    group: list[int] = []  # positions in `batch` of texts whose shingles are permuted together
    start = end = 0  # their slice of `hashes`

    def flush() -> None:
        if group:  # permutations x shingles: the minimum of each text's run of a row is one contiguous pass
            permuted = np.multiply.outer(a, hashes[start:end])
            permuted += b[:, None]
            least = np.minimum.reduceat(permuted, np.cumsum([0] + [counts[g] for g in group[:-1]]), axis=1)
            for g, row in zip(group, least.T.astype(SIGNATURE_DTYPE)):
                signatures[batch[g]] = row.tobytes()

    for position, count in enumerate(counts.tolist()):
        if count < 1 or count > rows:  # fewer words than a shingle, or more shingles than a block: alone
            signatures[batch[position]] = minhash_signature(texts[batch[position]], config)
            flush()
            start = end = end + max(count, 0)
            group = []
            continue
        if end + count - start > rows:
            flush()
            start, group = end, []
        group.append(position)
        end += count
    flush()


def recall_point(threshold: float) -> float:
    """The Jaccard similarity at which LSH must make a pair a candidate with probability CANDIDATE_RECALL:
    threshold + 0.1, or halfway to 1 for thresholds above 0.8 (threshold + 0.1 would pass 1)."""
    return min(threshold + 0.1, (1.0 + threshold) / 2)


def candidate_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The probability that two texts of Jaccard `similarity` share an LSH bucket: some band's rows all agree."""
    return 1 - (1 - similarity**rows) ** bands


def _fewest_bands(agree: float, most: int) -> int:
    """The fewest bands, at most `most`, of which some agrees with probability CANDIDATE_RECALL when each agrees
    with probability `agree` (more bands only add false positives)."""
    if agree >= 1:
        return 1
    needed = math.log(1 - CANDIDATE_RECALL) / math.log1p(-agree) if agree > 0 else math.inf
    return max(1, math.ceil(min(needed, most)))


@lru_cache(maxsize=64)
def lsh_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band), bands * rows <= num_perm, chosen for recall: of the bandings under which a pair at
    Jaccard recall_point(threshold) becomes a candidate with probability CANDIDATE_RECALL or more, the one with
    the fewest false-positive candidates (the integral of the candidate probability over Jaccard 0..threshold,
    as datasketch counts them). Candidates are checked on their signatures, so a false positive costs one
    comparison, a false negative a missed duplicate. When no banding reaches CANDIDATE_RECALL (few
    permutations), the one that comes closest."""
    point = recall_point(threshold)
    below = np.linspace(0.0, threshold, 201)
    best, choice = (float("inf"), float("inf")), (1, num_perm)
    for rows in range(1, num_perm + 1):
        bands = _fewest_bands(point**rows, num_perm // rows)
        shortfall = max(CANDIDATE_RECALL - candidate_probability(point, bands, rows), 0.0)
        key = (shortfall, float(np.trapezoid(candidate_probability(below, bands, rows), below)))
        if key < best:
            best, choice = key, (bands, rows)
    return choice


def band_hashes(signatures: list[bytes], config: MinHashConfig) -> list[bytes]:
    """Each signature's LSH keys in NearDupIndex, as little-endian uint64 bytes: per band (lsh_bands), its rows as
    a polynomial in BASE mod 2^64 (matmul of unsigned integers wraps), mixed, plus the band's number. Made a
    batch at a time (the map side ships them with the signatures), a few numpy calls for all."""
    bands, rows = lsh_bands(config.threshold, config.num_perm)
    values = np.frombuffer(b"".join(signatures), dtype=SIGNATURE_DTYPE).reshape(len(signatures), config.num_perm)
    hashes = _mix(values[:, :bands * rows].reshape(len(signatures), bands, rows) @ _powers(_BASE, rows))
    hashes += np.arange(bands, dtype=np.uint64)
    return [row.tobytes() for row in hashes.astype("<u8", copy=False)]


class NearDupIndex:
    """Signatures of the records added so far, searchable for a near duplicate of a new one.

    Memory per record: its signature (num_perm * 4 bytes), its key, and one entry per LSH band in the table (a
    64-bit hash of the band, plus the band's number so that equal rows in two bands do not meet -> the insertion
    number, or a list of them when several records share it). One table for all bands: a lookup per band, no
    loop over tables; two bands meet only when their hashes differ by their numbers' difference (p ~ 2^-64),
    which makes a candidate, never a match, since candidates are checked on their signatures."""

    def __init__(self, config: MinHashConfig) -> None:
        self.config = config
        self.bands, self.rows = lsh_bands(config.threshold, config.num_perm)
        self._table: dict[int, int | list[int]] = {}
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

    def _band_keys(self, signature: bytes, bands: bytes | None) -> list[int]:
        """The table keys of `signature`: `bands` (band_hashes' bytes for it, made by the caller) or made here."""
        return np.frombuffer(bands if bands is not None else band_hashes([signature], self.config)[0],
                             dtype="<u8").tolist()

    def find(self, signature: bytes, bands: bytes | None = None) -> Hashable | None:
        """The key of the earliest added record whose estimated Jaccard with `signature` is at least the
        threshold, or None. `bands`: band_hashes' bytes for the signature, when the caller has them."""
        return self._find(self._decode(signature), self._band_keys(signature, bands))

    def add(self, key: Hashable, signature: bytes, bands: bytes | None = None) -> None:
        """Index `signature` under `key` (keys need not be unique: `find` returns the earliest)."""
        self._add(key, self._decode(signature), self._band_keys(signature, bands))

    def find_or_add(self, key: Hashable, signature: bytes, bands: bytes | None = None) -> Hashable | None:
        """find(signature), and when that is None, add(key, signature): the band keys made once."""
        values = self._decode(signature)
        bands = self._band_keys(signature, bands)
        match = self._find(values, bands)
        if match is None:
            self._add(key, values, bands)
        return match

    def _find(self, values: np.ndarray, bands: list[int]) -> Hashable | None:
        buckets = [bucket for bucket in map(self._table.get, bands) if bucket is not None]
        if not buckets:
            return None
        candidates: set[int] = set()
        for bucket in buckets:
            if isinstance(bucket, list):
                candidates.update(bucket)
            else:
                candidates.add(bucket)
        numbers = np.array(sorted(candidates))
        similarity = np.count_nonzero(self._signatures[numbers] == values, axis=1) / self.config.num_perm
        matches = np.flatnonzero(similarity >= self.config.threshold)
        return self._keys[numbers[matches[0]]] if len(matches) else None

    def _add(self, key: Hashable, values: np.ndarray, bands: list[int]) -> None:
        number = len(self._keys)
        if number == len(self._signatures):  # twice the rows; the new half takes memory only as it is filled
            grown = np.empty((2 * number, self.config.num_perm), dtype=SIGNATURE_DTYPE)
            grown[:number] = self._signatures
            self._signatures = grown
        self._signatures[number] = values
        self._keys.append(key)
        table = self._table
        for band in bands:
            bucket = table.setdefault(band, number)
            if isinstance(bucket, list):
                bucket.append(number)
            elif bucket != number:
                table[band] = [bucket, number]
