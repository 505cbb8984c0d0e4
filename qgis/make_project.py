#!/usr/bin/python3
"""Write qgis/ly.qgs: Ly's collections as OGC API - Features layers, styled, for QGIS.

Runs with QGIS's own Python bindings (Debian: `apt-get install python3-qgis`, then
`/usr/bin/python3`; not the project's virtual environment) against a running Ly server:

    ly serve --port 8000 &
    /usr/bin/python3 qgis/make_project.py --server http://127.0.0.1:8000

Every collection the server lists becomes a layer; `beskyttelsesrum` is styled by type
(beskyt_rum_kode, the colours of Ly's web map) and labelled with `navn` at large scales. An
OpenStreetMap basemap sits underneath. The project CRS is EPSG:25832 (ETRS89 / UTM 32N), as
Danish planners use. The layers' URL is written as `--public-url` (default
http://localhost:8000), whatever server the project was built against.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
CODELIST = HERE.parent / "datamodel" / "codelists" / "d_6101_beskyt_rum.json"
#: The web map's type colours (service/maps.py TYPE_COLOURS; a test keeps them equal).
TYPE_COLOURS = {1: "#d7301f", 2: "#2166ac", 3: "#1b7837", 8: "#762a83", 9: "#737373"}
OSM = "type=xyz&url=https://tile.openstreetmap.org/{z}/{x}/{y}.png&zmax=19&zmin=0"
DENMARK_25832 = (440_000, 6_040_000, 900_000, 6_410_000)


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


def style_shelters(layer) -> None:
    from qgis.core import (QgsCategorizedSymbolRenderer, QgsMarkerSymbol, QgsPalLayerSettings,
                           QgsRendererCategory, QgsTextBufferSettings, QgsTextFormat,
                           QgsVectorLayerSimpleLabeling)
    from qgis.PyQt.QtGui import QColor

    codes = json.loads(CODELIST.read_text(encoding="utf-8"))["values"]
    categories = []
    for c in codes:
        symbol = QgsMarkerSymbol.createSimple({
            "name": "circle", "color": TYPE_COLOURS.get(c["kode"], "#737373"),
            "outline_color": "#ffffff", "outline_width": "0.4", "size": "3.2"})
        categories.append(QgsRendererCategory(c["kode"], symbol, c["tekst"]))
    layer.setRenderer(QgsCategorizedSymbolRenderer("beskyt_rum_kode", categories))

    text = QgsTextFormat()
    text.setSize(8)
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(0.8)
    buffer.setColor(QColor("#ffffff"))
    text.setBuffer(buffer)
    labels = QgsPalLayerSettings()
    labels.fieldName = "navn"
    labels.enabled = True
    labels.setFormat(text)
    labels.scaleVisibility = True
    labels.minimumScale = 25_000  # shown from 1:25 000 and closer
    labels.maximumScale = 1
    layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    layer.setLabelsEnabled(True)
    layer.setDisplayExpression('coalesce("navn", "beskyt_rum")')
    layer.setMapTipTemplate(
        "<b>[% coalesce(\"navn\", \"beskyt_rum\") %]</b><br>[% \"beskyt_rum\" %], "
        "[% \"pladser\" %] pladser<br>[% \"vejnavn\" %] [% \"husnr\" %], "
        "[% \"postnr\" %] [% \"postnr_by\" %]")


def build(server: str, public_url: str, out: Path) -> list[str]:
    from qgis.core import (QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer,
                           QgsRectangle, QgsReferencedRectangle, QgsVectorLayer)

    project = QgsProject.instance()
    project.clear()
    project.setTitle("Ly – beskyttelsesrum")
    crs = QgsCoordinateReferenceSystem("EPSG:25832")
    project.setCrs(crs)
    names = []
    osm = QgsRasterLayer(OSM, "OpenStreetMap", "wms")
    project.addMapLayer(osm)
    for c in collections(server):
        layer = QgsVectorLayer(layer_uri(server, c["id"]), c.get("title") or c["id"], "OAPIF")
        if not layer.isValid():
            raise SystemExit(f"QGIS cannot open the collection {c['id']} at {server}")
        if c["id"] == "beskyttelsesrum":
            style_shelters(layer)
        project.addMapLayer(layer)
        names.append(c["id"])
    root = project.layerTreeRoot()
    node = root.findLayer(osm.id())
    clone = node.clone()
    root.addChildNode(clone)  # the basemap at the bottom
    node.parent().removeChildNode(node)
    project.viewSettings().setDefaultViewExtent(
        QgsReferencedRectangle(QgsRectangle(*DENMARK_25832), crs))
    if not project.write(str(out)):
        raise SystemExit(f"could not write {out}")
    text = out.read_text(encoding="utf-8")
    out.write_text(text.replace(f"url='{server.rstrip('/')}'",
                                f"url='{public_url.rstrip('/')}'"), encoding="utf-8")
    return names


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
