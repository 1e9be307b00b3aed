"""A throwaway two-node SLURM on localhost: munged, slurmctld and a slurmd per node, fake GPUs, two partitions.

Used by the SLURM tests (tests/slurm/conftest.py) and by hand, as root, on a Debian machine with
`apt-get install slurm-wlm munge`:

    python -m tests.slurm.cluster up      # starts the daemons, prints the state folder; they keep running
    sinfo; squeue; .venv/bin/snakemake --profile profiles/slurm ...
    python -m tests.slurm.cluster down    # stops exactly the daemons `up` started, removes its files

What it sets up (SLURM 22.05 as Debian ships it, no systemd, no accounting database):
- its own munged with a fresh key and socket in the state folder (the system's munge is untouched);
- /etc/slurm/slurm.conf and gres.conf, marked as written here (an existing slurm.conf that is not
  ours is never overwritten: the cluster refuses to start). They must live at the default path:
  the plugin's job step strips SLURM_* variables, SLURM_CONF included, before its inner `srun`;
- two nodes on this host, each its own slurmd (own port, spool folder and log; `slurmd -N <node>`): the
  host's name and `node2`, both at NodeAddr 127.0.0.1. The second name does not resolve, as cluster node
  names often do not, which is why multi-node training meets at the first node's NodeAddr. Each node
  advertises `cpus` CPUs, `mem_mb` memory and `gpus` fake GPUs (gres entries pointing at /dev/null,
  /dev/zero, ...: a gres job gets CUDA_VISIBLE_DEVICES but no device). The advertised sizes may exceed
  the machine (SlurmdParameters=config_overrides), so a profile written for a real cluster can be
  submitted unchanged; nothing enforces the limits. (Debian's SLURM is built without
  --enable-multiple-slurmd: two slurmd on one host then need distinct NodeHostname values.);
- partitions `cpu` (default) and `gpu`;
- no accounting (sacct fails): MinJobAge=3600 keeps finished jobs visible to squeue/scontrol,
  which is what `slurm-status-command: squeue` needs, and what the tests read submissions from;
- DefMemPerCPU so a job without --mem does not take the whole node.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SLURM_ETC = Path("/etc/slurm")
MARKER = "# Written by LLMRunner tests/slurm/cluster.py; removed by its `down`."
DAEMONS = ("munged", "slurmctld", "slurmd")
SECOND_NODE = "node2"
CLIENTS = ("munge", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
PARTITIONS = ("cpu", "gpu")
FAKE_GPU_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random")
DEFAULT_BASE = Path(tempfile.gettempdir()) / "llmrunner-slurm"


class ClusterError(RuntimeError):
    """The local cluster could not be brought up (the message says why and where the logs are)."""


def find_binary(name: str) -> str | None:
    """A SLURM/munge program on PATH or in the sbin folders (root's PATH may lack /usr/sbin)."""
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/local/sbin", "/sbin") if (p := Path(d) / name).is_file()
         and os.access(p, os.X_OK)), None)


def missing_binaries() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS) if find_binary(name) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


