"""Resume or start fresh: `run_config.json` records what a checkpoint folder was trained from.

Snakemake never deletes the checkpoint folder (the rule's output is only complete.json), so the
training code decides: the same fingerprint as on disk -> resume from the latest checkpoint;
anything changed -> clear the folder and start from the --init checkpoint. The fingerprint is the
settings (minus those that change only speed), the init checkpoint's shape, iteration and file
contents, and the data files' contents: inputs rewritten with the same bytes (a forced hf2mg or
tokenize, a copied datapool) resume.

Contents are sha256 hashes of every file, the .bin data included: an edit that keeps each
document's token count (a word for another) leaves the .idx as it was and changes only the .bin.
run_config.json keeps each hash with the file's size and modification time, and a file still at
those is not read again: a resume hashes nothing, and a rewritten file is hashed once (at ~1.4 GB/s
on one core, far less than tokenizing or converting it took).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from llmrunner.errors import StageError
from llmrunner.megatron import checkpoint
from llmrunner.megatron.model import MODEL_JSON
from llmrunner.train.data import data_files

log = logging.getLogger("llmrunner.train")

RUN_CONFIG = "run_config.json"
DCP_INDEX = ".metadata"  # torch.distributed.checkpoint's index of an iteration folder
_LOG_HASHING_FROM = 1 << 30  # name each file this large while hashing it: the user sees why starting takes long


def _sha256(path: Path) -> str:
    if path.name == DCP_INDEX:
        return _dcp_index_sha256(path)
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _dcp_index_sha256(path: Path) -> str:
    """The checkpoint index without what differs on every save of the same tensors: its StorageMeta (a random
    save id and the folder's absolute path) and the order of its tables (the writer processes report in the
    order they finish)."""
    from torch.distributed.checkpoint import FileSystemReader

    index = FileSystemReader(str(path.parent)).read_metadata()
    lines = [repr(getattr(index, "version", None)), repr(index.planner_data),
             *sorted(map(repr, index.state_dict_metadata.items())), *sorted(map(repr, index.storage_data.items()))]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


class ContentHashes:
    """sha256 per input file, reusing a recorded hash while the file's size and mtime are unchanged."""

    def __init__(self, recorded: dict[str, list]) -> None:
        self.recorded = recorded
        self.current: dict[str, list] = {}  # name -> [size, mtime_ns, sha256], for run_config.json
        self.hashed_bytes = 0

    def sha256(self, name: str, path: Path) -> str:
        stat = path.stat()  # before reading: a write during hashing leaves a stale mtime, hashed again next time
        known = self.recorded.get(name)
        if known and known[:2] == [stat.st_size, stat.st_mtime_ns]:
            digest = known[2]
        else:
            if stat.st_size >= _LOG_HASHING_FROM:
                log.info("hashing %s (%.1f GB; new or rewritten since the last run)", path, stat.st_size / 1e9)
            digest = _sha256(path)
            self.hashed_bytes += stat.st_size
        self.current[name] = [stat.st_size, stat.st_mtime_ns, digest]
        return digest


def run_fingerprint(kind: str, settings: dict, init_dir: Path, data: list[Path], hashes: ContentHashes) -> dict:
    """What decides the trained weights, as plain JSON-able values."""
    init_iteration = checkpoint.require_latest_iteration(init_dir)
    init_folder = checkpoint.iteration_dir(init_dir, init_iteration)
    return {
        "kind": kind,
        "settings": settings,
        "init": {
            "iteration": init_iteration,
            "model": json.loads((init_dir / MODEL_JSON).read_text()),
            "files": {p.name: hashes.sha256(f"init/{p.name}", p)
                      for p in sorted(init_folder.iterdir()) if p.is_file()},
        },
        # Names and contents, not absolute paths: moving the datapool does not restart training.
        "data": {key: hashes.sha256(f"data/{key}", p) for p in data for key in [f"{p.parent.name}/{p.name}"]},
    }


