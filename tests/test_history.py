"""A shelter's history: every version kept, chained in system time, readable `asof` any
instant. Instants are taken from the stored system times, never from sleeps."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from tests.conftest import ITEMS, query

GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"
PROBLEM = "application/problem+json"
NOEGLE = "historik-test-1"


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


@pytest.fixture
def edited(client):
    """A shelter created, then edited three times (pladser 10, 20, 30, 40; one edit moves it).
    Returns (objekt_id, [ETag of each version])."""
    body = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10.2039, 56.1535]},
            "properties": {"beskyt_rum_kode": 1, "pladser": 10, "noegle": NOEGLE,
                           "navn": "Version 1"}}
    r = client.post(ITEMS, content=orjson.dumps(body), headers={"Content-Type": GEOJSON})
    assert r.status_code == 201, r.text
    objekt_id, etags = r.json()["id"], [r.headers["etag"]]
    edits = (
        {"properties": {"pladser": 20, "navn": "Version 2"}},
        {"properties": {"pladser": 30, "navn": "Version 3"},
         "geometry": {"type": "Point", "coordinates": [10.3883, 55.3959]}},
        {"properties": {"pladser": 40, "navn": None}},
    )
    for edit in edits:
        r = client.patch(f"{ITEMS}/{objekt_id}", content=orjson.dumps(edit),
                         headers={"Content-Type": MERGE_PATCH, "If-Match": etags[-1]})
        assert r.status_code == 200, r.text
        etags.append(r.headers["etag"])
    return objekt_id, etags


def test_history_lists_every_version_in_order_and_chained(client, db_url, edited):
    objekt_id, etags = edited
    r = client.get(f"{ITEMS}/{objekt_id}/history")
    assert r.status_code == 200
    assert r.headers["content-type"] == GEOJSON
    doc = r.json()
    assert doc["type"] == "FeatureCollection" and doc["objekt_id"] == objekt_id
    assert doc["numberReturned"] == doc["numberMatched"] == 4
    versions = doc["features"]
    props = [v["properties"] for v in versions]

    assert [p["pladser"] for p in props] == [10, 20, 30, 40]
    assert [p["navn"] for p in props] == ["Version 1", "Version 2", "Version 3", None]
    assert [f'"{p["versions_id"]}"' for p in props] == etags
    assert [v["id"] for v in versions] == [p["versions_id"] for p in props]
    assert len({p["versions_id"] for p in props}) == 4
    assert {p["objekt_id"] for p in props} == {objekt_id}
    assert {p["oprettet"] for p in props} == {props[0]["systid_fra"]}
    assert [p["beliggenhedskommune"] for p in props] == [751, 751, 461, 461]
    assert versions[1]["geometry"]["coordinates"] == pytest.approx([10.2039, 56.1535], abs=1e-7)
    assert versions[2]["geometry"]["coordinates"] == pytest.approx([10.3883, 55.3959], abs=1e-7)

    # version n ends exactly when version n+1 begins; only the last is open
    starts = [_instant(p["systid_fra"]) for p in props]
    assert starts == sorted(starts) and len(set(starts)) == 4
    for older, newer in zip(props, props[1:]):
        assert older["systid_til"] is not None
        assert _instant(older["systid_til"]) == _instant(newer["systid_fra"])
    assert props[-1]["systid_til"] is None
    # the history is exactly what is stored
    stored = query(db_url, "SELECT versions_id, systid_fra, systid_til FROM ly.beskyttelsesrum "
                           "WHERE objekt_id = %s ORDER BY systid_fra", [objekt_id])
    assert [str(v[0]) for v in stored] == [p["versions_id"] for p in props]
    assert [v[1] for v in stored] == starts

    # the history links back to the shelter, and the shelter to its history
    rels = {link["rel"]: link["href"] for link in doc["links"]}
    assert rels["about"].endswith(f"{ITEMS}/{objekt_id}")
    item_links = client.get(f"{ITEMS}/{objekt_id}").json()["links"]
    assert any(link["rel"] == "version-history" and link["href"].endswith("/history")
               for link in item_links)

    # HTML renders every version
    h = client.get(f"{ITEMS}/{objekt_id}/history", params={"f": "html"})
    assert h.status_code == 200
    assert h.headers["content-type"].startswith("text/html")
    for p in props:
        assert p["versions_id"] in h.text
    h = client.get(f"{ITEMS}/{objekt_id}/history", headers={"Accept": "text/html"})
    assert h.status_code == 200 and h.headers["content-type"].startswith("text/html")


def test_asof_reads_the_version_valid_then(client, edited):
    objekt_id, etags = edited
    props = [v["properties"] for v in
             client.get(f"{ITEMS}/{objekt_id}/history").json()["features"]]
    starts = [_instant(p["systid_fra"]) for p in props]
    ends = starts[1:] + [datetime.now(timezone.utc)]

    def item_asof(moment: datetime | str):
        text = moment if isinstance(moment, str) else _iso(moment)
        return client.get(f"{ITEMS}/{objekt_id}", params={"asof": text})

    def items_asof(moment: datetime):
        r = client.get(ITEMS, params={"noegle": NOEGLE, "asof": _iso(moment)})
        assert r.status_code == 200, r.text
        return r.json()["features"]

    for n, (start, end) in enumerate(zip(starts, ends)):
        # the version's first instant (versions are half-open: [systid_fra, systid_til)),
        # its middle, and its last microsecond
        for moment in (start, start + (end - start) / 2, end - timedelta(microseconds=1)):
            r = item_asof(moment)
            assert r.status_code == 200, (n, moment, r.text)
            assert r.json()["properties"]["pladser"] == props[n]["pladser"], (n, moment)
            assert r.headers["etag"] == etags[n]
            found = items_asof(moment)
            assert [f["id"] for f in found] == [objekt_id], (n, moment)
            assert found[0]["properties"]["versions_id"] == props[n]["versions_id"]
            assert found[0]["properties"]["pladser"] == props[n]["pladser"]

    # the same instant in another offset, and with Z, reads the same version
    middle = starts[1] + (starts[2] - starts[1]) / 2
    for text in (_iso(middle.astimezone(timezone(timedelta(hours=2)))),
                 _iso(middle.astimezone(timezone.utc)).replace("+00:00", "Z")):
        r = item_asof(text)
        assert r.status_code == 200 and r.json()["properties"]["pladser"] == 20, text

    # before it was created it did not exist
    before = starts[0] - timedelta(microseconds=1)
    assert item_asof(before).status_code == 404
    assert items_asof(before) == []
    # asof also reads in another CRS and as HTML
    r = client.get(f"{ITEMS}/{objekt_id}",
                   params={"asof": _iso(starts[0]),
                           "crs": "http://www.opengis.net/def/crs/EPSG/0/25832"})
    assert r.status_code == 200
    assert r.json()["geometry"]["coordinates"][0] == pytest.approx(574784.652, abs=0.01)
    r = client.get(f"{ITEMS}/{objekt_id}", params={"asof": _iso(starts[1]), "f": "html"})
    assert r.status_code == 200 and "Version 2" in r.text
    # without asof: the current version
    current = client.get(f"{ITEMS}/{objekt_id}")
    assert current.json()["properties"]["pladser"] == 40 and current.headers["etag"] == etags[-1]


def test_asof_for_the_whole_register(client, edited):
    """asof without a filter reads the register as it was: the shelter appears in the count
    only once it exists."""
    objekt_id, _ = edited
    props = [v["properties"] for v in
             client.get(f"{ITEMS}/{objekt_id}/history").json()["features"]]
    first = _instant(props[0]["systid_fra"])
    now_count = client.get(ITEMS, params={"limit": 1}).json()["numberMatched"]
    then = client.get(ITEMS, params={"limit": 1, "asof": _iso(first - timedelta(microseconds=1))})
    assert then.status_code == 200
    assert then.json()["numberMatched"] == now_count - 1
    at = client.get(ITEMS, params={"limit": 1, "asof": _iso(first)}).json()
    assert at["numberMatched"] == now_count


@pytest.mark.parametrize("value", [
    pytest.param("future", id="in-the-future"),
    pytest.param("yesterday", id="word"),
    pytest.param("2024-13-01", id="month-13"),
    pytest.param("2024-02-30T12:00:00Z", id="february-30"),
    pytest.param("2024-01-01T25:00:00Z", id="hour-25"),
    pytest.param("1700000000", id="unix-seconds"),
    pytest.param("", id="empty"),
    pytest.param("2024-01-01/2024-02-01", id="interval"),
])
def test_bad_asof_is_400_naming_it(ro_client, value):
    if value == "future":
        value = _iso(datetime.now(timezone.utc) + timedelta(days=1))
    feature_id = ro_client.get(ITEMS, params={"limit": 1}).json()["features"][0]["id"]
    for path in (ITEMS, f"{ITEMS}/{feature_id}"):
        r = ro_client.get(path, params={"asof": value})
        assert r.status_code == 400, (path, value, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["errors"][0]["field"] == "asof"


def test_history_of_unknown_or_malformed_id(ro_client):
    r = ro_client.get(f"{ITEMS}/{uuid.uuid4()}/history")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = ro_client.get(f"{ITEMS}/not-a-uuid/history")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "featureId"
    r = ro_client.get(f"{ITEMS}/{uuid.uuid4()}/history", params={"asof": "2024-01-01"})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "asof"
    r = ro_client.get("/collections/nope/items/" + str(uuid.uuid4()) + "/history")
    assert r.status_code == 404


def test_history_of_an_untouched_shelter_has_one_open_version(ro_client):
    feature = ro_client.get(ITEMS, params={"limit": 1}).json()["features"][0]
    doc = ro_client.get(f"{ITEMS}/{feature['id']}/history").json()
    assert doc["features"][-1]["properties"]["versions_id"] == \
        feature["properties"]["versions_id"]
    assert doc["features"][-1]["properties"]["systid_til"] is None
    html = ro_client.get(f"{ITEMS}/{feature['id']}/history", params={"f": "html"})
    assert html.status_code == 200 and feature["id"] in html.text
