#!/usr/bin/python3
"""Write qgis/ly.qgs: one OGC API - Features layer per Ly theme, styled, for QGIS.

Runs with QGIS's own Python bindings (Debian: `apt-get install python3-qgis`, then
`/usr/bin/python3`; not the project's virtual environment) against a running Ly server:

    ly serve --port 8000 &
    /usr/bin/python3 qgis/make_project.py --server http://127.0.0.1:8000

Every theme of Ly's registry (`datamodel.themes`, plain Python read from the repository)
becomes a layer named by the theme's Danish title: points drawn as circles, areas as
translucent polygons outlined in the theme's colour. A theme with a public coded attribute of
its own is coloured by the first one (the web map's default and its colours, one per code;
service/maps.py, a test keeps them equal), the others in the theme's colour; each is labelled
with the theme's `label` at large scales. A collection the server lists that is no theme
becomes a plain layer. An OpenStreetMap basemap sits underneath. The project CRS is
EPSG:25832 (ETRS89 / UTM 32N), as Danish planners use. The layers' URL is written as
`--public-url` (default http://localhost:8000), whatever server the project was built against.

QGIS's OAPIF provider learns a layer's geometry type from its first features; a theme whose
objects the public cannot see yet is written with the geometry type its descriptor says.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from datamodel import themes  # noqa: E402  (plain Python: the registry and code lists)
from datamodel.codelists import load_codelists  # noqa: E402
from datamodel.fields import generic_fields  # noqa: E402

#: The web map's code colours (service/maps.py PALETTE, UNKNOWN_*; a test keeps them equal).
PALETTE = ("#d7301f", "#2166ac", "#1b7837", "#762a83", "#e08214", "#01665e", "#c51b7d",
           "#8c510a", "#4d9221", "#35978f", "#b2182b", "#5e3c99")
UNKNOWN_COLOUR = "#737373"
UNKNOWN_TEXTS = frozenset({"ukendt", "ikke vurderet", "ikke udfyldt", "ved ikke"})
GENERIC = frozenset(f.name for f in generic_fields())
ADDRESS = ("vejnavn", "husnr", "postnr", "postnr_by")
OSM = "type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0"
DENMARK_25832 = (440_000, 6_040_000, 900_000, 6_410_000)
#: QGIS's names of a descriptor's geometry types (the maplayer element's attributes).
QGIS_GEOMETRY = {"Point": ("Point", "Point"), "MultiPolygon": ("Polygon", "MultiPolygon")}


def layer_uri(server: str, collection: str) -> str:
    """A QGIS OAPIF data source: paged, and restricted to the view's box for large data."""
    return (f"url='{server.rstrip('/')}' typename='{collection}' pagingEnabled='true' "
            "restrictToRequestBBOX='1'")


def collections(server: str) -> list[dict]:
    with urllib.request.urlopen(f"{server.rstrip('/')}/collections?f=json", timeout=30) as r:
        return json.load(r)["collections"]


def start_qgis():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="qgis-runtime-"))
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    return app


def code_colours(codelist: str) -> dict[int, str]:
    """The colour of each code of a code list (as service.maps.code_colours)."""
    out: dict[int, str] = {}
    i = 0
    for c in load_codelists()[codelist].values:
        own = c.extra.get("farve")
        if isinstance(own, str) and re.match(r"^#[0-9a-fA-F]{3,8}$", own):
            out[c.kode] = own
        elif c.tekst.strip().lower() in UNKNOWN_TEXTS:
            out[c.kode] = UNKNOWN_COLOUR
        else:
            out[c.kode] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def primary_field(theme):
    """The attribute a theme is coloured by (as service.maps.primary_field): its first
    public coded attribute of its own; None: the theme's colour."""
    return next((f for f in theme.coded_fields
                 if f.public and not f.personal and f.name not in GENERIC), None)


def _symbol(theme, colour: str):
    from qgis.core import QgsFillSymbol, QgsMarkerSymbol

    if theme.is_area:
        symbol = QgsFillSymbol.createSimple({
            "color": colour, "outline_color": theme.colour, "outline_width": "0.6",
            "style": "solid"})
        symbol.setOpacity(0.6)
        return symbol
    return QgsMarkerSymbol.createSimple({
        "name": "circle", "color": colour, "outline_color": "#ffffff",
        "outline_width": "0.4", "size": "3.2"})


def style_theme(layer, theme) -> None:
    from qgis.core import (QgsCategorizedSymbolRenderer, QgsPalLayerSettings,
                           QgsRendererCategory, QgsSingleSymbolRenderer, QgsTextBufferSettings,
                           QgsTextFormat, QgsVectorLayerSimpleLabeling)
    from qgis.PyQt.QtGui import QColor

    primary = primary_field(theme)
    if primary is not None:
        colours = code_colours(primary.codelist)
        categories = [QgsRendererCategory(c.kode, _symbol(theme, colours[c.kode]), c.tekst)
                      for c in load_codelists()[primary.codelist].values]
        layer.setRenderer(QgsCategorizedSymbolRenderer(primary.name, categories))
    else:
        layer.setRenderer(QgsSingleSymbolRenderer(_symbol(theme, theme.colour)))

    text = QgsTextFormat()
    text.setSize(8)
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(0.8)
    buffer.setColor(QColor("#ffffff"))
    text.setBuffer(buffer)
    labels = QgsPalLayerSettings()
    labels.fieldName = theme.label
    labels.enabled = True
    labels.setFormat(text)
    labels.scaleVisibility = True
    labels.minimumScale = 25_000  # shown from 1:25 000 and closer
    labels.maximumScale = 1
    layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    layer.setLabelsEnabled(True)
    twin = primary.twin if primary is not None and primary.twin else None
    heading = f'coalesce("{theme.label}", "{twin}")' if twin else f'"{theme.label}"'
    layer.setDisplayExpression(heading)
    layer.setMapTipTemplate(map_tip(theme, heading, twin))