class LocalSlurm:
    """Two nodes, two partitions, fake GPUs. `up()` then `down()` (also a context manager)."""

    def __init__(self, base: Path = DEFAULT_BASE, *, cpus: int = 16, mem_mb: int = 262144, gpus: int = 2):
        self.base = Path(base).resolve()
        self.cpus, self.mem_mb, self.gpus = cpus, mem_mb, min(gpus, len(FAKE_GPU_FILES))
        self.node = socket.gethostname().split(".")[0]
        self.nodes = [self.node, SECOND_NODE if self.node != SECOND_NODE else "node3"]
        self._procs: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------------ paths
    @property
    def pid_file(self) -> Path:
        return self.base / "pids.json"

    @property
    def log_dir(self) -> Path:
        return self.base / "log"

    @property
    def munge_socket(self) -> Path:
        return self.base / "munge" / "munge.socket"

    # ------------------------------------------------------------------ public
    def up(self, timeout: float = 60) -> LocalSlurm:
        """Start munged, slurmctld and slurmd and wait until the node takes jobs."""
        if os.geteuid() != 0:
            raise ClusterError("the local SLURM cluster needs root (it runs slurmd and writes /etc/slurm/)")
        missing = missing_binaries()
        if missing:
            raise ClusterError(f"SLURM/munge programs not found: {', '.join(missing)} "
                               "(Debian: apt-get install slurm-wlm munge)")
        self._reap_stale()
        self._check_etc_is_ours()
        for sub in ("state", "log", "munge", *(f"spool/{node}" for node in self.nodes)):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        # munged wants every folder above its socket searchable by all
        for folder in (self.base, self.base / "munge"):
            folder.chmod(0o755)
        try:
            self._start_munge(timeout)
            self._write_config()
            self._start("slurmctld", [find_binary("slurmctld"), "-D", "-i"])
            self._wait("slurmctld answering", timeout, lambda: "UP" in self._run("scontrol", "ping", check=False))
            for node in self.nodes:
                self._start(f"slurmd.{node}", [find_binary("slurmd"), "-D", "-N", node])
            self._wait_nodes_idle(timeout)
        except BaseException:
            self.down(remove_files=False)
            raise
        return self

    def down(self, remove_files: bool = True) -> None:
        """Cancel every job, stop the daemons this object (or `up` in another process) started, by
        their recorded ids, and remove the config it wrote. Safe to call twice or after a failed up."""
        recorded = self.daemons()
        if recorded.get("slurmctld") and alive(recorded["slurmctld"]["pid"]):
            self._cancel_all_jobs()
        for name, entry in reversed(recorded.items()):  # the slurmds, slurmctld, munged
            self._stop(name, entry["pid"], entry["argv"])
        self.pid_file.unlink(missing_ok=True)
        self._procs.clear()
        for conf in (SLURM_ETC / "slurm.conf", SLURM_ETC / "gres.conf"):
            if self._is_ours(conf):
                conf.unlink()
        if remove_files:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> LocalSlurm:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def daemon_logs(self, lines: int = 25) -> str:
        """The end of each daemon's log, for a failure message."""
        return "\n".join(f"--- {p}\n{_tail(p, lines)}" for p in sorted(self.log_dir.glob("*.*")))

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (MinJobAge keeps finished ones for an hour), as
        `scontrol show job` fields: JobId, JobName, Comment, Partition, TresPerNode (the gres request),
        TRES, NumCPUs, MinMemoryNode, TimeLimit, JobState, ExitCode, StartTime, EndTime, StdOut, ..."""
        out = self._run("scontrol", "show", "job", "--oneliner")
        return [dict(re.findall(r"(\w[\w/:]*)=(\S*)", line)) for line in out.splitlines()
                if line.startswith("JobId=")]

    # ------------------------------------------------------------------ internals
    def _run(self, prog: str, *args: str, check: bool = True, timeout: float = 30) -> str:
        proc = subprocess.run([find_binary(prog), *args], capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"{prog} {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def _start(self, name: str, argv: list[str]) -> None:
        with open(self.log_dir / f"{name}.out", "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.base)
        self._procs[name] = proc
        recorded = self.daemons()
        recorded[name] = {"pid": proc.pid, "argv": argv}
        self.pid_file.write_text(json.dumps(recorded, indent=1))

    def _stop(self, name: str, pid: int, argv: list[str]) -> None:
        if not alive(pid) or _cmdline(pid) != argv:  # gone, or the id now belongs to someone else
            self._reap(name)
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and alive(pid):
            self._reap(name)
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        self._reap(name)

    def _reap(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc is not None:
            proc.poll()

    def daemons(self) -> dict:
        """The daemons started for this state folder: name -> {pid, argv} (from its pids.json)."""
        try:
            return json.loads(self.pid_file.read_text())
        except (OSError, ValueError):
            return {}

    def _reap_stale(self) -> None:
        """Daemons left by an earlier session that died without `down` (its base is in our config)."""
        conf = SLURM_ETC / "slurm.conf"
        if self._is_ours(conf):
            match = re.search(r"^# base: (.+)$", conf.read_text(), re.M)
            if match:
                LocalSlurm(Path(match.group(1))).down(remove_files=match.group(1) != str(self.base))

    @staticmethod
    def _is_ours(path: Path) -> bool:
        try:
            return path.read_text().startswith(MARKER)
        except OSError:
            return False

    def _check_etc_is_ours(self) -> None:
        for conf in (SLURM_ETC / "slurm.conf", SLURM_ETC / "gres.conf"):
            if conf.exists() and not self._is_ours(conf):
                raise ClusterError(f"{conf} exists and was not written by {__name__}: this machine has its own "
                                   "SLURM configuration; not overwriting it (run the SLURM tests on a CI-like machine)")

    def _start_munge(self, timeout: float) -> None:
        key = self.base / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge = self.base / "munge"
        self._start("munged", [find_binary("munged"), "--foreground", f"--key-file={key}",
                               f"--socket={self.munge_socket}", f"--pid-file={munge / 'munged.pid'}",
                               f"--log-file={self.log_dir / 'munged.log'}", f"--seed-file={munge / 'munge.seed'}"])

        def munge_works() -> bool:
            return subprocess.run([find_binary("munge"), "-n", "-S", str(self.munge_socket)],
                                  capture_output=True).returncode == 0
        self._wait("munged answering", timeout, munge_works)

    def _write_config(self) -> None:
        b = self.base
        gres_types = "GresTypes=gpu" if self.gpus else ""
        node_gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        nodes = "\n".join(f"NodeName={node} NodeHostname={node} NodeAddr=127.0.0.1 Port={_free_port()} "
                          f"CPUs={self.cpus} RealMemory={self.mem_mb}{node_gres} State=UNKNOWN" for node in self.nodes)
        conf = f"""{MARKER}
