"""One trainer per checkpoint folder: an OS lock on `<folder>.lock`, held for the whole run.

When Snakemake itself is killed, its training job runs on; `snakemake --unlock` and a rerun would start a
second trainer in the same folder (every step logged twice, two TensorBoard files). The kernel releases a
flock() lock when its holders exit, killed or not, so a crashed trainer never blocks the rerun.

The lock file lies beside the folder, not in it: a fresh start deletes the folder, and a lock on a deleted
file would let the next trainer lock a new one. It is no output of the rule and no input of the run. It
holds who took the lock (pid, host, start time, command), for the second trainer's message.

The command a user or Snakemake starts takes the lock exclusively: that is the check. When it replaces itself
by torchrun or srun (launch.py) it keeps the lock across the exec, turned into a shared one, and every
torchrun worker takes a shared lock too: torchrun runs each worker in a session of its own, and after a
`kill -9` of torchrun its workers train on (measured), so they must hold the folder themselves. A new
command's exclusive lock fails while any of them lives. Over several nodes the first node's command is the
one that checks.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shlex
import socket
from datetime import datetime
from pathlib import Path

from llmrunner.errors import StageError

log = logging.getLogger("llmrunner.train")

# flock() on a filesystem without locks (Lustre mounted without `flock`, NFS without a lock daemon)
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


def lock_path(save_dir: Path) -> Path:
    """`<folder>.lock` beside the checkpoint folder (resolved: one lock whatever path names the folder)."""
    folder = save_dir.resolve()
    return folder.with_name(folder.name + ".lock")


def hold(save_dir: Path, command: list[str], launching: bool = False) -> None:
    """Lock `save_dir` for this process's lifetime, or stop with a StageError naming the process that holds
    it. `launching`: this process execs torchrun / srun next; the lock, then shared, stays with that program
    and lets its workers in (`share`)."""
    fd = _lock(save_dir, fcntl.LOCK_EX)
    if fd is None:
        return
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": datetime.now().astimezone().isoformat(timespec="seconds"), "command": shlex.join(command)}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError:  # opened read-only (another user's lock file): the lock holds, only the record is missing
        pass
    if launching:
        # Not atomic (flock drops the exclusive lock first): a command starting in between wins, and this one
        # stops with its name, as if it had come second.
        _flock(fd, fcntl.LOCK_SH, save_dir)
        os.set_inheritable(fd, True)
    # The descriptor stays open on purpose: the lock lasts until this process (or what it execs) exits.


def share(save_dir: Path) -> None:
    """A torchrun worker's shared lock, beside its launcher's: the folder stays locked while the worker lives."""
    _lock(save_dir, fcntl.LOCK_SH, warn=False)  # the launcher has warned of a filesystem without locks


def _lock(save_dir: Path, mode: int, warn: bool = True) -> int | None:
    """An open descriptor of the lock file holding a `mode` lock; None on a filesystem without locks."""
    path = lock_path(save_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:
        try:  # flock needs no write access: another user's lock file still locks
            fd = os.open(path, os.O_RDONLY)
        except OSError as err:
            raise StageError(f"cannot open the training lock file {path} ({err.strerror}): make {path.parent} "
                             "writable by the user running the workflow") from None
    try:
        _flock(fd, mode, save_dir)
    except OSError as err:
        os.close(fd)
        if err.errno not in NO_LOCKS:
            raise
        if warn:
            log.warning("cannot lock %s (%s: the filesystem has no locks): nothing stops a second trainer in %s",
                        path, os.strerror(err.errno), save_dir)
        return None
    return fd


def _flock(fd: int, mode: int, save_dir: Path) -> None:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe_holder(fd)
        os.close(fd)
        raise StageError(f"training is already running in {save_dir}: {holder}; wait for it or kill it, then "
                         f"rerun (lock file {lock_path(save_dir)})") from None


def _describe_holder(fd: int) -> str:
    """The lock file's record as words; the holder may not have written it yet."""
    try:
        record = json.loads(os.pread(fd, 1 << 16, 0))
        pid, host = int(record["pid"]), record["host"]
        # the settings JSON after the command's paths would make the message a screen long
        command = record["command"].partition(" --settings ")[0][:300]
        words = f"pid {pid} on host {host} since {record['since']} (started by {command} ...)"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has just started (it has not written its pid yet)"
    if host == socket.gethostname() and not _alive(pid):
        words += (f"; pid {pid} has ended, but training processes it started hold the lock still "
                  "(`pgrep -af llmrunner.train` lists them)")
    return words


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
