"""The map page over every theme: a layer per theme, areas drawn as polygons, filters from the
descriptor, and no personal data on a map for anyone.

One database for the module (a copy of the session's template) with objects of every theme
written through the theme's current view: a public one and an authorities-only one in
København, each carrying distinctive contact details where the theme has personal attributes,
and for themes with a validity period one whose period has ended. The page is read as HTML
(its embedded GeoJSON and layer configuration) and, for the polygons, rendered in Chromium.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from datamodel import themes
from datamodel.codelists import load_codelists
from service.app import create_app
from service.maps import code_colours, filter_fields, map_properties, popup_fields
from tests.conftest import (SAMS_CVR, LiveServer, bearer, fresh_database, make_settings,
                            query, token)
from tests.test_maps import CHROMIUM, Browser

THEMES = themes.all_themes()
KBH = 101
#: Contact details no map may show (ASCII, so no escaping can hide them from the search).
PERSON = "Xenofon Quillfeather"
PHONE = 87654321
#: A square of about 330 m in København (lon, lat).
SQUARE = [[12.5600, 55.6800], [12.5650, 55.6800], [12.5650, 55.6830], [12.5600, 55.6830],
          [12.5600, 55.6800]]
POINT = (12.5683, 55.6761)


def _value(f, tag: str):
    if f.codelist:
        return next(c.kode for c in load_codelists()[f.codelist].values if c.aktiv)
    if f.type == "integer":
        return int(f.minimum if f.minimum is not None else 1)
    if f.type == "number":
        return float(f.minimum if f.minimum is not None else 1)
    if f.type == "date":
        return date.today().isoformat()
    if f.type == "uuid":
        return str(uuid.uuid4())
    return f"{tag} {f.name}"[: f.max_length or 80]


def _insert(url: str, theme, *, off: int, label: str, valid_days: tuple[int, int] = (-1, 30),
            personal: bool = True) -> str:
    """One object of a theme in København, written through its current view (which keeps
    the history and derives the municipality)."""
    props = {f.name: _value(f, label) if f.default is None else f.default
             for f in theme.writable_fields if f.required}
    props[theme.label] = label
    props["off_kode"] = off
    (props["cvr_kode"],) = query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s",
                                 [KBH])[0]
    for f in theme.personal_fields:
        if personal:
            props[f.name] = PHONE if f.type == "integer" else PERSON
    if theme.validity:
        start, end = (date.today() + timedelta(days=d) for d in valid_days)
        props[theme.validity[0]], props[theme.validity[1]] = start.isoformat(), end.isoformat()
    if theme.is_area:
        geometry = {"type": "Polygon", "coordinates": [SQUARE]}
        geom = "ST_Multi(ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326), 25832))"
    else:
        geometry = {"type": "Point", "coordinates": list(POINT)}
        geom = "ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326), 25832)"
    cols = list(props)
    with psycopg.connect(url) as conn:
        (oid,) = conn.execute(
            f"INSERT INTO ly.{theme.current_view} ({', '.join(cols)}, bruger_id, geometri) "
            f"VALUES ({', '.join(['%s'] * len(cols))}, 'test', {geom}) RETURNING objekt_id",
            [props[c] for c in cols] + [json.dumps(geometry)]).fetchone()
    return str(oid)


@pytest.fixture(scope="module")
def map_db(template_db):
    """(url, objects): per theme, the ids of its public, authorities-only and ended objects."""
    database = fresh_database(template_db, "ly_tmap_")
    url = next(database)
    objects = {}
    for t in THEMES:
        ids = {"public": _insert(url, t, off=1, label=f"Kortprøve offentlig {t.temakode}"),
               "authorities": _insert(url, t, off=3,
                                      label=f"Kortprøve myndigheder {t.temakode}")}
        if t.validity:
            ids["ended"] = _insert(url, t, off=1, label=f"Kortprøve udløbet {t.temakode}",
                                   valid_days=(-30, -2))
        objects[t.collection_id] = ids
    yield url, objects
    next(database, None)  # dropped in the background


@pytest.fixture(scope="module")
def map_client(map_db):
    with TestClient(create_app(make_settings(map_db[0]))) as c:
        yield c


WHO = {
    "public": {},
    "planner": bearer(["planner"], subject="planlaegger"),
    "municipal_editor": None,  # needs the database's CVR of København: see _headers
    "national_admin": bearer(["national_admin"], subject="sams-admin", cvr=SAMS_CVR),
}


def _headers(who: str, url: str) -> dict:
    if who == "municipal_editor":
        (cvr,) = query(url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s", [KBH])[0]
        return bearer(["municipal_editor"], subject="kbh-redaktoer", cvr=cvr, kommuner=[KBH])
    return WHO[who]


def _page(client, path: str = f"/kort?kommune={KBH}", headers=None) -> str:
    r = client.get(path, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.text


@pytest.fixture(scope="module")
def page_of(map_db, map_client):
    """The page a viewer gets for a path, rendered once for the module."""
    cache: dict = {}

    def get(who: str, path: str = f"/kort?kommune={KBH}") -> str:
        if (who, path) not in cache:
            cache[who, path] = _page(map_client, path, _headers(who, map_db[0]))
        return cache[who, path]

    return get


def _embedded(page: str, theme) -> dict:
    data = page.split(f'id="ly-features-{theme.collection_id}">', 1)[1].split("</script>", 1)[0]
    return json.loads(data)


def _config(page: str) -> dict:
    """The layer configuration the page hands to ly-map.js."""
    m = re.search(r"LyMap\.init\(\w+, \{options: (\{.*?\}), groups: ", page, re.S)
    assert m, "no LyMap.init call in the page"
    return json.loads(m.group(1))


@pytest.mark.parametrize("who", ["public", "national_admin"])
@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_the_page_has_a_layer_per_theme(map_db, page_of, theme, who):
    url, objects = map_db
    page = page_of(who)
    config = {lyr["id"]: lyr for lyr in _config(page)["layers"]}
    layer = config[theme.collection_id]
    assert layer["title"] == theme.title and layer["colour"] == theme.colour
    assert layer["area"] is theme.is_area and layer["label"] == theme.label
    # in the layer control, under the theme's title, in the theme's colour
    overlays = page.split("overlays :", 1)[1].split("},", 1)[0]
    entries = {json.loads(k): v for k, v in re.findall(
        r'("(?:[^"\\]|\\.)*") : ((?:marker_cluster|feature_group)_\w+)', overlays)}
    entry = next(v for k, v in entries.items() if k.endswith(" " + theme.title))
    name = next(k for k, v in entries.items() if v == entry)
    assert f"--ly-colour:{theme.colour}" in name
    assert entry.startswith("feature_group" if theme.is_area else "marker_cluster")
    data = _embedded(page, theme)
    by_id = {f["id"]: f for f in data["features"]}
    assert objects[theme.collection_id]["public"] in by_id
    assert (objects[theme.collection_id]["authorities"] in by_id) is (who != "public")
    assert {f["geometry"]["type"] for f in data["features"]} == {theme.geometry_type}
    mine = by_id[objects[theme.collection_id]["public"]]
    assert mine["properties"][theme.label] == f"Kortprøve offentlig {theme.temakode}"
    # the public sees public attributes only; nobody gets the personal ones
    public = set(theme.property_columns(public=True))
    for f in data["features"]:
        assert set(f["properties"]) == set(map_properties(theme, who == "public"))
        if who == "public":
            assert set(f["properties"]) <= public
        assert not set(f["properties"]) & {p.name for p in theme.personal_fields}
    # the panel: a count, and a filter for each coded attribute of the theme's own
    assert f'id="ly-shown-{theme.collection_id}" data-count="{len(data["features"])}"' in page
    for f in filter_fields(theme, who == "public"):
        assert f'name="{theme.collection_id}.{f.name}"' in page
    assert layer["fields"] == popup_fields(theme, who == "public")


@pytest.mark.parametrize("who", ["public", "planner", "municipal_editor", "national_admin"])
def test_no_personal_data_on_any_map(map_db, map_client, page_of, who):
    """Contact persons and their phone numbers are on no map page: not for the public (who may
    never read them), not for planners (masked), not for the authorities that may read them
    (a page embeds thousands of objects; the object's own page has them)."""
    url, objects = map_db
    h = _headers(who, url)
    for path in (f"/kort?kommune={KBH}", "/kort"):
        page = page_of(who, path)
        assert PERSON not in page and str(PHONE) not in page, (who, path)
    page = page_of(who)
    for theme in (t for t in THEMES if t.personal_fields):
        shown = {f["id"] for f in _embedded(page, theme)["features"]}
        oid = objects[theme.collection_id]["public"]
        assert oid in shown  # the object is on the map, only its contact details are not
        item = map_client.get(f"/collections/{theme.collection_id}/items/{oid}", headers=h)
        assert item.status_code == 200, item.text
        props = item.json()["properties"]
        for p in theme.personal_fields:
            expected = {"public": "absent", "planner": None}.get(who, "readable")
            if expected == "absent":
                assert p.name not in props
            elif expected is None:
                assert props[p.name] is None
            else:  # the viewer may read it: its absence from the map is the map's doing
                assert props[p.name] in (PERSON, PHONE)


@pytest.mark.parametrize("theme", [t for t in THEMES if t.validity],
                         ids=lambda t: t.collection_id)
def test_objects_whose_validity_has_ended_are_not_on_the_map(map_db, map_client, page_of,
                                                             theme):
    url, objects = map_db
    shown = {f["id"] for f in _embedded(page_of("public"), theme)["features"]}
    assert objects[theme.collection_id]["public"] in shown
    assert objects[theme.collection_id]["ended"] not in shown
    # the API still has it (a map choice, not a visibility rule)
    r = map_client.get(f"/collections/{theme.collection_id}/items/"
                       f"{objects[theme.collection_id]['ended']}")
    assert r.status_code == 200


@pytest.mark.parametrize("theme", [t for t in THEMES if filter_fields(t, False)],
                         ids=lambda t: t.collection_id)
def test_a_filter_per_coded_attribute(map_db, map_client, page_of, theme):
    """`?{collectionId}.{attribute}=code` preselects the filter; a code outside the list is a
    problem naming the parameter; an attribute the public may not read is refused them."""
    cid = theme.collection_id
    wanted = {f.name: load_codelists()[f.codelist].values[-1].kode
              for f in filter_fields(theme, False)}
    path = f"/kort?kommune={KBH}&" + "&".join(f"{cid}.{k}={v}" for k, v in wanted.items())
    page = page_of("national_admin", path)
    for name, code in wanted.items():
        select = page.split(f'name="{cid}.{name}"', 1)[1].split("</select>", 1)[0]
        assert f'<option value="{code}" selected>' in select
    assert _config(page)["layers"][THEMES.index(theme)]["initial"] == wanted
    admin = _headers("national_admin", map_db[0])
    for f in filter_fields(theme, False):
        param = f"{cid}.{f.name}"
        r = map_client.get(f"/kort?{param}=987654", headers=admin)
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == param
        if f not in filter_fields(theme, True):
            r = map_client.get(f"/kort?{param}={wanted[f.name]}")
            assert r.status_code == 400 and r.json()["errors"][0]["field"] == param
            assert "public" in r.json()["errors"][0]["detail"]


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.collection_id)
def test_colour_by_the_theme_or_an_attribute(map_db, map_client, page_of, theme):
    """The theme's colour, or any of its coded attributes (a CSS rule per code on the page:
    the browser switches between them without touching the objects)."""
    cid = theme.collection_id
    fields = filter_fields(theme, False)
    choice = fields[-1].name if fields else "tema"
    page = page_of("national_admin", f"/kort?kommune={KBH}&{cid}.farve={choice}")
    assert _config(page)["layers"][THEMES.index(theme)]["colourBy"] == choice
    assert f".ly-colour-{cid}-tema .ly-obj.ly-t-{cid} {{ background: {theme.colour};" in page
    for f in fields:
        for kode, colour in code_colours(f.codelist).items():
            assert (f".ly-colour-{cid}-{f.name} .ly-obj.ly-t-{cid}.ly-c-{f.name}-{kode} "
                    f"{{ background: {colour};") in page
    r = map_client.get(f"/kort?{cid}.farve=objekt_id", headers=_headers("national_admin",
                                                                         map_db[0]))
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == f"{cid}.farve"


