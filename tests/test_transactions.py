"""Writing shelters (OGC API - Features Part 4): create, replace, update, delete, OPTIONS,
If-Match/ETag and Content-Crs. Each write proves what is stored by reading the database."""

from __future__ import annotations

import concurrent.futures
import uuid

import httpx
import orjson
import psycopg
import pytest

from tests.conftest import ADMIN_HEADERS, ITEMS, query, snapshot

GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
PROBLEM = "application/problem+json"
CRS84 = "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
EPSG4326 = "<http://www.opengis.net/def/crs/EPSG/0/4326>"
EPSG25832 = "<http://www.opengis.net/def/crs/EPSG/0/25832>"

AARHUS = (10.2039, 56.1535)  # central Aarhus, municipality 751
ODENSE = (10.3883, 55.3959)  # central Odense, municipality 461
COPENHAGEN = (12.5683, 55.6761)  # municipality 101


def feature(lon_lat=AARHUS, geometry=None, **props) -> dict:
    properties = {"beskyt_rum_kode": 2, "pladser": 120}
    properties.update(props)
    geometry = geometry or {"type": "Point", "coordinates": list(lon_lat)}
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def post(client, body, **headers):
    return client.post(ITEMS, content=orjson.dumps(body),
                       headers={"Content-Type": GEOJSON, **headers})


def put(client, objekt_id, body, **headers):
    return client.put(f"{ITEMS}/{objekt_id}", content=orjson.dumps(body),
                      headers={"Content-Type": GEOJSON, **headers})


def patch(client, objekt_id, body, content_type=MERGE_PATCH, **headers):
    return client.patch(f"{ITEMS}/{objekt_id}", content=orjson.dumps(body),
                        headers={"Content-Type": content_type, **headers})


def create(client, body=None, **headers) -> tuple[str, str]:
    """(objekt_id, ETag) of a new shelter."""
    r = post(client, body or feature(), **headers)
    assert r.status_code == 201, r.text
    return r.json()["id"], r.headers["etag"]


def versions(db_url, objekt_id) -> list[tuple]:
    """(versions_id, systid_fra, systid_til, pladser) of every stored version, oldest first."""
    return query(db_url, "SELECT versions_id, systid_fra, systid_til, pladser "
                         "FROM ly.beskyttelsesrum WHERE objekt_id = %s ORDER BY systid_fra",
                 [objekt_id])


def stored_xy(db_url, objekt_id) -> tuple[float, float]:
    return query(db_url, "SELECT ST_X(geometri), ST_Y(geometri) FROM ly.t_6101_beskyt_rum "
                         "WHERE objekt_id = %s", [objekt_id])[0]


