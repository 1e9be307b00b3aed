"""Reference for tokenize cpt: Megatron-LM `tools/preprocess_data.py --append-eod` with an HF tokenizer.

Megatron-LM's tools/ are not on PyPI, so this re-states their logic on megatron-core's
IndexedDatasetBuilder, step for step (json_keys=["text"], no sentence splitting):
- each input line goes through `json.loads`; for each key the text is encoded with the HF
  tokenizer's `__call__` (`input_ids`: special-token text becomes special tokens);
- empty pieces are dropped; a non-empty document gets the eod id (the tokenizer's eos);
- `add_document(ids, sentence_lens)` for every line, so an empty document still gets an entry;
- the dtype is `DType.optimal_dtype(len(tokenizer))`: uint16 below 65,500, else int32;
- a `multiprocessing.Pool` of `workers` processes, whose initializer builds the tokenizer in each,
  encodes the lines (`pool.imap(encode, lines, 32)`), as preprocess_data.py's Encoder does (it
  uses a pool even for one worker); workers=0 encodes in this process, for quick tests.

Used by the byte-identity tests (import) and by bench/bench_tokenize.py (as a script):
    python tests/tokenize/reference_writer.py --input X.jsonl --tokenizer HF_DIR --out-prefix P --workers N
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import warnings
from pathlib import Path

_tokenizer = None  # per process, built by _init_worker (Megatron's Encoder.initializer)


def _init_worker(tokenizer_dir: str) -> None:
    global _tokenizer
    from transformers import AutoTokenizer

    _tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)


def encode_line(line: str, keys: tuple[str, ...] = ("text",), append_eod: bool = True
                ) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """preprocess_data.py's Encoder.encode: (ids per key, sentence lengths per key) of one JSON line."""
    data = json.loads(line)
    ids, lens = {}, {}
    for key in keys:
        text = data[key]
        sentences = text if isinstance(text, list) else [text]
        doc_ids: list[int] = []
        sentence_lens: list[int] = []
        for sentence in sentences:
            sentence_ids = _tokenizer(sentence)["input_ids"]
            if len(sentence_ids) > 0:
                doc_ids.extend(sentence_ids)
                sentence_lens.append(len(sentence_ids))
        if len(doc_ids) > 0 and append_eod:
            doc_ids.append(_tokenizer.eos_token_id)
            sentence_lens[-1] += 1
        ids[key], lens[key] = doc_ids, sentence_lens
    return ids, lens


def megatron_indexed_dataset():
    """megatron.core's indexed_dataset module, imported quietly: importing megatron.core warns about
    absent GPU packages (Transformer Engine, Apex: normal on CPU) and its own deprecations."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from megatron.core.datasets import indexed_dataset
    return indexed_dataset


def write_reference(input_path: Path, tokenizer_dir: Path, out_prefix: Path, workers: int = 0) -> None:
    """Write `<out_prefix>_text_document.{bin,idx}` as preprocess_data.py --append-eod would."""
    indexed_dataset = megatron_indexed_dataset()
    _init_worker(str(tokenizer_dir))  # the main process builds its own tokenizer too, for the dtype
    builder = indexed_dataset.IndexedDatasetBuilder(
        f"{out_prefix}_text_document.bin", dtype=indexed_dataset.DType.optimal_dtype(len(_tokenizer)))
    with open(input_path, encoding="utf-8") as lines:
        if workers > 0:
            with multiprocessing.Pool(workers, initializer=_init_worker, initargs=(str(tokenizer_dir),)) as pool:
                for ids, lens in pool.imap(encode_line, lines, 32):
                    builder.add_document(ids["text"], lens["text"])
        else:
            for line in lines:
                ids, lens = encode_line(line)
                builder.add_document(ids["text"], lens["text"])
    builder.finalize(f"{out_prefix}_text_document.idx")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="a .jsonl file (uncompressed, as Megatron reads)")
    parser.add_argument("--tokenizer", required=True, type=Path)
    parser.add_argument("--out-prefix", required=True, type=Path)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    write_reference(args.input, args.tokenizer, args.out_prefix, args.workers)