def test_without_figures_per_municipality_the_page_has_no_choropleth(map_db, map_client,
                                                                      monkeypatch):
    """The choropleth is a theme's own report figures (the shelters' coverage); with no theme
    giving figures per municipality the page still lists and outlines the municipalities and
    shows every theme."""
    from service import maps

    assert maps.coverage_theme() is not None
    monkeypatch.setattr(maps, "coverage_theme", lambda: None)
    page = _page(map_client)
    assert "Dækning pr. kommune" not in page and "choropleth: null" in page
    assert 'value="101" selected' in page and "Valgt kommune" in page
    assert [lyr["id"] for lyr in _config(page)["layers"]] == [t.collection_id for t in THEMES]


# --- in a browser -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def map_browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium or chromium-browser binary on PATH")
    b = Browser(tmp_path_factory.mktemp("chromium-theme-maps"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def map_live(map_db):
    with LiveServer(map_db[0]) as server:
        yield server


@pytest.mark.parametrize("theme", [t for t in THEMES if t.is_area],
                         ids=lambda t: t.collection_id)
def test_an_area_is_drawn_as_a_polygon(map_db, map_live, map_browser, output_dir, theme):
    url, objects = map_db
    cid = theme.collection_id
    oid = objects[cid]["public"]
    b = map_browser
    b.send("Network.setCookie", name="ly_token", value=token(["planner"], subject="planner"),
           url=map_live.url)
    try:
        b.open(f"{map_live.url}/kort?kommune={KBH}")
        found = b.js(f"""(() => {{
            const items = window.lyMap.layers[{json.dumps(cid)}].items;
            const p = items.find(l => l.lyId === {json.dumps(oid)});
            if (!p) return null;
            const ll = p.getLatLngs().flat(3);
            return {{polygon: p instanceof L.Polygon, marker: p instanceof L.Marker,
                     onMap: window.lyMap.map.hasLayer(p), vertices: ll.length,
                     lons: ll.map(x => x.lng), lats: ll.map(x => x.lat),
                     path: p.getElement() && p.getElement().tagName,
                     classes: p.getElement() && p.getElement().getAttribute('class'),
                     stroke: p.getElement() && p.getElement().getAttribute('stroke')}};
        }})()""")
        assert found is not None, "the area is not on the map"
        assert found["polygon"] and not found["marker"] and found["onMap"]
        assert found["path"] == "path" and f"ly-t-{cid}" in found["classes"]
        assert found["stroke"] == theme.colour
        # the square as it was stored, to the map's 0.1 m
        assert found["vertices"] in (4, 5)
        assert min(found["lons"]) == pytest.approx(SQUARE[0][0], abs=1e-5)
        assert max(found["lons"]) == pytest.approx(SQUARE[1][0], abs=1e-5)
        assert min(found["lats"]) == pytest.approx(SQUARE[0][1], abs=1e-5)
        assert max(found["lats"]) == pytest.approx(SQUARE[2][1], abs=1e-5)
        # one entry per theme in the layer control
        control = b.js("document.querySelector('.leaflet-control-layers').innerText")
        for t in THEMES:
            assert t.title in control
        # its popup: the theme's label as the heading, no contact person
        text = b.js(f"""new Promise(done => {{
            const p = window.lyMap.layers[{json.dumps(cid)}].items
                .find(l => l.lyId === {json.dumps(oid)});
            window.lyMap.map.fitBounds(p.getBounds());
            p.openPopup(p.getBounds().getCenter());
            setTimeout(() => done(document.querySelector('.ly-popup').innerText), 200);
        }})""")
        assert text.startswith(f"Kortprøve offentlig {theme.temakode}")
        assert PERSON not in text
        b.screenshot(output_dir / f"map-area-{cid}.png")
    finally:
        b.send("Network.clearBrowserCookies")
