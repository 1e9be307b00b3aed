"""Progress of a long pass (udatasets, tokenize) that a person can follow: done / total, percent, rate, ETA.

On a terminal, tqdm's bar. Otherwise (a Snakemake job writes stderr to its log file) one log line every
LOG_INTERVAL seconds, and one at the start and the end, with no carriage return, so that `tail -f` on the log
reads like this:

    udatasets python_docs: 1.20MB/4.86MB (25%), 310kB/s, ETA 0:00:12, 12,000 records

A pass whose item count is known upfront counts items against it; otherwise it counts the bytes of its input
files read so far against their size on disk (compressed or not: a compressed JSON Lines file's records are
unknown until it is read through), with the items as a count beside.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from llmrunner.jsonl import bytes_read

log = logging.getLogger(__name__)
T = TypeVar("T")

LOG_INTERVAL = 10.0  # seconds between two log lines: a log file gets a line to read, not one per batch
TTY_INTERVAL = 0.5  # seconds between two redraws of a terminal's bar


def stored_size(path: Path) -> int:
    """Bytes of a file as stored; 0 when it cannot be found (its reader says why, in its own words)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


class ReadPosition:
    """How far a pass that reads `paths` in order, each to its end, has come, in bytes as stored: counted by the
    files that llmrunner.jsonl.open_binary opens, or, for a file whose `rows` are known (parquet, read another
    way), its size times the share of its rows passed."""

    def __init__(self, paths: list[Path], rows: list[int | None] | None = None) -> None:
        self.sizes = [stored_size(p) for p in paths]
        self.rows = rows or [None] * len(paths)
        self.total = sum(self.sizes)
        self._start = bytes_read()
        self._file: int | None = None
        self._row = self._done = self._counted = 0
        self._read: int | None = None

    def at(self, index: int, row: int, read: int | None = None) -> None:
        """Note that the pass is at row (or line) `row` of the file `paths[index]`; `read`: bytes_read() as a
        process forked after this object counts it, where that process reads (a worker), not this one."""
        self._read = read
        if index != self._file:
            before = range(index)
            self._file, self._done = index, sum(self.sizes[i] for i in before)
            # what the counter saw of the files before: those without rows, read through
            self._counted = sum(self.sizes[i] for i in before if not self.rows[i])
        self._row = row

    def position(self) -> int:
        """Bytes read so far, never past the end of the file the pass is in (nor past the total)."""
        read = (bytes_read() if self._read is None else self._read) - self._start
        if self._file is None:
            return min(read, self.total)
        size, rows = self.sizes[self._file], self.rows[self._file]
        if rows:
            return self._done + size * min(self._row, rows) // rows
        return self._done + min(max(read - self._counted, 0), size)


def format_line(fields: dict) -> str:
    """One progress line from LogLines' fields (the keys of tqdm's `format_dict` of the same name):
    `desc: n/total unit (pct%), rate, ETA h:mm:ss, postfix`."""
    n, total, unit, elapsed = fields["n"], fields["total"], fields["unit"], fields["elapsed"]
    rate = fields["rate"] or (n / elapsed if elapsed else None)
    if fields["unit_scale"]:  # bytes
        done = f"{_size(n, unit)}/{_size(total, unit)}" if total else _size(n, unit)
        speed = f"{_size(rate, unit)}/s" if rate else f"? {unit}/s"
    else:
        done = f"{n:,}/{total:,} {unit}" if total else f"{n:,} {unit}"
        speed = f"{rate:,.0f} {unit}/s" if rate else f"? {unit}/s"
    parts = [f"{fields['prefix']}: {done}" + (f" ({100 * n / total:.0f}%)" if total else ""), speed]
    if total:
        parts.append(f"ETA {timedelta(seconds=round(max(total - n, 0) / rate))}" if rate else "ETA ?")
    if fields["postfix"]:
        parts.append(fields["postfix"])
    return ", ".join(parts)


def _size(number: float, unit: str) -> str:
    """`4.82MB`, `310kB`, `12.3GB` (three significant digits, decimal prefixes); `0B`."""
    for prefix in ("", "k", "M", "G", "T", "P"):
        if abs(number) < 999.5 or prefix == "P":
            break
        number /= 1000
    digits = 2 if abs(number) < 9.995 else 1 if abs(number) < 99.95 else 0
    return f"{number:.{digits}f}{prefix}{unit}" if number else f"0{unit}"


class LogLines:
    """Progress for a log file (a job's stderr): a `format_line` line at the start, then at most one every
    `interval` seconds, and one at the end. Not a tqdm bar: importing tqdm costs a job ~35 ms of its start-up
    (it looks up its own version through importlib.metadata), and there is no bar to draw."""

    def __init__(self, desc: str, total: int | None, unit: str, unit_scale: bool, interval: float) -> None:
        self.fields = {"prefix": desc, "n": 0, "total": total, "unit": unit, "unit_scale": unit_scale,
                       "elapsed": 0.0, "rate": None, "postfix": ""}
        self.interval = interval
        self.start = self.last = time.monotonic()
        log.info(format_line(self.fields))

    @property
    def n(self) -> int:
        return self.fields["n"]

    def update(self, count: int) -> None:
        self.fields["n"] += count
        if time.monotonic() - self.last >= self.interval:
            self._log()

    def set_postfix_str(self, postfix: str, refresh: bool = False) -> None:
        self.fields["postfix"] = postfix

    def close(self) -> None:
        self._log()

    def _log(self) -> None:
        self.last = time.monotonic()
        elapsed = self.last - self.start
        self.fields.update(elapsed=elapsed, rate=self.fields["n"] / elapsed if elapsed else None)
        log.info(format_line(self.fields))


class Progress:
    """Progress of one pass over `paths` that handles `unit` (records, documents): against `total` items when
    known, else against the bytes of `paths` (ReadPosition, with the `rows` of each file when known) with the
    items beside. A context manager; its last line says where the pass stopped."""

    def __init__(self, desc: str, unit: str, paths: list[Path], total: int | None = None,
                 rows: list[int | None] | None = None, interval: float | None = None) -> None:
        self.unit, self.items = unit, 0
        self.read = ReadPosition(paths, rows) if total is None else None
        counts = dict(total=total, unit=unit, unit_scale=False) if self.read is None else \
            dict(total=self.read.total or None, unit="B", unit_scale=True)
        if not sys.stderr.isatty():
            self.bar = LogLines(desc, **counts, interval=LOG_INTERVAL if interval is None else interval)
            return
        from tqdm import tqdm

        # miniters=1: a redraw when the interval has passed, whatever the rate (tqdm's default waits for as many
        # items as came in the last interval, which a slow patch may take long to reach)
        self.bar = tqdm(desc=desc, **counts, miniters=1, mininterval=TTY_INTERVAL if interval is None else interval,
                        file=sys.stderr)

    def advance(self, items: int) -> None:
        """`items` more are done (and, counting bytes, the input read so far)."""
        self.items += items
        if self.read is None:
            self.bar.update(items)
            return
        self.bar.set_postfix_str(f"{self.items:,} {self.unit}", refresh=False)
        self.bar.update(self.read.position() - self.bar.n)

    def over(self, items: Iterable[T], step: int = 1024) -> Iterator[T]:
        """`items`, advancing by `step` at a time: a bar update per item would cost more than a cheap item."""
        done = 0
        for item in items:
            yield item
            done += 1
            if done == step:
                self.advance(done)
                done = 0
        self.advance(done)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None and self.read is not None:  # read through: count the part the counter did not see
            self.bar.update(self.read.total - self.bar.n)
        self.bar.close()
