"""What every benchmark under bench/ shares: timing a contender's process, describing the machine,
saving the figures. The benchmarks run as scripts (`python bench/bench_<stage>.py`), so this module is
imported by its bare name."""
from __future__ import annotations

import compileall
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import socket
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def compile_package() -> None:
    """Byte-compile the package once, as pip does when it installs it: a checkout run under PYTHONDONTWRITEBYTECODE
    (set on some machines) would otherwise compile each changed module at every start, which no installed copy
    does (~5 ms a module)."""
    compileall.compile_dir(REPO / "llmrunner", quiet=1)


def measure(argv: list[str], env: dict[str, str], memory: bool = True) -> tuple[float, int]:
    """Run argv to completion from the repository root with `env` added to the environment; return (wall
    seconds, peak memory in bytes, sampled every 50 ms; 0 without `memory`: a sample takes ~5 ms of CPU a
    process, 10-20% of a core beside a run of several processes, which the wall time of a short run shows).

    Memory is PSS summed over the process and its children: a page shared by n processes counts 1/n in
    each, so a forked worker's copy-on-write pages (a pool's, a checkpoint writer's) count once, as the
    machine holds them, instead of once per process as RSS sums would."""
    import psutil  # here, not at the top: a reference's own process imports its benchmark, not psutil

    compile_package()
    env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parent, peak = psutil.Process(proc.pid), 0
    while memory and proc.poll() is None:
        try:
            peak = max(peak, sum(p.memory_full_info().pss for p in [parent, *parent.children(recursive=True)]))
        except psutil.Error:  # a process ended between listing and reading it
            pass
        time.sleep(0.05)
    errors = proc.communicate()[1]
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{argv} failed:\n{errors.decode()[-3000:]}")
    return wall, peak


def summary_rows(samples: dict[tuple[str, int, str], list[tuple[float, int]]], sizes: dict[str, dict],
                 extra=lambda key: {}) -> list[dict]:
    """One row per (input, workers, contender) from its runs' (wall s, peak memory bytes): the median wall time,
    the largest peak, and throughput per second for each count in sizes[input] ("docs", "tokens", "bytes" as
    MB); `extra(key)` adds fields of the contender's own."""
    rows = []
    for (size, workers, contender), runs in samples.items():
        wall = statistics.median(w for w, _ in runs)
        rates = {f"{name}_per_s": count / wall for name, count in sizes[size].items()
                 if name in ("docs", "tokens")}
        rows.append({"input": size, "workers": workers, "contender": contender, "wall_s": wall,
                     "walls_s": [w for w, _ in runs], "peak_pss_mib": max(p for _, p in runs) / 2**20, **rates,
                     "mb_per_s": sizes[size]["bytes"] / 1e6 / wall, **extra((size, workers, contender))})
    return rows


def environment(packages: tuple[str, ...], **extra_versions: str) -> dict:
    """The machine, the date and the versions of `packages` (plus versions found elsewhere, by name)."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    versions = {name: importlib.metadata.version(name) for name in packages}
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(), "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "cpu_model": model, "python": platform.python_version(), "versions": {**versions, **extra_versions}}


def machine_line(result: dict) -> str:
    """One line naming the machine, the date and the versions a result was measured with."""
    return (f"{result['date']}  {result['host']}  {result['cpu_model']}  cpus {result['cpus_usable']}"
            f"/{result['cpu_count']}  python {result['python']}  "
            + "  ".join(f"{k} {v}" for k, v in result["versions"].items()))


def save_result(result: dict, name: str) -> Path:
    """Write the figures to bench/results/<name>_<date>_<host>.json (not tracked by git); return the path."""
    out = REPO / "bench" / "results" / f"{name}_{result['date'][:10]}_{result['host']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\n-> {out}")
    return out
