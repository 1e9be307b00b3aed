"""tokenize: unified-schema JSON Lines -> Megatron indexed datasets (`<prefix>_text_document.{bin,idx}`).

CPT reproduces Megatron-LM `tools/preprocess_data.py --append-eod` with an HF tokenizer, document
for document: `ids = tokenizer(text)["input_ids"]`; the eos id is appended to a non-empty
document; `add_document(ids, [len(ids)])` (an empty document still gets an entry, with no
sequence); the .bin dtype is uint16 when `len(tokenizer)` < 65,500, else int32. One deliberate
difference: text that spells a special token (say "<|im_end|>" inside a document) stays literal
text, because the backend encodes with `encode_special_tokens=True`; Megatron would turn it into
the special token, letting data forge document and turn boundaries. A document longer than
BATCH_CHARS is encoded in pieces whose ids, concatenated, are the whole document's (pieces.py), so
memory stays bounded whatever a document's length. The ids come from tokie, a faster encoder, where it gives
the backend's own (fast.py), else from the backend.

Sharding: `Shard(k, n)` selects a contiguous block of input lines (the inputs' lines counted in
order, blank ones included): lines [k*L//n, (k+1)*L//n) of L. Shards written separately and merged
in order (`merge_shards`) give the bytes of one unsharded run.
"""
from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from llmrunner.errors import StageError, first_few
from llmrunner.indexed import IndexedDatasetWriter, merge_datasets, read_index, token_dtype
from llmrunner.jsonl import iter_lines, iter_records
from llmrunner.progress import Progress
from llmrunner.tokenize.fast import ExactEncoder
from llmrunner.tokenize.pieces import PieceEncoder
from llmrunner.tokenizer import load_text_tokenizer

log = logging.getLogger(__name__)

BATCH_DOCS = 1024  # documents per encode_batch call at most (many short documents)
BATCH_CHARS = 1 << 18  # text per call: enough for every thread; more only holds more encodings in memory.
# A longer document is encoded in pieces (pieces.py).


def dataset_prefix(out_prefix: Path, name: str) -> Path:
    """`<prefix>_<name>`, as Megatron names a dataset of a tokenized corpus (e.g. `<prefix>_text_document`)."""
    return Path(f"{out_prefix}_{name}")


def write_stats(out_prefix: Path, stats: dict) -> Path:
    path = Path(f"{out_prefix}.stats.json")
    path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return path


def read_stats(out_prefix: Path) -> dict:
    path = Path(f"{out_prefix}.stats.json")
    if not path.is_file():
        raise StageError(f"stats file {path} does not exist; the shard that writes it has not run")
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): a contiguous block of the inputs' lines."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise StageError(f"shard {self.index} of {self.count} does not exist; shards are 0..{self.count - 1}")

    def line_ranges(self, inputs: list[Path]) -> list[range]:
        """Per input file, the 1-based line numbers of this shard's lines."""
        if self.count == 1:
            return [range(1, sys.maxsize) for _ in inputs]
        lengths = [count_lines(path) for path in inputs]
        total = sum(lengths)
        first, end = total * self.index // self.count, total * (self.index + 1) // self.count
        ranges, start = [], 0  # start: lines before this file
        for length in lengths:
            ranges.append(range(max(first - start, 0) + 1, max(min(end - start, length), 0) + 1))
            start += length
        return ranges


def count_lines(path: Path) -> int:
    """Lines of a data file, as iter_lines numbers them (a damaged file is the same StageError)."""
    return sum(1 for _ in iter_lines(path))


def iter_field(inputs: list[Path], key: str, kind: type, ranges: list[range]) -> Iterator[tuple[str, object]]:
    """`(where, value)` for the value under `key` of every record in `ranges` (per input, its shard's line
    numbers: Shard.line_ranges; where = "file, line N"); other lines are not parsed. Blank lines are skipped;
    a bad line is an error."""
    for path, lines in zip(inputs, ranges):
        if not lines:
            continue
        for number, record in iter_records(path, lines):
            where = f"{path}, line {number}"
            value = record.get(key)
            if not isinstance(value, kind):
                raise StageError(f"{where}: expected {key!r} to be a {kind.__name__}, got "
                                 f"{type(value).__name__ if key in record else 'no such key'}; the data must "
                                 f"be in the unified schema (enable the udatasets step to convert and clean it)")
            yield where, value


def input_progress(inputs: list[Path], shard: Shard, ranges: list[range], desc: str, unit: str) -> Progress:
    """Progress of tokenizing the shard: against its documents when known without reading the data (the
    lines a sharded run counted to split them; the count in the stats udatasets wrote beside its output),
    else against the bytes of the inputs."""
    total = sum(map(len, ranges)) if shard.count > 1 else udatasets_kept(inputs)
    return Progress(desc, unit, inputs, total)


