#!/usr/bin/python3
"""Open qgis/ly.qgs with QGIS's Python bindings, headless, against a Ly server, and report
what QGIS sees, as JSON on stdout:

    /usr/bin/python3 qgis/check_project.py --server http://127.0.0.1:8000

The project's layers point at http://localhost:8000; `--server` replaces that URL in a
temporary copy (what QGIS's "Change Data Source" does by hand). For every layer of the project:
valid or not, its provider, collection, feature count (QGIS's own, and by reading every
feature through the provider's paging) and its renderer. Then every collection the server lists
is opened as a fresh OAPIF layer and counted the same way, so a collection missing from the
project shows up too. QGIS reads anonymously: it sees what the public sees.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_project import collections, layer_uri, start_qgis  # noqa: E402

PROJECT_URL = "http://localhost:8000"


def describe(layer) -> dict:
    out = {"name": layer.name(), "valid": layer.isValid(),
           "provider": layer.providerType(), "type": layer.type()}
    if layer.type() != 0:  # not a vector layer
        return out
    m = re.search(r"typename='([^']+)'", layer.source())
    out["collection"] = m.group(1) if m else None
    out["feature_count"] = layer.featureCount()
    out["features_read"] = sum(1 for _ in layer.getFeatures()) if layer.isValid() else None
    renderer = layer.renderer()
    out["renderer"] = renderer.type() if renderer else None
    if renderer is not None and renderer.type() == "categorizedSymbol":
        out["attribute"] = renderer.classAttribute()
        out["categories"] = [
            {"value": c.value(), "label": c.label(), "colour": c.symbol().color().name()}
            for c in renderer.categories()]
        out["drawn"] = drawn(layer, out["attribute"])
    return out


def drawn(layer, attribute: str) -> dict[str, int]:
    """How QGIS would draw each feature: counts of "<attribute value> <symbol colour>"."""
    from qgis.core import QgsRenderContext

    renderer = layer.renderer().clone()
    context = QgsRenderContext()
    renderer.startRender(context, layer.fields())
    counts: dict[str, int] = {}
    try:
        for f in layer.getFeatures():
            symbol = renderer.symbolForFeature(f, context)
            key = f"{f[attribute]} {symbol.color().name() if symbol else None}"
            counts[key] = counts.get(key, 0) + 1
    finally:
        renderer.stopRender(context)
        del renderer  # before QGIS exits, or it crashes on the way out
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server", required=True)
    ap.add_argument("--project", type=Path, default=HERE / "ly.qgs")
    args = ap.parse_args()
    server = args.server.rstrip("/")
    app = start_qgis()
    try:
        from qgis.core import QgsProject, QgsVectorLayer

        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / args.project.name
            copy.write_text(args.project.read_text(encoding="utf-8")
                            .replace(f"url='{PROJECT_URL}'", f"url='{server}'"),
                            encoding="utf-8")
            project = QgsProject.instance()
            read = project.read(str(copy))
            crs = project.crs().authid()
            layers = [describe(lyr) for lyr in project.mapLayers().values()]
            project.clear()
        served = []
        for c in collections(server):
            layer = QgsVectorLayer(layer_uri(server, c["id"]), c["id"], "OAPIF")
            d = describe(layer)
            d["collection"] = c["id"]
            served.append(d)
            del layer
        print(json.dumps({"project_read": read, "crs": crs, "layers": layers,
                          "collections": served}))
    finally:
        app.exitQgis()


if __name__ == "__main__":
    main()
