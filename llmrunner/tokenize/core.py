"""tokenize: unified-schema JSON Lines -> Megatron indexed datasets (`<prefix>_text_document.{bin,idx}`).

CPT reproduces Megatron-LM `tools/preprocess_data.py --append-eod` with an HF tokenizer, document
for document: `ids = tokenizer(text)["input_ids"]`; the eos id is appended to a non-empty
document; `add_document(ids, [len(ids)])` (an empty document still gets an entry, with no
sequence); the .bin dtype is uint16 when `len(tokenizer)` < 65,500, else int32. One deliberate
difference: text that spells a special token (say "<|im_end|>" inside a document) stays literal
text, because the backend encodes with `encode_special_tokens=True`; Megatron would turn it into
the special token, letting data forge document and turn boundaries.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from llmrunner.errors import StageError
from llmrunner.jsonl import iter_records

log = logging.getLogger(__name__)

BATCH_DOCS = 512  # documents per encode_batch call: enough to keep every thread busy


def configure_threads(workers: int) -> None:
    """Size the Rust tokenizer's thread pool; must run before the first batch encode of the process."""
    os.environ["RAYON_NUM_THREADS"] = str(workers)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if workers > 1 else "false"


def load_tokenizer(path: str | Path):
    """An HF fast tokenizer from a local model folder (no hub)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise StageError(f"tokenizer folder {path} does not exist; it is the base model folder written by prepare")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise StageError(f"cannot load a tokenizer from {path} ({err}); it needs tokenizer.json or "
                         f"tokenizer_config.json as written by tokenizer.save_pretrained()") from err
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise StageError(f"the tokenizer in {path} is not a fast (Rust `tokenizers`) tokenizer; "
                         f"save one with a tokenizer.json")
    return tokenizer


def literal_backend(tokenizer):
    """The Rust tokenizer, set so that text spelling a special token is encoded as plain text."""
    backend = tokenizer.backend_tokenizer
    backend.encode_special_tokens = True
    return backend


def index_dtype(tokenizer) -> type[np.number]:
    """Megatron's choice: uint16 below a vocabulary of 65,500 entries, else int32."""
    return indexed_dataset().DType.optimal_dtype(len(tokenizer))


def indexed_dataset():
    """megatron.core's indexed_dataset module, imported quietly: importing megatron.core warns about
    absent GPU packages (Transformer Engine, Apex: normal on CPU) and its own deprecations, which is
    noise in a tokenize log."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets import indexed_dataset as module
    return module


def dataset_paths(out_prefix: Path, name: str) -> tuple[Path, Path]:
    """(`.bin`, `.idx`) of `<prefix>_<name>`, as Megatron names them (e.g. `<prefix>_text_document`)."""
    base = f"{out_prefix}_{name}"
    return Path(base + ".bin"), Path(base + ".idx")


def open_builder(out_prefix: Path, name: str, dtype: type[np.number]):
    bin_path, _ = dataset_paths(out_prefix, name)
    bin_path.parent.mkdir(parents=True, exist_ok=True)
    return indexed_dataset().IndexedDatasetBuilder(str(bin_path), dtype=dtype)


def finalize_builder(builder, out_prefix: Path, name: str) -> None:
    builder.finalize(str(dataset_paths(out_prefix, name)[1]))


def write_stats(out_prefix: Path, stats: dict) -> Path:
    path = Path(f"{out_prefix}.stats.json")
    path.write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return path


def iter_field(inputs: list[Path], key: str, kind: type) -> Iterator[tuple[str, object]]:
    """`(where, value)` for the value under `key` of every record of `inputs` (where = "file, line N");
    a missing or mistyped value is an error."""
    for path in inputs:
        for number, record in iter_records(path):
            value = record.get(key)
            if not isinstance(value, kind):
                raise StageError(f"{path}, line {number}: expected {key!r} to be a {kind.__name__}, got "
                                 f"{type(value).__name__ if key in record else 'no such key'}; the data must be "
                                 f"in the unified schema (enable the udatasets step to convert and clean it)")
            yield f"{path}, line {number}", value


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encoded_ahead(batches: Iterator[list[str]], encode) -> Iterator[list]:
    """The encodings of each batch, in order, while the next batch encodes in a thread: the Rust
    encoder releases the GIL, so parsing the next batch and writing this one overlap it, as the
    reference's main process overlaps its pool. At most three batches are held at a time."""
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for batch in batches:
            following = pool.submit(encode, batch, add_special_tokens=True)
            if pending is not None:
                yield pending.result()
            pending = following
        if pending is not None:
            yield pending.result()


def tokenize_cpt(inputs: list[Path], tokenizer_dir: Path, out_prefix: Path, append_eod: bool = True) -> dict:
    """Write `<out_prefix>_text_document.{bin,idx}` and `<out_prefix>.stats.json`; return the stats."""
    tokenizer = load_tokenizer(tokenizer_dir)
    eod = tokenizer.eos_token_id
    if append_eod and eod is None:
        raise StageError(f"the tokenizer in {tokenizer_dir} has no eos_token, which CPT appends to every "
                         f"document; set eos_token in its tokenizer_config.json or set append_eod: false")
    backend = literal_backend(tokenizer)
    # encode_batch_fast skips the offsets; add_special_tokens=True is what tokenizer(text) does.
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    dtype = index_dtype(tokenizer)
    builder = open_builder(out_prefix, "text_document", dtype)
    documents = tokens = empty = 0
    texts = (text for _, text in iter_field(inputs, "text", str))
    with tqdm(desc="tokenize cpt", unit="doc", mininterval=5) as progress:
        for encodings in encoded_ahead(batched(texts, BATCH_DOCS), encode):
            for encoding in encodings:
                ids = encoding.ids
                if ids and append_eod:
                    ids.append(eod)
                builder.add_document(ids, [len(ids)] if ids else [])
                documents += 1
                tokens += len(ids)
                empty += not ids
            progress.update(len(encodings))
    finalize_builder(builder, out_prefix, "text_document")
    stats = {"documents": documents, "tokens": tokens, "empty": empty, "append_eod": append_eod,
             "eod_id": eod, "vocab_size": len(tokenizer), "dtype": np.dtype(dtype).name,
             "inputs": [str(p) for p in inputs]}
    stats_path = write_stats(out_prefix, stats)
    log.info("%d documents, %d tokens (%d empty) -> %s_text_document.{bin,idx}; stats -> %s",
             documents, tokens, empty, out_prefix, stats_path)
    return stats
