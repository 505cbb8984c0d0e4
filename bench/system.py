"""The tools a run needs from the distribution (wrk, pgbench, ogr2ogr), and the machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import psycopg

from bench.dataset import log

#: tool -> Debian package
TOOLS = {"wrk": "wrk", "ogr2ogr": "gdal-bin"}


def ensure_tools() -> None:
    """Install what is missing from Debian's packages when root; else say what to run."""
    from bench.load import pgbench_path

    missing = [pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)]
    try:
        pgbench_path()
    except RuntimeError:
        missing.append("postgresql-client")
    if not missing:
        return
    line = "apt-get install -y " + " ".join(missing)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"bench needs {', '.join(missing)}: run `sudo apt-get update && sudo {line}`")
    log(f"installing {' '.join(missing)} from Debian")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine(db_url: str) -> dict:
    from bench.load import pgbench_path

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    os_name = "?"
    try:
        for line in open("/etc/os-release", encoding="utf-8"):
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    with psycopg.connect(db_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        postgis = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
        geos = conn.execute("SELECT postgis_geos_version()").fetchone()[0]
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers', 'work_mem', "
            "'max_connections', 'jit', 'effective_cache_size', 'random_page_cost')").fetchall())
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "cpu": cpu,
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg,
        "postgis": postgis,
        "geos": geos,
        "postgresql_settings": settings,
        "wrk": _first_line(["wrk", "-v"]),
        "pgbench": _first_line([pgbench_path(), "--version"]),
        "gdal": _first_line(["ogr2ogr", "--version"]) if shutil.which("ogr2ogr") else None,
    }


def machine_line(m: dict) -> str:
    return (f"{m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}; "
            f"PostgreSQL {m['postgresql']}, PostGIS {m['postgis']}, Python {m['python']}")