def map_tip(theme, heading: str, twin: str | None) -> str:
    """The layer's map tip: the object's name, its kind, its figures and its address."""
    public = {f.name for f in theme.public_fields}
    lines = [f"<b>[% {heading} %]</b>"]
    if twin:
        lines.append(f'[% "{twin}" %]')
    for fig in theme.figures:
        if fig.field in public:
            lines.append(f'{fig.title}: [% "{fig.field}" %]')
    if theme.validity and set(theme.validity) <= public:
        lines.append('[% "{}" %] – [% coalesce("{}", \'\') %]'.format(*theme.validity))
    if set(ADDRESS) <= public:
        lines.append('[% "vejnavn" %] [% "husnr" %], [% "postnr" %] [% "postnr_by" %]')
    return "<br>".join(lines)


def build(server: str, public_url: str, out: Path) -> list[str]:
    from qgis.core import (QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer,
                           QgsRectangle, QgsReferencedRectangle, QgsVectorLayer, QgsWkbTypes)

    project = QgsProject.instance()
    project.clear()
    project.setTitle("Ly – beredskabsdata")
    crs = QgsCoordinateReferenceSystem("EPSG:25832")
    project.setCrs(crs)
    names = []
    osm = QgsRasterLayer(OSM, "OpenStreetMap", "wms")
    project.addMapLayer(osm)
    listed = {c["id"]: c for c in collections(server)}
    unknown_geometry = {}
    registered = [t for t in themes.all_themes()]
    for theme in registered:
        if theme.collection_id not in listed:
            raise SystemExit(f"{server} does not list the collection {theme.collection_id}")
        layer = QgsVectorLayer(layer_uri(server, theme.collection_id), theme.title, "OAPIF")
        if not layer.isValid():
            raise SystemExit(f"QGIS cannot open the collection {theme.collection_id} at {server}")
        seen = QgsWkbTypes.displayString(layer.wkbType())
        expected = QGIS_GEOMETRY[theme.geometry_type]
        if layer.wkbType() in (QgsWkbTypes.Unknown, QgsWkbTypes.NoGeometry):
            unknown_geometry[layer.id()] = expected
            print(f"{theme.collection_id}: the public sees no objects at {server}; written as "
                  f"{theme.geometry_type}", file=sys.stderr)
        elif QgsWkbTypes.geometryType(layer.wkbType()) != (
                QgsWkbTypes.PolygonGeometry if theme.is_area else QgsWkbTypes.PointGeometry):
            raise SystemExit(f"{theme.collection_id}: QGIS sees {seen}, the theme is "
                             f"{theme.geometry_type}")
        style_theme(layer, theme)
        project.addMapLayer(layer)
        names.append(theme.collection_id)
    for cid, c in listed.items():  # collections that are no theme, as they come
        if cid in names:
            continue
        layer = QgsVectorLayer(layer_uri(server, cid), c.get("title") or cid, "OAPIF")
        if not layer.isValid():
            raise SystemExit(f"QGIS cannot open the collection {cid} at {server}")
        project.addMapLayer(layer)
        names.append(cid)
    root = project.layerTreeRoot()
    node = root.findLayer(osm.id())
    clone = node.clone()
    root.addChildNode(clone)  # the basemap at the bottom
    node.parent().removeChildNode(node)
    project.viewSettings().setDefaultViewExtent(
        QgsReferencedRectangle(QgsRectangle(*DENMARK_25832), crs))
    backup = out.with_name(out.name + "~")  # QGIS keeps the file it overwrites as name~
    had_backup = backup.exists()
    if not project.write(str(out)):
        raise SystemExit(f"could not write {out}")
    if not had_backup:
        backup.unlink(missing_ok=True)
    _finish(out, server, public_url, unknown_geometry)
    return names


def _finish(out: Path, server: str, public_url: str, geometry: dict) -> None:
    """Point the layers (and their metadata's links) at the public URL, and give a layer QGIS
    saw no objects of the geometry type of its theme."""
    text = out.read_text(encoding="utf-8")
    text = text.replace(server.rstrip("/"), public_url.rstrip("/"))
    if geometry:
        tree = ET.ElementTree(ET.fromstring(text))
        for element in tree.iter("maplayer"):
            layer_id = element.findtext("id")
            if layer_id in geometry:
                element.set("geometry", geometry[layer_id][0])
                element.set("wkbType", geometry[layer_id][1])
        head = text.split("\n", 1)[0] if text.startswith("<!DOCTYPE") else ""
        body = ET.tostring(tree.getroot(), encoding="unicode")
        text = (head + "\n" if head else "") + body + "\n"
    out.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", default="http://127.0.0.1:8000",
                    help="a running Ly server to read the collections from")
    ap.add_argument("--public-url", default="http://localhost:8000",
                    help="the URL the project's layers point at")
    ap.add_argument("--out", type=Path, default=HERE / "ly.qgs")
    args = ap.parse_args()
    app = start_qgis()
    try:
        names = build(args.server, args.public_url, args.out)
    finally:
        app.exitQgis()
    print(f"wrote {args.out}: {', '.join(names)}")


if __name__ == "__main__":
    main()
