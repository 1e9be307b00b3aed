"""SLURM tests: a real two-node SLURM on localhost for the whole session (tests/slurm/cluster.py).

Skipped, with the reason, only where the SLURM/munge programs are missing and this is not CI;
under CI (CI=true) a missing SLURM is a failure. Every daemon is stopped at the end of the session,
whatever happened."""
from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.slurm.cluster import ClusterError, LocalSlurm, alive, missing_binaries


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """munged, slurmctld and two slurmd on this host (nodes `cluster.nodes`); partitions `cpu` (default) and `gpu`,
    both over both nodes; 2 fake GPUs per node."""
    missing = missing_binaries()
    if missing:
        message = (f"SLURM is not installed (missing: {', '.join(missing)}); "
                   "Debian: apt-get install slurm-wlm munge")
        if in_ci():
            pytest.fail(f"{message} -- CI must run the SLURM tests", pytrace=False)
        pytest.skip(message)
    # munged needs every folder above its socket searchable: not under pytest's 0700 tmp folder
    cluster = LocalSlurm(Path(tempfile.mkdtemp(prefix="llmrunner-slurm-")))
    try:
        cluster.up()
    except ClusterError as err:
        if cluster.log_dir.is_dir():
            shutil.copytree(cluster.log_dir, tmp_path_factory.mktemp("slurm-daemon-logs"), dirs_exist_ok=True)
        shutil.rmtree(cluster.base, ignore_errors=True)
        pytest.fail(f"could not bring up the local SLURM: {err}", pytrace=False)
    # A CI job being cancelled sends SIGTERM: turn it into an interrupt, so pytest still tears down.
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield cluster
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)
        recorded = cluster.daemons()
        if cluster.log_dir.is_dir():  # kept with pytest's other temporary folders, for a post-mortem
            shutil.copytree(cluster.log_dir, tmp_path_factory.mktemp("slurm-daemon-logs"), dirs_exist_ok=True)
        cluster.down()
        survivors = [f"{name} ({e['pid']})" for name, e in recorded.items() if alive(e["pid"])]
        assert not survivors, f"SLURM daemons still running after tear-down: {survivors}"