def assert_problem(r, status, field=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    if field is not None:
        assert field in [e["field"] for e in r.json().get("errors", [])], r.json()


def kommune_cvr(db_url, kommunekode) -> int:
    (cvr,) = query(db_url, "SELECT cvr_kode FROM ly.kommune WHERE kommunekode = %s",
                   [kommunekode])[0]
    assert cvr is not None
    return cvr


def test_create_stores_the_feature_with_defaults_and_derived_fields(client, db_url):
    sent_ids = {"objekt_id": str(uuid.uuid4()), "versions_id": str(uuid.uuid4())}
    body = feature(
        navn="Aarhus Rådhus, kælder", note="Indgang fra Park Allé", noegle="test-create-1",
        **sent_ids,
        # read-only: ignored, not refused, so a client may send back what it read
        beliggenhedskommune=101, cvr_navn="Forkert myndighed", beskyt_rum="Forkert type",
        offentlig="Forkert", bruger_id="mallory", systid_fra="2000-01-01T00:00:00Z",
        systid_til="2001-01-01T00:00:00Z", oprettet="2000-01-01T00:00:00Z", temakode=1,
    )
    body["id"] = sent_ids["objekt_id"]
    count_before = query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum")[0][0]

    r = post(client, body)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == GEOJSON
    created = r.json()
    objekt_id = created["id"]
    props = created["properties"]
    assert r.headers["location"].endswith(f"{ITEMS}/{objekt_id}")
    assert r.headers["etag"] == f'"{props["versions_id"]}"'

    # the client's ids and read-only values were ignored
    assert objekt_id != sent_ids["objekt_id"] and props["objekt_id"] == objekt_id
    assert props["versions_id"] != sent_ids["versions_id"]
    assert props["systid_til"] is None and not props["systid_fra"].startswith("2000")
    assert props["oprettet"] == props["systid_fra"]
    assert props["bruger_id"] == "sams-admin"  # the signed-in actor (ADMIN_HEADERS)
    # derived from the point, and the responsible authority defaulted to its municipality
    assert props["beliggenhedskommune"] == 751
    assert props["cvr_kode"] == kommune_cvr(db_url, 751)
    assert props["cvr_navn"] not in (None, "Forkert myndighed")
    assert props["beskyt_rum"] == "Sikringsrum"
    # defaults
    assert props["off_kode"] == 3
    assert props["offentlig"] == "Synlig for alle myndigheder, men ikke offentligheden"
    assert props["statuskode"] == 3
    assert props["klargjort_kode"] == 3 and props["oprindkode"] == 0
    assert props["funktionsstatus_kode"] == 3
    assert props["pladser_kilde_kode"] == 9 and props["egnethed_kode"] == 9
    # what was sent
    assert props["pladser"] == 120 and props["navn"] == "Aarhus Rådhus, kælder"
    assert props["note"] == "Indgang fra Park Allé" and props["noegle"] == "test-create-1"
    assert props["undertype_kode"] is None and props["link"] is None
    assert created["geometry"]["type"] == "Point"
    assert created["geometry"]["coordinates"] == pytest.approx(list(AARHUS), abs=1e-7)

    # the body is the stored feature: reading it back gives the same
    g = client.get(r.headers["location"])
    assert g.status_code == 200
    assert g.headers["etag"] == r.headers["etag"]
    stored = g.json()
    assert stored["properties"] == props and stored["geometry"] == created["geometry"]
    # exactly one version was written, current, at the right place
    assert query(db_url, "SELECT count(*) FROM ly.beskyttelsesrum")[0][0] == count_before + 1
    ((versions_id, _, systid_til, pladser),) = versions(db_url, objekt_id)
    assert str(versions_id) == props["versions_id"] and systid_til is None and pladser == 120
    (distance,) = query(db_url, "SELECT ST_Distance(geometri, ST_Transform(ST_SetSRID("
                                "ST_MakePoint(%s, %s), 4326), 25832)) FROM ly.t_6101_beskyt_rum "
                                "WHERE objekt_id = %s", [*AARHUS, objekt_id])[0]
    assert distance < 0.01
    # and it is in the collection
    doc = client.get(ITEMS, params={"noegle": "test-create-1"}).json()
    assert [f["id"] for f in doc["features"]] == [objekt_id]


def test_create_accepts_a_one_point_multipoint_and_the_client_chooses_cvr(client, db_url):
    own_cvr = kommune_cvr(db_url, 101)  # the authority may differ from the location
    r = post(client, feature(geometry={"type": "MultiPoint", "coordinates": [list(AARHUS)]},
                             cvr_kode=own_cvr))
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["geometry"]["type"] == "Point"
    assert doc["geometry"]["coordinates"] == pytest.approx(list(AARHUS), abs=1e-7)
    assert doc["properties"]["cvr_kode"] == own_cvr
    assert doc["properties"]["beliggenhedskommune"] == 751
    ((gtype,),) = query(db_url, "SELECT GeometryType(geometri) FROM ly.t_6101_beskyt_rum "
                                "WHERE objekt_id = %s", [doc["id"]])
    assert gtype == "POINT"


def test_content_crs_places_the_point_where_it_was_meant(client, db_url):
    # metres in the storage CRS are stored as sent (to the millimetre)
    x, y = 574784.652, 6223816.514
    r = post(client, feature(geometry={"type": "Point", "coordinates": [x, y]}),
             **{"Content-Crs": EPSG25832})
    assert r.status_code == 201, r.text
    assert r.headers["content-crs"] == CRS84  # the response is in the default CRS
    metres = r.json()["id"]
    sx, sy = stored_xy(db_url, metres)
    assert abs(sx - x) < 0.001 and abs(sy - y) < 0.001
    assert r.json()["geometry"]["coordinates"] == pytest.approx(list(AARHUS), abs=1e-5)

    # EPSG:4326 is latitude first; CRS84 (the default, and explicitly) longitude first
    lon, lat = COPENHAGEN
    ids = [create(client, feature(geometry={"type": "Point", "coordinates": coords}),
                  **headers)[0]
           for coords, headers in (([lat, lon], {"Content-Crs": EPSG4326}),
                                   ([lat, lon], {"Content-Crs": "EPSG:4326"}),
                                   ([lon, lat], {}),
                                   ([lon, lat], {"Content-Crs": CRS84}))]
    places = [stored_xy(db_url, i) for i in ids]
    for px, py in places[1:]:
        assert abs(px - places[0][0]) < 0.001 and abs(py - places[0][1]) < 0.001
    assert abs(places[0][0] - 724351.929) < 0.01 and abs(places[0][1] - 6175804.022) < 0.01
    assert client.get(f"{ITEMS}/{ids[0]}").json()["properties"]["beliggenhedskommune"] == 101

    # a PUT and a PATCH honour Content-Crs too
    e = client.get(f"{ITEMS}/{metres}").headers["etag"]
    r = put(client, metres, feature(geometry={"type": "Point", "coordinates": [x + 10, y + 20]}),
            **{"Content-Crs": EPSG25832, "If-Match": e})
    assert r.status_code == 200, r.text
    sx, sy = stored_xy(db_url, metres)
    assert abs(sx - x - 10) < 0.001 and abs(sy - y - 20) < 0.001
    r = patch(client, metres, {"geometry": {"type": "Point", "coordinates": [x - 5, y - 5]}},
              **{"Content-Crs": EPSG25832})
    assert r.status_code == 200, r.text
    sx, sy = stored_xy(db_url, metres)
    assert abs(sx - x + 5) < 0.001 and abs(sy - y + 5) < 0.001


def test_replace_makes_a_new_version_and_omitted_optionals_become_null(client, db_url):
    objekt_id, etag1 = create(client, feature(
        noegle="put-1", note="gammel note", navn="Gammelt navn", vejnavn="Vestergade",
        husnr="12", postnr=8000, postnr_by="Aarhus C", off_kode=1, klargjort_kode=1,
        link="https://example.org/rum"))
    first = client.get(f"{ITEMS}/{objekt_id}").json()["properties"]

    r = put(client, objekt_id, feature(ODENSE, beskyt_rum_kode=3, undertype_kode=1, pladser=40),
            **{"If-Match": etag1})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == GEOJSON
    etag2 = r.headers["etag"]
    assert etag2 != etag1
    props = r.json()["properties"]
    assert r.json()["id"] == objekt_id and etag2 == f'"{props["versions_id"]}"'
    for name in ("noegle", "note", "navn", "vejnavn", "husnr", "postnr", "postnr_by", "link"):
        assert props[name] is None, name
    assert props["off_kode"] == 3 and props["klargjort_kode"] == 3  # back to their defaults
    assert props["beskyt_rum_kode"] == 3 and props["undertype_kode"] == 1
    assert props["pladser"] == 40
    # location-derived fields follow the new point
    assert props["beliggenhedskommune"] == 461
    assert props["cvr_kode"] == kommune_cvr(db_url, 461)
    assert props["oprettet"] == first["oprettet"]
    assert r.json()["geometry"]["coordinates"] == pytest.approx(list(ODENSE), abs=1e-7)

    stored = versions(db_url, objekt_id)
    assert len(stored) == 2
    assert str(stored[0][0]) == first["versions_id"] and stored[0][2] is not None
    assert str(stored[1][0]) == props["versions_id"] and stored[1][2] is None
    assert stored[0][2] == stored[1][1]
    g = client.get(f"{ITEMS}/{objekt_id}")
    assert g.headers["etag"] == etag2 and g.json()["properties"] == props

    # the previous ETag is stale now: 412, nothing changes, the current ETag is told
    before = snapshot(db_url)
    r = put(client, objekt_id, feature(pladser=99), **{"If-Match": etag1})
    assert_problem(r, 412, "If-Match")
    assert r.headers["etag"] == etag2
    assert snapshot(db_url) == before
    assert client.get(f"{ITEMS}/{objekt_id}").json()["properties"]["pladser"] == 40

    # unconditional PUT is allowed and makes a third version
    r = put(client, objekt_id, feature(pladser=41))
    assert r.status_code == 200 and r.json()["properties"]["pladser"] == 41
    assert len(versions(db_url, objekt_id)) == 3


def test_patch_changes_only_what_it_names(client, db_url):
    objekt_id, etag1 = create(client, feature(
        noegle="patch-1", note="En note", navn="Skolen", vejnavn="Skolevej", husnr="3",
        off_kode=1, pladser=40))
    before = client.get(f"{ITEMS}/{objekt_id}").json()

    r = patch(client, objekt_id, {"properties": {"pladser": 45, "note": None}},
              **{"If-Match": etag1})
    assert r.status_code == 200, r.text
    etag2 = r.headers["etag"]
    assert etag2 != etag1
    after = r.json()
    changed = {k for k in after["properties"]
               if after["properties"][k] != before["properties"][k]}
    assert changed == {"pladser", "note", "versions_id", "systid_fra"}
    assert after["properties"]["pladser"] == 45 and after["properties"]["note"] is None
    assert after["geometry"] == before["geometry"]
    assert len(versions(db_url, objekt_id)) == 2

    # geometry only: the point moves, the municipality follows, the attributes stay
    r = patch(client, objekt_id, {"geometry": {"type": "Point", "coordinates": list(ODENSE)}},
              **{"If-Match": etag2})
    assert r.status_code == 200, r.text
    moved = r.json()
    assert moved["geometry"]["coordinates"] == pytest.approx(list(ODENSE), abs=1e-7)
    assert moved["properties"]["beliggenhedskommune"] == 461
    for name in ("pladser", "navn", "vejnavn", "husnr", "off_kode", "noegle", "note"):
        assert moved["properties"][name] == after["properties"][name], name

    # plain application/json and application/geo+json are accepted as merge patches too;
    # read-only members sent back are ignored
    r = patch(client, objekt_id, {"properties": {"navn": "Skolen, kælder",
                                                 "objekt_id": str(uuid.uuid4()),
                                                 "beliggenhedskommune": 101}},
              content_type="application/json")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == objekt_id
    assert r.json()["properties"]["navn"] == "Skolen, kælder"
    assert r.json()["properties"]["beliggenhedskommune"] == 461
    r = patch(client, objekt_id, {"type": "Feature", "properties": {"husnr": "3A"}},
              content_type=GEOJSON)
    assert r.status_code == 200 and r.json()["properties"]["husnr"] == "3A"
    # an empty patch is allowed (a new, identical version)
    r = patch(client, objekt_id, {})
    assert r.status_code == 200
    assert r.json()["properties"]["husnr"] == "3A"

    stored = versions(db_url, objekt_id)
    assert [v[3] for v in stored] == [40, 45, 45, 45, 45, 45]
    assert all(v[2] is not None for v in stored[:-1]) and stored[-1][2] is None


def test_if_match(client, db_url):
    objekt_id, etag1 = create(client)

    # the current ETag succeeds and gives a new one
    r = patch(client, objekt_id, {"properties": {"pladser": 121}}, **{"If-Match": etag1})
    assert r.status_code == 200, r.text
    etag2 = r.headers["etag"]
    assert etag2 != etag1

    # the same (now stale) ETag again: 412 and nothing changes
    before = snapshot(db_url)
    r = patch(client, objekt_id, {"properties": {"pladser": 122}}, **{"If-Match": etag1})
    assert_problem(r, 412, "If-Match")
    assert r.headers["etag"] == etag2
    assert snapshot(db_url) == before
    assert client.get(f"{ITEMS}/{objekt_id}").json()["properties"]["pladser"] == 121

    # a list holding the current one, and `*`, match the current version
    r = patch(client, objekt_id, {"properties": {"pladser": 123}},
              **{"If-Match": f'{etag1}, {etag2}'})
    assert r.status_code == 200, r.text
    r = patch(client, objekt_id, {"properties": {"pladser": 124}}, **{"If-Match": "*"})
    assert r.status_code == 200, r.text
    assert client.get(f"{ITEMS}/{objekt_id}").json()["properties"]["pladser"] == 124

    # a stale DELETE changes nothing either
    before = snapshot(db_url)
    r = client.delete(f"{ITEMS}/{objekt_id}", headers={"If-Match": etag2})
    assert_problem(r, 412, "If-Match")
    assert snapshot(db_url) == before
    assert client.get(f"{ITEMS}/{objekt_id}").status_code == 200

    # a shelter that does not exist: 412 with If-Match (also `*`), 404 without
    unknown = str(uuid.uuid4())
    before = snapshot(db_url)
    for tag in (etag1, "*"):
        assert_problem(put(client, unknown, feature(), **{"If-Match": tag}), 412, "If-Match")
        assert_problem(patch(client, unknown, {"properties": {"pladser": 5}},
                             **{"If-Match": tag}), 412, "If-Match")
        assert_problem(client.delete(f"{ITEMS}/{unknown}", headers={"If-Match": tag}), 412,
                       "If-Match")
    assert_problem(put(client, unknown, feature()), 404)
    assert_problem(patch(client, unknown, {"properties": {"pladser": 5}}), 404)
    assert_problem(client.delete(f"{ITEMS}/{unknown}"), 404)
    assert snapshot(db_url) == before


def test_two_writers_with_the_same_etag_the_second_loses(client, db_url):
    objekt_id, etag = create(client)
    first = patch(client, objekt_id, {"properties": {"note": "Første"}}, **{"If-Match": etag})
    assert first.status_code == 200
    before = snapshot(db_url)
    second = patch(client, objekt_id, {"properties": {"note": "Anden"}}, **{"If-Match": etag})
    assert_problem(second, 412, "If-Match")
    assert snapshot(db_url) == before
    assert client.get(f"{ITEMS}/{objekt_id}").json()["properties"]["note"] == "Første"


def test_delete_ends_the_shelter_but_keeps_its_history(client, db_url):
    objekt_id, etag = create(client, feature(noegle="delete-1", pladser=10))
    for pladser in (20, 30):
        r = patch(client, objekt_id, {"properties": {"pladser": pladser}}, **{"If-Match": etag})
        assert r.status_code == 200
        etag = r.headers["etag"]

    r = client.delete(f"{ITEMS}/{objekt_id}", headers={"If-Match": etag})
    assert r.status_code == 204
    assert r.content == b""

    # gone from the register
    assert_problem(client.get(f"{ITEMS}/{objekt_id}"), 404)
    assert client.get(ITEMS, params={"noegle": "delete-1"}).json()["features"] == []
    all_ids = {f["id"] for f in client.get(ITEMS, params={"limit": 10000}).json()["features"]}
    assert objekt_id not in all_ids

    # present in its history: every version, the last one closed
    h = client.get(f"{ITEMS}/{objekt_id}/history")
    assert h.status_code == 200
    hist = h.json()["features"]
    assert [v["properties"]["pladser"] for v in hist] == [10, 20, 30]
    assert f'"{hist[-1]["properties"]["versions_id"]}"' == etag
    assert all(v["properties"]["systid_til"] is not None for v in hist)
    stored = versions(db_url, objekt_id)
    assert len(stored) == 3 and all(v[2] is not None for v in stored)

    # as of an instant before the delete, it was there
    last_from = hist[-1]["properties"]["systid_fra"]
    g = client.get(f"{ITEMS}/{objekt_id}", params={"asof": last_from})
    assert g.status_code == 200
    assert g.json()["properties"]["pladser"] == 30 and g.headers["etag"] == etag
    old = client.get(ITEMS, params={"noegle": "delete-1", "asof": last_from}).json()
    assert [f["id"] for f in old["features"]] == [objekt_id]
    # as of the delete itself, it is not
    ended = hist[-1]["properties"]["systid_til"]
    assert client.get(f"{ITEMS}/{objekt_id}", params={"asof": ended}).status_code == 404

    # deleting, replacing or patching it again: 404, nothing changes
    before = snapshot(db_url)
    assert_problem(client.delete(f"{ITEMS}/{objekt_id}"), 404)
    assert_problem(put(client, objekt_id, feature()), 404)
    assert_problem(patch(client, objekt_id, {"properties": {"pladser": 5}}), 404)
    assert_problem(client.delete(f"{ITEMS}/{objekt_id}", headers={"If-Match": etag}), 412)
    assert snapshot(db_url) == before

    # a demo shelter can be deleted unconditionally
    demo = client.get(ITEMS, params={"limit": 1}).json()["features"][0]["id"]
    assert client.delete(f"{ITEMS}/{demo}").status_code == 204
    assert_problem(client.get(f"{ITEMS}/{demo}"), 404)
    demo_history = client.get(f"{ITEMS}/{demo}/history").json()["features"]
    assert demo_history and demo_history[-1]["properties"]["systid_til"] is not None


def test_options_lists_the_allowed_methods(ro_client):
    def allowed(r):
        assert r.status_code == 200
        return {m.strip() for m in r.headers["allow"].split(",")}

    feature_id = ro_client.get(ITEMS, params={"limit": 1}).json()["features"][0]["id"]
    item = f"{ITEMS}/{feature_id}"
    assert allowed(ro_client.options(ITEMS)) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert allowed(ro_client.options(item)) == {
        "GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"}
    assert_problem(ro_client.options("/collections/nope/items"), 404)
    # what Allow does not list is refused with 405
    assert_problem(ro_client.delete(ITEMS), 405)
    assert_problem(ro_client.post(item, content=b"{}", headers={"Content-Type": GEOJSON}), 405)
    # and what it lists is served: HEAD answers like GET (the server drops the body)
    for path in (ITEMS, item):
        get = ro_client.get(path)
        head = ro_client.head(path)
        assert head.status_code == 200, (path, head.status_code)
        assert head.headers["content-type"] == get.headers["content-type"]
    assert ro_client.head(item).headers["etag"] == ro_client.get(item).headers["etag"]


def test_a_feature_as_read_can_be_written_back(client, db_url):
    """A client (QGIS, a script) may PUT back a feature exactly as it read it, in any CRS:
    read-only members are ignored and the point stays where it was, to the millimetre."""
    feature_id = client.get(ITEMS, params={"limit": 1}).json()["features"][0]["id"]
    x0, y0 = stored_xy(db_url, feature_id)
    for crs, headers in ((EPSG25832.strip("<>"), {"Content-Crs": EPSG25832}),
                         (EPSG4326.strip("<>"), {"Content-Crs": EPSG4326}),
                         (None, {})):
        g = client.get(f"{ITEMS}/{feature_id}", params={"crs": crs} if crs else {})
        read = g.json()
        assert "links" in read
        r = put(client, feature_id, read, **headers, **{"If-Match": g.headers["etag"]})
        assert r.status_code == 200, (crs, r.text)
        written = r.json()["properties"]
        for name, value in read["properties"].items():
            if name not in ("versions_id", "systid_fra", "bruger_id"):
                assert written[name] == value, (crs, name)
        x, y = stored_xy(db_url, feature_id)
        # CRS84/EPSG:4326 output has 7 decimals (~1 cm); metres are exact to 1 mm
        tolerance = 0.001 if crs and "25832" in crs else 0.02
        assert abs(x - x0) < tolerance and abs(y - y0) < tolerance, (crs, x - x0, y - y0)
    assert len(versions(db_url, feature_id)) >= 4


def test_concurrent_writers_with_the_same_etag_exactly_one_wins(live_rw, db_url):
    feature_id = str(query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum "
                                   "ORDER BY objekt_id LIMIT 1")[0][0])
    url = f"{live_rw.url}{ITEMS}/{feature_id}"
    etag = httpx.get(url, headers=ADMIN_HEADERS).headers["etag"]
    before = len(versions(db_url, feature_id))

    def write(n):
        return httpx.patch(url, content=orjson.dumps({"properties": {"pladser": 100 + n}}),
                           headers={"Content-Type": MERGE_PATCH, "If-Match": etag,
                                    **ADMIN_HEADERS}, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(write, range(8)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [412] * 7, statuses
    winner = next(r for r in results if r.status_code == 200)
    assert len(versions(db_url, feature_id)) == before + 1
    current = httpx.get(url, headers=ADMIN_HEADERS)
    assert current.headers["etag"] == winner.headers["etag"]
    assert current.json()["properties"]["pladser"] == winner.json()["properties"]["pladser"]


def test_the_base_table_refuses_physical_deletes_and_changes(db_url):
    """Nothing is ever physically deleted or rewritten, even by SQL run directly."""
    before = snapshot(db_url)
    (versions_id,) = query(db_url, "SELECT versions_id FROM ly.beskyttelsesrum LIMIT 1")[0]
    statements = (
        ("DELETE FROM ly.beskyttelsesrum WHERE versions_id = %s", [versions_id]),
        ("DELETE FROM ly.beskyttelsesrum", None),
        ("UPDATE ly.beskyttelsesrum SET pladser = pladser + 1 WHERE versions_id = %s",
         [versions_id]),
        ("UPDATE ly.beskyttelsesrum SET systid_fra = systid_fra - interval '1 day' "
         "WHERE versions_id = %s", [versions_id]),
        ("UPDATE ly.beskyttelsesrum SET geometri = ST_Translate(geometri, 0.001, 0) "
         "WHERE versions_id = %s", [versions_id]),  # a millimetre
        ("UPDATE ly.beskyttelsesrum SET note = coalesce(note, '') || ' ', systid_til = now() "
         "WHERE versions_id = %s", [versions_id]),  # closing it and changing it too
        ("TRUNCATE ly.beskyttelsesrum", None),
    )
    for stmt, args in statements:
        with pytest.raises(psycopg.Error) as exc:
            query(db_url, stmt, args)
        assert exc.value.sqlstate == "LY403", stmt
    # closing a version is the one change allowed; a closed version is then frozen
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE ly.beskyttelsesrum SET systid_til = now() WHERE versions_id = %s",
                     [versions_id])
        conn.rollback()
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE ly.beskyttelsesrum SET systid_til = now() WHERE versions_id = %s",
                     [versions_id])
        with pytest.raises(psycopg.Error) as exc:
            conn.execute("UPDATE ly.beskyttelsesrum SET systid_til = NULL WHERE versions_id = %s",
                         [versions_id])
        assert exc.value.sqlstate == "LY403"
        conn.rollback()
    assert snapshot(db_url) == before