def _is_sha256(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _differences(old: dict, new: dict, path: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _differences(a, b, f"{path}{key}.")
        elif _is_sha256(a) and _is_sha256(b) and a != b:
            diffs.append(f"{path}{key}: content changed")
        elif a != b:
            diffs.append(f"{path}{key}: {a!r} -> {b!r}")
    return diffs


def _read_run_config(save_dir: Path) -> dict:
    return json.loads((save_dir / RUN_CONFIG).read_text())


def decide_start(save_dir: Path, fingerprint: dict) -> tuple[int | None, list[str]]:
    """(iteration to resume from or None for a fresh start, why the folder must be cleared first; empty when it
    is ready as it is) — reads the folder, changes nothing."""
    config_path = save_dir / RUN_CONFIG
    if not save_dir.is_dir() or not any(save_dir.iterdir()):
        return None, ["empty checkpoint folder"]
    if not config_path.is_file():
        held = sorted(p.name for p in save_dir.iterdir())
        raise StageError(f"{save_dir} is not empty ({held}) but has no {RUN_CONFIG}, so training did not "
                         "write it; choose another --save folder or delete this one")
    try:
        previous = _read_run_config(save_dir).get("fingerprint", {})
    except json.JSONDecodeError:
        return None, [f"{RUN_CONFIG} is unreadable (an interrupted write)"]
    diffs = _differences(previous, fingerprint)
    if diffs:
        return None, diffs
    latest = checkpoint.latest_iteration(save_dir)
    if latest is None or latest not in checkpoint.list_iterations(save_dir):
        # Only the record of this very run (written by the launching command before torchrun): ready as it is.
        ready = [p.name for p in save_dir.iterdir()] == [RUN_CONFIG]
        return None, [] if ready else ["same run, but no complete checkpoint yet"]
    return latest, []


def _write_run_config(save_dir: Path, fingerprint: dict, hashes: dict[str, list]) -> None:
    tmp = save_dir / f"{RUN_CONFIG}.tmp"
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "hashes": hashes}, indent=2) + "\n")
    os.replace(tmp, save_dir / RUN_CONFIG)  # never half a file: an unreadable one would restart the run


def reset_folder(save_dir: Path, fingerprint: dict, hashes: dict[str, list]) -> None:
    """Clear save_dir and record the fingerprint of the run about to start."""
    if save_dir.exists():
        shutil.rmtree(save_dir)
    save_dir.mkdir(parents=True)
    _write_run_config(save_dir, fingerprint, hashes)


def prepare(kind: str, init_dir: Path, prefixes: list[str], save_dir: Path, settings: dict) -> int | None:
    """Decide between resume and fresh start and ready the folder for it (cleared, or its hashes brought up
    to date). One process runs this while the others wait. Returns the iteration to resume from (None: fresh)."""
    if save_dir.resolve() == init_dir.resolve():
        raise StageError(f"--save {save_dir} is the --init checkpoint; training writes a new folder")
    try:
        recorded = _read_run_config(save_dir).get("hashes", {})
    except (OSError, ValueError):  # none yet, or unreadable: decide_start says which
        recorded = {}
    hashes = ContentHashes(recorded)
    fingerprint = run_fingerprint(kind, settings, init_dir, data_files(prefixes, kind), hashes)
    if hashes.hashed_bytes:
        log.info("hashed %.1f MB of inputs (new or rewritten since the last run)", hashes.hashed_bytes / 1e6)
    resume, why = decide_start(save_dir, fingerprint)
    if resume is not None:
        log.info("resuming %s from iteration %d (same settings, init checkpoint and data)", save_dir, resume)
        if hashes.current != recorded:
            _write_run_config(save_dir, fingerprint, hashes.current)
    elif why:
        log.info("fresh start in %s: %s", save_dir, "; ".join(why[:5]) + (" ..." if len(why) > 5 else ""))
        reset_folder(save_dir, fingerprint, hashes.current)
    else:
        log.info("starting in %s (readied for these inputs and settings; no checkpoint yet)", save_dir)
    return resume
