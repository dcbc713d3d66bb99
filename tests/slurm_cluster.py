"""A real single-node SLURM cluster on this machine, for the tests of ``make slurm`` (Debian's packages; the
recipe of ../shared/ENVIRONMENT.md): munge, slurmctld and slurmd started without systemd from a temporary
configuration, stopped when done. ``SLURM_CONF`` points every client command at it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]


def install() -> str | None:
    """Install the packages when missing; None when ready, else why not (the tests skip with it)."""
    if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "SLURM is not installed and cannot be (needs root and apt-get): apt-get install " + " ".join(PACKAGES)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if done.returncode != 0:
            return f"could not install SLURM ({' '.join(cmd[:2])}: {done.stderr.strip()[-200:]})"
    return None


def _config(root: Path) -> str:
    host = socket.gethostname()
    memory = int(subprocess.run(["free", "-m"], capture_output=True, text=True).stdout.split("\n")[1].split()[1])
    return "\n".join([
        f"ClusterName=meshrec-test", f"SlurmctldHost={host}(127.0.0.1)", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "AuthInfo=cred_expire=10", f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool", f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={root}/jobcomp.txt", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
        "MpiDefault=none", "MailProg=/bin/true", "ReturnToService=2", "SlurmctldPort=26817", "SlurmdPort=26818",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={max(memory - 512, 1024)} State=UNKNOWN",
        f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""])


class LocalCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; ``env`` is the environment of client commands."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def run(self, *cmd: str, check: bool = True) -> str:
        done = subprocess.run(list(cmd), capture_output=True, text=True, env=self.env, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def start(self) -> None:
        for d in ("state", "spool"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(_config(self.root))
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if not Path("/run/munge/munged.pid").exists():
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True, timeout=60)
        self.run("/usr/sbin/slurmctld", "-f", str(self.conf))
        self.run("/usr/sbin/slurmd", "-f", str(self.conf))
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run("sinfo", "-h", "-o", "%T", check=False).strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the local SLURM node did not become idle (sinfo: {state!r}); see {self.root}/*.log")

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (JobState, ExitCode, Restarts, ...)."""
        out = self.run("scontrol", "show", "job", "-o", job_id)
        return dict(item.split("=", 1) for item in out.split() if "=" in item)

    def wait(self, job_id: str, timeout: float = 900) -> dict[str, str]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            info = self.job(job_id)
            if info["JobState"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return info
            time.sleep(1.0)
        raise TimeoutError(f"job {job_id} still {self.job(job_id)['JobState']} after {timeout} s")

    def stop(self) -> None:
        """Cancel what is still queued or running, stop the daemons, then munged."""
        for job in self.run("squeue", "-h", "-o", "%i", check=False).split():
            self.run("scancel", "--full", job, check=False)
        time.sleep(1.0)
        self.run("scontrol", "shutdown", check=False)
        time.sleep(1.0)
        for pid_file in (self.root / "slurmd.pid", self.root / "slurmctld.pid"):
            try:
                os.kill(int(pid_file.read_text().strip()), 9)
            except (OSError, ValueError):
                pass
        pid_file = Path("/run/munge/munged.pid")
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 15)
            except (ValueError, ProcessLookupError):
                pass