def test_an_inactive_code_kept_unchanged_stays_valid(client, db_url, monkeypatch):
    """As in GeoFA, a retired (inactive) code is refused for new values but an existing
    shelter keeps it through any edit that does not change it (datamodel.rules)."""
    import dataclasses

    from datamodel import rules
    from datamodel.codelists import load_codelists

    lists = dict(load_codelists())
    types = lists["d_6101_beskyt_rum"]
    lists["d_6101_beskyt_rum"] = dataclasses.replace(types, values=tuple(
        dataclasses.replace(c, aktiv=False) if c.kode == 9 else c for c in types.values))
    monkeypatch.setattr(rules, "load_codelists", lambda: lists)

    (feature_id,) = query(db_url, "SELECT objekt_id FROM ly.t_6101_beskyt_rum "
                                  "WHERE beskyt_rum_kode = 9 ORDER BY objekt_id LIMIT 1")[0]
    item = f"{ITEMS}/{feature_id}"

    # new data may not use it
    r = post(client, feature(beskyt_rum_kode=9))
    assert_problem(r, 422, "properties.beskyt_rum_kode")
    assert "no longer an active code" in r.text

    # a patch that does not mention it keeps it
    r = patch(client, feature_id, {"properties": {"pladser": 77}})
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["beskyt_rum_kode"] == 9

    # a patch or a replacement that sends it back unchanged (a client echoing what it read)
    r = patch(client, feature_id, {"properties": {"beskyt_rum_kode": 9, "pladser": 78}})
    assert r.status_code == 200, r.text
    read = client.get(item).json()
    r = put(client, feature_id, {**read, "properties": {**read["properties"], "pladser": 79}})
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["beskyt_rum_kode"] == 9

    # once changed, it cannot be set again
    assert patch(client, feature_id, {"properties": {"beskyt_rum_kode": 1}}).status_code == 200
    assert_problem(patch(client, feature_id, {"properties": {"beskyt_rum_kode": 9}}), 422,
                   "properties.beskyt_rum_kode")