def udatasets_kept(inputs: list[Path]) -> int | None:
    """The records of a udatasets output (the input is one processed file), from its stats; None otherwise."""
    from llmrunner.udatasets.core import output_paths  # only its file names: not udatasets' imports up front

    if len(inputs) != 1 or not inputs[0].name.endswith(".jsonl"):
        return None
    try:
        stats = json.loads(output_paths(inputs[0])["stats"].read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no stats file: udatasets is off
        return None
    kept = stats.get("kept") if isinstance(stats, dict) else None
    return kept if isinstance(kept, int) else None


def batched(items: Iterator, size: int, max_chars: int | None = None, chars_of=len) -> Iterator[list]:
    """Lists of `size` items, or fewer once their characters (`chars_of(item)`) add up to `max_chars`."""
    batch, chars = [], 0
    for item in items:
        batch.append(item)
        if max_chars is not None:
            chars += chars_of(item)
        if len(batch) == size or (max_chars is not None and chars >= max_chars):
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def encoded_ahead(batches: Iterator[list], ids_of) -> Iterator[tuple[list, list[list[int]]]]:
    """(batch, the token ids of each of its items), in order, while the next batch encodes in a thread: the
    Rust encoder releases the GIL, so parsing the next batch and writing this one overlap it, as the
    reference's main process overlaps its pool. At most three batches are held at a time, as ids
    (the Encoding objects, several times larger, are dropped in the thread)."""
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for batch in batches:
            following = batch, pool.submit(ids_of, batch)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = following
        if pending is not None:
            yield pending[0], pending[1].result()


def tokenize_cpt(inputs: list[Path], tokenizer_dir: Path, out_prefix: Path, append_eod: bool = True,
                 shard: Shard = Shard()) -> dict:
    """Write `<out_prefix>_text_document.{bin,idx}` and `<out_prefix>.stats.json` for the shard's
    documents (all of them by default); return the stats."""
    tokenizer = load_text_tokenizer(tokenizer_dir)
    eod = tokenizer.eos_id
    if append_eod and eod is None:
        raise StageError(f"the tokenizer in {tokenizer_dir} has no eos_token, which CPT appends to every "
                         f"document; set eos_token in its tokenizer_config.json or set append_eod: false")
    encoder = PieceEncoder(tokenizer.backend, BATCH_CHARS, ExactEncoder(tokenizer.backend))
    dtype = token_dtype(tokenizer.vocab_size)
    documents = tokens = empty = 0
    open_tokens = 0  # the tokens so far of the document whose pieces are being written
    ranges = shard.line_ranges(inputs)
    pieces = encoder.pieces(text for _, text in iter_field(inputs, "text", str, ranges))
    with (IndexedDatasetWriter(dataset_prefix(out_prefix, "text_document"), dtype) as writer,
          input_progress(inputs, shard, ranges, f"tokenize cpt {out_prefix.name}", "documents") as progress):
        for batch, encoded in encoded_ahead(batched(pieces, BATCH_DOCS, BATCH_CHARS, lambda p: len(p.text)), encoder):
            ended = 0
            for piece, ids in zip(batch, encoded):
                open_tokens += len(ids)
                if piece.last:
                    if append_eod and open_tokens:
                        ids.append(eod)
                    empty += open_tokens == 0
                    ended += 1
                    open_tokens = 0
            writer.add_documents(encoded, [piece.last for piece in batch])
            documents += ended
            tokens += sum(map(len, encoded))
            progress.advance(ended)
    stats = {"documents": documents, "tokens": tokens, "empty": empty, "append_eod": append_eod,
             "eod_id": eod, "vocab_size": tokenizer.vocab_size, "dtype": dtype.name,
             "inputs": [str(p) for p in inputs]}
    stats_path = write_stats(out_prefix, stats)
    log.info("%d documents, %d tokens (%d empty) -> %s_text_document.{bin,idx}; stats -> %s",
             documents, tokens, empty, out_prefix, stats_path)
    if shard.count == 1:
        require_tokens(stats, out_prefix)
    return stats


def require_tokens(stats: dict, out_prefix: Path) -> None:
    """Stop when a whole CPT dataset has no token (a shard may have none): training would fail on its empty
    .bin much later ("cannot mmap an empty file"). Called after the outputs are written, for a look."""
    if stats["tokens"]:
        return
    found = (f"{stats['documents']} documents, all empty," if stats["documents"]
             else "no document (the files are empty or hold only blank lines)")
    raise StageError(f"dataset {out_prefix.name!r} has no token to train on: {found} in {first_few(stats['inputs'])}; "
                     f"fix the data, or remove the dataset from pipeline.yaml")


def merge_shards(shard_prefixes: list[Path], out_prefix: Path, names: tuple[str, ...], summed: tuple[str, ...]
                 ) -> dict:
    """Join shards (`tokenize_* --shard k`, in order) into `<out_prefix>_<name>.{bin,idx}` for each name
    and `<out_prefix>.stats.json`: the `summed` stats add up, per key for a mapping; the rest must agree."""
    if not shard_prefixes:
        raise StageError("merge needs at least one shard prefix")
    parts = [read_stats(prefix) for prefix in shard_prefixes]
    stats = dict(parts[0])
    for key, value in stats.items():
        if key in summed:
            if isinstance(value, dict):
                keys = sorted({k for part in parts for k in part[key]})
                stats[key] = {k: sum(part[key].get(k, 0) for part in parts) for k in keys}
            else:
                stats[key] = sum(part[key] for part in parts)
        elif any(part.get(key) != value for part in parts):
            raise StageError(f"shards {shard_prefixes[0]} and others disagree on {key!r}: they were written "
                             f"with different settings or tokenizers; rerun the shards")
    for name in names:
        prefixes = [dataset_prefix(prefix, name) for prefix in shard_prefixes]
        merge_datasets(prefixes, dataset_prefix(out_prefix, name), read_index(prefixes[0]).dtype)
    stats_path = write_stats(out_prefix, stats)
    log.info("merged %d shards -> %s_{%s}.{bin,idx}; stats -> %s", len(shard_prefixes), out_prefix,
             ",".join(names), stats_path)
    return stats


CPT_SUMMED = ("documents", "tokens", "empty")
"""The CPT stats that add up over shards."""
