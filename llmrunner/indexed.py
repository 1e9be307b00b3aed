"""Megatron's indexed dataset (`<prefix>.bin` + `<prefix>.idx`): write one, read its index, merge several.

The bytes are those of megatron-core's `IndexedDatasetBuilder` (tests compare them byte for byte),
written with numpy alone, so a tokenize job does not pay megatron-core's multi-second import.

- `.bin`: every sequence's token ids, back to back, in the dataset's dtype.
- `.idx`: the header `MMIDIDX\\0\\0`, version 1 (`<Q`), the dtype code (`<B`), the sequence count
  and document count (`<Q` each), then the sequence lengths (int32), the sequences' byte offsets in
  the .bin (int64), and the document indices (int64: 0, then the sequence count after each document).

A document here holds one sequence (its ids), or none when it is empty: what preprocess_data.py
writes without sentence splitting. Merging prefixes appends them in order (megatron-core's
`add_index`), so writing a corpus in parts and merging them gives the bytes of writing it at once.
"""
from __future__ import annotations

import shutil
import struct
from array import array
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

import numpy as np

from llmrunner.errors import StageError

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
# megatron.core.datasets.indexed_dataset.DType: the code stored in the .idx for each dtype.
DTYPE_CODES = {np.dtype(t): code for t, code in (
    (np.uint8, 1), (np.int8, 2), (np.int16, 3), (np.int32, 4), (np.int64, 5), (np.float64, 6), (np.float32, 7),
    (np.uint16, 8))}
UINT16_LIMIT = 65_500  # megatron-core's DType.optimal_dtype: uint16 below this many token ids, else int32


def token_dtype(vocab_size: int) -> np.dtype:
    """The .bin dtype Megatron picks for a vocabulary: uint16 below 65,500 entries, else int32."""
    return np.dtype(np.uint16 if vocab_size < UINT16_LIMIT else np.int32)


def dataset_files(prefix: str | Path) -> tuple[Path, Path]:
    """(`<prefix>.bin`, `<prefix>.idx`)."""
    return Path(f"{prefix}.bin"), Path(f"{prefix}.idx")


class Index(NamedTuple):
    """What an .idx file holds (the byte offsets follow from the lengths and the dtype)."""

    dtype: np.dtype
    sequence_lengths: np.ndarray
    """int32, one per sequence."""
    document_indices: np.ndarray
    """int64: 0, then the number of sequences up to the end of each document."""


def read_index(prefix: str | Path) -> Index:
    """The index of `<prefix>.idx`; a file that is not a version-1 Megatron index is a StageError naming it."""
    _, idx_path = dataset_files(prefix)
    if not idx_path.is_file():
        raise StageError(f"index file {idx_path} does not exist")
    data = idx_path.read_bytes()
    fixed = len(INDEX_HEADER) + 8 + 1 + 8 + 8
    if len(data) < fixed or not data.startswith(INDEX_HEADER):
        raise StageError(f"{idx_path} is not a Megatron indexed-dataset index (no MMIDIDX header); re-create it")
    offset = len(INDEX_HEADER)
    version, code, sequences, documents = struct.unpack_from("<QBQQ", data, offset)
    if version != INDEX_VERSION or code not in DTYPE_CODES.values():
        raise StageError(f"{idx_path}: index version {version} / dtype code {code} is not one this writer "
                         f"knows (version 1, codes {sorted(DTYPE_CODES.values())}); re-create it")
    if len(data) != fixed + sequences * (4 + 8) + documents * 8:
        raise StageError(f"{idx_path} is truncated or damaged (its size does not match its counts); re-create it")
    dtype = next(t for t, c in DTYPE_CODES.items() if c == code)
    offset = fixed
    lengths = np.frombuffer(data, np.int32, sequences, offset)
    offset += sequences * (4 + 8)  # the byte offsets follow the lengths; they are recomputed on write
    document_indices = np.frombuffer(data, np.int64, documents, offset)
    return Index(dtype, lengths, document_indices)


