"""QGIS opens Ly: the shipped project `qgis/ly.qgs` and every collection the server lists, read
headless with Debian's QGIS Python bindings (python3-qgis) against the live server.

The bindings belong to Debian's /usr/bin/python3, not to the virtual environment, so the check
runs as a subprocess (`qgis/check_project.py`) that prints what QGIS sees as JSON. QGIS reads
anonymously, so it must count exactly the shelters the public sees (off_kode 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from service.maps import TYPE_COLOURS
from tests.conftest import query

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ROOT / "qgis" / "ly.qgs"
CHECK = ROOT / "qgis" / "check_project.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def _bindings_missing() -> str | None:
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} (QGIS's bindings are Debian's python3-qgis)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True,
                           env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    if probe.returncode != 0:
        return ("QGIS's Python bindings are not installed: apt-get install -y "
                "--no-install-recommends python3-qgis (scripts/system-deps.sh does it as root)")
    return None


@pytest.fixture(scope="module")
def qgis_view(live_ro, tmp_path_factory):
    reason = _bindings_missing()
    if reason:
        pytest.skip(reason)
    runtime = tmp_path_factory.mktemp("qgis-runtime")
    os.chmod(runtime, 0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env.update({"QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime),
                "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path_factory.mktemp("qgis-profile")),
                "HOME": str(tmp_path_factory.mktemp("qgis-home"))})
    proc = subprocess.run([SYSTEM_PYTHON, str(CHECK), "--server", live_ro.url,
                           "--project", str(PROJECT)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_project_opens_and_shows_every_public_shelter(qgis_view, shared_db_url):
    assert qgis_view["project_read"] is True
    assert qgis_view["crs"] == "EPSG:25832"
    layers = {lyr["name"]: lyr for lyr in qgis_view["layers"]}
    assert all(lyr["valid"] for lyr in layers.values()), layers
    shelters = layers["Beskyttelsesrum"]
    assert shelters["provider"] == "OAPIF" and shelters["collection"] == "beskyttelsesrum"
    (public,) = query(shared_db_url,
                      "SELECT count(*) FROM ly.t_6101_beskyt_rum WHERE off_kode = 1")[0]
    assert public > 0
    assert shelters["feature_count"] == public
    assert shelters["features_read"] == public


def test_the_project_styles_shelters_by_type_as_the_web_map_does(qgis_view, shared_db_url):
    shelters = next(lyr for lyr in qgis_view["layers"] if lyr["name"] == "Beskyttelsesrum")
    assert shelters["renderer"] == "categorizedSymbol"
    assert shelters["attribute"] == "beskyt_rum_kode"
    codes = dict(query(shared_db_url, "SELECT kode, tekst FROM ly.d_6101_beskyt_rum"))
    assert {int(c["value"]): c["label"] for c in shelters["categories"]} == codes
    assert {int(c["value"]): c["colour"] for c in shelters["categories"]} == TYPE_COLOURS
    # Every feature QGIS reads is drawn with its type's colour.
    per_type = dict(query(shared_db_url, "SELECT beskyt_rum_kode, count(*) FROM "
                                         "ly.t_6101_beskyt_rum WHERE off_kode = 1 GROUP BY 1"))
    assert shelters["drawn"] == {f"{k} {TYPE_COLOURS[k]}": n for k, n in per_type.items()}


def test_every_collection_opens_in_qgis_with_the_apis_count(qgis_view, anon_client):
    listed = [c["id"] for c in anon_client.get("/collections?f=json").json()["collections"]]
    seen = {c["collection"]: c for c in qgis_view["collections"]}
    assert sorted(seen) == sorted(listed)
    in_project = {lyr.get("collection") for lyr in qgis_view["layers"]}
    for cid in listed:
        c = seen[cid]
        assert c["valid"], cid
        matched = anon_client.get(f"/collections/{cid}/items?limit=1").json()["numberMatched"]
        assert c["feature_count"] == c["features_read"] == matched, cid
        assert cid in in_project, f"{cid} is not in qgis/ly.qgs: run qgis/make_project.py"


def test_the_project_file_points_at_localhost_8000():
    """What the README promises: open qgis/ly.qgs with Ly on http://localhost:8000."""
    tree = ET.parse(PROJECT)
    sources = [d.text for d in tree.iter("datasource") if d.text and "typename=" in d.text]
    assert sources and all("url='http://localhost:8000'" in s for s in sources)
    assert all("pagingEnabled='true'" in s for s in sources)