# base: {b}
ClusterName=llmrunnertest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
# No cgroups, no accounting: the plainest setup slurmd 22.05 accepts in a container.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
KillWait=5
# keep finished jobs visible to squeue/scontrol for an hour (no sacct without slurmdbd)
MinJobAge=3600
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool/%n
SlurmctldPidFile={b}/state/slurmctld.pid
SlurmdPidFile={b}/spool/slurmd.%n.pid
SlurmctldLogFile={b}/log/slurmctld.log
SlurmdLogFile={b}/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
{gres_types}
{nodes}
PartitionName=cpu Nodes={",".join(self.nodes)} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={",".join(self.nodes)} Default=NO MaxTime=INFINITE State=UP
"""
        (SLURM_ETC / "slurm.conf").write_text(conf)
        # a gres/gpu line without File= is dropped by slurmd 22.05 (the node then goes INVAL)
        gres = "".join(f"NodeName={node} Name=gpu File={FAKE_GPU_FILES[i]}\n"
                       for node in self.nodes for i in range(self.gpus))
        (SLURM_ETC / "gres.conf").write_text(f"{MARKER}\nAutoDetect=off\n{gres}")

    def _wait(self, what: str, timeout: float, ready) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ClusterError(f"{name} exited ({proc.returncode}) while waiting for {what}; "
                                       f"{self.log_dir / (name + '.out')}:\n{_tail(self.log_dir / (name + '.out'))}\n"
                                       f"{self.daemon_logs()}")
            try:
                if ready():
                    return
            except (subprocess.SubprocessError, ClusterError):
                pass
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.daemon_logs()}")

    def _wait_nodes_idle(self, timeout: float) -> None:
        def idle() -> bool:
            out = self._run("sinfo", "-h", "-N", "-o", "%N %t", check=False)  # a node once per partition
            states = dict(line.split() for line in out.splitlines())
            return all(states.get(node, "").rstrip("*~#") in ("idle", "mix", "alloc") for node in self.nodes)

        self._wait(f"nodes {', '.join(self.nodes)} idle", timeout, idle)

    def _cancel_all_jobs(self) -> None:
        try:
            ids = self._run("squeue", "-h", "-o", "%i", "-t", "PENDING,RUNNING,SUSPENDED,COMPLETING",
                            check=False, timeout=15).split()
            if ids:
                self._run("scancel", *ids, check=False, timeout=15)
            deadline = time.monotonic() + 20  # KillWait=5
            while ids and time.monotonic() < deadline:
                if not self._run("squeue", "-h", "-o", "%i", "-t", "RUNNING,COMPLETING", check=False,
                                 timeout=15).split():
                    break
                time.sleep(0.5)
        except (subprocess.SubprocessError, OSError):
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.slurm.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE, help=f"state folder (default {DEFAULT_BASE})")
    parser.add_argument("--cpus", type=int, default=16)
    parser.add_argument("--mem-mb", type=int, default=262144)
    parser.add_argument("--gpus", type=int, default=2)
    args = parser.parse_args(argv)
    cluster = LocalSlurm(args.base, cpus=args.cpus, mem_mb=args.mem_mb, gpus=args.gpus)
    if args.action == "up":
        try:
            cluster.up()
        except ClusterError as err:
            print(f"cluster: {err}", file=sys.stderr)
            return 1
        print(f"SLURM up: nodes {', '.join(cluster.nodes)}, partitions {', '.join(PARTITIONS)}, "
              f"state and logs in {cluster.base}")
    elif args.action == "down":
        cluster.down()
        print("SLURM down")
    else:
        print("\n".join(f"{name}: pid {e['pid']}, {'running' if alive(e['pid']) else 'gone'}"
                        for name, e in cluster.daemons().items()) or "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
