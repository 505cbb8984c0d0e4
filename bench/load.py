"""Bounded loopback load: wrk for HTTP, pgbench for the database alone.

Both run closed loops with a fixed number of connections for a fixed time and stop by
themselves; every target is on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
import os
import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.config import BENCH_DIR, CACHE

WRK_SCRIPT = BENCH_DIR / "wrk.lua"


@dataclass
class Measurement:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    errors: int  # socket errors, timeouts and non-2xx/3xx answers
    mb_per_s: float = 0.0
    other_cpu: float = -1.0  # share of the machine's CPU used by other processes meanwhile

    def as_dict(self) -> dict:
        return asdict(self)


def _write_paths(paths: list[str]) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="paths-", suffix=".txt", dir=CACHE)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(paths) + "\n")
    return Path(name)


def wrk(base: str, paths: list[str], *, duration: int, connections: int,
        token_file: Path | None = None, warmup: int = 0) -> Measurement:
    """Run wrk against `base` (http://127.0.0.1:port) rotating over `paths`."""
    assert base.startswith("http://127.0.0.1:"), "load goes to loopback only"
    path_file = _write_paths(paths)
    try:
        if warmup > 0:
            _run_wrk(base, path_file, token_file, warmup, connections, start=len(paths) // 2)
        return _run_wrk(base, path_file, token_file, duration, connections)
    finally:
        path_file.unlink(missing_ok=True)


def _run_wrk(base, path_file, token_file, duration, connections, start=0) -> Measurement:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "60s",
           "-s", str(WRK_SCRIPT), base, "--", str(path_file),
           str(token_file) if token_file else "-", str(start)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    match = re.search(r"^BENCH_JSON (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} "
                           f"{out.stderr[-2000:]}")
    r = json.loads(match.group(1))
    seconds = r["duration_us"] / 1e6
    errors = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status",
                                "err_timeout"))
    return Measurement(
        requests=r["requests"], seconds=round(seconds, 2),
        rps=round(r["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=r["p50_us"] / 1000, p95_ms=r["p95_us"] / 1000, p99_ms=r["p99_us"] / 1000,
        mean_ms=round(r["mean_us"] / 1000, 3), errors=errors,
        mb_per_s=round(r["bytes"] / seconds / 1e6, 1) if seconds else 0.0)


def pgbench_path() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    raise RuntimeError("pgbench not found (Debian: apt-get install postgresql-client)")


def pgbench(db_url: str, script: str, *, duration: int, connections: int,
            warmup: int = 0, on_running=None) -> Measurement:
    """Run a custom pgbench script (prepared statements, like Ly's pool after 5 uses) and
    read each transaction's latency from pgbench's log."""
    parts = urlsplit(db_url)
    assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "load goes to loopback only"
    env = dict(os.environ)
    if parts.password:
        env["PGPASSWORD"] = parts.password
    # The session settings of Ly's pool (plans made with each transaction's actual values, no
    # JIT); prepared statements still save parsing.
    from service.db import SESSION_OPTIONS

    env["PGOPTIONS"] = (env.get("PGOPTIONS", "") + " " + SESSION_OPTIONS).strip()
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        script_file = Path(tmp) / "script.sql"
        script_file.write_text(script)
        base = [pgbench_path(), "-n", "-M", "prepared", "-h", parts.hostname,
                "-p", str(parts.port or 5432), "-U", parts.username or "postgres",
                "-c", str(connections), "-j", "1", "-f", str(script_file)]
        db = parts.path.lstrip("/")
        if warmup > 0:
            subprocess.run(base + ["-T", str(warmup), db], env=env, capture_output=True,
                           text=True, timeout=warmup + 120, check=True)
        prefix = Path(tmp) / "log"
        proc = subprocess.Popen(base + ["-T", str(duration), "-l", "--log-prefix", str(prefix),
                                        db], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        if on_running:
            time.sleep(min(1.0, duration / 2))
            on_running()  # e.g. note the backends that serve pgbench
        stdout, stderr = proc.communicate(timeout=duration + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench failed: {stdout[-2000:]} {stderr[-2000:]}")
        latencies: list[int] = []
        failed = 0
        for log in Path(tmp).glob("log.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                if len(fields) < 3:
                    continue
                if fields[2] in ("failed", "skipped"):
                    failed += 1
                    continue
                latencies.append(int(fields[2]))
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", stdout)
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p / 100 * n))] / 1000 if n else 0.0

    return Measurement(requests=n, seconds=float(duration),
                       rps=round(float(tps.group(1)), 1) if tps else round(n / duration, 1),
                       p50_ms=pct(50), p95_ms=pct(95), p99_ms=pct(99),
                       mean_ms=round(statistics.fmean(latencies) / 1000, 3) if n else 0.0,
                       errors=failed)


# --- other load on the machine during a measurement ---

_CLK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> dict[int, tuple[int, int]]:
    """pid -> (utime + stime, parent pid) for every process."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2:].split()
        out[int(entry.name)] = (int(fields[11]) + int(fields[12]), int(fields[1]))
    return out


class OtherLoad:
    """CPU used during a measurement by processes that are not the bench's own (the server's
    process group, the load generator, the bench database's backends, this process), as a
    share of the machine. Other work on a shared machine shows up here."""

    def __init__(self, ours):
        self.ours = ours  # callable: set of pids that belong to the measurement
        self.share = -1.0

    def __enter__(self):
        self.t0 = time.monotonic()
        self.before = _cpu_ticks()
        return self

    def __exit__(self, *exc):
        after = _cpu_ticks()
        seconds = time.monotonic() - self.t0
        ours = set(self.ours()) | {os.getpid()}
        me = os.getpid()
        other = 0
        for pid, (ticks, ppid) in after.items():
            if pid in ours or ppid == me:
                continue
            other += ticks - self.before.get(pid, (0, 0))[0]
        self.share = round(other / _CLK / seconds / (os.cpu_count() or 1), 3) if seconds else 0
