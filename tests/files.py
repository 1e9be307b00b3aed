"""Test helpers for data files: JSONL written and read back, and a file the stage under test cannot read."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO


def write_jsonl(path: Path, records: list[object]) -> Path:
    """One line per record (a str is written as it is: a broken line on purpose), parent folders made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    """Every non-empty line of a JSONL file, parsed."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def run_unable_to_read(args: list[str], path: Path) -> subprocess.CompletedProcess:
    """Run `python ARGS` in the repository with `path` unreadable to it: mode 000, and as root (who reads
    anything) without the capabilities that let root ignore file permissions, so it is refused for real."""
    path.chmod(0)
    drop = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv (util-linux): cannot make a file unreadable")
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run([*drop, sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
