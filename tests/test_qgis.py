"""QGIS opens Ly: the shipped project `qgis/ly.qgs`, one layer per theme, and every collection
the server lists, read headless with Debian's QGIS Python bindings (python3-qgis) against the
live server.

The bindings belong to Debian's /usr/bin/python3, not to the virtual environment, so the check
runs as a subprocess (`qgis/check_project.py`, and a small probe here for the layers' geometry
types) that prints what QGIS sees as JSON. QGIS reads anonymously, so it must count exactly
the objects of each theme the public sees (off_kode 1).
"""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from datamodel import themes
from service.maps import code_colours, primary_field
from tests.conftest import query

THEMES = themes.all_themes()

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


#: What QGIS makes of each layer of a project: its collection, validity and geometry type.
PROBE = r"""
import json, re, sys
sys.path.insert(0, sys.argv[1])
from make_project import start_qgis
app = start_qgis()
from qgis.core import QgsProject, QgsWkbTypes
project = QgsProject.instance()
read = project.read(sys.argv[2])
out = []
for layer in project.mapLayers().values():
    if layer.type() != 0:
        continue
    m = re.search(r"typename='([^']+)'", layer.source())
    out.append({"name": layer.name(), "collection": m.group(1) if m else None,
                "valid": layer.isValid(), "provider": layer.providerType(),
                "wkb": QgsWkbTypes.displayString(layer.wkbType()),
                "geometry": QgsWkbTypes.geometryDisplayString(
                    QgsWkbTypes.geometryType(layer.wkbType()))})
project.clear()
print(json.dumps({"read": read, "layers": out}))
app.exitQgis()
"""


def _public(url: str, theme, where: str = "TRUE", group: str | None = None):
    """The objects of a theme the public sees (activation off): off_kode 1."""
    if group:
        return dict(query(url, f"SELECT {group}, count(*) FROM ly.{theme.current_view} "
                               f"WHERE off_kode = 1 AND {where} GROUP BY 1"))
    return query(url, f"SELECT count(*) FROM ly.{theme.current_view} "
                      f"WHERE off_kode = 1 AND {where}")[0][0]


@pytest.fixture(scope="module")
def qgis_env(tmp_path_factory):
    reason = _bindings_missing()
    if reason:
        pytest.skip(reason)
    runtime = tmp_path_factory.mktemp("qgis-runtime")
    os.chmod(runtime, 0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env.update({"QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(runtime),
                "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path_factory.mktemp("qgis-profile")),
                "HOME": str(tmp_path_factory.mktemp("qgis-home"))})
    return env


def _run(args: list[str], env: dict) -> dict:
    proc = subprocess.run([SYSTEM_PYTHON, *args], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def qgis_view(live_ro, qgis_env):
    return _run([str(CHECK), "--server", live_ro.url, "--project", str(PROJECT)], qgis_env)


@pytest.fixture(scope="module")
def qgis_geometry(live_ro, qgis_env, tmp_path_factory):
    """The shipped project as QGIS opens it against the live server."""
    copy = tmp_path_factory.mktemp("qgis-project") / PROJECT.name
    copy.write_text(PROJECT.read_text(encoding="utf-8").replace(
        "url='http://localhost:8000'", f"url='{live_ro.url}'"), encoding="utf-8")
    seen = _run(["-c", PROBE, str(PROJECT.parent), str(copy)], qgis_env)
    assert seen["read"] is True
    return {lyr["collection"]: lyr for lyr in seen["layers"]}


def test_the_project_opens_with_every_layer_valid(qgis_view):
    assert qgis_view["project_read"] is True
    assert qgis_view["crs"] == "EPSG:25832"
    layers = {lyr["name"]: lyr for lyr in qgis_view["layers"]}
    assert all(lyr["valid"] for lyr in layers.values()), layers


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_every_theme_is_a_layer_showing_every_public_object(qgis_view, shared_db_url, theme):
    layer = next((lyr for lyr in qgis_view["layers"]
                  if lyr.get("collection") == theme.collection_id), None)
    assert layer is not None, f"{theme.collection_id} is not in qgis/ly.qgs: run " \
                              "qgis/make_project.py"
    assert layer["name"] == theme.title and layer["provider"] == "OAPIF" and layer["valid"]
    public = _public(shared_db_url, theme)
    assert public > 0, "the demo register has no public objects of this theme"
    assert layer["feature_count"] == public
    assert layer["features_read"] == public


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_every_theme_layer_has_the_themes_geometry_type(qgis_geometry, theme):
    """QGIS learns an OAPIF layer's geometry from its features (the demo register has public
    objects of every theme); the project file says the same."""
    layer = qgis_geometry[theme.collection_id]
    assert layer["valid"]
    assert layer["geometry"] == ("Polygon" if theme.is_area else "Point"), layer
    assert layer["wkb"] == theme.geometry_type, layer
    saved = next(m for m in ET.parse(PROJECT).iter("maplayer")
                 if f"typename='{theme.collection_id}'" in (m.findtext("datasource") or ""))
    assert saved.get("wkbType") == theme.geometry_type
    assert saved.get("geometry") == ("Polygon" if theme.is_area else "Point")


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_every_theme_is_styled_as_the_web_map_colours_it(qgis_view, shared_db_url, theme):
    layer = next(lyr for lyr in qgis_view["layers"]
                 if lyr.get("collection") == theme.collection_id)
    primary = primary_field(theme)
    if primary is None:
        assert layer["renderer"] == "singleSymbol"
        return
    assert layer["renderer"] == "categorizedSymbol"
    assert layer["attribute"] == primary.name
    colours = code_colours(primary.codelist)
    codes = dict(query(shared_db_url, f"SELECT kode, tekst FROM ly.{primary.codelist}"))
    assert {int(c["value"]): c["label"] for c in layer["categories"]} == codes
    assert {int(c["value"]): c["colour"] for c in layer["categories"]} == colours
    # Every feature QGIS reads is drawn with its code's colour.
    per_code = _public(shared_db_url, theme, group=primary.name)
    assert layer["drawn"] == {f"{k} {colours[k]}": n for k, n in per_code.items()}


def test_the_shelters_keep_their_type_colours():
    """The shelter's types are coloured as they were before the themes (red, blue, green,
    purple, grey): the generic palette reproduces them."""
    shelters = themes.get("beskyttelsesrum")
    assert primary_field(shelters).name == "beskyt_rum_kode"
    assert code_colours("d_6101_beskyt_rum") == {
        1: "#d7301f", 2: "#2166ac", 3: "#1b7837", 8: "#762a83", 9: "#737373"}


def test_the_project_generator_colours_as_the_web_map():
    """qgis/make_project.py runs without the service's packages, so it keeps its own copy
    of the palette and of the rule choosing the attribute: both must equal service.maps'."""
    import importlib.util

    from service import maps

    spec = importlib.util.spec_from_file_location("make_project", ROOT / "qgis" /
                                                  "make_project.py")
    mp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mp)
    assert mp.PALETTE == maps.PALETTE and mp.UNKNOWN_COLOUR == maps.UNKNOWN_COLOUR
    assert mp.UNKNOWN_TEXTS == maps.UNKNOWN_TEXTS
    for theme in THEMES:
        mine, theirs = mp.primary_field(theme), maps.primary_field(theme)
        assert (mine and mine.name) == (theirs and theirs.name), theme
        if mine:
            assert mp.code_colours(mine.codelist) == maps.code_colours(mine.codelist)


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
    for theme in THEMES:
        assert any(f"typename='{theme.collection_id}'" in s for s in sources), theme