class IndexedDatasetWriter:
    """Writes `<prefix>.bin` as documents arrive and `<prefix>.idx` on close. Memory: the index only
    (12 bytes a sequence, 8 a document), as megatron-core's builder keeps it."""

    def __init__(self, prefix: str | Path, dtype: np.dtype | type) -> None:
        self.bin_path, self.idx_path = dataset_files(prefix)
        self.dtype = np.dtype(dtype)
        if self.dtype not in DTYPE_CODES:
            raise ValueError(f"dtype {self.dtype} has no Megatron code")
        self.bin_path.parent.mkdir(parents=True, exist_ok=True)
        self.bin_file = open(self.bin_path, "wb")
        self.sequence_lengths = array("q")
        self.document_indices = array("q", [0])
        self.open_length = 0  # ids written of a document whose last piece has not come yet
        self.open_document = False

    def add_documents(self, documents: Sequence[Sequence[int]], ends: Sequence[bool] | None = None) -> None:
        """Append documents, each one sequence of ids (none when empty), with one write to the .bin. With
        `ends`, an entry whose flag is False is a piece of a document that the next entry continues (here
        or in the next call): the pieces form the document's one sequence, so it can be written as it is
        encoded."""
        lengths = [len(ids) for ids in documents]
        flat = np.fromiter(chain.from_iterable(documents), self.dtype, sum(lengths))
        self.bin_file.write(flat.tobytes())
        count = len(self.sequence_lengths)
        for length, end in zip(lengths, ends or [True] * len(lengths)):
            self.open_length += length
            self.open_document = not end
            if not end:
                continue
            if self.open_length:
                self.sequence_lengths.append(self.open_length)
                count += 1
            self.document_indices.append(count)
            self.open_length = 0

    def add_dataset(self, prefix: str | Path) -> None:
        """Append every document of another indexed dataset of the same dtype (megatron-core's add_index)."""
        index = read_index(prefix)
        if index.dtype != self.dtype:
            raise StageError(f"{prefix}.idx holds {index.dtype} ids, not {self.dtype}: it was written with "
                             f"another tokenizer; re-create it")
        offset = len(self.sequence_lengths)
        self.sequence_lengths.extend(index.sequence_lengths.tolist())
        self.document_indices.extend((index.document_indices[1:] + offset).tolist())
        with open(dataset_files(prefix)[0], "rb") as data:
            shutil.copyfileobj(data, self.bin_file, 1 << 24)

    def close(self) -> None:
        """Finish the .bin and write the .idx."""
        self.bin_file.close()
        if self.open_document:
            raise ValueError(f"{self.bin_path}: the last document's final piece was never added")
        lengths = np.frombuffer(self.sequence_lengths, np.int64)
        pointers = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1] * self.dtype.itemsize, out=pointers[1:])
        with open(self.idx_path, "wb") as idx:
            idx.write(INDEX_HEADER + struct.pack("<QBQQ", INDEX_VERSION, DTYPE_CODES[self.dtype], len(lengths),
                                                 len(self.document_indices)))
            idx.write(lengths.astype(np.int32).tobytes())
            idx.write(pointers.tobytes())
            idx.write(np.frombuffer(self.document_indices, np.int64).tobytes())

    def __enter__(self) -> IndexedDatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Write the index, or on an error remove the partial .bin: no half-written dataset looks complete."""
        if exc_type is None:
            self.close()
        else:
            self.bin_file.close()
            self.bin_path.unlink(missing_ok=True)


def merge_datasets(prefixes: Sequence[str | Path], out_prefix: str | Path, dtype: np.dtype | type) -> None:
    """Write `<out_prefix>.{bin,idx}` holding the documents of `prefixes`, in order."""
    with IndexedDatasetWriter(out_prefix, dtype) as writer:
        for prefix in prefixes:
            writer.add_dataset(prefix)
