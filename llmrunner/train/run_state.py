"""Resume or start fresh: `run_config.json` records what a checkpoint folder was trained from.

Snakemake never deletes the checkpoint folder (the rule's output is only complete.json), so the
training code decides: the same fingerprint as on disk -> resume from the latest checkpoint;
anything changed -> clear the folder and start from the --init checkpoint. The fingerprint is the
settings (minus those that change only speed), the init checkpoint's identity and the data files'
sizes and modification times.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from llmrunner.errors import StageError
from llmrunner.megatron import checkpoint
from llmrunner.megatron.model import MODEL_JSON

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"


def _file_identity(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def run_fingerprint(kind: str, settings: dict, init_dir: Path, data_files: list[Path]) -> dict:
    """What decides the trained weights, as plain JSON-able values."""
    init_iteration = checkpoint.require_latest_iteration(init_dir)
    init_folder = checkpoint.iteration_dir(init_dir, init_iteration)
    return {
        "kind": kind,
        "settings": settings,
        "init": {
            "iteration": init_iteration,
            "model": json.loads((init_dir / MODEL_JSON).read_text()),
            "files": {p.name: _file_identity(p) for p in sorted(init_folder.iterdir()) if p.is_file()},
        },
        # Names and identities, not absolute paths: moving the datapool does not restart training.
        "data": {f"{p.parent.name}/{p.name}": _file_identity(p) for p in data_files},
    }


def _differences(old: dict, new: dict, path: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _differences(a, b, f"{path}{key}.")
        elif a != b:
            diffs.append(f"{path}{key}: {a!r} -> {b!r}")
    return diffs


def decide_start(save_dir: Path, fingerprint: dict) -> tuple[int | None, list[str]]:
    """(iteration to resume from or None for a fresh start, why) — reads the folder, changes nothing."""
    config_path = save_dir / RUN_CONFIG
    if not save_dir.is_dir() or not any(save_dir.iterdir()):
        return None, ["empty checkpoint folder"]
    if not config_path.is_file():
        held = sorted(p.name for p in save_dir.iterdir())
        raise StageError(f"{save_dir} is not empty ({held}) but has no {RUN_CONFIG}, so training did not "
                         "write it; choose another --save folder or delete this one")
    try:
        previous = json.loads(config_path.read_text()).get("fingerprint", {})
    except json.JSONDecodeError:
        return None, [f"{RUN_CONFIG} is unreadable (an interrupted write)"]
    diffs = _differences(previous, fingerprint)
    if diffs:
        return None, diffs
    latest = checkpoint.latest_iteration(save_dir)
    if latest is None or latest not in checkpoint.list_iterations(save_dir):
        return None, ["same run, but no complete checkpoint yet"]
    return latest, []


def reset_folder(save_dir: Path, fingerprint: dict) -> None:
    """Clear save_dir and record the fingerprint of the run about to start (rank 0 only)."""
    if save_dir.exists():
        shutil.rmtree(save_dir)
    save_dir.mkdir(parents=True)
    (save_dir / RUN_CONFIG).write_text(json.dumps({"fingerprint": fingerprint}, indent=2) + "\n")
