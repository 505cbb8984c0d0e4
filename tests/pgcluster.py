"""A throw-away PostgreSQL cluster for one test session.

`make test` on a machine where Ly provisioned its own PostgreSQL (no DATABASE_URL given) runs
the suite against a cluster of its own: `initdb` in a temporary directory, the same
PostgreSQL and PostGIS binaries as the local server (Debian's `/usr/lib/postgresql/<major>`,
the newest major with PostGIS installed), listening on a free loopback port, trust
authentication for the bootstrap superuser `ly`, and stopped and removed when the session
ends. It is a real PostgreSQL with PostGIS; what it leaves out is durability, which tests do
not need: `fsync`, `full_page_writes` and `synchronous_commit` are off. A test creates and
drops a database from a template in a fraction of the time a durable server takes (dropping
one waits for a checkpoint there), and the suite's writes do not wait for the disk.

With `LY_TEST_DATABASE_URL` set (the Makefile sets it when DATABASE_URL names a server) the
suite uses that server instead, as it is.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

#: Settings of a cluster no one needs after the session.
NOT_DURABLE = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")


def _bin_dirs() -> list[Path]:
    """Directories of PostgreSQL server binaries with PostGIS beside them, newest first."""
    found = []
    for bindir in glob.glob("/usr/lib/postgresql/*/bin"):
        major = Path(bindir).parent.name
        if major.isdigit() and (Path(bindir) / "initdb").exists() and Path(
                f"/usr/share/postgresql/{major}/extension/postgis.control").exists():
            found.append((int(major), Path(bindir)))
    return [b for _, b in sorted(found, reverse=True)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """`start()` returns the URL of the cluster's `postgres` database; `stop()` removes it."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="ly-test-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self.url = ""
        # initdb and postgres refuse to run as root: as root they run as `postgres`.
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        (self.root / "owner.pid").write_text(str(os.getpid()))
        if self._as:
            shutil.chown(self.root, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd=self.root)

    def start(self) -> str:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "ly", "-A", "trust",
                  "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
        self.port = _free_port()
        options = " ".join([f"-p {self.port}", f"-k {self.root}",
                            "-c listen_addresses=127.0.0.1", "-c max_connections=200",
                            *(f"-c {s}" for s in NOT_DURABLE)])
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "-o", options, "start")
        self.url = f"postgresql://ly@127.0.0.1:{self.port}/postgres"
        return self.url

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run([*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data),
                            "-m", "immediate", "-w", "stop"], check=False,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(bindir: Path) -> None:
    """Stop and remove the clusters of sessions that died without stopping theirs."""
    for root in glob.glob(os.path.join(tempfile.gettempdir(), "ly-test-pg-*")):
        owner = Path(root) / "owner.pid"
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            stale = Cluster.__new__(Cluster)
            stale.bindir, stale.root, stale.data = bindir, Path(root), Path(root) / "data"
            stale._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            stale.stop()


def start_if_possible() -> Cluster | None:
    """A started cluster, or None where no PostgreSQL with PostGIS is installed locally."""
    dirs = _bin_dirs()
    if not dirs:
        return None
    remove_stale(dirs[0])
    cluster = Cluster(dirs[0])
    try:
        cluster.start()
    except (OSError, subprocess.CalledProcessError):
        cluster.stop()
        raise
    return cluster
